"""The aliases against the papers (float64 NumPy) and against optax (live, float32).

The golden torch/Keras trajectories are checked in ``test_golden.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adamjax

from helpers import (
    max_rel_err,
    optax_reference_step,
    quadratic_problem,
    rosenbrock_problem,
    run_adamjax,
    run_forced,
)
from reference.numpy_reference import AdamReference

LR = 1e-2
# optax evaluates these in float32 even under x64; the reference takes the same values, since the
# schedules are inputs here, not the maths under test.
EXP_DECAY = optax.exponential_decay(LR, 1, 0.997)
COSINE = optax.cosine_decay_schedule(1.0, 1000)


def values_of(schedule):
    # An int32 count, as the optimizer passes it: optax's arithmetic then runs in float32.
    return lambda k: float(schedule(jnp.int32(k)))


# name -> (adamjax transformation, reference options). One row per convention the paper tests
# must pin down; hyperparameters differ from the defaults so that every term matters.
REFERENCE_CASES = {
    "adam_paper_eps": (
        lambda: adamjax.adam(LR, b1=0.8, b2=0.99, eps=1e-6),
        dict(lr=lambda k: LR, b1=0.8, b2=0.99, eps=1e-6),
    ),
    "adam_eps_root": (
        lambda: adamjax.adam(LR, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-4),
        dict(lr=lambda k: LR, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-4),
    ),
    "adam_eps_hat": (
        lambda: adamjax.adam(LR, b1=0.8, b2=0.99, eps=1e-4, eps_mode="hat"),
        dict(lr=lambda k: LR, b1=0.8, b2=0.99, eps=1e-4, eps_mode="hat"),
    ),
    "adam_nesterov": (
        lambda: adamjax.adam(LR, b1=0.8, b2=0.99, eps=1e-6, nesterov=True),
        dict(lr=lambda k: LR, b1=0.8, b2=0.99, eps=1e-6, nesterov=True),
    ),
    "amsgrad_max_raw": (
        lambda: adamjax.amsgrad(LR, b1=0.8, b2=0.99, eps=1e-6),
        dict(lr=lambda k: LR, b1=0.8, b2=0.99, eps=1e-6, amsgrad=True, max_of="raw"),
    ),
    "amsgrad_max_corrected": (
        lambda: adamjax.amsgrad(LR, b1=0.8, b2=0.99, eps=1e-6, max_of="corrected"),
        dict(lr=lambda k: LR, b1=0.8, b2=0.99, eps=1e-6, amsgrad=True, max_of="corrected"),
    ),
    "amsgrad_max_raw_eps_hat": (
        lambda: adamjax.adam(LR, b1=0.8, b2=0.99, eps=1e-4, amsgrad=True, eps_mode="hat"),
        dict(lr=lambda k: LR, b1=0.8, b2=0.99, eps=1e-4, amsgrad=True, eps_mode="hat"),
    ),
    "adamw_torch_scaling_with_schedule": (
        lambda: adamjax.adamw(EXP_DECAY, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1),
        dict(lr=values_of(EXP_DECAY), b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1),
    ),
    "adamw_paper_scaling": (
        lambda: adamjax.adamw(
            LR,
            b1=0.8,
            b2=0.99,
            eps=1e-6,
            weight_decay=1e-3,
            weight_decay_scaling="schedule",
            schedule_multiplier=COSINE,
        ),
        dict(
            lr=lambda k: LR,
            b1=0.8,
            b2=0.99,
            eps=1e-6,
            weight_decay=1e-3,
            decay_scaling="schedule",
            multiplier=values_of(COSINE),
        ),
    ),
    "amsgrad_with_decay": (
        lambda: adamjax.amsgrad(LR, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.05),
        dict(lr=lambda k: LR, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.05, amsgrad=True),
    ),
}
PROBLEMS = {"quadratic": quadratic_problem, "rosenbrock": rosenbrock_problem}


def run_reference(options: dict, params: dict, grad_fn, steps: int) -> dict:
    ref = AdamReference(**options)
    for _ in range(steps):
        params = ref.step(params, grad_fn(params))
    return params


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_matches_float64_paper_reference_over_1000_steps(case, problem):
    make_tx, options = REFERENCE_CASES[case]
    with jax.enable_x64(True):
        params, grad_fn = PROBLEMS[problem](seed=len(case))
        ref = AdamReference(**options)
        actual, state, expected = run_forced(make_tx(), ref.step, params, grad_fn, 1000)
        for leaf in jax.tree.leaves(actual):
            assert leaf.dtype == np.float64
        moment_state = state[0]
        # Params, and the moments the reference keeps, agree to float64 rounding.
        assert max_rel_err(actual, expected) <= 1e-12
        assert max_rel_err(moment_state.mu, ref.m) <= 1e-12
        assert max_rel_err(moment_state.nu, ref.v) <= 1e-12
        if options.get("amsgrad"):
            assert max_rel_err(moment_state.nu_max, ref.v_max) <= 1e-12
        # The run went somewhere: the params moved far beyond the tolerance.
        assert max_rel_err(actual, params) > 1e-3


def test_reference_conventions_really_differ():
    """The conventions the tests tell apart give visibly different trajectories."""
    with jax.enable_x64(True):
        params, grad_fn = quadratic_problem(seed=0)
        base = dict(lr=lambda k: LR, b1=0.8, b2=0.99, eps=1e-3)
        paper = run_reference(base, params, grad_fn, 200)
        hat = run_reference({**base, "eps_mode": "hat"}, params, grad_fn, 200)
        raw = run_reference({**base, "amsgrad": True}, params, grad_fn, 200)
        corrected = run_reference(
            {**base, "amsgrad": True, "max_of": "corrected"}, params, grad_fn, 200
        )
    assert max_rel_err(hat, paper) > 1e-6
    assert max_rel_err(corrected, raw) > 1e-6


# name -> (adamjax, optax); float32, live.
OPTAX_CASES = {
    "adam": (lambda: adamjax.adam(LR), lambda: optax.adam(LR)),
    "adam_nondefault": (
        lambda: adamjax.adam(LR, b1=0.8, b2=0.95, eps=1e-6, eps_root=1e-8),
        lambda: optax.adam(LR, b1=0.8, b2=0.95, eps=1e-6, eps_root=1e-8),
    ),
    "adamw": (
        lambda: adamjax.adamw(LR, weight_decay=0.05),
        lambda: optax.adamw(LR, weight_decay=0.05),
    ),
    "adamw_schedule_and_mask": (
        lambda: adamjax.adamw(
            optax.linear_schedule(LR, 1e-3, 500),
            weight_decay=0.05,
            mask={"w": True, "b": False, "s": True},
        ),
        lambda: optax.adamw(
            optax.linear_schedule(LR, 1e-3, 500),
            weight_decay=0.05,
            mask={"w": True, "b": False, "s": True},
        ),
    ),
    "nadam": (lambda: adamjax.adam(LR, nesterov=True), lambda: optax.nadam(LR)),
    "amsgrad_corrected": (
        lambda: adamjax.amsgrad(LR, max_of="corrected"),
        lambda: optax.amsgrad(LR),
    ),
}


@pytest.mark.parametrize("case", sorted(OPTAX_CASES))
def test_matches_optax_float32_over_500_steps(case):
    make_ours, make_theirs = OPTAX_CASES[case]
    params, grad_fn = quadratic_problem(seed=3, dtype=np.float32)
    reference = optax_reference_step(make_theirs(), params)
    ours, _, theirs = run_forced(make_ours(), reference, params, grad_fn, 500)
    for leaf in jax.tree.leaves(ours):
        assert leaf.dtype == np.float32
    assert max_rel_err(ours, theirs) <= 1e-6
    assert max_rel_err(ours, params) > 1e-2


def test_optax_amsgrad_is_not_torch_amsgrad():
    """``max_of`` matters: the raw-max default does not reproduce optax.amsgrad (optax #1389)."""
    params, grad_fn = rosenbrock_problem(seed=1, dtype=np.float32)
    ours, _ = run_adamjax(adamjax.amsgrad(LR), params, grad_fn, 300)
    theirs, _ = run_adamjax(optax.amsgrad(LR), params, grad_fn, 300)
    assert max_rel_err(ours, theirs) > 1e-4


def test_amsgrad_alias_equals_adam_amsgrad():
    params, grad_fn = rosenbrock_problem(seed=2, dtype=np.float32)
    a, _ = run_adamjax(adamjax.amsgrad(LR, b2=0.9), params, grad_fn, 200)
    b, _ = run_adamjax(adamjax.adam(LR, b2=0.9, amsgrad=True), params, grad_fn, 200)
    assert max_rel_err(a, b) == 0.0


def test_paper_scaling_equals_torch_scaling_with_rescaled_decay():
    """With a constant rate alpha, decay lambda (paper) == decay lambda/alpha (torch form)."""
    with jax.enable_x64(True):
        params, grad_fn = quadratic_problem(seed=4)
        paper, _ = run_adamjax(
            adamjax.adamw(LR, weight_decay=1e-3, weight_decay_scaling="schedule"),
            params,
            grad_fn,
            300,
        )
        torch_form, _ = run_adamjax(adamjax.adamw(LR, weight_decay=1e-3 / LR), params, grad_fn, 300)
        default_form, _ = run_adamjax(adamjax.adamw(LR, weight_decay=1e-3), params, grad_fn, 300)
    assert max_rel_err(paper, torch_form) <= 1e-12
    assert max_rel_err(paper, default_form) > 1e-6


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    b1=st.floats(0.0, 0.99),
    b2=st.floats(0.0, 0.9999),
    # eps > 0: with eps = 0 a zero gradient gives 0/0 = NaN, in the paper's equations as in torch.
    eps=st.sampled_from([1e-12, 1e-8, 1e-3, 1.0]),
    eps_mode=st.sampled_from(["paper", "hat"]),
    amsgrad=st.booleans(),
    max_of=st.sampled_from(["raw", "corrected"]),
    nesterov=st.booleans(),
    weight_decay=st.sampled_from([0.0, 1e-3, 0.5]),
    seed=st.integers(0, 2**16),
)
def test_any_hyperparameters_match_the_reference(
    b1, b2, eps, eps_mode, amsgrad, max_of, nesterov, weight_decay, seed
):
    """Property: every combination of options follows the paper's equations (float64, 20 steps).

    Gradients of mixed scale (including exact zeros) stress the eps placement and the max-v.
    """
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(-6, 2, size=(20, 1))
    grads = [{"w": g} for g in rng.normal(size=(20, 6)) * scales * (rng.random((20, 6)) > 0.2)]
    params = {"w": rng.normal(size=6)}
    options = dict(b1=b1, b2=b2, eps=eps, eps_mode=eps_mode, nesterov=nesterov)
    tx = adamjax.adamw(LR, weight_decay=weight_decay, amsgrad=amsgrad, max_of=max_of, **options)
    ref = AdamReference(
        lr=lambda k: LR, weight_decay=weight_decay, amsgrad=amsgrad, max_of=max_of, **options
    )
    it = iter(grads)
    with jax.enable_x64(True):
        ours, _, theirs = run_forced(
            tx, ref.step, params, lambda p: next(it), len(grads), jit=False
        )
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(ours))
    assert max_rel_err(ours, theirs) <= 1e-12
