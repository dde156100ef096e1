"""Small pytree helpers shared by the pieces."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from adamjax import moments


def zeros_moment(params: Any, requested_dtype: Any | None, *, real: bool) -> Any:
    """Returns a zero moment per parameter leaf, in the dtype ``moments.storage_dtype`` picks.

    Works on concrete arrays and on abstract ``jax.ShapeDtypeStruct`` leaves (``jax.eval_shape``).
    """

    def zeros(p: Any) -> jax.Array:
        dtype = p.dtype if hasattr(p, "dtype") else jnp.result_type(p)
        return jnp.zeros(jnp.shape(p), moments.storage_dtype(dtype, requested_dtype, real=real))

    return jax.tree.map(zeros, params)


def scalar_dtype(params: Any) -> jnp.dtype:
    """Returns the real dtype of per-step scalars kept in state: the widest compute dtype of the
    parameter leaves (float32, or float64 when x64 is on and a leaf is float64)."""
    leaves = jax.tree.leaves(params)
    dtypes = [p.dtype if hasattr(p, "dtype") else jnp.result_type(p) for p in leaves]
    return moments.real_dtype(moments.compute_dtype(*dtypes))


def map_unzip(fn: Callable[..., tuple[Any, ...]], n_out: int, tree: Any, *rest: Any) -> tuple:
    """Maps ``fn`` over the leaves of ``tree`` and ``rest`` and returns ``n_out`` trees.

    ``fn`` returns a tuple of ``n_out`` arrays per leaf; the result is one tree per tuple slot,
    each with the structure of ``tree``. ``rest`` must have that structure too.
    """
    leaves, treedef = jax.tree.flatten(tree)
    rest_leaves = [treedef.flatten_up_to(r) for r in rest]
    outs = [fn(*args) for args in zip(leaves, *rest_leaves, strict=True)]
    return tuple(treedef.unflatten([out[i] for out in outs]) for i in range(n_out))
