"""Test helpers: error metrics, closed-loop trajectories and the test problems."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import numpy as np
import optax

GradFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def max_rel_err(actual: Any, expected: Any, *, floor: float = 0.0) -> float:
    """Largest per-leaf ``max|actual - expected| / max|expected|`` over two matching trees.

    Normalising by the leaf's largest magnitude (not elementwise) keeps entries that cross zero
    from producing meaningless ratios; an all-zero expected leaf is compared absolutely. Non-finite
    entries give ``inf`` unless both sides hold them in the same places with the same values.
    ``floor`` bounds the scale from below, for leaves that converge to zero (a first moment at a
    minimum is rounding noise, and relative to itself any two roundings differ by O(1)).
    """
    worst = 0.0
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        a, e = np.asarray(a, np.complex128), np.asarray(e, np.complex128)
        assert a.shape == e.shape, (a.shape, e.shape)
        if a.size == 0:
            continue
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(e))):
            # A NaN would compare False against any tolerance and pass silently.
            return float("inf") if not np.array_equal(a, e, equal_nan=True) else worst
        scale = max(float(np.max(np.abs(e))), floor)
        err = np.max(np.abs(a - e))
        worst = max(worst, float(err / scale) if scale > 0 else float(err))
    return worst


def assert_bitwise_equal(actual: Any, expected: Any, what: str) -> None:
    """Asserts two pytrees have the same structure and, leaf by leaf, the same dtype, shape and
    bytes (so -0.0 differs from 0.0, and bfloat16 or 8-bit codes need no arithmetic)."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected), what
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        a, e = np.asarray(a), np.asarray(e)
        assert (a.dtype, a.shape) == (e.dtype, e.shape), what
        assert a.tobytes() == e.tobytes(), f"{what}: {a!r} != {e!r}"


def jitted_step(tx: optax.GradientTransformation, *, jit: bool = True) -> Callable:
    """Returns ``step(params, state, grads) -> (params, state)``, jit-compiled unless ``jit``
    is False (eager runs skip compilation, which dominates short property-test runs)."""

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(step) if jit else step


def run_adamjax(
    tx: optax.GradientTransformation, params: dict, grad_fn: GradFn, steps: int
) -> tuple[dict, Any]:
    """Runs ``tx`` in a closed loop, the gradient taken by ``grad_fn`` at the current params."""
    step = jitted_step(tx)
    state = tx.init(params)
    for _ in range(steps):
        grads = grad_fn({k: np.asarray(p) for k, p in params.items()})
        params, state = step(params, state, grads)
    return params, state


def run_forced(
    tx: optax.GradientTransformation,
    reference_step: Callable[[dict, dict], dict],
    params: dict,
    grad_fn: GradFn,
    steps: int,
    *,
    jit: bool = True,
) -> tuple[dict, Any, dict]:
    """Runs ``tx`` and a reference on the gradient stream of the *reference's* trajectory.

    Adam near a minimum is chaotic: two float64 implementations that differ by one rounding per
    step drift apart by ~1e-8 within 1000 closed-loop steps (measured on Rosenbrock), which says
    nothing about either. Feeding both the gradients taken at the reference's params keeps the
    problem's real gradient sequence, while errors only add up from step to step, so any wrong
    term in the update still shows at once.

    Returns:
      ``(params, state)`` of ``tx`` and the reference's final params.
    """
    step = jitted_step(tx, jit=jit)
    state = tx.init(params)
    ours = theirs = params
    for _ in range(steps):
        grads = grad_fn({k: np.asarray(p) for k, p in theirs.items()})
        theirs = reference_step(theirs, grads)
        ours, state = step(ours, state, grads)
    return ours, state, theirs


def optax_reference_step(tx: optax.GradientTransformation, params: dict) -> Callable:
    """Wraps an optax transformation as a stateful ``reference_step(params, grads)``."""
    step = jitted_step(tx)
    state = [tx.init(params)]

    def reference_step(p: dict, g: dict) -> dict:
        p, state[0] = step(p, state[0], g)
        return p

    return reference_step


def quadratic_problem(seed: int, dtype: Any = np.float64) -> tuple[dict, GradFn]:
    """A random convex quadratic per leaf: ``g = A (theta - c)`` with ``A`` SPD, ill-conditioned.

    Leaves of several ranks (matrix, vector, scalar) so tree handling is exercised too.
    """
    rng = np.random.default_rng(seed)
    shapes = {"w": (5, 3), "b": (4,), "s": ()}
    curv, centre, params = {}, {}, {}
    for name, shape in shapes.items():
        n = int(np.prod(shape))
        q, _ = np.linalg.qr(rng.normal(size=(n, n)))
        curv[name] = (q * np.logspace(-2, 1, n)) @ q.T
        centre[name] = rng.normal(size=shape)
        params[name] = rng.normal(size=shape).astype(dtype)

    def grad_fn(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for name, shape in shapes.items():
            d = np.asarray(p[name], np.float64).reshape(-1) - centre[name].reshape(-1)
            out[name] = (curv[name] @ d).reshape(shape).astype(dtype)
        return out

    return params, grad_fn


def rosenbrock_problem(seed: int, dtype: Any = np.float64) -> tuple[dict, GradFn]:
    """Eight independent 2-D Rosenbrock valleys ``(1-x)^2 + 100 (y-x^2)^2`` from random starts."""
    rng = np.random.default_rng(seed)
    params = {
        "x": rng.uniform(-2, 2, size=8).astype(dtype),
        "y": rng.uniform(-1, 3, 8).astype(dtype),
    }

    def grad_fn(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x, y = np.asarray(p["x"], np.float64), np.asarray(p["y"], np.float64)
        gx = -2.0 * (1.0 - x) - 400.0 * x * (y - x * x)
        gy = 200.0 * (y - x * x)
        return {"x": gx.astype(dtype), "y": gy.astype(dtype)}

    return params, grad_fn


EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    """Imports ``examples/<name>.py`` by file path, since ``examples/`` is not a package.

    The examples import their sibling modules (``common``, ``mlp_digits``) by plain name, as a
    script run with ``python examples/<name>.py`` can; putting ``examples/`` on ``sys.path``
    gives the tests the same view.
    """
    if str(EXAMPLES_DIR) not in sys.path:
        sys.path.insert(0, str(EXAMPLES_DIR))
    path = EXAMPLES_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"examples_{name}", path)
    assert spec is not None and spec.loader is not None, f"cannot import {path}"
    module = importlib.util.module_from_spec(spec)
    # Registered before execution, as a regular import would be, so that anything looking
    # the module up by name while or after it runs finds it.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def read_example_outputs(out: Path, *pngs: str) -> dict:
    """Checks that an example wrote each of ``pngs`` as a real PNG into ``out`` and returns its
    parsed ``metrics.json`` (``{"metrics": ..., "args": ..., "device": ...}``)."""
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["device"]["backend"] in ("cpu", "gpu", "tpu"), saved["device"]
    return saved
