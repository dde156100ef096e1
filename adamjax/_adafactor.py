r"""Adafactor (Shazeer & Stern 2018): factored second moments, update clipping, relative steps.

Two pieces of adamjax's own, one alias and the pieces' diagnostics views:

* :func:`scale_by_factored_rms` divides the gradient by a second-moment estimate that, for a matrix,
  keeps only row and column statistics (memory :math:`O(n + m)` instead of :math:`O(nm)`);
* :func:`clip_by_block_rms` is ``optax.clip_by_block_rms`` that also records its clipping factor
  in the state, for diagnostics;
* :func:`adafactor` chains them with adamjax's learning-rate piece and decoupled weight decay
  (:mod:`adamjax._scaling`), optax's parameter-scale and scale pieces and a momentum EMA.

The options are spelled as in ``optax.adafactor``, and with a ``learning_rate`` (or with
``relative_step=False``) the alias computes what ``optax.adafactor`` computes. The one deliberate
difference is ``learning_rate=None``: optax then applies *no* step size at all, while adamjax uses
the paper's relative step :math:`\rho_t = \min(10^{-2}, 1/\sqrt t)` (see :func:`adafactor`).
"""

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adamjax import _formats, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v

DecayRateFn = Callable[[jax.Array, Any], jax.Array]


class ScaleByFactoredRmsState(NamedTuple):
    r"""State of scale_by_factored_rms.

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
    r"""State of clip_by_block_rms.

    Attributes:
      clip_count: int32 scalar, the number of updates applied so far (not called ``count``, so
        that ``optax.tree_utils.tree_get(state, "count")`` on :func:`adafactor`'s state finds the
        one count of :class:`ScaleByFactoredRmsState`).
      clip_factor: one scalar per leaf, the divisor :math:`\max(1, \mathrm{RMS}(U_t)/d)` of the
        latest update (1 means the leaf was not clipped); real, in at least float32.
    """

    clip_count: jax.Array
    clip_factor: optax.Updates


class AdafactorMomentumState(NamedTuple):
    r"""State of adafactor's momentum: the fields of optax.EmaState, renamed.

    Attributes:
      momentum_count: int32 scalar, the number of updates applied so far (not called ``count``:
        see :class:`ClipByBlockRmsState`).
      ema: :math:`m_t`, the moving average of the scaled steps, in ``dtype_momentum``.
    """

    momentum_count: jax.Array
    ema: optax.Updates


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
    (sharded like ``like`` less that axis). A reduction of zeros placed like the param rather
    than ``jnp.zeros``, so that the placement is derived from the param; under ``jax.jit`` it
    folds to a constant."""
    zeros = _formats.zeros_like_param(like, jnp.uint8)
    return jnp.sum(zeros, axis=axis, dtype=jnp.uint8).astype(dtype)


