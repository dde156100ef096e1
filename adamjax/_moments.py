r"""The moment maths of the Adam family, written once.

Notation, for step :math:`t \ge 1` and gradient :math:`g_t`:

.. math::

    m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) |g_t|^2,

    \hat m_t = m_t / c_{1,t}, \qquad \hat v_t = v_t / c_{2,t}, \qquad
    c_{k,t} = 1 - \textstyle\prod_{i \le t} \beta_{k,i}.

Two kinds of function live here. The *step* functions (:func:`decay_step`, :func:`moment_step`)
run once at the top of an ``update_fn`` and compute the step's scalars: decay rates, bias
corrections and their reciprocals, the placed eps. The *leaf* functions (:func:`ema`,
:func:`corrected`, :func:`precondition`, ...) are the per-leaf maths; they take arrays in the
compute dtype (see :func:`compute_dtype`) and the step's scalars.

Dtypes: arithmetic runs in at least float32, so bfloat16/float16 states stay usable (the
storage formats in :mod:`adamjax._formats` decode and encode at the boundary).
"""

from typing import Any, Literal, NamedTuple, Self

import jax
import jax.numpy as jnp
import numpy as np
import optax

EpsMode = Literal["paper", "hat", "atan2"]
EPS_MODES: tuple[str, ...] = ("paper", "hat", "atan2")

MaxOf = Literal["raw", "corrected"]
MAX_OF: tuple[str, ...] = ("raw", "corrected")


# ---- dtypes ---------------------------------------------------------------------------------


def compute_dtype(*dtypes: Any) -> jnp.dtype:
    """The dtype arithmetic runs in: the widest input dtype, and at least float32.

    ``compute_dtype(jnp.bfloat16)`` is float32, ``compute_dtype(jnp.complex64)`` is complex64 and,
    with x64 enabled, ``compute_dtype(jnp.float64)`` is float64.
    """
    return jnp.result_type(jnp.float32, *dtypes)


def real_dtype(dtype: Any) -> jnp.dtype:
    """The real counterpart of ``dtype`` (complex64 -> float32); real dtypes map to themselves."""
    return jnp.finfo(dtype).dtype


def storage_dtype(param_dtype: Any, requested: Any | None, *, real: bool) -> jnp.dtype:
    """The dtype a moment of a parameter with ``param_dtype`` is stored in.

    ``requested`` is the user's ``mu_dtype``/``nu_dtype`` (``None`` follows the parameter). A real
    moment (``real``: second moments hold :math:`|g|^2`) takes the real counterpart; a complex
    parameter's first moment takes the smallest complex dtype that holds ``requested`` (bfloat16
    and float16 widen to complex64, and a complex ``requested`` is used as it is), so no
    imaginary part is lost.
    """
    param_dtype = jnp.dtype(param_dtype)
    base = param_dtype if requested is None else jnp.dtype(requested)
    if real:
        return real_dtype(base)
    if jnp.issubdtype(param_dtype, jnp.complexfloating):
        return jnp.promote_types(base, jnp.complex64)
    return base


def as_scalar(x: Any, dtype: Any) -> Any:
    """``x`` ready to multiply an array of real ``dtype``: an array is cast to it, a Python
    number stays weakly typed (as in optax, so float32 updates are not promoted)."""
    return x.astype(dtype) if isinstance(x, jax.Array) else x


# ---- the step's scalars ---------------------------------------------------------------------


def is_scheduled(decay: Any) -> bool:
    """Whether a decay rate (``b1``, ``b2``) is a schedule: a callable of the step count."""
    return callable(decay)


def rate_at(decay: Any, count: jax.Array) -> Any:
    """The decay rate of the update that follows ``count`` earlier updates: a constant unchanged,
    a schedule called with ``count`` (0-based, like optax's learning-rate schedules)."""
    return decay(count) if is_scheduled(decay) else decay


class Decay(NamedTuple):
    r"""A decay rate at step :math:`t`, with its bias correction.

    Attributes:
      rate: :math:`\beta_t`: the constant itself (a number or array, unchanged) or the
        schedule's value.
      correction: :math:`c_t = 1 - \prod_{i \le t}\beta_i`, a scalar array.
      inverse: :math:`1 / c_t`: the estimate :math:`m_t / c_t` is taken as a multiply by it (a
        divide per element is measurably slower on CPU, and XLA makes the rewrite only in some
        programs).
    """

    rate: Any
    correction: jax.Array
    inverse: jax.Array


