"""Adam-mini and CAME: the float64 paper references, the authors' packages' golden trajectories,
the default partition, storage formats, jit and diagnostics."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax

from helpers import jitted_step, max_rel_err, run_forced
from reference.mini_came_reference import AdamMini, Came

GOLDEN = Path(__file__).parent / "reference" / "golden"
STEPS = 500


def load(name: str) -> dict:
    with np.load(GOLDEN / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


def golden_problem(g: dict):
    """The golden file's params and gradient ``h * (p - c) + envelope[k] * table[k % 7]``."""
    leaves = [str(x) for x in g["leaves"]]
    params = {k: g[f"p0__{k}"] for k in leaves}
    k = [0]

    def grad_fn(p):
        step = k[0]
        k[0] += 1
        env = g["envelope"][step % len(g["envelope"])]
        return {
            n: g[f"h__{n}"] * (np.asarray(p[n]) - g[f"c__{n}"])
            + env * g[f"noise_table__{n}"][step % 7]
            for n in leaves
        }

    return params, grad_fn


# ---- Adam-mini --------------------------------------------------------------------------------

D, H, HD, V, F = 8, 2, 4, 6, 12


def flax_tree(seed: int = 0) -> tuple[dict, dict]:
    """A transformer-like tree in flax's layout, and each entry's block id under the authors'
    rule, written out index by index."""
    shapes = {
        "embed/embedding": (V, D),
        "layers_0/attn/query/kernel": (D, H, HD),
        "layers_0/attn/key/kernel": (D, H, HD),
        "layers_0/attn/query/bias": (H, HD),
        "layers_0/attn/value/kernel": (D, H, HD),
        "layers_0/attn/out/kernel": (H, HD, D),
        "layers_0/wq/kernel": (D, D),  # a fused-heads kernel, split by n_heads
        "layers_0/ln_1/scale": (D,),
        "layers_0/mlp/Dense_0/kernel": (D, F),
        "layers_0/mlp/Dense_0/bias": (F,),
        "layers_0/norm/scale": (D,),
        "lm_head/kernel": (D, V),
    }
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s) for k, s in shapes.items()}
    ids = {
        "embed/embedding": np.broadcast_to(np.arange(V)[:, None], (V, D)),
        "layers_0/attn/query/kernel": np.broadcast_to(np.arange(H)[None, :, None], (D, H, HD)),
        "layers_0/attn/key/kernel": np.broadcast_to(np.arange(H)[None, :, None], (D, H, HD)),
        "layers_0/attn/query/bias": np.arange(H * HD).reshape(H, HD),
        "layers_0/attn/value/kernel": np.broadcast_to(
            np.arange(H * HD).reshape(1, H, HD), (D, H, HD)
        ),
        "layers_0/attn/out/kernel": np.broadcast_to(np.arange(D), (H, HD, D)),
        "layers_0/wq/kernel": np.broadcast_to(np.arange(D) // (D // H), (D, D)),
        "layers_0/ln_1/scale": np.zeros(D, int),
        "layers_0/mlp/Dense_0/kernel": np.broadcast_to(np.arange(F), (D, F)),
        "layers_0/mlp/Dense_0/bias": np.arange(F),
        "layers_0/norm/scale": np.zeros(D, int),
        "lm_head/kernel": np.broadcast_to(np.arange(V), (D, V)),
    }
    return params, {k: np.ascontiguousarray(x) for k, x in ids.items()}


def test_default_partition_blocks_match_the_rule_written_out():
    params, ids = flax_tree()
    params = {k: p.astype(np.float32) for k, p in params.items()}
    state = adamjax.scale_by_adam_mini(n_heads=H).init(params)
    for name, nu in state.nu.items():
        assert nu.size == int(ids[name].max()) + 1, name


def test_adam_mini_matches_the_paper_reference_float64():
    with jax.enable_x64(True):
        params, ids = flax_tree()
        hp = dict(b1=0.9, b2=0.99, eps=1e-8)
        decay = {k: not any(s in k for s in ("norm", "ln", "bias")) for k in params}
        ref = AdamMini(params, ids, lr=1e-2, weight_decay=0.1, decay=decay, **hp)
        centre = {k: np.cos(np.arange(p.size)).reshape(p.shape) for k, p in params.items()}
        rng = np.random.default_rng(1)
        noise = [{k: rng.normal(size=p.shape) for k, p in params.items()} for _ in range(7)]
        k = [0]

        def grad_fn(p):
            k[0] += 1
            return {n: (p[n] - centre[n]) + 0.3 * noise[k[0] % 7][n] for n in p}

        tx = adamjax.adam_mini(1e-2, weight_decay=0.1, n_heads=H, **hp)
        ours, _, theirs = run_forced(tx, ref.step, params, grad_fn, STEPS)
        assert max_rel_err(ours, theirs) <= 1e-10


def test_adam_mini_golden_authors_package():
    with jax.enable_x64(True):
        g = load("adam_mini")
        params, grad_fn = golden_problem(g)
        tx = adamjax.adam_mini(
            float(g["hp_lr"]), float(g["hp_b1"]), float(g["hp_b2"]), float(g["hp_eps"]),
            float(g["hp_weight_decay"]), n_heads=int(g["hp_n_heads"]),
        )  # fmt: skip
        step, state = jitted_step(tx), tx.init(params)
        checkpoints = list(g["steps"])
        for k in range(1, int(checkpoints[-1]) + 1):
            params, state = step(params, state, grad_fn(params))
            if k in checkpoints:
                i = checkpoints.index(k)
                inner = state[0]
                for name in params:
                    for key, ours in (
                        ("param", params[name]),
                        ("mu", inner.mu[name]),
                        ("nu", inner.nu[name]),
                    ):
                        err = max_rel_err(ours, g[f"{key}__{name}"][i])
                        assert err <= 1e-6, (k, key, name, err)


def test_adam_mini_with_per_entry_blocks_is_optax_adamw():
    """With every entry its own block, Adam-mini is AdamW (float32, live optax)."""
    params, _ = flax_tree()
    params = {k: jnp.asarray(p, jnp.float32) for k, p in params.items()}
    mask = adamjax.adam_mini_decay_mask(params)
    ours = adamjax.adam_mini(1e-2, weight_decay=0.1, partition=lambda name, shape: ())
    theirs = optax.adamw(1e-2, weight_decay=0.1, mask=mask)
    rng = np.random.default_rng(2)
    centre = {k: jnp.asarray(rng.normal(size=p.shape), jnp.float32) for k, p in params.items()}

    def grad_fn(p):
        return {n: np.asarray(p[n] - centre[n]) for n in p}

    from helpers import optax_reference_step

    out, _, ref = run_forced(ours, optax_reference_step(theirs, params), params, grad_fn, STEPS)
    assert max_rel_err(out, ref) <= 2e-5


def test_adam_mini_state_is_small():
    params, _ = flax_tree()
    params = {k: p.astype(np.float32) for k, p in params.items()}
    state = adamjax.scale_by_adam_mini(n_heads=H).init(params)
    n_params = sum(p.size for p in jax.tree.leaves(params))
    n_nu = sum(x.size for x in jax.tree.leaves(state.nu))
    # Only the biases keep a per-entry second moment here.
    assert n_nu < 0.2 * n_params
    assert sum(x.size for x in jax.tree.leaves(state.mu)) == n_params


def test_default_partition_of_flax_names():
    part = adamjax.adam_mini_partition(n_heads=4)
    assert part("attn/query/kernel", (32, 4, 8)) == (0, 2)
    assert part("attn/key/kernel", (32, 32)) == ((32, 4, 8), (0, 2))
    assert part("attn/value/kernel", (32, 4, 8)) == (0,)
    assert part("attn/out/kernel", (4, 8, 32)) == (0, 1)
    assert part("Embed_0/embedding", (100, 32)) == (1,)
    assert part("output/kernel", (32, 100)) == (0,)
    assert part("Dense_0/kernel", (32, 64)) == (0,)
    assert part("Dense_0/bias", (64,)) == ()
    assert part("LayerNorm_0/scale", (32,)) == (0,)
    assert part("Conv_0/kernel", (3, 3, 4, 8)) == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="n_heads"):
        adamjax.adam_mini_partition()("attn/query/kernel", (32, 32))


