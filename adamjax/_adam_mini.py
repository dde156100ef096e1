r"""Adam-mini (Zhang et al. 2024): one second moment per parameter block. Its piece, its alias, the
authors' default partition and weight-decay rule, and its diagnostics view.

A *partition* is a function ``partition(name, shape)`` of a leaf's path (``"a/b/kernel"``) and
shape that returns the axes a block spans: the leaf's entries that share their indices on the
other axes form one block and share one second moment, the mean of :math:`g^2` over the block.
It may also return ``(view_shape, axes)``: the leaf is first reshaped to ``view_shape`` (e.g. to
split a fused ``heads * head_dim`` axis) and ``axes`` refer to that view. ``()`` is Adam (one
second moment per entry); all axes is one block for the whole tensor.
"""

import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adamjax import _formats, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v

#: ``partition(name, shape)``: the axes of a block, or ``(view_shape, axes)``.
Partition = Callable[[str, tuple[int, ...]], Any]

# The authors' name keywords (adam_mini 1.1.1), matched as substrings of the lowercased path,
# plus flax's spellings ("embedding" contains "embed"; "dense" for Dense kernels; the attention
# output projection of flax's MultiHeadAttention is a path element named "out").
_ADAM_NAMES = ("bias",)
_QK_NAMES = ("k_proj", "q_proj", "wq", "wk", "query", "key")
_EMBED_NAMES = ("embed", "embd", "wte")
_NEURON_NAMES = (
    *("lm_head", "output", "final_layer"),  # output layer: one block per token
    *("v_proj", "wv", "value"),  # values: one block per output neuron
    *("o_proj", "wo", "attn.proj", "attn/proj"),  # attention projection: per neuron
    *("feed_forward", "linear", "mlp", "dense"),  # MLPs: per neuron
)
_NO_DECAY_NAMES = ("norm", "ln", "bias")