def _check_structure(fn: str, updates: Any, state_tree: Any, params: Any = None) -> None:
    """Checks tree structure and the updates' dtypes (complex ones against ``params`` if given,
    as the real statistics cannot tell a complex param), not shapes: state leaves do not have
    the shapes of the updates here."""

    def scalar(_: Any) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct((), jnp.float32)

    v.check_tree_match(fn, jax.tree.map(scalar, updates), jax.tree.map(scalar, state_tree))
    v.check_update_dtypes(fn, updates, params)


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

    Update rule::

        beta = 1 - t**(-decay_rate),  t = max(count - step_offset, 0) + 1
        factored leaf (largest axis L, second-largest S, both >= min_dim_size_to_factor):
            v_row = beta*v_row + (1-beta) * mean(|g|**2 + epsilon, over L)
            v_col = beta*v_col + (1-beta) * mean(|g|**2 + epsilon, over S)
            v_hat = v_row * v_col / mean(v_row, over S)          (broadcast to g's shape)
        any other leaf:
            v = beta*v + (1-beta) * (|g|**2 + epsilon);  v_hat = v
        update = g / sqrt(v_hat)
        decay_rate_fn given:  beta = decay_rate_fn(t - 1, decay_rate)

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
    return _factored_rms(
        "scale_by_factored_rms", factored=factored, decay_rate=decay_rate,
        step_offset=step_offset, min_dim_size_to_factor=min_dim_size_to_factor, epsilon=epsilon,
        decay_rate_fn=decay_rate_fn, nu_dtype=nu_dtype,
    )  # fmt: skip


class _Factoring(NamedTuple):
    """Which leaves :func:`scale_by_factored_rms` factors: its ``factored`` and
    ``min_dim_size_to_factor``."""

    factored: bool
    min_dim: int

    def axes(self, shape: tuple[int, ...]) -> tuple[int, int] | None:
        return _factored_axes(shape, self.factored, self.min_dim)


def _check_factored_options(
    fn: str,
    *,
    factored: Any,
    decay_rate: Any,
    step_offset: Any,
    min_dim_size_to_factor: Any,
    epsilon: Any,
    decay_rate_fn: Any,
    nu_dtype: Any,
    spelled: Mapping[str, str],
) -> None:
    """Checks :func:`scale_by_factored_rms`'s options under ``fn``; ``spelled`` maps an option to
    the name the caller gave it (:func:`adafactor`'s ``decay_offset`` and ``eps``)."""
    v.check_integer(fn, "min_dim_size_to_factor", min_dim_size_to_factor, minimum=1, array_ok=False)
    if decay_rate_fn is None:
        v.check_positive(fn, "decay_rate", decay_rate, at_most_one=True)
    elif not callable(decay_rate_fn):
        raise TypeError(f"{fn}: decay_rate_fn must be None or callable, got {decay_rate_fn!r}")
    offset_name = spelled.get("step_offset", "step_offset")
    v.check_integer(fn, offset_name, step_offset, minimum=0, array_ok=True)
    v.check_non_negative(fn, spelled.get("epsilon", "epsilon"), epsilon)
    v.check_bool(fn, "factored", factored)
    v.check_float_dtype(fn, "nu_dtype", nu_dtype)


def _zero_statistics(p: Any, factoring: _Factoring, nu_dtype: Any) -> tuple[jax.Array, ...]:
    """A leaf's zero ``(v_row, v_col, v)``; the ones it does not use are ``(1,)`` placeholders."""
    dtype = p.dtype if hasattr(p, "dtype") else jnp.result_type(p)
    dtype = mo.storage_dtype(dtype, nu_dtype, real=True)
    axes = factoring.axes(jnp.shape(p))
    if axes is None:
        # Separate buffers: a state donated to jit must not alias itself.
        return jnp.zeros((1,), dtype), jnp.zeros((1,), dtype), _formats.zeros_like_param(p, dtype)
    long, short = axes
    # Each statistic is a mean over one axis, placed like the param less that axis.
    row = _zeros_without_axis(p, long, dtype)
    col = _zeros_without_axis(p, short, dtype)
    return row, col, jnp.zeros((1,), dtype)


def _check_state_shapes(
    fn: str, updates: Any, state: ScaleByFactoredRmsState, factoring: _Factoring
) -> None:
    """Checks each leaf's ``(v_row, v_col, v)`` have the shapes the update's shape needs."""
    leaves = jax.tree_util.tree_flatten_with_path(updates)[0]
    stats = zip(*(jax.tree.leaves(x) for x in (state.v_row, state.v_col, state.v)), strict=True)
    for (path, g), have in zip(leaves, stats, strict=True):
        shape = jnp.shape(g)
        want = _state_shapes(shape, factoring.axes(shape))
        if want != tuple(x.shape for x in have):
            raise ValueError(
                f"{fn}: the update at {jax.tree_util.keystr(path) or '<root>'} has shape "
                f"{shape} and needs (v_row, v_col, v) of shapes {want}, but the optimizer "
                f"state holds {tuple(x.shape for x in have)}. Was init() called on params of "
                "other shapes, or with another min_dim_size_to_factor?"
            )


def _decay_rate_at(
    count: jax.Array, dtype: Any, decay_rate: Any, step_offset: Any, decay_rate_fn: Any
) -> jax.Array:
    r""":math:`\hat\beta_{2,t}` in ``dtype`` for the update that follows ``count`` updates."""
    step = jnp.maximum(count - step_offset, 0)
    if decay_rate_fn is not None:
        return jnp.asarray(decay_rate_fn(step, decay_rate), dtype)
    return 1 - (step.astype(dtype) + 1) ** -jnp.asarray(decay_rate, dtype)


def _squared_gradient(g: jax.Array, nu: jax.Array, epsilon: Any) -> tuple[jax.Array, jax.Array]:
    r"""``(g, |g|^2 + epsilon)``, both in the leaf's compute dtype (the second one real)."""
    g_c = g.astype(mo.compute_dtype(g.dtype, nu.dtype))
    return g_c, mo.squared_magnitude(g_c) + epsilon


def _unfactored_step(
    g_c: jax.Array, g_sq: jax.Array, nu: jax.Array, decay: jax.Array, guard: bool
) -> tuple[jax.Array, jax.Array]:
    """Algorithm 5: ``(U_t, v_t)`` from the full statistic."""
    nu_t = mo.ema(g_sq, nu.astype(g_sq.dtype), decay)
    return g_c * _finite_or_zero(nu_t**-0.5, guard), nu_t


def _finite_or_zero(factor: jax.Array, guard: bool) -> jax.Array:
    """With ``guard`` (``epsilon`` is a static 0), 0 where the inverse-RMS ``factor`` is not
    finite: a statistic of 0 (no gradient yet, or one whose square underflows) would give
    0 * inf = NaN, or inf; its limit as epsilon -> 0 is a zero update, as for Adam's eps = 0."""
    return jnp.where(jnp.isfinite(factor), factor, 0) if guard else factor


def _factored_step(
    g_c: jax.Array,
    g_sq: jax.Array,
    v_row: jax.Array,
    v_col: jax.Array,
    decay: jax.Array,
    axes: tuple[int, int],
    guard: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Algorithm 4: ``(U_t, r_t, c_t)`` from the row and column statistics."""
    long, short = axes
    r_t = mo.ema(jnp.mean(g_sq, axis=long), v_row.astype(g_sq.dtype), decay)
    c_t = mo.ema(jnp.mean(g_sq, axis=short), v_col.astype(g_sq.dtype), decay)
    row_factor, col_factor = inverse_rms_factors(r_t, c_t, axes)
    return g_c * _finite_or_zero(row_factor * col_factor, guard), r_t, c_t


def _leaf_step(
    g: jax.Array,
    squared: tuple[jax.Array, jax.Array],
    stats: tuple[jax.Array, jax.Array, jax.Array],
    axes: tuple[int, int] | None,
    decay: jax.Array,
    guard: bool,
) -> tuple[jax.Array, ...]:
    """One leaf's ``(update, v_row, v_col, v)``, the update in ``g``'s dtype and the statistics in
    their storage dtype."""
    (g_c, g_sq), (v_row, v_col, nu) = squared, stats
    if axes is None:
        u, nu_t = _unfactored_step(g_c, g_sq, nu, decay, guard)
        return u.astype(g.dtype), v_row, v_col, nu_t.astype(nu.dtype)
    u, r_t, c_t = _factored_step(g_c, g_sq, v_row, v_col, decay, axes, guard)
    return u.astype(g.dtype), r_t.astype(v_row.dtype), c_t.astype(v_col.dtype), nu


def _factored_rms(
    fn: str,
    *,
    factored: Any,
    decay_rate: Any,
    step_offset: Any,
    min_dim_size_to_factor: Any,
    epsilon: Any,
    decay_rate_fn: Any,
    nu_dtype: Any,
    spelled: Mapping[str, str] = MappingProxyType({}),
) -> optax.GradientTransformationExtraArgs:
    """:func:`scale_by_factored_rms`, validated under ``fn``, the name of the function the user
    called (``spelled``: see :func:`_check_factored_options`)."""
    _check_factored_options(
        fn, factored=factored, decay_rate=decay_rate, step_offset=step_offset,
        min_dim_size_to_factor=min_dim_size_to_factor, epsilon=epsilon,
        decay_rate_fn=decay_rate_fn, nu_dtype=nu_dtype, spelled=spelled,
    )  # fmt: skip
    factoring = _Factoring(factored, min_dim_size_to_factor)

    def init_fn(params: optax.Params) -> ScaleByFactoredRmsState:
        v.check_params(fn, params)
        v_row, v_col, nu = _piece.map_unzip(
            lambda p: _zero_statistics(p, factoring, nu_dtype), 3, params
        )
        return ScaleByFactoredRmsState(jnp.zeros([], jnp.int32), v_row, v_col, nu)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _check_structure(fn, updates, state.v, params)
        _check_state_shapes(fn, updates, state, factoring)
        leaves, treedef = jax.tree.flatten(updates)
        stats = [treedef.flatten_up_to(x) for x in (state.v_row, state.v_col, state.v)]
        stats = list(zip(*stats, strict=True))
        squared = [_squared_gradient(g, s[2], epsilon) for g, s in zip(leaves, stats, strict=True)]
        guard = mo.is_static_zero(epsilon)
        # The step's decay rate, once per compute dtype of the leaves (float32, or float64).
        decays = {
            dtype: _decay_rate_at(state.count, dtype, decay_rate, step_offset, decay_rate_fn)
            for dtype in dict.fromkeys(g_sq.dtype for _, g_sq in squared)
        }
        out = [
            _leaf_step(g, sq, s, factoring.axes(jnp.shape(g)), decays[sq[1].dtype], guard)
            for g, sq, s in zip(leaves, squared, stats, strict=True)
        ]
        updates, v_row, v_col, nu = (treedef.unflatten([o[i] for o in out]) for i in range(4))
        return updates, ScaleByFactoredRmsState(optax.safe_increment(state.count), v_row, v_col, nu)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def clip_by_block_rms(threshold: float | jax.Array = 1.0) -> optax.GradientTransformationExtraArgs:
    r"""Clips each leaf's update to an RMS of at most threshold and records the clipping factor.

    Update rule::

        update = u / max(1, sqrt(mean(|u|**2)) / threshold)          (per leaf)

    .. math::

        \hat U_t = U_t / \max\!\left(1, \mathrm{RMS}(U_t)/d\right), \qquad
        \mathrm{RMS}(U) = \sqrt{\operatorname{mean}(|U|^2)}

    per leaf ("block"). This is ``optax.clip_by_block_rms``, except that the divisor of the latest
    step is kept in :attr:`ClipByBlockRmsState.clip_factor` (one scalar per leaf) so diagnostics
    can report how often and how hard Adafactor clips, and that a 0-size leaf (no entries, so no
    RMS) is left as it is with a divisor of 1, where optax's RMS is 0/0 = NaN.

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
    return _clip_by_block_rms("clip_by_block_rms", threshold=threshold)


def _clip_by_block_rms(
    fn: str, *, threshold: Any, name: str = "threshold"
) -> optax.GradientTransformationExtraArgs:
    """:func:`clip_by_block_rms`, with ``threshold`` checked under ``fn`` as ``name``."""
    v.check_positive(fn, name, threshold)

    def init_fn(params: optax.Params) -> ClipByBlockRmsState:
        def one(p):
            dtype = p.dtype if hasattr(p, "dtype") else jnp.result_type(p)
            return jnp.ones([], mo.real_dtype(mo.compute_dtype(dtype)))

        return ClipByBlockRmsState(jnp.zeros([], jnp.int32), jax.tree.map(one, params))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _check_structure(fn, updates, state.clip_factor)

        def leaf(u, factor):
            if not u.size:
                # The RMS of no entries would be 0/0 = NaN; there is nothing to clip.
                return u, jnp.ones_like(factor)
            u_c = u.astype(mo.compute_dtype(u.dtype))
            rms = jnp.sqrt(jnp.mean(mo.squared_magnitude(u_c)))
            divisor = jnp.maximum(1, rms / threshold)
            return (u_c / divisor).astype(u.dtype), divisor.astype(factor.dtype)

        updates, factors = _piece.map_unzip(leaf, 2, updates, state.clip_factor)
        return updates, ClipByBlockRmsState(optax.safe_increment(state.clip_count), factors)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def relative_step_schedule(cap: float | jax.Array = 1e-2) -> optax.Schedule:
    r"""The paper's relative step size min(cap, 1 / sqrt(count + 1)), as an optax schedule.

    .. math::

        \rho_t = \min(\mathrm{cap}, 1/\sqrt t), \qquad t = \mathrm{count} + 1,

    with the 0-based count of optax's schedules. It is evaluated in the default float dtype
    (float64 under x64).

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
    return _relative_step(cap)


def _relative_step(cap: Any) -> optax.Schedule:
    """:func:`relative_step_schedule`, unchecked (the caller checked ``cap``)."""

    def schedule(count: jax.Array) -> jax.Array:
        return jnp.minimum(cap, jax.lax.rsqrt(count + 1.0))

    return schedule


def _momentum(decay: Any, accumulator_dtype: Any) -> optax.GradientTransformationExtraArgs:
    """``optax.ema(decay, debias=False, accumulator_dtype)`` whose updates keep the dtype of the
    incoming updates, with state :class:`AdafactorMomentumState`.

    ``optax.ema`` returns the new average in its accumulator's dtype, so float16 or bfloat16
    params would get float32 updates (twice the memory, and a dtype the chain did not ask for).
    The average is computed exactly as ``optax.ema`` computes it.
    """
    if accumulator_dtype is not None:
        accumulator_dtype = jax.dtypes.canonicalize_dtype(accumulator_dtype)

    def init_fn(params: optax.Params) -> AdafactorMomentumState:
        ema = jax.tree.map(lambda p: _formats.zeros_like_param(p, accumulator_dtype), params)
        return AdafactorMomentumState(jnp.zeros([], jnp.int32), ema)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        averaged = jax.tree.map(lambda u, m: (1 - decay) * u + decay * m, updates, state.ema)
        stored = averaged
        if accumulator_dtype is not None:
            stored = jax.tree.map(lambda a: a.astype(accumulator_dtype), averaged)
        updates = jax.tree.map(lambda a, u: a.astype(u.dtype), averaged, updates)
        return updates, AdafactorMomentumState(optax.safe_increment(state.momentum_count), stored)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def adafactor(
    learning_rate: _piece.ScalarOrSchedule | None = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: float = 0.8,
    decay_offset: int = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: float | None = 1.0,
    momentum: float | None = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: _piece.ScalarOrSchedule | None = None,
    eps: float = 1e-30,
    factored: bool = True,
    weight_decay_mask: Any | None = None,
    *,
    relative_step: bool | None = None,
    relative_step_cap: float = 1e-2,
    eps_scale: float = 1e-3,
) -> optax.GradientTransformationExtraArgs:
    r"""Adafactor (Shazeer & Stern 2018), spelled like optax.adafactor.

    Update rule::

        u = g / sqrt(v_hat)              (v_hat: the factored estimate of scale_by_factored_rms)
        u = u / max(1, rms(u) / clipping_threshold)        (rms(x) = sqrt(mean(|x|**2)), per leaf)
        u = lr * u,  lr = learning_rate, or min(relative_step_cap, 1 / sqrt(t)) if it is None
        u = max(eps_scale, rms(param)) * u                 (multiply_by_parameter_scale)
        m = momentum*m + (1-momentum)*u;  u = m
        update = -(u + weight_decay_rate * param)

    A step whose option is ``None`` or ``False`` is skipped (the step size too, with
    ``learning_rate=None`` and ``relative_step=False``).

    The positional parameters are ``optax.adafactor``'s, in its order; adamjax's additions are
    keyword-only.

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
    the param). A 0-size leaf gets an empty update and a clipping factor of 1, and leaves the
    other leaves' updates exactly as they are without it. With ``optax.inject_hyperparams``, pass
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
      add_decayed_weights, scale(-1))``, with the disabled pieces left out; the momentum EMA keeps
      an :class:`AdafactorMomentumState`. The one state field called ``count`` is the factored
      piece's, so ``optax.tree_utils.tree_get(state, "count")`` finds it. ``update`` needs
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
    _check_adafactor_options(
        fn, multiply_by_parameter_scale=multiply_by_parameter_scale, momentum=momentum,
        dtype_momentum=dtype_momentum, weight_decay_rate=weight_decay_rate,
        relative_step=relative_step, relative_step_cap=relative_step_cap, eps_scale=eps_scale,
    )  # fmt: skip
    pieces = [
        _factored_rms(
            fn, factored=factored, decay_rate=decay_rate, step_offset=decay_offset,
            min_dim_size_to_factor=min_dim_size_to_factor, epsilon=eps, decay_rate_fn=None,
            nu_dtype=None, spelled={"step_offset": "decay_offset", "epsilon": "eps"},
        )
    ]  # fmt: skip
    if clipping_threshold is not None:
        pieces.append(
            _clip_by_block_rms(fn, threshold=clipping_threshold, name="clipping_threshold")
        )
    step_size = _step_size(fn, learning_rate, relative_step, relative_step_cap)
    if step_size is not None:
        pieces.append(_scaling._learning_rate(fn, step_size, flip_sign=False))
    if multiply_by_parameter_scale:
        pieces.append(optax.scale_by_param_block_rms(eps_scale))
    if momentum is not None:
        pieces.append(_momentum(momentum, dtype_momentum))
    if weight_decay_rate is not None:
        pieces.append(
            _scaling.decayed_weights(
                fn, weight_decay_rate, weight_decay_mask, "weight_decay_mask", checked=True
            )
        )
    pieces.append(optax.scale(-1.0))
    return optax.chain(*pieces)


