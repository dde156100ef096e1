"""Tests for the runnable examples in ``examples/``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def _load_example(name: str) -> ModuleType:
    """Imports ``examples/<name>.py`` by file path, since ``examples/`` is not a package."""
    path = EXAMPLES_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"examples_{name}", path)
    assert spec is not None and spec.loader is not None, f"cannot import {path}"
    module = importlib.util.module_from_spec(spec)
    # Registered before execution, as a regular import would be, so that anything looking
    # the module up by name while or after it runs finds it.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mlp_digits() -> ModuleType:
    return _load_example("mlp_digits")


def test_mlp_digits_trains_to_target_accuracy(mlp_digits: ModuleType) -> None:
    # An empty argv means the documented defaults, i.e. exactly what a user gets.
    metrics = mlp_digits.main([])

    assert metrics["test_accuracy"] >= 0.95, metrics
    assert metrics["final_loss"] < metrics["initial_loss"], metrics
    assert np.isfinite(metrics["final_loss"]), metrics
    assert metrics["seconds"] > 0, metrics


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


def test_diagnostics_example_writes_figures_and_metrics(tmp_path: Path) -> None:
    diagnostics = _load_example("diagnostics")
    results = diagnostics.main(["--quick", "--out", str(tmp_path)])

    assert set(results) == {"adam", "amsgrad"}
    for name, final in results.items():
        png = (tmp_path / f"diagnostics_{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert final["test_accuracy"] > 0.8, final
        assert final["steps"] == 3 * (1437 // 64)
    # AMSGrad's maximum takes over for part of the entries within three epochs.
    assert 0 < results["amsgrad"]["final_amsgrad_active_fraction"] < 1
    saved = __import__("json").loads((tmp_path / "metrics.json").read_text())
    assert saved == results
