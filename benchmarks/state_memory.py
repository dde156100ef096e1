"""Bytes of optimizer state per parameter, and how far low-precision states move the params.

Run from the repository root::

    python -m benchmarks.state_memory

Two tables, printed as markdown and written to ``benchmarks/results/state_memory.json``:

- **Bytes per parameter** on the GPT-2-small tree (148 leaves, 124,439,808 parameters): the
  nbytes of every state leaf (codes, scales, moments and the scalars) over the parameter count,
  from ``jax.eval_shape`` of ``init``, so nothing is allocated.
- **Fidelity** against float32 Adam on one 1024 x 256 leaf: params N(0, 0.1), 50 steps of N(0,
  0.01) gradients, the same gradients for both runs. Mean absolute and mean relative parameter
  error (relative to the float32 run's params + 1e-9), averaged over the 50 steps, under three
  protocols:

  - ``one step`` (bitsandbytes' test): after every step both runs continue from the low-precision
    run's params, and the float32 run's moments are replaced by the decoded low-precision ones;
    each step's error is that step's alone;
  - ``moments drift``: both runs continue from the low-precision run's params after every step,
    but the moments evolve on their own; each step's error is what the stored moments have
    drifted to;
  - ``free``: no resynchronisation at all; the params drift apart for 50 steps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adamjax
from adamjax import _piece  # decodes a state's stored moments
from benchmarks.step_time import train_step
from benchmarks.workloads import count, gpt2_small_shapes

RESULTS = Path(__file__).parent / "results"

FORMATS: dict[str, dict[str, Any]] = adamjax.moment_presets()

ALIASES = {
    "adam": lambda **k: adamjax.adam(1e-3, **k),
    "adamw": lambda **k: adamjax.adamw(1e-3, weight_decay=1e-2, **k),
    "amsgrad": lambda **k: adamjax.amsgrad(1e-3, **k),
    "nadam": lambda **k: adamjax.nadam(1e-3, **k),
}

PROTOCOLS = ("one step", "moments drift", "free")


def state_bytes_per_param(tx: optax.GradientTransformation, shapes: dict) -> float:
    params = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in shapes.items()}
    state = jax.eval_shape(tx.init, params)
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state)) / count(shapes)


def moments_at(chain_state: Any) -> int:
    """The position of the moment piece's state in an alias' chain state."""
    return next(i for i, s in enumerate(chain_state) if hasattr(s, "mu"))


def fidelity(
    make, kw: dict, protocol: str, *, steps: int = 50, shape=(1024, 256), seed: int = 0
) -> tuple[float, float]:
    """Mean absolute and mean relative parameter error of ``make(**kw)`` against float32
    ``make()``, averaged over ``steps`` steps, under ``protocol`` (see the module docstring)."""
    errors, relative = fidelity_curves(make, kw, protocol, steps=steps, shape=shape, seed=seed)
    return float(np.mean(errors)), float(np.mean(relative))


def fidelity_curves(
    make, kw: dict, protocol: str, *, steps: int = 50, shape=(1024, 256), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The per-step errors that ``fidelity`` averages: two float32 arrays of length ``steps``,
    the mean absolute and the mean relative parameter error after each step."""
    rng = np.random.default_rng(seed)
    params = jnp.asarray(rng.standard_normal(shape).astype(np.float32) * 0.1)
    txs = make(), make(**kw)
    ref_params, ref_state = params, txs[0].init(params)
    low_params, low_state = params, txs[1].init(params)

    ref_step, low_step = (jax.jit(train_step(tx)) for tx in txs)
    errors, relative = [], []
    for _ in range(steps):
        g = jnp.asarray(rng.standard_normal(shape).astype(np.float32) * 0.01)
        ref_params, ref_state = ref_step(ref_params, ref_state, g)
        low_params, low_state = low_step(low_params, low_state, g)
        err = np.abs(np.asarray(ref_params) - np.asarray(low_params))
        errors.append(err.mean())
        relative.append((err / (np.abs(np.asarray(ref_params)) + 1e-9)).mean())
        if protocol in ("one step", "moments drift"):
            ref_params = low_params
        if protocol == "one step":
            i = moments_at(low_state)
            names = [
                k for k in ("mu", "nu", "nu_max") if getattr(low_state[i], k, None) is not None
            ]
            decoded = _piece.decoded(low_state[i])
            fields = {k: getattr(decoded, k) for k in names}
            ref_state = (*ref_state[:i], ref_state[i]._replace(**fields), *ref_state[i + 1 :])
    return np.asarray(errors), np.asarray(relative)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    shapes = gpt2_small_shapes()
    results: dict[str, Any] = {"bytes_per_param": {}, "fidelity": {}}
    print(f"**State bytes per parameter**, GPT-2 small ({count(shapes):,} parameters)\n")
    print("| state | adam | adamw | amsgrad | nadam |\n|---|---:|---:|---:|---:|")
    for fmt, kw in FORMATS.items():
        row = {a: state_bytes_per_param(make(**kw), shapes) for a, make in ALIASES.items()}
        results["bytes_per_param"][fmt] = row
        print(f"| {fmt} | " + " | ".join(f"{b:.3f}" for b in row.values()) + " |", flush=True)
    print("\n**Fidelity** against float32, mean absolute / mean relative parameter error\n")
    print("| alias | state | " + " | ".join(PROTOCOLS) + " |\n|---|---|---:|---:|---:|")
    for alias, make in ALIASES.items():
        for fmt, kw in FORMATS.items():
            if fmt == "float32":
                continue
            row = {p: fidelity(make, kw, p) for p in PROTOCOLS}
            results["fidelity"][f"{alias}/{fmt}"] = row
            cells = " | ".join(f"{a:.2e} / {r:.2e}" for a, r in row.values())
            print(f"| {alias} | {fmt} | {cells} |", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "state_memory.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path}")
    return results


if __name__ == "__main__":
    main()
