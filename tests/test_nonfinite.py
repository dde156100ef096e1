"""Non-finite gradients: the ``optax.apply_if_finite`` recipe loses nothing, and zero gradients in
float16/bfloat16 give finite updates, for every alias."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax

from helpers import assert_bitwise_equal, jitted_step

# Every alias, in settings that exercise its state (decay, AMSGrad maxima, the SWATS switch).
ALIASES = {
    "adam": lambda: adamjax.adam(1e-2),
    "adamw": lambda: adamjax.adamw(1e-2, weight_decay=0.1),
    "amsgrad(raw)": lambda: adamjax.amsgrad(1e-2, max_of="raw"),
    "amsgrad(corrected)": lambda: adamjax.amsgrad(1e-2, max_of="corrected"),
    "adam(nesterov)": lambda: adamjax.adam(1e-2, nesterov=True),
    "nadam": lambda: adamjax.nadam(1e-2, weight_decay=0.01),
    "adamax": lambda: adamjax.adamax(1e-2),
    "radam": lambda: adamjax.radam(1e-2, threshold=4.0),
    "adabound": lambda: adamjax.adabound(1e-2, final_lr=0.05),
    "amsbound": lambda: adamjax.adabound(1e-2, final_lr=0.05, amsbound=True),
    "adafactor": lambda: adamjax.adafactor(1e-2, min_dim_size_to_factor=2, momentum=0.9),
    "swats": lambda: adamjax.swats(1e-2, switch_tol=1e-2),
    "adam_mini": lambda: adamjax.adam_mini(1e-2, weight_decay=0.1),
    "came": lambda: adamjax.came(1e-2, weight_decay=0.1),
    "adam(bf16 moments)": lambda: adamjax.adam(1e-2, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
    "adam(sr-bf16 moments)": lambda: adamjax.adam(
        1e-2, mu_dtype=adamjax.stochastic_bf16(0), nu_dtype=adamjax.stochastic_bf16(1)
    ),
    "adamw(q8 moments)": lambda: adamjax.adamw(
        1e-2, weight_decay=0.1, mu_dtype=adamjax.q8(min_size=0), nu_dtype=adamjax.q8(min_size=0)
    ),
    "amsgrad(q8 moments)": lambda: adamjax.amsgrad(
        1e-2, mu_dtype=adamjax.q8(min_size=0), nu_dtype=adamjax.q8(min_size=0)
    ),
    "with_diagnostics(adam)": lambda: adamjax.with_diagnostics(adamjax.adam(1e-2)),
}

STEPS = 14
# Faulty steps, including a burst of three in a row (within max_consecutive_errors).
FAULTS = {2: np.nan, 6: np.inf, 7: -np.inf, 8: np.nan, 11: np.nan}
MAX_CONSECUTIVE = 3


def _problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    params = {
        "w": jnp.asarray(rng.normal(size=(6, 8)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(8,)), jnp.float32),
        "s": jnp.asarray(rng.normal(), jnp.float32),
    }
    target = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
    return params, target


def _grads(params, target, step: int):
    """The gradient of a quadratic plus step-dependent noise: a restart or skip cannot cheat."""
    key = jax.random.fold_in(jax.random.key(1), step)
    keys = dict(zip(sorted(params), jax.random.split(key, len(params)), strict=True))
    return {
        k: (params[k] - target[k]) + 0.3 * jax.random.normal(keys[k], params[k].shape)
        for k in params
    }


def _poison(grads, value: float, step: int):
    """Puts ``value`` at one entry of one leaf (chosen by the step), as one bad batch would."""
    name = sorted(grads)[step % len(grads)]
    leaf = grads[name].reshape(-1)
    leaf = leaf.at[(7 * step) % leaf.size].set(value)
    return {**grads, name: leaf.reshape(grads[name].shape)}


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_apply_if_finite_skips_bad_steps_and_loses_nothing(name):
    params, target = _problem()
    guarded = optax.apply_if_finite(ALIASES[name](), max_consecutive_errors=MAX_CONSECUTIVE)
    step = jitted_step(guarded)

    # The faulty run, and the same run with the faulty steps removed (same compiled step).
    p_f, s_f = params, guarded.init(params)
    p_r, s_r = params, guarded.init(params)
    for t in range(STEPS):
        grads = _grads(p_f, target, t)
        if t in FAULTS:
            before = (p_f, s_f.inner_state)
            p_f, s_f = step(p_f, s_f, _poison(grads, FAULTS[t], t))
            # The bad step changed neither the params nor the moments and counts inside.
            assert_bitwise_equal((p_f, s_f.inner_state), before, f"{name}: bad step {t}")
            assert not bool(s_f.last_finite)
            continue
        p_f, s_f = step(p_f, s_f, grads)
        p_r, s_r = step(p_r, s_r, _grads(p_r, target, t))

    assert int(s_f.total_notfinite) == len(FAULTS) and int(s_r.total_notfinite) == 0
    # Bit for bit the trajectory without the bad steps: params, moments, counts, everything.
    assert_bitwise_equal(p_f, p_r, f"{name}: params")
    assert_bitwise_equal(s_f.inner_state, s_r.inner_state, f"{name}: state")
    good_steps = STEPS - len(FAULTS)
    counts = [
        x
        for path, x in jax.tree_util.tree_flatten_with_path(s_f.inner_state)[0]
        if path and path[-1] == jax.tree_util.GetAttrKey("count")
    ]
    assert counts and all(int(c) == good_steps for c in counts), name
    assert all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in jax.tree.leaves(p_f))

    # And the unguarded optimizer on the good steps agrees up to rounding: the guarded step is
    # compiled inside lax.cond, where XLA CPU makes its own choices of fused multiply-adds, so
    # the two programs differ in the last bits (about 1e-7 here), not in any step taken.
    bare = ALIASES[name]()
    bare_step = jitted_step(bare)
    p_b, s_b = params, bare.init(params)
    for t in range(STEPS):
        if t not in FAULTS:
            p_b, s_b = bare_step(p_b, s_b, _grads(p_b, target, t))
    for x, y in zip(jax.tree.leaves(p_f), jax.tree.leaves(p_b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-5)


def test_without_the_guard_one_bad_batch_poisons_the_moments_for_good():
    """The control: the same fault without apply_if_finite leaves NaN in the state forever."""
    params, target = _problem()
    tx = adamjax.adam(1e-2)
    step = jitted_step(tx)
    p, s = params, tx.init(params)
    for t in range(6):
        grads = _grads(p, target, t)
        p, s = step(p, s, _poison(grads, np.nan, t) if t == 2 else grads)
    assert np.isnan(np.asarray(s[0].nu["w"])).any() and np.isnan(np.asarray(p["w"])).any()


def test_a_burst_longer_than_max_consecutive_errors_is_applied():
    """apply_if_finite gives up after ``max_consecutive_errors`` bad steps in a row (optax's
    documented behaviour): the next bad step reaches the moments. Pick the limit accordingly."""
    params, target = _problem()
    tx = optax.apply_if_finite(adamjax.adam(1e-2), max_consecutive_errors=2)
    step = jitted_step(tx)
    p, s = params, tx.init(params)
    for t in range(3):
        p, s = step(p, s, _poison(_grads(p, target, t), np.nan, 0))
        if t < 2:
            assert int(s.inner_state[0].count) == 0
    assert int(s.inner_state[0].count) == 1
    assert any(np.isnan(np.asarray(x)).any() for x in jax.tree.leaves(s.inner_state[0].nu))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("name", sorted(ALIASES))
def test_zero_gradients_in_half_precision_give_finite_updates(name, dtype):
    params = {
        "w": jnp.ones((4, 6), dtype),
        "b": jnp.full((6,), -0.5, dtype),
        "s": jnp.asarray(2.0, dtype),
    }
    tx = ALIASES[name]()

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, updates

    state = tx.init(params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    p = params
    for _ in range(3):
        p, state, updates = step(p, state, zeros)
        for u, x in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
            assert u.dtype == x.dtype, name
            assert np.all(np.isfinite(np.asarray(u, np.float32))), name
    assert all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in jax.tree.leaves(p))
    # Zero gradients from the start: only decoupled decay (adamw, nadam) may move the params.
    if name not in ("adamw", "nadam", "adamw(q8 moments)", "adam_mini", "came"):
        assert_bitwise_equal(p, params, f"{name}: zero gradients moved the params")
