"""AdaBound/AMSBound against the float64 NumPy reference and the authors' package (golden files);
the bounds, the clipping record, validation, jit/donation and low precision."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax
from adamjax import diagnostics, with_diagnostics
from adamjax._adabound import ScaleByAdaBoundState, adabound, adabound_bounds, scale_by_adabound

from helpers import max_rel_err, run_forced
from reference.adabound_reference import AdaBoundReference

GOLDEN = Path(__file__).parent / "reference" / "golden"
GOLDEN_CASES = ("adabound", "amsbound", "adabound_schedule_wd")
NAN, INF = float("nan"), float("inf")
STEPS = 300

LR, FINAL_LR, GAMMA = 1e-2, 0.1, 1e-2
HYPER = dict(final_lr=FINAL_LR, gamma=GAMMA, b1=0.8, b2=0.95, eps=1e-6)
WARMUP_COSINE = optax.warmup_cosine_decay_schedule(
    init_value=2e-3, peak_value=2e-2, warmup_steps=40, decay_steps=300, end_value=1e-3
)


def values_of(schedule):
    # The int32 count, traced, as the optimizer evaluates it: the reference sees the same values.
    jitted = jax.jit(schedule)
    return lambda k: float(jitted(jnp.int32(k)))


def b1_schedule(count):
    return 0.9 - 0.3 * jnp.exp(-count / 25.0)


def b2_schedule(count):
    return 0.999 - 0.05 / (1.0 + count / 10.0)


def adabound_state(state) -> ScaleByAdaBoundState:
    (found,) = [s for s in state if isinstance(s, ScaleByAdaBoundState)]
    return found


def noisy_problem(seed: int = 0):
    """Diagonal quadratics with curvature over three decades and noise that fades, plus a leaf
    with tiny gradients (``t``) and one whose gradients are comparable to eps (``e``): the step
    size then meets the lower bound, the upper bound and neither, and eps matters."""
    rng = np.random.default_rng(seed)
    shapes = {"w": (6, 4), "b": (5,), "s": (), "t": (3,), "e": (4,)}
    curv = {k: 10.0 ** rng.uniform(-1.5, 1.5, size=s) for k, s in shapes.items()}
    curv["t"], curv["e"] = curv["t"] * 1e-6, curv["e"] * 1e-2
    centre = {k: rng.normal(size=s) for k, s in shapes.items()}
    params = {k: centre[k] + rng.normal(size=s) for k, s in shapes.items()}
    white = {k: rng.normal(size=(STEPS, *s)) for k, s in shapes.items()}
    step = [0]

    def grad_fn(p):
        k = step[0]
        step[0] += 1
        scale = {"t": 1e-7, "e": 1e-2}
        fading = 0.05 + np.exp(-k / 30.0)
        return {
            n: curv[n] * (np.asarray(p[n]) - centre[n]) + scale.get(n, fading) * white[n][k]
            for n in shapes
        }

    return params, grad_fn


# eps=1e-3 makes its placement visible on the ``e`` leaf (see the negative controls).
HYPER_EPS = {**HYPER, "eps": 1e-3}
SCHEDULES = {**HYPER, "b1": b1_schedule, "b2": b2_schedule}
# name -> (adamjax alias, reference options). Hyperparameters differ from the defaults so that
# every term matters.
REFERENCE_CASES = {
    "adabound": (
        lambda: adabound(LR, **HYPER_EPS),
        dict(lr=lambda k: LR, **HYPER_EPS),
    ),
    "warmup_cosine_weight_decay": (
        lambda: adabound(WARMUP_COSINE, **HYPER, weight_decay=0.05),
        dict(lr=values_of(WARMUP_COSINE), **HYPER, weight_decay=0.05),
    ),
    "amsbound_b1_b2_schedules_weight_decay": (
        lambda: adabound(LR, **SCHEDULES, weight_decay=0.05, amsbound=True),
        dict(
            lr=lambda k: LR,
            **{**SCHEDULES, "b1": values_of(b1_schedule), "b2": values_of(b2_schedule)},
            weight_decay=0.05,
            amsbound=True,
        ),
    ),
}


def run_reference(options: dict) -> tuple[dict, np.ndarray]:
    """Runs the reference alone on ``noisy_problem``; returns its params and, per step, the
    clipping counts (entries at the lower bound, at the upper bound, entries)."""
    params, grad_fn = noisy_problem()
    ref = AdaBoundReference(**options)
    counts = []
    for _ in range(STEPS):
        params = ref.step(params, grad_fn(params))
        counts.append(np.sum(list(ref.clipped.values()), axis=0))
    return params, np.array(counts)


@functools.cache
def run_case(case: str):
    """Runs a reference case with ``run_forced``; returns the start, adamjax's params and
    AdaBound state, and the reference's params and final state."""
    make_tx, options = REFERENCE_CASES[case]
    with jax.enable_x64(True):
        params, grad_fn = noisy_problem()
        ref = AdaBoundReference(**options)
        tx = with_diagnostics(make_tx(), per_leaf=True)
        ours, state, theirs = run_forced(tx, ref.step, params, grad_fn, STEPS)
        found = adabound_state(state.inner_state)
        return params, jax.tree.map(np.asarray, (ours, found, diagnostics(state))), theirs, ref


