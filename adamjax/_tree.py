"""Small pytree helpers shared by the pieces."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from adamjax import codecs, moments


def zeros_moment(params: Any, requested: Any | None, *, real: bool) -> Any:
    """Returns a zero moment per parameter leaf, stored as ``requested`` says: ``None`` or a
    dtype (``moments.storage_dtype`` picks the dtype) or a :class:`~adamjax.codecs.MomentFormat`.

    ``real`` marks a second moment (real and non-negative: an unsigned 8-bit map). Each moment
    is placed like its param (sharded the same way). Works on concrete arrays and on abstract
    ``jax.ShapeDtypeStruct`` leaves (``jax.eval_shape``).
    """
    fmt = codecs.format_of(requested)

    def zeros(p: Any) -> Any:
        if not _is_flax_variable(p):
            return fmt.init(p, signed=not real)
        value = p.get_value()
        if not jax.tree.leaves(value):
            # optax.masked / multi_transform put a leafless MaskedNode in the Variable of each
            # param the inner transformation does not own; its moment is that same placeholder.
            return p
        moment = fmt.init(value, signed=not real)
        if codecs.is_quantized(moment):
            # Bare, not in a copy of the param's Variable: flax would apply the param's sharding
            # annotation to the scale too, whose block axis cannot take it. The arrays are
            # placed like the param already (codes: its sharding; scale: its leading axes).
            return moment
        return jax.tree.map(lambda _: moment, p)  # the param's Variable type and metadata

    return jax.tree.map(zeros, params, is_leaf=_is_flax_variable)


def _is_flax_variable(x: Any) -> bool:
    """Whether ``x`` is a ``flax.nnx.Variable`` (only possible once flax is imported)."""
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(x, nnx.Variable)


def scalar_dtype(params: Any) -> jnp.dtype:
    """Returns the real dtype of per-step scalars kept in state: the widest compute dtype of the
    parameter leaves (float32, or float64 when x64 is on and a leaf is float64)."""
    leaves = jax.tree.leaves(params)
    dtypes = [p.dtype if hasattr(p, "dtype") else jnp.result_type(p) for p in leaves]
    return moments.real_dtype(moments.compute_dtype(*dtypes))


def map_unzip(
    fn: Callable[..., tuple[Any, ...]], n_out: int, tree: Any, *rest: Any, indexed: bool = False
) -> tuple:
    """Maps ``fn`` over the leaves of ``tree`` and ``rest`` and returns ``n_out`` trees.

    ``fn`` returns a tuple of ``n_out`` arrays per leaf; the result is one tree per tuple slot,
    each with the structure of ``tree``. ``rest`` must have that structure too, down to
    ``tree``'s leaves (a :class:`~adamjax.codecs.QuantizedArray` in ``rest`` is passed whole).
    With ``indexed``, ``fn`` also gets the leaf's index in ``tree`` as its last argument.
    """
    leaves, treedef = jax.tree.flatten(tree)
    rest_leaves = [treedef.flatten_up_to(r) for r in rest]
    if indexed:
        rest_leaves.append(list(range(len(leaves))))
    outs = [fn(*args) for args in zip(leaves, *rest_leaves, strict=True)]
    return tuple(treedef.unflatten([out[i] for out in outs]) for i in range(n_out))
