"""Prototype fused CPU kernels (XLA FFI, C++) against the XLA steps they would replace.

Run as ``python -m benchmarks.fused_cpu [--quick] [--rounds N]``. It compiles
``benchmarks/fused_cpu.cc`` with ``g++`` (OpenMP, ``-march=native``), registers its three
kernels with ``jax.ffi`` and, before timing anything, checks them against adamjax:

- ``AdamW``: Adam(W) on one leaf in one pass, moments and params updated in place;
- ``AdamWStats``: the same, also returning the sums and extremes ``with_diagnostics`` reduces;
- ``Q8Adam``: Adam with both moments stored in adamjax's ``q8()`` dynamic map, decoded, updated
  and encoded again in the same pass.

Then three groups, each timed in one process with interleaved repetitions of jitted, donated
steps, report medians and ratios to the group's first contender: ``optax.adam`` against
``adamjax.adam`` and the fused Adam; ``optax.adam`` against adamjax's q8 Adam and the fused q8
Adam; ``adamjax.adamw`` against ``with_diagnostics(adamw)`` and the fused AdamW with its
statistics. Workloads: one 16M leaf and the GPT-2-small tree (``--quick``: tiny trees). The
compile seconds of every step are recorded too. JSON goes to
``benchmarks/results/fused_cpu_<backend>_<device>.json``.

This is a measurement, not a feature: the kernels cover float32 Adam(W) only, on CPU only,
without sharding rules, differentiation or vmap, and they are not part of the package (see
docs/performance.md, "A fused CPU kernel, measured").
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adamjax
from adamjax import _formats
from benchmarks.workloads import allocator, count, gpt2_small_shapes, random_tree

SOURCE = Path(__file__).with_suffix(".cc")
FLAGS = ["-std=c++17", "-O3", "-march=native", "-fopenmp", "-fno-math-errno",
         "-fno-trapping-math", "-ffp-contract=off", "-shared", "-fPIC"]  # fmt: skip
LR, B1, B2, EPS, WD = 1e-3, 0.9, 0.999, 1e-8, 1e-2
_registered: list[Path] = []


def build() -> Path:
    """Compiles the kernels (once per source and flags) and returns the shared library."""
    digest = hashlib.sha256((SOURCE.read_text() + " ".join(FLAGS)).encode()).hexdigest()[:16]
    lib = Path(tempfile.gettempdir()) / f"adamjax_fused_cpu_{digest}.so"
    if not lib.exists():
        tmp = lib.with_name(f"{lib.stem}.{os.getpid()}.tmp.so")  # processes may build at once
        cmd = ["g++", *FLAGS, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", str(tmp)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        tmp.replace(lib)
    return lib


def register() -> None:
    if _registered:
        return
    path = build()
    lib = ctypes.cdll.LoadLibrary(str(path))
    for name in ("AdamW", "AdamWStats", "Q8Adam"):
        capsule = jax.ffi.pycapsule(getattr(lib, name))
        jax.ffi.register_ffi_target(f"adamjax_fused_{name}", capsule, platform="cpu")
    _registered.append(path)


def _scalars(count: jax.Array, wd: float) -> jax.Array:
    t = (count + 1).astype(jnp.float32)
    consts = [B1, B2, 1 - B1**t, 1 - B2**t, EPS, 0.0, LR, wd, 1 - B1, 1 - B2]
    return jnp.stack([jnp.asarray(c, jnp.float32) for c in consts])


def _adamw_call(stats: bool, g, p, m, v, scalars):
    like = jax.ShapeDtypeStruct(p.shape, jnp.float32)
    name = "adamjax_fused_AdamWStats" if stats else "adamjax_fused_AdamW"
    outs = (like, like, like, jax.ShapeDtypeStruct((8,), jnp.float32))
    call = jax.ffi.ffi_call(name, outs, input_output_aliases={1: 0, 2: 1, 3: 2})
    return call(g, p, m, v, scalars)


def _q8_call(g, p, mu, nu, scalars):
    tables = np.concatenate([_formats.code_table("dynamic", s) for s in (True, False)])
    outs = tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in (p, *mu, *nu))
    aliases = {1: 0, 2: 1, 3: 2, 4: 3, 5: 4}
    call = jax.ffi.ffi_call("adamjax_fused_Q8Adam", outs, input_output_aliases=aliases)
    p, mc, ms, vc, vs = call(g, p, mu.codes, mu.scale, nu.codes, nu.scale, tables, scalars)
    return p, mu._replace(codes=mc, scale=ms), nu._replace(codes=vc, scale=vs)


def fused_step(wd: float, stats: bool = False) -> Callable:
    """A step on the state of an adamjax Adam or AdamW (float32 or ``q8()`` moments; the
    module's hyperparameters) that updates every leaf with one kernel call; with ``stats``, it
    also returns the metrics of ``with_diagnostics`` that the kernels' sums give. It advances
    the state's ``count``, ``mu`` and ``nu`` only (not ``last_step``)."""

    def step(params, state, grads):
        adam = state[0]
        scalars = _scalars(adam.count, wd)
        leaves, treedef = jax.tree.flatten(params)
        new_p, new_m, new_v, sums = [], [], [], []
        mus = jax.tree.leaves(adam.mu, is_leaf=_formats.is_quantized)
        nus = jax.tree.leaves(adam.nu, is_leaf=_formats.is_quantized)
        for g, p, m, v in zip(jax.tree.leaves(grads), leaves, mus, nus, strict=True):
            if _formats.is_quantized(m):
                p, m, v = _q8_call(g, p, m, v, scalars)
            else:
                p, m, v, s = _adamw_call(stats, g, p, m, v, scalars)
                sums.append(s)
            new_p.append(p)
            new_m.append(m)
            new_v.append(v)
        adam = adam._replace(
            count=adam.count + 1,
            mu=jax.tree.unflatten(treedef, new_m),
            nu=jax.tree.unflatten(treedef, new_v),
        )
        params = jax.tree.unflatten(treedef, new_p)
        return (
            params,
            (adam, *state[1:]),
            (_metrics(jnp.stack(sums), leaves) if stats else None),
        )

    return step


def _metrics(sums: jax.Array, leaves: list[jax.Array]) -> dict[str, jax.Array]:
    """with_diagnostics' keys from the kernels' per-leaf sums and extremes of v_hat."""
    n = sum(x.size for x in leaves)
    total = jnp.sum(sums[:, :6], axis=0)

    def eta(v_hat: jax.Array) -> jax.Array:
        return jnp.float32(LR) / (jnp.sqrt(v_hat) + jnp.float32(EPS))

    return {
        "grad_norm": jnp.sqrt(total[0]),
        "param_norm": jnp.sqrt(total[1]),
        "update_norm": jnp.sqrt(total[2]),
        "m_hat/mean_abs": total[3] / n,
        "v_hat/mean": total[4] / n,
        "effective_lr/mean": total[5] / n,
        "effective_lr/max": eta(jnp.min(sums[:, 6])),
        "effective_lr/min": eta(jnp.max(sums[:, 7])),
    }


def xla_step(tx: optax.GradientTransformation, wrapped: bool = False) -> Callable:
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        return params, state, (adamjax.diagnostics(state) if wrapped else None)

    return step


def groups() -> dict[str, list[tuple[str, optax.GradientTransformation, Callable]]]:
    """Per group, ``(name, transformation whose init gives the state, step)``; the first is the
    group's reference."""
    adam, adamw = adamjax.adam(LR), adamjax.adamw(LR, weight_decay=WD)
    q8 = adamjax.adam(LR, mu_dtype=adamjax.q8(), nu_dtype=adamjax.q8())
    wrapped = adamjax.with_diagnostics(adamw)
    reference = optax.adam(LR)
    return {
        "adam": [
            ("optax.adam", reference, xla_step(reference)),
            ("adamjax.adam", adam, xla_step(adam)),
            ("fused adam", adam, fused_step(0.0)),
        ],
        "q8": [
            ("optax.adam", reference, xla_step(reference)),
            ("adamjax.adam(q8)", q8, xla_step(q8)),
            ("fused adam(q8)", q8, fused_step(0.0)),
        ],
        "diagnostics": [
            ("adamjax.adamw", adamw, xla_step(adamw)),
            ("with_diagnostics(adamw)", wrapped, xla_step(wrapped, True)),
            ("fused adamw + statistics", adamw, fused_step(WD, stats=True)),
        ],
    }


def _copy(tree):
    return jax.tree.map(lambda x: x + 0, tree)


def check(shapes: dict[str, tuple[int, ...]], steps: int = 3) -> dict[str, float]:
    """Runs each fused step beside adamjax's from the same state and returns the largest
    deviations: of the params, in float32 ulps of each leaf's largest magnitude (after
    ``steps`` steps; 1 for q8); of the q8 codes (the fraction that differ) and scales
    (relative), after one step; of each metric of ``with_diagnostics`` (relative)."""
    register()
    grads = random_tree(shapes, 1, 1e-3)
    found: dict[str, float] = {}

    def worst(key: str, value: float) -> None:
        found[key] = max(found.get(key, 0.0), value)

    for name, members in groups().items():
        (_, tx, xla), (_, fused_tx, fused) = members[1], members[2]
        # AdamW's params of magnitude 100, so that the decay (wd * p) weighs as much as Adam's
        # direction in the updates and their norm.
        params = random_tree(shapes, 0, 100.0 if name == "diagnostics" else 1.0)
        # From states that adamjax's own step reached, so that the moments are not zero.
        ref = jax.jit(xla)(_copy(params), tx.init(params), grads)
        got = jax.jit(xla_step(fused_tx))(_copy(params), fused_tx.init(params), grads)
        for _ in range(1 if name == "q8" else steps):
            ref = jax.jit(xla)(_copy(ref[0]), _copy(ref[1]), grads)
            got = jax.jit(fused)(_copy(got[0]), _copy(got[1]), grads)
        for a, b in zip(jax.tree.leaves(ref[0]), jax.tree.leaves(got[0]), strict=True):
            ulp = np.spacing(np.float32(jnp.max(jnp.abs(a))))
            worst(f"{name}: params, ulps", float(jnp.max(jnp.abs(a - b))) / float(ulp))
        if name == "q8":
            ref_state, got_state = ref[1][0], got[1][0]  # the chains' ScaleByAdamState
            for field in ("mu", "nu"):
                pairs = zip(
                    jax.tree.leaves(getattr(ref_state, field), is_leaf=_formats.is_quantized),
                    jax.tree.leaves(getattr(got_state, field), is_leaf=_formats.is_quantized),
                    strict=True,
                )
                for a, b in pairs:
                    if _formats.is_quantized(a):
                        worst(f"q8 {field}: codes differing", float(jnp.mean(a.codes != b.codes)))
                        rel = jnp.max(jnp.abs(b.scale / a.scale - 1))
                        worst(f"q8 {field}: scale, relative", float(rel))
        if name == "diagnostics":
            for key, value in got[2].items():
                worst(f"metric {key}, relative", abs(float(value) / float(ref[2][key]) - 1))
    return found


def time_group(members, shapes, rounds: int) -> list[dict]:
    params, grads = random_tree(shapes, 0), random_tree(shapes, 1, 1e-3)
    runs = []
    for name, tx, step in members:
        p = _copy(params)
        state = tx.init(p)
        t0 = time.perf_counter()
        compiled = jax.jit(step, donate_argnums=(0, 1)).lower(p, state, grads).compile()
        compile_s = time.perf_counter() - t0
        for _ in range(3):
            p, state, out = compiled(p, state, grads)
        jax.block_until_ready((p, state, out))
        runs.append(dict(name=name, compiled=compiled, p=p, state=state, times=[],
                         compile_s=compile_s))  # fmt: skip
    for _ in range(rounds):  # interleaved
        for run in runs:
            t0 = time.perf_counter()
            run["p"], run["state"], out = run["compiled"](run["p"], run["state"], grads)
            jax.block_until_ready((run["p"], run["state"], out))
            run["times"].append(time.perf_counter() - t0)
    base = statistics.median(runs[0]["times"])
    return [
        dict(contender=r["name"], median_ms=statistics.median(r["times"]) * 1e3,
             ratio=statistics.median(r["times"]) / base, compile_s=r["compile_s"])
        for r in runs
    ]  # fmt: skip


def workloads(quick: bool) -> dict[str, dict[str, tuple[int, ...]]]:
    if quick:
        return {"1x64k": {"w": (256, 256)}, "3 leaves": {"a": (64, 512), "b": (1024,), "c": (7,)}}
    return {"1x16M": {"w": (4096, 4096)}, "gpt2-small": gpt2_small_shapes()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny trees, for a test")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved repetitions")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    register()
    report: dict = {"checks": {}, "results": {}}
    for wname, shapes in workloads(args.quick).items():
        report["checks"][wname] = check(shapes) if args.quick or wname == "1x16M" else None
        report["results"][wname] = {}
        print(f"\n{wname}: {len(shapes)} leaves, {count(shapes):,} parameters")
        print("| group | contender | median ms | ratio | compile s |\n|---|---|---|---|---|")
        for group, members in groups().items():
            rows = time_group(members, shapes, args.rounds)
            report["results"][wname][group] = rows
            for r in rows:
                print(f"| {group} | {r['contender']} | {r['median_ms']:.1f} | {r['ratio']:.2f} "
                      f"| {r['compile_s']:.2f} |", flush=True)  # fmt: skip
    for wname, found in report["checks"].items():
        for key, value in (found or {}).items():
            print(f"check {wname}: {key} = {value:.3g}")
    report["machine"] = dict(platform=platform.platform(), processor=platform.processor(),
                             jax=jax.__version__, optax=optax.__version__, allocator=allocator(),
                             compiler=subprocess.run(["g++", "--version"], capture_output=True,
                                                     text=True).stdout.splitlines()[0],
                             flags=FLAGS)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0].device_kind.replace(" ", "_")
    suffix = "_quick" if args.quick else ""
    path = args.out / f"fused_cpu_{jax.default_backend()}_{device}{suffix}.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")
    return report


if __name__ == "__main__":
    main()
