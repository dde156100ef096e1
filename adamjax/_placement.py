"""Where state leaves live: zero leaves built from the param they belong to.

Every leaf is derived from its param with array operations (``jnp.full_like``, a reduction), so
it takes the param's placement the way JAX derives any other result's: a sharded concrete param
gives a state leaf sharded the same way, and under ``jax.jit`` with explicit mesh axes the
state's types carry the params' shardings. ``jnp.zeros(shape)`` would put the whole state on the
default device, whatever the params' shardings. Under ``jax.jit`` the reductions below fold to
constants.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def full_like(like: Any, value: Any, dtype: Any) -> jax.Array:
    """An array of ``like``'s shape and placement, filled with ``value``, in ``dtype``."""
    return jnp.full_like(like, value, dtype=dtype)


def zeros_without_axis(like: Any, axis: int, dtype: Any) -> jax.Array:
    """Zeros of ``like``'s shape less ``axis``, placed like ``like`` less that axis (the
    placement of a mean over ``axis``, e.g. Adafactor's row and column statistics)."""
    return jnp.sum(jnp.zeros_like(like, dtype=jnp.uint8), axis=axis, dtype=jnp.uint8).astype(dtype)