@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_matches_float64_reference_over_300_steps(case):
    params, (ours, state, metrics), theirs, ref = run_case(case)
    assert all(leaf.dtype == np.float64 for leaf in jax.tree.leaves(ours))
    assert max_rel_err(ours, theirs) <= 1e-10
    assert max_rel_err(state.mu, ref.m) <= 1e-10
    assert max_rel_err(state.nu, ref.v) <= 1e-10
    if ref.amsbound:
        assert max_rel_err(state.nu_max, ref.v_max) <= 1e-10
    else:
        assert state.nu_max is None
    assert int(state.count) == STEPS
    assert max_rel_err((state.lower_bound, state.upper_bound), (ref.lower, ref.upper)) <= 1e-12
    # The diagnostics' clipped fractions, per leaf, count what the reference clipped.
    for name, (low, high, size) in ref.clipped.items():
        assert metrics[f"leaf/{name}/adabound/lower_clipped_fraction"] == pytest.approx(low / size)
        assert metrics[f"leaf/{name}/adabound/upper_clipped_fraction"] == pytest.approx(high / size)
    assert max_rel_err(ours, params) > 1e-2


@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_reference_cases_exercise_both_bounds_and_the_adam_step(case):
    """The parity above covers clipped and unclipped entries alike."""
    _, counts = run_reference(REFERENCE_CASES[case][1])
    assert (counts[:, 0] > 0).sum() > 50 and (counts[:, 1] > 0).sum() > 50
    unclipped = 1 - (counts[:, 0] + counts[:, 1]).sum() / counts[:, 2].sum()
    assert unclipped > 0.05


@pytest.mark.parametrize(
    "variant", [dict(first_moment="corrected"), dict(eps_mode="paper")], ids=["m_hat", "paper_eps"]
)
def test_wrong_conventions_miss_the_reference(variant):
    """adamjax matches the "adabound" case to 1e-10; these readings of the paper miss it."""
    options = REFERENCE_CASES["adabound"][1]
    expected, _ = run_reference(options)
    wrong, _ = run_reference({**options, **variant})
    assert max_rel_err(wrong, expected) > 1e-4


def test_bounds_follow_the_learning_rate_schedule():
    """final_lr is scaled by lr_t / lr_0: the bounds move with the warmup and the cosine."""
    _, (_, state, _), _, _ = run_case("warmup_cosine_weight_decay")
    options = REFERENCE_CASES["warmup_cosine_weight_decay"][1]
    with jax.enable_x64(True):
        lr = values_of(WARMUP_COSINE)
        final_t = FINAL_LR * lr(STEPS - 1) / lr(0)
        assert float(state.base_lr) == pytest.approx(lr(0), rel=1e-15)
    assert float(state.upper_bound) == pytest.approx(final_t * (1 + 1 / (GAMMA * STEPS)), 1e-12)
    assert float(state.lower_bound) == pytest.approx(final_t * (1 - 1 / (GAMMA * STEPS + 1)), 1e-12)
    assert final_t / FINAL_LR < 0.6  # the schedule moved the bounds a long way
    unscaled, _ = run_reference({**options, "follow_schedule": False})
    expected, _ = run_reference(options)
    assert max_rel_err(unscaled, expected) > 1e-4


# Golden trajectories of the authors' package ------------------------------------------------


