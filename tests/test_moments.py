"""The shared moment maths: dtypes, bias correction, eps placement."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamjax import _moments as moments


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (jnp.bfloat16, jnp.float32),
        (jnp.float16, jnp.float32),
        (jnp.float32, jnp.float32),
        (jnp.complex64, jnp.complex64),
    ],
)
def test_compute_dtype_is_at_least_float32(dtype, expected):
    assert moments.compute_dtype(dtype) == jnp.dtype(expected)


def test_compute_dtype_keeps_float64_under_x64():
    with jax.enable_x64(True):
        assert moments.compute_dtype(jnp.float64) == jnp.float64
        assert moments.compute_dtype(jnp.bfloat16, jnp.float64) == jnp.float64


@pytest.mark.parametrize(
    ("param", "requested", "real", "expected"),
    [
        (jnp.float32, None, False, jnp.float32),
        (jnp.bfloat16, None, True, jnp.bfloat16),
        (jnp.float32, jnp.bfloat16, False, jnp.bfloat16),
        (jnp.complex64, None, True, jnp.float32),
        (jnp.complex64, None, False, jnp.complex64),
        # A complex moment never drops its imaginary part: bfloat16 widens to complex64.
        (jnp.complex64, jnp.bfloat16, False, jnp.complex64),
        (jnp.complex64, jnp.bfloat16, True, jnp.bfloat16),
    ],
)
def test_storage_dtype(param, requested, real, expected):
    assert moments.storage_dtype(param, requested, real=real) == jnp.dtype(expected)


def test_bias_correction_is_computed_in_the_given_dtype_not_storage():
    # In bfloat16, 0.999 rounds to 1.0 and the correction would be 0 (a division by zero).
    assert float(1 - jnp.asarray(0.999, jnp.bfloat16)) == 0.0
    dtype = moments.compute_dtype(jnp.bfloat16)
    bc = moments.decay_step(0.999, jnp.int32(0), jnp.zeros([], dtype)).correction
    assert bc.dtype == jnp.float32
    np.testing.assert_allclose(bc, 1e-3, rtol=1e-4)


def test_hat_mode_equals_the_papers_eps_hat_formula():
    rng = np.random.default_rng(0)
    m, v = rng.normal(size=50), rng.uniform(0, 1e-6, size=50)
    b1, b2, eps, t = 0.9, 0.999, 1e-7, 7
    with jax.enable_x64(True):
        count, zero = jnp.int32(t - 1), jnp.zeros([], jnp.float64)
        d1, d2 = (moments.decay_step(b, count, zero) for b in (b1, b2))
        m_hat, v_hat = moments.corrected(jnp.asarray(m), d1), moments.corrected(jnp.asarray(v), d2)
        eps_t, eps_root_t = moments.place_eps(eps, 0.0, d2, "hat")
        ours = moments.precondition(m_hat, v_hat, eps_t, eps_root_t)
        paper, _ = moments.place_eps(eps, 0.0, d2, "paper")
    alpha_t = np.sqrt(1 - b2**t) / (1 - b1**t)
    np.testing.assert_allclose(ours, alpha_t * m / (np.sqrt(v) + eps), rtol=1e-13)
    assert paper == eps


def test_squared_magnitude_of_complex_is_real():
    g = jnp.asarray([3 + 4j, -1j, 0], jnp.complex64)
    out = moments.squared_magnitude(g)
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, [25.0, 1.0, 0.0])


def test_scheduled_correction_is_one_minus_the_product_of_the_rates():
    """decay_step continues c_t = (1 - b_t) + b_t c_(t-1) from the state's previous value."""
    with jax.enable_x64(True):
        correction, rates = jnp.zeros([], jnp.float64), []
        for count in range(6):
            step = moments.decay_step(lambda k: 0.9 - 0.1 * k, jnp.int32(count), correction)
            correction, _ = step.correction, rates.append(0.9 - 0.1 * count)
            assert float(step.rate) == pytest.approx(rates[-1], rel=1e-15)
            np.testing.assert_allclose(float(step.inverse), 1 / (1 - np.prod(rates)), rtol=1e-14)
        np.testing.assert_allclose(float(correction), 1 - np.prod(rates), rtol=1e-14)


def test_moment_step_computes_the_nesterov_look_ahead_at_t_plus_one():
    last = moments.StepScalars.initial(jnp.float32)
    step = moments.moment_step(0.9, 0.999, 1e-8, 0.0, "paper", jnp.int32(4), last, nesterov=True)
    assert int(step.count) == 5
    np.testing.assert_allclose(float(step.b1.correction), 1 - 0.9**5, rtol=1e-6)
    np.testing.assert_allclose(float(step.ahead.correction), 1 - 0.9**6, rtol=1e-6)
    assert moments.moment_step(0.9, 0.999, 1e-8, 0.0, "paper", jnp.int32(4), last).ahead is None


def test_ema_keeps_the_moments_dtype_and_weights_new_by_one_minus_decay():
    m = jnp.asarray([0.5, 0.5], jnp.float32)
    with jax.enable_x64(True):  # a float64 decay (e.g. from inject_hyperparams under x64)
        out = moments.ema(jnp.asarray([1.0, -2.0], jnp.float32), m, jnp.asarray(0.9, jnp.float64))
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, [0.1 + 0.45, -0.2 + 0.45], rtol=1e-6)
