r"""AdEMAMix (Pagliardini et al. 2024) and Simplified AdEMAMix (Morwani et al. 2025): their pieces,
their aliases, the warm-up schedules of the AdEMAMix paper and the diagnostics views."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _formats, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v


class ScaleByAdemamixState(NamedTuple):
    r"""State of scale_by_ademamix.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: the fast EMA :math:`m_{1,t}` (decay ``b1``, bias-corrected in the update), in
        ``mu_dtype``.
      nu: raw second moment :math:`\nu_t`, real, in ``nu_dtype``.
      mu_slow: the slow EMA :math:`m_{2,t}` (decay ``b3``, never bias-corrected), in ``mu_dtype``.
      last_step: the :class:`~adamjax.StepScalars` of the latest update (the bias corrections of
        ``mu`` and ``nu`` and the eps).
      last_alpha: scalar, :math:`\alpha_t` of the latest update (0 before the first).
      last_b3: scalar, :math:`\beta_{3,t}` of the latest update (0 before the first).
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    mu_slow: optax.Updates
    last_step: mo.StepScalars
    last_alpha: jax.Array
    last_b3: jax.Array


class ScaleBySimplifiedAdemamixState(NamedTuple):
    r"""State of scale_by_simplified_ademamix.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: the accumulated momentum :math:`m_t = \beta_1 m_{t-1} + g_t` (a sum, not an EMA; no
        bias correction), in ``mu_dtype``.
      nu: raw second moment :math:`\nu_t`, real, in ``nu_dtype``.
      last_step: the :class:`~adamjax.StepScalars` of the latest update (``m_correction`` is 1).
      last_alpha: scalar, :math:`\alpha_t` of the latest update (0 before the first).
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    last_step: mo.StepScalars
    last_alpha: jax.Array


# ---- the warm-up schedules ------------------------------------------------------------------


def _schedule_step(fn: str, warmup: Any, first_step: Any) -> Any:
    """Checks ``warmup`` and ``first_step``; returns ``t(count)``, the paper's step as a float."""
    v.check_integer(fn, "warmup", warmup, minimum=1, array_ok=False)
    v.check_integer(fn, "first_step", first_step, minimum=0, array_ok=False)

    def step(count: jax.Array) -> jax.Array:
        return jnp.asarray(count, jnp.result_type(float)) + first_step

    return step


def ademamix_alpha_schedule(
    alpha: float = 5.0, warmup: int = 1, alpha_start: float = 0.0, *, first_step: int = 1
) -> optax.Schedule:
    r"""AdEMAMix's linear warm-up of alpha, as an optax schedule of the update count.

    Update rule::

        t = count + first_step
        alpha_t = alpha_start + (alpha - alpha_start) * t / warmup     (t < warmup)
        alpha_t = alpha                                                (t >= warmup)

    .. math::

        \alpha_t = \min\!\left(\tfrac{t}{T_\alpha}, 1\right)\alpha
                   + \left(1 - \min\!\left(\tfrac{t}{T_\alpha}, 1\right)\right)\alpha_{start}

    Pass it as ``alpha`` of :func:`~adamjax.ademamix` (or ``optax.contrib.ademamix``). Like every
    optax schedule it is called with the number of updates already applied (0 at the first
    update); ``first_step`` says which step :math:`t` of the paper that first update is.

    Args:
      alpha: the final :math:`\alpha`, >= 0.
      warmup: :math:`T_\alpha`, the steps to reach it, an integer >= 1.
      alpha_start: the value at :math:`t = 0` (the paper: 0).
      first_step: :math:`t` at the first update: 1 (the paper's Algorithm 1, the authors' PyTorch
        code, ``pytorch_optimizer.AdEMAMix``) or 0 (the authors' optax code, whose first update
        uses ``alpha_start``).

    Returns:
      An optax schedule ``count -> alpha_t`` (float32, float64 with x64).

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older", 2024,
      Algorithm 1 and §3 (the schedulers).

    Example:
      >>> alpha = adamjax.ademamix_alpha_schedule(5.0, warmup=10_000)
      >>> tx = adamjax.ademamix(1e-3, alpha=alpha, b3=adamjax.ademamix_b3_schedule(0.9999, 10_000))
      >>> state = tx.init(params)
    """
    fn = "ademamix_alpha_schedule"
    v.check_non_negative(fn, "alpha", alpha)
    v.check_finite(fn, "alpha_start", alpha_start)
    step = _schedule_step(fn, warmup, first_step)

    def schedule(count: jax.Array) -> jax.Array:
        a = jnp.minimum(step(count) / warmup, 1.0)
        return (1 - a) * alpha_start + a * alpha

    return schedule


