"""Checkpoint and resume: every optimizer state survives an orbax save and a restore in a fresh
process bit for bit.

One child process runs each optimizer for ``BEFORE`` steps, saves params and state with
``orbax.checkpoint.StandardCheckpointer``, and carries on to ``BEFORE + AFTER`` steps (the
uninterrupted run). A second, fresh child rebuilds each optimizer, restores into the abstract
target ``jax.eval_shape`` gives for ``tx.init(params)``, and runs the remaining ``AFTER`` steps.
Both children run this file as a script (``python tests/test_checkpoint.py save|resume DIR``) and
pickle NumPy copies of the trees; the tests compare them leaf by leaf, bytes and dtypes. The
negative controls (a fresh state, a gradient stream one step off, a reset count) show the
comparison sees the difference a broken restore would make.

The gradient at step ``k`` is seeded noise for that step plus a pull towards zero that depends on
the params (``noise_k + CURVATURE * params``), so a resume that restored the wrong params, the
wrong state or replayed the wrong step would drift away. ``CASES`` is shared with
``test_determinism.py``.
"""

from __future__ import annotations

import dataclasses
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

import adamjax

# An exhaustive layer: run with `pytest -m slow` (.ci/run does).
pytestmark = pytest.mark.slow

BEFORE = 5  # steps before the checkpoint (odd: MultiSteps(every_k_schedule=2) is mid-accumulation)
AFTER = 7  # steps after it
LR = 1e-2
CURVATURE = 0.5
SHAPES = {"w": (16, 32), "b": (32,), "s": ()}


@dataclasses.dataclass(frozen=True)
class Case:
    """One optimizer: how to build it, the params' dtype, and steps whose gradient is NaN."""

    make: Callable[[], optax.GradientTransformation]
    param_dtype: Any = jnp.float32
    nonfinite_steps: tuple[int, ...] = ()


def _q8() -> adamjax._formats.Q8:
    return adamjax.q8(min_size=0)  # quantize every leaf, however small


CASES: dict[str, Case] = {
    "adam": Case(lambda: adamjax.adam(LR)),
    "adamw": Case(lambda: adamjax.adamw(LR, weight_decay=1e-2)),
    "amsgrad_raw": Case(lambda: adamjax.amsgrad(LR, max_of="raw")),
    "amsgrad_corrected": Case(lambda: adamjax.amsgrad(LR, max_of="corrected")),
    "nadam": Case(lambda: adamjax.nadam(LR)),
    "adamax": Case(lambda: adamjax.adamax(LR)),
    "radam": Case(lambda: adamjax.radam(LR)),
    "adabound": Case(lambda: adamjax.adabound(LR, final_lr=0.1)),
    "amsbound": Case(lambda: adamjax.adabound(LR, final_lr=0.1, amsbound=True)),
    # min_dim_size_to_factor=8 factors "w" (16 x 32), not "b" or "s"; momentum adds a moment.
    "adafactor": Case(lambda: adamjax.adafactor(LR, min_dim_size_to_factor=8, momentum=0.9)),
    # With switch_rtol=0.1, SWATS switches to SGD at step 6, the first after the checkpoint (the
    # relative gap is 0.139 or more before, 0.083 then: far from the threshold, so a rounding
    # cannot move the switch); the mid-flight test below checks that it does.
    "swats": Case(lambda: adamjax.swats(LR, switch_rtol=0.1)),
    "diagnostics": Case(lambda: adamjax.with_diagnostics(adamjax.adam(LR))),
    "adam_q8": Case(lambda: adamjax.adam(LR, mu_dtype=_q8(), nu_dtype=_q8())),
    "amsgrad_q8": Case(lambda: adamjax.amsgrad(LR, mu_dtype=_q8(), nu_dtype=_q8())),
    "adam_stochastic_bf16": Case(
        lambda: adamjax.adam(
            LR, mu_dtype=adamjax.stochastic_bf16(0), nu_dtype=adamjax.stochastic_bf16(1)
        )
    ),
    "adam_bf16": Case(lambda: adamjax.adam(LR, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)),
    # Adan's four buffers (the previous gradient too) in 8 bits, with the proximal decay.
    "adan_q8": Case(
        lambda: adamjax.adan(
            LR, weight_decay=1e-2, mu_dtype=_q8(), nu_dtype=_q8(), prev_grad_dtype=_q8()
        )
    ),
    "lamb_q8": Case(lambda: adamjax.lamb(LR, weight_decay=1e-2, mu_dtype=_q8(), nu_dtype=_q8())),
    "adabelief_rectify": Case(lambda: adamjax.adabelief(LR, rectify=True)),
    "yogi": Case(lambda: adamjax.yogi(LR)),
    "inject_hyperparams_adamw": Case(
        lambda: optax.inject_hyperparams(adamjax.adamw)(
            learning_rate=optax.cosine_decay_schedule(LR, 20), weight_decay=1e-2
        )
    ),
    "multi_steps_adam": Case(
        lambda: optax.MultiSteps(adamjax.adam(LR), every_k_schedule=2).gradient_transformation()
    ),
    # NaN gradients at the two steps before the checkpoint (it saves a streak of 2) and one after.
    "apply_if_finite_adamw": Case(
        lambda: optax.apply_if_finite(adamjax.adamw(LR), max_consecutive_errors=3),
        nonfinite_steps=(BEFORE - 2, BEFORE - 1, BEFORE + 3),
    ),
    "stochastic_rounding_bf16_params": Case(
        lambda: optax.chain(adamjax.adamw(LR), adamjax.stochastic_rounding(seed=3)),
        param_dtype=jnp.bfloat16,
    ),
}


