"""Adafactor against the paper (float64 NumPy) and optax (live, float32); factoring, state size,
validation, jit/donation and low precision."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adamjax import diagnostics, with_diagnostics
from adamjax._adafactor import (
    AdafactorMomentumState,
    ClipByBlockRmsState,
    ScaleByFactoredRmsState,
    adafactor,
    clip_by_block_rms,
    relative_step_schedule,
    scale_by_factored_rms,
)

from helpers import jitted_step, max_rel_err, optax_reference_step, run_forced
from reference.adafactor_reference import AdafactorReference

# A factored matrix with more rows than columns and one with fewer, a 3-D tensor whose two largest
# axes are not the last two, a vector and a scalar. With min_dim_size_to_factor=2 every leaf of
# rank >= 2 is factored. Few leaves: XLA compilation dominates the run time of these tests.
SHAPES = {"w": (6, 5), "m": (3, 8), "t": (5, 2, 4), "b": (7,), "s": ()}
DECAY_MASK = {"w": True, "m": True, "t": False, "b": False, "s": True}


def noisy_problem(seed: int, shapes: dict, dtype=np.float64):
    """A diagonal quadratic per leaf plus noise whose scale jumps from step to step.

    The jumps make the second-moment estimate lag the gradients, so update clipping engages.
    """
    rng = np.random.default_rng(seed)
    curv = {k: 10.0 ** rng.uniform(-1, 1, size=s) for k, s in shapes.items()}
    centre = {k: rng.normal(size=s) for k, s in shapes.items()}
    params = {k: rng.normal(size=s).astype(dtype) for k, s in shapes.items()}

    def grad_fn(p):
        scale = 10.0 ** rng.uniform(-1.5, 1.0)
        return {
            k: (curv[k] * (np.asarray(p[k], np.float64) - centre[k])
                + scale * rng.normal(size=shapes[k])).astype(dtype)
            for k in shapes
        }  # fmt: skip

    return params, grad_fn


def values_of(schedule):
    # The int32 count the optimizer passes, so the reference sees the values adamjax sees.
    jitted = jax.jit(schedule)  # optax evaluates in float32, and rounds differently eagerly
    return lambda k: float(jitted(jnp.int32(k)))


def find(state, cls):
    """The one sub-state of type ``cls`` in a chain's state."""
    leaves = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, cls))
    found = [s for s in leaves if isinstance(s, cls)]
    assert len(found) == 1, found
    return found[0]


WARMUP_COSINE = optax.warmup_cosine_decay_schedule(1e-4, 3e-2, 20, 200, end_value=1e-3)

# name -> (adamjax transformation, reference options); float64.
REFERENCE_CASES = {
    "paper_defaults": (lambda: adafactor(min_dim_size_to_factor=2), dict()),
    "momentum": (
        lambda: adafactor(min_dim_size_to_factor=2, momentum=0.9, dtype_momentum=None),
        dict(momentum=0.9),
    ),
    "warmup_cosine_schedule": (
        lambda: adafactor(WARMUP_COSINE, min_dim_size_to_factor=2),
        dict(lr=values_of(WARMUP_COSINE)),
    ),
    "weight_decay_masked": (
        lambda: adafactor(
            min_dim_size_to_factor=2, weight_decay_rate=1e-3, weight_decay_mask=DECAY_MASK
        ),
        dict(weight_decay=1e-3, decay_mask=DECAY_MASK),
    ),
    "nondefault_constants": (
        lambda: adafactor(
            min_dim_size_to_factor=2,
            decay_rate=0.5,
            clipping_threshold=0.5,
            relative_step_cap=5e-3,
            eps_scale=2.0,
            eps=1e-3,
        ),
        dict(decay_rate=0.5, clipping_threshold=0.5, relative_step_cap=5e-3, eps2=2.0, eps1=1e-3),
    ),
}


@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_matches_float64_paper_reference_over_200_steps(case):
    make_tx, options = REFERENCE_CASES[case]
    with jax.enable_x64(True):
        params, grad_fn = noisy_problem(seed=len(case), shapes=SHAPES)
        ref = AdafactorReference(min_dim_size_to_factor=2, **options)
        clip_history = []

        def reference_step(p, g):
            new = ref.step(p, g)
            clip_history.append(max(ref.clip.values()))
            return new

        actual, state, expected = run_forced(make_tx(), reference_step, params, grad_fn, 200)
    for leaf in jax.tree.leaves(actual):
        assert leaf.dtype == np.float64
    assert max_rel_err(actual, expected) <= 1e-12
    factored = find(state, ScaleByFactoredRmsState)
    for name, shape in SHAPES.items():
        if len(shape) >= 2:
            assert max_rel_err(factored.v_row[name], ref.row_means(name, shape)) <= 1e-12
            assert max_rel_err(factored.v_col[name], ref.col_means(name, shape)) <= 1e-12
            assert factored.v[name].shape == (1,)
        else:
            assert max_rel_err(factored.v[name], ref.V[name]) <= 1e-12
    clip = find(state, ClipByBlockRmsState)
    assert max_rel_err(clip.clip_factor, ref.clip) <= 1e-12
    if "momentum" in options:
        assert max_rel_err(find(state, AdafactorMomentumState).ema, ref.m) <= 1e-12
    # The run exercised clipping (on some steps only, at the default threshold) and went somewhere.
    assert max(clip_history) > 1.5
    if "clipping_threshold" not in options:
        assert min(clip_history) <= 1.0
    assert max_rel_err(actual, params) > 0.1


