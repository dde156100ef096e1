r"""Rectified Adam (Liu et al. 2020): its piece, its alias and its diagnostics view."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _formats, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v


class ScaleByRadamState(NamedTuple):
    r"""State of scale_by_radam: the fields of ScaleByAdamState and the rectification.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t`, in ``mu_dtype``.
      nu: raw second moment :math:`v_t`, real, in ``nu_dtype``.
      last_step: see :class:`~adamjax.ScaleByAdamState`.
      rectification: scalar, :math:`r_t` of the latest update when it took the adaptive step,
        0 when it took the momentum-SGD step (and before the first update).
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    last_step: mo.StepScalars
    rectification: jax.Array


def radam_rectification(b2: float, count: jax.Array, dtype: Any) -> tuple[jax.Array, jax.Array]:
    r"""RAdam's ``(rho_t, r_t)`` at step ``count`` (Liu et al. 2020, eq. 6 and Alg. 2).

    .. math::

        \rho_\infty = \frac{2}{1-\beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t}, \qquad
        r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}.

    :math:`r_t` is only meaningful where :math:`\rho_t > 4`; elsewhere it is returned as 0 (not
    NaN, so gradients through an unselected branch stay finite).
    """
    # rho_t is a difference of two terms near 2/(1-b2) (~2000 for b2=0.999), so both are taken
    # from 1 - b2 through log1p/expm1: with b2**t rounded in float32, as optax computes it, rho_t
    # is off by ~1e-2 in the first steps and r_t by ~0.5%.
    one_minus_b2 = 1 - mo.as_scalar(b2, dtype)
    log_b2 = jnp.log1p(-jnp.asarray(one_minus_b2, dtype))
    t = count.astype(dtype)
    power = jnp.exp(t * log_b2)
    rho_inf = 2 / jnp.asarray(one_minus_b2, dtype) - 1
    rho_t = rho_inf - 2 * t * power / -jnp.expm1(t * log_b2)
    ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
    valid = rho_t > 4
    return rho_t, jnp.where(valid, jnp.sqrt(jnp.where(valid, ratio, 1.0)), 0.0)


def scale_by_radam(
    b1: float | jax.Array | optax.Schedule = 0.9,
    b2: float = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
    eps_mode: mo.EpsMode = "hat",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by Rectified Adam (Liu et al. 2020).

    Update rule::

        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*|g|**2;  m_hat = m / (1 - b1**t)
        rho_inf = 2/(1-b2) - 1;  rho = rho_inf - 2*t*b2**t / (1 - b2**t)     (t = 1, 2, ...)
        r = sqrt((rho-4)*(rho-2)*rho_inf / ((rho_inf-4)*(rho_inf-2)*rho))
        update = r * m_hat * sqrt(1 - b2**t) / (sqrt(v + eps_root) + eps)   if rho > threshold
        update = m_hat                                                      otherwise
        eps_mode="paper":  the first case is r * m_hat / (sqrt(v / (1 - b2**t) + eps_root) + eps)

    While the variance of the adaptive learning rate is intractable (:math:`\rho_t \le`
    ``threshold``) the update is momentum SGD, :math:`\hat m_t`; afterwards it is Adam's
    direction times the rectification :math:`r_t` (see :func:`radam_rectification`):

    .. math::

        u_t = \begin{cases} r_t\, \hat m_t / (\sqrt{\hat v_t + \epsilon_{root,t}} + \epsilon_t)
              & \rho_t > \text{threshold} \\ \hat m_t & \text{otherwise.} \end{cases}

    Conventions: the paper's Algorithm 2 switches at :math:`\rho_t > 4` and has no eps;
    ``torch.optim.RAdam`` switches at :math:`\rho_t > 5` and places eps in the
    :math:`\hat\epsilon` form, :math:`\sqrt{1-\beta_2^t}/(\sqrt{v_t} + \epsilon)`
    (``eps_mode="hat"``, the default here); ``optax.radam`` switches at :math:`\rho_t \ge 5` and
    uses the paper form :math:`\sqrt{\hat v_t} + \epsilon` (``eps_mode="paper"``).

    Args:
      b1: :math:`\beta_1`, in [0, 1), or a schedule (exact bias correction).
      b2: :math:`\beta_2`, in [0, 1); a constant, since :math:`\rho_t` is derived for one.
      eps: added to the denominator, >= 0, placed by ``eps_mode``.
      eps_root: added inside the square root, >= 0.
      threshold: the :math:`\rho_t` above which the adaptive step is used, >= 4 (torch, optax:
        5; paper: 4).
      nesterov: use Dozat's Nesterov estimate of the first moment (see
        :func:`~adamjax.scale_by_adam`) in both phases, as ``optax.scale_by_radam(nesterov=True)``.
      eps_mode: ``"hat"`` (torch, authors' code) or ``"paper"`` (optax).
      mu_dtype: storage of ``mu``: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of ``nu``, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByRadamState`.

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_radam(), optax.scale_by_learning_rate(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    return _radam_moments(
        "scale_by_radam", b1=b1, b2=b2, eps=eps, eps_root=eps_root, threshold=threshold,
        nesterov=nesterov, eps_mode=eps_mode, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
    )  # fmt: skip


def _radam_moments(
    fn: str,
    *,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    threshold: Any,
    nesterov: bool,
    eps_mode: str,
    mu_dtype: Any,
    nu_dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    _piece.check_moment_options(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    v.check_choice(fn, "eps_mode", eps_mode, mo.EPS_MODES)
    v.check_bool(fn, "nesterov", nesterov)
    if mo.is_scheduled(b2):
        raise ValueError(
            f"{fn}: b2 must be a constant, got the schedule {b2!r}; RAdam's rectification term "
            "is derived for a constant b2."
        )
    v.check_range(
        fn, "threshold", threshold, low=4.0, why="the rectification term is undefined below 4"
    )

    def init_fn(params: optax.Params) -> ScaleByRadamState:
        _piece.check_params(fn, params, mu_dtype, b1=b1, b2=b2)
        dtype = _piece.scalar_dtype(params)
        return ScaleByRadamState(
            count=jnp.zeros([], jnp.int32),
            mu=_piece.zeros_moment(params, mu_dtype, real=False),
            nu=_piece.zeros_moment(params, nu_dtype, real=True),
            last_step=mo.StepScalars.initial(dtype),
            rectification=jnp.zeros([], dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        step = mo.moment_step(
            b1, b2, eps, eps_root, eps_mode, state.count, state.last_step, nesterov=nesterov
        )
        dtype = state.rectification.dtype
        rho, rectification = radam_rectification(b2, step.count, dtype)
        adaptive = rho > threshold

        def leaf(g, m, nu, *, settle):
            m = mo.ema(g, m, step.b1.rate)
            nu = mo.ema(mo.squared_magnitude(g), nu, step.b2.rate)
            m, nu = settle(m, nu)
            if step.ahead is None:
                m_hat = mo.corrected(m, step.b1)
            else:
                m_hat = mo.nesterov_estimate(m, g, step.b1, step.ahead)
            direction = mo.precondition(m_hat, mo.corrected(nu, step.b2), step.eps, step.eps_root)
            r = rectification.astype(mo.real_dtype(nu.dtype))
            return jnp.where(adaptive, r * direction, m_hat)

        stored = _formats.adam_stored(state, mu_dtype, nu_dtype)
        updates, (mu, nu) = _formats.update_leaves(fn, leaf, updates, stored, step.count)
        taken = jnp.where(adaptive, rectification, 0).astype(dtype)
        return updates, ScaleByRadamState(step.count, mu, nu, step.record(dtype), taken)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@_piece.register_view(ScaleByRadamState)
def _radam_view(state: ScaleByRadamState, grads: Any) -> _piece.View:
    adam = _piece.adam_view(state, grads)
    r, last = state.rectification, state.last_step

    def scale(x: jax.Array) -> jax.Array:
        # The SGD step (r = 0) multiplies m-hat by 1.
        return jnp.where(r > 0, r.astype(x.dtype) * mo.inverse_denominator(x, last), 1)

    return adam._replace(
        scale_of=_piece.each(adam.statistic, scale), scalars={"radam/rectification": r}
    )


def radam(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    decoupled_weight_decay: bool = False,
    mask: Any | None = None,
    eps_mode: mo.EpsMode = "hat",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""RAdam (Liu et al. 2020): Adam with a rectified adaptive learning rate.

    Update rule::

        g = g + weight_decay * param                      (L2: decoupled_weight_decay=False)
        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*|g|**2;  m_hat = m / (1 - b1**t)
        rho_inf = 2/(1-b2) - 1;  rho = rho_inf - 2*t*b2**t / (1 - b2**t)     (t = 1, 2, ...)
        r = sqrt((rho-4)*(rho-2)*rho_inf / ((rho_inf-4)*(rho_inf-2)*rho))
        d = r * m_hat * sqrt(1 - b2**t) / (sqrt(v + eps_root) + eps)   if rho > threshold (5)
        d = m_hat                                                      otherwise
        update = -learning_rate * d
        eps_mode="paper":  the first case is r * m_hat / (sqrt(v / (1 - b2**t) + eps_root) + eps)
        decoupled_weight_decay=True:  no L2;  update = -learning_rate * (d + weight_decay * param)

    .. math::

        \theta_t = \theta_{t-1} - \eta_t \begin{cases}
        r_t\, \hat m_t \sqrt{1-\beta_2^t} / (\sqrt{v_t} + \epsilon) & \rho_t > \text{threshold}
        \\ \hat m_t & \text{otherwise} \end{cases}

    The defaults (``threshold=5``, ``eps_mode="hat"``) are ``torch.optim.RAdam``'s; the paper's
    Algorithm 2 uses ``threshold=4``; ``optax.radam`` (whose positional parameters this keeps) is
    ``eps_mode="paper"`` (it also switches at :math:`\rho_t \ge 5` rather than :math:`> 5`,
    which only differs if :math:`\rho_t` is exactly 5). See :func:`~adamjax.scale_by_radam`.

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: :math:`\beta_1`, in [0, 1), or a schedule.
      b2: :math:`\beta_2`, a constant in [0, 1).
      eps: >= 0, placed by ``eps_mode``.
      eps_root: added inside the square root, >= 0.
      threshold: :math:`\rho_t` above which the adaptive step is used, >= 4.
      nesterov: Dozat's Nesterov estimate of the first moment, as ``optax.radam(nesterov=True)``.
      weight_decay: :math:`\lambda`, a number >= 0 or a schedule; L2 like ``torch.optim.RAdam``
        unless ``decoupled_weight_decay``.
      decoupled_weight_decay: decoupled decay :math:`\theta \leftarrow \theta -
        \eta_t\lambda\theta` (torch's ``decoupled_weight_decay=True``).
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      eps_mode: ``"hat"`` (torch) or ``"paper"`` (optax).
      mu_dtype: storage of the first moment: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of the second moment, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` chaining :func:`~adamjax.scale_by_radam` with
      the weight decay and the learning rate, as in :func:`~adamjax.nadam`.

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020.

    Example:
      >>> tx = adamjax.radam(learning_rate=1e-3)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "radam"
    piece = _radam_moments(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, threshold=threshold, nesterov=nesterov,
        eps_mode=eps_mode, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
    )  # fmt: skip
    return _scaling.torch_style_chain(
        fn, piece, learning_rate=learning_rate, weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay, mask=mask,
    )  # fmt: skip