def load(name: str) -> dict:
    path = GOLDEN / f"{name}.npz"
    if not path.exists():
        pytest.fail(f"{path} is missing: run tests/reference/make_golden.py")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def golden_hyper(g: dict) -> dict:
    assert not bool(g["hp_decoupled"])  # the package only has coupled L2
    assert bool(g["hp_amsgrad"]) == bool(g["hp_amsbound"])
    return dict(
        final_lr=float(g["hp_final_lr"]),
        gamma=float(g["hp_gamma"]),
        b1=float(g["hp_b1"]),
        b2=float(g["hp_b2"]),
        eps=float(g["hp_eps"]),
        weight_decay=float(g["hp_weight_decay"]),
        amsbound=bool(g["hp_amsbound"]),
    )


def golden_tx(g: dict) -> optax.GradientTransformation:
    lr, decay = float(g["hp_lr"]), float(g["hp_lr_decay"])
    if decay == 1.0:
        return adabound(lr, **golden_hyper(g))
    # torch's LambdaLR: lr * decay**k for the 0-based step k, in float64.
    return adabound(lambda count: lr * jnp.asarray(decay, jnp.float64) ** count, **golden_hyper(g))


@functools.cache
def replay_adamjax_all() -> dict[str, tuple[dict, ScaleByAdaBoundState, dict]]:
    """Replays every golden case closed-loop, all in one jitted function (one compilation).

    Returns, per case, the params, the AdaBound state and the diagnostics after every step,
    stacked on a leading axis, as NumPy arrays.
    """
    with jax.enable_x64(True):
        cases = {name: load(name) for name in GOLDEN_CASES}

        def replay(g: dict):
            leaves = [str(k) for k in g["leaves"]]
            h, c = ({k: g[f"{f}__{k}"] for k in leaves} for f in ("h", "c"))
            tx = with_diagnostics(golden_tx(g), per_leaf=True)

            def body(carry, noise):
                params, state = carry
                grads = {k: h[k] * (params[k] - c[k]) + noise[k] for k in leaves}
                updates, state = tx.update(grads, state, params)
                params = optax.apply_updates(params, updates)
                found = adabound_state(state.inner_state)
                return (params, state), (params, found, diagnostics(state))

            params = {k: jnp.asarray(g[f"p0__{k}"]) for k in leaves}
            noise = {k: g[f"noise__{k}"] for k in leaves}
            return jax.lax.scan(body, (params, tx.init(params)), noise)[1]

        out = jax.jit(lambda: {name: replay(g) for name, g in cases.items()})()
        return jax.tree.map(np.asarray, out)


def replay_reference(g: dict, **variant) -> list[dict]:
    """Replays a golden case with the NumPy reference; returns params and moments per checkpoint."""
    lr, decay = float(g["hp_lr"]), float(g["hp_lr_decay"])
    ref = AdaBoundReference(lr=lambda k: lr * decay**k, **{**golden_hyper(g), **variant})
    params = {str(k): g[f"p0__{k}"] for k in g["leaves"]}
    checkpoints = {int(s) for s in g["steps"]}
    out = []
    for k in range(int(g["steps"][-1])):
        grads = {
            n: g[f"h__{n}"] * (p - g[f"c__{n}"]) + g[f"noise__{n}"][k] for n, p in params.items()
        }
        params = ref.step(params, grads)
        if k + 1 in checkpoints:
            out.append({"param": params, "mu": dict(ref.m), "nu": dict(ref.v),
                        "nu_max": dict(ref.v_max)})  # fmt: skip
    return out


def golden_fields(g: dict) -> list[str]:
    return ["param", "mu", "nu"] + (["nu_max"] if bool(g["hp_amsbound"]) else [])


def golden_errors(g: dict, trajectory: list[dict], fields=None) -> dict[str, list[float]]:
    """Relative error of each field (default: all the file has) at each checkpoint."""
    assert len(trajectory) == len(g["steps"])
    return {
        field: [
            max_rel_err(record[field], {str(k): g[f"{field}__{k}"][i] for k in g["leaves"]})
            for i, record in enumerate(trajectory)
        ]
        for field in fields or golden_fields(g)
    }


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_matches_golden_trajectory_of_the_authors_package(name):
    g = load(name)
    params, state, _ = replay_adamjax_all()[name]
    slots = {"param": params, "mu": state.mu, "nu": state.nu, "nu_max": state.nu_max}
    # Row k of the stacked arrays holds the state after k + 1 steps.
    trajectory = [
        {
            field: jax.tree.map(lambda x, i=int(step) - 1: x[i], tree)
            for field, tree in slots.items()
        }
        for step in g["steps"]
    ]
    for field, errs in golden_errors(g, trajectory).items():
        worst = int(np.argmax(errs))
        assert errs[worst] <= 1e-10, (
            f"{name}: {field} at step {g['steps'][worst]}: rel err {errs[worst]:.2e}"
        )
    assert (state.nu_max is None) == (not bool(g["hp_amsbound"]))


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_reference_matches_golden_trajectory(name):
    """The NumPy reference follows the package too, so its negative controls mean something."""
    g = load(name)
    for field, errs in golden_errors(g, replay_reference(g)).items():
        assert max(errs) <= 1e-10, f"{name}: {field}: rel err {max(errs):.2e}"


