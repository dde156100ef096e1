r"""Yogi (Zaheer et al. 2018): Adam with an additive second-moment update. Its piece, its alias
and its diagnostics view."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _adam, _formats, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v


class ScaleByYogiState(NamedTuple):
    r"""State of scale_by_yogi.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t`, in ``mu_dtype``.
      nu: Yogi's second moment :math:`v_t`, real, in ``nu_dtype``.
      last_step: the :class:`~adamjax.StepScalars` of the latest update (corrections 1 with
        ``bias_correction=False``).

    Both moments start from ``initial_accumulator_value``; the state holds zeros until the first
    update, which reads them as that value (so every storage format, 8-bit included, needs no
    special initial encoding).
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    last_step: mo.StepScalars


def yogi_moment(g2: jax.Array, nu: jax.Array, b2: Any) -> jax.Array:
    r"""Yogi's second moment :math:`v_t = v_{t-1} - (1-\beta_2)\,\mathrm{sign}(v_{t-1} - g_t^2)\,
    g_t^2`, from ``g2`` :math:`= |g_t|^2`: it moves towards :math:`g_t^2` by a step that does not
    scale with :math:`v_{t-1}`, unlike Adam's EMA."""
    one_minus = 1 - mo.as_scalar(b2, mo.real_dtype(nu.dtype))
    return nu - one_minus * jnp.sign(nu - g2) * g2


def scale_by_yogi(
    b1: float | jax.Array | optax.Schedule = 0.9,
    b2: float | jax.Array | optax.Schedule = 0.999,
    eps: float | jax.Array = 1e-3,
    eps_root: float | jax.Array = 0.0,
    initial_accumulator_value: float = 1e-6,
    *,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by Yogi's moments (Zaheer et al. 2018).

    Update rule::

        m = b1*m + (1-b1)*g                           (m and v start at initial_accumulator_value)
        v = v - (1-b2) * sign(v - |g|**2) * |g|**2
        update = m_hat / (sqrt(v_hat + eps_root) + eps)
        m_hat = m / (1 - b1**t);  v_hat = v / (1 - b2**t)          (t = 1, 2, ...)
        bias_correction_mu=False: m_hat = m;  bias_correction_nu=False: v_hat = v

    .. math::

        v_t = v_{t-1} - (1-\beta_2)\,\mathrm{sign}(v_{t-1} - g_t^2)\, g_t^2, \qquad
        u_t = \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)

    The defaults are ``optax.scale_by_yogi``'s and ``pytorch_optimizer.Yogi``'s: both moments
    start at ``initial_accumulator_value`` and both are bias-corrected. The paper's Algorithm 2
    corrects neither (``bias_correction_mu=False, bias_correction_nu=False``);
    ``pytorch_optimizer.Yogi(adam_debias=True)`` corrects only :math:`v`
    (``bias_correction_mu=False``).

    Args:
      b1: :math:`\beta_1`, in [0, 1), or a schedule.
      b2: :math:`\beta_2`, in [0, 1), or a schedule.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      initial_accumulator_value: the value both moments start from, >= 0.
      bias_correction_mu: divide :math:`m_t` by :math:`1 - \beta_1^t`.
      bias_correction_nu: divide :math:`v_t` by :math:`1 - \beta_2^t`.
      mu_dtype: storage of ``mu``: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of ``nu``, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByYogiState`.

    References:
      Zaheer, Reddi, Sachan, Kale & Kumar, "Adaptive Methods for Nonconvex Optimization",
      NeurIPS 2018.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_yogi(), optax.scale_by_learning_rate(1e-2))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    return _yogi_moments(
        "scale_by_yogi", b1=b1, b2=b2, eps=eps, eps_root=eps_root,
        initial_accumulator_value=initial_accumulator_value,
        bias_correction_mu=bias_correction_mu, bias_correction_nu=bias_correction_nu,
        mu_dtype=mu_dtype, nu_dtype=nu_dtype,
    )  # fmt: skip


