"""Construction-time checks of hyperparameters and update-time checks of trees.

Every message names the function, the parameter, the value received and what is valid, e.g.
``adam: b1 must be in [0, 1), got 1.0``. Concrete values (Python and NumPy numbers, 0-d NumPy
and jax arrays) are range-checked in the precision the optimizer computes in; tracers
(``optax.inject_hyperparams`` under ``jit``) and schedules are checked for type and shape only,
because their values are not known when the transformation is built.
"""

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def build_dtype() -> np.dtype:
    """The precision a concrete hyperparameter is checked in when the optimizer is built: float32,
    which the optimizer computes in, or float64 with ``jax_enable_x64`` on, when float64 params
    compute in float64 (float32 params are checked again at ``init``, see
    :func:`check_decays_at_init`)."""
    return np.dtype(np.float64 if jax.config.jax_enable_x64 else np.float32)


def _int_dtype() -> np.dtype:
    return np.dtype(np.int64 if jax.config.jax_enable_x64 else np.int32)


def _check_schedule(fn: str, name: str, value: Any) -> None:
    """A schedule must be a function of the step count: not a class (``jnp.float32`` is one) and
    not a callable that cannot take one positional argument."""
    try:
        inspect.signature(value).bind(0)
        takes_step = not isinstance(value, type)
    except TypeError:
        takes_step = False
    except ValueError:  # no signature to read (some builtins): let it be called
        takes_step = not isinstance(value, type)
    if not takes_step:
        raise TypeError(
            f"{fn}: {name} must be a number, a 0-d array or a schedule (a function of the step "
            f"count), got {value!r}, which cannot be called with one step count"
        )


def concrete_value(fn: str, name: str, value: Any, *, schedule_ok: bool) -> float | None:
    """The number to range-check in a scalar hyperparameter, or ``None`` when it is not known
    yet (a traced array, or a schedule when ``schedule_ok``).

    Accepts Python and NumPy real numbers, 0-d NumPy arrays and 0-d jax arrays of a real dtype.
    Raises ``TypeError`` for anything else (bool, complex, str, None, dtypes, classes, wrong
    callables) and ``ValueError`` for an array that is not 0-d: a hyperparameter of another
    shape would broadcast against every leaf and change the state's shapes.
    """
    kinds = "a number, a 0-d array or a schedule" if schedule_ok else "a number or a 0-d array"
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        dtype = np.dtype(value.dtype)
        if dtype == np.bool_ or not np.issubdtype(dtype, np.number) or np.iscomplexobj(value):
            raise TypeError(f"{fn}: {name} must be {kinds} of a real dtype, got dtype {dtype}")
        if np.ndim(value) != 0:
            raise ValueError(
                f"{fn}: {name} must be a scalar, got an array of shape {np.shape(value)}; for "
                "values that differ between parameters, use optax.multi_transform"
            )
        if isinstance(value, jax.core.Tracer):
            return None
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool):
        # jax passes a Python int to a computation as an int32 (int64 with x64): a larger one
        # would fail there, far from here.
        limit = np.iinfo(_int_dtype()).max
        if abs(value) > limit:
            raise ValueError(
                f"{fn}: {name} must be a number jax can pass on, got the integer {value}, beyond "
                f"{_int_dtype().name} (|x| <= {limit}); pass it as a float"
            )
        return float(value)
    if isinstance(value, float):
        return value
    if schedule_ok and callable(value):
        _check_schedule(fn, name, value)
        return None
    raise TypeError(f"{fn}: {name} must be {kinds}, got {value!r} of type {type(value).__name__}")


def _rounded(value: float, dtype: Any) -> float:
    with np.errstate(over="ignore"):
        return float(np.asarray(value, dtype))


def _number(x: float) -> str:
    return str(int(x)) if x.is_integer() else repr(x)


def _precision_note(value: float, dtype: np.dtype) -> str:
    return (
        f", which is {_rounded(value, dtype)!r} in {dtype}, the precision the optimizer computes in"
    )


