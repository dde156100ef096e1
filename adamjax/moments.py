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

from typing import Any, Literal

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
    """Returns :math:`1 - d^t` in ``dtype``.

    The power is taken in ``dtype`` (at least float32), never in a half-precision storage dtype,
    where :math:`d^t` would round to 1 and the correction would divide by zero.
    """
    return 1 - jnp.asarray(decay, dtype) ** count


def first_moment_estimate(
    m: jax.Array, g: jax.Array, b1: Any, count: jax.Array, *, nesterov: bool
) -> jax.Array:
    r"""Returns the bias-corrected first moment the update uses.

    Plain Adam uses :math:`\hat m_t = m_t / (1 - \beta_1^t)`. The Nesterov variant (Dozat 2016, in
    the form of ``optax.scale_by_adam(nesterov=True)``) looks one step ahead:

    .. math::

        \bar m_t = \frac{\beta_1 m_t}{1 - \beta_1^{t+1}} + \frac{(1 - \beta_1) g_t}{1 - \beta_1^t}.

    Args:
      m: the updated first moment :math:`m_t` (compute dtype).
      g: the gradient :math:`g_t` (compute dtype).
      b1: decay of the first moment.
      count: the step :math:`t \ge 1` (int32).
      nesterov: whether to use the look-ahead form.
    """
    dtype = real_dtype(m.dtype)
    if not nesterov:
        return m / bias_correction(b1, count, dtype)
    ahead = bias_correction(b1, optax.safe_increment(count), dtype)
    return b1 * m / ahead + (1 - b1) * g / bias_correction(b1, count, dtype)


def update_moments(
    g: jax.Array, m: jax.Array, v: jax.Array, b1: Any, b2: Any
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns ``(g, m_t, v_t)`` in the compute dtype, from stored moments ``m``, ``v``.

    ``g`` is returned upcast so that callers reuse it (e.g. in the Nesterov estimate) without
    casting again; the moments are returned unrounded, and the caller casts them back to storage.
    """
    dtype = compute_dtype(g.dtype, m.dtype, v.dtype)
    g = g.astype(dtype)
    m = ema(g, m.astype(dtype), b1)
    v = ema(squared_magnitude(g), v.astype(real_dtype(dtype)), b2)
    return g, m, v


def effective_eps(
    eps: Any, eps_root: Any, b2: Any, count: jax.Array, dtype: Any, eps_mode: str
) -> tuple[Any, Any]:
    r"""Returns ``(eps_t, eps_root_t)`` that place eps in the form :math:`\hat v` expects.

    Every Adam-family update divides by :math:`\sqrt{\hat v_t + \epsilon_{root,t}} + \epsilon_t`.

    * ``"paper"`` (Adam paper Algorithm 1; torch.optim, optax): :math:`\epsilon_t = \epsilon`,
      :math:`\epsilon_{root,t} = \epsilon_{root}`.
    * ``"hat"`` (the :math:`\hat\epsilon` form of the Adam paper §2; Keras, TensorFlow): the
      update is :math:`\sqrt{1-\beta_2^t}/(1-\beta_1^t) \cdot m_t / (\sqrt{v_t + \epsilon_{root}}
      + \epsilon)`, which equals the paper form with :math:`\epsilon_t = \epsilon /
      \sqrt{1-\beta_2^t}` and :math:`\epsilon_{root,t} = \epsilon_{root} / (1-\beta_2^t)`. For the
      same eps, the effective :math:`\epsilon_t \ge \epsilon`: early steps (small
      :math:`1-\beta_2^t`) with small gradients are damped more than in the paper form.
    """
    if eps_mode == "paper":
        return eps, eps_root
    bc2 = bias_correction(b2, count, dtype)
    return eps / jnp.sqrt(bc2), eps_root / bc2


def precondition(m_hat: jax.Array, v_hat: jax.Array, eps_t: Any, eps_root_t: Any) -> jax.Array:
    r"""Returns the Adam direction :math:`\hat m / (\sqrt{\hat v + \epsilon_{root}} + \epsilon)`."""
    return m_hat / (jnp.sqrt(v_hat + eps_root_t) + eps_t)


def direction(
    m: jax.Array,
    g: jax.Array,
    v_hat: jax.Array,
    count: jax.Array,
    *,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    eps_mode: str,
    nesterov: bool,
) -> jax.Array:
    r"""Returns the Adam-family step direction for one leaf, before the learning rate.

    Combines ``first_moment_estimate``, ``effective_eps`` and ``precondition``: the result is
    :math:`\hat m_t / (\sqrt{\hat v + \epsilon_{root,t}} + \epsilon_t)`, where ``v_hat`` is the
    bias-corrected second moment the variant chose (Adam's :math:`\hat v_t`, or AMSGrad's running
    maximum).
    """
    m_hat = first_moment_estimate(m, g, b1, count, nesterov=nesterov)
    eps_t, eps_root_t = effective_eps(eps, eps_root, b2, count, v_hat.dtype, eps_mode)
    return precondition(m_hat, v_hat, eps_t, eps_root_t)
