r"""Shared moment maths of the Adam family.

Every adamjax piece computes its moments with the functions in this module, so the exponential
moving average, the bias correction and the placement of eps are each written exactly once. The
functions act on single arrays (one leaf of a pytree); pieces map them over trees.

Notation, for step :math:`t \ge 1` and gradient :math:`g_t`:

.. math::

    m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) |g_t|^2,

    \hat m_t = m_t / (1 - \beta_1^t), \qquad \hat v_t = v_t / (1 - \beta_2^t).

Dtypes: moments may be *stored* in any floating dtype (see ``storage_dtype``), but arithmetic
always runs in ``compute_dtype``, which is at least float32. This keeps bfloat16/float16 states
usable: eps and the bias corrections never underflow in half precision.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

EpsMode = Literal["paper", "hat"]
EPS_MODES: tuple[str, ...] = ("paper", "hat")

MaxOf = Literal["raw", "corrected"]
MAX_OF: tuple[str, ...] = ("raw", "corrected")


def compute_dtype(*dtypes: Any) -> jnp.dtype:
    """Returns the dtype arithmetic runs in: the widest input dtype, and at least float32.

    ``compute_dtype(jnp.bfloat16)`` is float32, ``compute_dtype(jnp.complex64)`` is complex64 and,
    with x64 enabled, ``compute_dtype(jnp.float64)`` is float64.
    """
    return jnp.result_type(jnp.float32, *dtypes)


def real_dtype(dtype: Any) -> jnp.dtype:
    """Returns the real counterpart of ``dtype`` (complex64 -> float32); real dtypes map to
    themselves."""
    return jnp.finfo(dtype).dtype


def storage_dtype(param_dtype: Any, requested: Any | None, *, real: bool) -> jnp.dtype:
    """Returns the dtype a moment of a parameter with ``param_dtype`` is stored in.

    Args:
      param_dtype: dtype of the parameter leaf.
      requested: the user's ``mu_dtype``/``nu_dtype`` (a real floating dtype) or ``None`` to follow
        the parameter.
      real: whether the moment is real-valued even for complex parameters (second moments are:
        they hold :math:`|g|^2`).

    Returns:
      For real parameters, ``requested`` (or ``param_dtype``). For complex parameters, a real
      moment gets the real counterpart, and a complex moment gets the smallest complex dtype that
      holds ``requested`` (bfloat16 and float16 widen to complex64), so no imaginary part is lost.
    """
    param_dtype = jnp.dtype(param_dtype)
    base = param_dtype if requested is None else jnp.dtype(requested)
    if real:
        return real_dtype(base)
    if jnp.issubdtype(param_dtype, jnp.complexfloating):
        return jnp.promote_types(base, jnp.complex64)
    return base


def ema(new: jax.Array, moment: jax.Array, decay: Any) -> jax.Array:
    r"""Exponential moving average :math:`(1 - d)\, x + d\, \mu` (the order optax uses)."""
    return (1 - decay) * new + decay * moment


def squared_magnitude(g: jax.Array) -> jax.Array:
    """Returns :math:`|g|^2`, which is real for complex ``g`` (as in optax)."""
    if jnp.iscomplexobj(g):
        return jnp.real(g) ** 2 + jnp.imag(g) ** 2
    return g * g


def bias_correction(decay: Any, count: jax.Array, dtype: Any) -> jax.Array:
    """Returns :math:`1 - d^t` in ``dtype`` for a constant decay ``d``.

    The power is taken in ``dtype`` (at least float32), never in a half-precision storage dtype,
    where :math:`d^t` would round to 1 and the correction would divide by zero.
    """
    return 1 - jnp.asarray(decay, dtype) ** count


def is_scheduled(decay: Any) -> bool:
    """Returns whether a decay rate (``b1``, ``b2``) is a schedule: a callable of the step count."""
    return callable(decay)


def init_correction(decay: Any, dtype: Any) -> jax.Array | None:
    r"""Returns the state slot a decay rate needs: ``None`` for a constant, 0 for a schedule.

    A scheduled decay keeps its bias correction :math:`c_t = 1 - \prod_{i \le t} \beta_i` in the
    optimizer state (:math:`c_0 = 0`); a constant decay needs no state, since
    :math:`c_t = 1 - \beta^t`.
    """
    return jnp.zeros([], dtype) if is_scheduled(decay) else None


def rate_at(decay: Any, count: jax.Array) -> Any:
    """Returns the decay rate of the update that follows ``count`` earlier updates.

    A constant is returned unchanged; a schedule is called with ``count`` (0-based, like optax's
    learning-rate schedules).
    """
    return decay(count) if is_scheduled(decay) else decay


class StepDecay(NamedTuple):
    r"""A decay rate at step :math:`t`, with its bias correction.

    Attributes:
      rate: :math:`\beta_t`, the decay the moving average uses at step :math:`t`: the constant
        itself (a Python number or array, passed through unchanged) or the schedule's value.
      correction: for a schedule, the running :math:`c_t = 1 - \prod_{i \le t} \beta_i` (a
        scalar array, the value the state keeps); ``None`` for a constant.
      count: the step :math:`t \ge 1` (int32).
      computed: the corrections already computed in this update, by dtype. Every leaf of a
        tree asks for the same :math:`1 - \beta^t`; computing it once per dtype instead of once
        per leaf keeps the traced program, and the compile time of many-leaf trees, as small
        as optax's.
    """

    rate: Any
    correction: jax.Array | None
    count: jax.Array
    computed: dict | None = None

    def bias_correction(self, dtype: Any) -> jax.Array:
        r"""Returns :math:`1 - \prod_{i \le t} \beta_i` (:math:`1 - \beta^t` for a constant)."""
        if self.correction is not None:
            return self.correction.astype(dtype)
        if self.computed is None:
            return bias_correction(self.rate, self.count, dtype)
        return self.once(("bias_correction", jnp.dtype(dtype)), bias_correction, self.rate,
                         self.count, dtype)  # fmt: skip

    def corrected(self, x: jax.Array) -> jax.Array:
        r"""Returns ``x`` divided by the bias correction, as ``x`` times its reciprocal.

        The reciprocal is one scalar per update and dtype, so each element costs a multiply
        instead of a divide. XLA makes the same rewrite of ``x / c`` by itself only in some
        programs (in optax's, but not for a single-leaf tree in ours), and a divide per element
        is measurably slower on CPU.
        """
        dtype = real_dtype(x.dtype)
        inverse = self.once(("inverse_correction", jnp.dtype(dtype)), _reciprocal,
                            self.bias_correction(dtype))  # fmt: skip
        return x * inverse

    def once(self, key: Any, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, computed at most once per ``key`` in this update (per leaf without the
        ``computed`` dict). ``key`` must identify the arguments."""
        if self.computed is None:
            return fn(*args)
        if key not in self.computed:
            self.computed[key] = fn(*args)
        return self.computed[key]


def _reciprocal(x: jax.Array) -> jax.Array:
    return 1 / x


def step_decay(decay: Any, count: jax.Array, correction: jax.Array | None) -> StepDecay:
    r"""Advances a decay rate by one step.

    Args:
      decay: a constant :math:`\beta` or a schedule. Like optax's learning-rate schedules, a
        schedule is called with the number of updates applied *before* this one, so
        :math:`\beta_t = \text{schedule}(t - 1)`.
      count: the number of updates applied before this one (the state's ``count``).
      correction: the state's :math:`c_{t-1}` for a schedule (``None`` for a constant).

    Returns:
      The :class:`StepDecay` of step :math:`t` = ``count + 1``. For a schedule the correction is
      updated as :math:`c_t = (1 - \beta_t) + \beta_t c_{t-1}`, which equals
      :math:`1 - \prod_{i \le t}\beta_i` and, unlike ``1 - product``, loses no digits to
      cancellation when :math:`\beta` is close to 1 (float32 keeps :math:`c_t` to a few ulps).
    """
    t = optax.safe_increment(count)
    if not is_scheduled(decay):
        return StepDecay(decay, None, t, {})
    if correction is None:
        raise ValueError("a scheduled decay needs its bias-correction slot in the state")
    rate = jnp.asarray(rate_at(decay, count), correction.dtype)
    return StepDecay(rate, (1 - rate) + rate * correction, t)


def _as_rate(rate: Any, dtype: Any) -> Any:
    """Casts an array rate to ``dtype``; Python numbers stay weakly typed (as in optax)."""
    return rate.astype(dtype) if isinstance(rate, jax.Array) else rate


def first_moment_estimate(
    m: jax.Array,
    g: jax.Array,
    weights: StepDecay,
    ahead: StepDecay | None = None,
) -> jax.Array:
    r"""Returns the bias-corrected first moment the update uses.

    Plain Adam (``ahead=None``) uses :math:`\hat m_t = m_t / c_t` with
    :math:`c_t = 1 - \prod_{i \le t}\mu_i`. The Nesterov form (Dozat 2016) looks one step ahead:

    .. math::

        \bar m_t = \frac{\mu_{t+1}\, m_t}{1 - \prod_{i \le t+1}\mu_i}
                  + \frac{(1 - \mu_t)\, g_t}{1 - \prod_{i \le t}\mu_i}.

    With a constant :math:`\mu_t = \beta_1` this is ``optax.scale_by_adam(nesterov=True)``; with
    Dozat's momentum schedule it is ``torch.optim.NAdam``.

    Args:
      m: the updated first moment :math:`m_t` (compute dtype).
      g: the gradient :math:`g_t` (compute dtype).
      weights: :math:`\mu_t` and its correction (``b1`` for Adam, the momentum schedule for
        NAdam).
      ahead: :math:`\mu_{t+1}` and its correction (from ``step_decay`` on ``weights``), or
        ``None`` for the plain estimate.
    """
    dtype = real_dtype(m.dtype)
    if ahead is None:
        return weights.corrected(m)
    mu_t, mu_next = _as_rate(weights.rate, dtype), _as_rate(ahead.rate, dtype)
    return ahead.corrected(mu_next * m) + weights.corrected((1 - mu_t) * g)


def update_moments(
    g: jax.Array, m: jax.Array, v: jax.Array, b1: Any, b2: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns ``(g, m_t, v_t)`` in the compute dtype, from stored moments ``m``, ``v``.

    ``b1`` and ``b2`` are the rates of this step (``StepDecay.rate``). ``g`` is returned upcast so
    that callers reuse it (e.g. in the Nesterov estimate) without casting again; the moments are
    returned unrounded, and the caller casts them back to storage.
    """
    g, m = update_first_moment(g, m, b1, v.dtype)
    real = real_dtype(m.dtype)
    v = ema(squared_magnitude(g), v.astype(real), _as_rate(b2, real))
    return g, m, v


def update_first_moment(
    g: jax.Array, m: jax.Array, b1: Any, *other_dtypes: Any
) -> tuple[jax.Array, jax.Array]:
    """Returns ``(g, m_t)`` in the compute dtype of ``g``, ``m`` and ``other_dtypes``.

    The first half of ``update_moments``, for variants with a second moment of their own.
    """
    dtype = compute_dtype(g.dtype, m.dtype, *other_dtypes)
    g = g.astype(dtype)
    return g, ema(g, m.astype(dtype), _as_rate(b1, real_dtype(dtype)))


def effective_eps(
    eps: Any, eps_root: Any, b2: StepDecay, dtype: Any, eps_mode: str
) -> tuple[Any, Any]:
    r"""Returns ``(eps_t, eps_root_t)`` that place eps in the form :math:`\hat v` expects.

    Every Adam-family update divides by :math:`\sqrt{\hat v_t + \epsilon_{root,t}} + \epsilon_t`.

    * ``"paper"`` (Adam paper Algorithm 1; torch.optim, optax): :math:`\epsilon_t = \epsilon`,
      :math:`\epsilon_{root,t} = \epsilon_{root}`.
    * ``"hat"`` (the :math:`\hat\epsilon` form of the Adam paper §2; Keras, TensorFlow): the
      update is :math:`\sqrt{c_{2,t}}/c_{1,t} \cdot m_t / (\sqrt{v_t + \epsilon_{root}}
      + \epsilon)` with :math:`c_{k,t}` the bias corrections, which equals the paper form with
      :math:`\epsilon_t = \epsilon / \sqrt{c_{2,t}}` and :math:`\epsilon_{root,t} =
      \epsilon_{root} / c_{2,t}`. For the same eps, the effective :math:`\epsilon_t \ge \epsilon`:
      early steps (small :math:`c_{2,t}`) with small gradients are damped more than in the paper
      form.
    """
    if eps_mode == "paper":
        return eps, eps_root

    def hat(eps, eps_root, dtype):
        bc2 = b2.bias_correction(dtype)
        return eps / jnp.sqrt(bc2), eps_root / bc2

    # The same eps objects come with every leaf of one update, so their ids identify them.
    return b2.once(("effective_eps", id(eps), id(eps_root), jnp.dtype(dtype)), hat, eps, eps_root,
                   dtype)  # fmt: skip


def update_infinity_norm(g: jax.Array, u: jax.Array, b2: Any, eps_in_max: Any) -> jax.Array:
    r"""Returns Adamax's exponentially weighted infinity norm in the compute dtype.

    :math:`u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon_{max})` (Adam paper §7.1, where
    :math:`\epsilon_{max} = 0`; ``torch.optim.Adamax`` adds its eps inside the max).
    """
    dtype = real_dtype(compute_dtype(g.dtype, u.dtype))
    magnitude = jnp.abs(g).astype(dtype)
    return jnp.maximum(_as_rate(b2, dtype) * u.astype(dtype), magnitude + eps_in_max)


def infinity_norm_direction(m_hat: jax.Array, u: jax.Array, eps: Any) -> jax.Array:
    r"""Returns Adamax's direction :math:`\hat m_t / (u_t + \epsilon)` (``eps`` is 0 when it sits
    inside the max, see :func:`update_infinity_norm`)."""
    return m_hat / (u + eps)


def precondition(m_hat: jax.Array, v_hat: jax.Array, eps_t: Any, eps_root_t: Any) -> jax.Array:
    r"""Returns the Adam direction :math:`\hat m / (\sqrt{\hat v + \epsilon_{root}} + \epsilon)`."""
    return m_hat / (jnp.sqrt(v_hat + eps_root_t) + eps_t)


def direction(
    m_hat: jax.Array,
    v_hat: jax.Array,
    b2: StepDecay,
    *,
    eps: Any,
    eps_root: Any,
    eps_mode: str,
) -> jax.Array:
    r"""Returns the Adam-family step direction for one leaf, before the learning rate.

    Combines ``effective_eps`` and ``precondition``: the result is
    :math:`\hat m_t / (\sqrt{\hat v + \epsilon_{root,t}} + \epsilon_t)`, where ``m_hat`` comes
    from ``first_moment_estimate`` and ``v_hat`` is the bias-corrected second moment the variant
    chose (Adam's :math:`\hat v_t`, or AMSGrad's running maximum).
    """
    eps_t, eps_root_t = effective_eps(eps, eps_root, b2, v_hat.dtype, eps_mode)
    return precondition(m_hat, v_hat, eps_t, eps_root_t)


class StepScalars(NamedTuple):
    r"""The scalars with which the latest update turned its stored moments into estimates.

    Adam-family states keep them (0-d, real, in the params' scalar dtype) so that
    :mod:`adamjax.diagnostics` can rebuild :math:`\hat m`, :math:`\hat v` and the denominator from
    the stored moments with the functions the update itself used, without knowing the
    hyperparameters: schedules, ``optax.inject_hyperparams`` values and ``eps_mode`` are already
    resolved in them. Keeping them costs a few scalar operations per step and no array traffic.

    Attributes:
      m_correction: :math:`c_{1,t} = 1 - \prod_{i \le t}\beta_{1,i}`, so
        :math:`\hat m_t = m_t / c_{1,t}`.
      v_correction: :math:`c_{2,t}`, so :math:`\hat v_t = v_t / c_{2,t}` (1 for a statistic that
        needs no correction, such as Adamax's infinity norm).
      eps: :math:`\epsilon_t`, placed in the paper form (see :func:`effective_eps`).
      eps_root: :math:`\epsilon_{root,t}`, likewise.
      max_correction: for a running maximum of the second moment, the divisor that turns the
        stored maximum into the :math:`\hat v` the update used: :math:`c_{2,t}` for a maximum of
        the raw :math:`v`, 1 for a maximum of :math:`\hat v`. ``None`` without a maximum.
    """

    m_correction: jax.Array
    v_correction: jax.Array
    eps: jax.Array
    eps_root: jax.Array
    max_correction: jax.Array | None = None


def initial_step_scalars(dtype: Any, *, with_max: bool = False) -> StepScalars:
    """Returns the :class:`StepScalars` a state holds before its first update (corrections 1, eps
    0): a placeholder with the right structure and dtypes, not a meaningful value."""

    # A new array per field: a state donated to jit must not hold one buffer twice.
    def one() -> jax.Array:
        return jnp.ones([], dtype)

    def zero() -> jax.Array:
        return jnp.zeros([], dtype)

    return StepScalars(one(), one(), zero(), zero(), one() if with_max else None)


def record_step(
    m_correction: Any,
    b2: StepDecay | None,
    eps: Any,
    eps_root: Any,
    eps_mode: str,
    dtype: Any,
    *,
    max_correction: Any | None = None,
) -> StepScalars:
    r"""Returns the :class:`StepScalars` of a step, in ``dtype``.

    Args:
      m_correction: :math:`c_{1,t}`, as the update computed it.
      b2: the step's :math:`\beta_2` (its correction is :math:`c_{2,t}`); ``None`` for a
        statistic without bias correction.
      eps, eps_root, eps_mode: as passed to :func:`direction`; they are resolved here with
        :func:`effective_eps`, exactly as the update resolves them.
      dtype: the real dtype the scalars are kept in.
      max_correction: see :attr:`StepScalars.max_correction`.
    """
    if b2 is None:
        v_correction, eps_t, eps_root_t = 1, eps, eps_root
    else:
        v_correction = b2.bias_correction(dtype)
        eps_t, eps_root_t = effective_eps(eps, eps_root, b2, dtype, eps_mode)

    def cast(x: Any) -> jax.Array:
        return jnp.real(jnp.asarray(x)).astype(dtype)

    maximum = None if max_correction is None else cast(max_correction)
    return StepScalars(
        cast(m_correction), cast(v_correction), cast(eps_t), cast(eps_root_t), maximum
    )


def inverse_denominator(v_hat: jax.Array, scalars: StepScalars) -> jax.Array:
    r"""Returns :math:`1/(\sqrt{\hat v + \epsilon_{root,t}} + \epsilon_t)`, the factor by which
    Adam's update multiplies :math:`\hat m` (``precondition`` of a first moment of ones)."""
    dtype = v_hat.dtype
    return precondition(
        jnp.ones([], dtype), v_hat, scalars.eps.astype(dtype), scalars.eps_root.astype(dtype)
    )