def _yogi_moments(
    fn: str,
    *,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    initial_accumulator_value: Any,
    bias_correction_mu: bool,
    bias_correction_nu: bool,
    mu_dtype: Any,
    nu_dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    _piece.check_moment_options(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    v.check_non_negative(fn, "initial_accumulator_value", initial_accumulator_value)
    v.check_bool(fn, "bias_correction_mu", bias_correction_mu)
    v.check_bool(fn, "bias_correction_nu", bias_correction_nu)

    def init_fn(params: optax.Params) -> ScaleByYogiState:
        _piece.check_params(fn, params, mu_dtype, b1=b1, b2=b2)
        return ScaleByYogiState(
            count=jnp.zeros([], jnp.int32),
            mu=_piece.zeros_moment(params, mu_dtype, real=False),
            nu=_piece.zeros_moment(params, nu_dtype, real=True),
            last_step=mo.StepScalars.initial(_piece.scalar_dtype(params)),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        step = mo.moment_step(b1, b2, eps, eps_root, "paper", state.count, state.last_step)
        if not bias_correction_mu:
            step = step._replace(b1=_adam._uncorrected(step.b1))
        if not bias_correction_nu:
            step = step._replace(b2=_adam._uncorrected(step.b2))
        first = state.count == 0

        def leaf(g, m, nu, *, settle):
            start = mo.as_scalar(initial_accumulator_value, mo.real_dtype(nu.dtype))
            m, nu = jnp.where(first, start, m), jnp.where(first, start, nu)
            m = mo.ema(g, m, step.b1.rate)
            nu = yogi_moment(mo.squared_magnitude(g), nu, step.b2.rate)
            m, nu = settle(m, nu)
            v_hat = mo.corrected(nu, step.b2)
            return mo.precondition(mo.corrected(m, step.b1), v_hat, step.eps, step.eps_root)

        stored = _formats.adam_stored(state, mu_dtype, nu_dtype)
        updates, (mu, nu) = _formats.update_leaves(fn, leaf, updates, stored, step.count)
        dtype = state.last_step.m_correction.dtype
        return updates, ScaleByYogiState(step.count, mu, nu, step.record(dtype))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


_piece.register_view(ScaleByYogiState)(_piece.adam_view)


def yogi(
    learning_rate: _piece.ScalarOrSchedule = 1e-2,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.999,
    eps: float = 1e-3,
    *,
    eps_root: float = 0.0,
    initial_accumulator_value: float = 1e-6,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    decoupled_weight_decay: bool = True,
    mask: Any | None = None,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Yogi (Zaheer et al. 2018): Adam whose second moment moves additively towards g**2.

    Update rule::

        m = b1*m + (1-b1)*g                           (m and v start at initial_accumulator_value)
        v = v - (1-b2) * sign(v - |g|**2) * |g|**2
        d = m / (1 - b1**t) / (sqrt(v / (1 - b2**t) + eps_root) + eps)     (t = 1, 2, ...)
        update = -learning_rate * (d + weight_decay * param)
        decoupled_weight_decay=False:  g = g + weight_decay * param first;  update = -lr * d

    .. math::

        v_t = v_{t-1} - (1-\beta_2)\,\mathrm{sign}(v_{t-1} - g_t^2)\, g_t^2, \qquad
        \theta_t = \theta_{t-1} - \eta_t\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)

    With the defaults this is ``optax.yogi`` (whose positional parameters it keeps) and
    ``pytorch_optimizer.Yogi`` (whose decoupled decay, ``weight_decouple=True``, is the default
    here too). The paper's Algorithm 2 has no bias correction
    (``bias_correction_mu=False, bias_correction_nu=False``). See :func:`~adamjax.scale_by_yogi`.

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule (paper: 1e-2).
      b1: :math:`\beta_1`, in [0, 1), or a schedule.
      b2: :math:`\beta_2`, in [0, 1), or a schedule.
      eps: added to the denominator outside the square root, >= 0 (paper: 1e-3).
      eps_root: added inside the square root, >= 0.
      initial_accumulator_value: the value both moments start from, >= 0.
      bias_correction_mu: divide :math:`m_t` by :math:`1 - \beta_1^t`.
      bias_correction_nu: divide :math:`v_t` by :math:`1 - \beta_2^t`.
      weight_decay: :math:`\lambda`, a number >= 0 or a schedule.
      decoupled_weight_decay: decoupled decay :math:`\theta \leftarrow \theta -
        \eta_t\lambda\theta` (default, ``pytorch_optimizer``'s ``weight_decouple=True``);
        ``False`` adds :math:`\lambda\theta` to the gradient (L2).
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      mu_dtype: storage of the first moment: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of the second moment, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` chaining :func:`~adamjax.scale_by_yogi` with
      the weight decay and the learning rate.

    References:
      Zaheer, Reddi, Sachan, Kale & Kumar, "Adaptive Methods for Nonconvex Optimization",
      NeurIPS 2018.

    Example:
      >>> tx = adamjax.yogi(learning_rate=1e-2)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "yogi"
    piece = _yogi_moments(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
        initial_accumulator_value=initial_accumulator_value,
        bias_correction_mu=bias_correction_mu, bias_correction_nu=bias_correction_nu,
        mu_dtype=mu_dtype, nu_dtype=nu_dtype,
    )  # fmt: skip
    return _scaling.torch_style_chain(
        fn, piece, learning_rate=learning_rate, weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay, mask=mask,
    )  # fmt: skip