class ScaleByAdamMiniState(NamedTuple):
    r"""State of scale_by_adam_mini.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t`, one entry per parameter, in ``mu_dtype``.
      nu: second moment :math:`v_t`, *one entry per block*: each leaf's shape with the block's
        axes reduced to size 1 (in the partition's view shape), real, in ``nu_dtype``.
      last_step: the :class:`~adamjax.StepScalars` of the latest update.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    last_step: mo.StepScalars


def adam_mini_partition(n_heads: int | None = None) -> Partition:
    r"""The Adam-mini authors' partition rule (adam_mini 1.1.1), for torch and flax parameter names.

    Update rule::

        name contains "bias":                     one block per entry (Adam)
        query/key ("query", "key", "q_proj", "k_proj", "wq", "wk"):
            rank >= 3 (flax (in, heads, head_dim)):  one block per head (axis -2)
            rank 2 (in, heads*head_dim):             split into n_heads, one block per head
        embedding ("embed", "embd", "wte"):       one block per token (row)
        output, value, attention projection, MLP ("lm_head", "output", "value", "v_proj",
            "wv", "o_proj", "wo", "out", "mlp", "linear", "dense", "feed_forward"):
            one block per output neuron (last axis of a flax kernel; rank 1: whole tensor)
        anything else (norm scales, ...):        one block for the whole tensor

    Names are matched as lowercased substrings of the path joined by ``/``, in the order above,
    as the authors match ``model.named_parameters()`` (flax's ``out`` must be a whole path
    element, so that ``output`` and ``outer`` do not match it). Flax kernels are ``(in, out)``
    where torch weights are ``(out, in)``, so "per output neuron" averages over the kernel's
    leading axes (the flax ``out`` projection, ``(heads, head_dim, features)``, over all but the
    last).

    Args:
      n_heads: the number of attention heads, needed to split rank-2 query and key kernels
        (``None``: such a kernel is an error at ``init``). With grouped-query attention the key
        kernel's ``heads*head_dim`` axis is split into blocks of the query's head size
        ``in/n_heads`` (the authors' ``dim*dim/n_heads`` entries), as the package does.

    Returns:
      ``partition(name, shape)``, the axes each block spans or ``(view_shape, axes)``.

    References:
      Zhang et al., "Adam-mini: Use Fewer Learning Rates To Gain More", ICLR 2025, §2.
      Convention: the authors' package ``adam_mini.Adam_mini`` 1.1.1.

    Example:
      >>> partition = adamjax.adam_mini_partition(n_heads=4)
      >>> partition("layers_0/attn/query/kernel", (32, 32))
      ((32, 4, 8), (0, 2))
    """
    return _default_partition("adam_mini_partition", n_heads)


def _default_partition(fn: str, n_heads: Any) -> Partition:
    """:func:`adam_mini_partition`, with ``n_heads`` checked under ``fn``."""
    if n_heads is not None:
        v.check_integer(fn, "n_heads", n_heads, minimum=1, array_ok=False)

    def partition(name: str, shape: tuple[int, ...]) -> Any:
        lower, rank = name.lower(), len(shape)
        every = tuple(range(rank))
        if any(k in lower for k in _ADAM_NAMES):
            return ()
        if any(k in lower for k in _QK_NAMES) and rank >= 2:
            if rank >= 3:
                return tuple(a for a in every if a != rank - 2)
            if n_heads is None:
                raise ValueError(
                    f"adam_mini: the query/key kernel {name} of shape {shape} has one axis for "
                    "all heads; pass n_heads (or a partition) to split it into one block per head"
                )
            head_size = shape[0] // n_heads  # the authors' dim*dim/n_heads entries per head
            if head_size < 1 or shape[1] % head_size or shape[0] % n_heads:
                raise ValueError(
                    f"adam_mini: cannot split the query/key kernel {name} of shape {shape} into "
                    f"heads of {head_size} columns (n_heads={n_heads}); pass a partition"
                )
            return (shape[0], shape[1] // head_size, head_size), (0, 2)
        if any(k in lower for k in _EMBED_NAMES):
            return every[1:] if rank >= 2 else every
        if rank >= 2 and "out" in re.split(r"[/.]", lower):
            return every[:-1]
        if any(k in lower for k in _NEURON_NAMES) and rank >= 2:
            return (0,)
        return every

    return partition


def adam_mini_decay_mask(params: Any) -> Any:
    """The Adam-mini authors' weight-decay rule: decay every leaf but norms and biases.

    A leaf is left undecayed when its lowercased path (joined by ``/``) contains ``norm``,
    ``ln`` or ``bias``, as ``adam_mini.Adam_mini`` 1.1.1 decides from
    ``model.named_parameters()``.

    Args:
      params: the params (any pytree; flax ``Variable`` wrappers are seen through).

    Returns:
      A pytree of bools shaped like ``params``, for the ``mask`` of
      :func:`~adamjax.add_decayed_weights` or ``optax.masked``.

    References:
      Zhang et al., "Adam-mini: Use Fewer Learning Rates To Gain More", ICLR 2025.
      Convention: ``adam_mini.Adam_mini`` 1.1.1.

    Example:
      >>> mask = adamjax.adam_mini_decay_mask({"ln_1": {"scale": 1.0}, "w": 1.0})
      >>> mask
      {'ln_1': {'scale': False}, 'w': True}
    """
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not any(k in _name(path).lower() for k in _NO_DECAY_NAMES), params
    )


def _name(path: tuple) -> str:
    """A leaf's path as ``a/b/c`` (dict keys, attribute names and indices), without the
    ``value`` attribute through which a flax ``Variable`` holds its array."""
    parts = []
    if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
        path = path[:-1]
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


class _Block(NamedTuple):
    """A leaf's partition: the shape it is viewed in and the axes each block spans."""

    view: tuple[int, ...]
    axes: tuple[int, ...]


def _block_of(fn: str, partition: Partition, name: str, shape: tuple[int, ...]) -> _Block:
    """Calls ``partition`` and checks what it returns."""
    out = partition(name, shape)
    view, axes = shape, out
    if isinstance(out, tuple) and len(out) == 2 and all(isinstance(x, tuple) for x in out):
        view, axes = out
    try:
        view = tuple(int(n) for n in view)
        raw = tuple(int(a) for a in axes)
        if any(not -len(view) <= a < len(view) for a in raw):
            raise ValueError
        axes = tuple(sorted({a % len(view) for a in raw}))
    except (TypeError, ValueError):
        raise TypeError(
            f"{fn}: partition({name!r}, {shape}) must return a tuple of axes of the leaf (or "
            f"of view_shape) or (view_shape, axes), got {out!r}"
        ) from None
    if int(np.prod(view)) != int(np.prod(shape)):
        raise ValueError(
            f"{fn}: partition({name!r}, {shape}) returned the view shape {view}, which has "
            f"{int(np.prod(view))} entries instead of {int(np.prod(shape))}"
        )
    return _Block(view, axes)


def _blocks(fn: str, partition: Partition, tree: Any) -> tuple[list[_Block], Any]:
    """The :class:`_Block` of every leaf of ``tree`` (params or updates) in leaf order, and the
    tree's structure."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    blocks = [_block_of(fn, partition, _name(path), tuple(jnp.shape(x))) for path, x in flat]
    return blocks, treedef


def _leaf_step(
    block: _Block, g: jax.Array, m: jax.Array, nu: jax.Array, step: mo.MomentStep,
    settle: _formats.Settle,
) -> jax.Array:  # fmt: skip
    """One leaf's update: Adam with the second moment averaged over each block (the new
    moments stored by ``settle``)."""
    g_view = g.reshape(block.view)
    g_sq = jnp.mean(mo.squared_magnitude(g_view), axis=block.axes, keepdims=True)
    m, nu = settle(mo.ema(g, m, step.b1.rate), mo.ema(g_sq, nu, step.b2.rate))
    m_hat = mo.corrected(m, step.b1).reshape(block.view)
    d = mo.precondition(m_hat, mo.corrected(nu, step.b2), step.eps, step.eps_root)
    return d.reshape(g.shape)


def scale_by_adam_mini(
    b1: float | jax.Array | optax.Schedule = 0.9,
    b2: float | jax.Array | optax.Schedule = 0.999,
    eps: float | jax.Array = 1e-8,
    *,
    partition: Partition | None = None,
    n_heads: int | None = None,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by Adam-mini's blockwise second moment (Zhang et al. 2024).

    Update rule::

        m = b1*m + (1-b1)*g
        v_B = b2*v_B + (1-b2)*mean(g**2 over block B)          (one v per block)
        update = m / (1 - b1**t) / (sqrt(v_B / (1 - b2**t)) + eps)   (t = 1, 2, ...)

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_{B,t} = \beta_2 v_{B,t-1} + (1-\beta_2)\, \frac{1}{|B|}\sum_{i \in B} g_{t,i}^2, \\
        \text{update}_{t,i} = \frac{m_{t,i} / (1-\beta_1^t)}
            {\sqrt{v_{B(i),t} / (1-\beta_2^t)} + \epsilon}.

    The blocks come from ``partition`` (see :func:`~adamjax.adam_mini_partition`, the authors'
    rule, the default). The state keeps one second moment per block, so for a transformer it is
    about half of Adam's (the first moment stays per entry).

    Args:
      b1: :math:`\beta_1`, in [0, 1), or a schedule (exact bias correction).
      b2: :math:`\beta_2`, in [0, 1), or a schedule.
      eps: :math:`\epsilon`, added to the corrected root, >= 0.
      partition: ``partition(name, shape)`` giving each leaf's block axes (or ``(view_shape,
        axes)``); ``None`` is ``adam_mini_partition(n_heads)``.
      n_heads: passed to the default partition (ignored with a ``partition``).
      mu_dtype: storage of ``mu``: None (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of ``nu``, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByAdamMiniState`.
      ``update`` does not need params.

    References:
      Zhang et al., "Adam-mini: Use Fewer Learning Rates To Gain More", ICLR 2025, Algorithm 1.
      Convention: ``adam_mini.Adam_mini`` 1.1.1 (paper bias correction and eps placement).

    Example:
      >>> tx = optax.chain(adamjax.scale_by_adam_mini(), optax.scale_by_learning_rate(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    return _adam_mini_moments(
        "scale_by_adam_mini", b1=b1, b2=b2, eps=eps, partition=partition, n_heads=n_heads,
        mu_dtype=mu_dtype, nu_dtype=nu_dtype,
    )  # fmt: skip


def _adam_mini_moments(
    fn: str,
    *,
    b1: Any,
    b2: Any,
    eps: Any,
    partition: Any,
    n_heads: Any,
    mu_dtype: Any,
    nu_dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    _piece.check_moment_options(
        fn, b1=b1, b2=b2, eps=eps, eps_root=0.0, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    if partition is None:
        partition = _default_partition(fn, n_heads)
    elif not callable(partition):
        raise TypeError(f"{fn}: partition must be None or callable(name, shape), got {partition!r}")
    nu_format = _formats.format_of(nu_dtype)

    def init_fn(params: optax.Params) -> ScaleByAdamMiniState:
        _piece.check_params(fn, params, mu_dtype, b1=b1, b2=b2)

        blocks, treedef = _blocks(fn, partition, params)

        def zero_nu(block: _Block, p: Any) -> Any:
            dtype = mo.storage_dtype(jnp.result_type(p), None, real=True)
            value = p.get_value() if _piece._is_flax_variable(p) else p
            # A reduction of zeros placed like the param (not jnp.zeros), so that the block
            # moments are sharded like the param less the block axes; under jit it folds away.
            zeros = _formats.zeros_like_param(value, jnp.uint8).reshape(block.view)
            reduced = jnp.sum(zeros, axis=block.axes, keepdims=True, dtype=jnp.uint8)
            return nu_format.init(reduced.astype(dtype), signed=False)

        # Unflattened with the params' structure, so a flax Variable keeps its wrapper.
        nu = treedef.unflatten(map(zero_nu, blocks, treedef.flatten_up_to(params)))
        return ScaleByAdamMiniState(
            count=jnp.zeros([], jnp.int32),
            mu=_piece.zeros_moment(params, mu_dtype, real=False),
            nu=nu,
            last_step=mo.StepScalars.initial(_piece.scalar_dtype(params)),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        step = mo.moment_step(b1, b2, eps, 0.0, "paper", state.count, state.last_step)
        blocks = iter(_blocks(fn, partition, updates)[0])

        def leaf(g, m, nu, *, settle):
            return _leaf_step(next(blocks), g, m, nu, step, settle)

        stored = _formats.adam_stored(state, mu_dtype, nu_dtype)
        updates, (mu, nu) = _formats.update_leaves(fn, leaf, updates, stored, step.count)
        last = step.record(state.last_step.m_correction.dtype)
        return updates, ScaleByAdamMiniState(step.count, mu, nu, last)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@_piece.register_view(ScaleByAdamMiniState)
def _adam_mini_view(state: ScaleByAdamMiniState, grads: Any) -> _piece.View:
    """Adam's view, with each block's :math:`\\hat v` broadcast to its entries (see
    :func:`_broadcast_blocks` for the views of reshaping partitions it can recover)."""
    last = state.last_step

    def broadcast(nu: jax.Array, g: jax.Array) -> jax.Array:
        v_hat = _piece.real(nu) / last.v_correction.astype(_piece.real(nu).dtype)
        return _broadcast_blocks(v_hat, jnp.shape(g))

    v_hat = jax.tree.map(broadcast, state.nu, grads)
    scale_of = _piece.each(v_hat, lambda x: mo.inverse_denominator(x, last))
    return _piece.View(v_hat, scale_of, False, _piece.first_moment_view(state.mu, last), v_hat)


def _broadcast_blocks(v_hat: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """A per-block statistic spread over its entries, in the leaf's ``shape``.

    The statistic has the partition's view shape with each block axis of size 1; the view is
    recovered as the shape whose reduced axes multiply out to the leaf's size. That is exact
    for a view with one block axis, and for two (the default rule's ``(in, heads, head_dim)``)
    when the first is the leaf's leading axis; a partition that reshapes otherwise gets a wrong
    spread of its (correct) block statistics in diagnostics, or an error there.
    """
    size, kept = int(np.prod(shape)), int(np.prod(v_hat.shape))
    if v_hat.ndim == len(shape) and all(
        a in (1, b) for a, b in zip(v_hat.shape, shape, strict=True)
    ):
        return jnp.broadcast_to(v_hat, shape)
    # A reshaped view (a split heads axis): spread the rest evenly over the reduced axes.
    ones = [a for a, n in enumerate(v_hat.shape) if n == 1]
    per_block = size // kept
    view = list(v_hat.shape)
    if len(ones) == 1:
        view[ones[0]] = per_block
    else:  # the default rule's (in, heads, head_size) view: in = shape[0]
        view[ones[0]] = shape[0]
        view[ones[-1]] = per_block // shape[0]
    return jnp.broadcast_to(v_hat, tuple(view)).reshape(shape)


def adam_mini(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.999,
    eps: float = 1e-8,
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
    *,
    partition: Partition | None = None,
    n_heads: int | None = None,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Adam-mini (Zhang et al. 2024): Adam with one second moment per parameter block.

    Update rule::

        m = b1*m + (1-b1)*g
        v_B = b2*v_B + (1-b2)*mean(g**2 over block B)          (one v per block)
        d = m / (1 - b1**t) / (sqrt(v_B / (1 - b2**t)) + eps)   (t = 1, 2, ...)
        update = -learning_rate * (d + weight_decay * param)    (param in mask only)

    .. math::

        \theta_t = \theta_{t-1} - \eta_t \left(\frac{\hat m_t}{\sqrt{\hat v_{B,t}} + \epsilon}
            + \lambda \theta_{t-1}\right)

    The blocks (see :func:`~adamjax.scale_by_adam_mini`) follow the authors' rule by default,
    :func:`~adamjax.adam_mini_partition`: per head for query and key, per token for embeddings
    and the output layer, per output neuron for values, the attention projection and MLPs,
    Adam for biases, one block for anything else (norms). Weight decay is decoupled, as
    ``p *= 1 - lr*wd`` in ``adam_mini.Adam_mini``, and by default (``mask=None``) skips the
    leaves whose path contains ``norm``, ``ln`` or ``bias``, the authors' rule
    (:func:`~adamjax.adam_mini_decay_mask`); pass ``mask`` to choose.

    With ``optax.inject_hyperparams``, pass ``static_args=("partition",)``: a partition is a
    callable, which ``inject_hyperparams`` would otherwise call as a schedule.

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: :math:`\beta_1`, in [0, 1), or a schedule.
      b2: :math:`\beta_2`, in [0, 1), or a schedule.
      eps: :math:`\epsilon`, >= 0.
      weight_decay: :math:`\lambda`, decoupled, a number >= 0 or a schedule.
      mask: which leaves to decay: a pytree of bools or a callable on the params; ``None`` is
        the authors' rule.
      partition: ``partition(name, shape)``, see :func:`~adamjax.scale_by_adam_mini`.
      n_heads: the number of heads, for the default partition of rank-2 query/key kernels.
      mu_dtype: storage of the first moment: None (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of the block second moments, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_adam_mini,
      add_decayed_weights, scale_by_learning_rate)``.

    References:
      Zhang et al., "Adam-mini: Use Fewer Learning Rates To Gain More", ICLR 2025.
      Convention: ``adam_mini.Adam_mini`` 1.1.1 (partition, decay mask, eps placement).

    Example:
      >>> tx = adamjax.adam_mini(learning_rate=1e-3, weight_decay=0.1, n_heads=4)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "adam_mini"
    piece = _adam_mini_moments(
        fn, b1=b1, b2=b2, eps=eps, partition=partition, n_heads=n_heads, mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )  # fmt: skip
    return _scaling.decoupled_chain(
        fn, piece, learning_rate=learning_rate, weight_decay=weight_decay,
        mask=adam_mini_decay_mask if mask is None else mask,
    )  # fmt: skip