def check_unit_interval(
    fn: str,
    name: str,
    value: Any,
    *,
    schedule_ok: bool = False,
    exact: bool = True,
    dtype: Any = None,
) -> None:
    """Checks a decay rate such as ``b1``/``b2`` lies in [0, 1), and with ``exact`` also once
    rounded to ``dtype`` (default :func:`build_dtype`): in float32, 1 - 1e-9 is 1.0 and a bias
    correction 1 - b**t would be 0."""
    x = concrete_value(fn, name, value, schedule_ok=schedule_ok)
    if x is None:
        return
    if not 0.0 <= x < 1.0:
        raise ValueError(f"{fn}: {name} must be in [0, 1), got {value!r}")
    dtype = np.dtype(dtype or build_dtype())
    if exact and _rounded(x, dtype) >= 1.0:
        raise ValueError(
            f"{fn}: {name} must be in [0, 1), got {value!r}{_precision_note(x, dtype)}; the "
            f"largest {dtype} below 1 is {float(np.nextafter(dtype.type(1), dtype.type(0)))!r}"
        )


def check_range(
    fn: str,
    name: str,
    value: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    open_low: bool = False,
    schedule_ok: bool = False,
    why: str = "",
) -> None:
    """Checks ``value`` is a number in [low, high] (``(low, high]`` with ``open_low``) that is
    finite once rounded to the precision the optimizer computes in (NaN and inf are rejected);
    ``why`` is appended to the message."""
    x = concrete_value(fn, name, value, schedule_ok=schedule_ok)
    if x is None:
        return
    dtype = build_dtype()
    rounded = _rounded(x, dtype)

    def inside(y: float) -> bool:
        return math.isfinite(y) and (low < y if open_low else low <= y) and y <= high

    if inside(x) and inside(rounded):
        return
    left = "(" if open_low else "["
    if math.isfinite(low) and math.isfinite(high):
        interval = f"in {left}{_number(low)}, {_number(high)}]"
    elif math.isfinite(low):
        interval = f"a finite number in {left}{_number(low)}, inf)"
    else:
        interval = "a finite number"
    note = _precision_note(x, dtype) if inside(x) else ""
    raise ValueError(f"{fn}: {name} must be {interval}, got {value!r}{note}{why and '; ' + why}")


def check_non_negative(fn: str, name: str, value: Any, *, schedule_ok: bool = False) -> None:
    """Checks ``value`` is a finite number in [0, inf) (NaN and inf are rejected)."""
    check_range(fn, name, value, low=0.0, schedule_ok=schedule_ok)


def check_finite(fn: str, name: str, value: Any, *, schedule_ok: bool = False) -> None:
    """Checks ``value`` is a finite number (any sign; NaN and inf are rejected)."""
    check_range(fn, name, value, schedule_ok=schedule_ok)


def check_positive(fn: str, name: str, value: Any, *, at_most_one: bool = False) -> None:
    """Checks a concrete number lies in (0, inf), or in (0, 1] with ``at_most_one``."""
    check_range(fn, name, value, low=0.0, open_low=True, high=1.0 if at_most_one else math.inf)


def check_integer(
    fn: str, name: str, value: Any, *, minimum: int, array_ok: bool, maximum: int | None = None
) -> None:
    """Checks ``value`` is an integer in [minimum, maximum] (default: the largest int32, int64
    with x64): a Python or NumPy integer or a 0-d NumPy integer array (concrete jax arrays too,
    and traced ones unchecked, if ``array_ok``)."""
    if array_ok and isinstance(value, jax.Array):
        if np.ndim(value) != 0 or not jnp.issubdtype(value.dtype, jnp.integer):
            raise TypeError(
                f"{fn}: {name} must be a 0-d integer array, got shape {np.shape(value)} and dtype "
                f"{value.dtype}"
            )
        if isinstance(value, jax.core.Tracer):
            return
        value = int(value)
    integer_array = (
        isinstance(value, np.ndarray) and value.ndim == 0 and np.issubdtype(value.dtype, np.integer)
    )
    if integer_array:
        value = int(value)
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
    maximum = np.iinfo(_int_dtype()).max if maximum is None else maximum
    if value < minimum or value > maximum:
        valid = f">= {minimum}" if value < minimum else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{fn}: {name} must be an integer {valid}, got {value!r}")


