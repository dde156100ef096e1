"""Compare every adamjax variant with optax's SGD (momentum), RMSprop and Adagrad.

Each optimizer of ``common.OPTIMIZERS`` trains the same network from the same initialization on
the same batches, at its own usual learning rate (the table in ``common.py``):

    python examples/compare_optimizers.py                  # the digits MLP
    python examples/compare_optimizers.py --model cnn      # the CNN of cnn_mnist.py on 8x8 digits
    python examples/compare_optimizers.py --optimizers adam amsgrad sgd_momentum

It writes ``curves.png`` (training loss and test accuracy per epoch, adamjax variants solid,
optax baselines dashed), ``comparison.md`` (final metrics and wall time per optimizer) and
``metrics.json`` to ``--out``, and prints the table. Wall time includes the compilation;
"s/epoch" is the median of the epochs after the first, i.e. the steady state. One run per
optimizer and seed: differences of a few tenths of a point in accuracy are noise.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import common
import mlp_digits


def _mlp_data() -> tuple[np.ndarray, ...]:
    return mlp_digits.load_data()


def _cnn_data() -> tuple[np.ndarray, ...]:
    import cnn_mnist

    return cnn_mnist.load_dataset("digits")


def _cnn_train(tx, data, **kwargs) -> dict[str, Any]:
    import cnn_mnist

    return cnn_mnist.train(tx, data, **kwargs)


# model name -> (data loader, train function with mlp_digits.train's signature, epochs, quick)
MODELS: dict[str, tuple[Callable, Callable, int, int]] = {
    "mlp": (_mlp_data, mlp_digits.train, 30, 3),
    "cnn": (_cnn_data, _cnn_train, 15, 2),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="mlp", help="the network")
    parser.add_argument(
        "--optimizers",
        nargs="+",
        choices=list(common.OPTIMIZERS),
        default=list(common.OPTIMIZERS),
        help="which optimizers to compare (default: all)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="examples per update")
    known, _ = parser.parse_known_args(argv)
    _, _, default, quick = MODELS[known.model]
    common.add_common_args(
        parser, length="epochs", default=default, quick=quick, out="out/compare_optimizers"
    )
    return common.finish_args(parser.parse_args(argv))


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per optimizer: library, learning rate, final metrics and wall times."""
    lines = [
        "| optimizer | library | learning rate | final train loss | test loss | test accuracy "
        "| wall time (s) | s/epoch |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        steady = r["epoch_seconds"][1:] or r["epoch_seconds"]
        lines.append(
            f"| {name} | {common.OPTIMIZERS[name].library} | {r['learning_rate']:g} "
            f"| {r['final_loss']:.4f} | {r['test_loss']:.4f} | {r['test_accuracy']:.4f} "
            f"| {r['seconds']:.1f} | {float(np.median(steady)):.3f} |"
        )
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], path, title: str):
    """Training loss (log scale) and test accuracy per epoch for every optimizer."""
    fig, axes = common.new_figure(1, 2, width=5.5, height=4.2)
    for name, r in results.items():
        style = "-" if common.OPTIMIZERS[name].library == "adamjax" else "--"
        epochs = np.arange(1, len(r["train_loss"]) + 1)
        axes[0, 0].semilogy(epochs, r["train_loss"], style, label=name)
        axes[0, 1].plot(epochs, r["test_accuracy_curve"], style, label=name)
    axes[0, 0].set(xlabel="epoch", ylabel="training loss", title="training loss")
    axes[0, 1].set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
    axes[0, 1].legend(fontsize=7, ncol=2, loc="lower right")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return common.save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Trains the model with each optimizer; writes the figure, table and JSON; returns the
    results per optimizer (``mlp_digits.train``'s dict plus ``learning_rate``)."""
    args = parse_args(argv)
    devices = common.report_devices()
    load, train, _, _ = MODELS[args.model]
    data = load()
    # JAX's first jitted call in a process pays one-off costs (tracing machinery, the CPU
    # client's thread pools); a discarded epoch keeps them out of the first optimizer's time.
    train(common.make_optimizer("sgd_momentum"), data, epochs=1, batch_size=args.batch_size,
          seed=args.seed, desc="warm-up")  # fmt: skip
    start = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for name in args.optimizers:
        lr = common.OPTIMIZERS[name].learning_rate
        result = train(
            common.make_optimizer(name, lr),
            data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            desc=name,
        )
        results[name] = {**result, "learning_rate": lr}
    table = markdown_table(results)
    title = f"{args.model} on digits, {args.epochs} epochs, seed {args.seed}"
    plot(results, args.out / "curves.png", title)
    (args.out / "comparison.md").write_text(f"{title}\n\n{table}\n")
    common.write_metrics(args.out, results, args=common.args_dict(args), device=devices)
    print(f"\n{title}\n\n{table}\n\ntotal {time.perf_counter() - start:.1f} s")
    return results


if __name__ == "__main__":
    main()
