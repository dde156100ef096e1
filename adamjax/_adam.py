r"""Adam, AdamW and AMSGrad: the moment pieces ``scale_by_adam`` and ``scale_by_amsgrad``, their
aliases and their diagnostics views."""

import functools
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _formats, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v

NesterovCorrection = Literal["next", "current"]
NESTEROV_CORRECTIONS: tuple[str, ...] = ("next", "current")


class ScaleByAdamState(NamedTuple):
    r"""State of scale_by_adam.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t`, shaped like the params, in ``mu_dtype``.
      nu: raw (not bias-corrected) second moment :math:`v_t`, real-valued, in ``nu_dtype``.
      last_step: the :class:`~adamjax.StepScalars` of the latest update: the bias corrections
        (which a scheduled ``b1``/``b2`` continues from) and the placed eps, which diagnostics
        read.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    last_step: mo.StepScalars


class ScaleByAmsgradState(NamedTuple):
    r"""State of scale_by_amsgrad.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t`, in ``mu_dtype``.
      nu: raw second moment :math:`v_t`, in ``nu_dtype``.
      nu_max: running maximum, in ``nu_dtype``: of the raw :math:`v_t` when ``max_of="raw"``, of
        the bias-corrected :math:`\hat v_t` when ``max_of="corrected"``.
      last_step: see :class:`ScaleByAdamState`; its ``max_correction`` says which convention
        ``nu_max`` is in.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    nu_max: optax.Updates
    last_step: mo.StepScalars


def scale_by_adam(
    b1: float | jax.Array | optax.Schedule = 0.9,
    b2: float | jax.Array | optax.Schedule = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    eps_mode: mo.EpsMode = "paper",
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by Adam's bias-corrected moments (Kingma & Ba 2015).

    Update rule::

        m = b1*m + (1-b1)*g
        v = b2*v + (1-b2)*|g|**2
        m_hat = m / (1 - b1**t);  v_hat = v / (1 - b2**t)          (t = 1, 2, ...)
        update = m_hat / (sqrt(v_hat + eps_root) + eps)
        eps_mode="hat":  update = sqrt(1-b2**t)/(1-b1**t) * m / (sqrt(v + eps_root) + eps)
        nesterov=True:   m_hat = b1*m / (1 - b1**(t+1)) + (1-b1)*g / (1 - b1**t)

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) |g_t|^2, \\
        u_t &= \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon),
        \quad \hat m_t = \frac{m_t}{1-\beta_1^t},\ \hat v_t = \frac{v_t}{1-\beta_2^t}.

    With ``eps_mode="hat"`` the update is the :math:`\hat\epsilon` form of the paper's §2
    (Keras, TensorFlow),
    :math:`u_t = \sqrt{1-\beta_2^t}/(1-\beta_1^t) \cdot m_t/(\sqrt{v_t+\epsilon_{root}}+\epsilon)`.
    With ``nesterov=True``, :math:`\hat m_t` is replaced by
    :math:`\beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1) g_t/(1-\beta_1^t)`, exactly as in
    ``optax.scale_by_adam(nesterov=True)``/``optax.nadam``. A schedule for ``b1`` or ``b2`` gets
    the exact bias correction :math:`1 - \prod_{i \le t}\beta_i`.

    Args:
      b1: decay of the first moment, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root (keeps the derivative finite when differentiating
        through the update, e.g. in meta-learning), >= 0.
      mu_dtype: storage of ``mu``: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nesterov: use Dozat's Nesterov look-ahead of the first moment.
      eps_mode: ``"paper"`` (torch.optim, optax) or ``"hat"`` (Keras, TensorFlow).
      nu_dtype: storage of ``nu``, as ``mu_dtype`` (real for complex params).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByAdamState`. Updates
      come back in the gradients' dtype; arithmetic runs in at least float32.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_adam(), optax.scale_by_learning_rate(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    return adam_moments(
        "scale_by_adam", b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
        nesterov=nesterov, eps_mode=eps_mode, nu_dtype=nu_dtype,
    )  # fmt: skip


