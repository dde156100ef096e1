"""Tests for ``examples/choose_variant.py`` (the table of docs/choosing_a_variant.md) and for
the examples' table of the modern Adam family, ``common.NEW_FAMILY``."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_examples import assert_lists_written_files

import adamjax

from helpers import load_example


@pytest.fixture(scope="module")
def choose() -> ModuleType:
    return load_example("choose_variant")


def test_every_name_of_the_new_family_table_exists_in_adamjax(choose: ModuleType) -> None:
    """Nothing is skipped: every constructor of ``common.NEW_FAMILY`` builds, and the
    evaluation point of schedule-free exists."""
    common = choose.common
    assert common.MISSING == {}
    assert set(common.NEW_FAMILY) <= set(common.OPTIMIZERS)
    assert callable(getattr(adamjax, "schedule_free_eval_params", None))


def test_missing_names_are_reported_and_other_errors_propagate(choose: ModuleType) -> None:
    common = choose.common
    specs = {
        "present": common.OptimizerSpec(lambda lr: adamjax.adam(lr), 1e-3, "adamjax"),
        "absent": common.OptimizerSpec(lambda lr: adamjax.no_such_variant(lr), 1e-3, "adamjax"),
    }
    assert common.missing_from_adamjax(specs) == {"absent": "adamjax.no_such_variant"}
    # An AttributeError from anything but the adamjax module is a bug, not a missing name.
    broken = common.OptimizerSpec(lambda lr: optax.no_such_optimizer(lr), 1e-3, "adamjax")
    with pytest.raises(AttributeError, match="no_such_optimizer"):
        common.missing_from_adamjax({"broken": broken})
    # The table's entries are either built into OPTIMIZERS or listed as missing, never both.
    assert set(common.MISSING).isdisjoint(common.OPTIMIZERS)
    assert set(common.MISSING) | (set(common.NEW_FAMILY) & set(common.OPTIMIZERS)) == set(
        common.NEW_FAMILY
    )


def test_report_missing_names_each_missing_function(
    choose: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    common = choose.common
    monkeypatch.setattr(common, "MISSING", {"lamb": "adamjax.lamb", "came": "adamjax.came"})
    common.report_missing()
    assert capsys.readouterr().err == (
        "skipped, not in this adamjax: lamb (adamjax.lamb), came (adamjax.came)\n"
    )
    monkeypatch.setattr(common, "MISSING", {})
    common.report_missing()
    assert capsys.readouterr().err == ""


def test_steps_to_target(choose: ModuleType) -> None:
    losses = np.r_[np.full(30, 1.0), np.full(40, 0.01)]
    # The mean of the last 20 steps first reaches 0.5 when 11 of them are 0.01: step 41.
    assert choose.steps_to_target(losses, 0.5) == 41
    assert choose.steps_to_target(losses, 0.011) == 50  # the first window of 0.01 only
    assert choose.steps_to_target(losses, 0.001) is None
    assert choose.steps_to_target(np.r_[losses[:40], np.nan, losses[41:]], 0.5) == 61
    assert choose.steps_to_target(np.full(5, 0.0), 1.0) is None  # shorter than the window


def test_state_bytes_per_param_counts_every_leaf(choose: ModuleType) -> None:
    params = {"w": jnp.zeros((3, 5)), "b": jnp.zeros(5, jnp.bfloat16)}
    for tx in (adamjax.adam(1e-3), adamjax.adafactor(1e-2), optax.sgd(0.1)):
        real = sum(np.asarray(x).nbytes for x in jax.tree.leaves(tx.init(params)))
        assert choose.state_bytes_per_param(tx, params) == pytest.approx(real / 20)
    # Adam: two float32 moments per entry (8 bytes) plus a few scalars shared by all.
    assert 8 < choose.state_bytes_per_param(adamjax.adam(1e-3), params) < 8 + 40 / 20
    assert choose.state_bytes_per_param(optax.sgd(0.1), params) == 0


def test_markdown_table_formats_spread_steps_and_divergence(choose: ModuleType) -> None:
    tasks = {
        "MLP": choose.Task("MLP", None, None, None, "test accuracy", None, None, 660, 0.05),
        "LSTM": choose.Task("LSTM", None, None, None, "test MSE", None, None, 1500, 0.02),
    }
    results = {
        "adam": {
            "learning_rate": 0.004,
            "MLP": {"score": [0.97, 0.98, 0.99], "steps_to_target": [200, 220, 240],
                    "state_bytes_per_param": 8.0001},
            "LSTM": {"score": [0.02, float("nan"), 0.02], "steps_to_target": [900, None, None],
                     "state_bytes_per_param": 8.014},
        },
    }  # fmt: skip
    table = choose.markdown_table(results, tasks).splitlines()
    assert table[0].startswith("| optimizer | lr | MLP test accuracy | MLP steps to 0.05 |")
    assert table[2] == (
        "| adam | 0.004 | 0.9800 ± 0.0100 | 220 | diverged | 900 (1 of 3) | 8.00, 8.01 |"
    )
    results["adam"]["LSTM"]["steps_to_target"] = [None, None, None]
    assert "| > 1500 |" in choose.markdown_table(results, tasks)


@pytest.mark.slow
def test_concrete_rate_fallback_matches_the_traced_rate(choose: ModuleType) -> None:
    """An optimizer that needs a Python float rate runs one program per rate, with the same
    results as the rates traced together."""
    task = choose.mlp_task(epochs=1)
    task = choose.Task(**{**task.__dict__, "steps": 15})
    rates = [1e-3, 4e-3]
    traced = choose.train(lambda lr: optax.adam(lr), rates, task, [0, 1])
    concrete = choose.train(lambda lr: optax.adam(float(lr)), rates, task, [0, 1])
    assert traced[0].shape == (2, 2, 15) and traced[1].shape == (2, 2)
    np.testing.assert_allclose(concrete[0], traced[0], rtol=1e-5)
    np.testing.assert_allclose(concrete[1], traced[1], rtol=1e-5)
    # Different rates and seeds give different runs.
    assert not np.allclose(traced[0][0], traced[0][1])
    assert not np.allclose(traced[0][:, 0], traced[0][:, 1])


@pytest.mark.slow
def test_eval_params_are_where_the_score_is_taken(choose: ModuleType) -> None:
    """Schedule-free (optax.contrib's, a stand-in) scored at its evaluation point differs from
    the score at the point its gradients were taken at."""
    from optax import contrib

    task = choose.mlp_task(epochs=1)
    make = lambda lr: contrib.schedule_free_adamw(lr)  # noqa: E731
    at_y = choose.train(make, [2e-3], task, [0])[1]
    at_x = choose.train(make, [2e-3], task, [0], contrib.schedule_free_eval_params)[1]
    assert 0.5 < at_x[0, 0] <= 1 and 0.5 < at_y[0, 0] <= 1
    assert at_x[0, 0] != at_y[0, 0]


@pytest.mark.slow
def test_quick_run_writes_the_table_and_json(choose: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "generated"
    argv = ["--quick", "--optimizers", "adam", "adamw", "--factors", "0.5", "1", "--out", str(out)]
    with contextlib.redirect_stdout(io.StringIO()) as stdout:
        payload = choose.main(argv)
    listed = assert_lists_written_files(stdout.getvalue(), out)
    assert [p.name for p in listed] == ["choose_variant_table.md", "choose_variant.json"]
    assert json.loads((out / "choose_variant.json").read_text()) == payload

    results = payload["results"]
    assert list(results) == ["adam", "adamw"]
    for name, r in results.items():
        # The kept rate is the one whose MLP training loss was lowest.
        search = {float(k): v for k, v in r["search"].items()}
        assert set(search) == {1e-3, 2e-3}
        assert r["learning_rate"] == min(search, key=search.get)
        for task in ("MLP", "LSTM"):
            assert len(r[task]["score"]) == 1 and r[task]["finite"], (name, task)
            assert 8 < r[task]["state_bytes_per_param"] < 8.1
        # 44 steps: far from trained, but above chance (0.1) and below the naive MSE (~0.09
        # on this series, a constant forecast ~0.9).
        assert 0.3 < r["MLP"]["score"][0] <= 1
        assert r["LSTM"]["score"][0] < 1.0
    table = (out / "choose_variant_table.md").read_text()
    assert "| adam | " in table and "| adamw | " in table
    assert "**Not a measurement**" in table
    assert f"`python examples/choose_variant.py {' '.join(argv)}`" in table
    assert ("Not measured, not in this adamjax" in table) == bool(payload["missing"])
