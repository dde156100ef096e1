"""Time of a jitted AdamW train-step update with and without ``adamjax.with_diagnostics``.

Run as ``python -m benchmarks.diagnostics_overhead [--reps N] [--compile-leaves 100,400,1000]``.
In one process and with interleaved repetitions (in a new, seeded order each time, so that no
contender always follows the same one), each contender runs a jitted step that donates
params and optimizer state: ``updates, state = tx.update(grads, state, params)``, then
``params = optax.apply_updates(params, updates)``, returning the metrics dict when wrapped. Each
contender first runs ``--warmup`` untimed steps (10), so that ``every=10`` has run its reducing
branches once: their first run costs more than the later ones, as a first step does. The
first table gives, on the GPT-2-small tree, the median and the mean milliseconds per step (the
mean includes the reducing steps of ``every=k``) and their ratios to the unwrapped adamjax AdamW.

The second table gives the ``lower().compile()`` seconds of the same step for ``adamjax.adam``
and ``with_diagnostics(adam)`` on trees of 100, 400 and 1000 leaves (``--compile-leaves``; an
empty value skips it), alternating the two so that drifts of the machine hit both. The leaves
are matrices of 8 shapes from 64x64 to 256x512 in turn, as in a stack of layers; XLA's CPU
compile time grows faster than linearly in the number of kernels, so the ratio is what to read.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import jax
import optax

import adamjax
from benchmarks.workloads import allocator, count, gpt2_small_shapes, random_tree


def contenders() -> dict[str, optax.GradientTransformation]:
    adamw = adamjax.adamw(1e-3, weight_decay=1e-2)
    return {
        "optax.adamw": optax.adamw(1e-3, weight_decay=1e-2),
        "adamjax.adamw": adamw,
        "with_diagnostics(adamw)": adamjax.with_diagnostics(adamw),
        "with_diagnostics(adamw, per_leaf)": adamjax.with_diagnostics(adamw, per_leaf=True),
        "with_diagnostics(adamw, histogram_bins=32)": adamjax.with_diagnostics(
            adamw, histogram_bins=32
        ),
        "with_diagnostics(adamw, every=10)": adamjax.with_diagnostics(adamw, every=10),
    }


def layer_shapes(leaves: int) -> dict[str, tuple[int, ...]]:
    """``leaves`` matrices whose 8 shapes repeat, like the layers of a deep model."""
    kinds = [(64, 64), (64, 256), (256, 64), (128, 128), (128, 512), (512, 128), (256, 256),
             (256, 512)]  # fmt: skip
    width = len(str(leaves - 1))
    return {f"w{i:0{width}d}": kinds[i % len(kinds)] for i in range(leaves)}


def compile_seconds(leaves: list[int], reps: int = 1) -> list[dict]:
    """Compile seconds of ``adam`` and ``with_diagnostics(adam)`` steps per tree size."""
    contenders_ = {
        "adamjax.adam": (adamjax.adam(1e-3), False),
        "with_diagnostics(adam)": (adamjax.with_diagnostics(adamjax.adam(1e-3)), True),
    }
    rows = []
    for n in leaves:
        params = random_tree(layer_shapes(n), 0)
        seconds: dict[str, list[float]] = {name: [] for name in contenders_}
        for _ in range(reps):
            for name, (tx, wrapped) in contenders_.items():
                t0 = time.perf_counter()
                make_step(tx, wrapped).lower(params, tx.init(params), params).compile()
                seconds[name].append(time.perf_counter() - t0)
        base, diag = (statistics.median(x) for x in seconds.values())
        rows.append(dict(leaves=n, adam_s=base, diagnostics_s=diag, ratio=diag / base))
        print(f"| {n} | {base:.2f} | {diag:.2f} | {diag / base:.2f} |", flush=True)
    return rows


def make_step(tx: optax.GradientTransformation, wrapped: bool):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        return params, state, (adamjax.diagnostics(state) if wrapped else None)

    return jax.jit(step, donate_argnums=(0, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reps",
        type=int,
        default=20,
        help="timed repetitions per contender (20: the mean of every=10 holds two reducing steps)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=10,
        help="untimed steps per contender first (10: every=10 has run its reducing branches, "
        "whose first run costs more than the later ones; their times go to the JSON)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument(
        "--compile-leaves",
        default="100,400,1000",
        help="comma-separated leaf counts of the compile-time table ('' skips it)",
    )
    args = parser.parse_args()

    shapes = gpt2_small_shapes()
    n = count(shapes)
    print(f"backend={jax.default_backend()} devices={jax.devices()}")
    print(f"GPT-2-small-shaped tree: {len(shapes)} leaves, {n:,} float32 parameters")
    grads = random_tree(shapes, 1, 1e-2)
    runs = {}
    for name, tx in contenders().items():
        wrapped = name.startswith("with_diagnostics")
        params = random_tree(shapes, 0)
        step = make_step(tx, wrapped)
        t0 = time.perf_counter()
        compiled = step.lower(params, tx.init(params), grads).compile()
        compile_s = time.perf_counter() - t0
        state = tx.init(params)
        warmup = []
        for _ in range(args.warmup):
            t0 = time.perf_counter()
            params, state, metrics = compiled(params, state, grads)
            jax.block_until_ready((params, state, metrics))
            warmup.append(time.perf_counter() - t0)
        runs[name] = dict(compiled=compiled, params=params, state=state, times=[],
                          compile_s=compile_s, warmup=warmup)  # fmt: skip
    # Interleaved repetitions, in a new order each time (seeded): with glibc's allocator a step
    # that follows one which released large temporaries runs slower, so a fixed order would
    # charge that to whichever contender comes after the heaviest.
    order, shuffle = list(runs.values()), random.Random(0).shuffle
    for _ in range(args.reps):
        shuffle(order)
        for run in order:
            t0 = time.perf_counter()
            out = run["compiled"](run["params"], run["state"], grads)
            run["params"], run["state"], metrics = out
            jax.block_until_ready((run["params"], run["state"], metrics))
            run["times"].append(time.perf_counter() - t0)
    base = statistics.median(runs["adamjax.adamw"]["times"])
    results = []
    mean_base = statistics.mean(runs["adamjax.adamw"]["times"])
    print("\n| contender | median ms/step | vs adamjax.adamw | mean ms/step | mean vs adamw "
          "| compile s |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, run in runs.items():
        med, mean = statistics.median(run["times"]), statistics.mean(run["times"])
        results.append(dict(contender=name, median_ms=med * 1e3, ratio=med / base,
                            mean_ms=mean * 1e3, mean_ratio=mean / mean_base,
                            compile_s=run["compile_s"],
                            warmup_ms=[t * 1e3 for t in run["warmup"]]))  # fmt: skip
        print(f"| {name} | {med * 1e3:.1f} | {med / base:.3f} | {mean * 1e3:.1f} "
              f"| {mean / mean_base:.3f} | {run['compile_s']:.2f} |")  # fmt: skip
    compile_rows = []
    if args.compile_leaves:
        print("\n| leaves | adam compile s | with_diagnostics(adam) compile s | ratio |")
        print("|---|---|---|---|")
        compile_rows = compile_seconds([int(x) for x in args.compile_leaves.split(",")])
    args.out.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0].device_kind.replace(" ", "_")
    path = args.out / f"diagnostics_overhead_{jax.default_backend()}_{device}.json"
    machine = dict(platform=platform.platform(), processor=platform.processor(),
                   jax=jax.__version__, optax=optax.__version__, allocator=allocator())  # fmt: skip
    record = dict(machine=machine, params=n, reps=args.reps, warmup=args.warmup, results=results,
                  compile=compile_rows)  # fmt: skip
    path.write_text(json.dumps(record, indent=1))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
