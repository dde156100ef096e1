"""Plumbing shared by the example scripts: flags, the device report, optimizers and output files.

Every example is a plain script that imports this sibling module; Python puts the script's own
directory first on ``sys.path``, so ``python examples/<name>.py`` finds it from any working
directory. Nothing here is part of the ``adamjax`` package.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

import adamjax


def add_common_args(
    parser: argparse.ArgumentParser,
    *,
    length: str,
    default: int,
    quick: int,
    out: str,
) -> None:
    """Adds ``--<length>``, ``--seed``, ``--out`` and ``--quick`` to ``parser``.

    Args:
        parser: The script's parser.
        length: ``"epochs"`` or ``"steps"``: how the run's length is counted.
        default: The run length without ``--quick``.
        quick: The run length with ``--quick`` (an explicit ``--<length>`` wins over both).
        out: Default output directory, relative to the working directory.
    """
    if length not in ("epochs", "steps"):
        raise ValueError(f"add_common_args: length must be 'epochs' or 'steps', got {length!r}")
    parser.add_argument(
        f"--{length}",
        type=_positive_int(length),
        default=None,
        help=f"{length} to train (default {default}; {quick} with --quick)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for initialization and data")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(out),
        help=f"directory for the PNG plots and metrics.json (default {out})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a short run with small sizes, for tests"
    )
    parser.set_defaults(_length=(length, default, quick))


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    """Resolves the run length from ``--quick``.

    The output directory is not created here but by the first file written into it
    (``save_figure``, ``write_metrics``, ``write_text``), so a run that fails earlier, on a
    download for instance, leaves no empty directory behind.
    """
    length, default, quick = args._length
    del args._length
    if getattr(args, length) is None:
        setattr(args, length, quick if args.quick else default)
    return args


def _positive_int(name: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"--{name} must be a positive integer, got {value}")
        return value

    return parse


def report_devices() -> dict[str, Any]:
    """Prints the JAX backend and devices; returns them for the metrics file."""
    backend = jax.default_backend()
    devices = [str(d) for d in jax.devices()]
    print(f"JAX {jax.__version__} backend: {backend}  devices: {', '.join(devices)}")
    return {"backend": backend, "devices": devices, "jax": jax.__version__, "host": platform.node()}


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer of the examples: its factory, a learning rate that works on the examples'
    networks, and whether it comes from adamjax or is an optax baseline."""

    make: Callable[..., optax.GradientTransformation]
    learning_rate: float
    library: str
    # Whether ``make`` takes ``mu_dtype``/``nu_dtype`` (adamjax.moment_presets).
    formats: bool = False
    # ``eval_params(opt_state, params)``: the parameters to evaluate the model at, for the
    # methods whose state holds another point than the one the gradient is taken at
    # (schedule-free); None evaluates the trained parameters.
    eval_params: Callable[[Any, Any], Any] | None = None


# How the moments are stored (``--moments``): the ``mu_dtype``/``nu_dtype`` of the optimizer.
MOMENTS: dict[str, dict[str, Any]] = adamjax.moment_presets()


# Learning rates are each method's usual default for small networks; the plain-SGD family needs
# a larger step. adamw's decay and AdaBound's final rate follow their libraries' examples.
OPTIMIZERS: dict[str, OptimizerSpec] = {
    "adam": OptimizerSpec(lambda lr, **kw: adamjax.adam(lr, **kw), 2e-3, "adamjax", True),
    "adamw": OptimizerSpec(
        lambda lr, weight_decay=1e-2, **kw: adamjax.adamw(lr, weight_decay=weight_decay, **kw),
        2e-3,
        "adamjax",
        True,
    ),
    "amsgrad": OptimizerSpec(lambda lr, **kw: adamjax.amsgrad(lr, **kw), 2e-3, "adamjax", True),
    "nadam": OptimizerSpec(lambda lr, **kw: adamjax.nadam(lr, **kw), 2e-3, "adamjax", True),
    "adamax": OptimizerSpec(lambda lr, **kw: adamjax.adamax(lr, **kw), 2e-3, "adamjax", True),
    "radam": OptimizerSpec(lambda lr, **kw: adamjax.radam(lr, **kw), 2e-3, "adamjax", True),
    "adabound": OptimizerSpec(
        lambda lr, **kw: adamjax.adabound(lr, final_lr=0.1, **kw), 2e-3, "adamjax", True
    ),
    "amsbound": OptimizerSpec(
        lambda lr, **kw: adamjax.adabound(lr, final_lr=0.1, amsbound=True, **kw),
        2e-3,
        "adamjax",
        True,
    ),
    "adafactor": OptimizerSpec(lambda lr: adamjax.adafactor(lr), 1e-2, "adamjax"),
    "swats": OptimizerSpec(lambda lr, **kw: adamjax.swats(lr, **kw), 2e-3, "adamjax", True),
}

