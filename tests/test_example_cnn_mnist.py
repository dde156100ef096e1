"""Tests for ``examples/cnn_mnist.py``: the offline digits run, the MNIST loader and MNIST's path
through ``main``, the latter two on a small ``mnist.npz`` that the tests write themselves."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
import urllib.error
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from flax import nnx
from test_examples import assert_lists_written_files

from helpers import EXAMPLES_DIR, load_example, read_example_outputs

N_TRAIN, N_TEST = 128, 32


@pytest.fixture(scope="module")
def cnn_mnist() -> ModuleType:
    return load_example("cnn_mnist")


@pytest.fixture
def fake_mnist(tmp_path: Path) -> tuple[Path, str, dict[str, np.ndarray]]:
    """A small file laid out like Keras's mnist.npz: its path, SHA-256 and arrays."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }
    # Pin both ends of the pixel range so the scaling to [0, 1] is checked exactly.
    arrays["x_train"][0, 0, :2] = (0, 255)
    path = tmp_path / "source" / "mnist.npz"
    path.parent.mkdir()
    np.savez(path, **arrays)
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), arrays


def test_load_mnist_downloads_once_then_reads_the_cache(
    cnn_mnist: ModuleType, fake_mnist: tuple[Path, str, dict], tmp_path: Path
) -> None:
    source, sha256, raw = fake_mnist
    cache = tmp_path / "cache"

    data = cnn_mnist.load_mnist(cache, source.as_uri(), sha256)

    # Only the finished file is left: the temporary download was renamed into place.
    assert [p.name for p in cache.iterdir()] == ["mnist.npz"]
    assert data.x_train.shape == (N_TRAIN, 28, 28, 1) and data.x_test.shape == (N_TEST, 28, 28, 1)
    assert data.x_train.dtype == data.x_test.dtype == np.float32
    assert data.y_train.dtype == data.y_test.dtype == np.int32
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    np.testing.assert_allclose(data.x_test[..., 0] * 255.0, raw["x_test"], atol=1e-4)
    np.testing.assert_array_equal(data.y_train, raw["y_train"])

    # With the source gone, a second call can only succeed by reading the cached copy.
    source.rename(source.with_suffix(".moved"))
    again = cnn_mnist.load_mnist(cache, source.as_uri(), sha256)
    for a, b in zip(data, again, strict=True):
        np.testing.assert_array_equal(a, b)

    # A plain local path works as the source too.
    by_path = cnn_mnist.load_mnist(tmp_path / "cache2", str(source.with_suffix(".moved")), sha256)
    np.testing.assert_array_equal(by_path.y_test, data.y_test)


def test_load_mnist_rejects_a_wrong_checksum_and_keeps_nothing(
    cnn_mnist: ModuleType, fake_mnist: tuple[Path, str, dict], tmp_path: Path
) -> None:
    source, sha256, _ = fake_mnist
    cache = tmp_path / "cache"
    wrong = "0" * 64

    with pytest.raises(cnn_mnist.ChecksumError, match=f"SHA-256 {sha256}, expected {wrong}"):
        cnn_mnist.load_mnist(cache, source.as_uri(), wrong)
    # The directory made for the download went with it.
    assert not cache.exists()

    # A bad file already in the cache is reported, not silently used or deleted.
    cache.mkdir()
    (cache / "mnist.npz").write_bytes(b"not an npz")
    with pytest.raises(cnn_mnist.ChecksumError, match="delete it to download it again"):
        cnn_mnist.load_mnist(cache, source.as_uri(), sha256)
    assert (cache / "mnist.npz").exists()


@pytest.mark.parametrize("where", ["missing file", "closed port"])
def test_load_mnist_explains_what_to_do_offline(
    cnn_mnist: ModuleType, tmp_path: Path, where: str
) -> None:
    url = {
        "missing file": (tmp_path / "nowhere" / "mnist.npz").as_uri(),
        # Port 9 (discard) is closed on any ordinary machine, so this fails like no network.
        "closed port": "http://127.0.0.1:9/mnist.npz",
    }[where]
    cache = tmp_path / "cache" / "mnist"

    with pytest.raises(cnn_mnist.DownloadError) as info:
        cnn_mnist.load_mnist(cache, url, "0" * 64)
    message = str(info.value)
    assert "--dataset digits" in message
    assert url in message and str(cache / "mnist.npz") in message
    # Both directories made for the download went with it.
    assert not (tmp_path / "cache").exists()

    # A cache directory that was there before stays, as empty as it was.
    cache.mkdir(parents=True)
    with pytest.raises(cnn_mnist.DownloadError):
        cnn_mnist.load_mnist(cache, url, "0" * 64)
    assert list(cache.iterdir()) == []