def ademamix_b3_schedule(
    b3: float = 0.9999,
    warmup: int = 1,
    b3_start: float = 0.9,
    *,
    first_step: int = 1,
    log_eps: float = 0.0,
) -> optax.Schedule:
    r"""AdEMAMix's warm-up of b3: the EMA's half-life grows linearly, as an optax schedule.

    Update rule::

        t = count + first_step;  a = t / warmup
        h(b) = log(0.5) / log(b + log_eps) - 1                 (half-life of an EMA, minus 1)
        b3_t = 0.5 ** (1 / ((1-a)*h(b3_start) + a*h(b3) + 1))   (t < warmup)
        b3_t = b3                                              (t >= warmup)

    .. math::

        \beta_{3,t} = \exp\!\left(\frac{\ln\beta_{start}\,\ln\beta_3}
            {(1 - t/T_{\beta_3})\ln\beta_3 + (t/T_{\beta_3})\ln\beta_{start}}\right)
            \quad (t < T_{\beta_3}, \ \text{``log\_eps``} = 0)

    A slow EMA with :math:`\beta_3 = 0.9999` from the first step would mostly average the early,
    large gradients; the paper starts it at :math:`\beta_{start} = \beta_1` and lets its
    half-life grow linearly. The same schedule warms up ``b1`` of
    :func:`~adamjax.simplified_ademamix` (the authors' ``beta1_warmup`` from ``min_beta1``).

    Args:
      b3: the final :math:`\beta_3`, in [0, 1).
      warmup: :math:`T_{\beta_3}`, the steps to reach it, an integer >= 1.
      b3_start: :math:`\beta_{start}` at :math:`t = 0`, in [0, 1) (the paper: :math:`\beta_1`).
      first_step: :math:`t` at the first update: 1 (the paper, the authors' PyTorch code,
        ``pytorch_optimizer``) or 0 (the authors' optax code).
      log_eps: in [0, 1e-6], added to the beta inside the logarithm: 0 (the paper, the authors'
        optax code,
        ``pytorch_optimizer.AdEMAMix``) or 1e-8 (the authors' PyTorch code and
        ``pytorch_optimizer.SimplifiedAdEMAMix``'s ``beta1_warmup``).

    Returns:
      An optax schedule ``count -> b3_t`` (float32, float64 with x64).

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older", 2024,
      Algorithm 1 and §3 (the schedulers).

    Example:
      >>> b3 = adamjax.ademamix_b3_schedule(0.9999, warmup=10_000, b3_start=0.9)
      >>> tx = adamjax.ademamix(1e-3, b3=b3, alpha=adamjax.ademamix_alpha_schedule(5.0, 10_000))
      >>> state = tx.init(params)
    """
    fn = "ademamix_b3_schedule"
    v.check_unit_interval(fn, "b3", b3)
    v.check_unit_interval(fn, "b3_start", b3_start)
    v.check_range(fn, "log_eps", log_eps, low=0.0, high=1e-6)
    step = _schedule_step(fn, warmup, first_step)

    def half_life(beta: float, dtype: Any) -> jax.Array:
        return jnp.log(jnp.asarray(0.5, dtype)) / jnp.log(jnp.asarray(beta + log_eps, dtype)) - 1

    def schedule(count: jax.Array) -> jax.Array:
        t = step(count)
        a = t / warmup
        h = (1 - a) * half_life(b3_start, t.dtype) + a * half_life(b3, t.dtype)
        return jnp.where(t < warmup, 0.5 ** (1 / (h + 1)), jnp.asarray(b3, t.dtype))

    return schedule


# ---- AdEMAMix --------------------------------------------------------------------------------


def _ademamix_options(fn: str, *, b3: Any, alpha: Any, **moment_options: Any) -> None:
    _piece.check_moment_options(fn, **moment_options)
    v.check_unit_interval(fn, "b3", b3, schedule_ok=True)
    v.check_non_negative(fn, "alpha", alpha, schedule_ok=True)