def test_reference_options_really_differ():
    """Each option the reference tests pin down changes the trajectory."""
    with jax.enable_x64(True):
        params, _ = noisy_problem(seed=0, shapes=SHAPES)
        grads = [noisy_problem(seed=1, shapes=SHAPES)[1](params) for _ in range(50)]

    def run(**options):
        ref, p = AdafactorReference(min_dim_size_to_factor=2, **options), params
        for g in grads:
            p = ref.step(p, g)
        return p

    base = run()
    for options in [dict(momentum=0.9), dict(weight_decay=1e-3), dict(clipping_threshold=None),
                    dict(factored=False), dict(multiply_by_parameter_scale=False)]:  # fmt: skip
        assert max_rel_err(run(**options), base) > 1e-4, options


# float32, live: name -> (adamjax, optax).
MASK = {"big": True, "t": False, "s": True}


def optax_relative_step(count):
    return jnp.minimum(1e-2, 1.0 / jnp.sqrt(count + 1.0))


# Settings are combined so that every option is covered by few compilations (which dominate the
# run time here); each option on its own changes the trajectory (see the reference test above).
OPTAX_CASES = {
    "learning_rate": (lambda: adafactor(1e-2), lambda: optax.adafactor(1e-2)),
    "momentum_and_masked_weight_decay": (
        lambda: adafactor(1e-2, momentum=0.9, weight_decay_rate=1e-3, weight_decay_mask=MASK),
        lambda: optax.adafactor(1e-2, momentum=0.9, weight_decay_rate=1e-3, weight_decay_mask=MASK),
    ),
    "unfactored_without_clipping": (
        lambda: adafactor(1e-2, factored=False, clipping_threshold=None),
        lambda: optax.adafactor(1e-2, factored=False, clipping_threshold=None),
    ),
    "small_min_dim_absolute_step_schedule": (
        lambda: adafactor(
            WARMUP_COSINE, 2, decay_rate=0.5, multiply_by_parameter_scale=False, eps=1e-3
        ),
        lambda: optax.adafactor(
            WARMUP_COSINE, 2, decay_rate=0.5, multiply_by_parameter_scale=False, eps=1e-3
        ),
    ),
    "optax_learning_rate_none": (
        lambda: adafactor(relative_step=False),
        lambda: optax.adafactor(),
    ),
    "relative_step_is_a_schedule": (
        lambda: adafactor(min_dim_size_to_factor=2),
        lambda: optax.adafactor(optax_relative_step, min_dim_size_to_factor=2),
    ),
}


# With learning_rate=None optax takes steps of size 1: each step moves a leaf by up to its own RMS,
# so one-ulp differences between XLA's fusions of the two graphs compound (measured 2.1e-6; the
# other cases measured <= 2.1e-7).
OPTAX_TOLERANCE = {"optax_learning_rate_none": 1e-5}
# "big" is factored with the default min_dim_size_to_factor=128; "t" is factored over its first
# and last axes when min_dim_size_to_factor=2.
OPTAX_SHAPES = {"big": (130, 140), "t": (5, 2, 4), "s": ()}


@pytest.mark.parametrize("case", sorted(OPTAX_CASES))
def test_matches_optax_float32_over_100_steps(case):
    make_ours, make_theirs = OPTAX_CASES[case]
    params, grad_fn = noisy_problem(seed=7, shapes=OPTAX_SHAPES, dtype=np.float32)
    reference = optax_reference_step(make_theirs(), params)
    ours, _, theirs = run_forced(make_ours(), reference, params, grad_fn, 100)
    for leaf in jax.tree.leaves(ours):
        assert leaf.dtype == np.float32
    assert max_rel_err(ours, theirs) <= OPTAX_TOLERANCE.get(case, 1e-6)
    assert max_rel_err(ours, params) > 1e-2