def test_partition_errors_name_the_leaf():
    params = {"w": jnp.ones((4, 6))}
    with pytest.raises(ValueError, match=r"adam_mini: partition.*'w'"):
        adamjax.adam_mini(partition=lambda n, s: ((5, 5), (0,))).init(params)
    with pytest.raises(TypeError, match="adam_mini: partition"):
        adamjax.adam_mini(partition=lambda n, s: "rows").init(params)
    with pytest.raises(TypeError, match="adam_mini: partition"):
        adamjax.adam_mini(partition=lambda n, s: (2,)).init(params)
    with pytest.raises(TypeError, match="adam_mini: partition must be"):
        adamjax.adam_mini(partition=3)


# ---- CAME -------------------------------------------------------------------------------------


def came_tree(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    shapes = {"w": (4, 6), "v": (7, 3), "b": (5,), "s": (1,)}
    return {k: rng.normal(size=s) for k, s in shapes.items()}


def test_came_matches_the_paper_reference_float64():
    with jax.enable_x64(True):
        params = came_tree()
        hp = dict(b1=0.9, b2=0.99, b3=0.999, eps1=1e-30, eps2=1e-16)
        ref = Came(params, lr=1e-2, clip=1.0, weight_decay=0.1, **hp)
        centre = {k: np.sin(np.arange(p.size)).reshape(p.shape) for k, p in params.items()}
        rng = np.random.default_rng(3)
        noise = [{k: rng.normal(size=p.shape) for k, p in params.items()} for _ in range(7)]
        k = [0]

        def grad_fn(p):
            k[0] += 1
            return {n: (p[n] - centre[n]) + 0.3 * noise[k[0] % 7][n] for n in p}

        tx = adamjax.came(1e-2, weight_decay=0.1, **hp)
        ours, _, theirs = run_forced(tx, ref.step, params, grad_fn, STEPS)
        assert max_rel_err(ours, theirs) <= 1e-10


@pytest.mark.parametrize("name", ["came_pytorch", "pytorch_optimizer_came"])
def test_came_golden(name):
    with jax.enable_x64(True):
        g = load(name)
        params, grad_fn = golden_problem(g)
        tx = adamjax.came(float(g["hp_lr"]), weight_decay=float(g["hp_weight_decay"]))
        step, state = jitted_step(tx), tx.init(params)
        checkpoints = list(g["steps"])
        for k in range(1, int(checkpoints[-1]) + 1):
            params, state = step(params, state, grad_fn(params))
            if k in checkpoints:
                i = checkpoints.index(k)
                factored, confidence = state[0][0], state[0][2]
                for leaf in params:
                    for key, ours in (
                        ("param", params[leaf]),
                        ("mu", confidence.mu[leaf]),
                        ("v_row", factored.v_row[leaf]),
                        ("v_col", factored.v_col[leaf]),
                        ("v", factored.v[leaf]),
                        ("res_row", confidence.res_row[leaf]),
                        ("res_col", confidence.res_col[leaf]),
                    ):
                        err = max_rel_err(ours, g[f"{key}__{leaf}"][i])
                        assert err <= 1e-6, (k, key, leaf, err)


@pytest.mark.slow
def test_came_coupled_weight_decay_adds_to_the_gradient():
    params = {k: jnp.asarray(p, jnp.float32) for k, p in came_tree().items()}
    grads = jax.tree.map(lambda p: 0.1 * p + 1.0, params)
    coupled = adamjax.came(1e-2, weight_decay=0.1, decoupled_weight_decay=False)
    plain = adamjax.came(1e-2)
    u1, _ = jax.jit(coupled.update)(grads, coupled.init(params), params)
    l2 = jax.tree.map(lambda g, p: g + 0.1 * p, grads, params)
    u2, _ = jax.jit(plain.update)(l2, plain.init(params), params)
    assert max_rel_err(u1, u2) <= 1e-6


# ---- both: formats, jit, diagnostics ----------------------------------------------------------


def _run(tx, params, steps=30, jit=True):
    step, state = jitted_step(tx, jit=jit), tx.init(params)
    centre = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=p.dtype)).reshape(p.shape),
                          params)  # fmt: skip
    for _ in range(steps):
        params, state = step(params, state, jax.tree.map(jnp.subtract, params, centre))
    return params, state