@pytest.mark.parametrize(
    ("name", "variant", "margin"),
    [
        ("adabound", dict(first_moment="corrected"), 1e-4),
        # The eps placement only shows early and on entries the bounds leave alone; the golden data
        # still tells it apart by a factor of 1000 over the tolerance (and the noisy problem above
        # by more than 1e-4).
        ("adabound", dict(eps_mode="paper"), 1e-7),
        ("amsbound", dict(amsbound=False), 1e-4),
        ("adabound_schedule_wd", dict(follow_schedule=False), 1e-4),
        ("adabound_schedule_wd", dict(weight_decay=0.0), 1e-4),
    ],
    ids=["m_hat", "paper_eps", "no_max", "fixed_final_lr", "no_l2"],
)
def test_wrong_conventions_miss_the_golden_trajectory(name, variant, margin):
    g = load(name)
    errs = golden_errors(g, replay_reference(g, **variant), ["param"])["param"]
    assert max(errs) > margin


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_bounds_bind_on_the_golden_problem(name):
    """Entries are clipped at each bound at most steps, and some are left alone: the parity above
    covers the Adam step and both bounds. The recorded bounds follow the LambdaLR schedule."""
    g = load(name)
    _, state, metrics = replay_adamjax_all()[name]
    sizes = {str(k): g[f"p0__{k}"].size for k in g["leaves"]}
    lower = sum(metrics[f"leaf/{k}/adabound/lower_clipped_fraction"] * n for k, n in sizes.items())
    upper = sum(metrics[f"leaf/{k}/adabound/upper_clipped_fraction"] * n for k, n in sizes.items())
    # The pooled fractions are the entry-weighted means of the per-leaf ones.
    total = sum(sizes.values())
    np.testing.assert_allclose(metrics["adabound/lower_clipped_fraction"] * total, lower, atol=1e-9)
    np.testing.assert_allclose(metrics["adabound/upper_clipped_fraction"] * total, upper, atol=1e-9)
    assert (lower > 0).sum() > 100 and (upper > 0).sum() > 100
    # AMSBound's maximum keeps every entry clipped after the first dozen steps.
    assert (lower + upper < sum(sizes.values())).sum() >= 10
    # The recorded bounds: final_lr * lr_t / lr_0 (the LambdaLR factor), then the gamma terms.
    t = np.arange(1, len(state.lower_bound) + 1)
    final_t = float(g["hp_final_lr"]) * float(g["hp_lr_decay"]) ** (t - 1)
    gamma = float(g["hp_gamma"])
    np.testing.assert_allclose(state.lower_bound, final_t * (1 - 1 / (gamma * t + 1)), rtol=1e-12)
    np.testing.assert_allclose(state.upper_bound, final_t * (1 + 1 / (gamma * t)), rtol=1e-12)


# The bounds ----------------------------------------------------------------------------------


def test_bounds_close_in_on_final_lr():
    with jax.enable_x64(True):
        t = np.array([1.0, 10.0, 1e2, 1e3, 1e4, 1e5, 1e6])
        lower, upper = map(np.asarray, adabound_bounds(0.1, 1e-3, jnp.asarray(t)))
        # gamma = 0: no bounds at all, and no nan even when final_lr is 0 too.
        for final in (0.1, 0.0):
            lo, hi = adabound_bounds(final, 0.0, jnp.asarray(5.0))
            assert float(lo) == 0.0 and float(hi) == np.inf
    assert (np.diff(lower) > 0).all() and (np.diff(upper) < 0).all()
    assert (lower < 0.1).all() and (upper > 0.1).all()
    np.testing.assert_allclose(0.1 - lower, 0.1 / (1e-3 * t + 1), rtol=1e-9)
    np.testing.assert_allclose(upper - 0.1, 0.1 / (1e-3 * t), rtol=1e-9)
    assert upper[-1] - 0.1 < 1e-4 and 0.1 - lower[-1] < 1e-4


