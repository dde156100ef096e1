"""Tests for ``examples/surface_2d.py``."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from types import ModuleType

import jax.numpy as jnp
import numpy as np
import pytest
from test_examples import assert_lists_written_files

from helpers import load_example, read_example_outputs

# An exhaustive layer: run with `pytest -m slow` (.ci/run does).
pytestmark = pytest.mark.slow

ADAMJAX = ("adam", "amsgrad", "adamw", "nadam")


@pytest.fixture(scope="module")
def surface_2d() -> ModuleType:
    return load_example("surface_2d")


@pytest.fixture(scope="module")
def quick_run(surface_2d: ModuleType, tmp_path_factory: pytest.TempPathFactory):
    """The ``--quick`` run's metrics, output directory and printed output."""
    out = tmp_path_factory.mktemp("surface_2d")
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        metrics = surface_2d.main(["--quick", "--out", str(out)])
    return metrics, out, stdout.getvalue()


def test_test_functions_have_their_minima_where_documented(surface_2d: ModuleType) -> None:
    for name, problem in surface_2d.PROBLEMS.items():
        minimum = jnp.asarray(problem.minimum)
        assert float(problem.f(minimum)) == 0.0, name
        # Any step away from the minimum increases f.
        for d in ((1e-2, 0.0), (0.0, -1e-2), (-1e-2, 1e-2)):
            assert float(problem.f(minimum + jnp.asarray(d))) > 0.0, (name, d)
    assert float(surface_2d.rosenbrock(jnp.asarray([-1.5, 2.0]))) == pytest.approx(12.5)


def test_quick_run_writes_figures_and_metrics(surface_2d: ModuleType, quick_run) -> None:
    _, out, stdout = quick_run
    saved = read_example_outputs(out, "surface_sphere.png", "surface_rosenbrock.png", "loss.png")
    assert saved["metrics"]["rosenbrock"]["optimizers"]["adam"]["steps"] == 500
    assert saved["args"]["quick"] is True
    listed = assert_lists_written_files(stdout, out)
    # Two surfaces, the loss curves and the metrics; two more surfaces for the modern family.
    modern = ["surface_sphere_modern.png", "surface_rosenbrock_modern.png"]
    assert len(listed) == 4 + 2 * bool(surface_2d.MODERN)
    assert all((p in {x.name for x in listed}) == bool(surface_2d.MODERN) for p in modern)


def test_adamjax_optimizers_descend_on_both_functions(surface_2d: ModuleType, quick_run) -> None:
    metrics, _, _ = quick_run
    sphere, rosen = metrics["sphere"], metrics["rosenbrock"]
    assert sphere["start_f"] == pytest.approx(1.5**2 + 1.8**2, rel=1e-6)
    assert rosen["start_f"] == pytest.approx(12.5, rel=1e-6)
    for opt in ADAMJAX:
        # Measured after 500 steps: < 1e-17 on the sphere (5.49 at the start), 0.15-0.98 on
        # Rosenbrock (12.5 at the start).
        assert sphere["optimizers"][opt]["final_f"] < 1e-6 * sphere["start_f"], opt
        assert rosen["optimizers"][opt]["final_f"] < rosen["start_f"] / 5, opt
    for entry in (sphere, rosen):
        assert set(entry["optimizers"]) == {
            "adam", "amsgrad", "adamw", "nadam", "sgd_momentum", "rmsprop", "adagrad",
            *surface_2d.MODERN,
        }  # fmt: skip
        for opt, m in entry["optimizers"].items():
            assert m["finite"], opt
            assert np.isfinite(m["final_f"]), opt
    for opt in surface_2d.MODERN:
        # Every variant of the modern family descends on both functions. Measured after 500
        # steps: on the sphere below 1e-7 for most, 2e-5 to 2e-2 for ADOPT, Adan, AdEMAMix and
        # schedule-free, 0.34 for simplified AdEMAMix (b1 = 0.99: its summed momentum keeps
        # overshooting); on Rosenbrock 6e-3 to 2.6, and 4.5-5.3 for AdamaxW, ADOPT and
        # simplified AdEMAMix.
        assert sphere["optimizers"][opt]["final_f"] < 0.1 * sphere["start_f"], opt
        assert rosen["optimizers"][opt]["final_f"] < rosen["start_f"] / 2, opt


