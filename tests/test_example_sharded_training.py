"""Tests for ``examples/sharded_training.py``: a ``--quick`` run on a 2 x 4 mesh of fake CPU
devices and the same run on one device, each in a fresh process (the device count is fixed when
JAX starts), and the script's device-flag handling and mesh checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from test_examples import assert_lists_written_files

from helpers import EXAMPLES_DIR, load_example, read_example_outputs

SCRIPT = EXAMPLES_DIR / "sharded_training.py"
# Test images: one misclassified image moves the accuracy by 1/360.
TEST_IMAGES = 1797 - 1437


@pytest.fixture(scope="module")
def sharded() -> ModuleType:
    return load_example("sharded_training")


def _run(out: Path, *flags: str) -> tuple[str, dict[str, Any]]:
    """Runs the script as a user would, without XLA_FLAGS: it must ask for its devices itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out), *flags],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # The last line says where the metrics went.
    assert assert_lists_written_files(done.stdout, out) == [out / "metrics.json"]
    return done.stdout, read_example_outputs(out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[str, dict[str, Any]]]:
    """The default 8-device run and the 1-device run, keyed by device count."""
    return {n: _run(tmp_path_factory.mktemp(f"sharded{n}"), "--devices", str(n)) for n in (8, 1)}


def test_quick_run_on_eight_devices_reaches_the_target_accuracy(
    runs: dict[int, tuple[str, dict[str, Any]]],
) -> None:
    stdout, saved = runs[8]
    metrics = saved["metrics"]
    assert len(saved["device"]["devices"]) == 8 and saved["device"]["backend"] == "cpu"
    assert metrics["mesh"] == {"data": 2, "model": 4}
    # Measured 0.964, 0.969 and 0.972 for seeds 0-2 (8 epochs, 176 steps); mlp_digits.py's quick
    # run, the same model on one device, is held to the same 0.95. Chance is 0.1.
    assert metrics["test_accuracy"] >= 0.95, metrics["test_accuracy"]
    assert metrics["final_loss"] < 0.1 * metrics["initial_loss"]
    assert metrics["steps"] == 8 * (1437 // 64)
    assert f"test accuracy {metrics['test_accuracy']:.4f}" in stdout
    assert saved["args"]["devices"] == 8 and saved["args"]["quick"] is True


def test_moments_carry_their_parameters_shardings(
    runs: dict[int, tuple[str, dict[str, Any]]],
) -> None:
    stdout, saved = runs[8]
    metrics = saved["metrics"]
    # The parameters are split as the model declares: fc1 by columns, fc2 by rows.
    specs = metrics["param_specs"]
    assert specs["fc1/kernel"] == [None, "model"] and specs["fc1/bias"] == ["model"]
    assert specs["fc2/kernel"] == ["model", None] and specs["fc2/bias"] == [None]
    assert specs["out/kernel"] == [None, None]
    for rows in (metrics["state_shardings_at_init"], metrics["state_shardings"]):
        # AdamW's mu and nu for each of the 6 parameters.
        assert sorted(r["state"] for r in rows) == sorted(
            f"{m}/{p}" for m in ("mu", "nu") for p in specs
        )
        for row in rows:
            assert row["matches"], row
            assert row["spec"] == row["param_spec"] == specs[row["param"]], row
    assert metrics["state_follows_params"] is True
    assert "every moment carries its parameter's sharding" in stdout


def test_eight_bit_moments_with_flax_sharding_annotations(tmp_path: Path) -> None:
    """nnx.Optimizer with q8 moments on annotated params: the codes of each hidden kernel are
    sharded like it (the per-block scales, one block per row here, could not take the kernel's
    annotation, and are left unannotated)."""
    stdout, saved = _run(tmp_path, "--devices", "8", "--moments", "q8")
    metrics = saved["metrics"]
    assert saved["args"]["moments"] == "q8"
    # Measured 0.9639 for seed 0, the float32 run's accuracy; the same bar as above.
    assert metrics["test_accuracy"] >= 0.95, metrics["test_accuracy"]
    rows = metrics["state_shardings_at_init"] + metrics["state_shardings"]
    quantized = {r["state"] for r in rows if r["state"].endswith("/codes")}
    # fc1 (64 x 128) and fc2 (128 x 128) reach q8's min_size of 4096 entries; out does not.
    assert quantized == {f"{m}/{p}/kernel/codes" for m in ("mu", "nu") for p in ("fc1", "fc2")}
    specs = metrics["param_specs"]
    for row in rows:
        assert row["matches"] and row["spec"] == specs[row["param"]], row
    assert "every moment carries its parameter's sharding" in stdout


def test_eight_devices_match_one_device(runs: dict[int, tuple[str, dict[str, Any]]]) -> None:
    """Same initialization, batches and steps; only the order of the sums over shards differs.
    Measured for seeds 0-2: equal accuracies, training losses within 2.4e-7."""
    eight, one = runs[8][1]["metrics"], runs[1][1]["metrics"]
    assert runs[1][1]["metrics"]["mesh"] == {"data": 1, "model": 1}
    assert len(runs[1][1]["device"]["devices"]) == 1
    assert abs(eight["test_accuracy"] - one["test_accuracy"]) <= 1 / TEST_IMAGES + 1e-9
    np.testing.assert_allclose(eight["train_loss"], one["train_loss"], rtol=1e-5)
    assert eight["test_loss"] == pytest.approx(one["test_loss"], rel=1e-5)
    # On one device nothing is split, and the check still sees every moment.
    assert all(spec == [None] * len(spec) for spec in one["param_specs"].values())
    assert len(one["state_shardings"]) == 12 and one["state_follows_params"] is True


def test_request_cpu_devices_respects_existing_settings(sharded: ModuleType) -> None:
    flag = sharded.DEVICE_COUNT_FLAG
    env: dict[str, str] = {}
    assert sharded.request_cpu_devices(8, env) and env["XLA_FLAGS"] == f"{flag}=8"
    env = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
    assert sharded.request_cpu_devices(4, env)
    assert env["XLA_FLAGS"] == f"--xla_cpu_enable_fast_math=false {flag}=4"
    # A device count set already, a platform list without the CPU, one device: nothing to do.
    for env, count in (({"XLA_FLAGS": f"{flag}=2"}, 8), ({"JAX_PLATFORMS": "cuda"}, 8), ({}, 1)):
        before = dict(env)
        assert not sharded.request_cpu_devices(count, env)
        assert env == before
    env = {"JAX_PLATFORMS": "cuda,cpu"}
    assert sharded.request_cpu_devices(8, env) and env["XLA_FLAGS"] == f"{flag}=8"


def test_mesh_flags(sharded: ModuleType, tmp_path: Path) -> None:
    args = sharded.parse_args(["--out", str(tmp_path)])
    assert (args.devices, args.data_parallel, args.model_parallel) == (8, 2, 4)
    args = sharded.parse_args(["--devices", "2", "--out", str(tmp_path)])
    assert (args.data_parallel, args.model_parallel) == (1, 2)
    args = sharded.parse_args(["--devices", "1", "--out", str(tmp_path)])
    assert (args.data_parallel, args.model_parallel) == (1, 1)
    for bad in (
        ["--devices", "8", "--data-parallel", "3"],  # 3 x 4 is not 8
        ["--devices", "8", "--batch-size", "63"],  # the batch splits in 2
        ["--devices", "8", "--hidden", "126"],  # the hidden units split in 4
    ):
        with pytest.raises(SystemExit):
            sharded.parse_args([*bad, "--out", str(tmp_path)])
