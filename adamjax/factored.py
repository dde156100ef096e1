r"""Adafactor (Shazeer & Stern 2018): factored second moments, update clipping, relative steps.

Two pieces of adamjax's own and one alias:

* :func:`scale_by_factored_rms` divides the gradient by a second-moment estimate that, for a matrix,
  keeps only row and column statistics (memory :math:`O(n + m)` instead of :math:`O(nm)`);
* :func:`clip_by_block_rms` is ``optax.clip_by_block_rms`` that also records its clipping factor
  in the state, for diagnostics;
* :func:`adafactor` chains them with optax's learning-rate, parameter-scale, EMA and scale pieces
  and adamjax's decoupled weight decay.

The options are spelled as in ``optax.adafactor``, and with a ``learning_rate`` (or with
``relative_step=False``) the alias computes what ``optax.adafactor`` computes. The one deliberate
difference is ``learning_rate=None``: optax then applies *no* step size at all, while adamjax uses
the paper's relative step :math:`\rho_t = \min(10^{-2}, 1/\sqrt t)` (see :func:`adafactor`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adamjax import _tree, moments, transform
from adamjax import _validation as v

DecayRateFn = Callable[[jax.Array, Any], jax.Array]


class ScaleByFactoredRmsState(NamedTuple):
    r"""State of :func:`scale_by_factored_rms`.

    Every leaf of the params has one leaf in each of ``v_row``, ``v_col`` and ``v``; the ones a
    leaf does not use hold a zero array of shape ``(1,)``, so the tree structure never depends on
    the values (as in ``optax.FactoredState``).

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      v_row: for a factored leaf, the EMA of :math:`G^2 + \epsilon_1` averaged over the leaf's
        largest axis (the leaf's shape without that axis); for a matrix with rows <= columns this
        is the paper's :math:`R_t` divided by the number of columns.
      v_col: for a factored leaf, the same averaged over the second-largest axis instead; the
        paper's :math:`C_t` divided by the number of rows.
      v: for a leaf that is not factored, the full EMA of :math:`G^2 + \epsilon_1`.
    """

    count: jax.Array
    v_row: optax.Updates
    v_col: optax.Updates
    v: optax.Updates


class ClipByBlockRmsState(NamedTuple):
    r"""State of :func:`clip_by_block_rms`.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      clip_factor: one scalar per leaf, the divisor :math:`\max(1, \mathrm{RMS}(U_t)/d)` of the
        latest update (1 means the leaf was not clipped); real, in at least float32.
    """

    count: jax.Array
    clip_factor: optax.Updates


def _factored_axes(shape: tuple[int, ...], factored: bool, min_dim: int) -> tuple[int, int] | None:
    r"""Returns ``(long, short)``, the leaf's largest and second-largest axes, if it is factored.

    Among equal sizes the later axis counts as larger, the order ``np.argsort`` (and so
    ``optax.scale_by_factored_rms``) gives for shapes of rank <= 16. A tie only decides which
    statistic is called ``v_row``: the estimate :math:`\hat V` is symmetric in the two axes.
    """
    if not factored or len(shape) < 2:
        return None
    short, long = sorted(range(len(shape)), key=lambda axis: (shape[axis], axis))[-2:]
    if shape[short] < min_dim:
        return None
    return long, short


def _state_shapes(shape: tuple[int, ...], axes: tuple[int, int] | None) -> tuple[tuple, ...]:
    """Returns the shapes of a leaf's ``(v_row, v_col, v)``; unused ones are ``(1,)``."""
    if axes is None:
        return (1,), (1,), shape
    long, short = axes
    return shape[:long] + shape[long + 1 :], shape[:short] + shape[short + 1 :], (1,)


def _zeros_without_axis(like: Any, axis: int, dtype: Any) -> jax.Array:
    """Zeros of ``like``'s shape less ``axis``, placed like a mean of ``like`` over ``axis``
    (sharded like ``like`` less that axis). A reduction of zeros rather than ``jnp.zeros``, so
    that the placement is derived from the param; under ``jax.jit`` it folds to a constant."""
    return jnp.sum(jnp.zeros_like(like, dtype=jnp.uint8), axis=axis, dtype=jnp.uint8).astype(dtype)


def _check_structure(fn: str, updates: Any, state_tree: Any) -> None:
    """Checks tree structure only: state leaves do not have the shapes of the updates here."""

    def scalar(_: Any) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct((), jnp.float32)

    v.check_tree_match(fn, jax.tree.map(scalar, updates), jax.tree.map(scalar, state_tree))


def factored_axes_of(shape: tuple[int, ...], v: jax.Array) -> tuple[int, int] | None:
    """Returns the factored axes of a leaf of ``shape`` whose state holds ``v``, or ``None``.

    A leaf is factored exactly when its full statistic ``v`` is the ``(1,)`` placeholder rather
    than an array of the leaf's own shape; the axes then follow the rule of
    :func:`scale_by_factored_rms` (they do not depend on ``min_dim_size_to_factor``, which only
    decides *whether* to factor).
    """
    if tuple(v.shape) == tuple(shape):
        return None
    return _factored_axes(shape, True, 1)


def inverse_rms_factors(
    r_t: jax.Array, c_t: jax.Array, axes: tuple[int, int]
) -> tuple[jax.Array, jax.Array]:
    r"""Returns two broadcastable factors whose product is :math:`\hat V_t^{-1/2}`.

    :math:`\hat V_t = r_t c_t / \operatorname{mean}_a(r_t)` (see :func:`scale_by_factored_rms`);
    the factors are :math:`(r_t/\operatorname{mean}_a r_t)^{-1/2}`, expanded along the long axis,
    and :math:`c_t^{-1/2}`, expanded along the short one, so the full-size :math:`\hat V_t` is
    never formed.
    """
    long, short = axes
    # r_t has lost the long axis, so the short one may have moved down by one.
    r_mean = jnp.mean(r_t, axis=short - (short > long), keepdims=True)
    return jnp.expand_dims((r_t / r_mean) ** -0.5, long), jnp.expand_dims(c_t**-0.5, short)


def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: float | jax.Array = 0.8,
    step_offset: int | jax.Array = 0,
    min_dim_size_to_factor: int = 128,
    epsilon: float | jax.Array = 1e-30,
    decay_rate_fn: DecayRateFn | None = None,
    *,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Divides updates by a factored root-mean-square estimate (Adafactor's preconditioner).

    A leaf is *factored* when ``factored`` is true, it has rank >= 2 and its two largest axes both
    have at least ``min_dim_size_to_factor`` entries (the rule of ``optax.adafactor`` and Mesh
    TensorFlow's Adafactor: the two *largest* axes, not necessarily the last two; among equal
    sizes the later axis counts as larger). Call the largest axis :math:`b` and the second-largest
    :math:`a`; all other axes are batch axes. For a gradient :math:`G_t` the piece keeps

    .. math::

        r_t &= \hat\beta_{2,t}\, r_{t-1} + (1 - \hat\beta_{2,t})\,
               \operatorname{mean}_b(G_t^2 + \epsilon_1), \qquad
        c_t = \hat\beta_{2,t}\, c_{t-1} + (1 - \hat\beta_{2,t})\,
               \operatorname{mean}_a(G_t^2 + \epsilon_1), \\
        \hat V_t &= \frac{r_t\, c_t}{\operatorname{mean}_a(r_t)}, \qquad
        U_t = G_t / \sqrt{\hat V_t},

    which equals the paper's :math:`\hat V_t = R_t C_t / (1^\top R_t)` with row and column
    *sums* :math:`R_t, C_t` (Algorithm 4); the state stores the means, as optax does. Any other
    leaf keeps the full :math:`v_t = \hat\beta_{2,t} v_{t-1} + (1-\hat\beta_{2,t})(G_t^2 +
    \epsilon_1)` and :math:`U_t = G_t/\sqrt{v_t}` (Algorithm 5). The decay grows with the step,
    :math:`\hat\beta_{2,t} = 1 - t^{-c}` with :math:`c` = ``decay_rate`` and
    :math:`t = \max(\mathrm{count} - \mathrm{step\_offset}, 0) + 1`, so :math:`\hat\beta_{2,1} = 0`
    and no bias correction is needed. (optax does not clamp :math:`t` and gives NaN while the count
    is below ``step_offset``; otherwise the two agree.)

    Args:
      factored: whether leaves may be factored at all.
      decay_rate: :math:`c` in (0, 1]. :math:`c = 1` averages all past squared gradients equally;
        smaller :math:`c` forgets faster (the paper uses 0.8). Only checked when
        ``decay_rate_fn`` is ``None``.
      step_offset: the count at which :math:`t` restarts from 1, e.g. the first step of a
        fine-tuning phase; an integer >= 0.
      min_dim_size_to_factor: a leaf is factored only if its two largest axes have at least this
        many entries; an integer >= 1.
      epsilon: :math:`\epsilon_1`, added to :math:`G_t^2`, >= 0.
      decay_rate_fn: optional replacement for the decay schedule, called as
        ``decay_rate_fn(step, decay_rate)`` with the 0-based ``step`` = :math:`t - 1` (as in
        optax), e.g. to cap :math:`\hat\beta_{2,t}` (Zhai et al. 2021).
      nu_dtype: storage dtype of ``v_row``, ``v_col`` and ``v``; ``None`` follows the params (real
        part for complex).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByFactoredRmsState`.
      ``update`` does not need params. Updates come back in the gradients' dtype; arithmetic runs
      in at least float32.

    References:
      Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost", ICML 2018,
      Algorithms 4 and 5 and §7.2. Convention: ``optax.scale_by_factored_rms``.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_factored_rms(), optax.scale_by_learning_rate(1e-2))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    fn = "scale_by_factored_rms"
    v.check_bool(fn, "factored", factored)
    if decay_rate_fn is None:
        v.check_positive(fn, "decay_rate", decay_rate, at_most_one=True)
    elif not callable(decay_rate_fn):
        raise TypeError(f"{fn}: decay_rate_fn must be None or callable, got {decay_rate_fn!r}")
    v.check_integer(fn, "step_offset", step_offset, minimum=0, array_ok=True)
    v.check_integer(fn, "min_dim_size_to_factor", min_dim_size_to_factor, minimum=1, array_ok=False)
    v.check_non_negative(fn, "epsilon", epsilon)
    v.check_float_dtype(fn, "nu_dtype", nu_dtype)

    def init_fn(params: optax.Params) -> ScaleByFactoredRmsState:
        v.check_params(fn, params)

        def leaf(p):
            shape = jnp.shape(p)
            dtype = p.dtype if hasattr(p, "dtype") else jnp.result_type(p)
            dtype = moments.storage_dtype(dtype, nu_dtype, real=True)
            axes = _factored_axes(shape, factored, min_dim_size_to_factor)
            if axes is None:
                # Separate buffers: a state donated to jit must not alias itself.
                return (
                    jnp.zeros((1,), dtype),
                    jnp.zeros((1,), dtype),
                    jnp.zeros_like(p, dtype=dtype),
                )
            long, short = axes
            # Each statistic is a mean over one axis, placed like the param less that axis.
            row = _zeros_without_axis(p, long, dtype)
            col = _zeros_without_axis(p, short, dtype)
            return row, col, jnp.zeros((1,), dtype)

        v_row, v_col, nu = _tree.map_unzip(leaf, 3, params)
        return ScaleByFactoredRmsState(jnp.zeros([], jnp.int32), v_row, v_col, nu)

    def decay_at(count: jax.Array, dtype: Any) -> jax.Array:
        step = jnp.maximum(count - step_offset, 0)
        if decay_rate_fn is not None:
            return jnp.asarray(decay_rate_fn(step, decay_rate), dtype)
        return 1 - (step.astype(dtype) + 1) ** -jnp.asarray(decay_rate, dtype)

    def update_fn(updates, state, params=None):
        del params
        _check_structure(fn, updates, state.v)
        count = state.count

        leaves = jax.tree_util.tree_flatten_with_path(updates)[0]
        stats = zip(*(jax.tree.leaves(x) for x in (state.v_row, state.v_col, state.v)), strict=True)
        for (path, g), have in zip(leaves, stats, strict=True):
            shape = jnp.shape(g)
            want = _state_shapes(shape, _factored_axes(shape, factored, min_dim_size_to_factor))
            if want != tuple(x.shape for x in have):
                raise ValueError(
                    f"{fn}: the update at {jax.tree_util.keystr(path) or '<root>'} has shape "
                    f"{shape} and needs (v_row, v_col, v) of shapes {want}, but the optimizer "
                    f"state holds {tuple(x.shape for x in have)}. Was init() called on params of "
                    "other shapes, or with another min_dim_size_to_factor?"
                )

        def leaf(g, v_row, v_col, nu):
            shape = jnp.shape(g)
            axes = _factored_axes(shape, factored, min_dim_size_to_factor)
            dtype = moments.compute_dtype(g.dtype, nu.dtype)
            g_c = g.astype(dtype)
            g_sq = moments.squared_magnitude(g_c) + epsilon
            decay = decay_at(count, g_sq.dtype)
            if axes is None:
                nu_t = moments.ema(g_sq, nu.astype(g_sq.dtype), decay)
                u = g_c * nu_t**-0.5
                return u.astype(g.dtype), v_row, v_col, nu_t.astype(nu.dtype)
            long, short = axes
            r_t = moments.ema(jnp.mean(g_sq, axis=long), v_row.astype(g_sq.dtype), decay)
            c_t = moments.ema(jnp.mean(g_sq, axis=short), v_col.astype(g_sq.dtype), decay)
            row_factor, col_factor = inverse_rms_factors(r_t, c_t, axes)
            u = g_c * row_factor * col_factor
            return u.astype(g.dtype), r_t.astype(v_row.dtype), c_t.astype(v_col.dtype), nu

        updates, v_row, v_col, nu = _tree.map_unzip(
            leaf, 4, updates, state.v_row, state.v_col, state.v
        )
        new_state = ScaleByFactoredRmsState(optax.safe_increment(count), v_row, v_col, nu)
        return updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def clip_by_block_rms(threshold: float | jax.Array = 1.0) -> optax.GradientTransformationExtraArgs:
    r"""Clips each leaf's update to RMS at most :math:`d` and records the clipping factor.

    .. math::

        \hat U_t = U_t / \max\!\left(1, \mathrm{RMS}(U_t)/d\right), \qquad
        \mathrm{RMS}(U) = \sqrt{\operatorname{mean}(|U|^2)}

    per leaf ("block"). This is ``optax.clip_by_block_rms``, except that the divisor of the latest
    step is kept in :attr:`ClipByBlockRmsState.clip_factor` (one scalar per leaf) so diagnostics
    can report how often and how hard Adafactor clips.

    Args:
      threshold: :math:`d`, a finite number > 0 (the paper uses 1).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ClipByBlockRmsState`.
      Updates come back in their own dtype; the RMS is computed in at least float32.

    References:
      Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost", ICML 2018,
      §6 (update clipping). Convention: ``optax.clip_by_block_rms``.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_factored_rms(), adamjax.clip_by_block_rms(1.0))
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> factors = state[1].clip_factor
    """
    fn = "clip_by_block_rms"
    v.check_positive(fn, "threshold", threshold)

    def init_fn(params: optax.Params) -> ClipByBlockRmsState:
        def one(p):
            dtype = p.dtype if hasattr(p, "dtype") else jnp.result_type(p)
            return jnp.ones([], moments.real_dtype(moments.compute_dtype(dtype)))

        return ClipByBlockRmsState(jnp.zeros([], jnp.int32), jax.tree.map(one, params))

    def update_fn(updates, state, params=None):
        del params
        _check_structure(fn, updates, state.clip_factor)

        def leaf(u, factor):
            u_c = u.astype(moments.compute_dtype(u.dtype))
            rms = jnp.sqrt(jnp.mean(moments.squared_magnitude(u_c)))
            divisor = jnp.maximum(1, rms / threshold)
            return (u_c / divisor).astype(u.dtype), divisor.astype(factor.dtype)

        updates, factors = _tree.map_unzip(leaf, 2, updates, state.clip_factor)
        return updates, ClipByBlockRmsState(optax.safe_increment(state.count), factors)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def relative_step_schedule(cap: float | jax.Array = 1e-2) -> optax.Schedule:
    r"""The paper's relative step size :math:`\rho_t = \min(\mathrm{cap}, 1/\sqrt t)`.

    An optax schedule of the 0-based count, so :math:`t` = count + 1. It is evaluated in the
    default float dtype (float64 under x64).

    Args:
      cap: the largest step, a finite number > 0 (the paper uses :math:`10^{-2}`).

    Returns:
      A function of the int32 step count.

    References:
      Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost", ICML 2018,
      §8 and Algorithm 4.

    Example:
      >>> rho = adamjax.relative_step_schedule(cap=1e-2)
      >>> tx = optax.chain(adamjax.scale_by_factored_rms(), optax.scale_by_learning_rate(rho))
      >>> updates, state = tx.update(grads, tx.init(params))
    """
    v.check_positive("relative_step_schedule", "cap", cap)

    def schedule(count: jax.Array) -> jax.Array:
        return jnp.minimum(cap, jax.lax.rsqrt(count + 1.0))

    return schedule


def _momentum(decay: float, accumulator_dtype: Any) -> optax.GradientTransformation:
    """``optax.ema`` without debiasing, whose updates keep the dtype of the incoming updates.

    ``optax.ema`` returns the new average in its accumulator's dtype, so float16 or bfloat16
    params would get float32 updates (twice the memory, and a dtype the chain did not ask for).
    """
    ema = optax.ema(decay, debias=False, accumulator_dtype=accumulator_dtype)

    def update_fn(updates, state, params=None):
        averaged, state = ema.update(updates, state, params)
        return jax.tree.map(lambda a, u: a.astype(u.dtype), averaged, updates), state

    return optax.GradientTransformation(ema.init, update_fn)


def adafactor(
    learning_rate: transform.ScalarOrSchedule | None = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: float = 0.8,
    decay_offset: int = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: float | None = 1.0,
    momentum: float | None = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: transform.ScalarOrSchedule | None = None,
    eps: float = 1e-30,
    factored: bool = True,
    weight_decay_mask: Any | None = None,
    *,
    relative_step: bool | None = None,
    relative_step_cap: float = 1e-2,
    eps_scale: float = 1e-3,
) -> optax.GradientTransformationExtraArgs:
    r"""Adafactor (Shazeer & Stern 2018), spelled like ``optax.adafactor``.

    With :math:`U_t` from :func:`scale_by_factored_rms` and :math:`d` = ``clipping_threshold``:

    .. math::

        \hat U_t &= U_t / \max(1, \mathrm{RMS}(U_t)/d), \qquad
        \alpha_t = \eta_t \cdot \max(\epsilon_2, \mathrm{RMS}(\theta_{t-1})), \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\,\alpha_t \hat U_t \quad (\text{with momentum}), \\
        \theta_t &= \theta_{t-1} - m_t - \lambda_t \theta_{t-1},

    where :math:`\eta_t` is the learning rate (or the relative step :math:`\rho_t`),
    :math:`\epsilon_2` = ``eps_scale``, :math:`\beta_1` = ``momentum`` (without it,
    :math:`m_t = \alpha_t \hat U_t`) and :math:`\lambda_t` = ``weight_decay_rate``. RMS is taken
    per leaf. The clipping factor of each leaf is kept in the state (:class:`ClipByBlockRmsState`).

    .. important::
       **learning_rate=None differs from optax.** ``optax.adafactor(learning_rate=None)`` applies
       no step size at all (:math:`\eta_t = 1`, so with the parameter scale each step moves a
       leaf by up to its own RMS). adamjax, like the paper, then uses the relative step
       :math:`\eta_t = \rho_t = \min(\mathrm{relative\_step\_cap}, 1/\sqrt t)`. Pass
       ``relative_step=False`` to get optax's behaviour exactly. With a ``learning_rate``, or
       with ``relative_step=False``, this alias computes what ``optax.adafactor`` computes with
       the same arguments.

    Other conventions worth knowing (all as in optax): ``weight_decay_rate`` is an absolute
    per-step decay, *not* multiplied by the learning rate or the parameter scale; momentum
    averages the already scaled step :math:`\alpha_t \hat U_t` (Mesh TensorFlow's form) without
    bias correction; ``dtype_momentum`` defaults to float32 even for float64 params (pass
    ``None`` to follow the params). One difference from optax: with momentum, the updates keep
    the params' dtype (optax returns them in ``dtype_momentum``, so float32 for bfloat16 params;
    ``optax.apply_updates`` then rounds the sum once instead of twice, a half-ulp difference in
    the param). With ``optax.inject_hyperparams``, pass
    ``static_args=("min_dim_size_to_factor", "dtype_momentum")``: the first decides the state's
    shapes and the second is not a number.

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule; ``None`` for the
        relative step (or for no step size, with ``relative_step=False``).
      min_dim_size_to_factor: a leaf is factored only if its two largest axes have at least this
        many entries (see :func:`scale_by_factored_rms`).
      decay_rate: :math:`c` of :math:`\hat\beta_{2,t} = 1 - t^{-c}`, in (0, 1].
      decay_offset: the count at which :math:`t` restarts from 1 (fine-tuning), an integer >= 0.
        It does not restart :math:`\rho_t`.
      multiply_by_parameter_scale: multiply the step by :math:`\max(\epsilon_2,
        \mathrm{RMS}(\theta_{t-1}))`; if false, :math:`\eta_t` is the absolute step size.
      clipping_threshold: :math:`d > 0`; ``None`` disables update clipping.
      momentum: :math:`\beta_1` in [0, 1), or ``None`` for no first moment (no extra memory).
      dtype_momentum: storage dtype of the first moment; ``None`` follows the params.
      weight_decay_rate: :math:`\lambda_t`, a number >= 0 or a schedule; ``None`` for none.
      eps: :math:`\epsilon_1`, added to the squared gradient, >= 0.
      factored: whether to factor the second moment of matrices at all.
      weight_decay_mask: which leaves to decay: a pytree of bools or a callable on the params.
      relative_step: use :math:`\rho_t` as the step size. ``None`` (default) means "when
        ``learning_rate`` is ``None``"; ``False`` with ``learning_rate=None`` is optax's
        unscaled step; ``True`` together with a ``learning_rate`` is an error.
      relative_step_cap: the cap of :math:`\rho_t`, a finite number > 0.
      eps_scale: :math:`\epsilon_2`, the smallest parameter scale, >= 0.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_factored_rms,
      clip_by_block_rms, scale_by_learning_rate, scale_by_param_block_rms, ema,
      add_decayed_weights, scale(-1))``, with the disabled pieces left out. ``update`` needs
      ``params`` when the parameter scale or weight decay is on.

    References:
      Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost", ICML 2018.
      Convention: ``optax.adafactor``.

    Example:
      >>> tx = adamjax.adafactor()  # the paper's defaults: relative step, clipping at 1
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "adafactor"
    if learning_rate is not None:
        v.check_non_negative(fn, "learning_rate", learning_rate, schedule_ok=True)
    v.check_integer(fn, "min_dim_size_to_factor", min_dim_size_to_factor, minimum=1, array_ok=False)
    v.check_positive(fn, "decay_rate", decay_rate, at_most_one=True)
    v.check_integer(fn, "decay_offset", decay_offset, minimum=0, array_ok=True)
    v.check_bool(fn, "multiply_by_parameter_scale", multiply_by_parameter_scale)
    if clipping_threshold is not None:
        v.check_positive(fn, "clipping_threshold", clipping_threshold)
    if momentum is not None:
        # dtype_momentum is only checked when used: optax.inject_hyperparams mistakes the
        # callable jnp.float32 for a schedule and passes an array in its place.
        v.check_unit_interval(fn, "momentum", momentum)
        v.check_float_dtype(fn, "dtype_momentum", dtype_momentum)
    if weight_decay_rate is not None:
        v.check_non_negative(fn, "weight_decay_rate", weight_decay_rate, schedule_ok=True)
    v.check_non_negative(fn, "eps", eps)
    v.check_bool(fn, "factored", factored)
    if relative_step is not None and not isinstance(relative_step, (bool, np.bool_)):
        raise TypeError(f"{fn}: relative_step must be None, True or False, got {relative_step!r}")
    v.check_positive(fn, "relative_step_cap", relative_step_cap)
    v.check_non_negative(fn, "eps_scale", eps_scale)
    if relative_step and learning_rate is not None:
        raise ValueError(
            f"{fn}: relative_step=True computes its own step size, so learning_rate must be None, "
            f"got {learning_rate!r}; pass relative_step=False (or leave it None) to use a "
            "learning rate."
        )

    if relative_step is None:
        relative_step = learning_rate is None
    step_size = relative_step_schedule(relative_step_cap) if relative_step else learning_rate

    pieces = [
        scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps)
    ]
    if clipping_threshold is not None:
        pieces.append(clip_by_block_rms(clipping_threshold))
    if step_size is not None:
        pieces.append(transform.scale_by_learning_rate(step_size, flip_sign=False))
    if multiply_by_parameter_scale:
        pieces.append(optax.scale_by_param_block_rms(eps_scale))
    if momentum is not None:
        pieces.append(_momentum(momentum, dtype_momentum))
    if weight_decay_rate is not None:
        pieces.append(
            transform.masked_decay(fn, weight_decay_rate, weight_decay_mask, "weight_decay_mask")
        )
    pieces.append(optax.scale(-1.0))
    return optax.chain(*pieces)
