"""SWATS against Algorithm 1 (float64 NumPy) and torch-optimizer (golden file); when it switches
and when it does not; validation, jit/donation, low precision and checkpointing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax
from adamjax import _moments as mo
from adamjax import _piece
from adamjax._swats import (
    PHASE_ADAM,
    PHASE_SGD,
    ScaleBySwatsState,
    _Switch,
    averaged_rate,
    decide_switch,
    projected_rate,
    scale_by_swats,
    swats,
    switch_test,
)

from helpers import jitted_step, max_rel_err
from reference.swats_reference import SwatsReference

GOLDEN = Path(__file__).parent / "reference" / "golden" / "swats.npz"
# torch_optimizer.SWATS's switching test and eps placement.
TORCH_RULE = dict(eps_mode="hat", switch_tol=1e-8, switch_rtol=1e-6)


def f64(x):
    return jnp.asarray(x, jnp.float64)


def switching_problem(seed: int = 0):
    """Leaves on which SWATS switches at different steps; ``grad_fn(params, k)``.

    ``w`` and ``s`` are isotropic quadratics whose gradients (~1e-6) are far below eps=1e-3, so
    Adam runs as heavy-ball SGD there and the projected rate converges geometrically (``w``
    switches after ~200 steps, ``s`` not within 400). ``lin`` has a constant gradient, so its
    projected rate is constant and, with ``eps_mode="paper"``, it switches at step 2. ``z`` gets
    zero gradients for its first three steps (no projection: Algorithm 1 keeps ``lambda``), then
    a constant one.
    """
    rng = np.random.default_rng(seed)
    curvature = {"w": 0.4, "s": 0.6}
    shapes = {"w": (4, 3), "s": (2,), "lin": (3,), "z": (2,)}
    params = {
        k: 2.5e-6 * rng.choice([-1.0, 1.0], size=s) * rng.uniform(0.5, 1.5, size=s)
        for k, s in shapes.items()
    }
    slope = 1e-6 * rng.uniform(0.5, 1.5, size=3)
    late = np.array([2e-6, -5e-7])

    def grad_fn(p, k):
        grads = {k: h * np.asarray(p[k], np.float64) for k, h in curvature.items()}
        grads["lin"] = slope.copy()
        grads["z"] = late.copy() if k >= 3 else np.zeros(2)
        return grads

    return params, grad_fn


def on_grid(schedule, steps: int = 400):
    """The schedule adamjax sees, tabulated at the int32 counts it is called with.

    The table is built on first use, inside the test's ``enable_x64`` context.
    """
    table = []

    def value(k: int) -> float:
        if not table:
            table.append(np.asarray(schedule(jnp.arange(steps, dtype=jnp.int32)), np.float64))
        return float(table[0][k])

    return value


@dataclass
class Case:
    """One parity case: adamjax's options, the reference's, and an option that must miss."""

    adamjax: dict
    reference: dict
    wrong: dict = field(default_factory=dict)


def _lr_drop(k):
    # Constant while the leaves switch (a continuously decaying rate makes gamma drift away from
    # its average, and no switch happens), then a drop that only the relative rule follows.
    return jnp.where(k < 320, f64(1e-4), f64(3e-5))


def _b1_schedule(k):
    return 0.8 + 0.1 * f64(0.9) ** k


def _b2_schedule(k):
    return jnp.where(k < 30, f64(0.85), f64(0.9))


BASE = dict(b1=0.8, b2=0.9, eps=1e-3)
CASES = {
    "paper": Case(
        dict(learning_rate=1e-4, **BASE), dict(lr=1e-4, **BASE), wrong=dict(eps_mode="hat")
    ),
    "torch_rule_nesterov": Case(
        dict(learning_rate=1e-4, nesterov=True, **TORCH_RULE, **BASE),
        dict(lr=1e-4, nesterov=True, **TORCH_RULE, **BASE),
        wrong=dict(nesterov=False),
    ),
    "decay_schedules": Case(
        dict(learning_rate=1e-4, b1=_b1_schedule, b2=_b2_schedule, eps=1e-3),
        dict(lr=1e-4, b1=on_grid(_b1_schedule), b2=on_grid(_b2_schedule), eps=1e-3),
    ),
    "lr_schedule_relative": Case(
        dict(learning_rate=_lr_drop, **BASE),
        dict(lr=on_grid(_lr_drop), **BASE),
        wrong=dict(sgd_schedule="fixed"),
    ),
    "lr_schedule_fixed": Case(
        dict(learning_rate=_lr_drop, sgd_schedule="fixed", **BASE),
        dict(lr=on_grid(_lr_drop), sgd_schedule="fixed", **BASE),
        wrong=dict(sgd_schedule="relative"),
    ),
}


def group_values(state: ScaleBySwatsState, field_name: str, names: list[str]) -> list:
    """A switching field of the state, as one value per reference group."""
    value = getattr(state, field_name)
    if isinstance(value, dict):
        return [float(value[n]) for n in names]
    return [float(value)]


@pytest.mark.parametrize("granularity", ["global", "leaf"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_algorithm_1_step_by_step(name, granularity):
    """Every step's update and, at the end, every state slot match the float64 reference.

    Both see the gradients of the reference's trajectory, so the updates, not the parameters,
    are compared: the steps shrink to 1e-6 of the parameters, where a parameter comparison would
    hide a wrong term.
    """
    case = CASES[name]
    steps = 400
    with jax.enable_x64(True):
        params, grad_fn = switching_problem()
        names = list(params)
        ref = SwatsReference(names, granularity=granularity, **case.reference)
        wrong = SwatsReference(names, granularity=granularity, **{**case.reference, **case.wrong})
        tx = swats(granularity=granularity, **case.adamjax)
        update = jax.jit(tx.update)
        state = tx.init(params)
        worst, miss = 0.0, 0.0
        for k in range(steps):
            grads = grad_fn(params, k)
            wrong.step(params, grads)
            params = ref.step(params, grads)
            updates, state = update(grads, state)
            worst = max(worst, max_rel_err(updates, ref.increments))
            miss = max(miss, max_rel_err(updates, wrong.increments))
        s = state[0]
        assert worst <= 1e-10, f"{name}/{granularity}: update rel err {worst:.2e}"
        assert int(s.count) == steps
        for slot, theirs in [("mu", ref.m), ("nu", ref.a), ("momentum", ref.v)]:
            err = max_rel_err(getattr(s, slot), {n: theirs[n] for n in names})
            assert err <= 1e-10, f"{name}/{granularity}: {slot} rel err {err:.2e}"
        group_names = [grp.names[0] for grp in ref.groups]
        assert group_values(s, "phase", group_names) == [grp.phase for grp in ref.groups]
        assert group_values(s, "switch_step", group_names) == [
            grp.switch_step for grp in ref.groups
        ]
        for slot, attr in [("sgd_rate", "sgd_rate"), ("rate_ema", "mean")]:
            ours = np.array(group_values(s, slot, group_names))
            theirs = np.array([getattr(grp, attr) for grp in ref.groups])
            assert max_rel_err(ours, theirs) <= 1e-10, (slot, ours, theirs)

    # The case exercises both phases: something switched mid-run, and in leaf mode the leaves
    # switched at different steps or not at all.
    switch_steps = [grp.switch_step for grp in ref.groups]
    assert max(switch_steps) > 100, switch_steps
    if granularity == "leaf":
        assert len(set(switch_steps)) >= 3, switch_steps
    if case.wrong:
        assert miss > 1e-3, f"{name}/{granularity}: the wrong option {case.wrong} also matches"


def test_adam_phase_is_adam():
    """Until the switch the steps are adamjax.adam's; after it they are not."""
    with jax.enable_x64(True):
        params, grad_fn = switching_problem()
        ours, theirs = swats(1e-4, **BASE), adamjax.adam(1e-4, **BASE)
        update_ours, update_theirs = jax.jit(ours.update), jax.jit(theirs.update)
        s_ours, s_theirs = ours.init(params), theirs.init(params)
        errors = []
        for k in range(250):
            grads = grad_fn(params, k)
            u_ours, s_ours = update_ours(grads, s_ours)
            u_theirs, s_theirs = update_theirs(grads, s_theirs)
            params = optax.apply_updates(params, u_theirs)
            errors.append(max_rel_err(u_ours, u_theirs))
        k = int(s_ours[0].switch_step)
    assert 100 < k < 250
    assert max(errors[:k]) <= 1e-13
    assert errors[k] > 0.1