def test_long_runs_become_sgd_with_momentum_at_final_lr():
    """Late in training every step size sits within final_lr / (gamma t) of final_lr: the update
    is final_lr times the momentum buffer, as in SGD with (EMA) momentum."""
    final, gamma, steps = 0.05, 0.5, 4000
    tx = scale_by_adabound(1e-3, final_lr=final, gamma=gamma)
    rng = np.random.default_rng(0)
    params = {"w": jnp.zeros((8, 8)), "b": jnp.zeros(3)}
    grads = {k: jnp.asarray(rng.normal(size=(steps, *p.shape)), jnp.float32)
             for k, p in params.items()}  # fmt: skip

    def body(state, g):
        updates, state = tx.update(g, state)
        return state, updates

    tx = with_diagnostics(tx, per_leaf=True)
    state, updates = jax.jit(lambda s: jax.lax.scan(body, s, grads))(tx.init(params))
    metrics, state = diagnostics(state), state.inner_state
    slack = final / (gamma * steps)
    assert float(state.lower_bound) == pytest.approx(final, abs=slack)
    assert float(state.upper_bound) == pytest.approx(final, abs=slack)
    for k in params:
        np.testing.assert_allclose(updates[k][-1], final * state.mu[k], rtol=1.01 * slack / final)
        # lr=1e-3 is far below the bound: Adam's step is lifted to it everywhere.
        assert float(metrics[f"leaf/{k}/adabound/lower_clipped_fraction"]) == 1.0
        assert float(metrics[f"leaf/{k}/adabound/upper_clipped_fraction"]) == 0.0


# Validation ----------------------------------------------------------------------------------

BAD_INPUT = [
    (adabound, dict(learning_rate=-1e-3), ValueError,
     "adabound: learning_rate must be a finite number in [0, inf), got -0.001"),
    (adabound, dict(learning_rate=NAN), ValueError,
     "adabound: learning_rate must be a finite number in [0, inf), got nan"),
    (adabound, dict(final_lr=-0.1), ValueError,
     "adabound: final_lr must be a finite number in [0, inf), got -0.1"),
    (adabound, dict(final_lr=INF), ValueError,
     "adabound: final_lr must be a finite number in [0, inf), got inf"),
    (adabound, dict(final_lr=optax.constant_schedule(0.1)), TypeError,
     "adabound: final_lr must be a number or a 0-d array"),
    (adabound, dict(gamma=1.0), ValueError, "adabound: gamma must be in [0, 1), got 1.0"),
    (adabound, dict(gamma=-1e-3), ValueError, "adabound: gamma must be in [0, 1), got -0.001"),
    (adabound, dict(b1=1.0), ValueError, "adabound: b1 must be in [0, 1), got 1.0"),
    (adabound, dict(b2=1.5), ValueError, "adabound: b2 must be in [0, 1), got 1.5"),
    (adabound, dict(b2=NAN), ValueError, "adabound: b2 must be in [0, 1), got nan"),
    (adabound, dict(eps=-1e-8), ValueError,
     "adabound: eps must be a finite number in [0, inf), got -1e-08"),
    (adabound, dict(weight_decay=-0.1), ValueError,
     "adabound: weight_decay must be a finite number in [0, inf), got -0.1"),
    (adabound, dict(amsbound="yes"), TypeError, "adabound: amsbound must be True or False"),
    (adabound, dict(mu_dtype=jnp.int32), ValueError,
     "adabound: mu_dtype must be None, one of bfloat16, float16, float32, float64 ("),
    (adabound, dict(nu_dtype="int8"), ValueError,
     "adabound: nu_dtype must be None, one of bfloat16, float16, float32, float64, "),
    (adabound, dict(learning_rate=optax.linear_schedule(0.0, 1e-3, 100)), ValueError,
     "adabound: a learning_rate schedule must be positive at step 0, got schedule(0) = 0.0"),
    (scale_by_adabound, dict(gamma=1.5), ValueError,
     "scale_by_adabound: gamma must be in [0, 1), got 1.5"),
    (scale_by_adabound, dict(final_lr=NAN), ValueError,
     "scale_by_adabound: final_lr must be a finite number in [0, inf), got nan"),
    (scale_by_adabound, dict(amsbound=1), TypeError,
     "scale_by_adabound: amsbound must be True or False"),
    (scale_by_adabound, dict(learning_rate=lambda count: 1e-3 * count), ValueError,
     "scale_by_adabound: a learning_rate schedule must be positive at step 0"),
]  # fmt: skip


