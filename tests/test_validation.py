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
        dict(b2=1 - 1e-9),
        ValueError,
        "adam: b2 must be in [0, 1), got 0.999999999, which is 1.0 in float32, the precision",
    ),
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
        dict(weight_decay=float("inf")),
        ValueError,
        "add_decayed_weights: weight_decay must be a finite number, got inf",
    ),
    (
        adamjax.adam,
        dict(eps_mode="keras"),
        ValueError,
        "adam: eps_mode must be one of 'paper', 'hat', 'atan2', got 'keras'",
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
        "adam: mu_dtype must be None, one of bfloat16, float16, float32, float64 (complex64",
    ),
    (
        adamjax.adamw,
        dict(nu_dtype="int8"),
        ValueError,
        "adamw: nu_dtype must be None, one of bfloat16, float16, float32, float64, adamjax.q8()",
    ),
    (
        adamjax.adam,
        dict(nu_dtype=jnp.complex64),
        ValueError,
        "adam: nu_dtype must be None, one of bfloat16, float16, float32, float64, adamjax.q8()",
    ),
    (
        adamjax.adam,
        dict(mu_dtype="bfloat61"),
        ValueError,
        "adam: mu_dtype must be None, one of bfloat16, float16, float32, float64 (complex64",
    ),
    (adamjax.adam, dict(nesterov="yes"), TypeError, "adam: nesterov must be True or False"),
    (adamjax.adam, dict(amsgrad=1), TypeError, "adam: amsgrad must be True or False"),
    (
        adamjax.adam,
        dict(b1="0.9"),
        TypeError,
        "adam: b1 must be a number, a 0-d array or a schedule",
    ),
    (
        adamjax.adam,
        dict(b1=True),
        TypeError,
        "adam: b1 must be a number, a 0-d array or a schedule",
    ),
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
    # AdaBound / AMSBound: the bound hyperparameters.
    (adamjax.adabound, dict(final_lr=-1), ValueError, "adabound: final_lr must be a finite numbe"),
    (
        adamjax.adabound,
        dict(final_lr=NAN),
        ValueError,
        "adabound: final_lr must be a finite number in [0, inf), got nan",
    ),
    (adamjax.adabound, dict(gamma=1.5), ValueError, "adabound: gamma must be in [0, 1), got 1.5"),
    (adamjax.adabound, dict(gamma=-0.1), ValueError, "adabound: gamma must be in [0, 1), got -0.1"),
    (adamjax.adabound, dict(amsbound="yes"), TypeError, "adabound: amsbound must be True or False"),
    (adamjax.adabound, dict(b1=1.0), ValueError, "adabound: b1 must be in [0, 1), got 1.0"),
    (
        adamjax.scale_by_adabound,
        dict(final_lr=-2.0),
        ValueError,
        "scale_by_adabound: final_lr must be a finite number in [0, inf), got -2.0",
    ),
    # Adafactor: decay exponent, thresholds, factoring size, the step-size modes.
    (
        adamjax.adafactor,
        dict(decay_rate=1.5),
        ValueError,
        "adafactor: decay_rate must be in (0, 1], got 1.5",
    ),
    (
        adamjax.adafactor,
        dict(decay_rate=0.0),
        ValueError,
        "adafactor: decay_rate must be in (0, 1]",
    ),
    (
        adamjax.adafactor,
        dict(clipping_threshold=0.0),
        ValueError,
        "adafactor: clipping_threshold must be a finite number in (0, inf), got 0.0",
    ),
    (
        adamjax.adafactor,
        dict(min_dim_size_to_factor=0),
        ValueError,
        "adafactor: min_dim_size_to_factor must be an integer >= 1, got 0",
    ),
    (
        adamjax.adafactor,
        dict(min_dim_size_to_factor=2.5),
        TypeError,
        "adafactor: min_dim_size_to_factor must be an integer >= 1, got 2.5 of type float",
    ),
    (adamjax.adafactor, dict(momentum=1.0), ValueError, "adafactor: momentum must be in [0, 1)"),
    (
        adamjax.adafactor,
        dict(decay_offset=-1),
        ValueError,
        "adafactor: decay_offset must be an integer >= 0, got -1",
    ),
    (
        adamjax.adafactor,
        dict(relative_step_cap=0.0),
        ValueError,
        "adafactor: relative_step_cap must be a finite number in (0, inf), got 0.0",
    ),
    (
        adamjax.adafactor,
        dict(learning_rate=1e-3, relative_step=True),
        ValueError,
        "adafactor: relative_step=True computes its own step size, so learning_rate must be None",
    ),
    (
        adamjax.adafactor,
        dict(multiply_by_parameter_scale="yes"),
        TypeError,
        "adafactor: multiply_by_parameter_scale must be True or False",
    ),
    (
        adamjax.scale_by_factored_rms,
        dict(decay_rate=2.0),
        ValueError,
        "scale_by_factored_rms: decay_rate must be in (0, 1], got 2.0",
    ),
    (
        adamjax.clip_by_block_rms,
        dict(threshold=-1.0),
        ValueError,
        "clip_by_block_rms: threshold must be a finite number in (0, inf), got -1.0",
    ),
    (
        adamjax.relative_step_schedule,
        dict(cap=-1.0),
        ValueError,
        "relative_step_schedule: cap must be a finite number in (0, inf), got -1.0",
    ),
    # SWATS: the switch test and the SGD phase.
    (adamjax.swats, dict(learning_rate=-1.0), ValueError, "swats: learning_rate must be a finite"),
    (
        adamjax.swats,
        dict(switch_tol=-1.0),
        ValueError,
        "swats: switch_tol must be a finite number in (0, inf), got -1.0",
    ),
    (
        adamjax.swats,
        dict(switch_rtol=-1.0),
        ValueError,
        "swats: switch_rtol must be a finite number in [0, inf), got -1.0",
    ),
    (
        adamjax.swats,
        dict(granularity="layer"),
        ValueError,
        "swats: granularity must be one of 'global', 'leaf', got 'layer'",
    ),
    (
        adamjax.swats,
        dict(sgd_schedule="cosine"),
        ValueError,
        "swats: sgd_schedule must be one of 'relative', 'fixed', got 'cosine'",
    ),
    (adamjax.scale_by_swats, dict(b2=1.0), ValueError, "scale_by_swats: b2 must be in [0, 1)"),
    # Moment formats: 8-bit block sizes and maps, stochastic-rounding seeds.
    (adamjax.q8, dict(block_size=0), ValueError, "q8: block_size must be an integer >= 1, got 0"),
    (
        adamjax.q8,
        dict(block_size=2.5),
        TypeError,
        "q8: block_size must be an integer >= 1, got 2.5 of type float",
    ),
    (
        adamjax.q8,
        dict(mapping="log"),
        ValueError,
        "q8: mapping must be one of 'dynamic', 'linear', got 'log'",
    ),
    (adamjax.q8, dict(min_size=-1), ValueError, "q8: min_size must be an integer >= 0, got -1"),
    (
        adamjax.stochastic_bf16,
        dict(seed=-1),
        ValueError,
        "stochastic_bf16: seed must be an integer >= 0, got -1",
    ),
    (
        adamjax.stochastic_rounding,
        dict(seed="a"),
        TypeError,
        "stochastic_rounding: seed must be an integer >= 0, got 'a' of type str",
    ),
    # The learning-rate piece and the diagnostics wrapper.
    (
        adamjax.scale_by_learning_rate,
        dict(learning_rate=-1.0),
        ValueError,
        "scale_by_learning_rate: learning_rate must be a finite number in [0, inf), got -1.0",
    ),
    (
        adamjax.with_diagnostics,
        dict(tx="adam"),
        TypeError,
        "with_diagnostics: tx must be an optax.GradientTransformation, got 'adam'",
    ),
    (
        adamjax.with_diagnostics,
        dict(tx=optax.identity(), histogram_bins=0),
        ValueError,
        "with_diagnostics: histogram_bins must be an integer >= 1, got 0",
    ),
    (
        adamjax.with_diagnostics,
        dict(tx=optax.identity(), histogram_bins=8, histogram_range=(1.0, 0.1)),
        ValueError,
        "with_diagnostics: histogram_range must satisfy 0 < low < high < inf",
    ),
    # Masks: leaves that are not flags fail at construction.
    (
        adamjax.adamw,
        dict(mask={"w": 1}),
        TypeError,
        "adamw: mask leaves must be True or False, got 1 of type int at ['w']",
    ),
    (
        adamjax.adafactor,
        dict(weight_decay_rate=1e-3, weight_decay_mask=["yes"]),
        TypeError,
        "adafactor: weight_decay_mask leaves must be True or False, got 'yes' of type str at [0]",
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


def test_traced_values_and_schedules_pass_unchecked():
    """Values unknown at construction (schedules, tracers) are not range-checked; concrete 0-d
    arrays are (test_sweep.py)."""
    adamjax.adamw(optax.linear_schedule(1e-3, 0.0, 10), weight_decay=lambda count: 1e-4)
    params = {"w": jnp.ones(2)}

    @jax.jit
    def traced(b1, lr):
        tx = adamjax.adam(lr, b1=b1)
        return tx.update({"w": jnp.ones(2)}, tx.init(params))[0]

    assert jnp.all(jnp.isfinite(traced(0.9, 1e-3)["w"]))


# Every alias, with the piece that checks the gradients against its state.
ALIASES = {  # factory, and the function the runtime errors name: the one the user called
    "adam": (adamjax.adam, "adam"),
    "adamw": (lambda: adamjax.adamw(weight_decay=0.1), "adamw"),
    "amsgrad": (adamjax.amsgrad, "amsgrad"),
    "nadam": (adamjax.nadam, "nadam"),
    "adamax": (adamjax.adamax, "adamax"),
    "radam": (adamjax.radam, "radam"),
    "adabound": (lambda: adamjax.adabound(amsbound=True), "adabound"),
    "adafactor": (lambda: adamjax.adafactor(min_dim_size_to_factor=2), "adafactor"),
    "swats": (adamjax.swats, "swats"),
    "scale_by_adam": (adamjax.scale_by_adam, "scale_by_adam"),
    "adam-q8": (
        lambda: adamjax.adam(mu_dtype=adamjax.q8(min_size=0), nu_dtype=adamjax.q8(min_size=0)),
        "adam",
    ),
    "with_diagnostics": (lambda: adamjax.with_diagnostics(adamjax.amsgrad()), "amsgrad"),
}
PARAMS = {"w": jnp.ones((4, 3)), "b": {"c": jnp.ones(5)}}


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_gradients_with_another_structure_fail_naming_both_structures(name):
    factory, piece = ALIASES[name]
    tx = factory()
    state = tx.init(PARAMS)
    grads = {"w": jnp.ones((4, 3))}
    with pytest.raises(ValueError, match=re.escape(f"{piece}: the updates' tree structure")) as e:
        tx.update(grads, state, PARAMS)
    assert str(jax.tree.structure(grads)) in str(e.value)
    assert str(jax.tree.structure(PARAMS)) in str(e.value)
    # The same mistake inside jit fails the same way, at trace time.
    with pytest.raises(ValueError, match=re.escape(f"{piece}: the updates' tree structure")):
        jax.jit(tx.update)(grads, state, PARAMS)


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_gradients_with_another_shape_fail_naming_the_leaf_and_both_shapes(name):
    factory, piece = ALIASES[name]
    tx = factory()
    state = tx.init(PARAMS)
    grads = {"w": jnp.ones((4, 2)), "b": {"c": jnp.ones(5)}}
    with pytest.raises(ValueError, match=f"^{re.escape(piece)}: ") as e:
        tx.update(grads, state, PARAMS)
    assert "['w']" in str(e.value) and "(4, 2)" in str(e.value)
    # The state's side: the moment's shape, or Adafactor's row and column statistics.
    assert ("(4, 3)" if name != "adafactor" else "((3,), (4,), (1,))") in str(e.value)


@pytest.mark.parametrize("name", sorted(ALIASES))
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_integer_or_boolean_params_fail_at_init_for_every_alias(name, dtype):
    factory, piece = ALIASES[name]
    params = {"w": jnp.ones(3), "step": jnp.zeros((), dtype)}
    with pytest.raises(TypeError, match=re.escape(f"{piece}: params must be floating-point")) as e:
        factory().init(params)
    assert "['step']" in str(e.value) and str(jnp.dtype(dtype)) in str(e.value)


# (alias, keyword of its mask) for every alias with a weight-decay mask.
MASKED = {
    "adamw": (lambda **kw: adamjax.adamw(weight_decay=0.1, **kw), "mask"),
    "amsgrad": (lambda **kw: adamjax.amsgrad(weight_decay=0.1, **kw), "mask"),
    "nadam": (lambda **kw: adamjax.nadam(weight_decay=0.1, **kw), "mask"),
    "adamax": (lambda **kw: adamjax.adamax(weight_decay=0.1, **kw), "mask"),
    "radam": (lambda **kw: adamjax.radam(weight_decay=0.1, **kw), "mask"),
    "adabound": (lambda **kw: adamjax.adabound(weight_decay=0.1, **kw), "mask"),
    "adafactor": (
        lambda **kw: adamjax.adafactor(weight_decay_rate=0.1, **kw),
        "weight_decay_mask",
    ),
}
WRONG_MASKS = {
    "missing-leaf": {"w": True},
    "wrong-key": {"w": True, "b": {"d": False}},
    "callable": lambda params: {"w": True},
}


@pytest.mark.parametrize("name", sorted(MASKED))
@pytest.mark.parametrize("wrong", sorted(WRONG_MASKS))
def test_a_mask_that_does_not_fit_the_params_fails_naming_both_structures(name, wrong):
    factory, keyword = MASKED[name]
    tx = factory(**{keyword: WRONG_MASKS[wrong]})
    message = f"{name}: {keyword} must have the params' tree structure, or a prefix of it."
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        tx.init(PARAMS)
    assert str(jax.tree.structure(PARAMS)) in str(e.value)


@pytest.mark.parametrize("name", sorted(MASKED))
def test_a_prefix_mask_is_accepted_and_decays_only_the_marked_leaves(name):
    factory, keyword = MASKED[name]
    grads = jax.tree.map(jnp.zeros_like, PARAMS)
    masked = factory(**{keyword: {"w": True, "b": False}})
    updates, _ = masked.update(grads, masked.init(PARAMS), PARAMS)
    # Zero gradients: decay alone moves a leaf, so only "w" moves.
    assert jnp.all(updates["w"] < 0) and jnp.all(updates["b"]["c"] == 0)


def test_decay_rates_are_checked_in_the_precision_the_params_compute_in():
    """Without x64 the optimizer computes in float32, so b2 = 1 - 1e-12 (1.0 there) fails when
    it is built. With x64 it is valid for float64 params and fails at init for float32 ones,
    whose scalars are float32 even then."""
    with pytest.raises(
        ValueError,
        match=re.escape("adam: b2 must be in [0, 1), got 0.999999999999, which is 1.0 in float32"),
    ):
        adamjax.adam(1e-3, b2=1 - 1e-12)
    with jax.enable_x64(True):
        tx = adamjax.adam(1e-3, b2=1 - 1e-12)
        params64 = {"w": jnp.ones(3, jnp.float64)}
        updates, _ = tx.update({"w": jnp.full(3, 0.5, jnp.float64)}, tx.init(params64))
        np.testing.assert_allclose(updates["w"], -1e-3, rtol=1e-6)
        with pytest.raises(
            ValueError,
            match=re.escape(
                "adam: b2 must be in [0, 1), got 0.999999999999, which is 1.0 in float32"
            ),
        ):
            tx.init({"w": jnp.ones(3, jnp.float32)})
        # A value fine in float32 is fine for float32 params under x64 too.
        adamjax.adam(1e-3, b2=0.999).init({"w": jnp.ones(3, jnp.float32)})
