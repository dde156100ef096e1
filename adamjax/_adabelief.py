r"""AdaBelief (Zhuang et al. 2020): Adam whose second moment is the variance of the gradient
around its EMA, the "belief". Its piece, its alias and its diagnostics view."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _formats, _piece, _radam, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v


class ScaleByBeliefState(NamedTuple):
    r"""State of scale_by_belief.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t`, in ``mu_dtype``.
      nu: raw second moment :math:`s_t` (``eps_root`` included), real, in ``nu_dtype``.
      last_step: the :class:`~adamjax.StepScalars` of the latest update (its ``eps_root`` is 0:
        ``eps_root`` lives in :math:`s_t`).
      rectification: scalar, the factor of the latest adaptive step: 1 without ``rectify``;
        with it, RAdam's :math:`r_t`, or 0 when the step was momentum SGD.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    last_step: mo.StepScalars
    rectification: jax.Array


def belief_moment(g: jax.Array, m: jax.Array, s: jax.Array, b2: Any, eps_root: Any) -> jax.Array:
    r"""AdaBelief's second moment :math:`s_t = \beta_2 s_{t-1} + (1-\beta_2)|g_t - m_t|^2 +
    \epsilon_{root}`, where :math:`m_t` is the *updated* first moment; ``eps_root`` accumulates in
    the state as in the authors' code and optax."""
    s = mo.ema(mo.squared_magnitude(g - m), s, b2)
    return s + mo.as_scalar(eps_root, mo.real_dtype(s.dtype))


def scale_by_belief(
    b1: float | jax.Array | optax.Schedule = 0.9,
    b2: float | jax.Array | optax.Schedule = 0.999,
    eps: float | jax.Array = 1e-16,
    eps_root: float | jax.Array = 1e-16,
    *,
    nesterov: bool = False,
    rectify: bool = False,
    threshold: float = 5.0,
    eps_mode: mo.EpsMode = "paper",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by AdaBelief's moments (Zhuang et al. 2020).

    Update rule::

        m = b1*m + (1-b1)*g
        s = b2*s + (1-b2)*|g - m|**2 + eps_root             (eps_root stays in s)
        update = m_hat / (sqrt(s / (1 - b2**t)) + eps)       m_hat = m / (1 - b1**t)
        eps_mode="hat":  update = sqrt(1-b2**t)/(1-b1**t) * m / (sqrt(s) + eps)
        rectify=True:    update = r * (the above)  if rho > threshold,  else m_hat   (as RAdam)

    .. math::

        s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon_{root}, \qquad
        u_t = \frac{\hat m_t}{\sqrt{s_t/(1-\beta_2^t)} + \epsilon}

    With the defaults this is ``optax.scale_by_belief`` and the authors' ``adabelief_pytorch``
    ``AdaBelief(rectify=False)`` (both add ``eps`` to :math:`s_t` in place, i.e.
    ``eps_root=eps``). ``rectify=True`` is RAdam's rectification (see
    :func:`~adamjax.scale_by_radam`, whose :math:`r_t` it reuses); with ``eps_mode="hat"`` it is
    the authors' default ``AdaBelief()`` (0.2.x: ``rectify=True``) and
    ``pytorch_optimizer.AdaBelief(rectify=True)``, which both divide the rectified step by
    :math:`\sqrt{s_t} + \epsilon` (the :math:`\hat\epsilon` form) and take momentum-SGD steps
    while :math:`\rho_t < 5`.

    Args:
      b1: :math:`\beta_1`, in [0, 1), or a schedule.
      b2: :math:`\beta_2`, in [0, 1), or a schedule (a constant with ``rectify``).
      eps: added to the denominator outside the square root, >= 0, placed by ``eps_mode``.
      eps_root: added to :math:`s_t` at every step, >= 0.
      nesterov: Dozat's Nesterov estimate of the first moment, as
        ``optax.scale_by_belief(nesterov=True)``.
      rectify: RAdam's rectification of the adaptive step.
      threshold: with ``rectify``, the :math:`\rho_t` above which the adaptive step is used,
        >= 4.
      eps_mode: ``"paper"`` (optax, the authors' ``rectify=False``) or ``"hat"`` (the authors'
        ``rectify=True``).
      mu_dtype: storage of ``mu``: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of ``nu``, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByBeliefState`.

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
      Gradients", NeurIPS 2020.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_belief(), optax.scale_by_learning_rate(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    return _belief_moments(
        "scale_by_belief", b1=b1, b2=b2, eps=eps, eps_root=eps_root, nesterov=nesterov,
        rectify=rectify, threshold=threshold, eps_mode=eps_mode, mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )  # fmt: skip


