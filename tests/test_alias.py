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
    jitted_step,
    max_rel_err,
    optax_reference_step,
    quadratic_problem,
    rosenbrock_problem,
    run_adamjax,
    run_forced,
)
from reference.numpy_reference import (
    AdamaxReference,
    AdamReference,
    NadamReference,
    RadamReference,
)

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
    # eps_root goes under the root with the raw v (so divided by 1 - b2^t in the paper form).
    "adam_eps_hat_with_eps_root": (
        lambda: adamjax.adam(LR, b1=0.8, b2=0.99, eps=1e-4, eps_root=1e-3, eps_mode="hat"),
        dict(lr=lambda k: LR, b1=0.8, b2=0.99, eps=1e-4, eps_root=1e-3, eps_mode="hat"),
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
    "nadamw": (
        lambda: adamjax.adamw(LR, weight_decay=0.05, nesterov=True),
        lambda: optax.nadamw(LR, weight_decay=0.05),
    ),
    # The pieces on their own, chained by hand the same way in both libraries.
    "pieces_adam_decay": (
        lambda: optax.chain(
            adamjax.scale_by_adam(0.8, 0.99, 1e-6, 1e-12, nesterov=True),
            adamjax.add_decayed_weights(0.05, mask={"w": True, "b": False, "s": True}),
            optax.scale(-LR),
        ),
        lambda: optax.chain(
            optax.scale_by_adam(0.8, 0.99, 1e-6, 1e-12, nesterov=True),
            optax.add_decayed_weights(0.05, mask={"w": True, "b": False, "s": True}),
            optax.scale(-LR),
        ),
    ),
    "pieces_amsgrad": (
        lambda: optax.chain(
            adamjax.scale_by_amsgrad(0.8, 0.99, 1e-6, max_of="corrected"), optax.scale(-LR)
        ),
        lambda: optax.chain(optax.scale_by_amsgrad(0.8, 0.99, 1e-6), optax.scale(-LR)),
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
    # adamjax multiplies by 1/(1 - βᵗ) where optax divides (and XLA may or may not rewrite
    # optax's divide the same way): one rounding apart per step, about 1e-6 after 500 steps.
    assert max_rel_err(ours, theirs) <= 3e-6
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


# ----------------------------------------------------------------------------------------------
# The rest of the family (NAdam, Adamax, RAdam) and time-varying betas, against the papers.
# ----------------------------------------------------------------------------------------------

# optax's schedules compute in float32, where jit and eager evaluation may differ by an ulp; the
# float64 tests use these float64 equivalents, and the float32 optax tests use optax's own.
OPTAX_WARMUP_COSINE = optax.warmup_cosine_decay_schedule(0.0, LR, 50, 600, end_value=1e-4)


def WARMUP_COSINE(count):
    """Linear warmup to LR over 50 steps, then cosine decay to 1e-4 at step 600 (float64)."""
    count = jnp.asarray(count, jnp.result_type(float))
    warm = LR * count / 50
    frac = jnp.clip((count - 50) / 550, 0.0, 1.0)
    cosine = 1e-4 + (LR - 1e-4) * 0.5 * (1 + jnp.cos(jnp.pi * frac))
    return jnp.where(count < 50, warm, cosine)


B1_DECAY = adamjax.beta1_decay(0.9, rate=0.5, steps_per_epoch=40)
B1_CYCLIC = adamjax.beta1_cyclic(0.9, period=3, steps_per_epoch=25)


def B2_RAMP(count):
    """b2 rising linearly from 0.9 to 0.999 over 300 steps, in the default float dtype.

    (optax.linear_schedule computes in float32, where jit and eager evaluation can differ by an
    ulp; the float64 tests need a schedule that is evaluated identically in both.)
    """
    return 0.9 + 0.099 * jnp.minimum(count, 300) / 300


HP = dict(b1=0.8, b2=0.99, eps=1e-6)

# name -> (adamjax transformation, reference factory). Schedules enter the reference through
# values_of, i.e. with the values optax computes, since they are inputs, not the maths under test.
FAMILY_CASES = {
    "nadam": (lambda: adamjax.nadam(LR, **HP), lambda: NadamReference(lambda k: LR, **HP)),
    "nadam_l2": (
        lambda: adamjax.nadam(LR, weight_decay=0.1, **HP),
        lambda: NadamReference(lambda k: LR, weight_decay=0.1, **HP),
    ),
    "nadam_decoupled_warmup_cosine": (
        lambda: adamjax.nadam(WARMUP_COSINE, weight_decay=0.1, decoupled_weight_decay=True, **HP),
        lambda: NadamReference(values_of(WARMUP_COSINE), weight_decay=0.1, decoupled=True, **HP),
    ),
    "nadam_b1_schedule": (
        lambda: adamjax.nadam(LR, b1=B1_DECAY, b2=0.99, momentum_decay=1e-2),
        lambda: NadamReference(lambda k: LR, b1=values_of(B1_DECAY), b2=0.99, momentum_decay=1e-2),
    ),
    "adamax": (
        lambda: adamjax.adamax(LR, **HP),
        lambda: AdamaxReference(lambda k: LR, eps_in_max=True, **HP),
    ),
    "adamax_eps_denominator_l2": (
        lambda: adamjax.adamax(LR, weight_decay=0.1, eps_mode="denominator", **HP),
        lambda: AdamaxReference(lambda k: LR, weight_decay=0.1, **HP),
    ),
    "adamax_decoupled_b1_cyclic": (
        lambda: adamjax.adamax(
            WARMUP_COSINE, b1=B1_CYCLIC, weight_decay=0.1, decoupled_weight_decay=True
        ),
        lambda: AdamaxReference(
            values_of(WARMUP_COSINE),
            b1=values_of(B1_CYCLIC),
            weight_decay=0.1,
            decoupled=True,
            eps_in_max=True,
        ),
    ),
    # RAdam's first steps are plain momentum SGD, which diverges on Rosenbrock at LR.
    "radam_torch": (
        lambda: adamjax.radam(LR / 100, **HP),
        lambda: RadamReference(lambda k: LR / 100, **HP),
    ),
    "radam_paper_threshold_optax_eps": (
        lambda: adamjax.radam(LR / 100, threshold=4.0, eps_mode="paper", **HP),
        lambda: RadamReference(lambda k: LR / 100, threshold=4.0, eps_hat=False, **HP),
    ),
    "radam_decoupled_b1_decay": (
        lambda: adamjax.radam(
            LR / 100, b1=B1_DECAY, b2=0.99, weight_decay=0.1, decoupled_weight_decay=True
        ),
        lambda: RadamReference(
            lambda k: LR / 100, b1=values_of(B1_DECAY), b2=0.99, weight_decay=0.1, decoupled=True
        ),
    ),
    "adam_warmup_cosine": (
        lambda: adamjax.adam(WARMUP_COSINE, **HP),
        lambda: AdamReference(values_of(WARMUP_COSINE), **HP),
    ),
    "adam_b1_decay_b2_ramp": (
        lambda: adamjax.adam(LR, b1=B1_DECAY, b2=B2_RAMP, eps=1e-6),
        lambda: AdamReference(
            lambda k: LR, b1=values_of(B1_DECAY), b2=values_of(B2_RAMP), eps=1e-6
        ),
    ),
    "adam_nesterov_b1_cyclic_eps_hat": (
        lambda: adamjax.adam(LR, b1=B1_CYCLIC, b2=0.99, eps=1e-4, nesterov=True, eps_mode="hat"),
        lambda: AdamReference(
            lambda k: LR,
            b1=values_of(B1_CYCLIC),
            b2=0.99,
            eps=1e-4,
            nesterov=True,
            eps_mode="hat",
        ),
    ),
    "amsgrad_b1_decay_b2_ramp": (
        lambda: adamjax.amsgrad(LR, b1=B1_DECAY, b2=B2_RAMP, eps=1e-6, weight_decay=0.05),
        lambda: AdamReference(
            lambda k: LR,
            b1=values_of(B1_DECAY),
            b2=values_of(B2_RAMP),
            eps=1e-6,
            weight_decay=0.05,
            amsgrad=True,
        ),
    ),
}


def moment_state(state):
    """The first state in a chain that holds moments (the alias' moment piece)."""
    return next(s for s in state if hasattr(s, "mu"))


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("case", sorted(FAMILY_CASES))
def test_family_matches_float64_paper_reference_over_600_steps(case, problem):
    make_tx, make_ref = FAMILY_CASES[case]
    with jax.enable_x64(True):
        params, grad_fn = PROBLEMS[problem](seed=len(case))
        ref = make_ref()
        actual, state, expected = run_forced(make_tx(), ref.step, params, grad_fn, 600)
        moments_ = moment_state(state)
        assert max_rel_err(actual, expected) <= 1e-10
        # Gradients here are O(1) early on; the floor keeps converged (~0) moments comparable.
        assert max_rel_err(moments_.mu, ref.m, floor=1e-6) <= 1e-10
        assert max_rel_err(moments_.nu, ref.u if hasattr(ref, "u") else ref.v, floor=1e-6) <= 1e-10
        assert max_rel_err(actual, params) > 1e-3


@pytest.mark.parametrize("threshold, first", [(5.0, 6), (4.0, 5)])
def test_radam_switches_from_sgd_to_the_rectified_step(threshold, first):
    """b2=0.99: rho_t first exceeds 5 at step 6 and 4 at step 5. Step by step, adamjax's update
    must be the reference's: momentum SGD (m-hat) before that step, the rectified Adam step from
    it on. A switch one step early or late, or a wrong r_t, changes an update by O(1)."""
    with jax.enable_x64(True):
        params, grad_fn = quadratic_problem(seed=5)
        ref = RadamReference(lambda k: LR, threshold=threshold, **HP)
        tx = adamjax.radam(LR, threshold=threshold, **HP)
        step, state = jitted_step(tx), tx.init(params)
        ours = theirs = params
        for t in range(1, 11):
            grads = grad_fn(theirs)
            new_theirs = ref.step(theirs, grads)
            new_ours, state = step(ours, state, grads)
            delta = jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), new_ours, ours)
            expected = jax.tree.map(lambda a, b: a - b, new_theirs, theirs)
            assert max_rel_err(delta, expected) <= 1e-10, (t, max_rel_err(delta, expected))
            rectification = float(moment_state(state).rectification)
            assert (rectification > 0) == (t >= first), (t, rectification)
            ours, theirs = new_ours, new_theirs
    assert ref.rectified_steps[0] == first  # the reference agrees on the problem's switch step


