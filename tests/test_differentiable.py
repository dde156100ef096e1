"""Differentiable optimisation: hypergradients through unrolled steps, and vmap over
hyperparameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax

EPS_ROOT = 1e-12
# Every alias, built from a (traced) learning rate. eps_root > 0 wherever a square root of the
# second moment is taken: its derivative at a zero second moment is infinite.
ALIASES = {
    "adam": lambda lr: adamjax.adam(lr, eps_root=EPS_ROOT),
    "adamw": lambda lr: adamjax.adamw(lr, eps_root=EPS_ROOT, weight_decay=0.1),
    "amsgrad(raw)": lambda lr: adamjax.amsgrad(lr, eps_root=EPS_ROOT, max_of="raw"),
    "amsgrad(corrected)": lambda lr: adamjax.amsgrad(lr, eps_root=EPS_ROOT, max_of="corrected"),
    "adam(nesterov)": lambda lr: adamjax.adam(lr, eps_root=EPS_ROOT, nesterov=True),
    "nadam": lambda lr: adamjax.nadam(lr, eps_root=EPS_ROOT),
    "adamax": lambda lr: adamjax.adamax(lr),  # no square root: max(b2 u, |g|)
    "radam": lambda lr: adamjax.radam(lr, eps_root=EPS_ROOT, threshold=4.0),
    "adabound": lambda lr: adamjax.adabound(lr, eps_root=EPS_ROOT, final_lr=0.05),
    "amsbound": lambda lr: adamjax.adabound(lr, eps_root=EPS_ROOT, final_lr=0.05, amsbound=True),
    # eps (1e-30) is added to g**2 before the factored statistics are taken. The momentum
    # follows the params' dtype (its default, float32, would add float32 rounding to float64).
    "adafactor": lambda lr: adamjax.adafactor(
        lr, min_dim_size_to_factor=2, momentum=0.9, dtype_momentum=None
    ),
    "swats": lambda lr: adamjax.swats(lr, eps_root=EPS_ROOT),
}
STEPS = 8
LR = 0.03


def _problem(dtype):
    """A one-hidden-layer ReLU regression whose first hidden unit is dead for every input: the
    gradients of its weights are exact zeros computed from the params (0 * something), so their
    second moments stay 0 and the square root sits at its singular point."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(32, 4)), dtype)
    y = jnp.asarray(rng.normal(size=(32, 3)), dtype)
    params = {
        "w1": jnp.asarray(rng.normal(size=(4, 5)) / 2, dtype),
        "b1": jnp.asarray([-100.0, 0.0, 0.0, 0.0, 0.0], dtype),
        "w2": jnp.asarray(rng.normal(size=(5, 3)) / 2, dtype),
    }
    return params, x, y


def _loss(params, x, y):
    hidden = jax.nn.relu(x @ params["w1"] + params["b1"])
    return jnp.mean((hidden @ params["w2"] - y) ** 2)


def _train(make, lr, params, x, y):
    """Runs STEPS steps from ``params`` (a ``lax.scan``, reverse-differentiable) and returns
    the final params."""
    tx = make(lr)

    def step(carry, _):
        params, state = carry
        grads = jax.grad(_loss)(params, x[:24], y[:24])
        updates, state = tx.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), length=STEPS)
    return params


def _validation_loss(make, lr, params, x, y):
    return _loss(_train(make, lr, params, x, y), x[24:], y[24:])


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_hypergradient_matches_central_differences_in_float64(name):
    with jax.enable_x64(True):
        params, x, y = _problem(jnp.float64)

        def f(lr):
            return _validation_loss(ALIASES[name], lr, params, x, y)

        lr = jnp.asarray(LR, jnp.float64)
        grad = float(jax.jit(jax.grad(f))(lr))
        h = 1e-6 * LR
        value = jax.jit(f)
        central = (float(value(lr + h)) - float(value(lr - h))) / (2 * h)

    assert np.isfinite(grad), name
    # The loss must depend on the learning rate for the comparison to mean anything.
    assert abs(central) > 1e-4, (name, central)
    # float64: truncation O(h**2) ~ 1e-15 relative, rounding ~ 1e-16 / 1e-6 * loss ~ 1e-10.
    np.testing.assert_allclose(grad, central, rtol=1e-6, err_msg=name)


def test_without_eps_root_the_hypergradient_of_a_zero_second_moment_is_nan():
    """Why eps_root > 0: the dead unit's second moment is 0, sqrt'(0) is infinite, and the
    cotangent inf * 0 is NaN, which reaches the learning rate through the params."""
    with jax.enable_x64(True):
        params, x, y = _problem(jnp.float64)

        def f(lr, eps_root):
            make = lambda lr: adamjax.adam(lr, eps_root=eps_root)  # noqa: E731
            return _validation_loss(make, lr, params, x, y)

        lr = jnp.asarray(LR, jnp.float64)
        assert np.isnan(float(jax.grad(f)(lr, 0.0)))
        assert np.isfinite(float(jax.grad(f)(lr, EPS_ROOT)))


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_vmap_over_four_learning_rates_equals_four_runs(name):
    params, x, y = _problem(jnp.float32)
    lrs = jnp.asarray([1e-3, 3e-3, 1e-2, 3e-2], jnp.float32)

    def run(lr):
        return _train(ALIASES[name], lr, params, x, y)

    batched = jax.jit(jax.vmap(run))(lrs)
    single = jax.jit(run)
    for i, lr in enumerate(lrs):
        one = single(lr)
        for path, a in jax.tree_util.tree_flatten_with_path(batched)[0]:
            b = one
            for key in path:
                b = b[key.key]
            # The batched program is another compilation: XLA CPU may contract a*b+c into
            # fused multiply-adds differently, so the runs agree to rounding, not bit for bit.
            np.testing.assert_allclose(
                np.asarray(a[i]), np.asarray(b), rtol=2e-6, atol=2e-7, err_msg=f"{name} {path}"
            )
    # The four learning rates gave four different runs (the batch was not collapsed).
    w = np.asarray(batched["w2"])
    assert all(not np.array_equal(w[i], w[i + 1]) for i in range(3))
