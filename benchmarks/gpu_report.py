"""One command for an accelerator: adamjax's step against optax, and the device's copy bandwidth.

Run from the repository root on the machine to measure::

    python -m benchmarks.gpu_report            # GPU/TPU: the GPT-2-small tree (124M) and 1x64M
    python -m benchmarks.gpu_report --quick    # a few seconds: tiny trees (what CI runs)

On a CPU the default sizes are the small ones of ``step_time --pairs --quick`` (a GPT-2 step in
8-bit takes seconds there); ``--workloads`` picks others on any backend.

It runs, in one process, the paired benchmark of :mod:`benchmarks.step_time` (each contender
against its optax reference, both live, every step in a random order) for float32 Adam and
AdamW, bfloat16 and 8-bit moments and ``with_diagnostics``, and measures the device's copy
bandwidth with a donated ``x + 1`` over one large float32 array (read once, written once).
Each Adam row also gives the bandwidth its step reaches (the 7 param-sized float32 arrays an Adam
step must read and write, divided by its median time) as a fraction of that copy bandwidth.

Writes ``benchmarks/results/gpu_report_<backend>_<device>.json`` and the same table as markdown
(``.md``), ready for docs/performance.md, and prints both paths.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

import adamjax
from benchmarks import step_time as st
from benchmarks.workloads import count, gpt2_small_shapes

#: Bytes of one float32 Adam step per parameter: params, grads, m and v read; params, m, v written.
ADAM_BYTES = 7 * 4


def contenders() -> list[st.Contender]:
    """The rows: float32 Adam/AdamW, low-precision moments and diagnostics, each with its optax
    reference (``arrays`` as in :class:`benchmarks.step_time.Contender`)."""
    lr, wd = st.LR, st.WD
    adamw = adamjax.adamw(lr, weight_decay=wd)
    return [
        st.Contender("optax.adam", 7, optax.adam(lr)),
        st.Contender("optax.adamw", 7, optax.adamw(lr, weight_decay=wd)),
        st.Contender("adamjax.adam", 7, adamjax.adam(lr), reference="optax.adam"),
        st.Contender("adamjax.adamw", 7, adamw, reference="optax.adamw"),
        st.Contender(
            "adamjax.adam(bf16 moments)",
            5,
            adamjax.adam(lr, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
            reference="optax.adam",
        ),
        st.Contender(
            "adamjax.adam(bf16 stored moments)",
            5,
            adamjax.adam(lr, **adamjax.moment_presets()["bfloat16-stored"]),
            reference="optax.adam",
        ),
        st.Contender(
            "adamjax.adam(q8 moments)",
            3 + 2 * (0.5 + 2 / 256),
            adamjax.adam(lr, mu_dtype=adamjax.q8(), nu_dtype=adamjax.q8()),
            reference="optax.adam",
        ),
        st.Contender(
            "with_diagnostics(adamjax.adamw)",
            7,
            adamjax.with_diagnostics(adamw),
            reference="optax.adamw",
        ),
    ]


def workloads(quick: bool) -> dict[str, dict[str, tuple[int, ...]]]:
    """The trees to time: tiny ones with ``quick``, small ones on a CPU, GPT-2 and 1x64M on an
    accelerator."""
    if quick:
        return {name: st.uniform_tree(name) for name in ("1x64k", "16x4k")}
    if jax.default_backend() == "cpu":
        return {name: st.uniform_tree(name) for name in ("1x4M", "100x16k")}
    return {"gpt2-small": gpt2_small_shapes(), "1x64M": st.uniform_tree("1x64M")}


def copy_bandwidth(entries: int, reps: int) -> dict[str, float]:
    """Bytes per second of a donated ``x + 1`` over ``entries`` float32 values (read and written
    once each), the median of ``reps`` timed calls after one untimed call."""
    step = jax.jit(lambda x: x + 1, donate_argnums=0)
    x = step(jnp.zeros(entries, jnp.float32))
    jax.block_until_ready(x)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        x = step(x)
        jax.block_until_ready(x)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"entries": entries, "seconds": seconds, "gb_per_s": 2 * 4 * entries / seconds / 1e9}


def table(results: dict, bandwidth: dict[str, float]) -> str:
    """The report as markdown: one row per contender and workload."""
    lines = [
        f"Copy bandwidth: {bandwidth['gb_per_s']:.1f} GB/s (donated `x + 1` over "
        f"{bandwidth['entries']:,} float32 values).",
        "",
        "| workload | contender | reference | ms | reference ms | ratio | 95% interval "
        "| Adam GB/s | of copy |",
        "|---|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for workload, result in results.items():
        for name, r in result["rows"].items():
            gbps, share = r.get("adam_gb_per_s"), r.get("of_copy_bandwidth")
            lines.append(
                f"| {workload} | {name} | {r['reference']} | {r['ms']:.3f} "
                f"| {r['reference_ms']:.3f} | {r['ratio']:.3f} | {r['low']:.3f}–{r['high']:.3f} "
                f"| {'' if gbps is None else f'{gbps:.1f}'} "
                f"| {'' if share is None else f'{share:.0%}'} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny trees, a few seconds")
    parser.add_argument("--workloads", nargs="+", default=None, help="e.g. gpt2-small 1x16M")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=st.RESULTS)
    args = parser.parse_args(argv)
    info = st.machine()
    print(" ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    selected = workloads(args.quick)
    if args.workloads:
        named = {"gpt2-small": gpt2_small_shapes()}
        selected = {k: named[k] if k in named else st.uniform_tree(k) for k in args.workloads}
    rounds = args.rounds or (2 if args.quick else 6)
    steps = args.steps or (2 if args.quick else 8)
    largest = max(count(shapes) for shapes in selected.values())
    bandwidth = copy_bandwidth(largest, reps=5 if args.quick else 30)
    print(f"copy bandwidth {bandwidth['gb_per_s']:.1f} GB/s", flush=True)
    results = {}
    for name, shapes in selected.items():
        print(f"\n**{name}** ({len(shapes)} leaves, {count(shapes):,} float32 parameters)")
        print(f"{rounds} rounds of {steps} interleaved steps\n\n{st.PAIRS_HEADER}", flush=True)
        result = st.run_pairs(name, shapes, contenders(), rounds, steps)
        for row_name, r in result["rows"].items():
            if row_name in ("adamjax.adam", "adamjax.adamw"):
                r["adam_gb_per_s"] = ADAM_BYTES * result["params"] / (r["ms"] * 1e-3) / 1e9
                r["of_copy_bandwidth"] = r["adam_gb_per_s"] / bandwidth["gb_per_s"]
        results[name] = result
    report = {
        "machine": info,
        "rounds": rounds,
        "steps": steps,
        "copy_bandwidth": bandwidth,
        "results": results,
    }
    tag = f"{info['backend']}_{info['device_kind']}".lower().replace(" ", "-")
    suffix = "_quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu_report_{tag}{suffix}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    markdown = table(results, bandwidth)
    path.with_suffix(".md").write_text(markdown + "\n")
    print(f"\n{markdown}\n\nwrote {path}\nwrote {path.with_suffix('.md')}")
    return report


if __name__ == "__main__":
    main()