NADAM_HP = dict(b1=0.8, b2=0.99, eps=1e-6)


@pytest.mark.parametrize("count", [2**31 - 2, 2**31 - 1])
@pytest.mark.parametrize("scheduled_b1", [False, True], ids=["b1", "b1_schedule"])
def test_nadam_is_the_large_t_update_at_the_largest_counts(count, scheduled_b1):
    """At t ~ 2**31 the momentum schedule is b1 (0.96**(t psi) underflows) and the bias
    corrections are 1, so the update is -lr (b1 m_t + (1 - b1) g) / (sqrt(v_t) + eps). The
    look-ahead step t + 1 used to wrap around in int32 here and give NaN."""
    b1, b2, eps = NADAM_HP["b1"], NADAM_HP["b2"], NADAM_HP["eps"]
    rng = np.random.default_rng(0)
    m0, g = rng.normal(size=5).astype(np.float32), rng.normal(size=5).astype(np.float32)
    v0 = rng.uniform(0.5, 2.0, size=5).astype(np.float32)
    schedule = (lambda k: b1 + 0.0 * k) if scheduled_b1 else b1
    tx = adamjax.nadam(LR, b1=schedule, b2=b2, eps=eps)
    params = {"w": jnp.zeros(5)}
    one = jnp.ones([], jnp.float32)

    def after_many_steps(s):
        if not isinstance(s, adamjax.ScaleByNadamState):
            return s
        last = s.last_step._replace(m_correction=one, v_correction=one)
        moments = dict(mu={"w": jnp.asarray(m0)}, nu={"w": jnp.asarray(v0)})
        return s._replace(
            count=jnp.int32(count), momentum_correction=one, last_step=last, **moments
        )

    state = tuple(after_many_steps(s) for s in tx.init(params))
    updates, state = jax.jit(tx.update)({"w": jnp.asarray(g)}, state, params)
    m = b1 * m0.astype(np.float64) + (1 - b1) * g
    v = b2 * v0.astype(np.float64) + (1 - b2) * np.float64(g) ** 2
    expected = -LR * (b1 * m + (1 - b1) * g) / (np.sqrt(v) + eps)
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-5)
    assert int(moment_state(state).count) == 2**31 - 1  # saturated, as optax.safe_increment does