# The modern Adam family: one entry per variant, its constructor written out once here. The
# learning rate is the base of choose_variant.py's search (that rate times 1/4 ... 4): Adam's
# 2e-3, rescaled where the update's size is not Adam's, about 1 per entry. LAMB's step is
# lr times each layer's weight norm, about 5 times the entry-wise step of Adam at 2e-3 for
# these layers; simplified AdEMAMix sums gradients without the (1 - b1) factor, so its
# momentum is 1 / (1 - b1) = 100 times Adam's. Defaults are each alias's own; adamw's decay
# is the classic entry's above, so that cautious(adamw) differs from it only by the mask.
NEW_FAMILY: dict[str, OptimizerSpec] = {
    "lamb": OptimizerSpec(lambda lr: adamjax.lamb(lr), 1e-2, "adamjax"),
    "adabelief": OptimizerSpec(lambda lr: adamjax.adabelief(lr), 2e-3, "adamjax"),
    "yogi": OptimizerSpec(lambda lr: adamjax.yogi(lr), 2e-3, "adamjax"),
    "adan": OptimizerSpec(lambda lr: adamjax.adan(lr), 2e-3, "adamjax"),
    "nadamw": OptimizerSpec(lambda lr: adamjax.nadamw(lr), 2e-3, "adamjax"),
    "adamaxw": OptimizerSpec(lambda lr: adamjax.adamaxw(lr), 2e-3, "adamjax"),
    "laprop": OptimizerSpec(lambda lr: adamjax.laprop(lr), 2e-3, "adamjax"),
    "adopt": OptimizerSpec(lambda lr: adamjax.adopt(lr), 2e-3, "adamjax"),
    "ademamix": OptimizerSpec(lambda lr: adamjax.ademamix(lr), 2e-3, "adamjax"),
    "simplified_ademamix": OptimizerSpec(
        lambda lr: adamjax.simplified_ademamix(lr), 2e-5, "adamjax"
    ),
    "schedule_free_adamw": OptimizerSpec(
        lambda lr: adamjax.schedule_free_adamw(lr),
        2e-3,
        "adamjax",
        eval_params=lambda state, params: adamjax.schedule_free_eval_params(state, params),
    ),
    "adam_mini": OptimizerSpec(lambda lr: adamjax.adam_mini(lr), 2e-3, "adamjax"),
    "came": OptimizerSpec(lambda lr: adamjax.came(lr), 2e-3, "adamjax"),
    "stable_adamw": OptimizerSpec(lambda lr: adamjax.stable_adamw(lr), 2e-3, "adamjax"),
    "adam_atan2": OptimizerSpec(lambda lr: adamjax.adam_atan2(lr), 2e-3, "adamjax"),
    "cautious_adamw": OptimizerSpec(
        lambda lr: adamjax.cautious(adamjax.adamw(lr, weight_decay=1e-2)), 2e-3, "adamjax"
    ),
}


def missing_from_adamjax(specs: dict[str, OptimizerSpec]) -> dict[str, str]:
    """The entries of ``specs`` whose constructor names a function that this adamjax lacks:
    entry name -> the missing attribute. Any other error of a constructor propagates."""
    missing = {}
    for name, spec in specs.items():
        try:
            spec.make(spec.learning_rate)
        except AttributeError as error:
            if error.obj is not adamjax:
                raise
            missing[name] = f"adamjax.{error.name}"
    return missing


# Entries of NEW_FAMILY that this adamjax cannot build yet; they are left out of OPTIMIZERS
# and `report_missing` names them on stderr. With a complete adamjax this is empty (a test
# checks that), so no example skips anything.
MISSING: dict[str, str] = missing_from_adamjax(NEW_FAMILY)


def report_missing() -> None:
    """Prints, on stderr, the NEW_FAMILY entries left out because adamjax lacks them."""
    if MISSING:
        names = ", ".join(f"{name} ({attr})" for name, attr in MISSING.items())
        print(f"skipped, not in this adamjax: {names}", file=sys.stderr)


