"""Parameter trees the benchmarks time: shapes only, filled with random float32 data."""

from __future__ import annotations

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