def _big_tree():
    """Leaves large enough for q8 to quantize (>= 4096 entries)."""
    rng = np.random.default_rng(4)
    return {
        "mlp/kernel": jnp.asarray(rng.normal(size=(64, 96)), jnp.float32),
        "mlp/bias": jnp.asarray(rng.normal(size=(96,)), jnp.float32),
    }


def _adam_mini(**kw):
    return adamjax.adam_mini(1e-2, weight_decay=0.1, **kw)


def _came(**kw):
    return adamjax.came(1e-2, weight_decay=0.1, **kw)


@pytest.mark.parametrize(
    ("make", "fmt"),
    [
        (_adam_mini, "bf16"),
        (_came, "q8"),
        pytest.param(_adam_mini, "q8", marks=pytest.mark.slow),
        pytest.param(_came, "bf16", marks=pytest.mark.slow),
    ],
)
def test_low_precision_moments_track_float32(make, fmt):
    params = _big_tree()
    mu_dtype = adamjax.stochastic_bf16() if fmt == "bf16" else adamjax.q8()
    ref, _ = _run(make(), params)
    out, state = _run(make(mu_dtype=mu_dtype), params)
    mus = [x for x in jax.tree.leaves(state, is_leaf=adamjax._formats.is_quantized)]
    if fmt == "q8":
        assert any(isinstance(x, adamjax.QuantizedArray) for x in mus)
    else:
        assert any(getattr(x, "dtype", None) == jnp.bfloat16 for x in mus)
    assert 0 < max_rel_err(out, ref) <= (5e-2 if fmt == "q8" else 2e-2)


