"""Tests for the digits examples: ``mlp_digits``, ``mlp_digits_linen``, ``diagnostics`` and
``compare_optimizers``, and for ``notebooks/build_notebooks.py``. Each runs the script's ``main``
as a user would and checks the outcome, the files it writes and the list of them it prints.

``assert_lists_written_files`` is shared with the other ``test_example_*.py`` files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from helpers import EXAMPLES_DIR, load_example, read_example_outputs


def assert_lists_written_files(stdout: str, out: Path, *elsewhere: Path) -> list[Path]:
    """Checks that an example's printed output ends with one ``wrote <path>`` line per file it
    wrote: the paths include ``out`` (the ``--out`` it was given, relative or absolute), each
    names an existing file, and together they are exactly the files under ``out`` plus
    ``elsewhere`` (files written outside it, such as a download). Returns the paths."""
    lines = stdout.rstrip("\n").splitlines()
    listed = [Path(line.removeprefix("wrote ")) for line in lines if line.startswith("wrote ")]
    assert listed, f"no 'wrote <path>' line in:\n{stdout[-2000:]}"
    assert lines[-len(listed) :] == [f"wrote {path}" for path in listed], lines[-10:]
    assert len(set(listed)) == len(listed), listed
    for path in listed:
        assert path.is_file(), path
    for path in set(listed) - set(elsewhere):
        assert path.parent == out, (path, out)
    files = {path for path in out.rglob("*") if path.is_file()}
    assert {p.resolve() for p in listed} == {p.resolve() for p in (*files, *elsewhere)}
    return listed


@pytest.fixture(scope="module")
def mlp_digits() -> ModuleType:
    return load_example("mlp_digits")


def _check_outputs(out: Path, png: str, metrics: dict) -> dict:
    """The PNG is a real PNG and ``metrics.json`` holds ``metrics``; returns the whole file."""
    saved = read_example_outputs(out, png)
    assert saved["metrics"] == json.loads(json.dumps(metrics))
    return saved


def test_mlp_digits_defaults_reach_the_target_accuracy(
    mlp_digits: ModuleType, tmp_path: Path
) -> None:
    # The documented defaults (30 epochs, AdamW), i.e. exactly what the README's command runs.
    metrics = mlp_digits.main(["--out", str(tmp_path)])

    assert metrics["test_accuracy"] >= 0.97, metrics
    assert metrics["final_loss"] < 0.1 * metrics["initial_loss"], metrics
    assert metrics["steps"] == 30 * (1437 // 64)
    assert len(metrics["train_loss"]) == len(metrics["test_accuracy_curve"]) == 30
    saved = _check_outputs(tmp_path, "mlp_digits.png", metrics)
    assert saved["args"]["optimizer"] == "adamw" and saved["args"]["epochs"] == 30


def test_mlp_digits_binary_task(
    mlp_digits: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # A relative --out, as the default out/mlp_digits is: the printed paths are relative too.
    monkeypatch.chdir(tmp_path)
    out = Path("runs/binary")
    metrics = mlp_digits.main(["--task", "binary", "--quick", "--out", str(out)])

    # Odd vs even: a constant guess scores about 0.5.
    assert metrics["test_accuracy"] >= 0.85, metrics
    assert metrics["final_loss"] < metrics["initial_loss"]
    _check_outputs(out, "mlp_digits.png", metrics)
    listed = assert_lists_written_files(capsys.readouterr().out, out)
    assert listed == [out / "mlp_digits.png", out / "metrics.json"]


def test_mlp_digits_binary_model_is_tanh_then_sigmoid(mlp_digits: ModuleType) -> None:
    model = mlp_digits.make_model("binary", 64, 8, seed=0)
    x = np.random.default_rng(0).uniform(size=(5, 64)).astype(np.float32)
    hidden = np.tanh(x @ np.asarray(model.hidden.kernel[...]) + np.asarray(model.hidden.bias[...]))
    logit = hidden @ np.asarray(model.out.kernel[...])[:, 0] + np.asarray(model.out.bias[...])[0]

    np.testing.assert_allclose(np.asarray(model(x)), logit, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(model.predict_proba(x)), 1 / (1 + np.exp(-logit)), rtol=1e-5
    )


def test_mlp_digits_load_data(mlp_digits: ModuleType) -> None:
    x_train, x_test, y_train, y_test = mlp_digits.load_data(test_size=0.2, seed=0)

    assert x_train.shape[1] == x_test.shape[1] == 64
    assert len(x_train) == len(y_train) and len(x_test) == len(y_test)
    assert len(x_train) + len(x_test) == 1797
    for x in (x_train, x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0
    # The brightest pixel must map to exactly 1, which fails for a wrong divisor.
    assert max(x_train.max(), x_test.max()) == 1.0
    for y in (y_train, y_test):
        assert np.issubdtype(y.dtype, np.integer)
    assert set(np.unique(y_train)) == set(range(10))
    assert set(np.unique(y_test)) == set(range(10))

    # Stratified: each class's test count is within one of its exact 20% share.
    # A plain random split misses this by several images for some class.
    totals = np.bincount(np.concatenate([y_train, y_test]), minlength=10)
    test_counts = np.bincount(y_test, minlength=10)
    np.testing.assert_array_less(np.abs(test_counts - 0.2 * totals), 1.0 + 1e-9)

    # Deterministic for a fixed seed, and the seed actually matters.
    again = mlp_digits.load_data(test_size=0.2, seed=0)
    for a, b in zip((x_train, x_test, y_train, y_test), again, strict=True):
        np.testing.assert_array_equal(a, b)
    other_x_test = mlp_digits.load_data(test_size=0.2, seed=1)[1]
    assert not np.array_equal(x_test, other_x_test)

    # The binary task relabels the same split: 1 for an odd digit.
    binary = mlp_digits.load_data(test_size=0.2, seed=0, task="binary")
    np.testing.assert_array_equal(binary[0], x_train)
    np.testing.assert_array_equal(binary[3], y_test % 2)
    with pytest.raises(ValueError, match="task must be one of"):
        mlp_digits.load_data(task="ternary")


@pytest.mark.parametrize("moments", ["bfloat16", "bfloat16-stored", "q8", "q8-linear"])
def test_mlp_digits_low_precision_moments_match_float32(
    mlp_digits: ModuleType, tmp_path: Path, moments: str
) -> None:
    """The issue's accuracy target: within 0.5 points of float32 moments (quick run, through
    flax.nnx's Optimizer and nnx.jit)."""
    runs = {
        m: mlp_digits.main(["--quick", "--moments", m, "--out", str(tmp_path / m)])
        for m in ("float32", moments)
    }
    assert runs["float32"]["test_accuracy"] >= 0.95
    assert abs(runs[moments]["test_accuracy"] - runs["float32"]["test_accuracy"]) <= 0.005
    assert json.loads((tmp_path / moments / "metrics.json").read_text())["args"]["moments"] == (
        moments
    )


