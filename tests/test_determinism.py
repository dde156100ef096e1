"""Determinism: the same run gives the same bits, within a process, across fresh processes, after
recompiling and with donated buffers; and jit agrees with op-by-op execution to rounding.

Every optimizer of ``test_checkpoint.CASES`` runs ``STEPS`` steps of that file's problem, in two
fresh child processes (this file run as a script) started side by side:

* child ``A``: the jitted run; the same compiled step run again from a fresh state; the run with
  params and state donated (``donate_argnums=(0, 1)``); and, after ``jax.clear_caches()``, the
  run with the optimizer rebuilt and a new closure jitted (retraced and recompiled);
* child ``B``: the jitted run, and the run op by op under ``jax.disable_jit()``.

Why jit and op by op differ at all is pinned down by the last tests: XLA:CPU fuses elementwise
code under jit and, inside a fused kernel, contracts ``a * b + c`` into one fused multiply-add,
computes ``x / sqrt(y)`` as ``x * rsqrt(y)`` and evaluates ``pow`` differently, each a rounding
apart from the op-by-op result. ``optax.adam`` shows the same gap, so it is the compiler's, not
adamjax's.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_checkpoint import CASES, differing_leaves, initial_params, make_step, noise, run, snapshot

from helpers import max_rel_err

# An exhaustive layer: run with `pytest -m slow` (.ci/run does).
pytestmark = pytest.mark.slow

STEPS = 10
B2 = 0.999  # every case's b2 (the default)
EPS32 = float(np.finfo(np.float32).eps)
# Tolerance of an op-by-op run against the jitted one, relative to each leaf's largest entry
# (helpers.max_rel_err). Per step, the ~16 roundings of an update (moments, corrections, eps,
# square root, division, learning rate, apply_updates) may each land one ulp apart (FMA
# contraction, rsqrt, pow), and those differences add up over STEPS steps (the closed loop,
# curvature 0.5 at lr 1e-2, does not amplify them). On top, 1 - b2^k from a b2^k one ulp (at
# most eps) apart differs relatively by up to eps / (1 - b2^k) <= eps / (1 - b2): the subtraction
# cancels the leading bits. That one is not carried from step to step (the correction is
# recomputed from k), so it is added once. A value stored in a narrower dtype (bfloat16 moments
# or params) may in addition round to the neighbouring value once per step: STEPS ulps of that
# dtype.
ROUNDINGS_PER_STEP = 16


def tolerance(dtype: Any) -> float:
    narrow = float(jnp.finfo(dtype).eps) if jnp.finfo(dtype).bits < 32 else 0.0
    return STEPS * (ROUNDINGS_PER_STEP * EPS32 + narrow) + EPS32 / (1 - B2)


# ---- the child processes --------------------------------------------------------------------


def _donated_run(tx: optax.GradientTransformation, name: str) -> dict[str, Any]:
    """The jitted run with params and state donated; also whether the inputs were consumed."""
    case = CASES[name]
    step = jax.jit(make_step(tx), donate_argnums=(0, 1))
    params = initial_params(case)
    state = tx.init(params)
    donated = jax.tree.leaves(params), jax.tree.leaves(state)
    for k in range(STEPS):
        params, state = step(params, state, noise(case, k))
    return {
        "final": snapshot((params, state)),
        "params_consumed": all(leaf.is_deleted() for leaf in donated[0]),
        "state_consumed": any(leaf.is_deleted() for leaf in donated[1]),
    }


def _jitted(
    tx: optax.GradientTransformation, name: str, step: Callable | None = None
) -> dict[str, Any]:
    """The jitted run (with ``step`` if given, else a new ``jax.jit`` of a new closure)."""
    case = CASES[name]
    step = step or jax.jit(make_step(tx))
    params = initial_params(case)
    return snapshot(run(step, case, params, tx.init(params), 0, STEPS))


def _op_by_op(tx: optax.GradientTransformation, name: str) -> dict[str, Any]:
    case = CASES[name]
    params = initial_params(case)
    with jax.disable_jit():
        return snapshot(run(make_step(tx), case, params, tx.init(params), 0, STEPS))


def _child(role: str) -> dict[str, dict[str, Any]]:
    """Child A's or B's runs, ``{case: {run: result}}``; a run that raised gives its traceback."""

    def attempt(fn, *args):
        try:
            return fn(*args)
        except Exception:
            return {"error": traceback.format_exc()}

    out: dict[str, dict[str, Any]] = {name: {} for name in CASES}
    for name, case in CASES.items():
        tx = case.make()
        step = jax.jit(make_step(tx))
        out[name]["jit"] = attempt(_jitted, tx, name, step)
        if role == "A":
            out[name]["jit_again"] = attempt(_jitted, tx, name, step)
            out[name]["donated"] = attempt(_donated_run, tx, name)
        else:
            out[name]["op_by_op"] = attempt(_op_by_op, tx, name)
    if role == "A":
        jax.clear_caches()
        for name, case in CASES.items():
            out[name]["recompiled"] = attempt(_jitted, case.make(), name)
    return out


@pytest.fixture(scope="module")
def children(tmp_path_factory):
    """Runs children A and B side by side; returns ``{role: {case: {run: result}}}``."""
    directory = tmp_path_factory.mktemp("determinism")
    # No persistent compilation cache: each child must compile for itself.
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    procs = {}
    for role in ("A", "B"):
        with open(directory / f"{role}.log", "w") as log:  # a file: a pipe could fill and block
            procs[role] = subprocess.Popen(
                [sys.executable, __file__, role, str(directory / f"{role}.pkl")],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    try:
        out = {}
        for role, proc in procs.items():
            assert proc.wait(timeout=600) == 0, (directory / f"{role}.log").read_text()[-4000:]
            out[role] = pickle.loads((directory / f"{role}.pkl").read_bytes())
        yield out
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def child_result(children, role: str, name: str, *runs: str) -> list[Any]:
    """The results of ``runs`` of case ``name`` in child ``role``; fails on a run that raised."""
    out = children[role][name]
    for r in runs:
        assert "error" not in out[r], out[r]["error"]
    return [out[r] for r in runs]


def assert_close_to_rounding(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Two snapshots of (params, state): same structure and dtypes, integer leaves equal (8-bit
    codes within one code per step), floating leaves within ``tolerance`` of their dtype."""
    assert actual["treedef"] == expected["treedef"]
    for path, e in expected["leaves"].items():
        a = actual["leaves"][path]
        assert (a.dtype, a.shape) == (e.dtype, e.shape), path
        if jnp.issubdtype(e.dtype, jnp.floating):
            err = max_rel_err(a.astype(np.float64), e.astype(np.float64))
            assert err <= tolerance(e.dtype), (path, err, tolerance(e.dtype))
        elif path.endswith(".codes"):
            # A quantized moment may land on the neighbouring code of the sorted map each step.
            gap = np.max(np.abs(a.astype(np.int64) - e.astype(np.int64)), initial=0)
            assert gap <= STEPS, (path, gap)
        else:  # counts, phases, switch steps, skip counters: decisions must agree exactly
            np.testing.assert_array_equal(a, e, err_msg=path)