def decay_step(decay: Any, count: jax.Array, previous: jax.Array) -> Decay:
    r"""The :class:`Decay` of step :math:`t` = ``count + 1``.

    Args:
      decay: a constant :math:`\beta` or a schedule, called with ``count``, so
        :math:`\beta_t = \text{schedule}(t - 1)` (optax's convention for learning rates).
      count: the number of updates applied before this one.
      previous: :math:`c_{t-1}` as the state keeps it (0 before the first update); its dtype is
        the dtype of the step's scalars. A constant needs only its dtype:
        :math:`c_t = 1 - \beta^t`. For a schedule, :math:`c_t = (1 - \beta_t) + \beta_t c_{t-1}`,
        which equals :math:`1 - \prod_{i \le t}\beta_i` and, unlike ``1 - product``, loses no
        digits to cancellation when :math:`\beta` is close to 1.
    """
    dtype = previous.dtype
    t = optax.safe_increment(count)
    if is_scheduled(decay):
        rate = jnp.asarray(decay(count), dtype)
        correction = (1 - rate) + rate * previous
    else:
        # The power is taken in the scalars' dtype (at least float32), never in a half-precision
        # storage dtype, where beta**t would round to 1 and the correction would be 0.
        rate, correction = decay, 1 - jnp.asarray(decay, dtype) ** t
    return Decay(rate, correction, 1 / correction)


