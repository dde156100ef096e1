"""The optax drop-in contract: extra ``update`` arguments, optax's positional order, state fields
that optax's tree utilities find once, and complex ``mu_dtype``.

optax's own test files, run with adamjax swapped in, are ``tests/optax_suite.py`` (a script).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax import tree_utils as otu

import adamjax

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.asarray([0.5, -0.25])}
GRADS = jax.tree.map(lambda p: 0.3 * p + 0.1, PARAMS)

ALIASES = {
    "adam": lambda: adamjax.adam(1e-2),
    "adamw": lambda: adamjax.adamw(1e-2, weight_decay=1e-2),
    "amsgrad": lambda: adamjax.amsgrad(1e-2),
    "nadam": lambda: adamjax.nadam(1e-2),
    "adamax": lambda: adamjax.adamax(1e-2),
    "radam": lambda: adamjax.radam(1e-2),
    "adabound": lambda: adamjax.adabound(1e-2),
    "adafactor": lambda: adamjax.adafactor(1e-2),
    "swats": lambda: adamjax.swats(1e-2),
    "adam_mini": lambda: adamjax.adam_mini(1e-2, weight_decay=1e-2),
    "came": lambda: adamjax.came(1e-2, weight_decay=1e-2),
    "ademamix": lambda: adamjax.ademamix(1e-2, weight_decay=1e-2),
    "simplified_ademamix": lambda: adamjax.simplified_ademamix(1e-3, alpha=2.0),
    "laprop": lambda: adamjax.laprop(1e-2),
    "adopt": lambda: adamjax.adopt(1e-2),
    "nadamw": lambda: adamjax.nadamw(1e-2),
    "adamaxw": lambda: adamjax.adamaxw(1e-2),
    "adan": lambda: adamjax.adan(1e-2, weight_decay=1e-2),
    "lamb": lambda: adamjax.lamb(1e-2, weight_decay=1e-2),
    "adabelief": lambda: adamjax.adabelief(1e-2),
    "yogi": lambda: adamjax.yogi(1e-2),
}

# adamjax alias (with the options that select optax's convention) -> optax's alias.
OPTAX_PAIRS = {
    "adam": (lambda: adamjax.adam(1e-2), lambda: optax.adam(1e-2)),
    "adamw": (lambda: adamjax.adamw(1e-2), lambda: optax.adamw(1e-2)),
    "amsgrad": (lambda: adamjax.amsgrad(1e-2, max_of="corrected"), lambda: optax.amsgrad(1e-2)),
    "nadam": (lambda: adamjax.adam(1e-2, nesterov=True), lambda: optax.nadam(1e-2)),
    "adamax": (lambda: adamjax.adamax(1e-2), lambda: optax.adamax(1e-2)),
    "adamaxw": (
        lambda: adamjax.adamax(1e-2, weight_decay=1e-2, decoupled_weight_decay=True),
        lambda: optax.adamaxw(1e-2, weight_decay=1e-2),
    ),
    "radam": (lambda: adamjax.radam(1e-2, eps_mode="paper"), lambda: optax.radam(1e-2)),
    "radam(nesterov)": (
        lambda: adamjax.radam(1e-2, eps_mode="paper", nesterov=True),
        lambda: optax.radam(1e-2, nesterov=True),
    ),
    "ademamix": (lambda: adamjax.ademamix(1e-2), lambda: optax.contrib.ademamix(1e-2)),
    "simplified_ademamix": (
        lambda: adamjax.simplified_ademamix(1e-3, alpha=2.0),
        lambda: optax.contrib.simplified_ademamix(1e-3, alpha=2.0),
    ),
    "adopt": (lambda: adamjax.adopt(1e-2), lambda: optax.contrib.adopt(1e-2)),
    "nadamw": (lambda: adamjax.nadamw(1e-2), lambda: optax.nadamw(1e-2)),
    "adamaxw (alias)": (lambda: adamjax.adamaxw(1e-2), lambda: optax.adamaxw(1e-2)),
    "adan": (
        lambda: adamjax.adan(
            1e-2, weight_decay=1e-2, no_prox=True, difference_weight="1-b2", eps_root=1e-8
        ),
        lambda: optax.adan(1e-2, weight_decay=1e-2),
    ),
}


def _run(tx: optax.GradientTransformation, steps: int = 4, **extra) -> tuple:
    params, state = PARAMS, tx.init(PARAMS)
    for _ in range(steps):
        updates, state = tx.update(GRADS, state, params, **extra)
        params = optax.apply_updates(params, updates)
    return params, state


@pytest.mark.parametrize("name", list(ALIASES))
def test_every_alias_takes_extra_update_arguments(name: str) -> None:
    tx = optax.chain(ALIASES[name](), optax.contrib.reduce_on_plateau())
    with_value, _ = _run(tx, value=jnp.asarray(1.0))
    plain, _ = _run(ALIASES[name]())
    # reduce_on_plateau scales by 1 until the loss plateaus: the same trajectory.
    jax.tree.map(np.testing.assert_array_equal, with_value, plain)


@pytest.mark.parametrize("name", list(OPTAX_PAIRS))
def test_chains_with_reduce_on_plateau_equal_optax(name: str) -> None:
    ours, theirs = (
        optax.chain(make(), optax.contrib.reduce_on_plateau(patience=1, factor=0.5))
        for make in OPTAX_PAIRS[name]
    )
    params = {"ours": PARAMS, "theirs": PARAMS}
    states = {"ours": ours.init(PARAMS), "theirs": theirs.init(PARAMS)}
    for k in range(6):
        loss = jnp.asarray(1.0 if k < 2 else 2.0)  # a plateau: the scale halves
        for key, tx in (("ours", ours), ("theirs", theirs)):
            updates, states[key] = tx.update(GRADS, states[key], params[key], value=loss)
            params[key] = optax.apply_updates(params[key], updates)
    assert float(otu.tree_get(states["theirs"], "scale")) < 1  # the plateau was reached
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7),
        params["ours"],
        params["theirs"],
    )


def test_nnx_optimizer_update_passes_value() -> None:
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    tx = optax.chain(adamjax.adamw(1e-2), optax.contrib.reduce_on_plateau())
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jnp.ones((4, 3))

    def loss_fn(model):
        return jnp.mean(model(x) ** 2)

    before = np.asarray(model.kernel.get_value())
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads, value=loss)
    assert not np.allclose(before, np.asarray(model.kernel.get_value()))


@pytest.mark.parametrize("name", list(ALIASES))
def test_tree_get_finds_one_count(name: str) -> None:
    tx = ALIASES[name]()
    _, state = _run(tx, steps=3)
    assert int(otu.tree_get(state, "count")) == 3


@pytest.mark.parametrize("name", ["adam", "adamw", "amsgrad", "nadam", "adamax", "radam"])
def test_inject_hyperparams_get_and_set(name: str) -> None:
    tx = optax.inject_hyperparams(getattr(adamjax, name))(learning_rate=1e-2, b1=0.9)
    state = tx.init(PARAMS)
    assert float(otu.tree_get(state, "learning_rate")) == pytest.approx(1e-2)
    assert float(otu.tree_get(state, "b1")) == pytest.approx(0.9)
    state = otu.tree_set(state, learning_rate=0.0)  # a Python float, as optax users write it
    updates, state = jax.jit(tx.update)(GRADS, state, PARAMS)
    jax.tree.map(lambda u: np.testing.assert_array_equal(u, 0.0), updates)
    state = otu.tree_set(state, learning_rate=2e-2)
    updates, _ = tx.update(GRADS, state, PARAMS)
    assert all(np.all(np.asarray(u) != 0) for u in jax.tree.leaves(updates))


POSITIONAL = {
    "adam": (adamjax.adam, optax.adam),
    "adamw": (adamjax.adamw, optax.adamw),
    "amsgrad": (adamjax.amsgrad, optax.amsgrad),
    "nadam": (adamjax.nadam, optax.nadam),
    "adamax": (adamjax.adamax, optax.adamax),
    "radam": (adamjax.radam, optax.radam),
    "adafactor": (adamjax.adafactor, optax.adafactor),
    "scale_by_adam": (adamjax.scale_by_adam, optax.scale_by_adam),
    "scale_by_amsgrad": (adamjax.scale_by_amsgrad, optax.scale_by_amsgrad),
    "scale_by_adamax": (adamjax.scale_by_adamax, optax.scale_by_adamax),
    "scale_by_radam": (adamjax.scale_by_radam, optax.scale_by_radam),
    "add_decayed_weights": (adamjax.add_decayed_weights, optax.add_decayed_weights),
    "scale_by_learning_rate": (adamjax.scale_by_learning_rate, optax.scale_by_learning_rate),
    "ademamix": (adamjax.ademamix, optax.contrib.ademamix),
    "simplified_ademamix": (adamjax.simplified_ademamix, optax.contrib.simplified_ademamix),
    "scale_by_ademamix": (adamjax.scale_by_ademamix, optax.contrib.scale_by_ademamix),
    "scale_by_simplified_ademamix": (
        adamjax.scale_by_simplified_ademamix,
        optax.contrib.scale_by_simplified_ademamix,
    ),
    "adopt": (adamjax.adopt, optax.contrib.adopt),
    "scale_by_adopt": (adamjax.scale_by_adopt, optax.contrib.scale_by_adopt),
    "nadamw": (adamjax.nadamw, optax.nadamw),
    "adamaxw": (adamjax.adamaxw, optax.adamaxw),
    "adan": (adamjax.adan, optax.adan),
    "scale_by_adan": (adamjax.scale_by_adan, optax.scale_by_adan),
    "lamb": (adamjax.lamb, optax.lamb),
    "adabelief": (adamjax.adabelief, optax.adabelief),
    "yogi": (adamjax.yogi, optax.yogi),
    "scale_by_trust_ratio": (adamjax.scale_by_trust_ratio, optax.scale_by_trust_ratio),
    "scale_by_belief": (adamjax.scale_by_belief, optax.scale_by_belief),
    "scale_by_yogi": (adamjax.scale_by_yogi, optax.scale_by_yogi),
}


def _positional(fn) -> list[str]:
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind in kinds]


@pytest.mark.parametrize("name", list(POSITIONAL))
def test_positional_parameters_are_optaxs_in_optaxs_order(name: str) -> None:
    ours, theirs = POSITIONAL[name]
    # Everything adamjax adds is keyword-only: the positional lists are equal.
    assert _positional(ours) == _positional(theirs)


def test_positional_mu_dtype_is_a_dtype_not_a_weight_decay() -> None:
    tx = adamjax.adamw(1e-3, 0.9, 0.999, 1e-8, 0.0, jnp.bfloat16)
    state = tx.init(PARAMS)
    assert otu.tree_get(state, "mu")["w"].dtype == jnp.bfloat16
    # The same optimizer as the keyword call (optax's own bf16 arithmetic differs: it multiplies
    # the bfloat16 moment by b1 in bfloat16, adamjax decodes it to float32 first).
    positional, _ = _run(tx)
    keyword, _ = _run(adamjax.adamw(1e-3, mu_dtype=jnp.bfloat16))
    jax.tree.map(np.testing.assert_array_equal, positional, keyword)
    float32, _ = _run(adamjax.adamw(1e-3))
    assert not np.array_equal(positional["w"], float32["w"])  # the dtype took effect


@pytest.mark.parametrize("flags", [(False, True), (True, False), (False, False)])
def test_amsgrad_bias_correction_switches_equal_optax(flags) -> None:
    ours, _ = _run(adamjax.amsgrad(1e-2, 0.9, 0.999, 1e-8, 0.0, None, *flags, max_of="corrected"))
    theirs, _ = _run(optax.amsgrad(1e-2, 0.9, 0.999, 1e-8, 0.0, None, *flags))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), ours, theirs)
    default, _ = _run(adamjax.amsgrad(1e-2, max_of="corrected"))
    assert not np.allclose(ours["w"], default["w"], rtol=1e-6)


@pytest.mark.parametrize("make", [adamjax.adam, adamjax.adamw, adamjax.nadam, adamjax.radam])
def test_complex_mu_dtype_for_complex_params(make) -> None:
    params = {"z": jnp.asarray([1 + 2j, -0.5j, 3.0], jnp.complex64)}
    grads = {"z": jnp.asarray([0.1 - 0.2j, 0.3j, -1.0], jnp.complex64)}
    tx = make(1e-2, mu_dtype=jnp.complex64)
    state = tx.init(params)
    assert otu.tree_get(state, "mu")["z"].dtype == jnp.complex64
    updates, _ = tx.update(grads, state, params)
    same, _ = make(1e-2).update(grads, make(1e-2).init(params), params)
    np.testing.assert_array_equal(updates["z"], same["z"])
    assert np.any(np.imag(np.asarray(updates["z"])) != 0)


def test_complex_mu_dtype_for_real_params_is_rejected() -> None:
    with pytest.raises(TypeError, match=r"adam: mu_dtype complex64 is complex, but the param at"):
        adamjax.adam(1e-2, mu_dtype=jnp.complex64).init(PARAMS)
    with pytest.raises(TypeError, match=r"swats: mu_dtype complex64 is complex"):
        adamjax.swats(1e-2, mu_dtype=jnp.complex64).init(PARAMS)


@pytest.mark.parametrize(
    "make",
    [
        lambda: adamjax.with_diagnostics(adamjax.adam(1e-2)),
        lambda: optax.chain(adamjax.adamw(1e-2), adamjax.stochastic_rounding(seed=0)),
        lambda: adamjax.adamw(optax.linear_schedule(1e-2, 0.0, 10), weight_decay=1e-2),
    ],
    ids=["with_diagnostics", "stochastic_rounding", "scheduled_lr"],
)
def test_wrappers_and_formats_add_no_second_count(make) -> None:
    _, state = _run(make(), steps=2)
    assert int(otu.tree_get(state, "count")) == 2


def test_radam_nesterov_is_optaxs_past_the_threshold() -> None:
    """optax.radam(nesterov=True) over 40 steps (SGD phase, switch, adaptive phase), in float64:
    in float32 optax's rho_t rounds b2**t, which moves r_t by up to 0.5% (docs/algorithms)."""
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: p.astype(jnp.float64), PARAMS)
        grads = jax.tree.map(lambda p: p.astype(jnp.float64), GRADS)

        def run(tx):
            p, state = params, tx.init(params)
            for _ in range(40):
                updates, state = tx.update(grads, state, p)
                p = optax.apply_updates(p, updates)
            return p

        ours = run(adamjax.radam(1e-2, eps_mode="paper", nesterov=True))
        theirs = run(optax.radam(1e-2, nesterov=True))
        plain = run(adamjax.radam(1e-2, eps_mode="paper"))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), ours, theirs)
    assert not np.allclose(ours["w"], plain["w"], rtol=1e-5)
