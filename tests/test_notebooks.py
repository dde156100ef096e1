"""Tests for the notebooks in ``examples/notebooks/``.

Each notebook is executed with nbclient on CPU, with quick sizes in a cell inserted right after
its cell tagged ``parameters`` (as papermill does), and its outcomes are read back from the line
``RESULT {...}`` (JSON) that its last cell prints. The kernel is this interpreter, started from a
kernelspec written to a temporary directory, so no ``jupyter kernelspec install`` is needed and a
kernel registered elsewhere is never used. The notebooks run concurrently, one kernel each.

The structure tests check what a Colab user relies on (badge, guarded install, one parameter
cell, no stored outputs), and that the committed files equal ``build_notebooks.py``'s output.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# An exhaustive layer: run with `pytest -m slow` (.ci/run does).
pytestmark = pytest.mark.slow

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("jupyter_client")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "examples" / "notebooks"
REPOSITORY_URL = "https://github.com/adamjax/adamjax"
NAMES = ("quickstart", "flax_mlp_rnn", "colab_gpu_tpu")

# Small sizes that still show each notebook's point on CPU in seconds. Every key must be
# assigned in the notebook's parameter cell (checked below), so a renamed parameter cannot
# silently fall back to its full-size value.
QUICK: dict[str, dict[str, Any]] = {
    "quickstart": {
        "lsq_steps": 150,
        "compare_steps": 100,
        "epochs": 6,
        "batch_size": 64,
        "hidden": 64,
        "diag_epochs": 2,
    },
    "flax_mlp_rnn": {
        "optimizer_name": "adamw",
        "epochs": 6,
        "batch_size": 64,
        "hidden": 64,
        "compare_epochs": 3,
        "series_length": 1000,
        "window": 16,
        "lstm_hidden": 32,
        "lstm_steps": 200,
        "lstm_batch_size": 32,
    },
    "colab_gpu_tpu": {
        "epochs": 6,
        "batch_size": 64,
        "channels": 8,
        "hidden": 64,
        "timing_size": 65_536,
        "timing_reps": 10,
    },
}
# What a notebook may import: the standard library's few, and what `adamjax[examples]` brings.
ALLOWED_IMPORTS = {
    "json", "subprocess", "sys", "time",
    "IPython", "adamjax", "flax", "jax", "matplotlib", "numpy", "optax", "sklearn",
}  # fmt: skip
# The GPU/TPU notebook runs on two virtual CPU devices, so its data-parallel branch (a batch
# sharded over a mesh) is what gets tested; its one-device fallback is the same code.
QUICK_ENV: dict[str, dict[str, str]] = {
    "colab_gpu_tpu": {
        "XLA_FLAGS": (
            os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
        ).strip()
    },
}
CELL_TIMEOUT = 120  # seconds per cell
KERNEL_NAME = "python3"  # what the notebooks ask for; resolved to this interpreter below


# -- helpers ------------------------------------------------------------------------------------


def read_notebook(name: str) -> Any:
    return nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)


def parameters_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def inject_parameters(nb: Any, values: dict[str, Any]) -> Any:
    """Returns a copy of ``nb`` with ``values`` assigned in a cell right after the cell tagged
    ``parameters``, tagged ``injected-parameters`` as papermill does."""
    nb = copy.deepcopy(nb)
    (cell,) = parameters_cells(nb)
    source = "# Parameters (quick run, injected by tests/test_notebooks.py)\n" + "\n".join(
        f"{key} = {value!r}" for key, value in values.items()
    )
    injected = nbformat.v4.new_code_cell(source, id="injected-parameters")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(nb.cells.index(cell) + 1, injected)
    return nb


def kernel_manager(spec_root: Path, env: dict[str, str] | None = None) -> AsyncKernelManager:
    """A kernel manager that starts ``python3`` as this interpreter, on CPU.

    The kernelspec is written to ``spec_root`` and only that directory is searched, so this
    works in a fresh virtual environment (no registered kernel needed) and never picks up a
    ``python3`` kernel of another environment. ``env`` adds environment variables.
    """
    spec_dir = spec_root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (adamjax tests)",
        "language": "python",
        # JAX_PLATFORMS: the quick sizes and thresholds are for CPU, whatever is installed.
        "env": {"JAX_PLATFORMS": "cpu", "PYDEVD_DISABLE_FILE_VALIDATION": "1", **(env or {})},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(spec_root / "kernels")], ensure_native_kernel=False)
    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


async def execute(nb: Any, workdir: Path, env: dict[str, str] | None = None) -> Any:
    """Executes ``nb`` in place in ``workdir`` (which also holds its kernelspec); raises
    ``CellExecutionError`` on the first failing cell."""
    workdir.mkdir(parents=True, exist_ok=True)
    client = nbclient.NotebookClient(
        nb,
        km=kernel_manager(workdir, env),
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(workdir)}},
    )
    await client.async_execute()
    return nb


def stream_text(nb: Any) -> str:
    return "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.output_type == "stream"
    )


def parse_result(nb: Any) -> dict[str, Any]:
    lines = [line for line in stream_text(nb).splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, f"expected one RESULT line, got {len(lines)}"
    return json.loads(lines[0][len("RESULT ") :])


def count_images(nb: Any) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


def load_builder() -> ModuleType:
    path = NOTEBOOKS_DIR / "build_notebooks.py"
    spec = importlib.util.spec_from_file_location("adamjax_build_notebooks", path)
    assert spec is not None and spec.loader is not None, f"cannot import {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def finite_positive(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


# -- structure ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_notebook_matches_generator(name: str) -> None:
    builder = load_builder()
    committed = (NOTEBOOKS_DIR / f"{name}.ipynb").read_text(encoding="utf-8")
    assert committed == builder.render(name), (
        f"{name}.ipynb differs from build_notebooks.py's output; "
        "run python examples/notebooks/build_notebooks.py"
    )


def test_generator_covers_every_notebook() -> None:
    assert set(load_builder().NOTEBOOKS) == set(NAMES)
    assert {p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb")} == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_structure(name: str) -> None:
    nb = read_notebook(name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"

    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    badge = (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/adamjax/adamjax/blob/main/"
        f"examples/notebooks/{name}.ipynb)"
    )
    assert badge in first.source

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code_cells:
        assert cell.outputs == [] and cell.execution_count is None, "stored outputs"
        # Plain Python only: no IPython magics or shell escapes (Colab and ruff both read it).
        ast.parse(cell.source)
        for line in cell.source.splitlines():
            assert not line.lstrip().startswith(("%", "!")), line
        # Self-contained: the notebooks run from a pip install, where examples/ is absent.
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                modules += [node.module] if isinstance(node, ast.ImportFrom) else []
                for module in modules:
                    assert module.split(".")[0] in ALLOWED_IMPORTS, module
        assert "sys.path" not in cell.source

    # The first code cell installs from the repository, and only on Colab.
    install = ast.parse(code_cells[0].source)
    guards = [
        node
        for node in ast.walk(install)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "'google.colab' in sys.modules"
    ]
    assert len(guards) == 1, "the install cell must be guarded by 'google.colab' in sys.modules"
    guarded = "\n".join(ast.unparse(stmt) for stmt in guards[0].body)
    assert "subprocess.run" in guarded and "'pip'" in guarded
    assert f"adamjax[examples] @ git+{REPOSITORY_URL}" in guarded
    unguarded = "\n".join(ast.unparse(s) for s in install.body if s is not guards[0])
    assert "pip" not in unguarded

    # One parameter cell, holding every size the quick run overrides.
    (params,) = parameters_cells(nb)
    assigned = {
        target.id
        for node in ast.parse(params.source).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert set(QUICK[name]) <= assigned, set(QUICK[name]) - assigned
    assert nb.cells.index(params) < 5, "the parameter cell should come early"

    source = "\n".join(c.source for c in code_cells)
    assert "jax.default_backend()" in source and "jax.devices()" in source
    assert "RESULT " in code_cells[-1].source


def test_inject_parameters_overrides_after_parameters_cell() -> None:
    nb = inject_parameters(read_notebook("quickstart"), {"epochs": 2})
    (params,) = parameters_cells(nb)
    injected = nb.cells[nb.cells.index(params) + 1]
    assert injected.metadata.tags == ["injected-parameters"]
    namespace: dict[str, Any] = {}
    exec(params.source + "\n" + injected.source, namespace)
    assert namespace["epochs"] == 2 and namespace["hidden"] == 128


# -- execution ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every notebook run once with its quick sizes: the executed notebook, or the exception."""
    root = tmp_path_factory.mktemp("notebooks")

    async def run_all() -> list[Any]:
        runs = [
            execute(
                inject_parameters(read_notebook(name), QUICK[name]),
                root / name,
                QUICK_ENV.get(name),
            )
            for name in NAMES
        ]
        return await asyncio.gather(*runs, return_exceptions=True)

    return dict(zip(NAMES, asyncio.run(run_all()), strict=True))