@pytest.mark.parametrize(("factory", "kwargs", "exc", "message"), BAD_INPUT)
def test_bad_hyperparameters_are_rejected_with_a_clear_message(factory, kwargs, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        factory(**kwargs)


def test_bad_params_and_trees_are_rejected():
    tx = adabound(weight_decay=0.1)
    with pytest.raises(TypeError, match=re.escape("adabound: params must be floating")):
        tx.init({"w": jnp.zeros(3, jnp.int32)})
    state = tx.init({"w": jnp.zeros(3)})
    with pytest.raises(ValueError, match=re.escape("adabound: update() needs params")):
        tx.update({"w": jnp.ones(3)}, state)
    with pytest.raises(ValueError, match=re.escape("scale_by_adabound: the update at ['w'] has")):
        scale_by_adabound().update({"w": jnp.ones(4)}, state[1])


def run_scanned(txs: dict, params: dict, grads: dict) -> dict:
    """Runs several transformations on one gradient stream in a single jitted function."""

    def run_all(params):
        out = {}
        for name, tx in txs.items():

            def body(carry, g, tx=tx):
                p, state = carry
                updates, state = tx.update(g, state, p)
                return (optax.apply_updates(p, updates), state), None

            (out[name], _), _ = jax.lax.scan(body, (params, tx.init(params)), grads)
        return out

    return jax.jit(run_all)(params)


def test_arrays_and_injected_hyperparameters_pass_through():
    params = {"w": jnp.linspace(-1.0, 1.0, 6)}
    grads = {"w": jnp.sin(jnp.arange(6.0) + jnp.arange(20.0)[:, None])}
    arrays = {k: jnp.asarray(x) for k, x in HYPER.items()}
    out = run_scanned(
        {
            "plain": adabound(LR, **HYPER, weight_decay=0.01),
            "arrays": adabound(jnp.asarray(LR), **arrays, weight_decay=jnp.asarray(0.01)),
            "injected": optax.inject_hyperparams(adabound)(LR, **HYPER, weight_decay=0.01),
            "schedule": adabound(WARMUP_COSINE, **HYPER),
            "injected_schedule": optax.inject_hyperparams(adabound)(WARMUP_COSINE, **HYPER),
        },
        params,
        grads,
    )
    assert max_rel_err(out["arrays"], out["plain"]) <= 1e-6
    assert max_rel_err(out["injected"], out["plain"]) <= 1e-6
    # Under inject_hyperparams the learning rate arrives as a number each step; the bounds still
    # follow it, relative to the value init saw.
    assert max_rel_err(out["injected_schedule"], out["schedule"]) <= 1e-6
    assert max_rel_err(out["schedule"], out["plain"]) > 1e-3


def test_learning_rate_zero_at_init_gives_fixed_bounds_not_nan():
    """A traced learning rate that is 0 at init (inject_hyperparams with a warmup from 0) cannot
    be rejected at construction; the bounds then stay at final_lr. A constant learning rate of 0
    is allowed too: the bounds still move the params (the paper's bounds do not involve the Adam
    learning rate)."""
    injected = optax.inject_hyperparams(adabound)(
        optax.linear_schedule(0.0, 1e-3, 10), final_lr=0.1, gamma=0.1
    )
    constant = adabound(0.0, final_lr=0.1)
    params, grads = {"w": jnp.ones(4)}, {"w": jnp.full(4, 0.5)}

    def run(params):
        state = injected.init(params)
        for _ in range(3):
            updates, state = injected.update(grads, state, params)
        return updates, state, constant.update(grads, constant.init(params))[0]

    updates, state, constant_updates = jax.jit(run)(params)
    inner = adabound_state(state.inner_state)
    assert jnp.isfinite(updates["w"]).all()
    assert float(inner.base_lr) == 0.0
    lower, upper = adabound_bounds(0.1, 0.1, 3.0)
    assert float(inner.lower_bound) == pytest.approx(float(lower))
    assert float(inner.upper_bound) == pytest.approx(float(upper))
    assert jnp.isfinite(constant_updates["w"]).all() and (constant_updates["w"] < 0).all()


# jit, donation, abstract init, low precision -------------------------------------------------


def test_jit_donation_and_eval_shape():
    options = dict(**{**HYPER, "b1": b1_schedule}, weight_decay=0.01, amsbound=True)
    tx = adabound(WARMUP_COSINE, **options)
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.zeros(3), "s": jnp.ones(())}
    grads = [jax.tree.map(lambda p, i=i: jnp.cos(p + i) + 0.1 * i, params) for i in range(8)]

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    donating = jax.jit(step, donate_argnums=(0, 1))
    ours, state = jax.tree.map(jnp.array, params), tx.init(params)
    for g in grads:
        donated = state
        ours, state = donating(ours, state, g)
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(adabound_state(donated).nu_max))
    # The float64 reference runs the same (open-loop) gradients; float32 agrees to rounding.
    ref = AdaBoundReference(
        lr=values_of(WARMUP_COSINE), **{**options, "b1": values_of(b1_schedule)}
    )
    expected = {k: np.asarray(p, np.float64) for k, p in params.items()}
    for g in grads:
        expected = ref.step(expected, g)
    assert max_rel_err(ours, expected) <= 1e-5
    assert max_rel_err(adabound_state(state).nu_max, ref.v_max) <= 1e-5

    shapes = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)  # noqa: E731
    abstract = jax.eval_shape(tx.init, params)
    assert jax.tree.structure(abstract) == jax.tree.structure(tx.init(params))
    assert shapes(abstract) == shapes(tx.init(params))
    inner = adabound_state(abstract)
    # The scheduled b1 continues from the recorded correction; AMSBound records its maximum's.
    assert inner.count.dtype == jnp.int32 and inner.last_step.m_correction.shape == ()
    assert inner.last_step.max_correction.shape == () and inner.nu_max["w"].shape == (3, 4)
    assert adabound_state(jax.eval_shape(adabound().init, params)).nu_max is None


