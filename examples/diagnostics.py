r"""Watch Adam and AMSGrad from inside the jitted step while training the digits MLP.

Both optimizers are wrapped in ``adamjax.with_diagnostics``; the NNX train step returns
``adamjax.diagnostics(optimizer.opt_state)`` with the loss, and an ``adamjax.History`` per
optimizer collects the metrics on the host. Run it from the repository root::

    python examples/diagnostics.py --out out/diagnostics

It writes ``diagnostics_adam.png`` and ``diagnostics_amsgrad.png`` (effective learning rate with
its min-max band, gradient norm, update magnitude and, for AMSGrad, the fraction of entries where
the running maximum is active), ``metrics.json`` with the final metrics, and prints a summary
table per optimizer and then the path of every file it wrote. ``--quick`` runs a few epochs, for
tests.

Why ``effective_lr/max`` is lr/eps = 2e5 and the mean in the tens of thousands: some of the
digits' pixels are 0 in every training image, and some hidden units are inactive for every
example seen, so the gradients of their weights have always been 0. Such an entry has
:math:`\hat v = 0` and the effective learning rate :math:`\alpha/(\sqrt{\hat v} + \epsilon) =
\alpha/\epsilon`; its step is still 0, since :math:`\hat m = 0` too. Next to adamjax's metrics the
train step records two of its own, read from the optimizer state: ``v_hat/zero_fraction``, the
fraction of those entries, and ``effective_lr/mean_v_hat_positive``, the mean over the others,
:math:`(\bar\eta - f\,\eta_{max})/(1 - f)` with :math:`\bar\eta` ``effective_lr/mean``,
:math:`f` the fraction and :math:`\eta_{max} = \alpha/\epsilon` ``effective_lr/max``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

import adamjax

import common
import mlp_digits as digits

# adamjax's default eps, spelled out: an entry with v_hat = 0 gets the effective rate lr / EPS.
EPS = 1e-8
OPTIMIZERS = {
    "adam": lambda lr: adamjax.adam(lr, eps=EPS),
    "amsgrad": lambda lr: adamjax.amsgrad(lr, eps=EPS),
}


def v_hat_zero_fraction(opt_state) -> jax.Array:
    """The fraction of entries whose second moment is exactly 0, i.e. whose gradient has been 0
    at every step so far (AMSGrad: its running maximum, which its step divides by)."""
    nu = optax.tree_utils.tree_get(opt_state, "nu_max")
    if nu is None:
        nu = optax.tree_utils.tree_get(opt_state, "nu")
    leaves = jax.tree.leaves(nu)
    zeros = sum(jnp.sum(leaf == 0) for leaf in leaves)
    return zeros / sum(leaf.size for leaf in leaves)


def with_v_hat_split(metrics: dict[str, jax.Array], zero_fraction: jax.Array) -> dict:
    """Adds ``v_hat/zero_fraction`` and ``effective_lr/mean_v_hat_positive`` to ``metrics``.

    The entries with v_hat = 0 all have the largest effective rate, lr/eps, which is therefore
    ``effective_lr/max`` whenever there are any; taking them out of the mean leaves the mean
    over the others. NaN when every entry has v_hat = 0.
    """
    f = zero_fraction.astype(metrics["effective_lr/mean"].dtype)
    mean, high = metrics["effective_lr/mean"], metrics["effective_lr/max"]
    # With f = 0 this is the mean itself.
    positive = jnp.where(f < 1, (mean - f * high) / (1 - f), jnp.nan)
    return {**metrics, "v_hat/zero_fraction": f, "effective_lr/mean_v_hat_positive": positive}


@nnx.jit
def train_step(model, optimizer, x, y):
    """One update; returns the batch loss and the diagnostics of this step: adamjax's, and the
    two of ``with_v_hat_split``."""
    loss, grads = nnx.value_and_grad(digits.loss_fn)(model, x, y)
    optimizer.update(model, grads)
    metrics = adamjax.diagnostics(optimizer.opt_state)
    return loss, with_v_hat_split(metrics, v_hat_zero_fraction(optimizer.opt_state))


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
        "final_effective_lr_max": float(data_dict["effective_lr/max"][-1]),
        "final_v_hat_zero_fraction": float(data_dict["v_hat/zero_fraction"][-1]),
        "final_effective_lr_mean_v_hat_positive": float(
            data_dict["effective_lr/mean_v_hat_positive"][-1]
        ),
        "final_grad_norm": float(data_dict["grad_norm"][-1]),
    }
    if "amsgrad/active_fraction" in data_dict:
        final["final_amsgrad_active_fraction"] = float(data_dict["amsgrad/active_fraction"][-1])
    return history, final


def explain_max(history: adamjax.History, learning_rate: float) -> str | None:
    """One line on why ``effective_lr/max`` is lr/eps, when it is (to float32 rounding) at some
    step; ``None`` otherwise."""
    data = history.to_dict()
    ceiling = learning_rate / EPS
    if not np.any(np.isclose(data["effective_lr/max"], ceiling, rtol=1e-5)):
        return None
    zero = data["v_hat/zero_fraction"][-1]
    return (
        f"effective_lr/max = lr/eps = {ceiling:.4g}: entries whose gradient has always been 0 "
        f"(v_hat = 0; {zero:.1%} of all entries at the last step) get lr/eps; "
        "effective_lr/mean_v_hat_positive leaves them out"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Trains with each optimizer, writes the figures and ``metrics.json`` and prints their paths;
    returns the final metrics per optimizer."""
    args = parse_args(argv)
    devices = common.report_devices()
    start = time.perf_counter()
    data = digits.load_data()
    results = {}
    written = []
    for name in OPTIMIZERS:
        history, final = train(name, args, data)
        path = args.out / f"diagnostics_{name}.png"
        args.out.mkdir(parents=True, exist_ok=True)  # History.plot does not create it
        history.plot(path, title=f"{name} on digits (MLP)")
        written.append(path)
        results[name] = final
        keys = ["loss", "grad_norm", "update_norm", "effective_lr/mean", "effective_lr/min",
                "effective_lr/max", "v_hat/zero_fraction", "effective_lr/mean_v_hat_positive",
                "m_hat/mean_abs", "v_hat/mean"]  # fmt: skip
        if name == "amsgrad":
            keys.append("amsgrad/active_fraction")
        print(f"\n{name}: test accuracy {final['test_accuracy']:.4f}")
        print(history.summary(keys))
        explanation = explain_max(history, args.learning_rate)
        if explanation is not None:
            print(explanation)
    written.append(
        common.write_metrics(args.out, results, args=common.args_dict(args), device=devices)
    )
    print(f"\n{len(OPTIMIZERS)} optimizers in {time.perf_counter() - start:.1f} s")
    common.report_written(written)
    return results


if __name__ == "__main__":
    main()