def executed_notebook(executed: dict[str, Any], name: str) -> Any:
    nb = executed[name]
    if isinstance(nb, BaseException):
        raise nb
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", out
    return nb


def test_kernel_is_this_interpreter_on_cpu(tmp_path: Path) -> None:
    probe = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "import json, os, sys\n"
                "print(json.dumps([sys.executable, sys.prefix, os.environ.get('JAX_PLATFORMS')]))"
            )
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    asyncio.run(execute(probe, tmp_path))
    executable, prefix, platforms = json.loads(stream_text(probe))
    # Not resolved: a venv's python links to the base interpreter, but its prefix differs.
    assert (executable, prefix) == (sys.executable, sys.prefix)
    assert platforms == "cpu"


def test_quickstart_results(executed: dict[str, Any]) -> None:
    nb = executed_notebook(executed, "quickstart")
    result = parse_result(nb)
    assert result["backend"] == "cpu"
    # adamw behind clipping solves the least-squares problem (weight decay biases it slightly).
    assert result["lsq_relative_error"] < 1e-2, result
    # Same algorithm: equal up to float32 rounding.
    assert result["max_abs_diff/adam_vs_optax_adam"] < 1e-6, result
    assert result["max_abs_diff/nesterov_vs_optax_nadam"] < 1e-5, result
    assert result["max_abs_diff/amsgrad_corrected_vs_optax"] < 1e-6, result
    # Different conventions: visibly different.
    assert result["max_abs_diff/amsgrad_raw_vs_optax"] > 1e-3, result
    assert result["max_abs_diff/eps_hat_vs_paper"] > 1e-4, result
    # Measured with these quick sizes: 0.950 (0.975 with the full sizes).
    assert result["test_accuracy"] > 0.88, result
    assert result["train_loss_last_epoch"] < 0.5 * result["train_loss_first_epoch"], result
    steps_per_epoch = (1797 - 360) // QUICK["quickstart"]["batch_size"]
    assert result["diagnostics_steps"] == QUICK["quickstart"]["diag_epochs"] * steps_per_epoch
    assert finite_positive(result["effective_lr_min_last"]), result
    assert result["effective_lr_min_last"] < result["effective_lr_mean_last"], result
    assert count_images(nb) >= 2  # the loss curve and the diagnostics figure