# ---- jit against op by op ------------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_jit_matches_op_by_op_to_rounding(children, name):
    jitted, op_by_op = child_result(children, "B", name, "jit", "op_by_op")
    assert_close_to_rounding(op_by_op, jitted)


# ---- bitwise --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_two_jitted_runs_are_bitwise_equal(children, name):
    jitted, again = child_result(children, "A", name, "jit", "jit_again")
    assert differing_leaves(again, jitted) == []


@pytest.mark.parametrize("name", CASES)
def test_two_fresh_processes_are_bitwise_equal(children, name):
    [a] = child_result(children, "A", name, "jit")
    [b] = child_result(children, "B", name, "jit")
    assert differing_leaves(b, a) == []


@pytest.mark.parametrize("name", CASES)
def test_retraced_and_recompiled_run_is_bitwise_equal(children, name):
    jitted, recompiled = child_result(children, "A", name, "jit", "recompiled")
    assert differing_leaves(recompiled, jitted) == []


@pytest.mark.parametrize("name", CASES)
def test_donated_run_is_bitwise_equal(children, name):
    """``jax.jit(step, donate_argnums=(0, 1))``: the buffers are reused, the bits are not changed.

    A state whose leaves share one array cannot be donated when the step reads both (XLA:
    "Attempt to donate the same buffer twice"), so this also needs every leaf of ``tx.init`` to
    be an array of its own.
    """
    jitted, donated = child_result(children, "A", name, "jit", "donated")
    assert donated["params_consumed"] and donated["state_consumed"]
    assert differing_leaves(donated["final"], jitted) == []