SATURATION_CASES = {
    "adam": lambda: adamjax.adam(LR),
    "adam_nesterov": lambda: adamjax.adam(LR, nesterov=True),
    "amsgrad": lambda: adamjax.amsgrad(LR),
    "nadam": lambda: adamjax.nadam(LR),
    "adamax": lambda: adamjax.adamax(LR),
    "radam": lambda: adamjax.radam(LR),
    "adabound": lambda: adamjax.adabound(LR),
    "swats": lambda: adamjax.swats(LR),
    "adafactor": lambda: adamjax.adafactor(LR),
}


@pytest.mark.parametrize("case", sorted(SATURATION_CASES))
def test_every_alias_is_finite_at_the_largest_counts(case):
    """Every int32 step count in the state (count, schedule_count, clip_count, ...) set to
    2**31 - 2 and 2**31 - 1: no alias computes t + 1 in int32."""
    tx = SATURATION_CASES[case]()
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    grads = {"w": jnp.full((3, 2), 0.5), "b": jnp.asarray([-1.0, 2.0])}

    def with_count(count):
        def leaf(path, x):
            named = "count" in jax.tree_util.keystr(path)
            return jnp.int32(count) if named and jnp.shape(x) == () else x

        return jax.tree_util.tree_map_with_path(leaf, tx.init(params))

    for count in (2**31 - 2, 2**31 - 1):
        updates, _ = jax.jit(tx.update)(grads, with_count(count), params)
        assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates)), count