def test_mlp_digits_moments_flag_needs_a_format_capable_optimizer(
    mlp_digits: ModuleType, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="--moments q8 needs an optimizer"):
        mlp_digits.main(["--optimizer", "adafactor", "--moments", "q8", "--out", str(tmp_path)])


def test_mlp_digits_flags(mlp_digits: ModuleType, tmp_path: Path) -> None:
    args = mlp_digits.parse_args(["--quick", "--out", str(tmp_path / "new")])
    # The first file written creates the directory: a run that fails before leaves none.
    assert args.epochs == 8 and args.hidden == 128 and not (tmp_path / "new").exists()
    # An explicit length wins over --quick.
    assert mlp_digits.parse_args(["--quick", "--epochs", "2", "--out", str(tmp_path)]).epochs == 2
    with pytest.raises(SystemExit):
        mlp_digits.parse_args(["--epochs", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        mlp_digits.parse_args(["--optimizer", "adamm", "--out", str(tmp_path)])


def test_mlp_digits_linen_trains(tmp_path: Path, capsys) -> None:
    linen = load_example("mlp_digits_linen")
    out = tmp_path / "linen"
    metrics = linen.main(["--quick", "--out", str(out)])

    assert metrics["test_accuracy"] >= 0.93, metrics
    assert metrics["steps"] == 8 * (1437 // 64)
    _check_outputs(out, "mlp_digits_linen.png", metrics)
    assert_lists_written_files(capsys.readouterr().out, out)


def test_linen_and_nnx_models_have_the_same_parameter_count() -> None:
    linen = load_example("mlp_digits_linen")
    nnx_model = linen.mlp_digits.make_model("multiclass", 64, 128, seed=0)
    state = linen.create_state("multiclass", linen.optax.sgd(0.1), 64, 128, seed=0)

    count = lambda tree: sum(np.size(x) for x in linen.jax.tree.leaves(tree))  # noqa: E731
    from flax import nnx

    assert (
        count(state.params)
        == count(nnx.state(nnx_model, nnx.Param))
        == 64 * 128 + 128 * 128 + 128 * 10 + 2 * 128 + 10
    )


def test_diagnostics_example_writes_figures_and_metrics(tmp_path: Path, capsys) -> None:
    diagnostics = load_example("diagnostics")
    out = tmp_path / "diagnostics"
    results = diagnostics.main(["--quick", "--out", str(out)])
    stdout = capsys.readouterr().out

    assert set(results) == {"adam", "amsgrad"}
    # Pixels 0, 24, 32 and 39 are 0 in every training image (seed-0 split): the 4 x 128 weights
    # of fc1 that read them never get a gradient, out of the MLP's 26,122 parameters.
    never = 4 * 128 / (64 * 128 + 128 * 128 + 128 * 10 + 128 + 128 + 10)
    for final in results.values():
        assert final["test_accuracy"] > 0.8, final
        assert final["steps"] == 3 * (1437 // 64)
        # Those entries have v_hat = 0 and the effective rate lr / eps.
        assert final["final_effective_lr_max"] == pytest.approx(2e-3 / 1e-8, rel=1e-6)
        assert never <= final["final_v_hat_zero_fraction"] < 0.5, final
        # Without them the mean is orders of magnitude below the mean over all entries.
        assert (
            final["final_effective_lr_mean_v_hat_positive"]
            < 1e-2 * (final["final_effective_lr_mean"])
        )
    # AMSGrad's maximum takes over for part of the entries within three epochs.
    assert 0 < results["amsgrad"]["final_amsgrad_active_fraction"] < 1
    saved = read_example_outputs(out, *(f"diagnostics_{name}.png" for name in results))
    assert saved["metrics"] == results

    # Each summary is followed by the one line that says why the maximum is lr/eps.
    explanations = [line for line in stdout.splitlines() if line.startswith("effective_lr/max")]
    assert len(explanations) == 2, stdout
    for line in explanations:
        assert "lr/eps = 2e+05" in line and "gradient has always been 0 (v_hat = 0" in line
    assert stdout.count("| effective_lr/mean_v_hat_positive |") == 2
    assert_lists_written_files(stdout, out)


def test_diagnostics_mean_without_zero_v_hat_matches_the_state(tmp_path: Path) -> None:
    """``effective_lr/mean_v_hat_positive`` against the mean of lr / (sqrt(v_hat) + eps) over
    the entries with v_hat > 0, computed in float64 from Adam's state after a few steps."""
    import optax
    from flax import nnx

    diagnostics = load_example("diagnostics")
    digits = diagnostics.digits
    x, _, y, _ = digits.load_data()
    lr = 2e-3
    model = digits.MLP(64, 128, digits.NUM_CLASSES, rngs=nnx.Rngs(0))
    tx = diagnostics.adamjax.with_diagnostics(diagnostics.OPTIMIZERS["adam"](lr))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    for step in range(5):
        _, metrics = diagnostics.train_step(
            model, optimizer, x[64 * step : 64 * (step + 1)], y[64 * step : 64 * (step + 1)]
        )
    nu = optax.tree_utils.tree_get(optimizer.opt_state, "nu")
    v = np.concatenate(
        [np.asarray(leaf, np.float64).ravel() for leaf in diagnostics.jax.tree.leaves(nu)]
    )
    v_hat = v / (1 - 0.999**5)
    eta = lr / (np.sqrt(v_hat[v > 0]) + diagnostics.EPS)

    assert float(metrics["v_hat/zero_fraction"]) == pytest.approx(np.mean(v == 0), abs=1e-7)
    assert 0 < np.mean(v == 0) < 1
    assert float(metrics["effective_lr/mean_v_hat_positive"]) == pytest.approx(eta.mean(), rel=1e-3)


@pytest.mark.slow  # trains 29 optimizers: about 20 s
def test_compare_optimizers_covers_every_variant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    compare = load_example("compare_optimizers")
    import common  # the examples' module, on sys.path once an example is loaded

    figures = []
    save_figure = common.save_figure

    def keep(fig, path):
        figures.append(fig)
        return save_figure(fig, path)

    monkeypatch.setattr(common, "save_figure", keep)
    out = tmp_path / "compare"
    results = compare.main(["--quick", "--out", str(out)])

    import adamjax  # noqa: F401  (the registry must name every alias that trains a network)

    classic = {"adam", "adamw", "amsgrad", "nadam", "adamax", "radam", "adabound", "amsbound",
               "adafactor", "swats", "sgd_momentum", "rmsprop", "adagrad"}  # fmt: skip
    # The modern family: every entry of its table that this adamjax has (all of them, once
    # test_example_choose_variant.py's check of the table passes).
    modern = set(common.NEW_FAMILY) - set(common.MISSING)
    expected = classic | modern
    assert set(results) == expected
    for name, r in results.items():
        # Three epochs on digits: every method is far above chance (0.1). RAdam's rectified
        # warm-up keeps its first steps small, so after 66 steps it is behind (measured 0.75).
        # Simplified AdEMAMix's momentum is a sum that takes about 1 / (1 - b1) = 100 steps to
        # build up (optax.contrib's, a stand-in for adamjax's, measured 0.84).
        slow_start = {"radam": 0.6, "simplified_ademamix": 0.75}
        assert r["test_accuracy"] > slow_start.get(name, 0.85), (name, r)
        assert r["final_loss"] < r["initial_loss"], (name, r)
        assert len(r["train_loss"]) == 3 and r["seconds"] > 0
    table = (out / "comparison.md").read_text()
    assert all(f"| {name} |" in table for name in expected)
    assert read_example_outputs(out, "curves.png")["metrics"].keys() == expected
    listed = assert_lists_written_files(capsys.readouterr().out, out)
    assert {path.name for path in listed} == {"curves.png", "comparison.md", "metrics.json"}

    # The figure: in each panel one line per optimizer, no two of the same colour (so none
    # shares colour and line style either), legend text of 9 pt or more, saved at 220 dpi.
    (fig,) = figures
    check_curves_figure(fig, classic, modern | {"adam"} if modern else set())
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    labels = {text.get_text() for legend in legends for text in legend.get_texts()}
    assert labels >= expected
    for legend in legends:
        for text in legend.get_texts():
            assert text.get_fontsize() >= 9, (text.get_text(), text.get_fontsize())
    png = (out / "curves.png").read_bytes()
    width = int.from_bytes(png[16:20], "big")  # the IHDR chunk's width in pixels
    assert width == pytest.approx(220 * fig.get_size_inches()[0], abs=1)


def check_curves_figure(fig, first_row: set[str], second_row: set[str]) -> None:
    """compare_optimizers' figure: a row of two panels per group of optimizers (the second only
    when ``second_row`` is not empty), in each panel exactly that row's lines, no two of the
    same colour (so none shares colour and line style either)."""
    from matplotlib.colors import to_rgba

    rows = [names for names in (first_row, second_row) if names]
    assert len(fig.axes) == 2 * len(rows)
    for i, ax in enumerate(fig.axes):
        lines = ax.get_lines()
        assert sorted(line.get_label() for line in lines) == sorted(rows[i // 2])
        colours = {to_rgba(line.get_color()) for line in lines}
        assert len(colours) == len(lines), sorted(colours)


@pytest.mark.slow
def test_compare_optimizers_draws_the_modern_family_in_its_own_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With entries in the modern family's table (here optax.contrib's schedule-free AdamW and
    ADOPT, standing in for adamjax's), the figure has a second row for them with Adam in black,
    and schedule-free is scored at its evaluation point."""
    from optax import contrib

    compare = load_example("compare_optimizers")
    import common

    standins = {
        "sf_standin": common.OptimizerSpec(
            lambda lr: contrib.schedule_free_adamw(lr), 2e-3, "adamjax",
            eval_params=contrib.schedule_free_eval_params,
        ),
        "adopt_standin": common.OptimizerSpec(lambda lr: contrib.adopt(lr), 2e-3, "adamjax"),
    }  # fmt: skip
    for name, spec in standins.items():
        monkeypatch.setitem(common.NEW_FAMILY, name, spec)
        monkeypatch.setitem(common.OPTIMIZERS, name, spec)
    scored = []
    evaluation_model = common.evaluation_model
    monkeypatch.setattr(
        common,
        "evaluation_model",
        lambda model, opt, ev: scored.append(ev) or evaluation_model(model, opt, ev),
    )
    figures = []
    monkeypatch.setattr(common, "save_figure", lambda fig, path: figures.append(fig) or path)
    argv = ["--quick", "--epochs", "2", "--out", str(tmp_path), "--optimizers", "adam",
            "sgd_momentum", "sf_standin", "adopt_standin"]  # fmt: skip
    results = compare.main(argv)

    assert set(results) == {"adam", "sgd_momentum", "sf_standin", "adopt_standin"}
    for r in results.values():
        assert r["test_accuracy"] > 0.8, r
    (fig,) = figures
    check_curves_figure(fig, {"adam", "sgd_momentum"}, {"sf_standin", "adopt_standin", "adam"})
    reference = [line for line in fig.axes[2].get_lines() if line.get_label() == "adam"]
    assert [line.get_color() for line in reference] == ["black"]
    # Scored at the evaluation point after each of the 2 epochs and at the end.
    assert scored.count(contrib.schedule_free_eval_params) == 3


def test_build_notebooks_prints_the_path_of_each_notebook_it_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    path = EXAMPLES_DIR / "notebooks" / "build_notebooks.py"
    spec = importlib.util.spec_from_file_location("examples_build_notebooks", path)
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    out = tmp_path / "examples" / "notebooks"
    out.mkdir(parents=True)
    monkeypatch.setattr(build, "HERE", out)
    monkeypatch.chdir(tmp_path)

    assert build.main([]) == 0
    listed = assert_lists_written_files(capsys.readouterr().out, out.relative_to(tmp_path))
    assert [p.name for p in listed] == [f"{name}.ipynb" for name in build.NOTEBOOKS]
    # Nothing to write the second time, and no "wrote" line claims otherwise.
    assert build.main([]) == 0
    assert "wrote " not in capsys.readouterr().out