# ---- the problem, shared with test_determinism.py -------------------------------------------


def initial_params(case: Case) -> dict[str, jax.Array]:
    rng = np.random.default_rng(0)
    return {
        k: jnp.asarray(rng.standard_normal(s) / np.sqrt(max(s, default=1)), case.param_dtype)
        for k, s in SHAPES.items()
    }


def noise(case: Case, step: int) -> dict[str, np.ndarray]:
    """The gradient noise of ``step`` (float32, seeded by the step; NaN at nonfinite steps)."""
    rng = np.random.default_rng([1, step])
    out = {k: rng.standard_normal(s, dtype=np.float32) for k, s in SHAPES.items()}
    if step in case.nonfinite_steps:
        out = {k: np.full_like(n, np.nan) for k, n in out.items()}
    return out


def make_step(tx: optax.GradientTransformation) -> Callable:
    """``step(params, state, noise) -> (params, state)`` with gradient ``noise + c * params``."""

    def step(params, state, noise):
        grads = jax.tree.map(
            lambda p, n: (n + CURVATURE * p.astype(jnp.float32)).astype(p.dtype), params, noise
        )
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def run(step: Callable, case: Case, params: Any, state: Any, start: int, stop: int):
    """Steps ``start`` to ``stop - 1``, on params and state committed to the default device.

    Committing them makes every trajectory (fresh, restored by orbax, edited) reach ``step`` with
    the same argument shardings, so it compiles once per optimizer.
    """
    params, state = jax.device_put((params, state), jax.devices()[0])
    for k in range(start, stop):
        params, state = step(params, state, noise(case, k))
    return params, state


def snapshot(tree: Any) -> dict[str, Any]:
    """A picklable copy of a pytree: its structure, and each leaf by path as a NumPy array."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return {
        "treedef": str(treedef),
        "leaves": {jax.tree_util.keystr(path): np.array(leaf) for path, leaf in leaves},
    }


def abstract_snapshot(tree: Any) -> dict[str, Any]:
    """Structure and ``(shape, dtype)`` of each leaf of a tree of arrays or ShapeDtypeStructs."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return {
        "treedef": str(treedef),
        "leaves": {
            jax.tree_util.keystr(path): (tuple(leaf.shape), str(leaf.dtype))
            for path, leaf in leaves
        },
    }


