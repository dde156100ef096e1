"""Time of one optimizer step: adamjax against optax, torch.optim and a memory roofline.

Run from the repository root::

    python -m benchmarks.step_time            # every workload (see below for how long)
    python -m benchmarks.step_time --quick    # smaller trees and fewer rounds, under 3 minutes
    python -m benchmarks.step_time --pairs    # each adamjax alias against optax, step by step
    python -m benchmarks.step_time --memory   # peak memory of a donated step, one process each

Every JAX contender runs ``params, state = step(params, state, grads)``: a jitted function that
donates ``params`` and ``state`` and applies ``tx.update`` then ``optax.apply_updates``. The torch
contenders run ``optimizer.step()`` on tensors whose ``.grad`` is set once. In one process, the
contenders take turns in rounds (each round builds fresh params and state for one contender, runs
one untimed step and then ``--steps`` timed steps, and frees them), so slow drifts of the
machine hit every contender alike and only one contender's arrays are alive at a time. The
table gives medians over every timed step.

Columns:

- ``ms``: median milliseconds per step.
- ``GB/s``: the minimum bytes a step must move divided by that time. An Adam step reads the
  params, grads and both moments and writes the params and both moments: 7 arrays of the
  params' size (AMSGrad 9, with the running maximum). The ``roofline`` contender moves exactly
  Adam's 7 arrays with one add each, and ``add`` is ``params + grads`` (3 arrays), a bandwidth
  probe.
- ``x optax``, ``x torch fused``, ``x roofline``: time ratios to the same algorithm in optax, to
  torch's fused step and to the roofline, all from the same run. ``optax.adam (again)`` is an
  A/A control: the same program as ``optax.adam``, so its ratio is the run's noise.
- ``compile s``: ``jit(step).lower(...).compile()`` time (JAX only).
- ``state B/param``: bytes of the optimizer state per parameter.

On the 2-core CPU the 8-bit contender alone takes about a second per gpt2-small step, and
10000x1k is bound by compilation: XLA takes 4-5 minutes and about 14 GB of memory to compile
one contender's step for 10,000 leaves, so select contenders for it with ``--contenders``.
``--compile-only REPS`` times only the compilations (``--isolate``: each in a fresh process).
``--pairs`` times each adamjax contender against its optax reference, both live, every step in
a random order, and gives the ratio with a bootstrap interval over rounds.

Results go to stdout as markdown and to ``benchmarks/results/step_time_<backend>_<device>.json``;
``docs/performance.md`` records the latest tables and the machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adamjax
from benchmarks.workloads import allocator, count, gpt2_small_shapes

LR, WD = 1e-3, 1e-2
RESULTS = Path(__file__).parent / "results"


def workloads(quick: bool) -> dict[str, dict[str, tuple[int, ...]]]:
    """Name -> shapes of the parameter tree. Quick mode keeps one large leaf, a tree of
    medium leaves and one of small leaves, small enough to compile every contender quickly."""
    if quick:
        return {name: uniform_tree(name) for name in ("1x4M", "100x16k", "500x1k")}
    return {
        **{name: uniform_tree(name) for name in ("1x16M", "1x64M", "1000x16k", "10000x1k")},
        "gpt2-small": gpt2_small_shapes(),
    }


def uniform_tree(name: str) -> dict[str, tuple[int, ...]]:
    """The tree a name such as ``2000x1k`` or ``4x16M`` describes: that many 1-D leaves of that
    size (``k`` = 1024, ``M`` = 1024**2), for workloads the table above does not hold."""
    match = re.fullmatch(r"(\d+)x(\d+)([kM]?)", name)
    if not match:
        raise SystemExit(f"unknown workload {name!r}: use a named one or LEAVESxSIZE, e.g. 2000x1k")
    leaves, size = int(match[1]), int(match[2]) * {"": 1, "k": 1 << 10, "M": 1 << 20}[match[3]]
    width = len(str(leaves - 1))
    return {f"w{i:0{width}d}": (size,) for i in range(leaves)}


@dataclass(frozen=True)
class Contender:
    """One optimizer step to time. ``arrays`` is the minimum number of param-sized float32 arrays
    a step reads plus writes (fractional for states of fewer bytes: a bfloat16 moment read and
    written counts 1, an 8-bit one 0.5 plus its scales); ``reference`` names the optax
    contender it is compared with."""

    name: str
    arrays: float
    tx: optax.GradientTransformation | None = None
    kernel: Callable | None = None
    kernel_state: bool = True
    torch: dict[str, Any] | None = None
    reference: str | None = None


def _roofline(params, state, grads):
    """Reads params, grads and two moment-sized arrays, writes params and both: Adam's bytes."""
    m, v = state
    m = jax.tree.map(lambda a, g: a + g, m, grads)
    v = jax.tree.map(lambda a, g: a + g, v, grads)
    params = jax.tree.map(lambda p, a: p + a, params, m)
    return params, (m, v)


