"""The figures of the Memory page (docs/memory.md), from measured runs.

Run from the repository root (about 90 s on a 2-core CPU)::

    python -m benchmarks.memory_figures

It prints the numbers it plots, writes them to ``benchmarks/results/memory_figures.json``, and
writes three PNGs to ``docs/images/memory/``:

- ``state_bytes.png``: bytes of optimizer state per parameter on the GPT-2-small tree for
  ``adam``, ``adamw``, ``amsgrad`` and ``nadam`` with each moment format of
  ``adamjax.moment_presets()``, from ``state_memory.state_bytes_per_param`` (``jax.eval_shape``,
  nothing is allocated).
- ``fidelity.png``: the per-step parameter error of ``adam`` with bfloat16, sr-bfloat16, q8 and
  q8-linear moments against float32 ``adam``, under the "moments drift" and "free" protocols of
  ``state_memory.fidelity_curves`` (one 1024 x 256 leaf, 50 steps; the means of these curves are
  the fidelity table of ``python -m benchmarks.state_memory``).
- ``mlp_digits_moments.png``: training loss and test accuracy per epoch of
  ``examples/mlp_digits.py`` with its defaults (AdamW, 30 epochs) and ``--seed 0``, once each
  with ``--moments float32``, ``bfloat16`` and ``q8``; each run is the example script itself, in
  a subprocess, and its ``metrics.json`` is read back.

Nothing here is timed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.state_memory import (
    ALIASES,
    FORMATS,
    RESULTS,
    fidelity_curves,
    state_bytes_per_param,
)
from benchmarks.workloads import count, gpt2_small_shapes

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images" / "memory"

LOW_PRECISION = ("bfloat16", "sr-bfloat16", "q8", "q8-linear")
PROTOCOLS = ("moments drift", "free")
DIGITS_MOMENTS = ("float32", "bfloat16", "q8")
DIGITS_SEED = 0

# One colour per format in every figure.
COLOURS = {
    "float32": "0.35",
    "bfloat16": "tab:blue",
    "bfloat16-stored": "tab:purple",
    "sr-bfloat16": "tab:cyan",
    "q8": "tab:orange",
    "q8-linear": "tab:red",
}
# bitsandbytes' tolerances for its 8-bit Adam test: mean absolute and mean relative error.
TOLERANCE = {"absolute": 6e-5, "relative": 6e-4}


def state_bytes() -> dict[str, dict[str, float]]:
    """``{format: {alias: bytes per parameter}}`` on the GPT-2-small tree."""
    shapes = gpt2_small_shapes()
    table = {
        fmt: {alias: state_bytes_per_param(make(**kw), shapes) for alias, make in ALIASES.items()}
        for fmt, kw in FORMATS.items()
    }
    print(f"**State bytes per parameter**, GPT-2 small ({count(shapes):,} parameters)\n")
    print("| state | " + " | ".join(ALIASES) + " |\n|---|" + "---:|" * len(ALIASES))
    for fmt, row in table.items():
        print(f"| {fmt} | " + " | ".join(f"{b:.3f}" for b in row.values()) + " |")
    return table


def fidelity(alias: str = "adam") -> dict[str, dict[str, dict[str, list[float]]]]:
    """``{protocol: {format: {"absolute": [...], "relative": [...]}}}``, one entry per step."""
    curves: dict[str, dict[str, dict[str, list[float]]]] = {}
    for protocol in PROTOCOLS:
        curves[protocol] = {}
        for fmt in LOW_PRECISION:
            absolute, relative = fidelity_curves(ALIASES[alias], FORMATS[fmt], protocol)
            curves[protocol][fmt] = {
                "absolute": [float(e) for e in absolute],
                "relative": [float(e) for e in relative],
            }
        rows = curves[protocol]
        steps = len(rows[LOW_PRECISION[0]]["absolute"])
        print(
            f"\n**{alias}, {protocol}**: mean absolute / mean relative parameter error against "
            "float32 after each step\n"
        )
        print("| step | " + " | ".join(LOW_PRECISION) + " |\n|---:|" + "---:|" * len(rows))
        for i in range(steps):
            cells = " | ".join(
                f"{c['absolute'][i]:.2e} / {c['relative'][i]:.2e}" for c in rows.values()
            )
            print(f"| {i + 1} | {cells} |")
        means = " | ".join(
            f"{sum(c['absolute']) / steps:.2e} / {sum(c['relative']) / steps:.2e}"
            for c in rows.values()
        )
        print(f"| mean | {means} |")
    return curves


def digits(out: Path) -> dict[str, dict[str, Any]]:
    """Runs ``examples/mlp_digits.py --seed 0 --moments m`` for each ``m`` of DIGITS_MOMENTS
    and returns each run's per-epoch curves, final test metrics and flags."""
    runs: dict[str, dict[str, Any]] = {}
    for moments in DIGITS_MOMENTS:
        run_out = out / moments
        command = [
            sys.executable,
            "examples/mlp_digits.py",
            "--moments",
            moments,
            "--seed",
            str(DIGITS_SEED),
            "--out",
            str(run_out),
        ]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
        print(done.stdout.strip().splitlines()[-1])
        record = json.loads((run_out / "metrics.json").read_text())
        metrics, flags = record["metrics"], record["args"]
        runs[moments] = {
            "train_loss": metrics["train_loss"],
            "test_accuracy_curve": metrics["test_accuracy_curve"],
            "test_accuracy": metrics["test_accuracy"],
            "test_loss": metrics["test_loss"],
            "steps": metrics["steps"],
            "args": {k: v for k, v in flags.items() if k != "out"},
        }
    epochs = len(runs[DIGITS_MOMENTS[0]]["train_loss"])
    print(
        "\n**digits MLP** (examples/mlp_digits.py, seed 0): training loss / test accuracy per "
        "epoch\n"
    )
    print("| epoch | " + " | ".join(DIGITS_MOMENTS) + " |\n|---:|" + "---:|" * len(runs))
    for i in range(epochs):
        cells = " | ".join(
            f"{r['train_loss'][i]:.4f} / {r['test_accuracy_curve'][i]:.4f}" for r in runs.values()
        )
        print(f"| {i + 1} | {cells} |")
    finals = " | ".join(f"{r['test_loss']:.4f} / {r['test_accuracy']:.4f}" for r in runs.values())
    print(f"| final test loss / accuracy | {finals} |")
    return runs