def params_differ(actual: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Whether two snapshots of ``(params, state)`` differ in the params."""
    return any(path.startswith("[0]") for path in differing_leaves(actual, expected))


def differing_leaves(actual: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Paths of the leaves of two snapshots that differ in shape, dtype or any byte.

    Raises if the structures differ. Comparing bytes, not values, also tells -0.0 from 0.0 and one
    NaN payload from another, and needs no arithmetic on bfloat16 or quantization codes.
    """
    assert actual["treedef"] == expected["treedef"]
    assert actual["leaves"].keys() == expected["leaves"].keys()
    return [
        path
        for path, e in expected["leaves"].items()
        if not (
            (a := actual["leaves"][path]).dtype == e.dtype
            and a.shape == e.shape
            and a.tobytes() == e.tobytes()
        )
    ]


# ---- the two child processes ----------------------------------------------------------------


def _save_all(directory: Path) -> dict[str, Any]:
    import orbax.checkpoint as ocp

    checkpointer, out = ocp.StandardCheckpointer(), {}
    for name, case in CASES.items():
        try:
            tx = case.make()
            step = jax.jit(make_step(tx))
            params = initial_params(case)
            params, state = run(step, case, params, tx.init(params), 0, BEFORE)
            checkpointer.save(directory / name, {"params": params, "opt": state})
            checkpointer.wait_until_finished()
            saved = snapshot({"params": params, "opt": state})
            final = snapshot(run(step, case, params, state, BEFORE, BEFORE + AFTER))
            out[name] = {"saved": saved, "final": final}
        except Exception:
            out[name] = {"error": traceback.format_exc()}
    return out


def _reset_counts(tree: Any) -> Any:
    """``tree`` with every leaf named ``count`` set to 0 (a restore that lost the step count)."""

    def reset(path, leaf):
        last = path[-1]
        return jnp.zeros_like(leaf) if getattr(last, "name", None) == "count" else leaf

    return jax.tree_util.tree_map_with_path(reset, tree)


def _resume_all(directory: Path) -> dict[str, Any]:
    import orbax.checkpoint as ocp

    checkpointer, out = ocp.StandardCheckpointer(), {}
    end = BEFORE + AFTER
    for name, case in CASES.items():
        try:
            tx = case.make()
            step = jax.jit(make_step(tx))
            params0 = initial_params(case)
            target = jax.eval_shape(lambda tx=tx, p=params0: {"params": p, "opt": tx.init(p)})
            restored = checkpointer.restore(directory / name, target)
            params, state = restored["params"], restored["opt"]
            out[name] = {
                "target": abstract_snapshot(target),
                "restored_abstract": abstract_snapshot(restored),
                "restored": snapshot(restored),
                "final": snapshot(run(step, case, params, state, BEFORE, end)),
                # Negative controls: what a broken resume would give.
                "fresh_state": snapshot(run(step, case, params, tx.init(params), BEFORE, end)),
                "one_step_off": snapshot(run(step, case, params, state, BEFORE - 1, end - 1)),
                "count_reset": snapshot(run(step, case, params, _reset_counts(state), BEFORE, end)),
            }
        except Exception:
            out[name] = {"error": traceback.format_exc()}
    return out


def _child(phase: str, directory: Path) -> dict[str, Any]:
    """Runs this file as ``python test_checkpoint.py PHASE DIR`` in a fresh interpreter.

    Each child compiles its own steps (no persistent compilation cache), as a restarted job
    on another machine would.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    done = subprocess.run(
        [sys.executable, __file__, phase, str(directory)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return pickle.loads((directory / f"{phase}.pkl").read_bytes())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict, dict]:
    directory = tmp_path_factory.mktemp("checkpoints")
    saved = _child("save", directory)
    return saved, _child("resume", directory)


def results(runs: tuple[dict, dict], name: str) -> tuple[dict, dict]:
    saved, resumed = runs[0][name], runs[1][name]
    assert "error" not in saved, saved.get("error")
    assert "error" not in resumed, resumed.get("error")
    return saved, resumed


# ---- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_restore_in_a_fresh_process_gives_back_the_saved_tree(runs, name):
    saved, resumed = results(runs, name)
    # The abstract target built from tx.init in the new process has the saved structure, shapes
    # and dtypes, and so does what orbax hands back.
    saved_abstract = {
        "treedef": saved["saved"]["treedef"],
        "leaves": {k: (a.shape, str(a.dtype)) for k, a in saved["saved"]["leaves"].items()},
    }
    assert resumed["target"] == saved_abstract
    assert resumed["restored_abstract"] == saved_abstract
    assert differing_leaves(resumed["restored"], saved["saved"]) == []


@pytest.mark.parametrize("name", CASES)
def test_resumed_run_is_bitwise_the_uninterrupted_run(runs, name):
    saved, resumed = results(runs, name)
    assert differing_leaves(resumed["final"], saved["final"]) == []


@pytest.mark.parametrize("name", CASES)
def test_resuming_with_a_fresh_optimizer_state_diverges(runs, name):
    """Negative control: restoring the params but not the optimizer state is caught."""
    saved, resumed = results(runs, name)
    assert params_differ(resumed["fresh_state"], saved["final"])


@pytest.mark.parametrize("name", CASES)
def test_resuming_one_step_off_diverges(runs, name):
    """Negative control: replaying the gradient stream from step BEFORE - 1 is caught."""
    saved, resumed = results(runs, name)
    assert params_differ(resumed["one_step_off"], saved["final"])


@pytest.mark.parametrize("name", CASES)
def test_resuming_with_the_counts_reset_diverges(runs, name):
    """Negative control: a restore that lost the step counts (bias corrections, schedules, SWATS'
    switching test, stochastic-rounding keys and MultiSteps' cycle all start over)."""
    saved, resumed = results(runs, name)
    assert params_differ(resumed["count_reset"], saved["final"])


def test_the_checkpoint_catches_each_wrapper_mid_flight(runs):
    """The states whose interesting part is not a moment are saved in the middle of it."""

    def leaf(name: str, key: str, path: str) -> np.ndarray:
        return results(runs, name)[1][key]["leaves"][path]

    # SWATS is still in its Adam phase at the checkpoint and switches to SGD after the resume.
    assert leaf("swats", "restored", "['opt'][0].phase") == adamjax._swats.PHASE_ADAM
    assert leaf("swats", "final", "[1][0].phase") == adamjax._swats.PHASE_SGD
    assert BEFORE < leaf("swats", "final", "[1][0].switch_step") <= BEFORE + AFTER
    # MultiSteps holds one accumulated gradient of two.
    assert leaf("multi_steps_adam", "restored", "['opt'].mini_step") == 1
    assert np.any(leaf("multi_steps_adam", "restored", "['opt'].acc_grads['w']") != 0)
    # apply_if_finite is two non-finite steps into a streak, and leaves it after the resume.
    assert leaf("apply_if_finite_adamw", "restored", "['opt'].notfinite_count") == 2
    assert leaf("apply_if_finite_adamw", "final", "[1].total_notfinite") == 3
    # The stochastic-rounding chain keeps bfloat16 params.
    assert leaf("stochastic_rounding_bf16_params", "final", "[0]['w']").dtype == jnp.bfloat16


if __name__ == "__main__":
    phase, where = sys.argv[1], Path(sys.argv[2])
    result = {"save": _save_all, "resume": _resume_all}[phase](where)
    (where / f"{phase}.pkl").write_bytes(pickle.dumps(result))