def scale_by_ademamix(
    b1: float | jax.Array | optax.Schedule = 0.9,
    b2: float | jax.Array | optax.Schedule = 0.999,
    b3: float | jax.Array | optax.Schedule = 0.9999,
    alpha: float | jax.Array | optax.Schedule = 5.0,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    mu_dtype: Any | None = None,
    *,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by AdEMAMix's mixture of a fast and a slow EMA (Pagliardini et al. 2024).

    Update rule::

        m1 = b1*m1 + (1-b1)*g                  (fast EMA, bias-corrected)
        m2 = b3_t*m2 + (1-b3_t)*g              (slow EMA, not bias-corrected)
        v = b2*v + (1-b2)*|g|**2
        update = (m1 / (1 - b1**t) + alpha_t*m2) / (sqrt(v / (1 - b2**t) + eps_root) + eps)

    .. math::

        m_{1,t} &= \beta_1 m_{1,t-1} + (1-\beta_1) g_t, \qquad
        m_{2,t} = \beta_{3,t} m_{2,t-1} + (1-\beta_{3,t}) g_t, \\
        u_t &= \frac{\hat m_{1,t} + \alpha_t m_{2,t}}{\sqrt{\hat \nu_t + \epsilon_{root}}
               + \epsilon}.

    ``b3`` and ``alpha`` may be optax schedules of the update count (0 at the first update, as
    in ``optax.contrib.scale_by_ademamix``); :func:`~adamjax.ademamix_b3_schedule` and
    :func:`~adamjax.ademamix_alpha_schedule` are the paper's warm-ups.

    Args:
      b1: decay of the fast EMA, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      b3: decay of the slow EMA, in [0, 1), or a schedule.
      alpha: weight of the slow EMA, >= 0, or a schedule.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      mu_dtype: storage of both EMAs: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of ``nu``, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByAdemamixState`.

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older", 2024.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_ademamix(), optax.scale_by_learning_rate(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    return _ademamix_moments(
        "scale_by_ademamix", b1=b1, b2=b2, b3=b3, alpha=alpha, eps=eps, eps_root=eps_root,
        mu_dtype=mu_dtype, nu_dtype=nu_dtype,
    )  # fmt: skip


def _ademamix_moments(
    fn: str,
    *,
    b1: Any,
    b2: Any,
    b3: Any,
    alpha: Any,
    eps: Any,
    eps_root: Any,
    mu_dtype: Any,
    nu_dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    _ademamix_options(
        fn, b3=b3, alpha=alpha, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )  # fmt: skip

    def init_fn(params: optax.Params) -> ScaleByAdemamixState:
        _piece.check_params(fn, params, mu_dtype, b1=b1, b2=b2, b3=b3)
        dtype = _piece.scalar_dtype(params)
        return ScaleByAdemamixState(
            count=jnp.zeros([], jnp.int32),
            mu=_piece.zeros_moment(params, mu_dtype, real=False),
            nu=_piece.zeros_moment(params, nu_dtype, real=True),
            mu_slow=_piece.zeros_moment(params, mu_dtype, real=False),
            last_step=mo.StepScalars.initial(dtype),
            last_alpha=jnp.zeros([], dtype),
            last_b3=jnp.zeros([], dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        step = mo.moment_step(b1, b2, eps, eps_root, "paper", state.count, state.last_step)
        b3_t, alpha_t = mo.rate_at(b3, state.count), mo.rate_at(alpha, state.count)

        def leaf(g, m1, nu, m2, *, settle):
            m1, nu = mo.ema(g, m1, step.b1.rate), mo.ema(mo.squared_magnitude(g), nu, step.b2.rate)
            m1, nu, m2 = settle(m1, nu, mo.ema(g, m2, b3_t))
            mixed = mo.corrected(m1, step.b1) + mo.as_scalar(alpha_t, mo.real_dtype(m2.dtype)) * m2
            return mo.precondition(mixed, mo.corrected(nu, step.b2), step.eps, step.eps_root)

        stored = _formats.adam_stored(state, mu_dtype, nu_dtype)
        stored.append(_formats.Stored(state.mu_slow, mu_dtype, signed=True))
        updates, (mu, nu, mu_slow) = _formats.update_leaves(fn, leaf, updates, stored, step.count)
        dtype = state.last_alpha.dtype
        return updates, ScaleByAdemamixState(
            step.count, mu, nu, mu_slow, step.record(dtype), jnp.asarray(alpha_t, dtype),
            jnp.asarray(b3_t, dtype),
        )  # fmt: skip

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@_piece.register_view(ScaleByAdemamixState)
def _ademamix_view(state: ScaleByAdemamixState, grads: Any) -> _piece.View:
    """Adam's view, with :math:`|\\hat m_1 + \\alpha m_2|` as the step's numerator."""
    del grads
    last = state.last_step
    v_hat = _piece.corrected_tree(state.nu, last.v_correction)
    scale_of = _piece.each(v_hat, lambda x: mo.inverse_denominator(x, last))

    def numerator(m1: Any, m2: Any) -> jax.Array:
        m1 = _piece.real(_formats.decode(m1, signed=True)) / last.m_correction
        m2 = _piece.real(_formats.decode(m2, signed=True))
        return jnp.abs(m1 + state.last_alpha.astype(m2.dtype) * m2)

    mixed = jax.tree.map(numerator, state.mu, state.mu_slow, is_leaf=_formats.is_quantized)
    scalars = {"ademamix/alpha": state.last_alpha, "ademamix/b3": state.last_b3}
    return _piece.View(v_hat, scale_of, False, mixed, v_hat, scalars=scalars)


def ademamix(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.999,
    b3: float | optax.Schedule = 0.9999,
    alpha: float | optax.Schedule = 5.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
    *,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdEMAMix (Pagliardini et al. 2024): AdamW with a second, slow EMA of the gradients.

    Update rule::

        m1 = b1*m1 + (1-b1)*g;  m2 = b3_t*m2 + (1-b3_t)*g;  v = b2*v + (1-b2)*|g|**2
        d = (m1 / (1 - b1**t) + alpha_t*m2) / (sqrt(v / (1 - b2**t) + eps_root) + eps)
        update = -learning_rate * (d + weight_decay * param)

    In the notation of :func:`~adamjax.scale_by_ademamix`:

    .. math::

        \theta_t = \theta_{t-1} - \eta_t \left(\frac{\hat m_{1,t} + \alpha_t m_{2,t}}
                   {\sqrt{\hat\nu_t + \epsilon_{root}} + \epsilon} + \lambda\theta_{t-1}\right)

    The positional parameters are ``optax.contrib.ademamix``'s, in its order, and with constant
    ``b3`` and ``alpha`` this is that function. The paper warms up :math:`\alpha` and
    :math:`\beta_3` over :math:`T_{\alpha,\beta_3}` steps: pass
    ``b3=ademamix_b3_schedule(b3, T, b3_start=b1)`` and ``alpha=ademamix_alpha_schedule(alpha,
    T)``. These reproduce the authors' PyTorch ``AdEMAMix`` with ``log_eps=1e-8`` in the b3
    schedule, ``pytorch_optimizer.AdEMAMix(weight_decouple=True)`` as they are, and the authors'
    optax code with ``first_step=0`` in both (see ``docs/conventions.md``).

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: decay of the fast EMA, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      b3: decay of the slow EMA, in [0, 1), or a schedule of the update count.
      alpha: weight of the slow EMA, >= 0, or a schedule of the update count.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      mu_dtype: storage of both EMAs: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      weight_decay: :math:`\lambda`, decoupled and multiplied by the learning rate, as in the
        paper's Algorithm 1, a number >= 0 or a schedule.
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      nu_dtype: storage of the second moment, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_ademamix,
      add_decayed_weights, scale_by_learning_rate)``.

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older", 2024
      (arXiv:2409.03137); the authors' code, github.com/apple/ml-ademamix.

    Example:
      >>> tx = adamjax.ademamix(learning_rate=1e-3, alpha=5.0)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "ademamix"
    moments = _ademamix_moments(
        fn, b1=b1, b2=b2, b3=b3, alpha=alpha, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )  # fmt: skip
    return _scaling.decoupled_chain(
        fn, moments, learning_rate=learning_rate, weight_decay=weight_decay, mask=mask
    )


# ---- Simplified AdEMAMix ---------------------------------------------------------------------


def scale_by_simplified_ademamix(
    b1: float | jax.Array | optax.Schedule = 0.99,
    b2: float | jax.Array | optax.Schedule = 0.95,
    alpha: float | jax.Array | optax.Schedule = 0.0,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    *,
    bias_correction_mu: bool = False,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by Simplified AdEMAMix (Morwani et al. 2025): one accumulated momentum.

    Update rule::

        m = b1_t*m + g                       (a sum, not an EMA: no (1-b1), no bias correction)
        v = b2*v + (1-b2)*|g|**2
        update = (alpha_t*g + m) / (sqrt(v / (1 - b2**t) + eps_root) + eps)
        bias_correction_mu=True:  n = b1_t*n + 1 (n_0 = 0);  update = update / n

    .. math::

        m_t = \beta_{1,t} m_{t-1} + g_t, \qquad
        u_t = \frac{\alpha_t g_t + m_t}{\sqrt{\hat\nu_t + \epsilon_{root}} + \epsilon}.

    With :math:`\alpha = 0` this is Adam with the learning rate scaled by
    :math:`1/(1-\beta_1)` (once :math:`m_t` has filled) and no first-moment bias correction.

    Args:
      b1: decay of the momentum, in [0, 1), or a schedule (the authors' ``beta1_warmup`` is
        :func:`~adamjax.ademamix_b3_schedule`).
      b2: decay of the second moment, in [0, 1), or a schedule.
      alpha: weight of the current gradient, >= 0, or a schedule of the update count.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      bias_correction_mu: divide the step by :math:`n_t = \sum_{k \le t}\prod_{k < i \le t}
        \beta_{1,i}` (:math:`(1-\beta_1^t)/(1-\beta_1)` for a constant :math:`\beta_1`), the
        authors' ``bias_correction1=True``; off by default, as in their code and optax.
      mu_dtype: storage of ``mu``: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of ``nu``, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state
      :class:`ScaleBySimplifiedAdemamixState`; its ``last_step.m_correction`` is :math:`n_t` (1
      without ``bias_correction_mu``).

    References:
      Morwani et al., "Connections between Schedule-Free Optimizers, AdEMAMix, and
      Accelerated SGD Variants", 2025 (arXiv:2502.02431).

    Example:
      >>> tx = optax.chain(adamjax.scale_by_simplified_ademamix(), optax.scale(-1e-4))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    return _simplified_moments(
        "scale_by_simplified_ademamix", b1=b1, b2=b2, alpha=alpha, eps=eps, eps_root=eps_root,
        bias_correction_mu=bias_correction_mu, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
    )  # fmt: skip


def _simplified_moments(
    fn: str,
    *,
    b1: Any,
    b2: Any,
    alpha: Any,
    eps: Any,
    eps_root: Any,
    bias_correction_mu: bool,
    mu_dtype: Any,
    nu_dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    _piece.check_moment_options(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    v.check_non_negative(fn, "alpha", alpha, schedule_ok=True)
    v.check_bool(fn, "bias_correction_mu", bias_correction_mu)

    def init_fn(params: optax.Params) -> ScaleBySimplifiedAdemamixState:
        _piece.check_params(fn, params, mu_dtype, b1=b1, b2=b2)
        dtype = _piece.scalar_dtype(params)
        return ScaleBySimplifiedAdemamixState(
            count=jnp.zeros([], jnp.int32),
            mu=_piece.zeros_moment(params, mu_dtype, real=False),
            nu=_piece.zeros_moment(params, nu_dtype, real=True),
            last_step=mo.StepScalars.initial(dtype),
            last_alpha=jnp.zeros([], dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        d2 = mo.decay_step(b2, state.count, state.last_step.v_correction)
        b1_t, alpha_t = mo.rate_at(b1, state.count), mo.rate_at(alpha, state.count)
        dtype = state.last_alpha.dtype
        # The weight the momentum has accumulated, n_t = b1_t n_{t-1} + 1, kept as m_correction.
        total = state.last_step.m_correction * b1_t + 1 if bias_correction_mu else 1
        inverse = 1 / jnp.asarray(total, dtype)

        def leaf(g, m, nu, *, settle):
            real = mo.real_dtype(nu.dtype)
            m = mo.as_scalar(b1_t, real) * m + g
            m, nu = settle(m, mo.ema(mo.squared_magnitude(g), nu, d2.rate))
            mixed = mo.as_scalar(alpha_t, real) * g + m
            if bias_correction_mu:
                mixed = mixed * inverse.astype(real)
            return mo.precondition(mixed, mo.corrected(nu, d2), eps, eps_root)

        count = optax.safe_increment(state.count)
        stored = _formats.adam_stored(state, mu_dtype, nu_dtype)
        updates, (mu, nu) = _formats.update_leaves(fn, leaf, updates, stored, count)
        last = mo.StepScalars.of(
            dtype, m_correction=total, v_correction=d2.correction, eps=eps, eps_root=eps_root
        )
        alpha_t = jnp.asarray(alpha_t, dtype)
        return updates, ScaleBySimplifiedAdemamixState(count, mu, nu, last, alpha_t)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@_piece.register_view(ScaleBySimplifiedAdemamixState)
def _simplified_view(state: ScaleBySimplifiedAdemamixState, grads: Any) -> _piece.View:
    """Adam's view of ``mu`` and ``nu`` (``mu`` is the accumulated momentum, uncorrected)."""
    view = _piece.adam_view(state, grads)
    return view._replace(scalars={"simplified_ademamix/alpha": state.last_alpha})


def simplified_ademamix(
    learning_rate: _piece.ScalarOrSchedule = 1e-4,
    b1: float | optax.Schedule = 0.99,
    b2: float | optax.Schedule = 0.95,
    alpha: float | optax.Schedule = 0.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
    *,
    bias_correction_mu: bool = False,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Simplified AdEMAMix (Morwani et al. 2025): one momentum, summed, mixed with the gradient.

    Update rule::

        m = b1_t*m + g;  v = b2*v + (1-b2)*|g|**2
        d = (alpha_t*g + m) / (sqrt(v / (1 - b2**t) + eps_root) + eps)
        update = -learning_rate * (d + weight_decay * param)

    In the notation of :func:`~adamjax.scale_by_simplified_ademamix`:

    .. math::

        \theta_t = \theta_{t-1} - \eta_t \left(\frac{\alpha_t g_t + m_t}
                   {\sqrt{\hat\nu_t + \epsilon_{root}} + \epsilon} + \lambda\theta_{t-1}\right)

    The positional parameters are ``optax.contrib.simplified_ademamix``'s, in its order; this is
    that function and the authors' ``SimAdEMAMix`` (default ``bias_correction1=False``,
    ``bias_correction2=True``; ``bias_correction_mu=True`` is their ``bias_correction1=True``,
    and their ``bias_correction2=False`` is not offered). Their ``beta1_warmup=T, min_beta1=b`` is
    ``b1=ademamix_b3_schedule(b1, T, b3_start=b, log_eps=1e-8)``.
    ``pytorch_optimizer.SimplifiedAdEMAMix`` departs from the authors' code (an EMA with
    :math:`1-\beta_1` and a step divided by :math:`1-\beta_2^t` once more); see
    ``docs/conventions.md`` for the schedules that reproduce it.

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule (the authors: 1e-4).
      b1: decay of the momentum, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      alpha: weight of the current gradient, >= 0, or a schedule of the update count.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      weight_decay: :math:`\lambda`, decoupled and multiplied by the learning rate, a number
        >= 0 or a schedule.
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      bias_correction_mu: divide the step by the momentum's accumulated weight (see
        :func:`~adamjax.scale_by_simplified_ademamix`).
      mu_dtype: storage of the momentum: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of the second moment, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_simplified_ademamix,
      add_decayed_weights, scale_by_learning_rate)``.

    References:
      Morwani et al., "Connections between Schedule-Free Optimizers, AdEMAMix, and
      Accelerated SGD Variants", 2025 (arXiv:2502.02431); the authors' code,
      github.com/DepenM/Simplified-AdEMAMix.

    Example:
      >>> tx = adamjax.simplified_ademamix(learning_rate=1e-4, alpha=2.0)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "simplified_ademamix"
    moments = _simplified_moments(
        fn, b1=b1, b2=b2, alpha=alpha, eps=eps, eps_root=eps_root,
        bias_correction_mu=bias_correction_mu, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
    )  # fmt: skip
    return _scaling.decoupled_chain(
        fn, moments, learning_rate=learning_rate, weight_decay=weight_decay, mask=mask
    )
