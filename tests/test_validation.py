"""Bad input fails at construction (or init) with a message naming function, parameter, value
and valid range; traced values, jax arrays and schedules pass through unchecked."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax

NAN, INF = float("nan"), float("inf")

# (factory, kwargs, exception, exact message). Each row is one user mistake.
BAD_INPUT = [
    (adamjax.adam, dict(b1=1.0), ValueError, "adam: b1 must be in [0, 1), got 1.0"),
    (adamjax.adam, dict(b1=-0.1), ValueError, "adam: b1 must be in [0, 1), got -0.1"),
    (adamjax.adam, dict(b2=1.5), ValueError, "adam: b2 must be in [0, 1), got 1.5"),
    (adamjax.adam, dict(b2=NAN), ValueError, "adam: b2 must be in [0, 1), got nan"),
    (
        adamjax.adam,
        dict(learning_rate=-1e-3),
        ValueError,
        "adam: learning_rate must be a finite number in [0, inf), got -0.001",
    ),
    (
        adamjax.adam,
        dict(learning_rate=NAN),
        ValueError,
        "adam: learning_rate must be a finite number in [0, inf), got nan",
    ),
    (
        adamjax.adamw,
        dict(learning_rate=INF),
        ValueError,
        "adamw: learning_rate must be a finite number in [0, inf), got inf",
    ),
    (
        adamjax.adam,
        dict(eps=-1e-8),
        ValueError,
        "adam: eps must be a finite number in [0, inf), got -1e-08",
    ),
    (
        adamjax.amsgrad,
        dict(eps_root=-1.0),
        ValueError,
        "amsgrad: eps_root must be a finite number in [0, inf), got -1.0",
    ),
    (
        adamjax.adamw,
        dict(weight_decay=-0.1),
        ValueError,
        "adamw: weight_decay must be a finite number in [0, inf), got -0.1",
    ),
    (
        adamjax.amsgrad,
        dict(weight_decay=NAN),
        ValueError,
        "amsgrad: weight_decay must be a finite number in [0, inf), got nan",
    ),
    (
        adamjax.add_decayed_weights,
        dict(weight_decay=-1),
        ValueError,
        "add_decayed_weights: weight_decay must be a finite number in [0, inf), got -1",
    ),
    (
        adamjax.adam,
        dict(eps_mode="keras"),
        ValueError,
        "adam: eps_mode must be one of 'paper', 'hat', got 'keras'",
    ),
    (
        adamjax.amsgrad,
        dict(max_of="max"),
        ValueError,
        "amsgrad: max_of must be one of 'raw', 'corrected', got 'max'",
    ),
    (
        adamjax.adam,
        dict(amsgrad=True, max_of="v_hat"),
        ValueError,
        "adam: max_of must be one of 'raw', 'corrected', got 'v_hat'",
    ),
    (
        adamjax.adamw,
        dict(weight_decay_scaling="paper"),
        ValueError,
        "adamw: weight_decay_scaling must be one of 'learning_rate', 'schedule', got 'paper'",
    ),
    (
        adamjax.adam,
        dict(mu_dtype=jnp.int32),
        ValueError,
        "adam: mu_dtype must be None, a real floating-point dtype such as jnp.bfloat16",
    ),
    (
        adamjax.adamw,
        dict(nu_dtype="int8"),
        ValueError,
        "adamw: nu_dtype must be None, a real floating-point dtype such as jnp.bfloat16",
    ),
    (
        adamjax.adam,
        dict(nu_dtype=jnp.complex64),
        ValueError,
        "adam: nu_dtype must be None, a real floating-point dtype such as jnp.bfloat16",
    ),
    (
        adamjax.adam,
        dict(mu_dtype="bfloat61"),
        ValueError,
        "adam: mu_dtype must be None, a real floating-point dtype such as jnp.bfloat16",
    ),
    (adamjax.adam, dict(nesterov="yes"), TypeError, "adam: nesterov must be True or False"),
    (adamjax.adam, dict(amsgrad=1), TypeError, "adam: amsgrad must be True or False"),
    (adamjax.adam, dict(b1="0.9"), TypeError, "adam: b1 must be a number, a jax array or a sch"),
    (adamjax.adam, dict(b1=True), TypeError, "adam: b1 must be a number, a jax array or a sch"),
    # The rest of the family and the momentum schedules.
    (adamjax.nadam, dict(b2=1.0), ValueError, "nadam: b2 must be in [0, 1), got 1.0"),
    (
        adamjax.nadam,
        dict(momentum_decay=-1e-3),
        ValueError,
        "nadam: momentum_decay must be a finite number in [0, inf), got -0.001",
    ),
    (
        adamjax.nadam,
        dict(decoupled_weight_decay="yes"),
        TypeError,
        "nadam: decoupled_weight_decay must be True or False",
    ),
    (
        adamjax.adamax,
        dict(eps_mode="paper"),
        ValueError,
        "adamax: eps_mode must be one of 'max', 'denominator', got 'paper'",
    ),
    (adamjax.adamax, dict(learning_rate=-1.0), ValueError, "adamax: learning_rate must be"),
    (
        adamjax.radam,
        dict(threshold=3.0),
        ValueError,
        "radam: threshold must be a finite number in [4, inf), got 3.0",
    ),
    (adamjax.radam, dict(b2=lambda count: 0.99), ValueError, "radam: b2 must be a constant"),
    (adamjax.radam, dict(weight_decay=float("inf")), ValueError, "radam: weight_decay must be"),
    (adamjax.scale_by_nadam, dict(eps=-1.0), ValueError, "scale_by_nadam: eps must be"),
    (adamjax.scale_by_radam, dict(threshold=float("nan")), ValueError, "scale_by_radam: thresh"),
    (adamjax.beta1_decay, dict(b1=1.2, rate=0.1), ValueError, "beta1_decay: b1 must be in [0, 1)"),
    (
        adamjax.beta1_decay,
        dict(b1=0.9, rate=0.1, steps_per_epoch=0),
        ValueError,
        "beta1_decay: steps_per_epoch must be an integer >= 1, got 0",
    ),
    (
        adamjax.beta1_cyclic,
        dict(b1=0.9, period=0),
        ValueError,
        "beta1_cyclic: period must be a finite number in (0, inf), got 0",
    ),
    (
        adamjax.beta1_cyclic,
        dict(b1=0.9, period=2, steps_per_epoch=2.5),
        TypeError,
        "beta1_cyclic: steps_per_epoch must be an integer >= 1, got 2.5",
    ),
    (
        adamjax.scale_by_adam,
        dict(b2=1.0),
        ValueError,
        "scale_by_adam: b2 must be in [0, 1), got 1.0",
    ),
    (
        adamjax.scale_by_amsgrad,
        dict(eps=-0.5),
        ValueError,
        "scale_by_amsgrad: eps must be a finite number in [0, inf), got -0.5",
    ),
    (
        adamjax.scale_by_amsgrad,
        dict(max_of="both"),
        ValueError,
        "scale_by_amsgrad: max_of must be one of 'raw', 'corrected', got 'both'",
    ),
    (
        adamjax.adamw,
        dict(schedule_multiplier=0.5),
        ValueError,
        "adamw: schedule_multiplier is only used with weight_decay_scaling='schedule'",
    ),
    (
        adamjax.adamw,
        dict(learning_rate=optax.constant_schedule(1e-3), weight_decay_scaling="schedule"),
        ValueError,
        "adamw: with weight_decay_scaling='schedule', learning_rate is the base rate alpha",
    ),
    (
        adamjax.adamw,
        dict(weight_decay_scaling="schedule", schedule_multiplier=-1.0),
        ValueError,
        "adamw: schedule_multiplier must be a finite number in [0, inf), got -1.0",
    ),
]


@pytest.mark.parametrize(
    ("factory", "kwargs", "error", "message"),
    BAD_INPUT,
    ids=[f"{f.__name__}-{'-'.join(k)}-{i}" for i, (f, k, _, _) in enumerate(BAD_INPUT)],
)
def test_bad_hyperparameter_fails_at_construction(factory, kwargs, error, message):
    with pytest.raises(error, match="^" + re.escape(message)):
        factory(**kwargs)


@pytest.mark.parametrize("factory", [adamjax.adam, adamjax.adamw, adamjax.amsgrad])
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_integer_or_boolean_params_fail_at_init_naming_the_leaf(factory, dtype):
    params = {"w": jnp.ones(3), "step": jnp.zeros((), dtype)}
    with pytest.raises(TypeError, match=re.escape("params must be floating-point or complex")) as e:
        factory().init(params)
    assert "['step']" in str(e.value) and str(jnp.dtype(dtype)) in str(e.value)


def test_boundary_values_are_accepted():
    params = {"w": jnp.ones(3)}
    for tx in [
        adamjax.adam(0.0, b1=0.0, b2=0.0, eps=0.0, eps_root=0.0),
        adamjax.adamw(np.float32(1e-3), b1=np.float64(0.5), weight_decay=0),
        adamjax.amsgrad(1, eps=1),
    ]:
        tx.update({"w": jnp.full(3, 0.5)}, tx.init(params), params)


def test_arrays_and_schedules_pass_unchecked():
    """Values unknown at construction (arrays, schedules, tracers) are not range-checked."""
    adamjax.adam(jnp.asarray(-1.0), b1=jnp.asarray(2.0))
    adamjax.adamw(optax.linear_schedule(1e-3, 0.0, 10), weight_decay=lambda count: 1e-4)
    params = {"w": jnp.ones(2)}

    @jax.jit
    def traced(b1, lr):
        tx = adamjax.adam(lr, b1=b1)
        return tx.update({"w": jnp.ones(2)}, tx.init(params))[0]

    assert jnp.all(jnp.isfinite(traced(0.9, 1e-3)["w"]))
