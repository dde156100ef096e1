"""Compare every adamjax variant with optax's SGD (momentum), RMSprop and Adagrad.

Each optimizer of ``common.OPTIMIZERS`` trains the same network from the same initialization on
the same batches, at its own usual learning rate (the table in ``common.py``):

    python examples/compare_optimizers.py                  # the digits MLP
    python examples/compare_optimizers.py --model cnn      # the CNN of cnn_mnist.py on 8x8 digits
    python examples/compare_optimizers.py --optimizers adam amsgrad sgd_momentum

It writes ``curves.png`` (training loss and test accuracy per epoch; adamjax variants solid, each
in its own colour, optax baselines grey with their own dashes and markers; the modern family of
``common.NEW_FAMILY`` in a second row, with Adam for reference), ``comparison.md``
(final metrics and wall time per optimizer) and ``metrics.json`` to ``--out``, prints the table
and then the path of every file it wrote. Wall time includes the compilation;
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


# adamjax's classic variants are solid lines, each in its own colour: matplotlib's default ten
# with its grey (C7) swapped for navy, as grey is the baselines' (past ten variants, the colours
# repeat dash-dotted). optax's baselines are grey, each with its own dash pattern and marker. So
# no two lines share a colour, the baselines read as a group, and they stay apart in greyscale
# print. The modern family (common.NEW_FAMILY) has its own row of panels, in tab20's twenty
# colours: each hue's dark shade solid, its light shade dashed.
ADAMJAX_COLORS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "navy", "C8", "C9")
ADAMJAX_LINESTYLES = ("-", "-.")
BASELINE_STYLES = (("0.0", "--", "o"), ("0.4", "-.", "s"), ("0.6", ":", "^"))


def line_style(name: str) -> dict[str, Any]:
    """Colour, line style and marker of ``name``'s curves, fixed by its place among its
    group's entries (classic adamjax, modern family, optax) in ``common.OPTIMIZERS``, so that a
    run with a subset of ``--optimizers`` draws each optimizer as the full comparison does."""
    if name in common.NEW_FAMILY:
        from matplotlib import colormaps

        index = list(common.NEW_FAMILY).index(name)
        return {"color": colormaps["tab20"](index % 20), "ls": "-" if index % 2 == 0 else "--",
                "marker": None}  # fmt: skip
    library = common.OPTIMIZERS[name].library
    group = [n for n, spec in common.OPTIMIZERS.items()
             if spec.library == library and n not in common.NEW_FAMILY]  # fmt: skip
    index = group.index(name)
    if library == "adamjax":
        colors, styles = ADAMJAX_COLORS, ADAMJAX_LINESTYLES
        ls = styles[index // len(colors) % len(styles)]
        return {"color": colors[index % len(colors)], "ls": ls, "marker": None}
    color, ls, marker = BASELINE_STYLES[index % len(BASELINE_STYLES)]
    return {"color": color, "ls": ls, "marker": marker}


def plot(results: dict[str, dict[str, Any]], title: str):
    """Training loss (log scale) and test accuracy per epoch for every optimizer; returns the
    matplotlib ``Figure``. The classic variants and optax's baselines share the first row of
    panels; the modern family, if run, has the second, with Adam in black for reference. Each
    row has one legend for both its panels, on the right."""
    classic = [n for n in results if n not in common.NEW_FAMILY]
    modern = [n for n in results if n in common.NEW_FAMILY]
    rows = [(names, label) for names, label in (
        (classic, "adamjax: colour\noptax: grey"),
        (modern, "modern family" + ("\nadam: black" if "adam" in results else "")),
    ) if names]  # fmt: skip
    fig, axes = common.new_figure(len(rows), 2, width=5.5, height=4.2)
    for row, (names, legend_title) in enumerate(rows):
        lines = [(name, line_style(name)) for name in names]
        if row and "adam" in results:
            lines.append(("adam", {"color": "black", "ls": ":", "marker": None}))
        for name, style in lines:
            r = results[name]
            epochs = np.arange(1, len(r["train_loss"]) + 1)
            # About ten markers per line, whatever the number of epochs.
            style = {**style, "lw": 1.5, "ms": 4, "markevery": max(1, len(epochs) // 10)}
            axes[row, 0].semilogy(epochs, r["train_loss"], label=name, **style)
            axes[row, 1].plot(epochs, r["test_accuracy_curve"], label=name, **style)
        axes[row, 0].set(xlabel="epoch", ylabel="training loss", title="training loss")
        axes[row, 1].set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
        # Outside the axes, so that no curve hides behind the entries.
        fig.legend(
            *axes[row, 0].get_legend_handles_labels(),
            loc="outside right upper" if row == 0 else "outside right lower",
            fontsize=common.LEGEND_FONTSIZE,
            title=legend_title,
            title_fontsize=common.LEGEND_FONTSIZE,
        )
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Trains the model with each optimizer; writes the figure, table and JSON and prints their
    paths; returns the results per optimizer (``mlp_digits.train``'s dict plus
    ``learning_rate``)."""
    args = parse_args(argv)
    devices = common.report_devices()
    common.report_missing()
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
            eval_params=common.OPTIMIZERS[name].eval_params,
        )
        results[name] = {**result, "learning_rate": lr}
    table = markdown_table(results)
    title = f"{args.model} on digits, {args.epochs} epochs, seed {args.seed}"
    written = [
        common.save_figure(plot(results, title), args.out / "curves.png"),
        common.write_text(args.out / "comparison.md", f"{title}\n\n{table}"),
        common.write_metrics(args.out, results, args=common.args_dict(args), device=devices),
    ]
    print(f"\n{title}\n\n{table}\n\ntotal {time.perf_counter() - start:.1f} s")
    common.report_written(written)
    return results


if __name__ == "__main__":
    main()