def test_family_conventions_really_differ():
    """Negative controls: each convention option changes the trajectory beyond the tolerance."""
    with jax.enable_x64(True):
        params, grad_fn = quadratic_problem(seed=6)

        def run(tx):
            return run_adamjax(tx, params, grad_fn, 200)[0]

        hp = dict(b1=0.8, b2=0.99, eps=1e-2)
        pairs = [
            (adamjax.nadam(LR, **hp), adamjax.adam(LR, nesterov=True, **hp)),
            (adamjax.adamax(LR, **hp), adamjax.adamax(LR, eps_mode="denominator", **hp)),
            (adamjax.radam(LR, **hp), adamjax.radam(LR, eps_mode="paper", **hp)),
            (adamjax.radam(LR, **hp), adamjax.radam(LR, threshold=4.0, **hp)),
            (
                adamjax.nadam(LR, weight_decay=0.1, **hp),
                adamjax.nadam(LR, weight_decay=0.1, decoupled_weight_decay=True, **hp),
            ),
        ]
        for a, b in pairs:
            assert max_rel_err(run(a), run(b)) > 1e-4


def test_inject_hyperparams_b1_schedule_uses_the_wrong_bias_correction():
    """optax.inject_hyperparams feeds b1_t as a constant, so optax corrects with b1_t^t; adamjax
    corrects with 1 - prod(b1_i) and matches the paper reference."""
    with jax.enable_x64(True):
        params, grad_fn = quadratic_problem(seed=7)
        runs = {}
        for name, tx in {
            "adamjax": adamjax.adam(LR, b1=B1_DECAY, b2=0.99, eps=1e-6),
            "injected": optax.inject_hyperparams(optax.adam)(LR, b1=B1_DECAY, b2=0.99, eps=1e-6),
        }.items():
            ref = AdamReference(lambda k: LR, b1=values_of(B1_DECAY), b2=0.99, eps=1e-6)
            ours, _, expected = run_forced(tx, ref.step, params, grad_fn, 300)
            runs[name] = max_rel_err(ours, expected)
    assert runs["adamjax"] <= 1e-10
    assert runs["injected"] > 1e-3  # measured: 2.3e-3