def _figure(rows: int, cols: int, width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig, path: Path) -> None:
    # No "Software" entry, so that the PNG does not change with the matplotlib version. At 2x
    # (200 dpi), an 8-inch figure is 1600 px wide and is shown at the docs' 784 px column, where
    # a point of text is 784 / (72 * 8) = 1.36 px: every label is 7.5 pt or more, so >= 10 px.
    fig.savefig(path, dpi=200, metadata={"Software": None})
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def plot_state_bytes(table: dict[str, dict[str, float]], path: Path) -> None:
    fig, axes = _figure(1, 1, 8.0, 3.6)
    ax = axes[0, 0]
    aliases = list(ALIASES)
    width = 0.85 / len(table)
    for j, (fmt, row) in enumerate(table.items()):
        xs = [i + (j - (len(table) - 1) / 2) * width for i in range(len(aliases))]
        values = [row[a] for a in aliases]
        bars = ax.bar(xs, values, width, label=fmt, color=COLOURS[fmt])
        labels = [f"{v:.3f}".rstrip("0").rstrip(".") for v in values]
        ax.bar_label(bars, labels, fontsize=7.5, padding=2, rotation=90)
    ax.axhline(4, color="k", linestyle=":", linewidth=1, label="the float32 param itself")
    handles, labels = ax.get_legend_handles_labels()
    ax.set_xticks(range(len(aliases)), aliases)
    ax.set_ylabel("state bytes per parameter")
    ax.set_ylim(0, 13)
    ax.grid(axis="y", alpha=0.3)
    # The bars first, the reference line last.
    order = [*range(1, len(handles)), 0]
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    fig.legend(handles, labels, fontsize=8, ncols=6, loc="outside upper center")
    _save(fig, path)


def plot_fidelity(curves: dict, path: Path) -> None:
    # Both runs take the same first step (the moments start at zero, and the step is computed
    # in float32 before the moments are stored), so step 1's error is 0 and is left off the
    # log scale.
    fig, axes = _figure(2, 2, 8.0, 5.4)
    for col, protocol in enumerate(PROTOCOLS):
        for row, kind in enumerate(("absolute", "relative")):
            ax = axes[row, col]
            for fmt, c in curves[protocol].items():
                steps = range(2, len(c[kind]) + 1)
                ax.semilogy(steps, c[kind][1:], label=fmt, color=COLOURS[fmt])
            if protocol == "moments drift":
                ax.axhline(
                    TOLERANCE[kind],
                    color="k",
                    linestyle=":",
                    linewidth=1,
                    label="bitsandbytes' bound on the mean",
                )
            ax.set_xlabel("step")
            ax.set_ylabel(f"mean {kind} error")
            ax.grid(alpha=0.3, which="both")
            if row == 0:
                ax.set_title(protocol, fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncols=5, loc="outside upper center")
    _save(fig, path)


def plot_digits(runs: dict[str, dict[str, Any]], path: Path) -> None:
    fig, axes = _figure(1, 2, 7.5, 3.0)
    styles = {"float32": "-", "bfloat16": "--", "q8": ":"}
    for moments, run in runs.items():
        epochs = range(1, len(run["train_loss"]) + 1)
        kw = {"label": moments, "color": COLOURS[moments], "linestyle": styles.get(moments, "-")}
        axes[0, 0].semilogy(epochs, run["train_loss"], **kw)
        axes[0, 1].plot(epochs, run["test_accuracy_curve"], **kw)
    axes[0, 0].set(xlabel="epoch", ylabel="training loss (mean of the epoch)")
    axes[0, 1].set(xlabel="epoch", ylabel="test accuracy")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncols=3, loc="outside upper center")
    _save(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=IMAGES, help="directory for the PNGs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON")
    args = parser.parse_args(argv)
    args.images.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)

    results: dict[str, Any] = {"state_bytes_per_param": state_bytes()}
    results["fidelity"] = {"alias": "adam", "curves": fidelity("adam")}
    print()
    with tempfile.TemporaryDirectory() as tmp:
        results["mlp_digits"] = digits(Path(tmp))
    print()

    plot_state_bytes(results["state_bytes_per_param"], args.images / "state_bytes.png")
    plot_fidelity(results["fidelity"]["curves"], args.images / "fidelity.png")
    plot_digits(results["mlp_digits"], args.images / "mlp_digits_moments.png")
    path = args.out / "memory_figures.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