def test_flax_mlp_rnn_results(executed: dict[str, Any]) -> None:
    nb = executed_notebook(executed, "flax_mlp_rnn")
    result = parse_result(nb)
    assert result["mlp"]["optimizer"] == QUICK["flax_mlp_rnn"]["optimizer_name"]
    # Measured with these quick sizes: 0.950, and 0.900-0.911 after the comparison's 3 epochs.
    assert result["mlp"]["test_accuracy"] > 0.88, result
    assert set(result["comparison"]) == {"adam", "amsgrad", "nadam"}
    for name, run in result["comparison"].items():
        assert run["test_accuracy"] > 0.8, (name, run)
        assert finite_positive(run["final_train_loss"]), (name, run)
    lstm = result["lstm"]
    # The LSTM beats repeating the last value, and nothing beats the noise. Measured with these
    # quick sizes: 0.0285 vs 0.0460 (0.0171 vs 0.0546 with the full sizes; noise 0.01).
    assert lstm["test_mse"] < 0.9 * lstm["naive_mse"], lstm
    assert lstm["test_mse"] > 0.5 * lstm["noise_var"], lstm
    assert count_images(nb) >= 2  # the loss curves and the forecasts


def test_colab_gpu_tpu_results(executed: dict[str, Any]) -> None:
    nb = executed_notebook(executed, "colab_gpu_tpu")
    result = parse_result(nb)
    assert result["backend"] == "cpu" and result["device_count"] == 2
    assert result["global_batch"] == QUICK["colab_gpu_tpu"]["batch_size"]
    text = stream_text(nb)
    assert "data parallel over 2 devices: 32 examples per device" in text
    assert "sharded as P('batch',) over 2 device(s)" in text
    cnn = result["cnn"]
    assert cnn["test_accuracy"] > 0.85, cnn  # measured 0.936 (0.978 with the full sizes)
    assert cnn["train_loss_last_epoch"] < cnn["train_loss_first_epoch"], cnn
    timing = result["timing"]
    assert timing["size"] == QUICK["colab_gpu_tpu"]["timing_size"]
    for key in ("ms_adamjax_adam", "ms_optax_adam", "ratio"):
        assert finite_positive(timing[key]), timing  # no assertion on speed itself
    # Both optimizers took the same steps from the same state.
    assert timing["max_abs_diff"] < 1e-6, timing
    assert count_images(nb) >= 1