def test_factored_state_equals_optax_state():
    """Same statistics and updates as optax.scale_by_factored_rms, complex leaves included."""
    rng = np.random.default_rng(8)
    shapes = {"tie": (2, 4, 4), "b": (7,), "z_mat": (5, 4), "z_vec": (5,)}
    dtypes = {"tie": jnp.float32, "b": jnp.float32, "z_mat": jnp.complex64, "z_vec": jnp.complex64}

    def draw():
        draws = {k: rng.normal(size=s) + 1j * rng.normal(size=s) for k, s in shapes.items()}
        return {
            k: jnp.asarray(x if jnp.iscomplexobj(dtypes[k](0)) else x.real, dtypes[k])
            for k, x in draws.items()
        }

    params = draw()
    ours = scale_by_factored_rms(min_dim_size_to_factor=3)
    theirs = optax.scale_by_factored_rms(min_dim_size_to_factor=3)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    assert jax.tree.map(jnp.shape, s_ours._asdict()) == jax.tree.map(jnp.shape, s_theirs._asdict())
    assert s_ours.v_row["tie"].shape == (2, 4)  # a batch of two 4x4 matrices
    assert s_ours.v_row["z_mat"].dtype == jnp.float32  # |g|^2 is real (optax keeps complex64)
    update_ours, update_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    for _ in range(10):
        g = jax.tree.map(lambda x: x * 10.0 ** rng.uniform(-1, 1), draw())
        u_ours, s_ours = update_ours(g, s_ours)
        u_theirs, s_theirs = update_theirs(g, s_theirs, params)
    for name in ("v_row", "v_col", "v"):
        assert max_rel_err(getattr(s_ours, name), getattr(s_theirs, name)) <= 1e-6
    assert max_rel_err(u_ours, u_theirs) <= 1e-6
    assert u_ours["z_mat"].dtype == jnp.complex64
    assert int(s_ours.count) == int(s_theirs.count) == 10


def test_learning_rate_none_is_the_relative_step_not_optax_default():
    """The documented difference: optax.adafactor(learning_rate=None) takes unscaled steps."""
    params = {"w": jnp.linspace(-1.0, 1.0, 20).reshape(4, 5)}
    grads = {"w": jnp.cos(jnp.arange(20.0)).reshape(4, 5)}
    ours, theirs = adafactor(), optax.adafactor()
    u_ours, _ = jax.jit(ours.update)(grads, ours.init(params), params)
    u_theirs, _ = jax.jit(theirs.update)(grads, theirs.init(params), params)
    np.testing.assert_allclose(u_ours["w"], 1e-2 * u_theirs["w"], rtol=1e-6)  # rho_1 = 1e-2
    assert float(jnp.max(jnp.abs(u_theirs["w"]))) > 0.1


