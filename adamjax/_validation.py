"""Construction-time checks of hyperparameters and update-time checks of trees.

Every message names the function, the parameter, the value received and what is valid, e.g.
``adam: b1 must be in [0, 1), got 1.0``. Only concrete Python/NumPy numbers are range-checked:
jax arrays, tracers (``optax.inject_hyperparams``) and schedules pass through unchecked, because
their values are not known when the transformation is built.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _is_concrete_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _check_number(fn: str, name: str, value: Any, *, schedule_ok: bool) -> bool:
    """Returns True when ``value`` is a concrete number to range-check; raises on wrong types."""
    if _is_concrete_number(value):
        return True
    if isinstance(value, (jax.Array, np.ndarray)) or (schedule_ok and callable(value)):
        return False
    kinds = "a number, a jax array or a schedule" if schedule_ok else "a number or a jax array"
    raise TypeError(f"{fn}: {name} must be {kinds}, got {value!r} of type {type(value).__name__}")


def check_unit_interval(
    fn: str, name: str, value: Any, *, schedule_ok: bool = False, float32: bool = True
) -> None:
    """Checks a decay rate such as ``b1``/``b2`` lies in [0, 1), and with ``float32`` also once
    rounded to float32 (the optimizer computes in float32, where 1 - 1e-9 is 1.0 and a bias
    correction 1 - b**t would be 0)."""
    if not _check_number(fn, name, value, schedule_ok=schedule_ok):
        return
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{fn}: {name} must be in [0, 1), got {value!r}")
    if float32 and np.float32(value) >= 1.0:
        raise ValueError(
            f"{fn}: {name} must be in [0, 1), got {value!r}, which is 1.0 in float32, the "
            f"precision the optimizer computes in; the largest float32 below 1 is "
            f"{float(np.nextafter(np.float32(1), np.float32(0)))!r}"
        )


def check_non_negative(fn: str, name: str, value: Any, *, schedule_ok: bool = False) -> None:
    """Checks ``value`` is a finite number in [0, inf) (NaN and inf are rejected)."""
    if _check_number(fn, name, value, schedule_ok=schedule_ok) and not (
        math.isfinite(value) and value >= 0.0
    ):
        raise ValueError(f"{fn}: {name} must be a finite number in [0, inf), got {value!r}")


def check_finite(fn: str, name: str, value: Any, *, schedule_ok: bool = False) -> None:
    """Checks ``value`` is a finite number (any sign; NaN and inf are rejected)."""
    if _check_number(fn, name, value, schedule_ok=schedule_ok) and not math.isfinite(value):
        raise ValueError(f"{fn}: {name} must be a finite number, got {value!r}")


def check_positive(fn: str, name: str, value: Any, *, at_most_one: bool = False) -> None:
    """Checks a concrete number lies in (0, inf), or in (0, 1] with ``at_most_one``."""
    if not _check_number(fn, name, value, schedule_ok=False):
        return
    upper = 1.0 if at_most_one else float("inf")
    if not (np.isfinite(value) and 0.0 < value <= upper):
        interval = "in (0, 1]" if at_most_one else "a finite number in (0, inf)"
        raise ValueError(f"{fn}: {name} must be {interval}, got {value!r}")


def check_integer(fn: str, name: str, value: Any, *, minimum: int, array_ok: bool) -> None:
    """Checks ``value`` is a Python/NumPy integer >= ``minimum`` (jax arrays pass if allowed)."""
    if array_ok and isinstance(value, jax.Array):
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        hint = ""
        if isinstance(value, jax.Array):
            # e.g. optax.inject_hyperparams, which turns every number into an array.
            hint = (
                f"; it decides the state's shapes, so it cannot be an array (with "
                f"optax.inject_hyperparams, pass static_args=({name!r},))"
            )
        raise TypeError(
            f"{fn}: {name} must be an integer >= {minimum}, got {value!r} of type "
            f"{type(value).__name__}{hint}"
        )
    if value < minimum:
        raise ValueError(f"{fn}: {name} must be an integer >= {minimum}, got {value!r}")


def check_choice(fn: str, name: str, value: Any, choices: Sequence[str]) -> None:
    """Checks ``value`` is one of the strings in ``choices``."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{fn}: {name} must be one of {options}, got {value!r}")


