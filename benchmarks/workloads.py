"""Parameter trees the benchmarks time (shapes only, filled with random float32 data), and the
allocator settings their records keep."""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np


def gpt2_small_shapes() -> dict[str, tuple[int, ...]]:
    """The 148 leaves of GPT-2 small (124,439,808 parameters): token and position embeddings,
    per layer two layer norms, the attention and MLP projections with biases, and the final
    layer norm."""
    d, vocab, ctx, layers = 768, 50257, 1024, 12
    shapes: dict[str, tuple[int, ...]] = {"wte": (vocab, d), "wpe": (ctx, d)}
    for i in range(layers):
        h = f"h{i:02d}"
        shapes.update({
            f"{h}/ln_1/g": (d,), f"{h}/ln_1/b": (d,),
            f"{h}/attn/c_attn/w": (d, 3 * d), f"{h}/attn/c_attn/b": (3 * d,),
            f"{h}/attn/c_proj/w": (d, d), f"{h}/attn/c_proj/b": (d,),
            f"{h}/ln_2/g": (d,), f"{h}/ln_2/b": (d,),
            f"{h}/mlp/c_fc/w": (d, 4 * d), f"{h}/mlp/c_fc/b": (4 * d,),
            f"{h}/mlp/c_proj/w": (4 * d, d), f"{h}/mlp/c_proj/b": (d,),
        })  # fmt: skip
    shapes.update({"ln_f/g": (d,), "ln_f/b": (d,)})
    return shapes


def random_tree(shapes: dict[str, tuple[int, ...]], seed: int, scale: float = 1.0) -> dict:
    """A float32 tree of the given shapes, drawn on the device."""
    keys = jax.random.split(jax.random.key(seed), len(shapes))
    return {
        name: scale * jax.random.normal(k, shape, jnp.float32)
        for k, (name, shape) in zip(keys, shapes.items(), strict=True)
    }


def count(shapes: dict[str, tuple[int, ...]]) -> int:
    return int(sum(np.prod(s, dtype=np.int64) for s in shapes.values()))


def allocator() -> dict[str, str]:
    """The environment variables that choose or tune the C allocator this process runs with
    (``LD_PRELOAD``, jemalloc's ``MALLOC_CONF``, glibc's ``MALLOC_*_`` and ``GLIBC_TUNABLES``),
    for a benchmark's record: on XLA's CPU backend they change the time of steps that write
    temporaries (see docs/performance.md, "The allocator")."""
    names = ("LD_PRELOAD", "MALLOC_CONF", "GLIBC_TUNABLES")
    return {
        k: v for k, v in sorted(os.environ.items()) if k in names or re.fullmatch("MALLOC_.*_", k)
    }
