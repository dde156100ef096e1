"""adamjax works where users put it: optax wrappers, Flax, jit/vmap/eval_shape, odd trees, dtypes.

Every comparison is against an independent computation: the same run with plain optax, a plain
adamjax run on the pieces the wrapper should reduce to, or a NumPy sum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state

import adamjax

from helpers import jitted_step, max_rel_err, quadratic_problem

LR = 1e-2


def grad_stream(params, steps: int, seed: int, scale: float = 1.0) -> list[dict]:
    """Random float32 gradients shaped like ``params``, one tree per step (open loop)."""
    rng = np.random.default_rng(seed)
    return [
        {k: (scale * rng.normal(size=np.shape(p))).astype(np.float32) for k, p in params.items()}
        for _ in range(steps)
    ]


def run(tx, params, grads):
    """Runs ``tx`` (jitted, with params passed) over a fixed gradient stream."""
    step = jitted_step(tx)
    state = tx.init(params)
    for g in grads:
        params, state = step(params, state, g)
    return params, state


def jitted_step_with_updates(tx):
    """Like ``helpers.jitted_step``, also returning the updates the step applied."""

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, updates

    return step


def f32_problem(seed: int = 0) -> dict:
    return quadratic_problem(seed, dtype=np.float32)[0]


# name -> (adamjax transformation, the optax transformation it must equal). AMSGrad uses
# max_of="corrected", the convention optax.amsgrad implements.
ALIASES = {
    "adam": (lambda: adamjax.adam(LR), lambda: optax.adam(LR)),
    "adamw": (
        lambda: adamjax.adamw(LR, weight_decay=0.1),
        lambda: optax.adamw(LR, weight_decay=0.1),
    ),
    "amsgrad": (
        lambda: adamjax.amsgrad(LR, max_of="corrected"),
        lambda: optax.amsgrad(LR),
    ),
}
FACTORIES = {
    "adam": adamjax.adam,
    "adamw": lambda *a, **k: adamjax.adamw(*a, weight_decay=0.1, **k),
    "amsgrad": adamjax.amsgrad,
}


# 1. optax.chain with gradient clipping --------------------------------------------------------


def test_chain_with_clip_by_global_norm_equals_optax_adamw():
    params = f32_problem()
    # Norms vary from step to step, so clipping to 1 changes Adam's trajectory (Adam is only
    # invariant to a constant rescaling of all gradients).
    scales = np.random.default_rng(1).uniform(2.0, 20.0, size=50)
    grads = [
        jax.tree.map(lambda g, s=s: s * g, g)
        for g, s in zip(grad_stream(params, 50, 0), scales, strict=True)
    ]
    assert min(float(optax.tree.norm(g)) for g in grads) > 1.0

    clip = optax.clip_by_global_norm(1.0)
    ours, _ = run(optax.chain(clip, adamjax.adamw(LR, weight_decay=0.1)), params, grads)
    theirs, _ = run(optax.chain(clip, optax.adamw(LR, weight_decay=0.1)), params, grads)
    unclipped, _ = run(adamjax.adamw(LR, weight_decay=0.1), params, grads)

    assert max_rel_err(ours, theirs) <= 1e-6
    assert max_rel_err(ours, unclipped) > 1e-3  # clipping was active
    assert max_rel_err(ours, params) > 1e-2


# 2. optax.inject_hyperparams ------------------------------------------------------------------


def f32(**hyperparams) -> dict:
    """Adam's defaults overridden by ``hyperparams``, as float32 arrays.

    ``inject_hyperparams`` stores every number as a float32 array, so ``1 - b2`` is computed from
    float32(0.999); with a Python float it is exact 0.001, a 1.3e-5 relative difference (optax's
    own aliases behave the same). "The same values" means the float32 ones.
    """
    values = dict(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0) | hyperparams
    return {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}


def test_inject_hyperparams_adam_equals_plain_adam():
    params = f32_problem()
    grads = grad_stream(params, 30, 2)
    ours, state = run(
        optax.inject_hyperparams(adamjax.adam)(learning_rate=0.05, b1=0.8), params, grads
    )
    plain, plain_state = run(adamjax.adam(**f32(learning_rate=0.05, b1=0.8)), params, grads)
    python_floats, _ = run(adamjax.adam(0.05, b1=0.8), params, grads)
    default_b1, _ = run(adamjax.adam(**f32(learning_rate=0.05)), params, grads)
    assert max_rel_err(ours, plain) <= 1e-6
    assert max_rel_err(state.inner_state[0].mu, plain_state[0].mu) <= 1e-6
    assert max_rel_err(ours, python_floats) <= 1e-4  # only float32 rounding of b2 differs
    assert max_rel_err(ours, default_b1) > 1e-3  # b1 was really injected


def switched_reference(first, second, params, grads, switch_at):
    """Runs ``first`` for ``switch_at`` steps, then both ``second`` (the expected result of a
    mid-run hyperparameter change) and ``first`` (the unchanged control) on the same state."""
    ref, ref_state = run(first, params, grads[:switch_at])
    unchanged, unchanged_state = ref, ref_state
    step1, step2 = jitted_step(first), jitted_step(second)
    for g in grads[switch_at:]:
        ref, ref_state = step2(ref, ref_state, g)
        unchanged, unchanged_state = step1(unchanged, unchanged_state, g)
    return ref, ref_state, unchanged


def test_inject_hyperparams_changed_in_state_take_effect_without_retracing():
    params = f32_problem()
    grads = grad_stream(params, 20, 3)
    tx = optax.inject_hyperparams(adamjax.adam)(learning_rate=0.05, b1=0.8)
    traces = 0

    @jax.jit
    def step(params, state, grads):
        nonlocal traces
        traces += 1  # runs only while tracing
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    ours = params
    for g in grads[:10]:
        ours, state = step(ours, state, g)
    hp = state.hyperparams
    hp["learning_rate"] = jnp.asarray(0.01, hp["learning_rate"].dtype)
    hp["b1"] = jnp.asarray(0.5, hp["b1"].dtype)
    for g in grads[10:]:
        ours, state = step(ours, state, g)
    assert traces == 1

    # Reference: plain adam with the old values, then with the new values on the same state.
    ref, ref_state, unchanged = switched_reference(
        adamjax.adam(**f32(learning_rate=0.05, b1=0.8)),
        adamjax.adam(**f32(learning_rate=0.01, b1=0.5)),
        params,
        grads,
        10,
    )

    assert max_rel_err(ours, ref) <= 1e-6
    assert max_rel_err(state.inner_state[0].mu, ref_state[0].mu) <= 1e-6
    assert max_rel_err(ours, unchanged) > 1e-4


def test_inject_hyperparams_adamw_weight_decay_changed_in_state():
    params = f32_problem()
    grads = grad_stream(params, 20, 4)
    tx = optax.inject_hyperparams(adamjax.adamw)(learning_rate=0.05, weight_decay=0.1)
    step = jitted_step(tx)
    state = tx.init(params)
    ours = params
    for i, g in enumerate(grads):
        if i == 10:
            state.hyperparams["weight_decay"] = jnp.asarray(2.0, jnp.float32)
        ours, state = step(ours, state, g)

    ref, _, unchanged = switched_reference(
        adamjax.adamw(**f32(learning_rate=0.05, weight_decay=0.1)),
        adamjax.adamw(**f32(learning_rate=0.05, weight_decay=2.0)),
        params,
        grads,
        10,
    )
    assert max_rel_err(ours, ref) <= 1e-6
    assert max_rel_err(ours, unchanged) > 1e-4


def test_inject_hyperparams_adamw_with_schedule_learning_rate():
    params = f32_problem()
    grads = grad_stream(params, 30, 5)
    schedule = optax.linear_schedule(0.1, 0.001, 30)
    ours, state = run(
        optax.inject_hyperparams(adamjax.adamw)(learning_rate=schedule, weight_decay=0.1),
        params,
        grads,
    )
    plain, _ = run(adamjax.adamw(schedule, **f32(weight_decay=0.1)), params, grads)
    theirs, _ = run(optax.adamw(schedule, **f32(weight_decay=0.1)), params, grads)
    constant, _ = run(adamjax.adamw(0.1, weight_decay=0.1), params, grads)
    assert max_rel_err(ours, plain) <= 1e-6
    assert max_rel_err(ours, theirs) <= 1e-6
    assert max_rel_err(ours, constant) > 1e-3
    # The state records the rate used in the last step (count 29).
    np.testing.assert_allclose(state.hyperparams["learning_rate"], schedule(29), rtol=1e-5)


# 3. Masks -------------------------------------------------------------------------------------

MASKS = {
    "pytree": {"w": True, "b": False, "s": True},
    "callable": lambda tree: {k: k != "b" for k in tree},
}


@pytest.mark.parametrize("mask", sorted(MASKS))
def test_optax_masked_adam_passes_masked_out_leaves_through(mask):
    params = f32_problem()
    grads = grad_stream(params, 20, 6)
    ours, _ = run(optax.masked(adamjax.adam(LR), MASKS[mask]), params, grads)

    inside = ["w", "s"]
    plain, _ = run(
        adamjax.adam(LR), {k: params[k] for k in inside}, [{k: g[k] for k in inside} for g in grads]
    )
    for k in inside:
        assert max_rel_err(ours[k], plain[k]) <= 1e-6
    # optax.masked leaves the masked-out updates as they were: the raw gradients are added.
    expected_b = params["b"].copy()
    for g in grads:
        expected_b = expected_b + g["b"]
    assert max_rel_err(ours["b"], expected_b) <= 1e-6


@pytest.mark.parametrize("mask", sorted(MASKS))
def test_adamw_mask_exempts_masked_out_leaves_from_decay(mask):
    params = f32_problem()
    grads = grad_stream(params, 30, 7)
    ours, _ = run(adamjax.adamw(LR, weight_decay=0.5, mask=MASKS[mask]), params, grads)
    theirs, _ = run(optax.adamw(LR, weight_decay=0.5, mask=MASKS[mask]), params, grads)
    no_decay, _ = run(adamjax.adam(LR), params, grads)

    assert max_rel_err(ours, theirs) <= 1e-6
    assert max_rel_err(ours["b"], no_decay["b"]) <= 1e-6  # masked out: plain Adam
    assert max_rel_err(ours["w"], no_decay["w"]) > 1e-4  # masked in: decayed


# 4. Gradient accumulation ---------------------------------------------------------------------


def test_multisteps_equals_adam_on_mean_of_micro_batches():
    k, outer = 4, 8
    params = f32_problem()
    micro = grad_stream(params, k * outer, 8)
    tx = optax.MultiSteps(adamjax.adam(LR), every_k_schedule=k)
    step = jitted_step(tx)
    state = tx.init(params)
    ours = params
    for i, g in enumerate(micro):
        before = ours
        ours, state = step(ours, state, g)
        if i % k != k - 1:
            assert max_rel_err(ours, before) == 0.0  # no update between accumulation ends

    means = [
        jax.tree.map(lambda *gs: np.mean(np.stack(gs), axis=0), *micro[j * k : (j + 1) * k])
        for j in range(outer)
    ]
    expected, _ = run(adamjax.adam(LR), params, means)
    assert max_rel_err(ours, expected) <= 1e-6
    assert max_rel_err(ours, params) > 1e-3


# 5. Skipping non-finite steps -----------------------------------------------------------------


def test_apply_if_finite_skips_bad_step_and_keeps_inner_state():
    params = f32_problem()
    grads = grad_stream(params, 12, 9)
    bad = {5: np.nan, 8: np.inf}
    stream = []
    for i, g in enumerate(grads):
        if i in bad:
            g = dict(g, w=g["w"].copy())
            g["w"][1, 2] = bad[i]
        stream.append(g)

    tx = optax.apply_if_finite(adamjax.adamw(LR, weight_decay=0.1), max_consecutive_errors=3)
    step = jitted_step(tx)
    state = tx.init(params)
    ours = params
    for i, g in enumerate(stream):
        new, new_state = step(ours, state, g)
        if i in bad:
            assert max_rel_err(new, ours) == 0.0
            inner, new_inner = state.inner_state[0], new_state.inner_state[0]
            assert int(new_inner.count) == int(inner.count) == i - (i > 5)
            assert max_rel_err(new_inner.mu, inner.mu) == 0.0
            assert max_rel_err(new_inner.nu, inner.nu) == 0.0
        ours, state = new, new_state
    assert int(state.total_notfinite) == 2

    expected, _ = run(
        adamjax.adamw(LR, weight_decay=0.1),
        params,
        [g for i, g in enumerate(grads) if i not in bad],
    )
    assert max_rel_err(ours, expected) <= 1e-6
    assert np.all(np.isfinite(ours["w"]))


# 6. Flax nnx ----------------------------------------------------------------------------------


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(2, 16, rngs=rngs)
        self.out = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def regression_data():
    rng = np.random.default_rng(10)
    x = rng.uniform(-1, 1, size=(64, 2)).astype(np.float32)
    y = (np.sin(2 * x[:, :1]) + x[:, 1:] ** 2).astype(np.float32)
    return x, y


def train_nnx(tx, steps: int):
    model = MLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x, y = regression_data()

    def loss_fn(model):
        return jnp.mean((model(x) - y) ** 2)

    @nnx.jit
    def train_step(model, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(train_step(model, optimizer)) for _ in range(steps)]
    return jax.tree.leaves(nnx.state(model, nnx.Param)), losses


def test_nnx_optimizer_trains_and_equals_optax_adamw():
    ours, losses = train_nnx(adamjax.adamw(LR, weight_decay=0.01), 30)
    theirs, _ = train_nnx(optax.adamw(LR, weight_decay=0.01), 30)
    assert losses[-1] < 0.5 * losses[0]
    assert max_rel_err(ours, theirs) <= 1e-6


# Every family member, and 8-bit moments, whose init builds each moment from its nnx Variable.
NNX_SPLIT = {
    "adam": lambda: adamjax.adam(LR),
    "adamw": lambda: adamjax.adamw(LR, weight_decay=0.1),
    "amsgrad": lambda: adamjax.amsgrad(LR),
    "nadam": lambda: adamjax.nadam(LR),
    "adamax": lambda: adamjax.adamax(LR),
    "radam": lambda: adamjax.radam(LR),
    "adabound": lambda: adamjax.adabound(LR),
    "adafactor": lambda: adamjax.adafactor(LR, min_dim_size_to_factor=2),
    "swats_leaf": lambda: adamjax.swats(LR, granularity="leaf"),
    "adam_q8": lambda: adamjax.adam(LR, mu_dtype=adamjax.q8(min_size=16), nu_dtype=adamjax.q8()),
}


@pytest.mark.parametrize("name", sorted(NNX_SPLIT))
def test_nnx_optimizer_with_multi_transform_equals_the_plain_optimizer(name):
    """optax.multi_transform (optax.masked inside) hands each inner optimizer Variables whose
    value is a MaskedNode for the params it does not own; init must keep them as placeholders.
    Two copies of an optimizer that acts leaf by leaf, one for kernels and one for biases, are
    the optimizer itself."""
    make = NNX_SPLIT[name]

    def labels(params):
        return jax.tree.map(lambda p: "kernel" if p.ndim > 1 else "bias", params)

    split = optax.multi_transform({"kernel": make(), "bias": make()}, labels)
    ours, losses = train_nnx(split, 10)
    plain, _ = train_nnx(make(), 10)
    assert losses[-1] < losses[0]
    assert max_rel_err(ours, plain) <= 1e-6


# 7. Flax TrainState ---------------------------------------------------------------------------


def test_flax_train_state_equals_optax_adam():
    x, y = regression_data()
    rng = np.random.default_rng(11)
    params = {
        "w": rng.normal(size=(2, 1)).astype(np.float32),
        "b": np.zeros(1, np.float32),
    }

    def apply_fn(p, x):
        return x @ p["w"] + p["b"]

    @jax.jit
    def train_step(state):
        grads = jax.grad(lambda p: jnp.mean((state.apply_fn(p, x) - y) ** 2))(state.params)
        return state.apply_gradients(grads=grads)

    def train(tx):
        state = train_state.TrainState.create(apply_fn=apply_fn, params=params, tx=tx)
        for _ in range(50):
            state = train_step(state)
        return state

    ours, theirs = train(adamjax.adam(LR)), train(optax.adam(LR))
    assert int(ours.step) == 50
    assert max_rel_err(ours.params, theirs.params) <= 1e-6
    assert max_rel_err(ours.params, params) > 1e-2


# 8. jit, vmap, abstract init ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_jitted_init_and_update_equal_eager(name):
    tx = FACTORIES[name](LR)
    params = f32_problem()
    grads = grad_stream(params, 1, 12)[0]
    eager_state = tx.init(params)
    jit_state = jax.jit(tx.init)(params)
    assert jax.tree.structure(jit_state) == jax.tree.structure(eager_state)
    eager = tx.update(grads, eager_state, params)
    jitted = jax.jit(tx.update)(grads, jit_state, params)
    assert max_rel_err(jitted, eager) <= 1e-6
    assert max_rel_err(eager[0], grads) > 1e-2  # the update is not the identity


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_jitted_step_with_donated_state_equals_undonated(name):
    """``jax.jit(step, donate_argnums=...)`` on a fresh state, as large-model training loops do.

    XLA refuses to donate one buffer twice, so no two state leaves may share an array.
    """
    tx = FACTORIES[name](LR)
    params = f32_problem()
    grads = grad_stream(params, 3, 18)
    expected, expected_state = run(tx, params, grads)

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    donating = jax.jit(step, donate_argnums=(0, 1))
    ours, state = jax.tree.map(jnp.array, params), tx.init(params)
    for g in grads:
        ours, state = donating(ours, state, g)
    assert max_rel_err(ours, expected) <= 1e-6
    assert max_rel_err(state[0].nu, expected_state[0].nu) <= 1e-6


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_vmap_over_independent_problems_equals_each_alone(name):
    tx = FACTORIES[name](LR)
    batch = [f32_problem(seed) for seed in range(3)]
    streams = [grad_stream(p, 8, 20 + seed) for seed, p in enumerate(batch)]
    stacked_params = jax.tree.map(lambda *xs: np.stack(xs), *batch)
    stacked_grads = [
        jax.tree.map(lambda *xs: np.stack(xs), *gs) for gs in zip(*streams, strict=True)
    ]

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    vstep = jax.jit(jax.vmap(step))
    params, state = stacked_params, jax.vmap(tx.init)(stacked_params)
    assert state[0].count.shape == (3,)
    for g in stacked_grads:
        params, state = vstep(params, state, g)

    single = jitted_step(tx)
    for i, (p0, gs) in enumerate(zip(batch, streams, strict=True)):
        alone, alone_state = p0, tx.init(p0)
        for g in gs:
            alone, alone_state = single(alone, alone_state, g)
        member = jax.tree.map(lambda x, i=i: x[i], (params, state[0].mu))
        assert max_rel_err(member, (alone, alone_state[0].mu)) <= 1e-6
        assert int(state[0].count[i]) == int(alone_state[0].count) == len(gs)
    assert max_rel_err(params, stacked_params) > 1e-2


def shapes_and_dtypes(tree):
    return jax.tree.map(lambda x: (tuple(x.shape), jnp.dtype(x.dtype)), tree)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_init_on_abstract_values_gives_state_shapes_and_dtypes(name):
    tx = FACTORIES[name](LR, mu_dtype=jnp.bfloat16)
    params = {"w": jnp.ones((4, 3), jnp.float32), "h": jnp.ones((5,), jnp.float16)}
    abstract = {k: jax.ShapeDtypeStruct(p.shape, p.dtype) for k, p in params.items()}
    expected = shapes_and_dtypes(tx.init(params))

    via_eval_shape = jax.eval_shape(tx.init, params)
    via_structs = tx.init(abstract)
    assert jax.tree.structure(via_eval_shape) == jax.tree.structure(tx.init(params))
    assert shapes_and_dtypes(via_eval_shape) == expected
    assert shapes_and_dtypes(via_structs) == expected

    moments = via_eval_shape[0]
    assert moments.count.shape == () and moments.count.dtype == jnp.int32
    assert moments.mu["w"].shape == (4, 3) and moments.mu["w"].dtype == jnp.bfloat16
    assert moments.nu["w"].dtype == jnp.float32 and moments.nu["h"].dtype == jnp.float16
    # Every step count is int32; the recorded per-step scalars (bias corrections, eps, the
    # learning rate) are float32, the scalar dtype of these params.
    scalars = jax.tree_util.tree_flatten_with_path(via_eval_shape)[0]
    scalars = [(jax.tree_util.keystr(path), x) for path, x in scalars if x.shape == ()]
    counts = [x for path, x in scalars if path.endswith("count")]
    # The moment piece's count and the learning rate's schedule_count; only the first is named
    # "count", so optax.tree_utils.tree_get finds one.
    assert len(counts) >= 2 and all(c.dtype == jnp.int32 for c in counts)
    assert len([path for path, _ in scalars if path.endswith(".count")]) == 1
    assert all(x.dtype == jnp.float32 for path, x in scalars if not path.endswith("count"))


# 9. Edge cases --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_none_leaves_survive_init_and_update(name):
    make_ours, make_theirs = ALIASES[name]
    params = {"a": jnp.linspace(-1.0, 1.0, 4), "b": None}
    grads = [{"a": g["a"], "b": None} for g in grad_stream({"a": params["a"]}, 10, 13)]
    ours, state = run(make_ours(), params, grads)
    theirs, _ = run(make_theirs(), params, grads)
    assert ours["b"] is None and state[0].mu["b"] is None
    updates, _ = make_ours().update(grads[0], make_ours().init(params), params)
    assert updates["b"] is None
    assert max_rel_err(ours["a"], theirs["a"]) <= 1e-6


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_empty_tree_inits_and_updates(name):
    tx = ALIASES[name][0]()
    state = tx.init({})
    updates, state = tx.update({}, state, {})
    updates, state = jax.jit(tx.update)({}, state, {})
    assert updates == {}
    assert int(state[0].count) == 2


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_scalar_and_zero_size_leaves(name):
    make_ours, make_theirs = ALIASES[name]
    params = {"s": jnp.float32(0.7), "z": jnp.zeros((0, 3), jnp.float32)}
    grads = grad_stream(params, 10, 14)
    ours, state = run(make_ours(), params, grads)
    theirs, _ = run(make_theirs(), params, grads)
    assert ours["s"].shape == () and ours["z"].shape == (0, 3)
    assert state[0].mu["z"].shape == (0, 3)
    assert max_rel_err(ours, theirs) <= 1e-6
    assert abs(float(ours["s"]) - 0.7) > 1e-2


def test_adam_on_complex_params_equals_optax_and_stores_real_nu():
    rng = np.random.default_rng(15)

    def cplx(*shape):
        return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)

    params = {"w": cplx(3, 2), "b": cplx(2)}
    grads = [{"w": cplx(3, 2), "b": cplx(2)} for _ in range(30)]
    step = jitted_step_with_updates(adamjax.adam(LR))
    ours, state = params, adamjax.adam(LR).init(params)
    for g in grads:
        ours, state, updates = step(ours, state, g)
    theirs, their_state = run(optax.adam(LR), params, grads)

    assert all(u.dtype == jnp.complex64 for u in jax.tree.leaves(updates))
    assert all(p.dtype == jnp.complex64 for p in jax.tree.leaves(ours))
    assert state[0].mu["w"].dtype == jnp.complex64
    assert state[0].nu["w"].dtype == jnp.float32 and state[0].nu["b"].dtype == jnp.float32
    assert max_rel_err(ours, theirs) <= 1e-6
    assert max_rel_err(state[0].nu, their_state[0].nu) <= 1e-6  # |g|^2, not g^2
    assert max_rel_err(ours, params) > 1e-2


# 10. Half precision ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_half_precision_params_keep_their_dtype(name, dtype):
    tx = FACTORIES[name](0.1)
    params = {k: jnp.asarray(p, dtype) for k, p in f32_problem().items()}
    grads = [{k: jnp.asarray(g, dtype) for k, g in gs.items()} for gs in grad_stream(params, 5, 16)]
    step = jitted_step_with_updates(tx)
    state = tx.init(params)
    start = params
    for g in grads:
        params, state, updates = step(params, state, g)
        assert all(u.dtype == dtype for u in jax.tree.leaves(updates))
        assert all(p.dtype == dtype for p in jax.tree.leaves(params))
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params))
    assert max_rel_err(params, start) > 1e-2


@pytest.mark.parametrize("param_dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_requested_moment_dtypes_are_exact(name, param_dtype):
    tx = FACTORIES[name](LR, mu_dtype=jnp.bfloat16, nu_dtype=jnp.float32)
    params = {k: jnp.asarray(p, param_dtype) for k, p in f32_problem().items()}
    grads = {k: jnp.asarray(g, param_dtype) for k, g in grad_stream(params, 1, 17)[0].items()}
    for state in (tx.init(params), tx.update(grads, tx.init(params), params)[1]):
        moments = state[0]
        assert all(m.dtype == jnp.bfloat16 for m in jax.tree.leaves(moments.mu))
        assert all(n.dtype == jnp.float32 for n in jax.tree.leaves(moments.nu))
        if name == "amsgrad":
            assert all(n.dtype == jnp.float32 for n in jax.tree.leaves(moments.nu_max))
        assert moments.count.dtype == jnp.int32


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_float16_zero_gradients_give_finite_updates(name):
    tx = FACTORIES[name](LR)
    params = {"w": jnp.linspace(-2.0, 2.0, 6, dtype=jnp.float16)}
    zero = {"w": jnp.zeros(6, jnp.float16)}
    step = jitted_step_with_updates(tx)
    state = tx.init(params)
    for _ in range(20):
        params, state, updates = step(params, state, zero)
        assert bool(jnp.all(jnp.isfinite(updates["w"])))
    assert bool(jnp.all(jnp.isfinite(params["w"])))
    assert bool(jnp.all(jnp.isfinite(state[0].nu["w"])))


# 11. Error messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_structure_mismatch_raises_with_both_structures(name):
    tx = FACTORIES[name](LR)
    params = f32_problem()
    state = tx.init(params)
    grads = {"w": params["w"], "b": params["b"]}  # "s" missing
    with pytest.raises(ValueError) as info:
        tx.update(grads, state, params)
    message = str(info.value)
    assert message.startswith(f"{name}: ")  # the function the user called
    assert "updates:" in message and "expected:" in message
    assert str(jax.tree.structure(grads)) in message
    assert str(jax.tree.structure(params)) in message


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_leaf_shape_mismatch_raises_naming_the_leaf(name):
    tx = FACTORIES[name](LR)
    params = f32_problem()
    grads = dict(params, w=np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"\['w'\].*\(3, 5\).*\(5, 3\)"):
        jax.jit(tx.update)(grads, tx.init(params), params)


@pytest.mark.parametrize(
    "make",
    [
        lambda: adamjax.adamw(LR),
        lambda: adamjax.adamw(LR, mask={"w": True, "b": False, "s": True}),
        lambda: adamjax.amsgrad(LR, weight_decay=0.1),
    ],
    ids=["adamw", "adamw_masked", "amsgrad_decayed"],
)
def test_decay_without_params_raises_mentioning_params(make):
    tx = make()
    params = f32_problem()
    with pytest.raises(ValueError, match="needs params"):
        tx.update(params, tx.init(params))
