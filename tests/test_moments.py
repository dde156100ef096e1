"""The shared moment maths: dtypes, bias correction, eps placement."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamjax import moments


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
    bc = moments.bias_correction(0.999, jnp.int32(1), moments.compute_dtype(jnp.bfloat16))
    assert bc.dtype == jnp.float32
    np.testing.assert_allclose(bc, 1e-3, rtol=1e-4)


def test_hat_mode_equals_the_papers_eps_hat_formula():
    rng = np.random.default_rng(0)
    m, v = rng.normal(size=50), rng.uniform(0, 1e-6, size=50)
    b1, b2, eps, t = 0.9, 0.999, 1e-7, 7
    with jax.enable_x64(True):
        count = jnp.int32(t)
        m_hat = m / moments.bias_correction(b1, count, jnp.float64)
        v_hat = v / moments.bias_correction(b2, count, jnp.float64)
        d2 = moments.StepDecay(b2, None, count)
        eps_t, eps_root_t = moments.effective_eps(eps, 0.0, d2, jnp.float64, "hat")
        ours = moments.precondition(m_hat, v_hat, eps_t, eps_root_t)
        paper, _ = moments.effective_eps(eps, 0.0, d2, jnp.float64, "paper")
    alpha_t = np.sqrt(1 - b2**t) / (1 - b1**t)
    np.testing.assert_allclose(ours, alpha_t * m / (np.sqrt(v) + eps), rtol=1e-13)
    assert paper == eps


def test_squared_magnitude_of_complex_is_real():
    g = jnp.asarray([3 + 4j, -1j, 0], jnp.complex64)
    out = moments.squared_magnitude(g)
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, [25.0, 1.0, 0.0])


def test_update_moments_returns_compute_dtype_and_the_ema():
    g = jnp.asarray([1.0, -2.0], jnp.bfloat16)
    m = jnp.asarray([0.5, 0.5], jnp.bfloat16)
    v = jnp.asarray([1.0, 1.0], jnp.float16)
    g_c, m_t, v_t = moments.update_moments(g, m, v, 0.9, 0.99)
    assert g_c.dtype == m_t.dtype == v_t.dtype == jnp.float32
    np.testing.assert_allclose(m_t, [0.1 + 0.45, -0.2 + 0.45], rtol=1e-6)
    np.testing.assert_allclose(v_t, [0.01 + 0.99, 0.04 + 0.99], rtol=1e-6)
