r"""ADOPT (Taniguchi et al. 2024): the gradient divided by the *previous* second moment, then the
momentum. Its piece, its alias and its diagnostics view."""

import functools
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _formats, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v

AdoptEpsMode = Literal["max", "denominator", "atan2"]
ADOPT_EPS_MODES: tuple[str, ...] = ("max", "denominator", "atan2")
ClipStep = Literal["previous", "current"]
CLIP_STEPS: tuple[str, ...] = ("previous", "current")


def clip_quarter_root(x: jax.Array) -> jax.Array:
    r"""ADOPT's default clip value :math:`x^{1/4}` (the paper's, optax's and the authors')."""
    return x**0.25


class ScaleByAdoptState(NamedTuple):
    r"""State of scale_by_adopt.

    Attributes:
      count: int32 scalar, the number of updates applied so far (the first only sets ``nu``).
      mu: momentum :math:`m_t` of the normalized (and clipped) gradients, in ``mu_dtype``.
      nu: second moment :math:`v_t`, real, in ``nu_dtype``; it normalizes the *next* gradient.
        No bias correction: :math:`v_0 = g_0^2`.
      last_step: the :class:`~adamjax.StepScalars` of the latest update: corrections 1 and, as
        ``eps``, the eps added to :math:`\sqrt{v}` (0 with ``eps_mode="max"``).
      eps_floor: the eps the denominator is floored at, :math:`\max(\sqrt v, \epsilon)` (0 with
        ``eps_mode="denominator"``), so diagnostics rebuild the step factor from the state.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    last_step: mo.StepScalars
    eps_floor: jax.Array


def normalized(g: jax.Array, nu: jax.Array, floor: Any, added: Any) -> jax.Array:
    r"""ADOPT's :math:`g / (\max(\sqrt{v}, \epsilon_{floor}) + \epsilon_{add})`; one of the two
    eps is 0. The additive form is Adam's :func:`~adamjax._moments.precondition`."""
    if mo.is_static_zero(floor):
        return mo.precondition(g, nu, added, 0.0)
    dtype = mo.real_dtype(nu.dtype)
    denominator = jnp.maximum(jnp.sqrt(nu), mo.as_scalar(floor, dtype))
    if not mo.is_static_zero(added):  # only in the diagnostics view, which has both as arrays
        denominator = denominator + mo.as_scalar(added, dtype)
    return mo.divide_or_zero(g, denominator, False)


def _clipped(x: jax.Array, bound: jax.Array) -> jax.Array:
    """``x`` clipped to [-bound, bound]; a complex entry's real and imaginary parts each (as the
    authors' code does on ``view_as_real``)."""
    if jnp.iscomplexobj(x):
        return jax.lax.complex(_clipped(jnp.real(x), bound), _clipped(jnp.imag(x), bound))
    bound = bound.astype(x.dtype)
    return jnp.clip(x, -bound, bound)