def test_bfloat16_params_give_finite_results_and_keep_their_dtype():
    params = {"w": jnp.linspace(-1.0, 1.0, 64, dtype=jnp.bfloat16).reshape(8, 8),
              "b": jnp.zeros(5, jnp.bfloat16)}  # fmt: skip
    rng = np.random.default_rng(0)
    # Gradient scales down to 1e-25: their squares underflow bfloat16's range for nu.
    scales = 10.0 ** -(np.arange(60) % 26)
    grads = {k: jnp.asarray(scales.reshape(-1, *[1] * p.ndim) * rng.normal(size=(60, *p.shape)),
                            jnp.bfloat16) for k, p in params.items()}  # fmt: skip
    tx = adabound(LR, **HYPER, weight_decay=0.01, amsbound=True)

    def body(carry, g):
        p, state = carry
        updates, state = tx.update(g, state, p)
        return (optax.apply_updates(p, updates), state), updates

    (params, state), updates = jax.jit(lambda c: jax.lax.scan(body, c, grads))(
        (params, tx.init(params))
    )
    inner = adabound_state(state)
    for tree in (params, updates, inner.mu, inner.nu, inner.nu_max):
        for leaf in jax.tree.leaves(tree):
            assert leaf.dtype == jnp.bfloat16 and jnp.isfinite(leaf).all()
    assert inner.base_lr.dtype == jnp.float32 and inner.lower_bound.dtype == jnp.float32
    assert float(jnp.abs(params["w"]).max()) > 0.1


# Storage formats and the optax drop-in protocol ----------------------------------------------

FORMAT_HYPER = {**HYPER, "gamma": 1e-3}  # bounds wide enough that the Adam step size shows


def quadratic_run(tx: optax.GradientTransformation, steps: int = 40):
    """Runs ``tx`` on a small float32 quadratic with curvature over 1.5 decades; returns the start,
    the params after every step (stacked) and the final state. ``w`` has 8192 entries (q8
    quantizes it), ``b`` 5 (below q8's ``min_size``: float32 moments)."""
    rng = np.random.default_rng(1)
    shapes = {"w": (32, 256), "b": (5,)}
    h = {
        k: jnp.asarray(10.0 ** rng.uniform(-1, 0.5, size=s), jnp.float32) for k, s in shapes.items()
    }
    c = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
    start = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}

    def body(carry, _):
        p, state = carry
        grads = jax.tree.map(lambda h, p, c: h * (p - c), h, p, c)
        updates, state = tx.update(grads, state, p)
        p = optax.apply_updates(p, updates)
        return (p, state), p

    run = jax.jit(lambda p: jax.lax.scan(body, (p, tx.init(p)), None, length=steps))
    (_, state), path = run(start)
    return start, path, state