def constant_gradient_problem():
    """Two leaves with constant gradients of mixed magnitude around eps."""
    grads = {
        "a": np.array([3e-4, -2e-3, 5e-2, -1.0]),
        "b": np.array([[1e-3, -7e-4], [4e-1, 2e-2]]),
    }
    params = {"a": np.linspace(-1.0, 1.0, 4), "b": np.ones((2, 2))}
    return params, grads


@pytest.mark.parametrize("granularity", ["global", "leaf"])
@pytest.mark.parametrize("x64", [True, False])
def test_constant_gradient_switches_with_closed_form_rate(granularity, x64):
    r"""A constant gradient :math:`c` provably switches, to a known rate.

    Adam's step is then :math:`\alpha c/(|c|+\epsilon)` at every step, so :math:`\gamma_k` is the
    constant :math:`\alpha \sum c^2/(|c|+\epsilon)^2 / \sum c^2/(|c|+\epsilon)`, its
    bias-corrected average equals it, and in float64 the test passes at the first step allowed,
    2. After :math:`n` SGD steps the parameters have moved by
    :math:`-\Lambda c\,(n - \beta_1(1-\beta_1^n)/(1-\beta_1))` more. In float32 the bias
    corrections :math:`1-\beta^k` are rounded to ~1e-5 relative, so :math:`\gamma_k` jitters by
    more than the absolute tolerance of 1e-9 allows at first and the switch comes a few steps
    later.
    """
    lr, b1, eps, steps = 1e-3, 0.9, 1e-3, 40
    dtype = np.float64 if x64 else np.float32
    p0, c = constant_gradient_problem()
    groups = [["a", "b"]] if granularity == "global" else [["a"], ["b"]]
    rates = {}
    for names in groups:
        num = sum(np.sum(c[n] ** 2 / (np.abs(c[n]) + eps) ** 2) for n in names)
        den = sum(np.sum(c[n] ** 2 / (np.abs(c[n]) + eps)) for n in names)
        rates.update({n: lr * num / den for n in names})
    with jax.enable_x64(x64):
        tx = swats(lr, b1=b1, eps=eps, granularity=granularity)
        step = jitted_step(tx)
        params = {k: jnp.asarray(p, dtype) for k, p in p0.items()}
        grads = {k: jnp.asarray(g, dtype) for k, g in c.items()}
        state = tx.init(params)
        phases = []
        for _ in range(steps):
            params, state = step(params, state, grads)
            phases.append(jax.tree.leaves(state[0].phase))
        s = state[0]
    per_leaf = s.switch_step if granularity == "leaf" else {k: s.switch_step for k in p0}
    switch = {k: int(v) for k, v in per_leaf.items()}
    if x64:
        assert set(switch.values()) == {2}
    else:
        assert all(2 <= k <= 20 for k in switch.values()), switch
    first = min(switch.values())
    assert all(p == [PHASE_ADAM] * len(groups) for p in phases[: first - 1])
    assert phases[-1] == [PHASE_SGD] * len(groups)

    expected, momentum = {}, {}
    for k in p0:
        n = steps - switch[k]
        adam = switch[k] * lr * c[k] / (np.abs(c[k]) + eps)
        expected[k] = p0[k] - adam - rates[k] * c[k] * (n - b1 * (1 - b1**n) / (1 - b1))
        momentum[k] = c[k] * (1 - b1**n) / (1 - b1)
    tol = 1e-12 if x64 else 1e-5
    ours_rates = s.sgd_rate if granularity == "leaf" else {k: s.sgd_rate for k in p0}
    assert max_rel_err(ours_rates, rates) <= tol
    assert max_rel_err(params, expected) <= tol
    assert max_rel_err(s.momentum, momentum) <= tol