def check_decays_at_init(fn: str, dtype: Any, **decays: Any) -> None:
    """With ``jax_enable_x64`` on, checks concrete decay rates again in ``dtype``, the params'
    scalar dtype, once ``init`` knows it: float32 params compute in float32 even then, where a
    rate such as ``1 - 1e-12`` is 1.0 (without x64 the construction check was in float32)."""
    if not jax.config.jax_enable_x64:
        return
    for name, value in decays.items():
        check_unit_interval(fn, name, value, schedule_ok=True, dtype=dtype)


def check_choice(fn: str, name: str, value: Any, choices: Sequence[str]) -> None:
    """Checks ``value`` is one of the strings in ``choices``."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{fn}: {name} must be one of {options}, got {value!r}")


def check_bool(fn: str, name: str, value: Any) -> None:
    """Checks ``value`` is a Python bool (a traced flag would silently pick one branch)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be True or False, got {value!r}")


#: The dtypes a moment can be stored in; narrower formats (float8, float4) have too few digits
#: for a running average and no arithmetic on most backends.
STORAGE_DTYPES = tuple(np.dtype(d) for d in (jnp.bfloat16, jnp.float16, jnp.float32, jnp.float64))
COMPLEX_STORAGE_DTYPES = (np.dtype(np.complex64), np.dtype(np.complex128))


def storage_dtype_or_none(value: Any, *, complex_ok: bool) -> np.dtype | None:
    """``value`` as a moment storage dtype, or ``None`` if it is not one."""
    if isinstance(value, (str, type, np.dtype)) or hasattr(value, "dtype"):
        try:
            dtype = np.dtype(jnp.dtype(value))
        except TypeError:
            return None
        valid = STORAGE_DTYPES + (COMPLEX_STORAGE_DTYPES if complex_ok else ())
        return dtype if dtype in valid else None
    return None


def check_float_dtype(fn: str, name: str, value: Any) -> None:
    """Checks ``value`` is ``None`` or a real floating-point storage dtype (bfloat16, float16,
    float32, float64)."""
    if value is not None and storage_dtype_or_none(value, complex_ok=False) is None:
        raise ValueError(
            f"{fn}: {name} must be None or one of jnp.bfloat16, jnp.float16, jnp.float32, "
            f"jnp.float64, got {value!r}"
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


def check_update_dtypes(
    fn: str, updates: Any, reference: Any = None, *, is_leaf: Callable[[Any], bool] | None = None
) -> None:
    """Checks every update leaf can carry its param's update, naming the first that cannot.

    An integer gradient would truncate the step to 0 and a boolean one move the params by 1 per
    step, so both are rejected. A complex gradient needs a complex ``reference`` leaf (the first
    moment, which is complex exactly for complex params, or the params themselves): for a real
    param its imaginary part would be dropped. Without ``reference`` only the first rule applies.
    Call it after :func:`check_tree_match` (it pairs leaves in order).
    """
    paths = jax.tree_util.tree_flatten_with_path(updates)[0]
    refs = [None] * len(paths) if reference is None else jax.tree.leaves(reference, is_leaf=is_leaf)
    for (path, u), ref in zip(paths, refs, strict=True):
        dtype, where = jnp.result_type(u), jax.tree_util.keystr(path) or "<root>"
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(
                f"{fn}: the update at {where} has dtype {dtype}; gradients must be floating-point "
                "(an integer one would truncate the step, a boolean one move by 1). Cast it, or "
                "leave that leaf out of the optimizer (optax.masked, nnx.Optimizer(wrt=...))."
            )
        if jnp.iscomplexobj(u) and ref is not None and not jnp.iscomplexobj(ref):
            raise TypeError(
                f"{fn}: the update at {where} is complex ({dtype}) but the param it updates is "
                "real; its imaginary part would be lost. Pass jnp.real of it, or make the param "
                "complex."
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