@pytest.mark.parametrize(
    "make",
    [
        lambda b1, b2: adamjax.adam(LR, b1=b1, b2=b2),
        lambda b1, b2: adamjax.amsgrad(LR, b1=b1, b2=b2, weight_decay=0.01),
        lambda b1, b2: adamjax.adam(LR, b1=b1, b2=b2, nesterov=True, eps_mode="hat"),
        lambda b1, b2: adamjax.nadam(LR, b1=b1, b2=b2),
        lambda b1, b2: adamjax.adamax(LR, b1=b1, b2=b2),
        lambda b1, b2: adamjax.radam(LR, b1=b1),
    ],
)
def test_constant_schedule_reproduces_constant_betas_in_float32(make):
    """A constant schedule takes the running correction c_t = (1-b) + b c_{t-1}; a constant beta
    takes 1 - b**t. Both are float32 roundings of the same number."""
    params, grad_fn = quadratic_problem(seed=8, dtype=np.float32)
    constant, _ = run_adamjax(make(0.9, 0.999), params, grad_fn, 300)
    scheduled, _ = run_adamjax(
        make(optax.constant_schedule(0.9), optax.constant_schedule(0.999)), params, grad_fn, 300
    )
    # b**t rounded to float32 is off by up to half an ulp (6e-8 absolute), which relative to
    # 1 - 0.999**t ~ t * 1e-3 is up to ~1.5e-5 in the first steps (measured: 1.7e-5 at most).
    assert max_rel_err(scheduled, constant) <= 3e-5


def test_running_correction_is_the_more_accurate_float32_rounding():
    """Against float64, the scheduled path's float32 run is closer than the constant path's."""
    with jax.enable_x64(True):
        params, grad_fn = quadratic_problem(seed=8)
        ref = AdamReference(lambda k: LR)
        stream = []
        for _ in range(300):
            stream.append(grad_fn(params))
            params = ref.step(params, stream[-1])
    errors = {}
    start, _ = quadratic_problem(seed=8, dtype=np.float32)
    for name, (b1, b2) in {
        "constant": (0.9, 0.999),
        "scheduled": (optax.constant_schedule(0.9), optax.constant_schedule(0.999)),
    }.items():
        it = iter(stream)
        final, _ = run_adamjax(
            adamjax.adam(LR, b1=b1, b2=b2),
            start,
            lambda p, it=it: {k: np.float32(g) for k, g in next(it).items()},
            300,
        )
        errors[name] = max_rel_err(final, params)
    # measured: constant 2.5e-5, scheduled 9.4e-7
    assert errors["scheduled"] <= 3e-6
    assert errors["scheduled"] < errors["constant"]


