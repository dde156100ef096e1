"""AdEMAMix and Simplified AdEMAMix against the papers (float64 NumPy), optax.contrib (live,
float32), the authors' code and pytorch_optimizer (golden, float64); their warm-up schedules,
storage formats, diagnostics and validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
from test_golden import load, replay

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
from reference import diagnostics_reference as dref
from reference.ademamix_reference import (
    AdemamixReference,
    SimplifiedAdemamixReference,
    f_alpha,
    f_beta3,
)

LR = 1e-2
B3_WARMUP = adamjax.ademamix_b3_schedule(0.999, 200, b3_start=0.8)
ALPHA_WARMUP = adamjax.ademamix_alpha_schedule(3.0, 300)
ALPHA_RAMP = adamjax.ademamix_alpha_schedule(4.0, 100, first_step=0)
B1_WARMUP = adamjax.ademamix_b3_schedule(0.95, 150, b3_start=0.8, log_eps=1e-8)

# name -> (adamjax transformation, NumPy reference). The warm-ups of the reference are the
# paper's closed forms of the 1-based step t = k + 1, written independently of adamjax's.
REFERENCE_CASES = {
    "ademamix": (
        lambda: adamjax.ademamix(LR, 0.8, 0.99, 0.999, 3.0, 1e-6),
        lambda: AdemamixReference(LR, 0.8, 0.99, 0.999, 3.0, 1e-6),
    ),
    "ademamix_warmups_decay_eps_root": (
        lambda: adamjax.ademamix(
            LR, 0.8, 0.99, B3_WARMUP, ALPHA_WARMUP, 1e-6, 1e-10, weight_decay=0.05
        ),
        lambda: AdemamixReference(
            LR,
            0.8,
            0.99,
            b3=lambda k: f_beta3(k + 1, 0.999, 0.8, 200),
            alpha=lambda k: f_alpha(k + 1, 3.0, 300),
            eps=1e-6,
            eps_root=1e-10,
            weight_decay=0.05,
        ),
    ),
    "simplified_ademamix": (
        lambda: adamjax.simplified_ademamix(1e-3, 0.9, 0.99, 2.0, 1e-6, weight_decay=0.05),
        lambda: SimplifiedAdemamixReference(1e-3, 0.9, 0.99, 2.0, 1e-6, weight_decay=0.05),
    ),
    "simplified_ademamix_bias_correction_b1_schedule": (
        lambda: adamjax.simplified_ademamix(
            1e-2, B1_WARMUP, 0.99, 1.0, 1e-6, bias_correction_mu=True
        ),
        lambda: SimplifiedAdemamixReference(
            1e-2,
            lambda k: f_beta3(k + 1, 0.95, 0.8, 150, 1e-8),
            0.99,
            1.0,
            1e-6,
            bias_correction_mu=True,
        ),
    ),
    "simplified_ademamix_b1_warmup_alpha_schedule": (
        lambda: adamjax.simplified_ademamix(1e-3, B1_WARMUP, 0.99, ALPHA_RAMP, 1e-6, 1e-10),
        lambda: SimplifiedAdemamixReference(
            1e-3,
            lambda k: f_beta3(k + 1, 0.95, 0.8, 150, 1e-8),
            0.99,
            lambda k: f_alpha(k, 4.0, 100),
            1e-6,
            1e-10,
        ),
    ),
}
PROBLEMS = {"quadratic": quadratic_problem, "rosenbrock": rosenbrock_problem}


@pytest.mark.parametrize(
    "problem", ["quadratic", pytest.param("rosenbrock", marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_matches_float64_paper_reference_over_500_steps(case, problem):
    make_tx, make_ref = REFERENCE_CASES[case]
    with jax.enable_x64(True):
        params, grad_fn = PROBLEMS[problem](seed=len(case))
        ref = make_ref()
        actual, state, expected = run_forced(make_tx(), ref.step, params, grad_fn, 500)
        moments = state[0]
        assert max_rel_err(actual, expected) <= 1e-10
        if case.startswith("simplified"):
            assert max_rel_err(moments.mu, ref.m, floor=1e-6) <= 1e-10
        else:
            assert max_rel_err(moments.mu, ref.m1, floor=1e-6) <= 1e-10
            assert max_rel_err(moments.mu_slow, ref.m2, floor=1e-6) <= 1e-10
        assert max_rel_err(moments.nu, ref.nu, floor=1e-6) <= 1e-10
        assert max_rel_err(actual, params) > 1e-3


# name -> (adamjax, optax.contrib): float32, the same positional arguments.
OPTAX_CASES = {
    "ademamix": (
        lambda: adamjax.ademamix(LR, 0.8, 0.99, 0.999, 3.0, 1e-6, 1e-12, None, 0.05),
        lambda: optax.contrib.ademamix(LR, 0.8, 0.99, 0.999, 3.0, 1e-6, 1e-12, None, 0.05),
    ),
    "ademamix_warmups": (
        lambda: adamjax.ademamix(LR, 0.8, 0.99, B3_WARMUP, ALPHA_WARMUP, 1e-6),
        lambda: optax.contrib.ademamix(LR, 0.8, 0.99, B3_WARMUP, ALPHA_WARMUP, 1e-6),
    ),
    "scale_by_ademamix": (
        lambda: optax.chain(adamjax.scale_by_ademamix(0.8, 0.99, 0.999, 6.0), optax.scale(-LR)),
        lambda: optax.chain(
            optax.contrib.scale_by_ademamix(0.8, 0.99, 0.999, 6.0), optax.scale(-LR)
        ),
    ),
    "simplified_ademamix": (
        lambda: adamjax.simplified_ademamix(1e-3, 0.9, 0.99, 2.0, 1e-6, 1e-12, 0.05),
        lambda: optax.contrib.simplified_ademamix(1e-3, 0.9, 0.99, 2.0, 1e-6, 1e-12, 0.05),
    ),
    "simplified_ademamix_alpha_schedule": (
        lambda: adamjax.simplified_ademamix(1e-3, 0.9, 0.99, optax.linear_schedule(0, 4.0, 100)),
        lambda: optax.contrib.simplified_ademamix(
            1e-3, 0.9, 0.99, optax.linear_schedule(0, 4.0, 100)
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(OPTAX_CASES))
def test_matches_optax_contrib_float32_over_500_steps(case):
    make_ours, make_theirs = OPTAX_CASES[case]
    params, grad_fn = quadratic_problem(seed=5, dtype=np.float32)
    reference = optax_reference_step(make_theirs(), params)
    ours, _, theirs = run_forced(make_ours(), reference, params, grad_fn, 500)
    for leaf in jax.tree.leaves(ours):
        assert leaf.dtype == np.float32
    # Measured: 1.4e-6 at most (one rounding apart per step, as for adam against optax.adam).
    assert max_rel_err(ours, theirs) <= 5e-6
    assert max_rel_err(ours, params) > 1e-2


# ---- golden trajectories: the authors' code and pytorch_optimizer ----------------------------


def _hp(g: dict, *names: str) -> list[float]:
    return [float(g[f"hp_{n}"]) for n in names]


def _ademamix_golden(g: dict) -> optax.GradientTransformation:
    b3, b3_warmup, b3_start, log_eps = _hp(g, "b3", "b3_warmup", "b3_start", "log_eps")
    alpha, alpha_warmup = _hp(g, "alpha", "alpha_warmup")
    lr, b1, b2, eps, wd = _hp(g, "lr", "b1", "b2", "eps", "weight_decay")
    return adamjax.ademamix(
        lr, b1, b2,
        adamjax.ademamix_b3_schedule(b3, int(b3_warmup), b3_start, log_eps=log_eps),
        adamjax.ademamix_alpha_schedule(alpha, int(alpha_warmup)), eps, weight_decay=wd,
    )  # fmt: skip


def _authors_simplified_golden(g: dict) -> optax.GradientTransformation:
    lr, b1, b2, eps, wd, alpha = _hp(g, "lr", "b1", "b2", "eps", "weight_decay", "alpha")
    warmup, start, log_eps = _hp(g, "b1_warmup", "b1_start", "log_eps")
    b1 = adamjax.ademamix_b3_schedule(b1, int(warmup), start, log_eps=log_eps)
    correct = bool(g.get("hp_bias_correction_mu", False))
    return adamjax.simplified_ademamix(
        lr, b1, b2, alpha, eps, weight_decay=wd, bias_correction_mu=correct
    )


def pytorch_optimizer_simplified(lr, b1, b2, alpha, eps, weight_decay):
    """The schedules that turn simplified_ademamix into pytorch_optimizer.SimplifiedAdEMAMix.

    That class keeps the EMA ``(1 - b1) m`` of the authors' sum ``m`` and divides the step once
    more by ``1 - b2**t``: the same as the authors' algorithm with the learning rate
    ``lr (1 - b1) / (1 - b2**t)``, alpha ``alpha / (1 - b1)`` and the decay rescaled so that
    learning rate times decay stays ``lr * weight_decay``.
    """
    correction = lambda count: 1 - jnp.asarray(b2, jnp.float64) ** (count + 1)  # noqa: E731
    return adamjax.simplified_ademamix(
        lambda count: lr * (1 - b1) / correction(count), b1, b2, alpha / (1 - b1), eps,
        weight_decay=lambda count: weight_decay * correction(count) / (1 - b1),
    )  # fmt: skip


def _pto_simplified_golden(g: dict) -> optax.GradientTransformation:
    return pytorch_optimizer_simplified(*_hp(g, "lr", "b1", "b2", "alpha", "eps", "weight_decay"))


GOLDEN_CASES = {
    "authors_ademamix": _ademamix_golden,
    "pytorch_optimizer_ademamix": _ademamix_golden,
    "authors_simplified_ademamix": _authors_simplified_golden,
    "authors_simplified_ademamix_bias_correction": _authors_simplified_golden,
    "pytorch_optimizer_simplified_ademamix": _pto_simplified_golden,
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_matches_golden_trajectory(name):
    with jax.enable_x64(True):
        g = load(name)
        trajectory = replay(g, GOLDEN_CASES[name](g))
    leaves = [str(n) for n in g["leaves"]]
    # pytorch_optimizer's SimplifiedAdEMAMix stores the EMA (1 - b1) m.
    mu_scale = 1 - float(g["hp_b1"]) if name == "pytorch_optimizer_simplified_ademamix" else 1.0
    fields = {"param": None, "mu": "mu", "nu": "nu"}
    if "mu_slow__w" in g:
        fields["mu_slow"] = "mu_slow"
    assert len(trajectory) == len(g["steps"])
    for i, (params, moments) in enumerate(trajectory):
        for field, attr in fields.items():
            actual = params if attr is None else getattr(moments, attr)
            if field == "mu":
                actual = jax.tree.map(lambda m: np.asarray(m) * mu_scale, actual)
            expected = {k: g[f"{field}__{k}"][i] for k in leaves}
            err = max_rel_err(actual, expected)
            assert err <= 1e-10, f"{name}: {field} at step {g['steps'][i]}: rel err {err:.2e}"


def _with(g: dict, **changes) -> dict:
    return {**g, **{f"hp_{k}": np.asarray(v) for k, v in changes.items()}}


@pytest.mark.parametrize(
    ("name", "wrong"),
    [
        # The authors' PyTorch b3 warm-up takes log(beta + 1e-8).
        ("authors_ademamix", lambda g: _ademamix_golden(_with(g, log_eps=0.0))),
        # The authors' optax code reads its schedules one step behind their PyTorch code.
        (
            "authors_ademamix",
            lambda g: adamjax.ademamix(
                1e-2,
                0.8,
                0.95,
                adamjax.ademamix_b3_schedule(0.999, 100, 0.8, first_step=0, log_eps=1e-8),
                adamjax.ademamix_alpha_schedule(2.0, 150, first_step=0),
                1e-6,
                weight_decay=0.1,
            ),
        ),
        # Without the warm-ups.
        pytest.param(
            "pytorch_optimizer_ademamix",
            lambda g: adamjax.ademamix(1e-2, 0.8, 0.95, 0.999, 2.0, 1e-6, weight_decay=0.1),
            marks=pytest.mark.slow,
        ),
        # The authors' bias_correction1 is off by default.
        pytest.param(
            "authors_simplified_ademamix_bias_correction",
            lambda g: _authors_simplified_golden(_with(g, bias_correction_mu=False)),
            marks=pytest.mark.slow,
        ),
        # pytorch_optimizer's SimplifiedAdEMAMix is not the authors' algorithm.
        (
            "pytorch_optimizer_simplified_ademamix",
            lambda g: adamjax.simplified_ademamix(2e-3, 0.9, 0.95, 2.0, 1e-6, weight_decay=0.1),
        ),
        pytest.param(
            "authors_simplified_ademamix",
            lambda g: pytorch_optimizer_simplified(2e-3, 0.9, 0.95, 2.0, 1e-6, 0.1),
            marks=pytest.mark.slow,
        ),
    ],
)
def test_the_other_convention_does_not_match(name, wrong):
    with jax.enable_x64(True):
        g = load(name)
        params, _ = replay(g, wrong(g))[-1]
    expected = {str(k): g[f"param__{k}"][-1] for k in g["leaves"]}
    # The smallest, log_eps, moves the params by 6e-6 (measured): beyond the 1e-6 tolerance.
    assert max_rel_err(params, expected) > 1e-6


# ---- the warm-up schedules -------------------------------------------------------------------


@pytest.mark.parametrize("first_step", [0, 1])
def test_schedules_are_the_papers_closed_forms(first_step):
    counts = np.arange(0, 260)
    with jax.enable_x64(True):
        alpha = adamjax.ademamix_alpha_schedule(5.0, 200, 1.0, first_step=first_step)
        b3 = adamjax.ademamix_b3_schedule(0.9999, 200, 0.9, first_step=first_step)
        got_alpha = np.asarray(jax.jit(alpha)(jnp.asarray(counts, jnp.int32)))
        got_b3 = np.asarray(jax.jit(b3)(jnp.asarray(counts, jnp.int32)))
    want_alpha = [f_alpha(k + first_step, 5.0, 200, 1.0) for k in counts]
    want_b3 = [f_beta3(k + first_step, 0.9999, 0.9, 200) for k in counts]
    np.testing.assert_allclose(got_alpha, want_alpha, rtol=1e-14)
    # The slow EMA's weight 1 - b3 is what matters.
    np.testing.assert_allclose(1 - got_b3, 1 - np.asarray(want_b3), rtol=1e-10)
    assert got_b3[0] == pytest.approx(0.9 if first_step == 0 else f_beta3(1, 0.9999, 0.9, 200))
    assert got_b3[-1] == 0.9999 and got_alpha[-1] == 5.0
    assert np.all(np.diff(got_b3) >= 0) and np.all(np.diff(got_alpha) >= 0)


def test_b3_warmup_grows_the_half_life_linearly():
    with jax.enable_x64(True):
        b3 = adamjax.ademamix_b3_schedule(0.9999, 1000, 0.9)
        t = np.arange(1, 1000)
        half_life = np.log(0.5) / np.log(np.asarray(b3(jnp.asarray(t - 1))))
    # h(t) = log(0.5) / log(b3_t) is linear in t between h(b_start) and h(b3).
    np.testing.assert_allclose(np.diff(half_life, 2), 0, atol=1e-6)
    assert half_life[-1] > 100 * half_life[0]


@pytest.mark.slow
def test_float32_schedules_stay_close_to_float64():
    b3 = adamjax.ademamix_b3_schedule(0.9999, 5000, 0.9)
    counts = jnp.arange(0, 6000, 7, dtype=jnp.int32)
    got = np.asarray(b3(counts), np.float64)
    want = np.asarray([f_beta3(int(k) + 1, 0.9999, 0.9, 5000) for k in counts])
    assert b3(counts).dtype == jnp.float32
    np.testing.assert_allclose(1 - got, 1 - want, rtol=2e-3)


# ---- the chain, storage formats, diagnostics ----------------------------------------------------


def test_aliases_are_plain_chains_of_pieces():
    params = {"w": jnp.ones((3,))}
    state = adamjax.ademamix(1e-3, weight_decay=0.1).init(params)
    assert isinstance(state[0], adamjax.ScaleByAdemamixState)
    assert isinstance(state[2], adamjax.ScaleByLearningRateState)
    state = adamjax.simplified_ademamix().init(params)
    assert isinstance(state[0], adamjax.ScaleBySimplifiedAdemamixState)
    assert optax.tree_utils.tree_get(state, "count") == 0


FORMATS = {
    "bf16": (adamjax.stochastic_bf16(), jnp.bfloat16),
    "q8": (adamjax.q8(min_size=0), adamjax.QuantizedArray),
}
MAKERS = {
    "ademamix": lambda fmt: adamjax.ademamix(3e-2, b3=0.99, alpha=2.0, mu_dtype=fmt, nu_dtype=fmt),
    "simplified_ademamix": lambda fmt: adamjax.simplified_ademamix(
        3e-3, 0.9, 0.99, 1.0, mu_dtype=fmt, nu_dtype=fmt
    ),
}


@pytest.mark.parametrize(
    ("alias", "fmt"),
    [
        ("ademamix", "q8"),
        ("simplified_ademamix", "bf16"),
        pytest.param("ademamix", "bf16", marks=pytest.mark.slow),
        pytest.param("simplified_ademamix", "q8", marks=pytest.mark.slow),
    ],
)
def test_low_precision_moments_converge_like_float32(alias, fmt):
    params, grad_fn = quadratic_problem(seed=11, dtype=np.float32)

    def largest_gradient(p):
        return max(
            float(np.max(np.abs(g)))
            for g in grad_fn({k: np.asarray(x) for k, x in p.items()}).values()
        )

    low, state = run_adamjax(MAKERS[alias](FORMATS[fmt][0]), params, grad_fn, 300)
    high, _ = run_adamjax(MAKERS[alias](None), params, grad_fn, 300)
    moments = state[0]
    kinds = [moments.mu, moments.nu] + ([moments.mu_slow] if alias == "ademamix" else [])
    for tree in kinds:
        for leaf in jax.tree.leaves(tree, is_leaf=adamjax._formats.is_quantized):
            if FORMATS[fmt][1] is jnp.bfloat16:
                assert leaf.dtype == jnp.bfloat16
            else:
                assert isinstance(leaf, adamjax.QuantizedArray)
    # Both runs reach the noise floor of the problem (the gradient falls ~500x), together.
    start, reached = largest_gradient(params), largest_gradient(high)
    assert reached < start / 100
    assert largest_gradient(low) < 1.5 * reached


def test_diagnostics_report_the_mixed_numerator_and_the_schedules():
    lr, b1, b2, b3, eps = 1e-2, 0.9, 0.999, 0.99, 1e-8
    alpha = adamjax.ademamix_alpha_schedule(4.0, 10)
    tx = adamjax.with_diagnostics(adamjax.ademamix(lr, b1, b2, b3, alpha))
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        params = {"w": jnp.asarray(rng.normal(size=(4, 3))), "b": jnp.asarray(rng.normal(size=5))}
        state = tx.init(params)
        update = jax.jit(tx.update)
        for _ in range(6):
            grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params)
            updates, state = update(grads, state, params)
            params = optax.apply_updates(params, updates)
        metrics = jax.tree.map(np.asarray, adamjax.diagnostics(state))
        s = next(x for x in jax.tree.leaves(state, is_leaf=lambda x: hasattr(x, "mu_slow"))
                 if isinstance(x, adamjax.ScaleByAdemamixState))  # fmt: skip
    t, alpha_t = 6, 4.0 * 6 / 10
    v_hat = {k: np.asarray(s.nu[k]) / (1 - b2**t) for k in params}
    mixed = {
        k: np.asarray(s.mu[k]) / (1 - b1**t) + alpha_t * np.asarray(s.mu_slow[k]) for k in params
    }
    eta = {k: lr / (np.sqrt(v_hat[k]) + eps) for k in params}
    expected = dref.pooled(eta, mixed, v_hat)
    expected["ademamix/alpha"] = alpha_t
    expected["ademamix/b3"] = b3
    for key, value in expected.items():
        np.testing.assert_allclose(metrics[key], value, rtol=1e-10, err_msg=key)


def test_simplified_diagnostics_report_alpha():
    tx = adamjax.with_diagnostics(
        adamjax.simplified_ademamix(1e-3, alpha=optax.linear_schedule(0, 2.0, 4))
    )
    params = {"w": jnp.ones((4,))}
    state, update = tx.init(params), jax.jit(tx.update)
    for _ in range(3):
        _, state = update({"w": jnp.full((4,), 0.5)}, state, params)
    metrics = adamjax.diagnostics(state)
    assert float(metrics["simplified_ademamix/alpha"]) == pytest.approx(1.0)
    assert float(metrics["effective_lr/mean"]) > 0


# ---- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: adamjax.ademamix(b3=1.0), r"^ademamix: b3 must be in \[0, 1\)"),
        (lambda: adamjax.ademamix(alpha=-1.0), r"^ademamix: alpha must be"),
        (lambda: adamjax.scale_by_ademamix(b3=1.5), r"^scale_by_ademamix: b3 must be in"),
        (lambda: adamjax.simplified_ademamix(alpha=-2.0), r"^simplified_ademamix: alpha must be"),
        (lambda: adamjax.simplified_ademamix(b1=1.0), r"^simplified_ademamix: b1 must be in"),
        (lambda: adamjax.ademamix_b3_schedule(0.999, 0), r"^ademamix_b3_schedule: warmup must be"),
        (
            lambda: adamjax.ademamix_b3_schedule(0.999, 10, b3_start=1.0),
            r"^ademamix_b3_schedule: b3_start must be in",
        ),
        (
            lambda: adamjax.ademamix_alpha_schedule(5.0, 10, first_step=-1),
            r"^ademamix_alpha_schedule: first_step must be",
        ),
    ],
)
def test_bad_hyperparameters_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bias_correction_mu_must_be_a_bool():
    with pytest.raises(TypeError, match=r"^simplified_ademamix: bias_correction_mu must be"):
        adamjax.simplified_ademamix(bias_correction_mu=1)


@pytest.mark.slow
def test_jit_and_eager_agree():
    params, grad_fn = quadratic_problem(seed=2, dtype=np.float32)
    tx = adamjax.ademamix(LR, b3=B3_WARMUP, alpha=ALPHA_WARMUP, weight_decay=0.1)
    state_j = state_e = tx.init(params)
    pj = pe = params
    step_j, step_e = jitted_step(tx), jitted_step(tx, jit=False)
    for _ in range(5):
        g = grad_fn({k: np.asarray(p) for k, p in pj.items()})
        pj, state_j = step_j(pj, state_j, g)
        pe, state_e = step_e(pe, state_e, g)
    assert max_rel_err(pj, pe) <= 1e-6
