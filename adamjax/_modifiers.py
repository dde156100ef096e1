r"""Modifiers that compose with any piece: the cautious mask (``cautious``), StableAdamW's update
clipping (``update_clipping``) and the aliases built from them and from the shared maths
(``stable_adamw``, ``adam_atan2``).

The atan2 division itself is an eps placement of the shared maths (``eps_mode="atan2"`` in
:mod:`adamjax._moments`) and corrected weight decay a decay schedule
(:func:`adamjax.corrected_weight_decay` in :mod:`adamjax._scaling`), so every piece and alias that
uses them gets them.
"""

from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

from adamjax import _adam, _diagnostics, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v

CautiousRescale = Literal["mean", "count"]
CAUTIOUS_RESCALES: tuple[str, ...] = ("mean", "count")

ClipRmsOf = Literal["v_hat", "denominator"]
CLIP_RMS_OF: tuple[str, ...] = ("v_hat", "denominator")


# ---- cautious -------------------------------------------------------------------------------


def cautious(
    tx: optax.GradientTransformation,
    *,
    descent: bool = True,
    rescale: CautiousRescale = "mean",
) -> optax.GradientTransformationExtraArgs:
    r"""Cautious optimizer (Liang et al. 2024): keeps update entries that agree with the gradient.

    Update rule::

        u = tx.update(g)
        keep = (u * g < 0)        (descent=True: u is added to the params, as an alias returns)
        keep = (u * g > 0)        (descent=False: u is a direction, scaled by -lr later)
        rescale="mean":   update = u * keep / max(mean(keep), 1e-3)        (per tensor)
        rescale="count":  update = u * keep * n / (sum(keep) + 1)       (n entries in the tensor)

    .. math::

        \phi_t = \mathbb{1}[-u_t \odot g_t > 0], \qquad
        u_t \leftarrow u_t \odot \phi_t \,/\, \max(\overline{\phi_t}, 10^{-3})

    The mask removes the entries whose update would increase the loss to first order, and the
    per-tensor rescale keeps the mean update size. Where the wrapper goes decides what it masks:

    * around a whole alias (``adamjax.cautious(adamjax.adam(...))``, ``descent=True``, the
      default): everything the alias returns is masked, decoupled weight decay included;
    * around the moment piece in a chain (``optax.chain(adamjax.cautious(adamjax.scale_by_adam(),
      descent=False), adamjax.add_decayed_weights(wd), adamjax.scale_by_learning_rate(lr))``):
      only the Adam direction is masked and the decay is applied in full, as timm's
      ``AdamW(caution=True)`` and pytorch_optimizer's ``cautious=True`` optimizers do.

    Without weight decay the two placements compute the same updates. ``init`` refuses the
    swapped sign where it can tell: ``descent=True`` around a bare adamjax moment piece, and
    ``descent=False`` around a transformation holding :func:`~adamjax.scale_by_learning_rate`.

    Args:
      tx: the transformation to wrap (any optax ``GradientTransformation``).
      descent: whether ``tx`` returns updates to add to the params (an optimizer; an entry is
        kept where :math:`u g < 0`) or a direction the learning rate will negate (a moment piece;
        kept where :math:`u g > 0`).
      rescale: ``"mean"`` (timm; the authors' current code): divide by the kept fraction,
        floored at 1e-3; ``"count"`` (the authors' first code, pytorch_optimizer's ``cautious``
        flag): multiply by :math:`n/(k + 1)`, :math:`k` entries kept of :math:`n`.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with ``tx``'s state, unchanged.

    References:
      Liang, Chen, Liu & Liu, "Cautious Optimizers: Improving Training with One Line of Code",
      2024 (arXiv:2411.16085).

    Example:
      >>> tx = adamjax.cautious(adamjax.adam(1e-3))
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "cautious"
    v.check_bool(fn, "descent", descent)
    v.check_choice(fn, "rescale", rescale, CAUTIOUS_RESCALES)
    tx = optax.with_extra_args_support(tx)

    def mask_leaf(u: jax.Array, g: jax.Array) -> jax.Array:
        if u.size == 0:
            return u
        dtype = mo.real_dtype(mo.compute_dtype(u.dtype, g.dtype))
        agreement = jnp.real(u * jnp.conj(g)).astype(dtype)
        keep = (agreement < 0 if descent else agreement > 0).astype(dtype)
        if rescale == "mean":
            factor = keep / jnp.maximum(jnp.mean(keep), 1e-3)
        else:
            factor = keep * (keep.size / (jnp.sum(keep) + 1))
        return (u * factor).astype(u.dtype)

    def init_fn(params: optax.Params) -> Any:
        state = tx.init(params)
        # The two placements keep opposite signs: catch the swap that would keep only the
        # entries that increase the loss.
        if descent and _piece.view_of(state) is not None:
            raise ValueError(
                f"{fn}: descent must be False around a moment piece ({type(state).__name__}): "
                "its updates are a direction that the learning rate negates later, got True"
            )
        rates = jax.tree.leaves(
            state, is_leaf=lambda x: isinstance(x, _scaling.ScaleByLearningRateState)
        )
        if not descent and any(isinstance(x, _scaling.ScaleByLearningRateState) for x in rates):
            raise ValueError(
                f"{fn}: descent must be True around a transformation that applies the learning "
                "rate (its updates are added to the params), got False"
            )
        return state

    def update_fn(updates, state, params=None, **extra_args):
        grads = updates
        updates, state = tx.update(grads, state, params, **extra_args)
        v.check_tree_match(fn, updates, grads, what="the wrapped updates")
        return jax.tree.map(mask_leaf, updates, grads), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ---- update clipping ------------------------------------------------------------------------


def update_clipping(
    tx: optax.GradientTransformation,
    threshold: float = 1.0,
    *,
    eps: float = 1e-8,
    rms_of: ClipRmsOf = "v_hat",
) -> optax.GradientTransformationExtraArgs:
    r"""StableAdamW's update clipping: divides each tensor's update by max(1, RMS / threshold).

    Update rule::

        u = tx.update(g)                             (tx keeps a second moment v_hat)
        rms = sqrt(mean(g**2 / max(v_hat, eps**2)))                    (per tensor; rms_of="v_hat")
        rms = sqrt(mean((g / (sqrt(v_hat + eps_root) + eps_tx))**2))   (rms_of="denominator")
        update = u / max(1, rms / threshold)

    .. math::

        \mathrm{RMS}_t = \sqrt{\operatorname{mean}\left(g_t^2 / \max(\hat v_t, \epsilon^2)
        \right)}, \qquad u_t \leftarrow u_t / \max(1, \mathrm{RMS}_t / \tau)

    The RMS compares this step's gradient with the second moment it was divided by: it is large
    when a gradient jumps far above its running estimate, the case in which Adam's steps blow up
    (Wortsman et al. 2023). Dividing the update is dividing the learning rate of that tensor.

    ``tx`` is a moment piece or an alias built on one: the wrapper reads :math:`\hat v_t` (and,
    with ``rms_of="denominator"``, the denominator) from ``tx``'s new state through the
    diagnostics view of its moment piece, so ``tx`` must hold exactly one state with a view
    (adam, amsgrad, nadam and the other Adam-family pieces). Where it goes decides what it
    clips: around a whole alias the decoupled weight decay is clipped too (the paper and
    pytorch_optimizer's ``StableAdamW``, see :func:`stable_adamw`); around the moment piece in
    a chain, only the Adam direction (timm's ``clipping_threshold``).

    Args:
      tx: the transformation to wrap.
      threshold: :math:`\tau` > 0; the paper clips at 1.
      eps: :math:`\epsilon` >= 0, the floor :math:`\epsilon^2` on :math:`\hat v` with
        ``rms_of="v_hat"`` (pytorch_optimizer passes its eps); unused with ``"denominator"``.
      rms_of: ``"v_hat"`` (the paper, pytorch_optimizer): :math:`g^2/\max(\hat v, \epsilon^2)`;
        ``"denominator"`` (timm): :math:`g` divided by the denominator the update used, eps
        and all.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with ``tx``'s state, unchanged.

    References:
      Wortsman, Dettmers, Zettlemoyer et al., "Stable and low-precision training for
      large-scale vision-language models", NeurIPS 2023 (Algorithm 2, StableAdamW).

    Example:
      >>> tx = adamjax.update_clipping(adamjax.adamw(1e-3, b2=0.99))
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    return _update_clipping("update_clipping", tx, threshold, eps, rms_of)


def _update_clipping(
    fn: str, tx: optax.GradientTransformation, threshold: Any, eps: Any, rms_of: str
) -> optax.GradientTransformationExtraArgs:
    """:func:`update_clipping`, with errors reported under ``fn``."""
    v.check_positive(fn, "threshold", threshold)
    v.check_non_negative(fn, "eps", eps)
    v.check_choice(fn, "rms_of", rms_of, CLIP_RMS_OF)
    tx = optax.with_extra_args_support(tx)
    eps2 = eps * eps

    def view_of(state: Any, grads: Any) -> _piece.View:
        found: list[tuple[Any, Any]] = []
        _diagnostics._find_views(state, None, found)
        # The states whose view reports a second moment the step divided by (a trust-ratio or
        # bound state beside the moment piece has none).
        views = [_piece.view_of(s)(_piece.decoded(s), grads) for s, _ in found]
        views = [view for view in views if view.v_hat is not None and not view.lr_included]
        if len(views) != 1:
            names = [type(s).__name__ for s, _ in found]
            raise ValueError(
                f"{fn}: the wrapped transformation must hold exactly one Adam-family moment "
                f"state with a second moment, found {len(views)} among {names}; wrap the moment "
                "piece or an alias built on one"
            )
        return views[0]

    def init_fn(params: optax.Params) -> Any:
        state = tx.init(params)
        view_of(state, params)  # fails at init, not at the first update
        return state

    def rms_leaf(g: jax.Array, v_hat: jax.Array, scale_of: Any, statistic: jax.Array) -> Any:
        if g.size == 0:
            return jnp.ones([], v_hat.dtype)
        g2 = mo.squared_magnitude(g).astype(v_hat.dtype)
        if rms_of == "v_hat":
            ratio = g2 / jnp.maximum(v_hat, eps2)
        else:
            ratio = g2 * scale_of(statistic) ** 2
        return jnp.sqrt(jnp.mean(ratio))

    def update_fn(updates, state, params=None, **extra_args):
        grads = updates
        updates, state = tx.update(grads, state, params, **extra_args)
        view = view_of(state, grads)
        values = [jax.tree.map(_piece.value, tree) for tree in (view.v_hat, view.statistic)]
        rms = jax.tree.map(rms_leaf, grads, values[0], view.scale_of, values[1])
        updates = jax.tree.map(
            lambda u, r: (u / jnp.maximum(1, r / threshold)).astype(u.dtype), updates, rms
        )
        return updates, state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def stable_adamw(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.99,
    eps: float = 1e-8,
    weight_decay: _piece.ScalarOrSchedule = 1e-2,
    mask: Any | None = None,
    *,
    threshold: float = 1.0,
    clip_decay: bool = True,
    rms_of: ClipRmsOf = "v_hat",
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""StableAdamW (Wortsman et al. 2023): AdamW whose per-tensor step is clipped by update RMS.

    Update rule::

        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g**2
        m_hat = m / (1 - b1**t);  v_hat = v / (1 - b2**t)
        rms = sqrt(mean(g**2 / max(v_hat, eps**2)))                        (per tensor)
        lr_t = learning_rate / max(1, rms / threshold)
        update = -lr_t * (m_hat / (sqrt(v_hat) + eps) + weight_decay * param)

    .. math::

        \eta_t = \alpha_t / \max\left(1, \sqrt{\operatorname{mean}(g_t^2/\max(\hat v_t,
        \epsilon^2))}/\tau\right), \qquad
        \theta_t = \theta_{t-1} - \eta_t\left(\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}
        + \lambda\theta_{t-1}\right)

    AdamW's chain with :func:`update_clipping` around the moment piece and the decay
    (``clip_decay=True``, the paper and ``pytorch_optimizer.StableAdamW``: the decay is clipped
    with the step), or around the moment piece only (``clip_decay=False``, with
    ``rms_of="denominator"`` timm's ``AdamWLegacy(clipping_threshold=1.0)``). Clipping the
    update is clipping the learning rate of that tensor, as the paper writes it. The defaults
    (``b2=0.99``, ``weight_decay=1e-2``) are pytorch_optimizer's.

    Args:
      learning_rate: :math:`\alpha_t`, a number >= 0 or an optax schedule.
      b1: decay of the first moment, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      eps: added to the denominator, >= 0; also the floor :math:`\epsilon^2` of the RMS.
      weight_decay: decoupled decay :math:`\lambda`, a number >= 0 or a schedule.
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      threshold: :math:`\tau` > 0, the RMS above which the step shrinks.
      clip_decay: clip the weight decay with the step (paper) or not (timm).
      rms_of: ``"v_hat"`` (paper, pytorch_optimizer) or ``"denominator"`` (timm), see
        :func:`update_clipping`.
      eps_root: added inside the square root, >= 0.
      mu_dtype: storage of the first moment, see :func:`adamjax.adam`.
      nu_dtype: storage of the second moment, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(update_clipping(chain(scale_by_adam,
      add_decayed_weights)), scale_by_learning_rate)`` (``clip_decay=False``:
      ``chain(update_clipping(scale_by_adam), add_decayed_weights, scale_by_learning_rate)``).
      ``update`` needs ``params``.

    References:
      Wortsman, Dettmers, Zettlemoyer et al., "Stable and low-precision training for
      large-scale vision-language models", NeurIPS 2023.

    Example:
      >>> tx = adamjax.stable_adamw(learning_rate=1e-3)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "stable_adamw"
    v.check_bool(fn, "clip_decay", clip_decay)
    moments = _adam.adam_moments(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=False,
        eps_mode="paper", nu_dtype=nu_dtype,
    )  # fmt: skip

    decay = _scaling.decayed_weights(fn, weight_decay, mask)
    if clip_decay:
        clipped = _update_clipping(fn, optax.chain(moments, decay), threshold, eps, rms_of)
        return optax.chain(clipped, _scaling._learning_rate(fn, learning_rate))
    clipped = _update_clipping(fn, moments, threshold, eps, rms_of)
    return optax.chain(clipped, decay, _scaling._learning_rate(fn, learning_rate))


# ---- adam-atan2 -----------------------------------------------------------------------------


def adam_atan2(
    learning_rate: _piece.ScalarOrSchedule = 1e-4,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.99,
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    *,
    a: float = 1.27,
    b: float = 1.0,
    mask: Any | None = None,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Adam-atan2 (Everett et al. 2024): Adam with atan2 in place of the division by sqrt(v)+eps.

    Update rule::

        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g**2
        m_hat = m / (1 - b1**t);  v_hat = v / (1 - b2**t)
        update = -learning_rate * (a * atan2(m_hat, b * sqrt(v_hat)) + weight_decay * param)

    .. math::

        \theta_t = \theta_{t-1} - \eta_t\left(a \operatorname{atan2}(\hat m_t, b\sqrt{\hat v_t})
        + \lambda\theta_{t-1}\right)

    There is no eps: atan2 is bounded by :math:`\pi/2`, is 0 for a zero gradient, and is
    invariant to a rescaling of the gradients. For :math:`|\hat m| \ll b\sqrt{\hat v}` it is
    Adam's step scaled by :math:`a/b`; for large ratios it saturates towards sign descent. The
    chain is :func:`adamjax.scale_by_adam` with ``eps_mode="atan2"`` (the shared eps placement,
    which every piece dividing through the shared maths accepts), ``optax.scale(a)``, decoupled
    decay and the learning rate. The defaults are those of ``adam_atan2_pytorch.AdamAtan2``.

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: decay of the first moment, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      weight_decay: decoupled decay :math:`\lambda`, a number >= 0 or a schedule
        (``update`` needs ``params`` unless it is the constant 0).
      a: the output scale :math:`a`, a finite number.
      b: the denominator scale :math:`b` > 0.
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      mu_dtype: storage of the first moment, see :func:`adamjax.adam`.
      nu_dtype: storage of the second moment, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_adam(eps_mode="atan2"),
      scale(a), add_decayed_weights, scale_by_learning_rate)``.

    References:
      Everett, Xiao, Wortsman et al., "Scaling Exponents Across Parameterizations and
      Optimizers", ICML 2024. The atan2 form with ``a`` and ``b`` follows
      ``adam-atan2-pytorch`` (lucidrains).

    Example:
      >>> tx = adamjax.adam_atan2(learning_rate=1e-4)
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "adam_atan2"
    v.check_finite(fn, "a", a)
    v.check_positive(fn, "b", b)
    moments = _adam.adam_moments(
        fn, b1=b1, b2=b2, eps=0.0, eps_root=0.0, mu_dtype=mu_dtype, nesterov=False,
        eps_mode=mo.atan2_mode(b), nu_dtype=nu_dtype,
    )  # fmt: skip
    return _scaling.decoupled_chain(
        fn, optax.chain(moments, optax.scale(a)), learning_rate=learning_rate,
        weight_decay=weight_decay, mask=mask,
    )  # fmt: skip