OPTIMIZERS.update({name: spec for name, spec in NEW_FAMILY.items() if name not in MISSING})
OPTIMIZERS.update(
    {
        "sgd_momentum": OptimizerSpec(lambda lr: optax.sgd(lr, momentum=0.9), 5e-2, "optax"),
        "rmsprop": OptimizerSpec(lambda lr: optax.rmsprop(lr), 1e-3, "optax"),
        "adagrad": OptimizerSpec(lambda lr: optax.adagrad(lr), 5e-2, "optax"),
    }
)


def make_optimizer(
    name: str, learning_rate: float | None = None, moments: str = "float32", **kwargs: Any
) -> optax.GradientTransformation:
    """Builds ``OPTIMIZERS[name]`` at ``learning_rate`` (the spec's default if None), with its
    moments stored as ``MOMENTS[moments]`` says; ``kwargs`` go to the optimizer."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if moments not in MOMENTS:
        raise ValueError(f"unknown --moments {moments!r}; choose one of {', '.join(MOMENTS)}")
    spec = OPTIMIZERS[name]
    if moments != "float32" and not spec.formats:
        with_formats = ", ".join(k for k, v in OPTIMIZERS.items() if v.formats)
        raise ValueError(
            f"--moments {moments} needs an optimizer that stores its moments in the storage "
            f"formats ({with_formats}), got {name!r}"
        )
    return spec.make(
        spec.learning_rate if learning_rate is None else learning_rate,
        **MOMENTS[moments],
        **kwargs,
    )


def evaluation_model(model: Any, optimizer: Any, eval_params: Callable | None) -> Any:
    """The flax nnx ``model`` to score: ``model`` itself when ``eval_params`` is None, else a
    copy at ``eval_params(opt_state, params)`` (the average that schedule-free evaluates),
    leaving ``model`` at the point where training takes its gradients."""
    if eval_params is None:
        return model
    from flax import nnx

    params = nnx.as_pure(nnx.state(model, nnx.Param))
    copy = nnx.clone(model)
    nnx.update(copy, eval_params(nnx.as_pure(optimizer.opt_state), params))
    return copy


def add_moments_arg(parser: argparse.ArgumentParser) -> None:
    """Adds ``--moments``: how the optimizer stores its moments."""
    parser.add_argument(
        "--moments",
        choices=list(MOMENTS),
        default="float32",
        help="moment storage: float32, bfloat16 (sr-: stochastic rounding; -stored: the step "
        "taken from the stored moments) or 8-bit block-wise (q8: dynamic map; q8-linear) "
        "(default float32)",
    )


def write_metrics(out: Path, metrics: dict[str, Any], **context: Any) -> Path:
    """Writes ``metrics`` with the run's context (flags, devices) to ``out/metrics.json``."""
    payload = {"metrics": metrics, **context}
    text = json.dumps(_jsonable(payload), indent=2, sort_keys=True)
    return write_text(out / "metrics.json", text)


def write_text(path: Path, text: str) -> Path:
    """Writes ``text`` and a final newline to ``path``, creating its directory; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")
    return path


def report_written(paths: Sequence[Path]) -> None:
    """Prints one ``wrote <path>`` line per file the run wrote, as the run's last lines.

    The paths are printed as the script built them from ``--out`` (relative to the working
    directory for the default ``out/...``), so each line can be pasted into a shell.
    """
    for path in paths:
        print(f"wrote {path}")


def args_dict(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed flags as JSON-friendly values."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic, jax.Array)):
        return np.asarray(value).tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def new_figure(rows: int = 1, cols: int = 1, *, width: float = 5.0, height: float = 3.8):
    """A matplotlib ``Figure`` with a grid of axes, built without pyplot.

    Using ``matplotlib.figure.Figure`` directly needs no GUI backend, so the scripts plot the
    same way on a headless server, in Colab and on a laptop.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


# Twice the 110 dpi of the first figures: sharp on high-density screens and when zoomed.
DPI = 220
# Legend entries at this size or larger stay legible when a figure is viewed at full width.
LEGEND_FONTSIZE = 9


def save_figure(fig, path: Path) -> Path:
    """Saves ``fig`` as a PNG of ``DPI`` dots per inch at ``path`` (creating its directory);
    returns ``path`` for the run's ``report_written`` list."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path