def scale_by_adopt(
    b1: float | jax.Array | optax.Schedule = 0.9,
    b2: float | jax.Array | optax.Schedule = 0.9999,
    eps: float | jax.Array = 1e-6,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = clip_quarter_root,
    clip_step: ClipStep = "previous",
    eps_mode: AdoptEpsMode = "max",
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by ADOPT: normalize by the previous second moment, clip, then momentum.

    Update rule::

        t = 1:  v = |g|**2;  m = 0;  update = 0                    (initialization only)
        t > 1:  n = clip(g / max(sqrt(v), eps), c)                  (v of step t-1)
                m = b1*m + (1-b1)*n
                v = b2*v + (1-b2)*|g|**2
                update = m                    (nesterov=True: b1*m + (1-b1)*n)
        c = clip_value_fn(t-1)  (clip_step="previous");  clip_value_fn(t)  ("current")
        eps_mode="denominator":  n = clip(g / (sqrt(v) + eps), c)
        eps_mode="atan2":        n = clip(atan2(g, sqrt(v)), c)

    .. math::

        v_0 &= g_0^2, \qquad
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\,
        \mathrm{clip}\!\left(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)}, c_t\right), \\
        v_t &= \beta_2 v_{t-1} + (1-\beta_2) |g_t|^2, \qquad u_t = m_t,
        \qquad c_t = t^{1/4}.

    In the paper's indexing the first gradient :math:`g_0` only initializes :math:`v_0`; its
    step :math:`t` is this piece's ``count``. Normalizing by :math:`v_{t-1}`, which does not hold
    :math:`g_t`, is what lets ADOPT converge for any :math:`\beta_2`. No bias correction.

    The conventions:

    * ``clip_step="previous"`` (default): ``clip_value_fn`` receives the number of earlier
      updates (``count``), so the first real step clips at :math:`1^{1/4} = 1`. This is the
      paper, the authors' ``ADOPT``, ``optax.contrib.adopt`` and ``timm.optim.Adopt`` (whose
      default exponent is 0.333: ``clip_value_fn=lambda x: x**0.333``). ``"current"`` passes
      ``count + 1``, as ``pytorch_optimizer.ADOPT`` does (its first real step clips at
      :math:`2^{1/4}`).
    * ``eps_mode="max"`` (default; paper, authors, optax, timm, pytorch_optimizer) floors
      :math:`\sqrt{v}` at eps; ``"denominator"`` adds eps like Adam; ``"atan2"`` replaces the
      division by :math:`\operatorname{atan2}(g_t, \sqrt{v_{t-1}})` and ignores eps (see
      :func:`~adamjax.adam_atan2`).

    Args:
      b1: decay of the momentum, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      eps: the floor of (or addition to) :math:`\sqrt{v}`, >= 0.
      mu_dtype: storage of ``mu``: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nesterov: return :math:`\beta_1 m_t + (1-\beta_1) n_t` instead of :math:`m_t`
        (``optax.contrib.adopt(nesterov=True)``).
      use_clipping: clip the normalized gradient to :math:`[-c_t, c_t]`.
      clip_value_fn: :math:`c` as a function of the step (a float array), see ``clip_step``.
        Under ``optax.inject_hyperparams``, name it in ``static_args``.
      clip_step: ``"previous"`` (paper, authors, optax, timm) or ``"current"``
        (pytorch_optimizer).
      eps_mode: ``"max"``, ``"denominator"`` or ``"atan2"``, see above.
      nu_dtype: storage of ``nu``, as ``mu_dtype`` (real for complex params).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByAdoptState`.

    References:
      Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal
      Rate", NeurIPS 2024; code: github.com/iShohei220/adopt.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_adopt(), optax.scale_by_learning_rate(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    return _adopt_moments(
        "scale_by_adopt", b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype, nesterov=nesterov,
        use_clipping=use_clipping, clip_value_fn=clip_value_fn, clip_step=clip_step,
        eps_mode=eps_mode, nu_dtype=nu_dtype,
    )  # fmt: skip


def _adopt_moments(
    fn: str, *, b1: Any, b2: Any, eps: Any, mu_dtype: Any, nesterov: bool, use_clipping: bool,
    clip_value_fn: Any, clip_step: str, eps_mode: str, nu_dtype: Any,
) -> optax.GradientTransformationExtraArgs:  # fmt: skip
    _piece.check_moment_options(
        fn, b1=b1, b2=b2, eps=eps, eps_root=0.0, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    v.check_bool(fn, "nesterov", nesterov)
    v.check_bool(fn, "use_clipping", use_clipping)
    if not callable(clip_value_fn):
        raise TypeError(
            f"{fn}: clip_value_fn must be a function of the step count, such as "
            f"lambda x: x**0.25, got {clip_value_fn!r}; optax.inject_hyperparams calls every "
            "callable argument as a schedule, so pass static_args=('clip_value_fn',) to it"
        )
    v.check_choice(fn, "clip_step", clip_step, CLIP_STEPS)
    v.check_choice(fn, "eps_mode", eps_mode, ADOPT_EPS_MODES)
    floor, added = (eps, 0.0) if eps_mode == "max" else (0.0, eps)
    if eps_mode == "atan2":  # g / sqrt(v) becomes atan2(g, b sqrt(v)), through precondition
        added = mo.Atan2Division(getattr(eps_mode, "scale", 1.0))
    recorded = 0.0 if eps_mode == "atan2" else added  # atan2's slope at 0 is 1/sqrt(v)

    def init_fn(params: optax.Params) -> ScaleByAdoptState:
        _piece.check_params(fn, params, mu_dtype, b1=b1, b2=b2)
        dtype = _piece.scalar_dtype(params)
        return ScaleByAdoptState(
            count=jnp.zeros([], jnp.int32),
            mu=_piece.zeros_moment(params, mu_dtype, real=False),
            nu=_piece.zeros_moment(params, nu_dtype, real=True),
            last_step=mo.StepScalars.initial(dtype),
            eps_floor=jnp.zeros([], dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        dtype = state.eps_floor.dtype
        first = state.count == 0
        # The first step only initializes v = g**2 (b2 = 0 there) and leaves m at 0.
        b2_t = jnp.where(first, 0, jnp.asarray(mo.rate_at(b2, state.count), dtype))
        clip = None
        if use_clipping:
            at = state.count if clip_step == "previous" else optax.safe_increment(state.count)
            clip = jnp.asarray(clip_value_fn(at.astype(dtype)), dtype)
        leaf = functools.partial(
            adopt_leaf, first, mo.rate_at(b1, state.count), b2_t, clip, floor, added, nesterov
        )
        stored = _formats.adam_stored(state, mu_dtype, nu_dtype)
        count = optax.safe_increment(state.count)
        updates, (mu, nu) = _formats.update_leaves(fn, leaf, updates, stored, count)
        last = mo.StepScalars.of(dtype, m_correction=1, v_correction=1, eps=recorded, eps_root=0)
        return updates, ScaleByAdoptState(count, mu, nu, last, jnp.asarray(floor, dtype))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def adopt_leaf(
    first: jax.Array, b1: Any, b2: Any, clip: jax.Array | None, floor: Any, added: Any,
    nesterov: bool, g: jax.Array, m: jax.Array, nu: jax.Array, *, settle: _formats.Settle,
) -> jax.Array:  # fmt: skip
    """One leaf of ADOPT: the new moments, stored by ``settle``, and the direction, in the
    compute dtype."""
    n = normalized(g, nu, floor, added)  # nu is still v_{t-1}
    if clip is not None:
        n = _clipped(n, clip)
    # At the first step v_{t-1} = 0, so n may be g/eps or 0/0: it must not reach the momentum.
    n = jnp.where(first, 0, n)
    m, _ = settle(mo.ema(n, m, b1), mo.ema(mo.squared_magnitude(g), nu, b2))
    return mo.ema(n, m, b1) if nesterov else m


@_piece.register_view(ScaleByAdoptState)
def _adopt_view(state: ScaleByAdoptState, grads: Any) -> _piece.View:
    del grads
    last = state.last_step
    nu = jax.tree.map(_piece.real, state.nu)

    def scale(x: jax.Array) -> jax.Array:
        one = jnp.ones([], x.dtype)
        return normalized(one, x, state.eps_floor.astype(x.dtype), last.eps.astype(x.dtype))

    m_hat = _piece.first_moment_view(state.mu, last)
    return _piece.View(nu, _piece.each(nu, scale), False, m_hat, nu)


def _after_first_step(weight_decay: Any) -> Any:
    """``weight_decay`` as a schedule that is 0 at the first step, which only sets ``nu``
    (where the authors' code and timm skip the whole update, decay included)."""
    if mo.is_static_zero(weight_decay):
        return weight_decay

    def decay(count: jax.Array) -> jax.Array:
        return jnp.where(count > 0, mo.rate_at(weight_decay, count), 0)

    return decay


def adopt(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.9999,
    eps: float = 1e-6,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = clip_quarter_root,
    clip_step: ClipStep = "previous",
    eps_mode: AdoptEpsMode = "max",
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    decoupled_weight_decay: bool = False,
    mask: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""ADOPT (Taniguchi et al. 2024): scale_by_adopt, weight decay, learning rate.

    Update rule::

        g = g + weight_decay * param                      (L2: decoupled_weight_decay=False)
        t = 1:  v = |g|**2;  update = 0                    (initialization only)
        t > 1:  m = b1*m + (1-b1) * clip(g / max(sqrt(v), eps), clip_value_fn(t-1))
                v = b2*v + (1-b2)*|g|**2
                update = -learning_rate * m
        decoupled_weight_decay=True:  no L2;  update = -learning_rate * (m + weight_decay * param)
                                      for t > 1 (nothing at t = 1)

    In the notation of :func:`~adamjax.scale_by_adopt`:

    .. math::

        \theta_t = \theta_{t-1} - \eta_t\, m_t, \qquad
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\,
        \mathrm{clip}\!\left(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)}, c_t\right)

    With the defaults this is ``optax.contrib.adopt`` (whose positional parameters it keeps) and
    the authors' ``ADOPT``; ``clip_value_fn=lambda x: x**0.333`` is ``timm.optim.Adopt``;
    ``clip_step="current"`` is ``pytorch_optimizer.ADOPT`` (see
    :func:`~adamjax.scale_by_adopt`). The weight decay is the authors', timm's and
    pytorch_optimizer's: L2 by default, decoupled with ``decoupled_weight_decay`` (their
    ``decouple``, ``decoupled``, ``weight_decouple``). The authors and timm skip the decoupled
    decay at the first step, as here; pytorch_optimizer decays there too.

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: decay of the momentum, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      eps: the floor of :math:`\sqrt{v}` (or its addition, see ``eps_mode``), >= 0.
      mu_dtype: storage of the momentum: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nesterov: Nesterov's look-ahead of the momentum (``optax.contrib.adopt``).
      use_clipping: clip the normalized gradient.
      clip_value_fn: the clip value as a function of the step, default :math:`x^{1/4}`
        (under ``optax.inject_hyperparams``, name it in ``static_args``).
      clip_step: ``"previous"`` (paper, authors, optax, timm) or ``"current"``
        (pytorch_optimizer).
      eps_mode: ``"max"`` (every reference), ``"denominator"`` (Adam's placement) or
        ``"atan2"`` (the division by :math:`\sqrt{v}` becomes an atan2, eps unused).
      weight_decay: :math:`\lambda`, a number >= 0 or a schedule; L2 unless
        ``decoupled_weight_decay``. ``update`` needs ``params`` unless it is the constant 0.
      decoupled_weight_decay: decay :math:`\theta \leftarrow \theta - \eta_t\lambda\theta` next
        to the ADOPT step instead.
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      nu_dtype: storage of the second moment, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_adopt,
      scale_by_learning_rate)`` with the decay placed as :func:`~adamjax.adamax` places it.

    References:
      Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal
      Rate", NeurIPS 2024; code: github.com/iShohei220/adopt.

    Example:
      >>> tx = adamjax.adopt(learning_rate=1e-3)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "adopt"
    piece = _adopt_moments(
        fn, b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype, nesterov=nesterov,
        use_clipping=use_clipping, clip_value_fn=clip_value_fn, clip_step=clip_step,
        eps_mode=eps_mode, nu_dtype=nu_dtype,
    )  # fmt: skip
    v.check_non_negative(fn, "weight_decay", weight_decay, schedule_ok=True)
    v.check_bool(fn, "decoupled_weight_decay", decoupled_weight_decay)
    if decoupled_weight_decay:
        weight_decay = _after_first_step(weight_decay)
    return _scaling.torch_style_chain(
        fn, piece, learning_rate=learning_rate, weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay, mask=mask,
    )  # fmt: skip