@pytest.mark.parametrize("alias", [adamjax.adam_mini, adamjax.came], ids=["adam_mini", "came"])
def test_jit_matches_eager(alias):
    params = {k: jnp.asarray(p, jnp.float32) for k, p in came_tree().items()}
    a, _ = _run(alias(1e-2), params, steps=2, jit=True)
    b, _ = _run(alias(1e-2), params, steps=2, jit=False)
    assert max_rel_err(a, b) <= 1e-6


@pytest.mark.parametrize("alias", [adamjax.adam_mini, adamjax.came], ids=["adam_mini", "came"])
def test_diagnostics_view(alias):
    params = {k: jnp.asarray(p, jnp.float32) for k, p in came_tree().items()}
    tx = adamjax.with_diagnostics(alias(1e-2))
    _, state = _run(tx, params, steps=3)
    metrics = adamjax.diagnostics(state)
    assert metrics, metrics
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(metrics))
    assert any("m_hat" in k or "first" in k for k in metrics), sorted(metrics)


def test_adam_mini_view_spreads_each_block_over_its_entries():
    params, ids = flax_tree()
    params = {k: jnp.asarray(p, jnp.float32) for k, p in params.items()}
    tx = adamjax.scale_by_adam_mini(n_heads=H)
    grads = jax.tree.map(lambda p: jnp.sin(p * 3.0), params)
    _, state = tx.update(grads, tx.init(params))
    view = adamjax._piece.view_of(state)(state, grads)
    for name, v_hat in view.v_hat.items():
        g2 = np.asarray(grads[name], np.float64) ** 2
        per_block = np.bincount(ids[name].ravel(), g2.ravel()) / np.bincount(ids[name].ravel())
        # after one step, v_hat is the block's mean of g^2 (the correction undoes 1 - b2)
        assert max_rel_err(v_hat, per_block[ids[name]]) <= 1e-4, name