def check_bool(fn: str, name: str, value: Any) -> None:
    """Checks ``value`` is a Python bool (a traced flag would silently pick one branch)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be True or False, got {value!r}")


def check_float_dtype(fn: str, name: str, value: Any) -> None:
    """Checks ``value`` is ``None`` or a real floating-point dtype."""
    if value is None:
        return
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{fn}: {name} must be None or a real floating-point dtype such as jnp.float32 or "
            f"jnp.bfloat16, got {value!r}"
        )


def check_params(fn: str, params: Any) -> None:
    """Checks every parameter leaf is floating or complex, naming the first offending leaf.

    Integer or boolean leaves would give integer moments that silently truncate every update.
    """
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        dtype = getattr(leaf, "dtype", None)
        dtype = jnp.result_type(leaf) if dtype is None else jnp.dtype(dtype)
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(
                f"{fn}: params must be floating-point or complex, but the leaf at "
                f"{jax.tree_util.keystr(path) or '<root>'} has dtype {dtype}. Leave non-trainable "
                "leaves out of the optimizer, e.g. with optax.masked or nnx.Optimizer(wrt=...)."
            )


def check_tree_match(
    fn: str,
    updates: Any,
    reference: Any,
    *,
    what: str = "optimizer state",
    is_leaf: Callable[[Any], bool] | None = None,
    shape_of: Callable[[Any], tuple[int, ...]] = jnp.shape,
) -> None:
    """Checks ``updates`` has the tree structure and leaf shapes of ``reference``.

    Runs at trace time only (structures and shapes are static), so it costs nothing in a jitted
    step. The message shows both structures instead of a bare ``tree_map`` traceback.
    ``is_leaf`` and ``shape_of`` say what one leaf of ``reference`` is (a quantized moment, its
    codes and scales, stands for one leaf of the updates) and its shape.
    """
    got = jax.tree.structure(updates)
    want = jax.tree.structure(reference, is_leaf=is_leaf)
    if got != want:
        raise ValueError(
            f"{fn}: the updates' tree structure does not match the {what}.\n"
            f"  updates:  {got}\n"
            f"  expected: {want}\n"
            "Was the optimizer state initialised from params with a different structure? "
            "Call init() on params shaped like the gradients."
        )
    pairs = zip(
        jax.tree_util.tree_flatten_with_path(updates)[0],
        jax.tree.leaves(reference, is_leaf=is_leaf),
        strict=True,
    )
    for (path, u), r in pairs:
        if jnp.shape(u) != shape_of(r):
            raise ValueError(
                f"{fn}: the update at {jax.tree_util.keystr(path) or '<root>'} has shape "
                f"{jnp.shape(u)} but the {what} there has shape {shape_of(r)}."
            )


def _is_mask_flag(leaf: Any) -> bool:
    if isinstance(leaf, (bool, np.bool_)):
        return True
    # A concrete boolean scalar array works too; a traced one cannot choose the masked branch.
    return (
        isinstance(leaf, (np.ndarray, jax.Array))
        and not isinstance(leaf, jax.core.Tracer)
        and leaf.shape == ()
        and leaf.dtype == np.bool_
    )


def check_mask_flags(fn: str, mask: Any, name: str = "mask") -> None:
    """Checks every leaf of a mask pytree is True or False (a concrete Python or NumPy bool)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(mask)[0]:
        if not _is_mask_flag(leaf):
            raise TypeError(
                f"{fn}: {name} leaves must be True or False, got {leaf!r} of type "
                f"{type(leaf).__name__} at {jax.tree_util.keystr(path) or '<root>'}"
            )


def check_mask(fn: str, mask: Any, tree: Any, name: str = "mask") -> None:
    """Checks ``mask`` holds bools and has the structure of ``tree`` (params or updates) or of a
    prefix of it, which is what ``optax.masked`` needs."""
    check_mask_flags(fn, mask, name)
    try:
        jax.tree.map(lambda flag, subtree: None, mask, tree)
    except ValueError:
        raise ValueError(
            f"{fn}: {name} must have the params' tree structure, or a prefix of it.\n"
            f"  {name}: {jax.tree.structure(mask)}\n"
            f"  params: {jax.tree.structure(tree)}\n"
            f"Build it from the params, e.g. "
            f"{name}=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)."
        ) from None