def scale_by_amsgrad(
    b1: float | jax.Array | optax.Schedule = 0.9,
    b2: float | jax.Array | optax.Schedule = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    mu_dtype: Any | None = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    max_of: mo.MaxOf = "raw",
    eps_mode: mo.EpsMode = "paper",
    nesterov: bool = False,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates like Adam, dividing by a running maximum of the second moment ("max-v").

    Update rule::

        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*|g|**2;  m_hat = m / (1 - b1**t)
        max_of="raw":        v_max = max(v_max, v);  v_hat = v_max / (1 - b2**t)
        max_of="corrected":  v_max = max(v_max, v / (1 - b2**t));  v_hat = v_max
        update = m_hat / (sqrt(v_hat + eps_root) + eps)

    AMSGrad (Reddi et al. 2018) never lets the denominator shrink. The two conventions in use
    differ in *what* the maximum is taken of:

    * ``max_of="raw"`` (default; ``torch.optim.Adam(amsgrad=True)``, Keras 3):
      :math:`v^{max}_t = \max(v^{max}_{t-1}, v_t)`, then bias-corrected,
      :math:`u_t = \hat m_t / (\sqrt{v^{max}_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon)`.
    * ``max_of="corrected"`` (``optax.scale_by_amsgrad``):
      :math:`\hat v^{max}_t = \max(\hat v^{max}_{t-1}, \hat v_t)`,
      :math:`u_t = \hat m_t / (\sqrt{\hat v^{max}_t + \epsilon_{root}} + \epsilon)`.

    The moments, eps placement (``eps_mode``) and the optional Nesterov estimate are those of
    :func:`scale_by_adam`.

    Args:
      b1: decay of the first moment, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      mu_dtype: storage of ``mu``, see :func:`scale_by_adam`.
      bias_correction_mu: divide :math:`m_t` by :math:`1 - \beta_1^t` (``optax.amsgrad``'s
        switch; ``False`` uses :math:`m_t` itself).
      bias_correction_nu: divide :math:`v_t` by :math:`1 - \beta_2^t` before the maximum and
        the square root (``False`` uses :math:`v_t` itself; needs ``eps_mode="paper"``).
      max_of: ``"raw"`` or ``"corrected"``, see above.
      eps_mode: ``"paper"`` or ``"hat"``, see :func:`scale_by_adam`.
      nesterov: use Dozat's Nesterov look-ahead of the first moment.
      nu_dtype: storage of ``nu`` and ``nu_max``, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByAmsgradState`.

    References:
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
      optax issue #1389 (why optax's AMSGrad differs from PyTorch's).

    Example:
      >>> tx = optax.chain(adamjax.scale_by_amsgrad(), optax.scale_by_learning_rate(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    return adam_moments(
        "scale_by_amsgrad", b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
        nesterov=nesterov, eps_mode=eps_mode, nu_dtype=nu_dtype, max_of=max_of,
        bias_correction_mu=bias_correction_mu, bias_correction_nu=bias_correction_nu,
    )  # fmt: skip


def adam_moments(
    fn: str,
    *,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    mu_dtype: Any,
    nesterov: bool,
    eps_mode: str,
    nu_dtype: Any,
    max_of: str | None = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    lookahead_correction: str = "next",
) -> optax.GradientTransformationExtraArgs:
    """:func:`scale_by_adam` (``max_of=None``) or :func:`scale_by_amsgrad`, validated under
    ``fn``, the name of the function the user called. ``lookahead_correction="current"`` (timm's
    ``NAdamW``) corrects the Nesterov look-ahead term by the step's own :math:`1 - \\beta_1^t`."""
    _piece.check_moment_options(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    v.check_choice(fn, "eps_mode", eps_mode, mo.EPS_MODES)
    v.check_bool(fn, "nesterov", nesterov)
    v.check_choice(fn, "lookahead_correction", lookahead_correction, NESTEROV_CORRECTIONS)
    if max_of is not None:
        v.check_choice(fn, "max_of", max_of, mo.MAX_OF)
    v.check_bool(fn, "bias_correction_mu", bias_correction_mu)
    v.check_bool(fn, "bias_correction_nu", bias_correction_nu)
    if not bias_correction_nu and eps_mode == "hat":
        raise ValueError(
            f"{fn}: eps_mode='hat' places eps with the second moment's bias correction, so it "
            "needs bias_correction_nu=True; use eps_mode='paper' without the correction"
        )

    def init_fn(params: optax.Params) -> ScaleByAdamState | ScaleByAmsgradState:
        _piece.check_params(fn, params, mu_dtype, b1=b1, b2=b2)
        mu = _piece.zeros_moment(params, mu_dtype, real=False)
        nu = _piece.zeros_moment(params, nu_dtype, real=True)
        last = mo.StepScalars.initial(_piece.scalar_dtype(params), with_max=max_of is not None)
        if max_of is None:
            return ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu, last_step=last)
        # nu and nu_max get buffers of their own: a state donated to a jitted step must not
        # hold the same buffer twice.
        nu_max = _piece.zeros_moment(params, nu_dtype, real=True)
        return ScaleByAmsgradState(jnp.zeros([], jnp.int32), mu, nu, nu_max, last)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        step = mo.moment_step(
            b1, b2, eps, eps_root, eps_mode, state.count, state.last_step, nesterov=nesterov
        )
        if nesterov and lookahead_correction == "current":
            step = step._replace(ahead=step.b1)
        if not bias_correction_mu:
            step = step._replace(b1=_uncorrected(step.b1), ahead=_uncorrected(step.ahead))
        if not bias_correction_nu:
            step = step._replace(b2=_uncorrected(step.b2))

        leaf = functools.partial(adam_leaf, step, max_of)
        stored = _formats.adam_stored(state, mu_dtype, nu_dtype)
        if max_of is not None:
            stored.append(_formats.Stored(state.nu_max, nu_dtype, signed=False))
        updates, moments = _formats.update_leaves(fn, leaf, updates, stored, step.count)
        dtype = state.last_step.m_correction.dtype
        if max_of is None:
            return updates, ScaleByAdamState(step.count, *moments, step.record(dtype))
        max_correction = step.b2.correction if max_of == "raw" else 1
        last = step.record(dtype, max_correction=max_correction)
        return updates, ScaleByAmsgradState(step.count, *moments, last)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def adam_leaf(
    step: mo.MomentStep, max_of: str | None, g: jax.Array, m: jax.Array, nu: jax.Array, *nu_max,
    settle: _formats.Settle,
) -> jax.Array:  # fmt: skip
    """One leaf of Adam (AMSGrad with ``max_of`` and its running maximum ``nu_max``): the new
    moments, stored by ``settle``, and the direction, in the compute dtype."""
    m = mo.ema(g, m, step.b1.rate)
    nu = mo.ema(mo.squared_magnitude(g), nu, step.b2.rate)
    if max_of is None:
        m, nu = settle(m, nu)
        v_hat = mo.corrected(nu, step.b2)
    else:
        # The maximum of nu as computed, not as stored: the stored state is the format's own.
        larger = nu if max_of == "raw" else mo.corrected(nu, step.b2)
        m, nu, new_max = settle(m, nu, jnp.maximum(nu_max[0], larger))
        v_hat = mo.corrected(new_max, step.b2) if max_of == "raw" else new_max
    if step.ahead is None:
        m_hat = mo.corrected(m, step.b1)
    else:
        m_hat = mo.nesterov_estimate(m, g, step.b1, step.ahead)
    return mo.precondition(m_hat, v_hat, step.eps, step.eps_root)


def _uncorrected(decay: mo.Decay | None) -> mo.Decay | None:
    """``decay`` with its bias correction switched off (correction and inverse 1)."""
    if decay is None:
        return None
    one = jnp.ones_like(decay.correction)
    return mo.Decay(decay.rate, one, one)


_piece.register_view(ScaleByAdamState)(_piece.adam_view)


@_piece.register_view(ScaleByAmsgradState)
def _amsgrad_view(state: ScaleByAmsgradState, grads: Any) -> _piece.View:
    del grads
    last = state.last_step
    v_hat = _piece.corrected_tree(state.nu, last.v_correction)
    v_max = _piece.corrected_tree(state.nu_max, last.max_correction)
    scale_of = _piece.each(v_max, lambda x: mo.inverse_denominator(x, last))
    fractions = {"amsgrad/active_fraction": jax.tree.map(jnp.greater, v_max, v_hat)}
    m_hat = _piece.first_moment_view(state.mu, last)
    return _piece.View(v_max, scale_of, False, m_hat, v_max, fractions)


# ---- aliases --------------------------------------------------------------------------------


def _moments_of(fn: str, amsgrad: bool, max_of: str, **options: Any) -> Any:
    v.check_bool(fn, "amsgrad", amsgrad)
    v.check_choice(fn, "max_of", max_of, mo.MAX_OF)
    return adam_moments(fn, max_of=max_of if amsgrad else None, **options)


def adam(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    amsgrad: bool = False,
    max_of: mo.MaxOf = "raw",
    eps_mode: mo.EpsMode = "paper",
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Adam (Kingma & Ba 2015): scale_by_adam, then the learning rate.

    Update rule::

        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*|g|**2
        m_hat = m / (1 - b1**t);  v_hat = v / (1 - b2**t)          (t = 1, 2, ...)
        update = -learning_rate * m_hat / (sqrt(v_hat + eps_root) + eps)

    In the notation of :func:`~adamjax.scale_by_adam`:

    .. math::

        \theta_t = \theta_{t-1} - \eta_t\, \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)

    With the defaults this is ``optax.adam`` and ``torch.optim.Adam`` (the positional parameters
    are optax's, in optax's order). ``eps_mode="hat"`` with ``eps=1e-7`` is
    ``keras.optimizers.Adam``; ``nesterov=True`` is ``optax.nadam``; ``amsgrad=True`` chains
    :func:`~adamjax.scale_by_amsgrad` instead (see :func:`amsgrad`).

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: decay of the first moment, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      mu_dtype: storage of the first moment: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nesterov: Dozat's Nesterov look-ahead, as in ``optax.nadam``.
      amsgrad: keep a running maximum of the second moment.
      max_of: with ``amsgrad``: ``"raw"`` (torch, Keras) or ``"corrected"`` (optax).
      eps_mode: ``"paper"`` (torch, optax) or ``"hat"`` (Keras, TensorFlow).
      nu_dtype: storage of the second moment(s), as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_adam | scale_by_amsgrad,
      scale_by_learning_rate)``.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.

    Example:
      >>> tx = adamjax.adam(learning_rate=1e-3)
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "adam"
    moments = _moments_of(
        fn, amsgrad, max_of, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
        nesterov=nesterov, eps_mode=eps_mode, nu_dtype=nu_dtype,
    )  # fmt: skip
    return optax.chain(moments, _scaling._learning_rate(fn, learning_rate))


def adamw(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: _piece.ScalarOrSchedule = 1e-4,
    mask: Any | None = None,
    *,
    nesterov: bool = False,
    weight_decay_scaling: _scaling.WeightDecayScaling = "learning_rate",
    schedule_multiplier: _piece.ScalarOrSchedule | None = None,
    amsgrad: bool = False,
    max_of: mo.MaxOf = "raw",
    eps_mode: mo.EpsMode = "paper",
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    Update rule::

        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*|g|**2
        m_hat = m / (1 - b1**t);  v_hat = v / (1 - b2**t)          (t = 1, 2, ...)
        d = m_hat / (sqrt(v_hat + eps_root) + eps)
        update = -learning_rate * (d + weight_decay * param)
        weight_decay_scaling="schedule":
            update = -schedule_multiplier * (learning_rate * d + weight_decay * param)

    The positional parameters are ``optax.adamw``'s, in its order. Two conventions scale the decay:

    * ``weight_decay_scaling="learning_rate"`` (default; ``torch.optim.AdamW``, ``optax.adamw``,
      Keras 3 ``AdamW``): the decay is multiplied by the learning rate,

      .. math:: \theta_t = \theta_{t-1} - \eta_t \left(\hat m_t/(\sqrt{\hat v_t} + \epsilon)
                + \lambda \theta_{t-1}\right).

    * ``weight_decay_scaling="schedule"`` (the paper's Algorithm 2): ``learning_rate`` is the base
      rate :math:`\alpha` (a number) and the decay is scaled only by the schedule multiplier
      :math:`s_t` (``schedule_multiplier``, default 1), not by :math:`\alpha`,

      .. math:: \theta_t = \theta_{t-1} - s_t \left(\alpha\, \hat m_t/(\sqrt{\hat v_t} + \epsilon)
                + \lambda \theta_{t-1}\right).

      With a constant rate this equals the default form with ``weight_decay``
      :math:`\lambda/\alpha`.

    Args:
      learning_rate: :math:`\eta_t` (a number >= 0 or a schedule); with ``"schedule"`` scaling,
        the base rate :math:`\alpha` (a number).
      b1: decay of the first moment, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      mu_dtype: storage of the first moment, see :func:`adam`.
      weight_decay: :math:`\lambda`, a number >= 0 or a schedule.
      mask: which leaves to decay: a pytree of bools or a callable on the params (see
        :func:`~adamjax.add_decayed_weights`).
      nesterov: Dozat's Nesterov look-ahead (``optax.nadamw``).
      weight_decay_scaling: ``"learning_rate"`` or ``"schedule"``, see above.
      schedule_multiplier: :math:`s_t` for ``"schedule"`` scaling, a number or a schedule.
      amsgrad: keep a running maximum of the second moment.
      max_of: with ``amsgrad``: ``"raw"`` (torch, Keras) or ``"corrected"`` (optax).
      eps_mode: ``"paper"`` (torch, optax) or ``"hat"`` (Keras ``AdamW``, with eps=1e-7).
      nu_dtype: storage of the second moment(s), as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_adam | scale_by_amsgrad,
      add_decayed_weights, scale_by_learning_rate)``; with ``"schedule"`` scaling the base rate is
      applied before the decay and the multiplier after it. ``update`` needs ``params``.

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.

    Example:
      >>> tx = adamjax.adamw(learning_rate=1e-3, weight_decay=1e-2)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    return _adamw_chain(
        "adamw", learning_rate=learning_rate, weight_decay=weight_decay, mask=mask,
        weight_decay_scaling=weight_decay_scaling, schedule_multiplier=schedule_multiplier,
        amsgrad=amsgrad, max_of=max_of, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
        mu_dtype=mu_dtype, nesterov=nesterov, eps_mode=eps_mode, nu_dtype=nu_dtype,
    )  # fmt: skip


def _adamw_chain(
    fn: str,
    *,
    learning_rate: Any,
    weight_decay: Any,
    mask: Any,
    weight_decay_scaling: str,
    schedule_multiplier: Any,
    amsgrad: bool,
    max_of: str,
    **options: Any,
) -> optax.GradientTransformationExtraArgs:
    """:func:`adamw` and :func:`nadamw`: the moment piece, decoupled decay, learning rate."""
    moments = _moments_of(fn, amsgrad, max_of, **options)
    return _scaling.decoupled_chain(
        fn, moments, learning_rate=learning_rate, weight_decay=weight_decay, mask=mask,
        weight_decay_scaling=weight_decay_scaling, schedule_multiplier=schedule_multiplier,
    )  # fmt: skip


def nadamw(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: _piece.ScalarOrSchedule = 1e-4,
    mask: Any | None = None,
    *,
    nesterov: bool = True,
    lookahead_correction: NesterovCorrection = "next",
    weight_decay_scaling: _scaling.WeightDecayScaling = "learning_rate",
    schedule_multiplier: _piece.ScalarOrSchedule | None = None,
    amsgrad: bool = False,
    max_of: mo.MaxOf = "raw",
    eps_mode: mo.EpsMode = "paper",
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""NAdamW: AdamW with a constant-b1 Nesterov look-ahead of the first moment.

    Update rule::

        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*|g|**2;  v_hat = v / (1 - b2**t)
        m_bar = b1*m / (1 - b1**(t+1)) + (1-b1)*g / (1 - b1**t)     (lookahead "next")
        m_bar = (b1*m + (1-b1)*g) / (1 - b1**t)                    (lookahead "current")
        update = -learning_rate * (m_bar / (sqrt(v_hat + eps_root) + eps) + weight_decay*param)

    .. math::

        \bar m_t = \frac{\beta_1 m_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1) g_t}{1-\beta_1^t},
        \qquad \theta_t = \theta_{t-1} - \eta_t \left(\frac{\bar m_t}{\sqrt{\hat v_t +
        \epsilon_{root}} + \epsilon} + \lambda\theta_{t-1}\right)

    This is :func:`adamw` with ``nesterov=True``: the same pieces, chained the same way. With
    the defaults it is ``optax.nadamw`` (whose positional parameters it keeps, in optax's order).
    ``lookahead_correction="current"`` divides the look-ahead term by :math:`1-\beta_1^t`
    instead of :math:`1-\beta_1^{t+1}`, as timm's ``NAdamW`` does. Both keep :math:`\beta_1`
    constant. It is *not* ``torch.optim.NAdam(decoupled_weight_decay=True)``, whose momentum
    follows Dozat's schedule :math:`\mu_t`: that one is
    ``adamjax.nadam(decoupled_weight_decay=True)``.

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or a schedule (with ``"schedule"`` scaling,
        the base rate, a number).
      b1: decay of the first moment, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      mu_dtype: storage of the first moment, see :func:`adam`.
      weight_decay: decoupled decay :math:`\lambda`, a number >= 0 or a schedule.
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      nesterov: the look-ahead (``optax.nadamw``'s keyword; ``False`` is :func:`adamw`).
      lookahead_correction: ``"next"`` (optax, Dozat) or ``"current"`` (timm ``NAdamW``).
      weight_decay_scaling: ``"learning_rate"`` or ``"schedule"``, see :func:`adamw`.
      schedule_multiplier: :math:`s_t` for ``"schedule"`` scaling, a number or a schedule.
      amsgrad: keep a running maximum of the second moment.
      max_of: with ``amsgrad``: ``"raw"`` (torch, Keras) or ``"corrected"`` (optax).
      eps_mode: ``"paper"`` (torch, optax, timm) or ``"hat"`` (Keras).
      nu_dtype: storage of the second moment(s), as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_adam,
      add_decayed_weights, scale_by_learning_rate)``, as :func:`adamw`. ``update`` needs
      ``params``.

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop.
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.

    Example:
      >>> tx = adamjax.nadamw(learning_rate=1e-3, weight_decay=1e-2)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    return _adamw_chain(
        "nadamw", learning_rate=learning_rate, weight_decay=weight_decay, mask=mask,
        weight_decay_scaling=weight_decay_scaling, schedule_multiplier=schedule_multiplier,
        amsgrad=amsgrad, max_of=max_of, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
        mu_dtype=mu_dtype, nesterov=nesterov, eps_mode=eps_mode, nu_dtype=nu_dtype,
        lookahead_correction=lookahead_correction,
    )  # fmt: skip


def amsgrad(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    max_of: mo.MaxOf = "raw",
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
    weight_decay_scaling: _scaling.WeightDecayScaling = "learning_rate",
    schedule_multiplier: _piece.ScalarOrSchedule | None = None,
    nesterov: bool = False,
    eps_mode: mo.EpsMode = "paper",
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AMSGrad (Reddi et al. 2018): max-v moment scaling, optional decay, learning rate.

    Update rule::

        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*|g|**2;  m_hat = m / (1 - b1**t)
        v_max = max(v_max, v);  v_hat = v_max / (1 - b2**t)          (max_of="raw")
        v_max = max(v_max, v / (1 - b2**t));  v_hat = v_max           (max_of="corrected")
        update = -learning_rate * (m_hat / (sqrt(v_hat + eps_root) + eps) + weight_decay * param)

    The positional parameters are ``optax.amsgrad``'s. With ``weight_decay=0`` (default) this
    computes exactly ``adam(amsgrad=True)``; with a positive ``weight_decay`` it is
    ``adamw(amsgrad=True)``. The default ``max_of="raw"`` is ``torch.optim.Adam(amsgrad=True)``
    (and Keras 3 with ``eps_mode="hat"``, ``eps=1e-7``); ``max_of="corrected"`` is
    ``optax.amsgrad``.

    .. math::

        v^{max}_t = \max(v^{max}_{t-1}, v_t), \qquad
        \theta_t = \theta_{t-1} - \eta_t \left(\frac{\hat m_t}{\sqrt{v^{max}_t/(1-\beta_2^t)}
        + \epsilon} + \lambda\theta_{t-1}\right)

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: decay of the first moment, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      mu_dtype: storage of the first moment, see :func:`adam`.
      bias_correction_mu: correct :math:`m_t` (see :func:`~adamjax.scale_by_amsgrad`).
      bias_correction_nu: correct :math:`v_t` (see :func:`~adamjax.scale_by_amsgrad`).
      max_of: ``"raw"`` (torch, Keras) or ``"corrected"`` (optax).
      weight_decay: decoupled decay :math:`\lambda` (see :func:`adamw`), a number >= 0 or a
        schedule. ``update`` needs ``params`` unless it is the constant 0.
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      weight_decay_scaling: ``"learning_rate"`` or ``"schedule"``, see :func:`adamw`.
      schedule_multiplier: the schedule multiplier for ``"schedule"`` scaling.
      nesterov: Dozat's Nesterov look-ahead of the first moment.
      eps_mode: ``"paper"`` (torch, optax) or ``"hat"`` (Keras, TensorFlow).
      nu_dtype: storage of ``nu`` and ``nu_max``, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_amsgrad,
      add_decayed_weights, scale_by_learning_rate)``.

    References:
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.

    Example:
      >>> tx = adamjax.amsgrad(learning_rate=1e-3)
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "amsgrad"
    moments = adam_moments(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov,
        eps_mode=eps_mode, nu_dtype=nu_dtype, max_of=max_of,
        bias_correction_mu=bias_correction_mu, bias_correction_nu=bias_correction_nu,
    )  # fmt: skip
    return _scaling.decoupled_chain(
        fn, moments, learning_rate=learning_rate, weight_decay=weight_decay, mask=mask,
        weight_decay_scaling=weight_decay_scaling, schedule_multiplier=schedule_multiplier,
    )  # fmt: skip