def test_trajectory_starts_at_start_and_is_finite(surface_2d: ModuleType) -> None:
    import common

    problem = surface_2d.PROBLEMS["rosenbrock"]
    start = jnp.asarray(problem.start, jnp.float32)
    for opt in ADAMJAX:
        tx = common.make_optimizer(opt, problem.learning_rates[opt])
        path = np.asarray(surface_2d.trajectory(start, f=problem.f, tx=tx, steps=50))
        assert path.shape == (51, 2)
        np.testing.assert_array_equal(path[0], np.asarray(start))
        assert np.all(np.isfinite(path)), opt
        # Adam-type first steps move each coordinate by about lr, against the gradient's sign
        # (the gradient at (-1.5, 2) is (-155, -50)).
        assert np.all(path[1] > path[0]), opt


def test_start_flag_overrides_both_starts(surface_2d: ModuleType, tmp_path: Path) -> None:
    argv = [
        "--steps",
        "5",
        "--start",
        "0.5",
        "-0.5",
        "--optimizers",
        "adam",
        "--out",
        str(tmp_path),
    ]
    metrics = surface_2d.main(argv)
    for name in ("sphere", "rosenbrock"):
        assert metrics[name]["start"] == [0.5, -0.5]
        assert list(metrics[name]["optimizers"]) == ["adam"]
        assert metrics[name]["optimizers"]["adam"]["steps"] == 5


def test_modern_family_gets_its_own_figures_and_rates(
    surface_2d: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With entries in the modern family (optax.contrib's schedule-free AdamW standing in for
    adamjax's, and a stand-in at 5 times Adam's base rate), they are drawn in figures of their
    own, at Adam's rate rescaled, and schedule-free's recorded points are its evaluation
    points."""
    from optax import contrib

    import common

    standins = {
        "sf_standin": common.OptimizerSpec(
            lambda lr: contrib.schedule_free_adamw(lr), 2e-3, "adamjax",
            eval_params=contrib.schedule_free_eval_params,
        ),
        "big_standin": common.OptimizerSpec(lambda lr: contrib.adopt(lr), 1e-2, "adamjax"),
    }  # fmt: skip
    for name, spec in standins.items():
        monkeypatch.setitem(common.OPTIMIZERS, name, spec)
    monkeypatch.setattr(surface_2d, "MODERN", tuple(standins))
    argv = ["--steps", "300", "--optimizers", "adam", "sf_standin", "big_standin",
            "--out", str(tmp_path)]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        metrics = surface_2d.main(argv)
    listed = {p.name for p in assert_lists_written_files(stdout.getvalue(), tmp_path)}
    assert listed == {"surface_sphere.png", "surface_rosenbrock.png", "surface_sphere_modern.png",
                      "surface_rosenbrock_modern.png", "loss.png", "metrics.json"}  # fmt: skip
    for name, problem in surface_2d.PROBLEMS.items():
        entry = metrics[name]["optimizers"]
        adam_lr = problem.learning_rates["adam"]
        assert entry["sf_standin"]["learning_rate"] == pytest.approx(adam_lr)
        assert entry["big_standin"]["learning_rate"] == pytest.approx(5 * adam_lr)
        for opt in standins:
            assert entry[opt]["finite"] and entry[opt]["final_f"] < metrics[name]["start_f"]

    problem = surface_2d.PROBLEMS["rosenbrock"]
    start = jnp.asarray(problem.start, jnp.float32)
    tx = contrib.schedule_free_adamw(0.03)
    at_y = surface_2d.trajectory(start, f=problem.f, tx=tx, steps=20)
    at_x = surface_2d.trajectory(
        start, f=problem.f, tx=tx, steps=20, eval_params=contrib.schedule_free_eval_params
    )
    assert not np.allclose(np.asarray(at_x[1:]), np.asarray(at_y[1:]))
    np.testing.assert_array_equal(np.asarray(at_x[0]), np.asarray(start))