class StepScalars(NamedTuple):
    r"""The scalars with which the latest update turned its stored moments into estimates.

    States keep them (0-d, real, in the params' scalar dtype): the next step reads a scheduled
    decay's running correction from them, and diagnostics rebuild :math:`\hat m`, :math:`\hat v`
    and the denominator from the stored moments without knowing the hyperparameters (schedules,
    ``optax.inject_hyperparams`` values and ``eps_mode`` are resolved in them).

    Attributes:
      m_correction: :math:`c_{1,t}`, so :math:`\hat m_t = m_t / c_{1,t}` (0 before the first
        update).
      v_correction: :math:`c_{2,t}`, so :math:`\hat v_t = v_t / c_{2,t}` (1 for a statistic that
        needs no correction, such as Adamax's infinity norm).
      eps: :math:`\epsilon_t`, placed in the paper form (see :func:`place_eps`).
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

    @classmethod
    def initial(cls, dtype: Any, *, with_max: bool = False) -> Self:
        """The scalars a state holds before its first update: every field 0.

        Args:
          dtype: the real dtype of the scalars (the params' scalar dtype).
          with_max: whether to include ``max_correction`` (for a running maximum of the second
            moment); without it the field is ``None``.
        """
        # A new array per field: a state donated to jit must not hold one buffer twice.
        zeros = [jnp.zeros([], dtype) for _ in range(4 + with_max)]
        return cls(*zeros) if with_max else cls(*zeros, None)

    @classmethod
    def of(cls, dtype: Any, **scalars: Any) -> Self:
        """The scalars given by keyword, each cast to the real dtype given.

        Args:
          dtype: the real dtype of the scalars.
          **scalars: the fields by name; a complex value keeps its real part, ``None`` stays
            ``None``.
        """
        return cls(**{k: None if x is None else _real_scalar(x, dtype) for k, x in scalars.items()})


def _real_scalar(x: Any, dtype: Any) -> jax.Array:
    return jnp.real(jnp.asarray(x)).astype(dtype)


def place_eps(eps: Any, eps_root: Any, b2: Decay, eps_mode: str) -> tuple[Any, Any]:
    r"""``(eps_t, eps_root_t)`` placed in the form the update divides by,
    :math:`\sqrt{\hat v_t + \epsilon_{root,t}} + \epsilon_t`.

    * ``"paper"`` (Adam paper Algorithm 1; torch.optim, optax): ``eps`` and ``eps_root`` as given.
    * ``"hat"`` (the :math:`\hat\epsilon` form of the Adam paper §2; Keras, TensorFlow): the
      update is :math:`\sqrt{c_{2,t}}/c_{1,t} \cdot m_t / (\sqrt{v_t + \epsilon_{root}} +
      \epsilon)`, which is the paper form with :math:`\epsilon_t = \epsilon / \sqrt{c_{2,t}}` and
      :math:`\epsilon_{root,t} = \epsilon_{root} / c_{2,t}`. Early steps (small :math:`c_{2,t}`)
      with small gradients are damped more than in the paper form.
    * ``"atan2"`` (Everett et al. 2024): no eps; the division is replaced by
      :math:`\operatorname{atan2}(\hat m, b \sqrt{\hat v + \epsilon_{root}})` (see
      :class:`Atan2Division`; ``b`` is 1 unless the mode was made by :func:`atan2_mode`). The
      placed eps is then an :class:`Atan2Division`, which :func:`precondition` recognises.
    """
    if eps_mode == "atan2":
        return Atan2Division(getattr(eps_mode, "scale", 1.0)), eps_root
    if eps_mode == "paper":
        return eps, eps_root
    dtype = b2.correction.dtype
    # A zero known while tracing stays a Python 0, so that precondition() can see it.
    if not is_static_zero(eps):
        eps = as_scalar(eps, dtype) / jnp.sqrt(b2.correction)
    if not is_static_zero(eps_root):
        eps_root = as_scalar(eps_root, dtype) / b2.correction
    return eps, eps_root


class MomentStep(NamedTuple):
    """The scalars of one Adam-family update, computed once at the top of ``update_fn``.

    Attributes:
      count: :math:`t`, int32.
      b1: the first moment's :class:`Decay`.
      b2: the second moment's :class:`Decay`.
      eps: :math:`\\epsilon_t`, placed by :func:`place_eps`.
      eps_root: :math:`\\epsilon_{root,t}`, likewise.
      ahead: for the Nesterov estimate, the :class:`Decay` of ``b1`` at :math:`t + 1`; else
        ``None``.
    """

    count: jax.Array
    b1: Decay
    b2: Decay
    eps: Any
    eps_root: Any
    ahead: Decay | None = None

    def record(self, dtype: Any, **extra: Any) -> StepScalars:
        """The :class:`StepScalars` the state keeps (``extra``: ``max_correction``)."""
        return StepScalars.of(
            dtype,
            m_correction=self.b1.correction,
            v_correction=self.b2.correction,
            # atan2 mode records eps 0: diagnostics then read 1/sqrt(v_hat), the slope of
            # atan2(m_hat, sqrt(v_hat)) at m_hat = 0.
            eps=0.0 if isinstance(self.eps, Atan2Division) else self.eps,
            eps_root=self.eps_root,
            **extra,
        )


def moment_step(
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    eps_mode: str,
    count: jax.Array,
    last: StepScalars,
    *,
    nesterov: bool = False,
) -> MomentStep:
    """The :class:`MomentStep` of the update that follows ``count`` updates whose latest scalars
    are ``last`` (the state's ``last_step``)."""
    d1 = decay_step(b1, count, last.m_correction)
    d2 = decay_step(b2, count, last.v_correction)
    ahead = decay_step(b1, optax.safe_increment(count), d1.correction) if nesterov else None
    eps_t, eps_root_t = place_eps(eps, eps_root, d2, eps_mode)
    return MomentStep(optax.safe_increment(count), d1, d2, eps_t, eps_root_t, ahead)


# ---- per-leaf maths -------------------------------------------------------------------------


def ema(new: jax.Array, moment: jax.Array, decay: Any) -> jax.Array:
    r"""Exponential moving average :math:`(1 - \beta)\, x + \beta\, \mu` (the order optax uses)."""
    decay = as_scalar(decay, real_dtype(moment.dtype))
    return (1 - decay) * new + decay * moment


def squared_magnitude(g: jax.Array) -> jax.Array:
    """:math:`|g|^2`, which is real for complex ``g`` (as in optax)."""
    if jnp.iscomplexobj(g):
        return jnp.real(g) ** 2 + jnp.imag(g) ** 2
    return g * g


def corrected(x: jax.Array, decay: Decay) -> jax.Array:
    """The bias-corrected estimate ``x / c_t``, as ``x`` times the step's reciprocal."""
    return x * decay.inverse.astype(real_dtype(x.dtype))


def nesterov_estimate(m: jax.Array, g: jax.Array, b1: Decay, ahead: Decay) -> jax.Array:
    r"""Dozat's Nesterov first-moment estimate, looking one step ahead:

    .. math::

        \bar m_t = \frac{\mu_{t+1}\, m_t}{1 - \prod_{i \le t+1}\mu_i}
                  + \frac{(1 - \mu_t)\, g_t}{1 - \prod_{i \le t}\mu_i}.

    With a constant :math:`\mu_t = \beta_1` this is ``optax.scale_by_adam(nesterov=True)``; with
    Dozat's momentum schedule it is ``torch.optim.NAdam``.
    """
    dtype = real_dtype(m.dtype)
    mu_t, mu_next = as_scalar(b1.rate, dtype), as_scalar(ahead.rate, dtype)
    return corrected(mu_next * m, ahead) + corrected((1 - mu_t) * g, b1)


def precondition(m_hat: jax.Array, v_hat: jax.Array, eps: Any, eps_root: Any) -> jax.Array:
    r"""The Adam direction :math:`\hat m / (\sqrt{\hat v + \epsilon_{root}} + \epsilon)`.

    With ``eps`` and ``eps_root`` both zero Python or NumPy numbers, an entry whose denominator is 0
    (no gradient yet, or one whose square underflows) gets 0, not 0/0 = NaN or m/0 = inf; see
    :func:`divide_or_zero`. With ``eps`` an :class:`Atan2Division` (``eps_mode="atan2"``) the
    direction is :math:`\operatorname{atan2}(\hat m, b\sqrt{\hat v + \epsilon_{root}})`
    instead, which is 0 at :math:`\hat m = \hat v = 0` and needs no guard.
    """
    dtype = real_dtype(v_hat.dtype)
    if isinstance(eps, Atan2Division):
        return atan2_direction(m_hat, v_hat, eps, eps_root)
    denominator = jnp.sqrt(v_hat + as_scalar(eps_root, dtype)) + as_scalar(eps, dtype)
    return divide_or_zero(m_hat, denominator, is_static_zero(eps) and is_static_zero(eps_root))


def is_static_zero(x: Any) -> bool:
    """Whether ``x`` is a zero known while tracing: a Python or NumPy number (or 0-d NumPy
    array). jax arrays are not: a value derived from the state is concrete when run eagerly
    and traced under ``jit``, and the two must compute the same thing."""
    return isinstance(x, (int, float, np.number, np.ndarray)) and np.ndim(x) == 0 and x == 0


def divide_or_zero(numerator: jax.Array, denominator: jax.Array, guard: bool) -> jax.Array:
    r"""``numerator / denominator``, and with ``guard`` 0 where the denominator is 0.

    The guard is for ``eps = 0``, which torch and optax allow: there a zero gradient gives
    0/0 = NaN, invisible to ``optax.apply_if_finite`` (the gradients are finite). The limit
    :math:`\epsilon \to 0` of the update of a zero-gradient entry is 0. Without a static zero
    eps the denominator is positive and the guard would cost a select per entry for nothing.
    """
    if not guard:
        return numerator / denominator
    zero = denominator == 0
    # The inner where keeps the discarded branch finite, so gradients through it stay finite.
    return jnp.where(zero, 0, numerator / jnp.where(zero, 1, denominator))


def inverse_denominator(v_hat: jax.Array, scalars: StepScalars) -> jax.Array:
    r""":math:`1/(\sqrt{\hat v + \epsilon_{root,t}} + \epsilon_t)`, the factor by which Adam's
    update multiplies :math:`\hat m` (read by diagnostics from a state's ``last_step``)."""
    return precondition(jnp.ones([], v_hat.dtype), v_hat, scalars.eps, scalars.eps_root)


def infinity_norm(g: jax.Array, u: jax.Array, b2: Any, eps_in_max: Any) -> jax.Array:
    r"""Adamax's exponentially weighted infinity norm
    :math:`u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon_{max})` (Adam paper §7.1, where
    :math:`\epsilon_{max} = 0`; ``torch.optim.Adamax`` adds its eps inside the max)."""
    dtype = real_dtype(u.dtype)
    return jnp.maximum(as_scalar(b2, dtype) * u, jnp.abs(g).astype(dtype) + eps_in_max)


# ---- the atan2 division (eps_mode="atan2") ----------------------------------------------------


class Atan2Division(NamedTuple):
    r"""The placed "eps" of ``eps_mode="atan2"``: the division :math:`\hat m / \sqrt{\hat v}` of
    every piece that divides through :func:`precondition` becomes
    :math:`\operatorname{atan2}(\hat m, b \sqrt{\hat v + \epsilon_{root}})` (Everett et al.
    2024), which is bounded by :math:`\pi/2`, needs no eps and is invariant to a rescaling of the
    gradients.

    Attributes:
      scale: :math:`b`, the factor of the denominator (1 for ``eps_mode="atan2"``).
    """

    scale: Any = 1.0


class _Atan2Mode(str):
    """The string ``"atan2"`` carrying a denominator scale: it passes every piece's check of
    ``eps_mode`` against :data:`EPS_MODES` and reaches :func:`place_eps` unchanged."""

    scale: Any

    def __new__(cls, scale: Any) -> "_Atan2Mode":
        mode = super().__new__(cls, "atan2")
        mode.scale = scale
        return mode

    def __repr__(self) -> str:
        return f"atan2_mode({self.scale!r})"


def atan2_mode(scale: Any = 1.0) -> str:
    """``eps_mode="atan2"`` with the denominator scaled by ``scale`` (the ``b`` of
    :func:`adamjax.adam_atan2`); it compares equal to ``"atan2"``."""
    return _Atan2Mode(scale)


def atan2_direction(m_hat: jax.Array, v_hat: jax.Array, division: Atan2Division, eps_root: Any):
    r""":math:`\operatorname{atan2}(\hat m, b\sqrt{\hat v + \epsilon_{root}})`, for real
    :math:`\hat m` (atan2 has no complex form)."""
    if jnp.iscomplexobj(m_hat):
        raise TypeError(
            "eps_mode='atan2' needs real params: atan2 has no complex form; use eps_mode='paper'"
        )
    dtype = real_dtype(v_hat.dtype)
    scale = as_scalar(division.scale, dtype)
    return jnp.arctan2(m_hat, scale * jnp.sqrt(v_hat + as_scalar(eps_root, dtype)))