def _belief_moments(
    fn: str,
    *,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    nesterov: bool,
    rectify: bool,
    threshold: Any,
    eps_mode: str,
    mu_dtype: Any,
    nu_dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    _piece.check_moment_options(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    v.check_choice(fn, "eps_mode", eps_mode, mo.EPS_MODES)
    v.check_bool(fn, "nesterov", nesterov)
    v.check_bool(fn, "rectify", rectify)
    v.check_range(
        fn, "threshold", threshold, low=4.0, why="the rectification term is undefined below 4"
    )
    if rectify and mo.is_scheduled(b2):
        raise ValueError(
            f"{fn}: b2 must be a constant with rectify=True, got the schedule {b2!r}; RAdam's "
            "rectification term is derived for a constant b2."
        )

    def init_fn(params: optax.Params) -> ScaleByBeliefState:
        _piece.check_params(fn, params, mu_dtype, b1=b1, b2=b2)
        dtype = _piece.scalar_dtype(params)
        return ScaleByBeliefState(
            count=jnp.zeros([], jnp.int32),
            mu=_piece.zeros_moment(params, mu_dtype, real=False),
            nu=_piece.zeros_moment(params, nu_dtype, real=True),
            last_step=mo.StepScalars.initial(dtype),
            rectification=jnp.zeros([], dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        # eps_root is added to s itself, so the denominator gets no eps_root of its own.
        step = mo.moment_step(
            b1, b2, eps, 0.0, eps_mode, state.count, state.last_step, nesterov=nesterov
        )
        dtype = state.rectification.dtype
        if rectify:
            rho, rectification = _radam.radam_rectification(b2, step.count, dtype)
            adaptive = rho > threshold
        else:
            rectification, adaptive = jnp.ones([], dtype), True

        def leaf(g, m, s, *, settle):
            m = mo.ema(g, m, step.b1.rate)
            s = belief_moment(g, m, s, step.b2.rate, eps_root)  # from m as computed
            m, s = settle(m, s)
            if step.ahead is None:
                m_hat = mo.corrected(m, step.b1)
            else:
                m_hat = mo.nesterov_estimate(m, g, step.b1, step.ahead)
            direction = mo.precondition(m_hat, mo.corrected(s, step.b2), step.eps, 0.0)
            if not rectify:
                return direction
            r = rectification.astype(mo.real_dtype(s.dtype))
            return jnp.where(adaptive, r * direction, m_hat)

        stored = _formats.adam_stored(state, mu_dtype, nu_dtype)
        updates, (mu, nu) = _formats.update_leaves(fn, leaf, updates, stored, step.count)
        taken = jnp.where(adaptive, rectification, 0).astype(dtype)
        return updates, ScaleByBeliefState(step.count, mu, nu, step.record(dtype), taken)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@_piece.register_view(ScaleByBeliefState)
def _belief_view(state: ScaleByBeliefState, grads: Any) -> _piece.View:
    # RAdam's view reads the same fields: Adam's, scaled by the recorded rectification.
    view = _radam._radam_view(state, grads)
    return view._replace(scalars={"adabelief/rectification": state.rectification})


def adabelief(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
    rectify: bool = False,
    threshold: float = 5.0,
    eps_mode: mo.EpsMode = "paper",
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    decoupled_weight_decay: bool = True,
    mask: Any | None = None,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdaBelief (Zhuang et al. 2020): Adam scaled by the belief in the observed gradient.

    Update rule::

        m = b1*m + (1-b1)*g
        s = b2*s + (1-b2)*|g - m|**2 + eps_root             (eps_root stays in s)
        d = m / (1 - b1**t) / (sqrt(s / (1 - b2**t)) + eps)  (t = 1, 2, ...)
        update = -learning_rate * (d + weight_decay * param)
        rectify=True:  d = r * d  if rho > threshold,  else m / (1 - b1**t)   (as RAdam)
        decoupled_weight_decay=False:  g = g + weight_decay * param first;  update = -lr * d

    .. math::

        s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - m_t)^2 + \epsilon_{root}, \qquad
        \theta_t = \theta_{t-1} - \eta_t \frac{\hat m_t}{\sqrt{s_t/(1-\beta_2^t)} + \epsilon}

    With the defaults this is ``optax.adabelief`` (whose positional parameters it keeps),
    ``pytorch_optimizer.AdaBelief()`` and the authors' ``adabelief_pytorch.AdaBelief(
    rectify=False)``; the authors' default (0.2.x: ``eps=1e-16, weight_decouple=True,
    rectify=True``) is ``rectify=True, eps_mode="hat"``. Both torch packages decay decoupled
    (``p *= 1 - lr*wd``), the default here. See :func:`~adamjax.scale_by_belief`.

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: :math:`\beta_1`, in [0, 1), or a schedule.
      b2: :math:`\beta_2`, in [0, 1), or a schedule (a constant with ``rectify``).
      eps: added to the denominator, >= 0, placed by ``eps_mode``.
      eps_root: added to :math:`s_t` at every step, >= 0.
      nesterov: Dozat's Nesterov estimate of the first moment (``optax.adabelief``'s switch).
      rectify: RAdam's rectification (the authors' ``rectify``).
      threshold: with ``rectify``, the :math:`\rho_t` above which the adaptive step is used.
      eps_mode: ``"paper"`` or ``"hat"`` (the authors' rectified step), see
        :func:`~adamjax.scale_by_belief`.
      weight_decay: :math:`\lambda`, a number >= 0 or a schedule.
      decoupled_weight_decay: decoupled decay (default; the torch packages'
        ``weight_decouple=True``); ``False`` adds :math:`\lambda\theta` to the gradient.
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      mu_dtype: storage of the first moment: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of the second moment, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` chaining :func:`~adamjax.scale_by_belief`
      with the weight decay and the learning rate.

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
      Gradients", NeurIPS 2020.

    Example:
      >>> tx = adamjax.adabelief(learning_rate=1e-3)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "adabelief"
    piece = _belief_moments(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, nesterov=nesterov, rectify=rectify,
        threshold=threshold, eps_mode=eps_mode, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
    )  # fmt: skip
    return _scaling.torch_style_chain(
        fn, piece, learning_rate=learning_rate, weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay, mask=mask,
    )  # fmt: skip