def _add(params, state, grads):
    return jax.tree.map(lambda p, g: p + g, params, grads), state


def contenders(with_torch: bool) -> list[Contender]:
    out = [
        Contender("optax.adam", 7, optax.adam(LR)),
        Contender("adamjax.adam", 7, adamjax.adam(LR), reference="optax.adam"),
        # An A/A control: optax.adam again, as a separate contender. Its ratio to optax.adam shows
        # how far two runs of the same program differ on this machine.
        Contender("optax.adam (again)", 7, optax.adam(LR), reference="optax.adam"),
        Contender("optax.adamw", 7, optax.adamw(LR, weight_decay=WD)),
        Contender("adamjax.adamw", 7, adamjax.adamw(LR, weight_decay=WD), reference="optax.adamw"),
        # Low-precision moments, against float32 optax.adam. The arrays: params and grads read,
        # params written (3), plus each moment read and written at 2 bytes (1 array) or at
        # 1 byte and a float32 scale per 256 entries (0.5 + 2/256).
        Contender(
            "adamjax.adam(bf16 moments)",
            5,
            adamjax.adam(LR, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
            reference="optax.adam",
        ),
        Contender(
            "adamjax.adam(bf16 stored moments)",
            5,
            adamjax.adam(LR, **adamjax.moment_presets()["bfloat16-stored"]),
            reference="optax.adam",
        ),
        Contender(
            "adamjax.adam(q8 moments)",
            3 + 2 * (0.5 + 2 / 256),
            adamjax.adam(LR, mu_dtype=adamjax.q8(), nu_dtype=adamjax.q8()),
            reference="optax.adam",
        ),
        Contender("optax.amsgrad", 9, optax.amsgrad(LR)),
        Contender(
            "adamjax.amsgrad(corrected)",
            9,
            adamjax.amsgrad(LR, max_of="corrected"),
            reference="optax.amsgrad",
        ),
        Contender("adamjax.amsgrad(raw)", 9, adamjax.amsgrad(LR), reference="optax.amsgrad"),
        Contender("optax.nadam", 7, optax.nadam(LR)),
        Contender(
            "adamjax.adam(nesterov)", 7, adamjax.adam(LR, nesterov=True), reference="optax.nadam"
        ),
        Contender("adamjax.nadam", 7, adamjax.nadam(LR), reference="optax.nadam"),
        Contender("roofline", 7, kernel=_roofline),
        Contender("add", 3, kernel=_add, kernel_state=False),
    ]
    if with_torch:
        for impl in ("fused", "foreach"):
            out.append(Contender(f"torch.Adam({impl})", 7, torch={"cls": "Adam", impl: True}))
            out.append(
                Contender(
                    f"torch.AdamW({impl})",
                    7,
                    torch={"cls": "AdamW", impl: True, "weight_decay": WD},
                )
            )
    return out


def train_step(tx: optax.GradientTransformation) -> Callable:
    """The step every JAX contender runs: ``tx.update`` then ``optax.apply_updates``."""

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return step


def _fill(shapes: dict[str, tuple[int, ...]], seed: int, scale: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (scale * rng.standard_normal(s, dtype=np.float32)) for k, s in shapes.items()}


class Runner:
    """A contender's steps: ``start`` makes fresh live arrays (and runs one untimed step),
    ``tick`` times one step on them, ``stop`` frees them."""

    live: Any = None

    def start(self) -> None:
        raise NotImplementedError

    def tick(self) -> float:
        raise NotImplementedError

    def stop(self) -> None:
        self.live = None

    def round(self, steps: int) -> list[float]:
        self.start()
        times = [self.tick() for _ in range(steps)]
        self.stop()
        return times


class JaxRunner(Runner):
    """Compiles a contender's donated step once; ``round`` builds fresh arrays and times steps."""

    def __init__(self, contender: Contender, host_params: dict, grads: dict):
        self.contender = contender
        self.host_params = host_params
        self.grads = grads
        if contender.tx is not None:
            step = train_step(contender.tx)
            self.init = contender.tx.init
        else:
            step = contender.kernel
            moments = lambda p: (jax.tree.map(jnp.zeros_like, p), jax.tree.map(jnp.zeros_like, p))  # noqa: E731
            self.init = moments if contender.kernel_state else lambda p: ()
        params = self._params()
        state = jax.jit(self.init)(params)
        self.state_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
        start = time.perf_counter()
        self.compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()
        self.compile_s = time.perf_counter() - start
        self.fusions = entry_fusions(self.compiled.as_text())
        del params, state

    def _params(self) -> dict:
        return jax.tree.map(jnp.asarray, self.host_params)

    def start(self) -> None:
        """Fresh params and state, and one untimed step (the first touch of the new buffers)."""
        params = self._params()
        state = jax.jit(self.init)(params)
        self.live = self.compiled(params, state, self.grads)
        jax.block_until_ready(self.live)

    def tick(self) -> float:
        """Seconds of one step on the live arrays."""
        start = time.perf_counter()
        self.live = self.compiled(*self.live, self.grads)
        jax.block_until_ready(self.live)
        return time.perf_counter() - start


class TorchRunner(Runner):
    """``torch.optim.Adam/AdamW`` with ``fused`` or ``foreach``, same rounds as ``JaxRunner``."""

    def __init__(self, contender: Contender, host_params: dict, host_grads: dict):
        import torch

        self.torch = torch
        self.contender = contender
        self.host_params = host_params
        self.host_grads = {k: torch.from_numpy(v) for k, v in host_grads.items()}
        self.compile_s = float("nan")
        self.fusions = None
        self.state_bytes = 2 * sum(v.nbytes for v in host_params.values()) + 4  # m, v, step

    def _optimizer(self):
        options = dict(self.contender.torch)
        cls = getattr(self.torch.optim, options.pop("cls"))
        params = []
        for k, v in self.host_params.items():
            p = self.torch.nn.Parameter(self.torch.from_numpy(v.copy()))
            p.grad = self.host_grads[k]
            params.append(p)
        return params, cls(params, lr=LR, **options)

    def start(self) -> None:
        self.live = self._optimizer()
        self.live[1].step()  # untimed: allocates the state

    def tick(self) -> float:
        start = time.perf_counter()
        self.live[1].step()
        return time.perf_counter() - start


def entry_fusions(hlo: str) -> int:
    """Number of fusion kernels the compiled step's entry computation launches."""
    entry = hlo[hlo.index("ENTRY") :]
    entry = entry[: entry.index("\n}")]
    return sum(1 for line in entry.splitlines() if " fusion(" in line or "kind=k" in line)


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def run_workload(
    name: str, shapes, contenders_: list[Contender], rounds: int, steps: int, seed: int = 0
) -> dict:
    n = count(shapes)
    host_params = _fill(shapes, 0, 1.0)
    host_grads = _fill(shapes, 1, 1e-2)
    grads = jax.tree.map(jnp.asarray, host_grads)
    runners = {}
    for c in contenders_:
        runners[c.name] = (TorchRunner if c.torch else JaxRunner)(
            c, host_params, grads if not c.torch else host_grads
        )
    times: dict[str, list[float]] = {c.name: [] for c in contenders_}
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        # A fresh random order every round, so that no contender has a fixed place or neighbour.
        for i in rng.permutation(len(contenders_)):
            c = contenders_[i]
            times[c.name] += runners[c.name].round(steps)
            gc.collect()
    rows = {}
    for c in contenders_:
        ms = 1e3 * statistics.median(times[c.name])
        rows[c.name] = {
            "ms": ms,
            "ms_all": [1e3 * t for t in times[c.name]],
            "gb_per_s": c.arrays * 4 * n / (ms * 1e-3) / 1e9,
            "bytes_moved": c.arrays * 4 * n,
            "compile_s": runners[c.name].compile_s,
            "state_bytes_per_param": runners[c.name].state_bytes / n,
            "fusions": runners[c.name].fusions,
            "reference": c.reference,
        }
    for c in contenders_:
        row = rows[c.name]
        ref = rows.get(c.reference) if c.reference else None
        row["x_optax"] = row["ms"] / ref["ms"] if ref else None
        fused = rows.get("torch.AdamW(fused)" if "adamw" in c.name.lower() else "torch.Adam(fused)")
        row["x_torch_fused"] = row["ms"] / fused["ms"] if fused else None
        row["x_roofline"] = row["ms"] / rows["roofline"]["ms"]
        row["compile_x_optax"] = (
            row["compile_s"] / ref["compile_s"] if ref and np.isfinite(row["compile_s"]) else None
        )
    return {"leaves": len(shapes), "params": n, "rows": rows}


def _flat(rounds: list[list[float]]) -> list[float]:
    return [t for r in rounds for t in r]


def ratio_interval(
    a: list[list[float]], b: list[list[float]], rng: np.random.Generator, resamples: int = 2000
) -> dict[str, float]:
    """Ratio of median step times of ``a`` to ``b`` (``a[r]``: the times of round ``r``), with a
    95% bootstrap interval that resamples whole rounds, and the median of the step-by-step
    ratios (each step of ``a`` next to the step of ``b`` it was interleaved with)."""
    rounds = len(a)
    ratio = statistics.median(_flat(a)) / statistics.median(_flat(b))
    boot = []
    for _ in range(resamples):
        pick = rng.integers(0, rounds, rounds)
        boot.append(
            statistics.median([t for r in pick for t in a[r]])
            / statistics.median([t for r in pick for t in b[r]])
        )
    low, high = np.percentile(boot, [2.5, 97.5])
    steps = zip(_flat(a), _flat(b), strict=True)
    paired = statistics.median(x / y for x, y in steps)
    return {"ratio": ratio, "low": float(low), "high": float(high), "paired": paired}


def run_pairs(
    name: str, shapes, contenders_: list[Contender], rounds: int, steps: int, seed: int = 0
) -> dict:
    """Each contender against its optax reference, step by step: both hold live arrays, and
    every step runs the two in a random order. Slow phases of a shared machine then hit both
    sides of a ratio alike, which round-by-round turns cannot promise."""
    host_params = _fill(shapes, 0, 1.0)
    grads = jax.tree.map(jnp.asarray, _fill(shapes, 1, 1e-2))
    names = {c.name: c for c in contenders_}
    pairs = [
        (c.name, c.reference) for c in contenders_ if c.tx is not None and c.reference in names
    ]
    uses = {c: sum(c in pair for pair in pairs) for c in names}
    runners: dict[str, JaxRunner] = {}
    rng = np.random.default_rng(seed)
    rows = {}
    for a, b in pairs:
        for c in (a, b):
            if c not in runners:
                runners[c] = JaxRunner(names[c], host_params, grads)
        ta, tb = [], []
        for _ in range(rounds):
            runners[a].start()
            runners[b].start()
            xa, xb = [], []
            for _ in range(steps):
                if rng.random() < 0.5:
                    xa.append(runners[a].tick())
                    xb.append(runners[b].tick())
                else:
                    xb.append(runners[b].tick())
                    xa.append(runners[a].tick())
            runners[a].stop()
            runners[b].stop()
            gc.collect()
            ta.append(xa)
            tb.append(xb)
        rows[a] = {
            "reference": b,
            "ms": 1e3 * statistics.median(_flat(ta)),
            "reference_ms": 1e3 * statistics.median(_flat(tb)),
            "ms_all": [[1e3 * t for t in r] for r in ta],
            "reference_ms_all": [[1e3 * t for t in r] for r in tb],
            **ratio_interval(ta, tb, rng),
        }
        print(pairs_row(a, rows[a]), flush=True)
        for c in (a, b):  # compiled steps of 10,000 leaves are large: keep only what is needed
            uses[c] -= 1
            if uses[c] == 0:
                del runners[c]
        gc.collect()
    return {"leaves": len(shapes), "params": count(shapes), "rows": rows}


PAIRS_HEADER = (
    "| contender | reference | ms | reference ms | ratio | 95% interval | paired median |\n"
    "|---|---|---:|---:|---:|---|---:|"
)


def pairs_row(name: str, r: dict) -> str:
    return (
        f"| {name} | {r['reference']} | {r['ms']:.2f} | {r['reference_ms']:.2f} "
        f"| {r['ratio']:.3f} | {r['low']:.3f}–{r['high']:.3f} | {r['paired']:.3f} |"
    )


def compile_times(
    shapes, contenders_: list[Contender], reps: int, isolate: str | None = None
) -> dict[str, list[dict[str, float]]]:
    """``lower().compile()`` seconds of each JAX contender's step, ``reps`` times, alternating
    contenders so that the machine's drift hits them alike (JAX's compilation cache is per
    ``jit`` object, and each repetition makes a new one). With ``isolate`` (the workload's name),
    every compilation runs in a fresh process, which also reports its peak resident memory: no
    other executable is alive, and the memory of one compilation cannot slow the next."""
    params = None if isolate else jax.tree.map(jnp.asarray, _fill(shapes, 0, 1.0))
    out: dict[str, list[dict[str, float]]] = {c.name: [] for c in contenders_ if c.tx is not None}
    for _ in range(reps):
        for c in contenders_:
            if c.tx is None:
                continue
            if isolate:
                out[c.name].append(_child("--compile-child", c.name, isolate))
                continue
            start = time.perf_counter()
            jit = jax.jit(train_step(c.tx), donate_argnums=(0, 1))
            jit.lower(params, c.tx.init(params), params).compile()
            out[c.name].append({"seconds": time.perf_counter() - start})
    return out


def compile_child(name: str, workload: str) -> None:
    """In a fresh process: one compilation of ``name``'s step, its seconds and peak memory."""
    known = {**workloads(True), **workloads(False)}
    shapes = known[workload] if workload in known else uniform_tree(workload)
    tx = {c.name: c for c in contenders(False)}[name].tx
    params = jax.tree.map(jnp.asarray, _fill(shapes, 0, 1.0))
    state = tx.init(params)
    start = time.perf_counter()
    jax.jit(train_step(tx), donate_argnums=(0, 1)).lower(params, state, params).compile()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_rss": peak}))


def _child(flag: str, name: str, workload: str) -> dict[str, Any]:
    """Runs ``--memory-child`` or ``--compile-child`` in a fresh interpreter; its last line."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.step_time", flag, name, workload],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fmt(x: float | None, spec: str) -> str:
    return "" if x is None or not np.isfinite(x) else format(x, spec)


def markdown(name: str, result: dict) -> str:
    lines = [
        f"**{name}** ({result['leaves']} leaves, {result['params']:,} float32 parameters)",
        "",
        "| contender | ms | GB/s | x optax | x torch fused | x roofline | compile s "
        "| compile x optax | fusions | state B/param |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c, r in result["rows"].items():
        lines.append(
            f"| {c} | {r['ms']:.2f} | {r['gb_per_s']:.1f} | {_fmt(r['x_optax'], '.3f')} "
            f"| {_fmt(r['x_torch_fused'], '.2f')} | {r['x_roofline']:.2f} "
            f"| {_fmt(r['compile_s'], '.2f')} | {_fmt(r['compile_x_optax'], '.2f')} "
            f"| {'' if r['fusions'] is None else r['fusions']} | {r['state_bytes_per_param']:.2f} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    info = {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "optax": optax.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "allocator": allocator(),
    }
    if _torch_available():
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


# ---- peak memory ------------------------------------------------------------------------------


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _memory_now() -> int:
    """Bytes in use: the process's resident set on CPU, the device allocator's count elsewhere."""
    if jax.default_backend() == "cpu":
        return _rss_now()
    return jax.devices()[0].memory_stats()["bytes_in_use"]


def _reset_peak() -> None:
    """Starts the peak count afresh, so that it covers the steps and not the set-up's temporaries
    (Linux: writing 5 to ``/proc/self/clear_refs`` resets the resident-set high-water mark)."""
    if jax.default_backend() == "cpu":
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def _memory_peak() -> int:
    if jax.default_backend() == "cpu":
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    return jax.devices()[0].memory_stats()["peak_bytes_in_use"]


def memory_child(name: str, workload: str) -> None:
    """In a fresh process: the peak memory of a donated step of ``name`` above the baseline of a
    started runtime, next to the bytes of params, grads and state."""
    shapes = workloads(False)[workload]
    contender = {c.name: c for c in contenders(False)}[name]
    jax.block_until_ready(jax.jit(lambda x: x + 1)(jnp.zeros(8)))  # the runtime's own memory
    baseline = _memory_now()
    params = jax.tree.map(jnp.asarray, _fill(shapes, 0, 1.0))
    grads = jax.tree.map(jnp.asarray, _fill(shapes, 1, 1e-2))
    gc.collect()  # the host arrays _fill made
    state = contender.tx.init(params)
    step = jax.jit(train_step(contender.tx), donate_argnums=(0, 1))
    compiled = step.lower(params, state, grads).compile()
    jax.block_until_ready((params, state, grads))
    _reset_peak()
    for _ in range(3):
        params, state = compiled(params, state, grads)
    jax.block_until_ready((params, state))
    live = sum(x.nbytes for x in jax.tree.leaves((params, grads, state)))
    print(json.dumps({"baseline": baseline, "peak": _memory_peak(), "live": live}))


def memory(workload: str) -> dict[str, Any]:
    """Runs ``memory_child`` for every JAX optimizer contender in its own process."""
    results = {}
    for c in contenders(False):
        if c.tx is None:
            continue
        r = _child("--memory-child", c.name, workload)
        r["peak_over_live"] = (r["peak"] - r["baseline"]) / r["live"]
        results[c.name] = r
        print(
            f"| {c.name} | {r['live'] / 2**20:.0f} | {(r['peak'] - r['baseline']) / 2**20:.0f} "
            f"| {r['peak_over_live']:.3f} |",
            flush=True,
        )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller trees, fewer rounds")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per contender")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round")
    parser.add_argument("--workloads", nargs="+", default=None, help="a subset, by name")
    parser.add_argument("--contenders", nargs="+", default=None, help="a subset, by name")
    parser.add_argument("--no-torch", action="store_true", help="skip torch even if installed")
    parser.add_argument("--memory", action="store_true", help="peak memory instead of time")
    parser.add_argument(
        "--pairs",
        action="store_true",
        help="each adamjax contender against its optax reference, interleaved step by step",
    )
    parser.add_argument(
        "--compile-only", type=int, metavar="REPS", help="only compile times, REPS times each"
    )
    parser.add_argument("--memory-workload", default="1x64M")
    parser.add_argument(
        "--isolate", action="store_true", help="with --compile-only: one process per compilation"
    )
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--compile-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    if args.compile_child:
        compile_child(*args.compile_child)
        return
    info = machine()
    print(" ".join(f"{k}={v}" for k, v in info.items()))
    tag = f"{info['backend']}_{info['device_kind']}".lower().replace(" ", "-")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.memory:
        print(f"\npeak memory of a donated step, {args.memory_workload}\n")
        print("| contender | params+grads+state MiB | peak RSS above baseline MiB | ratio |")
        print("|---|---:|---:|---:|")
        results = memory(args.memory_workload)
        path = args.out / f"step_memory_{tag}.json"
        path.write_text(json.dumps({"machine": info, "workload": args.memory_workload,
                                    "results": results}, indent=2) + "\n")  # fmt: skip
        print(f"\nwrote {path}")
        return
    rounds = args.rounds or (3 if args.quick else 5)
    steps = args.steps or (3 if args.quick else 4)
    with_torch = _torch_available() and not args.no_torch
    selected = workloads(args.quick)
    if args.workloads:
        known = {**workloads(True), **workloads(False)}
        selected = {k: known[k] if k in known else uniform_tree(k) for k in args.workloads}
    chosen = contenders(with_torch)
    if args.contenders:
        # The roofline anchors every row's ratio, so it always runs.
        chosen = [c for c in chosen if c.name in args.contenders or c.name == "roofline"]
    suffix = "_quick" if args.quick else "_" + "_".join(selected) if args.workloads else ""
    if args.compile_only:
        path = args.out / f"compile_time_{tag}{suffix}.json"
        results = {}
        for name, shapes in selected.items():
            runs = compile_times(shapes, chosen, args.compile_only, name if args.isolate else None)
            base = {c.name: c.reference for c in chosen}
            results[name] = {"leaves": len(shapes), "isolated": args.isolate, "runs": runs}
            print(f"\n**{name}** compile seconds (median of {args.compile_only})\n")
            print("| contender | compile s | x optax | peak RSS GB |\n|---|---:|---:|---:|")
            med = {c: statistics.median(r["seconds"] for r in rs) for c, rs in runs.items()}
            for c, rs in runs.items():
                ref = med.get(base[c]) if base.get(c) else None
                peak = max(r.get("peak_rss", float("nan")) for r in rs) / 1e9
                print(f"| {c} | {med[c]:.2f} | {_fmt(med[c] / ref if ref else None, '.2f')} "
                      f"| {_fmt(peak, '.1f')} |")  # fmt: skip
        path.write_text(json.dumps({"machine": info, "results": results}, indent=2) + "\n")
        print(f"\nwrote {path}")
        return
    if args.pairs:
        rounds, steps = args.rounds or (4 if args.quick else 8), args.steps or 8
        path = args.out / f"step_pairs_{tag}{suffix}.json"
        results = {}
        for name, shapes in selected.items():
            start = time.perf_counter()
            print(f"\n**{name}** ({len(shapes)} leaves, {count(shapes):,} float32 parameters)")
            print(f"{rounds} rounds of {steps} interleaved steps\n\n{PAIRS_HEADER}", flush=True)
            results[name] = run_pairs(name, shapes, chosen, rounds, steps)
            print(f"({time.perf_counter() - start:.0f} s)", flush=True)
            path.write_text(json.dumps({"machine": info, "rounds": rounds, "steps": steps,
                                        "results": results}, indent=2) + "\n")  # fmt: skip
        print(f"\nwrote {path}")
        return
    path = args.out / f"step_time_{tag}{suffix}.json"
    results = {}
    for name, shapes in selected.items():
        start = time.perf_counter()
        results[name] = run_workload(name, shapes, chosen, rounds, steps)
        print(
            f"\n{markdown(name, results[name])}\n({time.perf_counter() - start:.0f} s)", flush=True
        )
        # Written after every workload, so that a long run that is stopped keeps what it measured.
        path.write_text(json.dumps({"machine": info, "rounds": rounds, "steps": steps,
                                    "results": results}, indent=2) + "\n")  # fmt: skip
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