def _check_adafactor_options(
    fn: str,
    *,
    multiply_by_parameter_scale: Any,
    momentum: Any,
    dtype_momentum: Any,
    weight_decay_rate: Any,
    relative_step: Any,
    relative_step_cap: Any,
    eps_scale: Any,
) -> None:
    """Checks the options of :func:`adafactor` that no piece it chains checks under its name."""
    v.check_bool(fn, "multiply_by_parameter_scale", multiply_by_parameter_scale)
    if momentum is not None:
        # dtype_momentum is only checked when used: optax.inject_hyperparams mistakes the
        # callable jnp.float32 for a schedule and passes an array in its place.
        v.check_unit_interval(fn, "momentum", momentum)
        v.check_float_dtype(fn, "dtype_momentum", dtype_momentum)
    if weight_decay_rate is not None:
        # Checked here, once, to name it weight_decay_rate (decayed_weights gets checked=True).
        v.check_non_negative(fn, "weight_decay_rate", weight_decay_rate, schedule_ok=True)
    if relative_step is not None and not isinstance(relative_step, (bool, np.bool_)):
        raise TypeError(f"{fn}: relative_step must be None, True or False, got {relative_step!r}")
    v.check_positive(fn, "relative_step_cap", relative_step_cap)
    v.check_non_negative(fn, "eps_scale", eps_scale)