def test_rank_one_gradient_is_factored_exactly():
    """|G| = a b^T is its own rank-one factorisation: the first step is sign(G) (beta_1 = 0)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        g = np.outer(rng.uniform(0.5, 2, 3), rng.uniform(0.5, 2, 4)) * rng.choice([-1, 1], (3, 4))
        tx = scale_by_factored_rms(min_dim_size_to_factor=3, epsilon=0.0)
        update = jax.jit(tx.update)
        updates, state = update({"w": jnp.asarray(g)}, tx.init({"w": jnp.zeros((3, 4))}))
    np.testing.assert_allclose(updates["w"], np.sign(g), rtol=1e-14)
    np.testing.assert_allclose(state.v_row["w"], np.mean(g**2, axis=1), rtol=1e-14)
    np.testing.assert_allclose(state.v_col["w"], np.mean(g**2, axis=0), rtol=1e-14)


def state_bytes(tx, params) -> tuple[int, dict]:
    state = jax.eval_shape(tx.init, params)
    leaves = jax.tree.leaves(state)
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in leaves), state


def test_state_memory_is_rows_plus_columns():
    rows, cols = 1024, 4096
    params = {"w": jax.ShapeDtypeStruct((rows, cols), jnp.float32)}
    total, state = state_bytes(adafactor(), params)
    factored = state[0]
    assert factored.v_row["w"].shape == (rows,) and factored.v_col["w"].shape == (cols,)
    assert factored.v["w"].shape == (1,)
    # 24 bytes besides the statistics: three int32 counts (factored, clipping, learning rate),
    # the recorded learning rate, the (1,) placeholder for v and the scalar clipping factor.
    assert total == (rows + cols) * 4 + 24
    assert total < 0.01 * rows * cols * 4
    # Momentum is the one full-size buffer, and only when asked for.
    with_momentum, _ = state_bytes(adafactor(momentum=0.9), params)
    assert with_momentum == total + rows * cols * 4 + 4


# shape -> (v_row, v_col, v) shapes under min_dim_size_to_factor=128.
FACTORING = {
    (7,): ((1,), (1,), (7,)),
    (): ((1,), (1,), ()),
    (1024, 3): ((1,), (1,), (1024, 3)),  # a small second dimension: not factored
    (128, 128): ((128,), (128,), (1,)),  # both at the threshold: factored
    (127, 4096): ((1,), (1,), (127, 4096)),  # one just below it: not factored
    (4096, 1024): ((1024,), (4096,), (1,)),  # more rows than columns
    (3, 200, 300): ((3, 200), (3, 300), (1,)),  # batch axis first
    (300, 2, 200): ((2, 200), (300, 2), (1,)),  # the two largest axes, not the last two
    (2, 256, 256): ((2, 256), (2, 256), (1,)),  # a tie: the later axis is the larger
}


@pytest.mark.parametrize("shape", list(FACTORING), ids=str)
def test_which_leaves_are_factored(shape):
    params = {"p": jax.ShapeDtypeStruct(shape, jnp.float32)}
    ours = jax.eval_shape(scale_by_factored_rms().init, params)
    theirs = jax.eval_shape(optax.scale_by_factored_rms().init, params)
    got = (ours.v_row["p"].shape, ours.v_col["p"].shape, ours.v["p"].shape)
    assert got == FACTORING[shape]
    assert got == (theirs.v_row["p"].shape, theirs.v_col["p"].shape, theirs.v["p"].shape)
    unfactored = jax.eval_shape(scale_by_factored_rms(factored=False).init, params)
    assert unfactored.v["p"].shape == shape and unfactored.v_row["p"].shape == (1,)


def test_unfactored_leaf_follows_algorithm_5():
    with jax.enable_x64(True):
        g1, g2 = np.array([0.3, -2.0, 0.0]), np.array([1.0, 0.5, 0.0])
        tx = scale_by_factored_rms(decay_rate=0.8)
        state = tx.init({"b": jnp.zeros(3)})
        update = jax.jit(tx.update)
        u1, state = update({"b": jnp.asarray(g1)}, state)
        u2, state = update({"b": jnp.asarray(g2)}, state)
    beta2 = 1 - 2.0**-0.8  # beta_1 = 0, so v_1 = g1^2 + eps
    v2 = beta2 * (g1**2 + 1e-30) + (1 - beta2) * (g2**2 + 1e-30)
    np.testing.assert_allclose(u1["b"], g1 / np.sqrt(g1**2 + 1e-30), rtol=1e-15)
    np.testing.assert_allclose(u2["b"], g2 / np.sqrt(v2), rtol=1e-15)
    assert np.asarray(u2["b"])[2] == 0.0  # eps keeps 0/0 away


def test_decay_offset_restarts_the_decay():
    params = {"w": jnp.ones((4, 5)), "b": jnp.ones(3)}
    g = {"w": jnp.full((4, 5), 0.5), "b": jnp.asarray([1.0, -2.0, 3.0])}
    fresh = scale_by_factored_rms(min_dim_size_to_factor=2)
    expected, expected_state = jax.jit(fresh.update)(g, fresh.init(params))
    offset = scale_by_factored_rms(step_offset=10, min_dim_size_to_factor=2)
    theirs = optax.scale_by_factored_rms(step_offset=10, min_dim_size_to_factor=2)
    update_offset, update_theirs = jax.jit(offset.update), jax.jit(theirs.update)
    for count in (10, 3):  # at the offset t = 1; below it adamjax clamps t to 1, optax gives NaN
        state = offset.init(params)._replace(count=jnp.asarray(count, jnp.int32))
        # Statistics from before the offset are forgotten (beta_1 = 0).
        state = state._replace(
            v_row={**state.v_row, "w": state.v_row["w"] + 7.0},
            v={**state.v, "b": state.v["b"] + 7.0},
        )
        updates, state = update_offset(g, state)
        assert max_rel_err(updates, expected) == 0.0
        assert max_rel_err(state, expected_state._replace(count=count + 1)) == 0.0
        optax_state = theirs.init(params)._replace(count=jnp.asarray(count, jnp.int32))
        optax_updates, _ = update_theirs(g, optax_state, params)
        assert np.all(np.isfinite(optax_updates["b"])) == (count == 10)


def test_relative_step_schedule_values():
    rho = relative_step_schedule(1e-2)
    counts = np.array([0, 1, 9999, 10000, 39999])
    expected = np.minimum(1e-2, 1 / np.sqrt(counts + 1.0))
    np.testing.assert_allclose([float(rho(jnp.int32(k))) for k in counts], expected, rtol=1e-7)
    assert float(relative_step_schedule(0.5)(jnp.int32(3))) == 0.5


def test_clip_factor_is_recorded_per_leaf():
    tx = clip_by_block_rms(2.0)
    u = {"big": jnp.full((2, 3), 8.0), "small": jnp.asarray([0.5, -1.0])}
    state = tx.init(u)
    assert state.clip_factor == {"big": 1.0, "small": 1.0}
    clipped, state = jax.jit(tx.update)(u, state)
    np.testing.assert_allclose(state.clip_factor["big"], 4.0)  # RMS 8 over threshold 2
    np.testing.assert_allclose(clipped["big"], np.full((2, 3), 2.0))
    assert float(state.clip_factor["small"]) == 1.0
    np.testing.assert_array_equal(clipped["small"], u["small"])
    reference, _ = optax.clip_by_block_rms(2.0).update(u, optax.EmptyState())
    assert max_rel_err(clipped, reference) == 0.0
    assert int(state.clip_count) == 1


# 0-size leaves: unfactored (0, 8) and (0,), and (5, 0, 4), factored along its two largest axes.
EMPTY_SHAPES = {"e": (0, 8), "z": (0,), "f": (5, 0, 4)}


@pytest.mark.parametrize("momentum", [None, 0.9], ids=["no_momentum", "momentum"])
@pytest.mark.parametrize("factored", [True, False], ids=["factored", "unfactored"])
def test_zero_size_leaves_change_nothing_else(factored, momentum):
    def make():
        # A low threshold, so that the other leaves are clipped and the clip factor matters.
        return with_diagnostics(
            adafactor(1e-2, 2, momentum=momentum, factored=factored, clipping_threshold=0.5)
        )

    params, grad_fn = noisy_problem(seed=11, shapes=SHAPES, dtype=np.float32)
    empty = {k: np.zeros(shape, np.float32) for k, shape in EMPTY_SHAPES.items()}
    tx, tx_empty = make(), make()
    state, state_empty = tx.init(params), tx_empty.init({**params, **empty})
    for _ in range(6):
        grads = grad_fn(params)
        updates, state = jax.jit(tx.update)(grads, state, params)
        both, state_empty = jax.jit(tx_empty.update)(
            {**grads, **empty}, state_empty, {**params, **empty}
        )
        for k in SHAPES:
            np.testing.assert_array_equal(both[k], updates[k], err_msg=k)
        assert all(both[k].shape == shape for k, shape in EMPTY_SHAPES.items())
        params = optax.apply_updates(params, updates)
    clip = find(state_empty, ClipByBlockRmsState)
    assert all(clip.clip_factor[k] == 1.0 for k in EMPTY_SHAPES)
    assert max(float(clip.clip_factor[k]) for k in SHAPES) > 1.0  # the others were clipped
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state_empty))
    metrics, expected = diagnostics(state_empty), diagnostics(state)
    for key, value in expected.items():
        np.testing.assert_array_equal(metrics[key], value, err_msg=key)


# (factory, kwargs, exception, message prefix). Each row is one user mistake.
BAD_INPUT = [
    (adafactor, dict(learning_rate=-1e-3), ValueError,
     "adafactor: learning_rate must be a finite number in [0, inf), got -0.001"),
    (adafactor, dict(min_dim_size_to_factor=0), ValueError,
     "adafactor: min_dim_size_to_factor must be an integer >= 1, got 0"),
    (adafactor, dict(min_dim_size_to_factor=128.0), TypeError,
     "adafactor: min_dim_size_to_factor must be an integer >= 1, got 128.0 of type float"),
    (adafactor, dict(min_dim_size_to_factor=True), TypeError,
     "adafactor: min_dim_size_to_factor must be an integer >= 1, got True of type bool"),
    (adafactor, dict(min_dim_size_to_factor=jnp.asarray(128)), TypeError,
     "adafactor: min_dim_size_to_factor must be an integer >= 1, got Array(128"),
    (adafactor, dict(decay_rate=0.0), ValueError,
     "adafactor: decay_rate must be in (0, 1], got 0.0"),
    (adafactor, dict(decay_rate=1.5), ValueError,
     "adafactor: decay_rate must be in (0, 1], got 1.5"),
    (adafactor, dict(decay_rate=float("nan")), ValueError,
     "adafactor: decay_rate must be in (0, 1], got nan"),
    (adafactor, dict(decay_offset=-1), ValueError,
     "adafactor: decay_offset must be an integer >= 0, got -1"),
    (adafactor, dict(decay_offset=2.5), TypeError,
     "adafactor: decay_offset must be an integer >= 0, got 2.5 of type float"),
    (adafactor, dict(clipping_threshold=0.0), ValueError,
     "adafactor: clipping_threshold must be a finite number in (0, inf), got 0.0"),
    (adafactor, dict(clipping_threshold=float("inf")), ValueError,
     "adafactor: clipping_threshold must be a finite number in (0, inf), got inf"),
    (adafactor, dict(momentum=1.0), ValueError,
     "adafactor: momentum must be in [0, 1), got 1.0"),
    (adafactor, dict(momentum=0.9, dtype_momentum=jnp.int8), ValueError,
     "adafactor: dtype_momentum must be None or one of jnp.bfloat16, jnp.float16"),
    (adafactor, dict(weight_decay_rate=-1e-4), ValueError,
     "adafactor: weight_decay_rate must be a finite number in [0, inf), got -0.0001"),
    (adafactor, dict(eps=-1e-30), ValueError,
     "adafactor: eps must be a finite number in [0, inf), got -1e-30"),
    (adafactor, dict(eps_scale=float("nan")), ValueError,
     "adafactor: eps_scale must be a finite number in [0, inf), got nan"),
    (adafactor, dict(relative_step_cap=0.0), ValueError,
     "adafactor: relative_step_cap must be a finite number in (0, inf), got 0.0"),
    (adafactor, dict(relative_step="yes"), TypeError,
     "adafactor: relative_step must be None, True or False, got 'yes'"),
    (adafactor, dict(learning_rate=1e-3, relative_step=True), ValueError,
     "adafactor: relative_step=True computes its own step size, so learning_rate must be None"),
    (adafactor, dict(factored=1), TypeError, "adafactor: factored must be True or False, got 1"),
    (adafactor, dict(multiply_by_parameter_scale="no"), TypeError,
     "adafactor: multiply_by_parameter_scale must be True or False, got 'no'"),
    (adafactor, dict(eps="1e-30"), TypeError, "adafactor: eps must be a number or a 0-d array"),
    (scale_by_factored_rms, dict(decay_rate=-0.8), ValueError,
     "scale_by_factored_rms: decay_rate must be in (0, 1], got -0.8"),
    (scale_by_factored_rms, dict(step_offset=-5), ValueError,
     "scale_by_factored_rms: step_offset must be an integer >= 0, got -5"),
    (scale_by_factored_rms, dict(min_dim_size_to_factor=-1), ValueError,
     "scale_by_factored_rms: min_dim_size_to_factor must be an integer >= 1, got -1"),
    (scale_by_factored_rms, dict(epsilon=-1.0), ValueError,
     "scale_by_factored_rms: epsilon must be a finite number in [0, inf), got -1.0"),
    (scale_by_factored_rms, dict(nu_dtype=jnp.int32), ValueError,
     "scale_by_factored_rms: nu_dtype must be None or one of jnp.bfloat16, jnp.float16"),
    (scale_by_factored_rms, dict(decay_rate_fn=0.8), TypeError,
     "scale_by_factored_rms: decay_rate_fn must be None or callable, got 0.8"),
    (clip_by_block_rms, dict(threshold=-1.0), ValueError,
     "clip_by_block_rms: threshold must be a finite number in (0, inf), got -1.0"),
    (relative_step_schedule, dict(cap=0), ValueError,
     "relative_step_schedule: cap must be a finite number in (0, inf), got 0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("factory", "kwargs", "error", "message"),
    BAD_INPUT,
    ids=[f"{f.__name__}-{'-'.join(k)}-{i}" for i, (f, k, _, _) in enumerate(BAD_INPUT)],
)
def test_bad_hyperparameter_fails_at_construction(factory, kwargs, error, message):
    with pytest.raises(error, match="^" + re.escape(message)):
        factory(**kwargs)


def test_boundary_values_arrays_schedules_and_tracers_are_accepted():
    adafactor(jnp.asarray(1e-2), decay_rate=jnp.asarray(0.8), decay_offset=jnp.asarray(1))
    params = {"w": jnp.ones((3, 4))}

    @jax.jit  # one compilation for all of them; lr and decay_rate are traced here
    def first_updates(lr, decay_rate):
        txs = [
            adafactor(0.0, min_dim_size_to_factor=1, decay_rate=1.0, momentum=0.0, eps=0.0,
                      eps_scale=0.0, weight_decay_rate=0, decay_offset=np.int64(0)),
            adafactor(optax.linear_schedule(1e-2, 0.0, 10), weight_decay_rate=lambda c: 1e-4),
            adafactor(lr, decay_rate=decay_rate, clipping_threshold=None),
            scale_by_factored_rms(decay_rate=7.0, decay_rate_fn=lambda step, c: 0.5),
        ]  # fmt: skip
        g = {"w": jnp.full((3, 4), 0.5)}
        return [tx.update(g, tx.init(params), params)[0]["w"] for tx in txs]

    for updates in first_updates(1e-2, 0.8):
        assert np.all(np.isfinite(updates))


def test_inject_hyperparams_with_static_shape_arguments():
    static = ("min_dim_size_to_factor", "dtype_momentum")
    injected = optax.inject_hyperparams(adafactor, static_args=static)(
        learning_rate=1e-2, min_dim_size_to_factor=2, momentum=0.9
    )
    plain = adafactor(1e-2, min_dim_size_to_factor=2, momentum=0.9)
    params = {"w": np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(3, 4)}
    grads = {"w": np.cos(np.arange(12.0, dtype=np.float32)).reshape(3, 4)}

    @jax.jit
    def first_updates(injected_state, plain_state):
        return (
            injected.update(grads, injected_state, params)[0],
            plain.update(grads, plain_state, params)[0],
        )

    ours, expected = first_updates(injected.init(params), plain.init(params))
    assert max_rel_err(ours, expected) <= 1e-6  # hyperparameters as float32 arrays round apart
    with pytest.raises(TypeError, match="pass static_args=\\('min_dim_size_to_factor',\\)"):
        optax.inject_hyperparams(adafactor)(learning_rate=1e-2).init(params)


def test_integer_params_fail_at_init_naming_the_leaf():
    with pytest.raises(TypeError, match=re.escape("params must be floating-point or complex")) as e:
        adafactor().init({"w": jnp.ones((2, 2)), "step": jnp.zeros((), jnp.int32)})
    assert "['step']" in str(e.value)


def test_tree_or_shape_mismatch_fails_with_a_clear_message():
    tx = adafactor(min_dim_size_to_factor=2)
    state = tx.init({"w": jnp.ones((3, 4))})
    # The alias's own pieces report under the name the user called.
    with pytest.raises(ValueError, match="adafactor: the updates' tree structure"):
        tx.update({"v": jnp.ones((3, 4))}, state, {"v": jnp.ones((3, 4))})
    with pytest.raises(
        ValueError, match=re.escape("the update at ['w'] has shape (3, 5) and needs")
    ):
        tx.update({"w": jnp.ones((3, 5))}, state, {"w": jnp.ones((3, 5))})
    clip = clip_by_block_rms()
    with pytest.raises(ValueError, match="clip_by_block_rms: the updates' tree structure"):
        clip.update({"a": jnp.ones(2), "b": jnp.ones(2)}, clip.init({"a": jnp.ones(2)}))


def test_jit_donation_and_eval_shape():
    params, grad_fn = noisy_problem(seed=11, shapes={"w": (6, 5), "s": ()}, dtype=np.float32)
    tx = adafactor(1e-2, min_dim_size_to_factor=2, momentum=0.9, weight_decay_rate=1e-4)
    grads = [grad_fn(params) for _ in range(4)]

    def step(p, s, g):
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s

    plain, donating = jax.jit(step), jax.jit(step, donate_argnums=(0, 1))
    p_plain, s_plain = params, tx.init(params)
    p_don, s_don = jax.tree.map(jnp.array, params), tx.init(params)
    abstract = jax.eval_shape(tx.init, params)
    assert jax.tree.structure(abstract) == jax.tree.structure(s_don)
    assert all(
        a.shape == b.shape and a.dtype == b.dtype
        for a, b in zip(jax.tree.leaves(abstract), jax.tree.leaves(s_don), strict=True)
    )
    for g in grads:
        p_plain, s_plain = plain(p_plain, s_plain, g)
        p_don, s_don = donating(p_don, s_don, g)
    assert max_rel_err(p_don, p_plain) == 0.0
    assert max_rel_err(s_don, s_plain) == 0.0
    assert max_rel_err(p_don, params) > 1e-3


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_params_compute_in_float32(dtype):
    """eps1 = 1e-30 is 0 in float16: only float32 arithmetic keeps 0/0 out of zero gradients."""
    rng = np.random.default_rng(0)
    params = {"w": jnp.ones((130, 140), dtype), "b": jnp.zeros(5, dtype)}

    def draw(k):
        g = {name: rng.normal(size=p.shape) for name, p in params.items()}
        g["w"][:3] = 0.0  # rows that never see a gradient
        g["b"] *= 1e-12 if k % 2 else 1.0  # tiny in bfloat16, exactly 0 in float16
        return {name: jnp.asarray(x, dtype) for name, x in g.items()}

    # The factored piece rounds once, at the end: equal to the float32 computation, rounded.
    piece = scale_by_factored_rms()

    @jax.jit
    def half_and_full(g, p):
        def to(dtype, tree):
            return jax.tree.map(lambda x: x.astype(dtype), tree)

        half, _ = piece.update(g, piece.init(p))
        full, _ = piece.update(to(jnp.float32, g), piece.init(to(jnp.float32, p)))
        return half, to(dtype, full)

    half, full = half_and_full(draw(0), params)
    assert max_rel_err(half, full) == 0.0

    tx = adafactor(1e-2, momentum=0.9)
    state = jax.jit(tx.init)(params)
    assert state[0].v_row["w"].dtype == dtype and state[0].v_row["w"].shape == (130,)
    assert state[1].clip_factor["w"].dtype == jnp.float32
    step = jitted_step(tx)
    for k in range(10):
        params, state = step(params, state, draw(k))
    for leaf in jax.tree.leaves(params):
        assert leaf.dtype == dtype
        assert np.all(np.isfinite(np.asarray(leaf, np.float32)))
    assert np.all(np.asarray(params["w"][:3], np.float32) == 1.0)  # no gradient, no step
    assert float(jnp.max(jnp.abs(params["w"].astype(jnp.float32) - 1))) > 1e-3


# ---- the optax drop-in protocol --------------------------------------------------------------


def test_positional_parameters_are_optax_order_and_the_rest_keyword_only():
    import inspect

    for ours, theirs in [(adafactor, optax.adafactor),
                         (scale_by_factored_rms, optax.scale_by_factored_rms)]:  # fmt: skip
        names = list(inspect.signature(theirs).parameters)
        params = list(inspect.signature(ours).parameters.values())
        positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        assert [p.name for p in positional] == names, ours.__name__
        rest = params[len(positional) :]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest), ours.__name__


# Positional calls, each against optax's same call: six arguments, and all twelve of optax's
# positional parameters (every piece of the chain on; decay_offset 0, since optax gives NaN while
# the count is below it).
POSITIONAL_ARGS = {
    "six": (1e-2, 128, 0.8, 0, True, 1.0),
    "twelve": (1e-2, 2, 0.5, 0, True, 0.5, 0.9, jnp.float32, 1e-3, 1e-3, True, MASK),
}


@pytest.mark.parametrize("case", sorted(POSITIONAL_ARGS))
def test_positional_call_matches_optax_positional_call(case):
    args = POSITIONAL_ARGS[case]
    params, grad_fn = noisy_problem(seed=5, shapes=OPTAX_SHAPES, dtype=np.float32)
    reference = optax_reference_step(optax.adafactor(*args), params)
    ours, _, theirs = run_forced(adafactor(*args), reference, params, grad_fn, 5)
    assert max_rel_err(ours, theirs) <= 1e-6
    assert max_rel_err(ours, params) > 1e-3


def test_update_accepts_extra_args():
    """Every piece's update takes optax's extra arguments (e.g. ``value=`` for line searches) and
    ignores them."""
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.ones(3)}
    grads = {"w": jnp.cos(jnp.arange(12.0)).reshape(3, 4), "b": jnp.asarray([0.5, -1.0, 2.0])}
    txs = [
        adafactor(1e-2, 2, momentum=0.9, weight_decay_rate=lambda c: 1e-3),
        adafactor(),
        scale_by_factored_rms(min_dim_size_to_factor=2),
        clip_by_block_rms(0.5),
    ]
    for tx in txs:
        assert isinstance(tx, optax.GradientTransformationExtraArgs)
        state = tx.init(params)
        expected, expected_state = tx.update(grads, state, params)
        updates, new_state = tx.update(grads, state, params, value=1.0)
        assert max_rel_err(updates, expected) == 0.0
        assert max_rel_err(new_state, expected_state) == 0.0


def test_tree_get_finds_the_one_count_and_no_learning_rate():
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(3)}
    grads = {"w": jnp.full((3, 4), 0.5), "b": jnp.asarray([1.0, -2.0, 3.0])}
    for tx in [
        adafactor(),
        adafactor(optax.linear_schedule(1e-2, 0.0, 10), 2, momentum=0.9,
                  weight_decay_rate=lambda c: 1e-4, weight_decay_mask={"w": True, "b": False}),
    ]:  # fmt: skip
        state = tx.init(params)
        count = optax.tree_utils.tree_get(state, "count")
        assert count is find(state, ScaleByFactoredRmsState).count
        assert int(count) == 0
        assert optax.tree_utils.tree_get(state, "learning_rate") is None
        _, state = tx.update(grads, state, params)
        assert int(optax.tree_utils.tree_get(state, "count")) == 1


def test_diagnostics_views_are_registered_here():
    from adamjax import _piece

    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(3)}
    grads = {"w": jnp.cos(jnp.arange(12.0)).reshape(3, 4), "b": jnp.asarray([0.5, -1.0, 2.0])}
    tx = adafactor(1e-2, 2, clipping_threshold=0.5)
    _, state = tx.update(grads, tx.init(params), params)
    factored = find(state, ScaleByFactoredRmsState)
    view = _piece.view_of(factored)(factored, grads)
    r, c = factored.v_row["w"], factored.v_col["w"]  # rows <= columns: v_row is per row
    v_hat = r[:, None] * c[None, :] / jnp.mean(r)
    np.testing.assert_allclose(view.statistic["w"], v_hat, rtol=1e-6)
    np.testing.assert_array_equal(view.statistic["b"], factored.v["b"])
    np.testing.assert_allclose(view.scale_of["w"](view.statistic["w"]), v_hat**-0.5, rtol=1e-6)
    assert not view.lr_included and view.m_hat is None
    clip = find(state, ClipByBlockRmsState)
    clip_view = _piece.view_of(clip)(clip, grads)
    largest = max(float(x) for x in jax.tree.leaves(clip.clip_factor))
    assert largest > 1.0
    assert float(clip_view.scalars["adafactor/clip_factor"]) == largest
    assert clip_view.leaf_scalars["adafactor/clip_factor"] is clip.clip_factor