def test_failed_download_in_main_leaves_no_directories(
    cnn_mnist: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``main`` with the default URL on a machine without network (``urlopen`` fails as it
    does offline): the error explains what to do, and neither the output directory nor the
    cache directory exists afterwards."""

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cnn_mnist.urllib.request, "urlopen", offline)
    out, cache = tmp_path / "out" / "cnn", tmp_path / "cache" / "mnist"

    with pytest.raises(cnn_mnist.DownloadError, match="--dataset digits"):
        cnn_mnist.main(["--dataset", "mnist", "--out", str(out), "--cache-dir", str(cache)])
    assert list(tmp_path.iterdir()) == []


def test_failed_download_as_a_script_prints_the_error_and_writes_nothing(tmp_path: Path) -> None:
    """Run as a user would, from a fake (missing) ``file://`` URL: exit status 1, one ``error:``
    line on stderr that names the URL and the way out (no traceback), and no directories."""
    url = (tmp_path / "nowhere" / "mnist.npz").as_uri()
    done = subprocess.run(
        [sys.executable, str(EXAMPLES_DIR / "cnn_mnist.py"), "--dataset", "mnist", "--quick",
         "--out", "out/cnn", "--cache-dir", "cache", "--mnist-url", url],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip

    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: could not download MNIST from {url}"), error
    assert "--dataset digits" in error
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_evaluate_masks_the_padded_last_batch(cnn_mnist: ModuleType) -> None:
    data = cnn_mnist.load_dataset("digits")
    model = cnn_mnist.CNN(data.x_test.shape[1:], rngs=nnx.Rngs(0))
    logits = np.asarray(model(data.x_test), np.float64)
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    expected_loss = -log_probs[np.arange(len(logits)), data.y_test].mean()
    expected_accuracy = np.mean(logits.argmax(-1) == data.y_test)

    # 360 test images in batches of 7 leave a last batch of 3 real and 4 padded rows.
    loss, accuracy = cnn_mnist.evaluate(model, data.x_test, data.y_test, batch_size=7)

    assert accuracy == pytest.approx(expected_accuracy, abs=1e-12)
    assert loss == pytest.approx(expected_loss, rel=1e-5)


def _check_outputs(out: Path, dataset: str, metrics: dict, stdout: str, *elsewhere: Path) -> None:
    written = read_example_outputs(out, f"cnn_{dataset}.png")
    assert written["metrics"] == metrics
    assert written["args"]["dataset"] == dataset
    assert_lists_written_files(stdout, out, *elsewhere)


def test_digits_quick_trains_and_writes_outputs(
    cnn_mnist: ModuleType, tmp_path: Path, capsys
) -> None:
    metrics = cnn_mnist.main(["--dataset", "digits", "--quick", "--out", str(tmp_path)])

    # Seed 0 gives 0.944 after the 3 quick epochs (0.939-0.967 over seeds 0-4); chance is 0.1.
    assert metrics["test_accuracy"] >= 0.9, metrics
    assert metrics["final_loss"] < 0.5 * metrics["initial_loss"], metrics
    for curve in ("train_loss", "test_loss_curve", "test_accuracy_curve", "epoch_seconds"):
        assert len(metrics[curve]) == cnn_mnist.QUICK_EPOCHS, curve
    assert all(isinstance(v, float) for v in metrics["train_loss"])
    assert metrics["test_accuracy"] == metrics["test_accuracy_curve"][-1]
    _check_outputs(tmp_path, "digits", metrics, capsys.readouterr().out)


def test_mnist_quick_runs_end_to_end_on_a_local_file(
    cnn_mnist: ModuleType, fake_mnist: tuple[Path, str, dict], tmp_path: Path, capsys
) -> None:
    source, sha256, _ = fake_mnist
    out, cache = tmp_path / "out", tmp_path / "cache"

    metrics = cnn_mnist.main(
        ["--dataset", "mnist", "--quick", "--out", str(out), "--batch-size", "32",
         "--cache-dir", str(cache), "--mnist-url", source.as_uri(), "--mnist-sha256", sha256]
    )  # fmt: skip

    assert (cache / "mnist.npz").exists()
    assert metrics["train_examples"] == N_TRAIN and metrics["test_examples"] == N_TEST
    assert metrics["steps"] == cnn_mnist.QUICK_EPOCHS * (N_TRAIN // 32)
    for key in ("test_accuracy", "test_loss", "initial_loss", "final_loss", "seconds"):
        assert math.isfinite(metrics[key]), (key, metrics)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    # The download is listed with the run's own files.
    _check_outputs(out, "mnist", metrics, capsys.readouterr().out, cache / "mnist.npz")