@pytest.mark.parametrize("granularity", ["global", "leaf"])
def test_noisy_gradients_never_switch(granularity):
    """Pure-noise gradients make gamma jump from step to step: no switch in 500 steps."""
    steps = 500
    rng = np.random.default_rng(3)
    shapes = {"w": (6, 4), "b": (5,)}
    stream = [{k: rng.normal(size=s) for k, s in shapes.items()} for _ in range(steps)]
    with jax.enable_x64(True):
        params = {k: np.zeros(s) for k, s in shapes.items()}
        ref = SwatsReference(list(shapes), granularity=granularity)
        tx = swats(granularity=granularity)
        step = jitted_step(tx)
        state = tx.init(params)
        ours = params
        switched = []
        for grads in stream:
            params = ref.step(params, grads)
            ours, state = step(ours, state, grads)
            switched.append(any(p != PHASE_ADAM for p in jax.tree.leaves(state[0].phase)))
        s = state[0]
        err = max_rel_err(ours, params)
    assert not any(switched)
    assert jax.tree.leaves(s.switch_step) == [-1] * len(ref.groups)
    # As Python floats: the float64 state is read after enable_x64 has been left.
    assert [float(r) for r in jax.tree.leaves(s.sgd_rate)] == [0.0] * len(ref.groups)
    assert err <= 1e-10
    # Not a near miss: the switching test failed by a wide margin at every step k > 1.
    closest = min(ratio for grp in ref.groups for k, ratio in grp.gaps if k > 1)
    assert closest > 10, closest


# ------------------------------------------------------------------------------------------------
# torch-optimizer (golden file)
# ------------------------------------------------------------------------------------------------


def load_golden() -> dict:
    # The file is committed; a missing file is a failure, not a skip.
    with np.load(GOLDEN) as data:
        return {key: data[key] for key in data.files}


def golden_hyper(g: dict) -> dict:
    assert float(g["hp_weight_decay"]) == 0 and float(g["hp_lr_decay"]) == 1
    assert not bool(g["hp_amsgrad"]) and not bool(g["hp_nesterov"])
    return dict(
        learning_rate=float(g["hp_lr"]),
        b1=float(g["hp_b1"]),
        b2=float(g["hp_b2"]),
        eps=float(g["hp_eps"]),
    )


def replay_golden(g: dict, tx) -> tuple[list[np.ndarray], list[ScaleBySwatsState]]:
    """Runs the golden problem closed-loop; returns params and piece state after every step."""
    h, c, noise = g["h__w"], g["c__w"], g["noise__w"]
    params = {"w": jnp.asarray(g["p0__w"])}
    step = jitted_step(tx)
    state = tx.init(params)
    trajectory, states = [], []
    for k in range(len(noise)):
        grads = {"w": h * (np.asarray(params["w"]) - c) + noise[k]}
        params, state = step(params, state, grads)
        trajectory.append(np.asarray(params["w"]))
        states.append(jax.device_get(state[0]))
    return trajectory, states


def torch_optimizer_sgd_phase(g: dict, p: np.ndarray, rate: float, first: int, last: int):
    """torch-optimizer's SGD phase (as its source runs it) from params ``p`` after step
    ``first - 1``; returns {step: (params, buffer)} for steps first..last."""
    b1 = float(g["hp_b1"])
    out, buf = {}, None
    for k in range(first, last + 1):
        grad = g["h__w"] * (p - g["c__w"]) + g["noise__w"][k - 1]
        if buf is None:
            buf = grad.copy()
            p = p - rate * ((1 - b1) * grad)
        else:
            buf = (1 - b1) * (b1 * buf + grad)
            p = p - rate * buf
        out[k] = (p, buf)
    return out