# ---- why jit and op by op differ ------------------------------------------------------------


def _bits_differ(a: Any, b: Any) -> bool:
    return any(
        np.asarray(x).tobytes() != np.asarray(y).tobytes()
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def test_optax_adam_shows_the_same_jit_gap():
    """The gap is the compiler's: optax.adam's op-by-op run differs from its jitted run too, and
    by no more than adamjax's tolerance, which a learning rate 1% off exceeds."""
    case = CASES["adam"]
    params = initial_params(case)

    def jitted(learning_rate):
        tx = optax.adam(learning_rate)
        return run(jax.jit(make_step(tx)), case, params, tx.init(params), 0, STEPS)

    tx = optax.adam(1e-2)
    with jax.disable_jit():
        eager = run(make_step(tx), case, params, tx.init(params), 0, STEPS)
    reference = jitted(1e-2)
    assert _bits_differ(eager, reference)
    assert_close_to_rounding(snapshot(eager), snapshot(reference))
    with pytest.raises(AssertionError):
        assert_close_to_rounding(snapshot(eager), snapshot(jitted(1.01e-2)))


def test_xla_cpu_rounds_fused_code_differently_and_deterministically():
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(4096, dtype=np.float32) for _ in range(3))
    y = rng.uniform(0.1, 10.0, 4096).astype(np.float32)

    def multiply_add(a, b, c):
        return a * b + c

    # Op by op rounds twice (the product, then the sum), exactly as NumPy's float32 does; under
    # jit the fused kernel rounds once, as a float64 evaluation (exact product) rounded to
    # float32 does. Two jitted closures, even after clearing the caches, agree bit for bit.
    eager = np.asarray(multiply_add(jnp.asarray(a), jnp.asarray(b), jnp.asarray(c)))
    jitted = np.asarray(jax.jit(multiply_add)(a, b, c))
    np.testing.assert_array_equal(eager, a * b + c)
    np.testing.assert_array_equal(jitted, (a.astype(np.float64) * b + c).astype(np.float32))
    assert not np.array_equal(jitted, eager)
    jax.clear_caches()
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda *x: multiply_add(*x))(a, b, c)), jitted)

    # x / sqrt(y): op by op is correctly rounded (NumPy's result); jitted it becomes x * rsqrt(y),
    # a few ulps away.
    def scaled(x, y):
        return x / jnp.sqrt(y)

    eager = np.asarray(scaled(jnp.asarray(a), jnp.asarray(y)))
    compiled = jax.jit(scaled).lower(a, y).compile()
    jitted = np.asarray(compiled(a, y))
    assert " rsqrt(" in compiled.as_text()
    np.testing.assert_array_equal(eager, a / np.sqrt(y))
    assert not np.array_equal(jitted, eager)
    np.testing.assert_array_max_ulp(jitted, eager, maxulp=4)

    # The bias correction 1 - b2^k of a scalar step count k: pow differs by an ulp for some k,
    # which the subtraction turns into a relative difference of up to eps / (1 - b2) (the term
    # in ``tolerance``).
    def correction(k):
        return 1 - jnp.asarray(B2, jnp.float32) ** k

    ks = [jnp.int32(k) for k in range(1, STEPS + 1)]
    eager = np.array([correction(k) for k in ks])
    jitted = np.array([jax.jit(correction)(k) for k in ks])
    assert not np.array_equal(jitted, eager)
    assert np.max(np.abs(jitted - eager) / eager) <= EPS32 / (1 - B2)


if __name__ == "__main__":
    Path(sys.argv[2]).write_bytes(pickle.dumps(_child(sys.argv[1])))