@pytest.mark.parametrize("amsbound", [False, True], ids=["adabound", "amsbound"])
@pytest.mark.parametrize(
    ("fmt", "tolerance"),
    [(adamjax.q8(), 0.1), (adamjax.stochastic_bf16(seed=0), 0.01)],
    ids=["q8", "sr-bf16"],
)
def test_moment_formats_follow_the_float32_trajectory(fmt, tolerance, amsbound):
    """8-bit and stochastically rounded bfloat16 moments: the state holds them in that format and
    the trajectory stays close to float32's (q8's dynamic map keeps ~1% per entry; Adam's own q8
    run on this problem strays by as much)."""
    start, expected, _ = quadratic_run(adabound(LR, **FORMAT_HYPER, amsbound=amsbound))
    tx = adabound(LR, **FORMAT_HYPER, amsbound=amsbound, mu_dtype=fmt, nu_dtype=fmt)
    _, path, state = quadratic_run(tx)
    inner = adabound_state(state)
    moments = [inner.mu, inner.nu] + ([inner.nu_max] if amsbound else [])
    assert (inner.nu_max is None) == (not amsbound)
    for tree in moments:
        if fmt == adamjax.q8():
            assert isinstance(tree["w"], adamjax.QuantizedArray)
            assert tree["w"].codes.dtype == jnp.uint8 and tree["w"].codes.shape == (32, 256)
            assert tree["b"].dtype == jnp.float32  # below min_size
        else:
            assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(tree))
    for k in start:
        moved = float(jnp.linalg.norm(expected[k] - start[k]))
        err = float(jnp.linalg.norm(path[k] - expected[k])) / moved
        assert moved > 1.0 and np.isfinite(err) and err <= tolerance, (k, err)
    if fmt == adamjax.q8():
        # Leaves below min_size keep float32 moments: the same maths, the same trajectory.
        np.testing.assert_array_equal(path["b"], expected["b"])


@pytest.mark.parametrize(
    "make",
    [
        lambda: scale_by_adabound(LR, **HYPER),
        lambda: adabound(LR, **HYPER, weight_decay=0.01),
        lambda: adabound(WARMUP_COSINE, **HYPER, amsbound=True, weight_decay=WARMUP_COSINE),
    ],
    ids=["piece", "alias", "amsbound_schedules"],
)
def test_update_accepts_and_ignores_extra_args(make):
    """optax's GradientTransformationExtraArgs protocol: keyword arguments such as a loss value
    are accepted and change nothing."""
    tx = make()
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    params = {"w": jnp.linspace(-1.0, 1.0, 6), "s": jnp.ones(())}
    grads = jax.tree.map(lambda p: jnp.cos(3 * p), params)
    state = tx.init(params)
    plain = tx.update(grads, state, params)
    extra = tx.update(grads, state, params, value=1.0)
    jax.tree.map(np.testing.assert_array_equal, extra, plain)


def test_tree_get_finds_the_piece_count_and_the_injected_learning_rate():
    """No other state in the alias' chain has a field ``count`` (the weight decay's is
    ``schedule_count``), and the recorded learning rate is ``last_learning_rate``, so optax's tree
    utilities find the moment piece's count and inject_hyperparams' learning rate unambiguously."""
    params = {"w": jnp.zeros(3)}
    grads = {"w": jnp.ones(3)}
    for tx in (adabound(1e-3), adabound(1e-3, weight_decay=lambda count: 1e-2 / (1 + count))):
        state = tx.init(params)
        assert int(optax.tree_utils.tree_get(state, "count")) == 0
        _, state = tx.update(grads, state, params)
        _, state = tx.update(grads, state, params)
        count = optax.tree_utils.tree_get(state, "count")
        assert count is adabound_state(state).count and int(count) == 2
        assert float(adabound_state(state).last_learning_rate) == pytest.approx(1e-3)
    injected = optax.inject_hyperparams(adabound)(learning_rate=1e-3)
    state = injected.init(params)
    _, state = injected.update(grads, state, params)
    assert float(optax.tree_utils.tree_get(state, "learning_rate")) == pytest.approx(1e-3)
    state = optax.tree_utils.tree_set(state, learning_rate=jnp.asarray(2e-3))
    _, state = injected.update(grads, state, params)
    assert float(adabound_state(state.inner_state).last_learning_rate) == pytest.approx(2e-3)