def one_leaf(tree):
    return tree["w"] if isinstance(tree, dict) else tree


@pytest.mark.parametrize("granularity", ["global", "leaf"])
def test_torch_optimizer_golden(granularity):
    """Adam phase, switching step and rate, and first SGD step equal torch_optimizer.SWATS.

    From the second SGD step on the two differ by design (torch-optimizer rescales its momentum
    buffer in place; see adamjax._swats): the golden SGD phase is checked to be exactly that
    documented recurrence, started from adamjax's own state at the switch.
    """
    g = load_golden()
    with jax.enable_x64(True):
        tx = swats(granularity=granularity, **golden_hyper(g), **TORCH_RULE)
        trajectory, states = replay_golden(g, tx)
    switch = int(g["hp_switch_step"])
    assert switch > 1, "the golden run must switch"
    phases = np.array([int(one_leaf(s.phase)) for s in states])
    np.testing.assert_array_equal(phases, g["phase_per_step"])
    final = states[-1]
    assert int(one_leaf(final.switch_step)) == switch
    rate = float(one_leaf(final.sgd_rate))
    after = g["lr_per_step"][switch - 1 :]
    assert max_rel_err(np.full_like(after, rate), after) <= 1e-10

    # adamjax keeps lambda bias-corrected; torch-optimizer keeps the raw EMA.
    b2 = float(g["hp_b2"])

    for i, k in enumerate(int(k) for k in g["steps"]):
        s = states[k - 1]
        # Before and at the switch everything agrees; after it the Adam moments and lambda are
        # frozen in both.
        raw_lambda = float(one_leaf(s.rate_ema)) * (1 - b2 ** min(k, switch))
        fields = {"mu": s.mu, "nu": s.nu, "lambda": raw_lambda}
        if k <= switch:
            fields["param"] = trajectory[k - 1]
        for key, ours in fields.items():
            err = max_rel_err(one_leaf(ours), g[f"{key}__w"][i])
            assert err <= 1e-10, f"{key} at step {k}: rel err {err:.2e}"

    # torch-optimizer's SGD phase, from our params and rate at the switch, reproduces the golden
    # file; adamjax agrees with it on the first SGD step only.
    torch_sgd = torch_optimizer_sgd_phase(g, trajectory[switch - 1], rate, switch + 1, 300)
    for i, k in enumerate(int(k) for k in g["steps"]):
        if k > switch:
            assert max_rel_err(torch_sgd[k][0], g["param__w"][i]) <= 1e-10
            assert max_rel_err(torch_sgd[k][1], g["momentum__w"][i]) <= 1e-10
    assert max_rel_err(trajectory[switch], torch_sgd[switch + 1][0]) <= 1e-10
    assert max_rel_err(trajectory[switch + 5], torch_sgd[switch + 6][0]) > 1e-3


def test_golden_tells_the_conventions_apart():
    """The paper's eps placement moves the Adam phase; the paper's absolute switching test
    (1e-9) never passes on this run, where torch-optimizer's relative one does at step 179."""
    g = load_golden()
    with jax.enable_x64(True):
        paper_eps, _ = replay_golden(
            g, swats(**golden_hyper(g), **dict(TORCH_RULE, eps_mode="paper"))
        )
        _, absolute = replay_golden(g, swats(**golden_hyper(g), eps_mode="hat", switch_tol=1e-9))
    i = list(g["steps"]).index(100)
    assert max_rel_err(paper_eps[99], g["param__w"][i]) > 1e-2
    assert int(g["hp_switch_step"]) > 1 and int(absolute[-1].switch_step) == -1