# float32, live against optax.
FAMILY_OPTAX_CASES = {
    "adamax": (lambda: adamjax.adamax(LR), lambda: optax.adamax(LR)),
    "adamax_nondefault": (
        lambda: adamjax.adamax(LR, b1=0.8, b2=0.95, eps=1e-3),
        lambda: optax.adamax(LR, b1=0.8, b2=0.95, eps=1e-3),
    ),
    "adamaxw": (
        lambda: adamjax.adamax(LR, weight_decay=0.05, decoupled_weight_decay=True),
        lambda: optax.adamaxw(LR, weight_decay=0.05),
    ),
    "adam_warmup_cosine": (
        lambda: adamjax.adam(OPTAX_WARMUP_COSINE),
        lambda: optax.adam(OPTAX_WARMUP_COSINE),
    ),
    "nadam_warmup_cosine": (
        lambda: adamjax.adam(OPTAX_WARMUP_COSINE, nesterov=True),
        lambda: optax.nadam(OPTAX_WARMUP_COSINE),
    ),
}


@pytest.mark.parametrize("case", sorted(FAMILY_OPTAX_CASES))
def test_family_matches_optax_float32_over_500_steps(case):
    make_ours, make_theirs = FAMILY_OPTAX_CASES[case]
    params, grad_fn = quadratic_problem(seed=9, dtype=np.float32)
    reference = optax_reference_step(make_theirs(), params)
    ours, _, theirs = run_forced(make_ours(), reference, params, grad_fn, 500)
    # adamjax multiplies by 1/(1 - βᵗ) where optax divides (and XLA may or may not rewrite
    # optax's divide the same way): one rounding apart per step, about 1e-6 after 500 steps.
    assert max_rel_err(ours, theirs) <= 3e-6
    assert max_rel_err(ours, params) > 1e-2


def test_radam_float32_rectification_is_accurate():
    """rho_t is a difference of two ~2/(1-b2) terms; adamjax takes both from log1p/expm1, so a
    float32 run stays within float32 noise of the float64 paper reference. (optax.radam rounds
    b2**t in float32 and, measured on this problem with b2=0.999, is off by 2.8e-4.)"""
    params, grad_fn = quadratic_problem(seed=9)
    ref = RadamReference(lambda k: LR, b2=0.999, eps_hat=False)
    tx = adamjax.radam(LR, b2=0.999, eps_mode="paper")
    state = tx.init({k: np.float32(p) for k, p in params.items()})
    step = jitted_step(tx)
    ours, theirs, worst = {k: np.float32(p) for k, p in params.items()}, params, 0.0
    for _ in range(300):
        grads = grad_fn(theirs)
        with jax.enable_x64(True):
            theirs = ref.step(theirs, grads)
        ours, state = step(ours, state, {k: np.float32(g) for k, g in grads.items()})
        worst = max(worst, max_rel_err(ours, theirs))
    assert ref.rectified_steps[0] == 6
    assert worst <= 5e-5


def test_radam_paper_eps_matches_optax_radam_in_float64():
    """``radam(eps_mode="paper")`` is optax.radam: eps outside √v̂, rectified once ρₜ passes 5.

    In float64 optax's βᵗ rounding (the reason float32 is not compared above) is harmless, so
    the two agree to rounding. Both thresholds are met at the same step: ρₜ never equals 5
    exactly, so optax's ``>=`` and torch's ``>`` choose alike.
    """
    with jax.enable_x64(True):
        params, grad_fn = quadratic_problem(seed=9)
        reference = optax_reference_step(optax.radam(LR / 100), params)
        ours, _, theirs = run_forced(
            adamjax.radam(LR / 100, eps_mode="paper"), reference, params, grad_fn, 500
        )
        hat, _, _ = run_forced(adamjax.radam(LR / 100), reference, params, grad_fn, 500)
    assert max_rel_err(ours, theirs) <= 1e-10
    assert max_rel_err(ours, params) > 1e-2
    # The default ε̂ form (torch's) is not optax's.
    assert max_rel_err(hat, theirs) > 1e-6
