"""Watch Adam and AMSGrad from inside the jitted step while training the digits MLP.

Both optimizers are wrapped in ``adamjax.with_diagnostics``; the NNX train step returns
``adamjax.diagnostics(optimizer.opt_state)`` with the loss, and an ``adamjax.History`` per
optimizer collects the metrics on the host. Run it from the repository root::

    python examples/diagnostics.py --out out/diagnostics

It writes ``diagnostics_adam.png`` and ``diagnostics_amsgrad.png`` (effective learning rate with
its min-max band, gradient norm, update magnitude and, for AMSGrad, the fraction of entries where
the running maximum is active), ``metrics.json`` with the final metrics, and prints a summary
table. ``--quick`` runs a few epochs, for tests.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
from flax import nnx
from tqdm import tqdm

import adamjax

import common
import mlp_digits as digits

OPTIMIZERS = {
    "adam": lambda lr: adamjax.adam(lr),
    "amsgrad": lambda lr: adamjax.amsgrad(lr),
}


@nnx.jit
def train_step(model, optimizer, x, y):
    """One update; returns the batch loss and the optimizer's diagnostics of this step."""
    loss, grads = nnx.value_and_grad(digits.loss_fn)(model, x, y)
    optimizer.update(model, grads)
    return loss, adamjax.diagnostics(optimizer.opt_state)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser, length="epochs", default=20, quick=3, out="out/diagnostics")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per update")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="step size")
    parser.add_argument("--histogram-bins", type=int, default=24, help="effective-lr histogram")
    return common.finish_args(parser.parse_args(argv))


def train(name: str, args: argparse.Namespace, data) -> tuple[adamjax.History, dict[str, float]]:
    x_train, x_test, y_train, y_test = data
    model = digits.MLP(x_train.shape[1], 128, digits.NUM_CLASSES, rngs=nnx.Rngs(args.seed))
    tx = adamjax.with_diagnostics(
        OPTIMIZERS[name](args.learning_rate), histogram_bins=args.histogram_bins
    )
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    rng = np.random.default_rng(args.seed)
    steps_per_epoch = len(x_train) // args.batch_size
    history = adamjax.History()
    for _ in tqdm(range(args.epochs), desc=name, unit="epoch"):
        order = rng.permutation(len(x_train))
        for step in range(steps_per_epoch):
            idx = order[step * args.batch_size : (step + 1) * args.batch_size]
            loss, metrics = train_step(model, optimizer, x_train[idx], y_train[idx])
            history.append(metrics, loss=loss)
    test_loss, test_accuracy = digits.evaluate(model, x_test, y_test)
    data_dict = history.to_dict()
    final = {
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "steps": int(data_dict["step"][-1]),
        "final_effective_lr_mean": float(data_dict["effective_lr/mean"][-1]),
        "final_grad_norm": float(data_dict["grad_norm"][-1]),
    }
    if "amsgrad/active_fraction" in data_dict:
        final["final_amsgrad_active_fraction"] = float(data_dict["amsgrad/active_fraction"][-1])
    return history, final


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Trains with each optimizer, writes the figures and ``metrics.json``; returns the final
    metrics per optimizer."""
    args = parse_args(argv)
    devices = common.report_devices()
    start = time.perf_counter()
    data = digits.load_data()
    results = {}
    for name in OPTIMIZERS:
        history, final = train(name, args, data)
        history.plot(args.out / f"diagnostics_{name}.png", title=f"{name} on digits (MLP)")
        results[name] = final
        keys = ["loss", "grad_norm", "update_norm", "effective_lr/mean", "effective_lr/min",
                "effective_lr/max", "m_hat/mean_abs", "v_hat/mean"]  # fmt: skip
        if name == "amsgrad":
            keys.append("amsgrad/active_fraction")
        print(f"\n{name}: test accuracy {final['test_accuracy']:.4f}")
        print(history.summary(keys))
    common.write_metrics(args.out, results, args=common.args_dict(args), device=devices)
    print(f"\nwrote {args.out}/diagnostics_*.png and metrics.json "
          f"in {time.perf_counter() - start:.1f} s")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
