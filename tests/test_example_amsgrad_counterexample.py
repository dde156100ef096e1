"""Tests for ``examples/amsgrad_counterexample.py``."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import jax.numpy as jnp
import numpy as np
import pytest
from test_examples import assert_lists_written_files

from helpers import load_example, read_example_outputs


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_example("amsgrad_counterexample")


def test_gradient_is_1010_every_third_round_from_t1(example: ModuleType) -> None:
    t = np.arange(1, 13)
    g = np.asarray(example.gradient(jnp.asarray(t)))
    expected = np.where(np.isin(t, [1, 4, 7, 10]), 1010.0, -10.0)
    np.testing.assert_array_equal(g, expected)
    assert float(example.gradient(1)) == 1010.0
    assert float(example.gradient(3)) == -10.0
    # A traced round index inside jit gives the same sequence.
    assert float(example.gradient(jnp.int32(999_997))) == 1010.0  # 999_997 = 3 * 333_332 + 1


def test_projection_clips_to_the_interval(example: ModuleType) -> None:
    x = jnp.asarray([-5.0, -1.0, -0.3, 0.0, 0.7, 1.0, 2.5])
    expected = np.asarray([-1.0, -1.0, -0.3, 0.0, 0.7, 1.0, 1.0], np.float32)
    np.testing.assert_array_equal(np.asarray(example.project(x)), expected)


def test_iterates_stay_in_the_interval_and_hit_its_ends(example: ModuleType) -> None:
    # A constant step of 1 would carry x far outside [-1, 1] without the projection.
    for name, tx in example.make_optimizers(1.0, 0.0, example.THEOREM_B2).items():
        xs = example.run(tx, 300)
        assert xs.shape == (301,) and xs[0] == 0.0
        assert np.all(np.isfinite(xs)), name
        assert xs.min() >= -1.0 and xs.max() <= 1.0, name
        assert xs.max() == 1.0 or xs.min() == -1.0, name


def test_regret_of_the_worst_and_best_points(example: ModuleType) -> None:
    t = 3 * 400
    at_plus_one = example.average_regret(np.ones(t + 1, np.float32))
    at_minus_one = example.average_regret(-np.ones(t + 1, np.float32))
    # Playing +1 costs 2 * 1010 - 2 * 2 * 10 per period of three rounds.
    assert at_plus_one[-1] == pytest.approx((2 * 1010 - 40) / 3)
    np.testing.assert_array_equal(at_minus_one, 0.0)


def test_quick_run_adam_goes_to_plus_one_and_amsgrad_to_minus_one(
    example: ModuleType, tmp_path: Path, capsys
) -> None:
    metrics = example.main(["--quick", "--out", str(tmp_path)])
    listed = assert_lists_written_files(capsys.readouterr().out, tmp_path)
    assert {path.name for path in listed} == {"amsgrad_counterexample.png", "metrics.json"}
    final = {name: m["final_x"] for name, m in metrics["optimizers"].items()}
    assert final["adam"] > 0, final
    assert final["amsgrad"] < 0, final
    # Measured: x = +1 and -1 from round ~600 and ~240 on.
    assert final["adam"] > 0.99 and final["amsgrad"] < -0.99, final
    assert final["amsgrad_corrected"] < -0.99, final
    regret = {name: m["average_regret"] for name, m in metrics["optimizers"].items()}
    # Measured after 3000 rounds: 637 and 9.0 (the latter still falling like 1/t).
    assert regret["adam"] > 20 * regret["amsgrad"] > 0, regret

    saved = read_example_outputs(tmp_path, "amsgrad_counterexample.png")
    assert saved["metrics"]["steps"] == 3000
    assert saved["metrics"]["optimizers"]["adam"]["final_x"] == pytest.approx(final["adam"])
    assert saved["args"]["period"] == 3


def test_bad_flags_are_rejected(example: ModuleType) -> None:
    for argv in (["--period", "1"], ["--period", "102"], ["--x0", "2"], ["--b2", "1.0"]):
        with pytest.raises(SystemExit):
            example.parse_args(argv)
