"""The pieces: hand-computed first steps, the max-v conventions, storage dtypes, weight decay."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax

G = np.array([0.3, -2.0, 1e-5, 0.0])


def first_update(tx, g=G, dtype=jnp.float64):
    params = {"w": jnp.zeros(len(g), dtype)}
    updates, state = tx.update({"w": jnp.asarray(g, dtype)}, tx.init(params), params)
    return np.asarray(updates["w"]), state


def test_first_step_paper_and_hat_eps_by_hand():
    # Step 1: m = (1-b1) g and v = (1-b2) g^2, so m_hat = g and v_hat = g^2.
    b1, b2, eps = 0.9, 0.999, 1e-4
    with jax.enable_x64(True):
        paper, _ = first_update(adamjax.scale_by_adam(b1, b2, eps))
        hat, _ = first_update(adamjax.scale_by_adam(b1, b2, eps, eps_mode="hat"))
    np.testing.assert_allclose(paper, G / (np.abs(G) + eps), rtol=1e-15)
    # The eps-hat form: sqrt(1-b2)/(1-b1) * m / (sqrt(v) + eps) = g / (|g| + eps / sqrt(1-b2)).
    np.testing.assert_allclose(hat, G / (np.abs(G) + eps / np.sqrt(1 - b2)), rtol=1e-15)
    assert paper[3] == hat[3] == 0.0  # a zero gradient gives a zero update, not NaN


def test_first_step_eps_root_and_nesterov_by_hand():
    b1, b2, eps, eps_root = 0.8, 0.99, 1e-6, 1e-3
    with jax.enable_x64(True):
        root, _ = first_update(adamjax.scale_by_adam(b1, b2, eps, eps_root))
        nest, _ = first_update(adamjax.scale_by_adam(b1, b2, eps, nesterov=True))
    np.testing.assert_allclose(root, G / (np.sqrt(G**2 + eps_root) + eps), rtol=1e-15)
    # Nesterov: b1 m_1 / (1 - b1^2) + (1 - b1) g / (1 - b1), with m_1 = (1 - b1) g.
    m_bar = b1 * (1 - b1) * G / (1 - b1**2) + G
    np.testing.assert_allclose(nest, m_bar / (np.abs(G) + eps), rtol=1e-15)


def run_states(tx, grads):
    params = {"w": jnp.zeros(grads.shape[1], jnp.float64)}
    state = tx.init(params)
    states = []
    for g in grads:
        _, state = tx.update({"w": jnp.asarray(g)}, state, params)
        states.append(state)
    return states


@pytest.mark.parametrize("max_of", ["raw", "corrected"])
def test_amsgrad_max_is_taken_over_the_chosen_second_moment(max_of):
    # Large then small gradients: the running max must hold the early value.
    grads = np.array([[3.0, 0.1], [2.0, 0.1], [0.1, 0.1], [0.1, 5.0], [0.01, 0.01]])
    b2 = 0.9
    with jax.enable_x64(True):
        states = run_states(adamjax.scale_by_amsgrad(b2=b2, max_of=max_of), grads)
    v = np.zeros(2)
    running = np.zeros(2)
    for t, (g, state) in enumerate(zip(grads, states, strict=True), start=1):
        v = b2 * v + (1 - b2) * g * g
        candidate = v if max_of == "raw" else v / (1 - b2**t)
        running = np.maximum(running, candidate)
        np.testing.assert_allclose(state.nu["w"], v, rtol=1e-15)
        np.testing.assert_allclose(state.nu_max["w"], running, rtol=1e-15)
        assert int(state.count) == t
    # The max is active at the end: the stored max exceeds the current moment.
    assert np.all(np.asarray(states[-1].nu_max["w"]) > np.asarray(states[-1].nu["w"]))


def test_storage_dtypes_are_independent_and_arithmetic_is_float32():
    params = {"w": jnp.zeros(4, jnp.float32)}
    mixed = adamjax.scale_by_adam(mu_dtype=jnp.bfloat16, nu_dtype=jnp.float16)
    full = adamjax.scale_by_adam()
    g = {"w": jnp.asarray([0.3, -2.0, 1e-3, 7.0], jnp.float32)}
    u_mixed, s_mixed = mixed.update(g, mixed.init(params))
    u_full, s_full = full.update(g, full.init(params))
    assert s_mixed.mu["w"].dtype == jnp.bfloat16 and s_mixed.nu["w"].dtype == jnp.float16
    assert u_mixed["w"].dtype == jnp.float32
    # The first update uses the unrounded float32 moments, so it is identical to full precision;
    # only the stored moments are rounded.
    np.testing.assert_array_equal(u_mixed["w"], u_full["w"])
    np.testing.assert_array_equal(s_mixed.mu["w"], s_full.mu["w"].astype(jnp.bfloat16))
    assert not np.array_equal(
        np.asarray(s_mixed.mu["w"], np.float32), np.asarray(s_full.mu["w"], np.float32)
    )


def test_float16_params_with_tiny_eps_do_not_underflow():
    # eps=1e-8 is 0 in float16; arithmetic in float32 keeps it, so zero grads give zero, not NaN.
    params = {"w": jnp.ones(3, jnp.float16)}
    tx = adamjax.adam(1e-3, eps=1e-8)
    state = tx.init(params)
    assert state[0].mu["w"].dtype == jnp.float16
    for _ in range(5):
        updates, state = tx.update({"w": jnp.zeros(3, jnp.float16)}, state, params)
        params = optax.apply_updates(params, updates)
    assert params["w"].dtype == jnp.float16
    np.testing.assert_array_equal(params["w"], np.ones(3, np.float16))


def test_count_is_int32_and_saturates_instead_of_overflowing():
    tx = adamjax.scale_by_adam()
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    assert state.count.dtype == jnp.int32 and int(state.count) == 0
    state = state._replace(count=jnp.asarray(np.iinfo(np.int32).max, jnp.int32))
    updates, state = tx.update({"w": jnp.ones(2)}, state)
    assert int(state.count) == np.iinfo(np.int32).max
    assert jnp.all(jnp.isfinite(updates["w"]))


def test_decayed_weights_with_schedule_mask_and_no_params():
    params = {"w": jnp.asarray([1.0, -2.0]), "b": jnp.asarray([3.0])}
    zeros = jax.tree.map(jnp.zeros_like, params)

    tx = adamjax.add_decayed_weights(lambda count: 0.1 * (count + 1))
    state = tx.init(params)
    for k in range(3):
        updates, state = tx.update(zeros, state, params)
        np.testing.assert_allclose(updates["w"], 0.1 * (k + 1) * params["w"], rtol=1e-6)
    assert int(state.schedule_count) == 3

    masked = adamjax.add_decayed_weights(0.5, mask={"w": True, "b": False})
    updates, _ = masked.update(zeros, masked.init(params), params)
    np.testing.assert_allclose(updates["w"], 0.5 * params["w"])
    np.testing.assert_array_equal(updates["b"], zeros["b"])

    # A constant zero decay needs no params (so amsgrad() works without them).
    updates, _ = adamjax.add_decayed_weights(0.0).update(zeros, fresh_decay_state(), None)
    assert updates is zeros
    with pytest.raises(ValueError, match="add_decayed_weights: update\\(\\) needs params"):
        adamjax.add_decayed_weights(1e-4).update(zeros, fresh_decay_state(), None)


def fresh_decay_state():
    return optax.EmptyState()


def test_callable_mask_is_applied():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    tx = adamjax.add_decayed_weights(0.5, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p))
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], 0.5 * params["w"])
    np.testing.assert_array_equal(updates["b"], zeros["b"])


def test_pieces_are_pure_and_reusable():
    """update() does not mutate its inputs, and equal inputs give equal outputs."""
    tx = adamjax.scale_by_amsgrad()
    params = {"w": jnp.arange(3.0)}
    state = tx.init(params)
    g = {"w": jnp.asarray([1.0, -1.0, 0.5])}
    u1, s1 = tx.update(g, state)
    u2, s2 = tx.update(g, state)
    assert int(state.count) == 0 and not np.any(np.asarray(state.mu["w"]))
    np.testing.assert_array_equal(u1["w"], u2["w"])
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "weight_decay",
    [0.1, jnp.asarray(0.1, jnp.float32), lambda count: 0.1],
    ids=["float", "float32-array", "schedule"],
)
def test_decay_keeps_the_update_dtype(weight_decay):
    """A float32 array or schedule decay does not promote bfloat16 updates to float32."""
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    tx = adamjax.add_decayed_weights(weight_decay)
    updates, _ = tx.update({"w": jnp.zeros(3, jnp.bfloat16)}, tx.init(params), params)
    assert updates["w"].dtype == jnp.bfloat16
    # 0.1 * 1 in bfloat16 (8 significand bits): within half an ulp, 2**-9.
    np.testing.assert_allclose(np.asarray(updates["w"], np.float32), 0.1, rtol=2**-9)


def test_negative_decay_grows_the_weights_as_in_optax():
    """The piece takes a negative decay (optax.fromage chains add_decayed_weights(mult - 1));
    the aliases keep weight_decay >= 0."""
    params = {"w": jnp.asarray([1.0, -2.0])}
    zeros = jax.tree.map(jnp.zeros_like, params)
    tx = adamjax.add_decayed_weights(-0.25)
    ours, _ = tx.update(zeros, tx.init(params), params)
    theirs, _ = optax.add_decayed_weights(-0.25).update(zeros, optax.EmptyState(), params)
    np.testing.assert_array_equal(ours["w"], theirs["w"])
    np.testing.assert_allclose(ours["w"], [-0.25, 0.5])
    with pytest.raises(ValueError, match="adamw: weight_decay must be a finite number in"):
        adamjax.adamw(1e-3, weight_decay=-0.25)


def test_scale_by_learning_rate_none_is_the_identity_as_in_optax():
    updates = {"w": jnp.asarray([1.0, -2.0])}
    tx = adamjax.scale_by_learning_rate(None)
    out, _ = tx.update(updates, tx.init(updates), value=1.0)
    np.testing.assert_array_equal(out["w"], updates["w"])
