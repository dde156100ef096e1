"""Measure the Adam family on the digits MLP and the LSTM forecaster, for "choosing a variant".

Trains ``adam``, ``adamw`` and every variant of ``common.NEW_FAMILY`` on two tasks, seeds 0-2,
and writes the table of ``docs/choosing_a_variant.md``. Run it from the repository root::

    python examples/choose_variant.py --out docs/_generated   # the docs' table
    python examples/choose_variant.py --optimizers adam lamb  # a subset
    python examples/choose_variant.py --quick                 # a few seconds, for tests

The tasks are the examples' own models, data and batch order:

- **MLP**: ``mlp_digits.py``'s multiclass network (two ReLU layers of 128) on the digits, batch
  64, 30 epochs (660 steps). Score: accuracy on the 360 held-out digits.
- **LSTM**: ``rnn_timeseries.py``'s forecaster (an LSTM of width 32 reading 32 values of the
  noisy multi-sine series, noise 0.1), batch 64, 1,500 steps. Score: MSE on the last 20% of
  the series (the noise floor is 0.01).

The learning rate follows one rule for every optimizer: its base rate in ``common.OPTIMIZERS``
(Adam's 2e-3, rescaled for LAMB and simplified AdEMAMix, whose updates have another size) times
each of 1/4, 1/2, 1, 2 and 4 on the MLP with all seeds; the factor whose training loss (the
mean over the last 10% of the steps, averaged over the seeds) is lowest is kept, and the LSTM
runs at the same rate. The MLP's scores are those of the kept runs. Hyperparameters other than
the rate are each alias's defaults.

"Steps to target" is the first step at which the mean training loss of the last 20 steps is at
most 0.05 for the MLP (cross-entropy; it starts near ln 10 = 2.3) and 0.02 for the LSTM (twice
the noise variance, which bounds any forecaster's MSE from below). "State bytes per parameter"
is the total ``nbytes`` of the leaves of ``tx.init(params)`` divided by the number of
parameters (float32), for each network. Scores are the mean and the sample standard deviation
over the seeds.

Every optimizer trains all its seeds (and, on the MLP, all its rates) in one compiled program:
``jax.vmap`` over seeds and rates of a ``jax.lax.scan`` over the steps. The script writes
``choose_variant_table.md`` (the table, as the docs include it) and ``choose_variant.json``
(every run's numbers) to ``--out`` and prints their paths. Names of ``common.NEW_FAMILY`` that
adamjax lacks are reported, left out and listed under the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import common
import mlp_digits
import rnn_timeseries

SEEDS = (0, 1, 2)
FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
# The mean of this many consecutive step losses decides when a run reaches its target.
WINDOW = 20
TABLE = "choose_variant_table.md"
JSON = "choose_variant.json"


@dataclass(frozen=True)
class Task:
    """A network, its data and how a run of it is scored.

    ``model(seed)`` builds a freshly initialized network; ``loss(model, x, y)`` is the training
    loss of a batch; ``score(model, x, y)`` the reported metric on the test set;
    ``batches(seed, steps)`` the training examples of every step, shape ``(steps, batch)``.
    """

    name: str
    model: Callable[[int], nnx.Module]
    loss: Callable[[nnx.Module, jax.Array, jax.Array], jax.Array]
    score: Callable[[nnx.Module, jax.Array, jax.Array], jax.Array]
    metric: str
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train, y_train, x_test, y_test
    batches: Callable[[int, int], np.ndarray]
    steps: int
    target: float


def mlp_task(epochs: int, batch_size: int = 64) -> Task:
    """The digits MLP with ``mlp_digits.train``'s split and batch order."""
    x_train, x_test, y_train, y_test = mlp_digits.load_data()
    per_epoch = len(x_train) // batch_size

    def batches(seed: int, steps: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        epochs_needed = -(-steps // per_epoch)
        orders = [
            rng.permutation(len(x_train))[: per_epoch * batch_size] for _ in range(epochs_needed)
        ]
        return np.concatenate(orders).reshape(-1, batch_size)[:steps]

    return Task(
        name="MLP",
        model=lambda seed: mlp_digits.make_model("multiclass", x_train.shape[1], 128, seed),
        loss=mlp_digits.loss_fn,
        score=lambda model, x, y: mlp_digits.accuracy_of(model(x), y),
        metric="test accuracy",
        data=(x_train, y_train, x_test, y_test),
        batches=batches,
        steps=epochs * per_epoch,
        target=0.05,
    )


def lstm_task(steps: int, batch_size: int = 64) -> Task:
    """The LSTM forecaster with ``rnn_timeseries.train``'s defaults and batch order."""
    series, clean = rnn_timeseries.make_series(4000, 0.1)
    data = rnn_timeseries.make_windows(series, 32, clean=clean)
    n = len(data.x_train)
    per_pass = n // batch_size

    def batches(seed: int, steps: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        order, rows = rng.permutation(n), []
        for step in range(steps):
            if step % per_pass == 0 and step > 0:
                order = rng.permutation(n)
            rows.append(order[(step % per_pass) * batch_size : (step % per_pass + 1) * batch_size])
        return np.stack(rows)

    return Task(
        name="LSTM",
        model=lambda seed: rnn_timeseries.Forecaster(32, rngs=nnx.Rngs(seed)),
        loss=rnn_timeseries.loss_fn,
        score=rnn_timeseries.loss_fn,
        metric="test MSE",
        data=(data.x_train, data.y_train, data.x_test, data.y_test),
        batches=batches,
        steps=steps,
        target=0.02,
    )


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def train(
    make: Callable[[Any], optax.GradientTransformation],
    learning_rates: Sequence[float],
    task: Task,
    seeds: Sequence[int],
    eval_params: Callable[[Any, Any], Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Trains ``task``'s network with ``make(lr)`` for every rate and seed.

    Returns:
        ``(losses, scores)``: the training loss of every step, shape
        ``(len(learning_rates), len(seeds), task.steps)``, and the test score at the end,
        shape ``(len(learning_rates), len(seeds))``, taken at ``eval_params(state, params)``
        when it is given.
    """
    x_train, y_train, x_test, y_test = (jnp.asarray(a) for a in task.data)
    splits = [nnx.split(task.model(seed), nnx.Param, ...) for seed in seeds]
    graphdef = splits[0][0]
    params, rest = _stack([s[1] for s in splits]), _stack([s[2] for s in splits])
    batches = jnp.asarray(np.stack([task.batches(seed, task.steps) for seed in seeds]))

    def run(lr, params, rest, batches):
        tx = make(lr)

        def loss(p, r, idx):
            # The non-parameter state (a random stream's count) is threaded through, so the
            # model may update it.
            model = nnx.merge(graphdef, p, r)
            return task.loss(model, x_train[idx], y_train[idx]), nnx.split(model, nnx.Param, ...)[2]

        def step(carry, idx):
            p, r, state = carry
            (value, r), grads = jax.value_and_grad(loss, has_aux=True)(p, r, idx)
            updates, state = tx.update(grads, state, p)
            return (optax.apply_updates(p, updates), r, state), value

        (p, r, state), losses = jax.lax.scan(step, (params, rest, tx.init(params)), batches)
        if eval_params is not None:
            p = eval_params(state, p)
        return losses, task.score(nnx.merge(graphdef, p, r), x_test, y_test)

    per_seed = jax.vmap(run, in_axes=(None, 0, 0, 0))
    try:
        # All rates in one program: the rate is a traced scalar, as optax allows.
        per_rate = jax.jit(jax.vmap(per_seed, in_axes=(0, None, None, None)))
        out = per_rate(jnp.asarray(learning_rates, jnp.float32), params, rest, batches)
    except jax.errors.ConcretizationTypeError:
        # An optimizer that needs a concrete rate: one program per rate.
        runs = [jax.jit(lambda *a, lr=lr: per_seed(lr, *a))(params, rest, batches)
                for lr in learning_rates]  # fmt: skip
        out = _stack(runs)
    losses, scores = out
    return np.asarray(losses, np.float64), np.asarray(scores, np.float64)


def steps_to_target(losses: np.ndarray, target: float, window: int = WINDOW) -> int | None:
    """The first step (1-based) at which the mean loss of the last ``window`` steps is at most
    ``target``, or None if no such step exists (a non-finite loss never counts)."""
    if len(losses) < window:
        return None
    windows = np.lib.stride_tricks.sliding_window_view(np.asarray(losses, np.float64), window)
    means = windows.mean(axis=1)
    hits = np.flatnonzero(means <= target)
    return int(hits[0]) + window if hits.size else None


def state_bytes_per_param(tx: optax.GradientTransformation, params: Any) -> float:
    """The total ``nbytes`` of the leaves of ``tx.init(params)`` over the number of parameter
    entries, from the state's shapes (nothing is computed)."""
    state = jax.eval_shape(tx.init, params)
    nbytes = sum(int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
                 for leaf in jax.tree.leaves(state))  # fmt: skip
    return nbytes / sum(int(np.size(p)) for p in jax.tree.leaves(params))


def measure(
    name: str, tasks: dict[str, Task], seeds: Sequence[int], factors: Sequence[float]
) -> dict[str, Any]:
    """Runs one optimizer on both tasks: the rate search on the MLP, then the LSTM at the kept
    rate. Returns its entry of ``choose_variant.json``."""
    spec = common.OPTIMIZERS[name]
    mlp, lstm = tasks["MLP"], tasks["LSTM"]
    rates = [spec.learning_rate * f for f in factors]
    start = time.perf_counter()
    losses, scores = train(spec.make, rates, mlp, seeds, spec.eval_params)
    tail = max(1, mlp.steps // 10)
    finals = losses[:, :, -tail:].mean(axis=-1)
    # A rate whose run diverged for any seed (a non-finite mean) is never kept.
    search = np.where(np.all(np.isfinite(finals), axis=1), finals.mean(axis=1), np.inf)
    best = int(np.argmin(search))
    entry: dict[str, Any] = {
        "base_learning_rate": spec.learning_rate,
        "learning_rate": rates[best],
        "search": {f"{rate:g}": float(v) for rate, v in zip(rates, search, strict=True)},
    }
    runs = {"MLP": (losses[best], scores[best])}
    lstm_losses, lstm_scores = train(spec.make, [rates[best]], lstm, seeds, spec.eval_params)
    runs["LSTM"] = (lstm_losses[0], lstm_scores[0])
    for task_name, (task_losses, task_scores) in runs.items():
        task = tasks[task_name]
        params = nnx.state(task.model(seeds[0]), nnx.Param)
        entry[task_name] = {
            "score": task_scores.tolist(),
            "final_loss": task_losses[:, -WINDOW:].mean(axis=1).tolist(),
            "steps_to_target": [steps_to_target(run, task.target) for run in task_losses],
            "finite": bool(np.all(np.isfinite(task_losses))),
            "state_bytes_per_param": state_bytes_per_param(spec.make(rates[best]), params),
        }
    entry["seconds"] = time.perf_counter() - start
    return entry


def _mean_spread(values: Sequence[float], digits: int) -> str:
    values = np.asarray(values, np.float64)
    if not np.all(np.isfinite(values)):
        return "diverged"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _steps(steps: Sequence[int | None], limit: int) -> str:
    reached = [s for s in steps if s is not None]
    if not reached:
        return f"> {limit}"
    mean = f"{np.mean(reached):.0f}"
    return mean if len(reached) == len(steps) else f"{mean} ({len(reached)} of {len(steps)})"


def markdown_table(results: dict[str, dict[str, Any]], tasks: dict[str, Task]) -> str:
    """One row per optimizer, in the order of ``results``."""
    mlp, lstm = tasks["MLP"], tasks["LSTM"]
    lines = [
        f"| optimizer | lr | MLP {mlp.metric} | MLP steps to {mlp.target:g} "
        f"| LSTM {lstm.metric} | LSTM steps to {lstm.target:g} "
        "| state bytes per param (MLP, LSTM) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        a, b = r["MLP"], r["LSTM"]
        lines.append(
            f"| {name} | {r['learning_rate']:.3g} | {_mean_spread(a['score'], 4)} "
            f"| {_steps(a['steps_to_target'], mlp.steps)} | {_mean_spread(b['score'], 4)} "
            f"| {_steps(b['steps_to_target'], lstm.steps)} "
            f"| {a['state_bytes_per_param']:.2f}, {b['state_bytes_per_param']:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses the command-line flags; ``argv=None`` reads ``sys.argv``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = ["adam", "adamw", *common.NEW_FAMILY]
    available = [n for n in names if n in common.OPTIMIZERS]
    parser.add_argument(
        "--optimizers",
        nargs="+",
        choices=available,
        default=available,
        metavar="NAME",
        help=f"optimizers to measure (default all: {' '.join(available)})",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2")
    parser.add_argument(
        "--factors",
        type=float,
        nargs="+",
        default=None,
        help="multiples of each base rate searched on the MLP (default 0.25 0.5 1 2 4)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="MLP epochs (default 30)")
    parser.add_argument("--steps", type=int, default=None, help="LSTM steps (default 1500)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/choose_variant"),
        help="directory for the table and the JSON (default out/choose_variant)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 MLP epochs, 40 LSTM steps, seed 0, the base rate only: for tests",
    )
    args = parser.parse_args(argv)
    quick = {"seeds": [0], "factors": [1.0], "epochs": 2, "steps": 40}
    full = {"seeds": list(SEEDS), "factors": list(FACTORS), "epochs": 30, "steps": 1500}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for flag in ("epochs", "steps"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be a positive integer")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measures every optimizer, writes the table and the JSON, prints their paths.

    Returns:
        The JSON's content: ``results`` (per optimizer: the rates searched and kept, and per
        task the per-seed ``score``, ``final_loss``, ``steps_to_target``, whether every loss
        was ``finite``, and ``state_bytes_per_param``), ``missing`` (NEW_FAMILY entries this
        adamjax lacks), the settings and the ``seconds`` the whole run took.
    """
    args = parse_args(argv)
    devices = common.report_devices()
    common.report_missing()
    began = time.perf_counter()
    tasks = {"MLP": mlp_task(args.epochs), "LSTM": lstm_task(args.steps)}
    results = {}
    for name in args.optimizers:
        results[name] = measure(name, tasks, args.seeds, args.factors)
        print(f"{name}: {results[name]['seconds']:.1f} s", flush=True)
    seconds = time.perf_counter() - began

    table = markdown_table(results, tasks)
    seeds = ", ".join(map(str, args.seeds))
    notes = [
        f"Seeds {seeds}; {tasks['MLP'].steps} MLP steps ({args.epochs} epochs) and "
        f"{tasks['LSTM'].steps} LSTM steps; scores are mean ± standard deviation over the seeds; "
        "steps to the loss named are the mean over the seeds that reach it (with their number "
        "if some do not). Learning rate: the best of the base rate times "
        f"{', '.join(f'{f:g}' for f in args.factors)} on the MLP.",
    ]
    if args.quick:
        notes.insert(
            0,
            "**Not a measurement**: a `--quick` run (a few steps, one seed, one rate) that checks "
            "the script and the page; `python examples/choose_variant.py --out docs/_generated` "
            "measures.",
        )
    if common.MISSING:
        notes.append("Not measured, not in this adamjax: " + ", ".join(common.MISSING) + ".")
    command = " ".join(
        ["python examples/choose_variant.py", *(sys.argv[1:] if argv is None else argv)]
    )
    notes.append(
        f"Written by `{command}` in {seconds / 60:.1f} min on {devices['backend']} "
        f"(JAX {devices['jax']})."
    )
    header = "% Written by examples/choose_variant.py: run it again rather than editing this file."
    payload = {
        "results": results,
        "missing": common.MISSING,
        "targets": {name: task.target for name, task in tasks.items()},
        "steps": {name: task.steps for name, task in tasks.items()},
        "window": WINDOW,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "device": devices,
        "seconds": seconds,
    }
    written = [
        common.write_text(args.out / TABLE, "\n\n".join([header, table, *notes])),
        common.write_text(args.out / JSON, json.dumps(payload, indent=2)),
    ]
    print(f"\n{table}\n\ntotal {seconds:.1f} s")
    common.report_written(written)
    return payload


if __name__ == "__main__":
    main()