# ------------------------------------------------------------------------------------------------
# Validation, jit, dtypes, state
# ------------------------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
BAD_INPUT = [
    (
        swats,
        dict(learning_rate=-1e-3),
        ValueError,
        "swats: learning_rate must be a finite number in [0, inf), got -0.001",
    ),
    (swats, dict(b1=1.0), ValueError, "swats: b1 must be in [0, 1), got 1.0"),
    (swats, dict(b2=-0.1), ValueError, "swats: b2 must be in [0, 1), got -0.1"),
    (
        swats,
        dict(eps=-1e-8),
        ValueError,
        "swats: eps must be a finite number in [0, inf), got -1e-08",
    ),
    (
        swats,
        dict(switch_tol=0.0),
        ValueError,
        "swats: switch_tol must be a finite number in (0, inf), got 0.0",
    ),
    (
        swats,
        dict(switch_tol=INF),
        ValueError,
        "swats: switch_tol must be a finite number in (0, inf), got inf",
    ),
    (
        swats,
        dict(switch_tol=NAN),
        ValueError,
        "swats: switch_tol must be a finite number in (0, inf), got nan",
    ),
    (
        swats,
        dict(switch_tol="1e-9"),
        TypeError,
        "swats: switch_tol must be a number or a 0-d array, got '1e-9'",
    ),
    (
        swats,
        dict(switch_rtol=-1e-6),
        ValueError,
        "swats: switch_rtol must be a finite number in [0, inf), got -1e-06",
    ),
    (
        swats,
        dict(granularity="layer"),
        ValueError,
        "swats: granularity must be one of 'global', 'leaf', got 'layer'",
    ),
    (
        swats,
        dict(sgd_schedule="cosine"),
        ValueError,
        "swats: sgd_schedule must be one of 'relative', 'fixed', got 'cosine'",
    ),
    (
        swats,
        dict(eps_mode="keras"),
        ValueError,
        "swats: eps_mode must be one of 'paper', 'hat', 'atan2', got 'keras'",
    ),
    (swats, dict(nesterov=1), TypeError, "swats: nesterov must be True or False, got 1"),
    (
        swats,
        dict(mu_dtype=jnp.int8),
        ValueError,
        "swats: mu_dtype must be None, one of bfloat16, float16, float32, float64 (complex64",
    ),
    (
        scale_by_swats,
        dict(switch_tol=-1e-9),
        ValueError,
        "scale_by_swats: switch_tol must be a finite number in (0, inf), got -1e-09",
    ),
    (
        scale_by_swats,
        dict(b2=1.5),
        ValueError,
        "scale_by_swats: b2 must be in [0, 1), got 1.5",
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


def test_integer_params_fail_at_init_and_arrays_and_schedules_pass():
    # Errors name the function the user called: the alias or the piece.
    bad = {"w": jnp.ones(2), "n": jnp.zeros((), jnp.int32)}
    with pytest.raises(TypeError, match=re.escape("swats: params must be floating")):
        swats().init(bad)
    with pytest.raises(TypeError, match=re.escape("scale_by_swats: params must be floating")):
        scale_by_swats().init(bad)
    swats(optax.linear_schedule(1e-3, 0.0, 10), b1=lambda k: 0.9, switch_tol=jnp.asarray(1e-9))
    swats(0.0, b1=0.0, b2=0.0, eps=0.0, switch_tol=1e-30, switch_rtol=0)
    tx = swats()
    state = tx.init({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match="^" + re.escape("swats: the updates' tree structure")):
        tx.update({"v": jnp.ones(2)}, state)
    piece = scale_by_swats()
    with pytest.raises(
        ValueError, match="^" + re.escape("scale_by_swats: the updates' tree structure")
    ):
        piece.update({"v": jnp.ones(2)}, piece.init({"w": jnp.ones(2)}))


def test_alias_is_the_piece_with_the_sign_flipped():
    params, grad_fn = switching_problem()
    # float32, as x64 is off here (float64 NumPy leaves would be truncated, with a warning).
    params = {k: np.asarray(p, np.float32) for k, p in params.items()}
    piece, alias = scale_by_swats(1e-4, **BASE), swats(1e-4, **BASE)
    grads = {k: np.asarray(g, np.float32) for k, g in grad_fn(params, 5).items()}
    u_piece, _ = jax.jit(piece.update)(grads, piece.init(params))
    u_alias, _ = jax.jit(alias.update)(grads, alias.init(params))
    for k in params:
        np.testing.assert_array_equal(np.asarray(u_alias[k]), -np.asarray(u_piece[k]))
        # The piece returns the step with the gradient's sign.
        assert np.all(np.sign(np.asarray(u_piece[k])) == np.sign(grads[k]))


@pytest.mark.parametrize("sgd_schedule", ["relative", "fixed"])
def test_injected_learning_rate_rescales_the_sgd_phase_only_when_relative(sgd_schedule):
    """With optax.inject_hyperparams the rate is an array, not a schedule; "relative" still
    follows it after the switch because the state remembers the rate at the switch."""
    p0, c = constant_gradient_problem()
    with jax.enable_x64(True):
        tx = optax.inject_hyperparams(swats, static_args=("sgd_schedule",))(
            learning_rate=1e-3, eps=1e-3, sgd_schedule=sgd_schedule
        )
        update = jax.jit(tx.update)
        state = tx.init(p0)
        for _ in range(4):
            _, state = update(c, state)
        assert int(state.inner_state[0].switch_step) == 2
        same, _ = update(c, state)
        state.hyperparams["learning_rate"] = 0.5 * state.hyperparams["learning_rate"]
        halved, _ = update(c, state)
    factor = 0.5 if sgd_schedule == "relative" else 1.0
    for k in p0:
        np.testing.assert_allclose(np.asarray(halved[k]), factor * np.asarray(same[k]), rtol=1e-14)


@pytest.mark.parametrize("granularity", ["global", "leaf"])
def test_jit_donation_eval_shape_and_checkpoint(granularity):
    """Donated jitted steps, an abstract init and a save/restore mid-run all agree."""
    p0, c = constant_gradient_problem()
    params = {k: jnp.asarray(p, jnp.float32) for k, p in p0.items()}
    grads = {k: jnp.asarray(g, jnp.float32) for k, g in c.items()}
    # float32: a relative tolerance well above float32's rounding of 1 - b^k (adamjax._swats).
    tx = swats(1e-3, eps=1e-3, granularity=granularity, switch_rtol=1e-5)

    def step(p, s, g):
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s

    plain = jax.jit(step)
    p_plain, s_plain = params, tx.init(params)
    for _ in range(6):
        p_plain, s_plain = plain(p_plain, s_plain, grads)

    abstract = jax.eval_shape(tx.init, params)
    concrete = jax.jit(tx.init)(params)
    assert jax.tree.structure(abstract) == jax.tree.structure(concrete)
    assert all(
        a.shape == b.shape and a.dtype == b.dtype
        for a, b in zip(jax.tree.leaves(abstract), jax.tree.leaves(concrete), strict=True)
    )

    donating = jax.jit(step, donate_argnums=(0, 1))
    p_don, s_don = jax.tree.map(jnp.array, params), concrete
    for _ in range(3):
        p_don, s_don = donating(p_don, s_don, grads)
    # A checkpoint is the state's leaves as plain NumPy arrays plus its (static) structure.
    leaves, treedef = jax.tree.flatten(s_don)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)
    saved = [np.array(leaf) for leaf in leaves]
    restored = jax.tree.unflatten(treedef, [jnp.asarray(a) for a in saved])
    p_don = jax.tree.map(lambda a: jnp.asarray(np.array(a)), p_don)
    for _ in range(3):
        p_don, restored = donating(p_don, restored, grads)

    assert max_rel_err(p_don, p_plain) <= 1e-6
    assert max_rel_err(restored, s_plain) <= 1e-6
    assert jax.tree.leaves(s_plain[0].phase) == [PHASE_SGD] * len(jax.tree.leaves(s_plain[0].phase))
    phase = s_plain[0].phase
    assert all(leaf.dtype == jnp.int32 and leaf.shape == () for leaf in jax.tree.leaves(phase))
    if granularity == "leaf":
        assert set(phase) == set(params)


def test_bfloat16_params_stay_finite_and_compute_in_float32():
    rng = np.random.default_rng(0)
    params = {"w": jnp.ones((32, 16), jnp.bfloat16), "b": jnp.zeros(8, jnp.bfloat16)}
    slope = {
        k: jnp.asarray(rng.uniform(0.5, 2.0, p.shape), jnp.bfloat16) for k, p in params.items()
    }
    tx = swats(1e-2, eps=1e-3, granularity="leaf", switch_rtol=1e-5)
    state = tx.init(params)
    s = state[0]
    assert s.mu["w"].dtype == s.nu["w"].dtype == s.momentum["w"].dtype == jnp.bfloat16
    assert s.sgd_rate["w"].dtype == s.rate_ema["w"].dtype == jnp.float32
    step = jitted_step(tx)
    for k in range(30):
        # A constant gradient for w (it switches), tiny noise for b (it does not).
        noise = jnp.asarray(1e-20 * rng.normal(size=8), jnp.bfloat16)
        grads = {"w": slope["w"], "b": noise if k % 2 else -noise}
        params, state = step(params, state, grads)
    s = state[0]
    for leaf in jax.tree.leaves(params):
        assert leaf.dtype == jnp.bfloat16
        assert np.all(np.isfinite(np.asarray(leaf, np.float32)))
    assert int(s.phase["w"]) == PHASE_SGD and int(s.phase["b"]) == PHASE_ADAM
    assert np.isfinite(float(s.sgd_rate["w"])) and float(s.sgd_rate["w"]) > 0
    assert float(jnp.max(jnp.abs(params["w"].astype(jnp.float32) - 1))) > 1e-2


# ------------------------------------------------------------------------------------------------
# The switch, unit by unit, against Algorithm 1 computed by hand
# ------------------------------------------------------------------------------------------------


def algorithm_1_step_2(p2: list[float], g2: list[float]) -> dict:
    r"""Algorithm 1 by hand, beta2 = 0.9: step 1 projects :math:`\gamma_1 = 0.01` (from
    :math:`p_1 = (-0.01, 0.02)`, :math:`g_1 = (1, -2)`: :math:`p^\top p = 5\cdot 10^{-4}`,
    :math:`-p^\top g = 0.05`), so :math:`\lambda_1 = 0.1 \gamma_1 = 10^{-3}` and
    :math:`\Lambda_1 = \lambda_1 / (1 - 0.9) = 0.01`; step 2 takes ``p2`` on ``g2``."""
    b2, lam1 = 0.9, 1e-3
    pp = sum(p * p for p in p2)
    pg = sum(p * g for p, g in zip(p2, g2, strict=True))
    gamma2 = pp / -pg
    lam2 = b2 * lam1 + (1 - b2) * gamma2
    return dict(
        b2=b2, uu=pp, ug=-pg, gamma=gamma2, rate_1=lam1 / (1 - b2), rate_2=lam2 / (1 - b2**2),
        keep=(1 - b2) / (1 - b2**2),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("p2", "g2", "eps", "switches"),
    [
        # gamma_2 = 0.011, Lambda_2 = 0.002 / 0.19 = 0.0105263...: |gap| = 4.74e-4.
        ([-0.011, 0.0], [1.0, 0.0], 1e-3, True),
        ([-0.011, 0.0], [1.0, 0.0], 1e-4, False),
        # gamma_2 = 0.04: Lambda_2 = 0.0049 / 0.19 = 0.0257894..., |gap| = 0.0142 > 1e-2.
        ([-0.02, -0.02], [0.5, 0.5], 1e-2, False),
        # p_2 = -0.01 g_2: gamma_2 = 0.01 = Lambda_2 exactly.
        ([-0.03, 0.04], [3.0, -4.0], 1e-9, True),
    ],
)
def test_switch_test_matches_algorithm_1_by_hand(p2, g2, eps, switches):
    hand = algorithm_1_step_2(p2, g2)
    with jax.enable_x64(True):
        in_adam = jnp.asarray(True)
        projected, gamma = projected_rate(f64(hand["uu"]), f64(hand["ug"]), in_adam)
        assert bool(projected)
        np.testing.assert_allclose(float(gamma), hand["gamma"], rtol=1e-13)
        rate_2 = averaged_rate(
            f64(hand["rate_1"]), gamma, projected, in_adam, b2=hand["b2"], keep=f64(hand["keep"])
        )
        np.testing.assert_allclose(float(rate_2), hand["rate_2"], rtol=1e-13)
        count = jnp.asarray(2, jnp.int32)
        assert bool(switch_test(rate_2, gamma, projected, count, eps, 0.0)) is switches
        # Algorithm 1's condition on the hand values themselves gives the same answer.
        assert (abs(hand["rate_2"] - hand["gamma"]) < eps) is switches
        # Step 1 never switches, even with Lambda_1 = gamma_1 exactly.
        one = jnp.asarray(1, jnp.int32)
        assert not bool(switch_test(f64(0.01), f64(0.01), projected, one, 1.0, 0.0))


def test_switch_test_guards_and_relative_tolerance():
    with jax.enable_x64(True):
        count = jnp.asarray(5, jnp.int32)
        yes = jnp.asarray(True)
        # A negative average (an ascent rate) never switches, however close.
        assert not bool(switch_test(f64(-0.01), f64(-0.01), yes, count, 1.0, 0.0))
        # The relative tolerance: |0.0105 - 0.01| = 5e-4 < 1e-9 + 0.06 * 0.01.
        assert bool(switch_test(f64(0.0105), f64(0.01), yes, count, 1e-9, 0.06))
        assert not bool(switch_test(f64(0.0105), f64(0.01), yes, count, 1e-9, 0.04))
        # No projection where p.g = 0 (or in the SGD phase): no switch, whatever the gap.
        projected, _ = projected_rate(f64(1.0), f64(0.0), yes)
        assert not bool(projected)
        assert not bool(switch_test(f64(0.01), f64(0.01), projected, count, 1.0, 0.0))
        projected, _ = projected_rate(f64(1.0), f64(2.0), jnp.asarray(False))
        assert not bool(projected)


def test_decide_switch_records_the_switch_and_freezes_after_it():
    """decide_switch on the first hand case: it switches at k = 2 to Lambda_2 and records
    alpha_2; a group in the SGD phase keeps its fields."""
    hand = algorithm_1_step_2([-0.011, 0.0], [1.0, 0.0])
    with jax.enable_x64(True):
        old = _Switch(f64(hand["rate_1"]), jnp.asarray(PHASE_ADAM), jnp.asarray(-1), f64(0), f64(0))
        scalars = dict(
            count=jnp.asarray(2, jnp.int32), b2=hand["b2"], keep=f64(hand["keep"]),
            learning_rate=0.011, switch_tol=1e-3, switch_rtol=0.0,
        )  # fmt: skip
        new = decide_switch(old, f64(hand["uu"]), f64(hand["ug"]), **scalars)
        assert int(new.phase) == PHASE_SGD and int(new.switch_step) == 2
        np.testing.assert_allclose(float(new.sgd_rate), hand["rate_2"], rtol=1e-13)
        assert float(new.sgd_rate) == float(new.rate_ema)
        assert float(new.switch_learning_rate) == 0.011
        later = decide_switch(new, f64(5.0), f64(1.0), **dict(scalars, count=jnp.asarray(3)))
        for a, b in zip(later, new, strict=True):
            assert float(a) == float(b)


# ------------------------------------------------------------------------------------------------
# Storage formats, optax drop-in
# ------------------------------------------------------------------------------------------------


def formats_problem():
    """A leaf with a constant gradient (it switches at step 2) and one with noise (it does not),
    float32, large enough for 8-bit storage."""
    rng = np.random.default_rng(7)
    params = {
        "w": jnp.asarray(rng.normal(size=(64, 64)), jnp.float32),
        "b": jnp.zeros(16, jnp.float32),
    }
    sign = rng.choice([-1.0, 1.0], size=(64, 64))
    slope = jnp.asarray(rng.uniform(0.5, 2.0, size=(64, 64)) * sign, jnp.float32)
    noise = [jnp.asarray(rng.normal(size=16), jnp.float32) for _ in range(40)]
    return params, [{"w": slope, "b": n} for n in noise]


def run_formats(moments) -> tuple[dict, dict, list]:
    params, stream = formats_problem()
    p0 = params
    tx = swats(
        1e-2, eps=1e-3, granularity="leaf", switch_rtol=1e-3, mu_dtype=moments, nu_dtype=moments
    )
    step = jitted_step(tx)
    state = tx.init(params)
    states = []
    for grads in stream:
        params, state = step(params, state, grads)
        states.append(state[0])
    moved = jax.tree.map(lambda p, q: p - q, params, p0)
    return moved, state[0], states


@pytest.mark.parametrize(
    ("name", "moments", "tol"),
    [("q8", adamjax.q8(), 0.06), ("stochastic_bf16", adamjax.stochastic_bf16(), 0.02)],
)
def test_storage_formats_follow_float32(name, moments, tol):
    """8-bit and stochastically rounded bfloat16 moments (mu, nu and the SGD momentum) follow
    the float32 run through both phases: the same switch, nearly the same rate and params, and
    Adam moments that stay frozen bit for bit after the switch."""
    moved_ref, s_ref, _ = run_formats(None)
    moved, s, states = run_formats(moments)
    # Relative to the largest displacement (8-bit momentum: ~4e-2; bf16: ~8e-3 measured).
    assert max_rel_err(moved, moved_ref) <= tol, name
    assert {k: int(x) for k, x in s.switch_step.items()} == {"w": 2, "b": -1}
    assert {k: int(x) for k, x in s_ref.switch_step.items()} == {"w": 2, "b": -1}
    np.testing.assert_allclose(float(s.sgd_rate["w"]), float(s_ref.sgd_rate["w"]), rtol=1e-4)
    if name == "q8":
        for field_name in ("mu", "nu", "momentum"):
            leaves = getattr(s, field_name)
            assert isinstance(leaves["w"], adamjax.QuantizedArray), field_name
            assert leaves["b"].dtype == jnp.float32  # below min_size
    else:
        for leaf in jax.tree.leaves((s.mu, s.nu, s.momentum)):
            assert leaf.dtype == jnp.bfloat16
    # After the switch (step 2) w's Adam moments are frozen, exactly as stored.
    for later in states[2:]:
        for field_name in ("mu", "nu"):
            for a, b in zip(
                jax.tree.leaves(getattr(states[1], field_name)["w"]),
                jax.tree.leaves(getattr(later, field_name)["w"]),
                strict=True,
            ):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_extra_args_are_accepted_and_ignored():
    params = {"w": jnp.ones(3), "b": jnp.zeros(2)}
    grads = {"w": jnp.asarray([0.1, -0.2, 0.3]), "b": jnp.asarray([1.0, -1.0])}
    for tx in (swats(1e-3), scale_by_swats(1e-3)):
        state = tx.init(params)
        plain = tx.update(grads, state, params)
        extra = tx.update(grads, state, params, value=1.0)
        for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(extra), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_optax_tree_utils_find_each_field_once():
    params = {"w": jnp.ones(3)}
    tx = swats(1e-3)
    state = tx.init(params)
    assert int(optax.tree_utils.tree_get(state, "count")) == 0
    _, state = tx.update({"w": jnp.ones(3)}, state)
    assert int(optax.tree_utils.tree_get(state, "count")) == 1
    assert float(optax.tree_utils.tree_get(state, "last_learning_rate")) == pytest.approx(1e-3)
    # Under inject_hyperparams, "learning_rate" is the hyperparameter, and only it.
    injected = optax.inject_hyperparams(swats)(learning_rate=1e-3)
    state = injected.init(params)
    assert float(optax.tree_utils.tree_get(state, "learning_rate")) == pytest.approx(1e-3)
    state = optax.tree_utils.tree_set(state, learning_rate=2e-3)
    _, state = injected.update({"w": jnp.ones(3)}, state)
    assert float(state.inner_state[0].last_learning_rate) == pytest.approx(2e-3)


@pytest.mark.parametrize("granularity", ["global", "leaf"])
def test_diagnostics_view(granularity):
    """The view registered for ScaleBySwatsState: Adam's effective rate before the switch, the
    SGD step size after it, and the swats/* metrics."""
    p0, c = constant_gradient_problem()
    params = {k: jnp.asarray(p, jnp.float32) for k, p in p0.items()}
    grads = {k: jnp.asarray(g, jnp.float32) for k, g in c.items()}
    tx = swats(1e-3, eps=1e-3, granularity=granularity, switch_rtol=1e-5)
    state = tx.init(params)
    s = state[0]
    assert _piece.view_of(s) is not None
    _, state = tx.update(grads, state, params)
    s = state[0]
    view = _piece.view_of(s)(_piece.decoded(s), grads)
    assert view.lr_included
    for k in params:
        x = _piece.value(view.statistic[k])  # v-hat: Adam's view gives the moment and divisor
        expected = 1e-3 * mo.inverse_denominator(x, s.last_step)
        np.testing.assert_allclose(np.asarray(view.scale_of[k](x)), np.asarray(expected))
        assert not np.any(np.asarray(view.fractions["swats/phase"][k]))
    for _ in range(20):
        _, state = tx.update(grads, state, params)
    s = state[0]
    view = _piece.view_of(s)(_piece.decoded(s), grads)
    first = min(int(x) for x in jax.tree.leaves(s.switch_step))
    assert int(view.scalars["swats/switch_step"]) == first > 0
    for k in params:
        size = s.sgd_step_size[k] if granularity == "leaf" else s.sgd_step_size
        x = _piece.value(view.statistic[k])
        np.testing.assert_allclose(np.asarray(view.scale_of[k](x)), float(size))
        assert np.all(np.asarray(view.fractions["swats/phase"][k]))
    if granularity == "leaf":
        assert set(view.leaf_scalars["swats/phase"]) == set(params)
