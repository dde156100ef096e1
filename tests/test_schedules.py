"""The momentum schedules: their values, and exact bias correction when an alias uses them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import adamjax


def test_beta1_decay_values_per_epoch():
    schedule = adamjax.beta1_decay(0.9, rate=0.5, steps_per_epoch=10)
    counts = jnp.arange(35, dtype=jnp.int32)
    epochs = np.arange(35) // 10
    np.testing.assert_allclose(jax.vmap(schedule)(counts), 0.9 / (1 + 0.5 * epochs), rtol=1e-6)


def test_beta1_cyclic_values_per_epoch():
    schedule = adamjax.beta1_cyclic(0.9, period=4, steps_per_epoch=3)
    counts = jnp.arange(40, dtype=jnp.int32)
    epochs = np.arange(40) // 3
    expected = 0.9 * (1 + np.sin(np.pi * epochs / 4)) / 2
    np.testing.assert_allclose(jax.vmap(schedule)(counts), expected, rtol=1e-6, atol=1e-7)
    # It stays a valid decay rate: within [0, b1].
    values = np.asarray(jax.vmap(schedule)(counts))
    assert values.min() >= 0.0
    assert values.max() <= 0.9 + 1e-7


def test_schedules_work_under_jit_with_a_traced_count():
    schedule = adamjax.beta1_decay(0.9, rate=1.0, steps_per_epoch=2)
    np.testing.assert_allclose(float(jax.jit(schedule)(jnp.int32(5))), 0.9 / 3, rtol=1e-7)


def test_scheduled_b1_state_keeps_the_running_correction():
    """The state's last_step.m_correction is 1 - prod(b1_i) over the steps taken (float64 run),
    and b2's correction is the constant's 1 - b2**t."""
    schedule = adamjax.beta1_decay(0.9, rate=0.5, steps_per_epoch=1)
    with jax.enable_x64(True):
        tx = adamjax.scale_by_adam(b1=schedule)
        params = {"w": jnp.zeros(3)}
        state = tx.init(params)
        for _ in range(5):
            _, state = tx.update({"w": jnp.ones(3)}, state)
        product = np.prod([0.9 / (1 + 0.5 * k) for k in range(5)])
        np.testing.assert_allclose(float(state.last_step.m_correction), 1 - product, rtol=1e-14)
        np.testing.assert_allclose(float(state.last_step.v_correction), 1 - 0.999**5, rtol=1e-14)