def _step_size(
    fn: str, learning_rate: Any, relative_step: bool | None, relative_step_cap: Any
) -> Any:
    r"""The step size :func:`adafactor` scales by: the learning rate, the relative step
    :math:`\rho_t`, or ``None`` (optax's unscaled step)."""
    if relative_step and learning_rate is not None:
        raise ValueError(
            f"{fn}: relative_step=True computes its own step size, so learning_rate must be None, "
            f"got {learning_rate!r}; pass relative_step=False (or leave it None) to use a "
            "learning rate."
        )
    if relative_step is None:
        relative_step = learning_rate is None
    return _relative_step(relative_step_cap) if relative_step else learning_rate


# ---- diagnostics views ----------------------------------------------------------------------


@_piece.register_view(ScaleByFactoredRmsState)
def _factored_view(state: ScaleByFactoredRmsState, grads: Any) -> _piece.View:
    r"""The factored estimate :math:`\hat V_t` (or the full :math:`v_t`) of every leaf; the step
    factor is :math:`\hat V_t^{-1/2}`."""

    def leaf(g, v_row, v_col, v_full):
        if isinstance(v_row, optax.MaskedNode):
            return None
        shape = jnp.shape(g)
        axes = factored_axes_of(shape, v_full)
        if axes is None:
            return _piece.real(v_full)
        row, col = inverse_rms_factors(_piece.real(v_row), _piece.real(v_col), axes)
        return jnp.broadcast_to(row * col, shape) ** -2

    v_hat = jax.tree.map(
        leaf,
        grads,
        state.v_row,
        state.v_col,
        state.v,
        is_leaf=lambda x: isinstance(x, optax.MaskedNode),
    )
    return _piece.View(v_hat, _piece.each(v_hat, lambda x: x**-0.5), False, None, v_hat)


@_piece.register_view(ClipByBlockRmsState)
def _clip_view(state: ClipByBlockRmsState, grads: Any) -> _piece.View:
    """The clipping divisors: the largest (``adafactor/clip_factor``) and each leaf's."""
    del grads
    factors = jax.tree.leaves(state.clip_factor)
    largest = jnp.max(jnp.stack(factors)) if factors else jnp.ones([], jnp.float32)
    return _piece.View(
        scalars={"adafactor/clip_factor": largest},
        leaf_scalars={"adafactor/clip_factor": state.clip_factor},
    )
