"""Property tests: every alias on random pytrees, dtypes, gradients and valid hyperparameters.

Hypothesis draws a pytree (nested dicts, lists and tuples, depth <= 3) of float32, bfloat16 and
float16 leaves, including scalars and 0-size leaves; a few steps of gradients (exact zeros among
them); and hyperparameters anywhere in the documented ranges (the ``_validation`` checks),
including every option and moment format an alias takes. The properties:

1. updates, new params and the state keep the params' tree structure, shapes and dtypes, and
   ``init`` is deterministic (it depends on the params' shapes and dtypes only);
2. updates and new params are finite (for eps > 0, wherever the exact values fit the dtype);
3. a jitted step equals the eager step to within a few ulps (see JIT_ULPS for why not bitwise),
   and two jitted runs are bitwise equal;
4. ``optax.inject_hyperparams(alias)(...)`` equals, bitwise, the alias built directly with the
   same values.

A float64 variant (under ``jax.enable_x64``) checks 1 and 2 for trees with float64 leaves.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import adamjax

from helpers import assert_bitwise_equal

# An exhaustive layer: run with `pytest -m slow` (.ci/run does).
pytestmark = pytest.mark.slow

OPTIMIZERS = (
    "adam",
    "adamw",
    "amsgrad",
    "nadam",
    "adamax",
    "radam",
    "adabound",
    "adafactor",
    "swats",
)
STEPS = 3
# RAdam's rho_t (the length of the approximated SMA) stays below t, so its rectified branch
# (rho_t > threshold >= 4) needs more steps than the others: 8 reach it for b2 >= ~0.9.
STEPS_OF = {"radam": 8}

# derandomize: CI runs the same examples every time. Compilation dominates the run time, so the
# example counts are small: the eager properties run 15-25 examples per alias, the jitted one
# (a compilation per example) 8; all of them together take about two minutes on two CPU cores.
PROPERTY_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def examples(n: int) -> settings:
    return settings(PROPERTY_SETTINGS, max_examples=n)


# ---- pytrees ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Leaf:
    """A leaf's shape and dtype (a dataclass, so that tree functions see it as one leaf)."""

    shape: tuple[int, ...]
    dtype: Any


# Scalars, 0-size leaves and small matrices; rank >= 2 leaves with two axes >= 2 can be factored
# by Adafactor (with a small min_dim_size_to_factor). A fixed menu keeps the eager op cache warm.
SHAPES = st.sampled_from([(), (0,), (3, 0), (1,), (4,), (2, 3), (3, 1), (2, 2, 2)])
HALF_AND_SINGLE = st.sampled_from([jnp.float32, jnp.bfloat16, jnp.float16])
KEYS = st.sampled_from(["a", "b", "c", "w"])


def tree_specs(dtypes: st.SearchStrategy, depth: int = 3) -> st.SearchStrategy:
    """Nested dicts, lists and tuples of :class:`Leaf`, at most ``depth`` containers deep (inner
    containers may be empty)."""
    leaf = st.builds(Leaf, SHAPES, dtypes)
    if depth == 0:
        return leaf
    sub = tree_specs(dtypes, depth - 1)
    return st.one_of(
        leaf,
        st.dictionaries(KEYS, sub, min_size=0, max_size=3),
        st.lists(sub, min_size=0, max_size=3),
        st.lists(sub, min_size=0, max_size=2).map(tuple),
    )


# Finite, moderate magnitudes: normal-ish * 10**uniform(-3, 1), and exact zeros.
ELEMENTS = st.one_of(
    st.just(0.0),
    st.builds(lambda n, e: n * 10.0**e, st.floats(-3.0, 3.0), st.floats(-3.0, 1.0)),
)


@st.composite
def arrays_like(draw: st.DrawFn, spec: Any) -> Any:
    """A tree of arrays with the structure, shapes and dtypes of ``spec``."""

    def one(leaf: Leaf) -> jax.Array:
        values = draw(hnp.arrays(np.float64, leaf.shape, elements=ELEMENTS))
        return jnp.asarray(values, leaf.dtype)

    return jax.tree.map(one, spec)


@st.composite
def problems(
    draw: st.DrawFn,
    steps: int,
    dtypes: st.SearchStrategy = HALF_AND_SINGLE,
    required_dtype: Any = None,
) -> tuple:
    """``(params, [grads per step])``: a random tree of 1 to 6 leaves (at least one of
    ``required_dtype``, if given) and its gradients."""

    def wanted(spec: Any) -> bool:
        leaves = jax.tree.leaves(spec)
        required = required_dtype is None or any(x.dtype == required_dtype for x in leaves)
        return 1 <= len(leaves) <= 6 and required

    spec = draw(tree_specs(dtypes).filter(wanted))
    params = draw(arrays_like(spec))
    grads = [draw(arrays_like(spec)) for _ in range(steps)]
    return params, grads


# ---- hyperparameters -------------------------------------------------------------------------


def log_uniform(lo: float, hi: float) -> st.SearchStrategy:
    return st.floats(lo, hi).map(lambda e: 10.0**e)


# [0, 1): the common values, values close to 1, and anything in between.
# Decay rates: [0, 1) as float32 sees it (validation rejects a value that rounds to 1.0 there).
UNIT = st.one_of(
    st.sampled_from([0.0, 0.5, 0.9, 0.99, 0.999, 0.9999]),
    st.floats(0.0, float(np.nextafter(np.float32(1), np.float32(0)))),
)
LEARNING_RATE = st.one_of(st.just(0.0), log_uniform(-4, 0))
NON_NEGATIVE = st.one_of(st.just(0.0), log_uniform(-12, 0))
POSITIVE = log_uniform(-12, 0)
WEIGHT_DECAY = st.one_of(st.just(0.0), log_uniform(-4, 0))
EPS_MODE = st.sampled_from(["paper", "hat"])
FLOAT_DTYPES = st.sampled_from([None, jnp.float32, jnp.bfloat16, jnp.float16])
MOMENT_FORMATS = st.one_of(
    FLOAT_DTYPES,
    st.builds(
        adamjax.q8,
        block_size=st.integers(1, 4),
        mapping=st.sampled_from(["dynamic", "linear"]),
        min_size=st.sampled_from([0, 4]),
    ),
    st.builds(adamjax.stochastic_bf16, st.integers(0, 2**31 - 1)),
)


def decay_matrices(params: Any) -> Any:
    """A ``mask``: decay only rank >= 2 leaves (commonly: not biases or scales)."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


MASKS = st.sampled_from([None, decay_matrices])


@dataclasses.dataclass(frozen=True)
class Config:
    """An alias and its arguments: ``numeric`` ones (numbers, which inject_hyperparams turns into
    arrays) and ``static`` ones (options, dtypes, formats, masks, None)."""

    name: str
    numeric: dict
    static: dict

    def build(self, numeric: dict | None = None) -> optax.GradientTransformationExtraArgs:
        kwargs = self.numeric if numeric is None else numeric
        return getattr(adamjax, self.name)(**kwargs, **self.static)

    def inject(self) -> optax.GradientTransformationExtraArgs:
        # hyperparam_dtype: by default optax casts the hyperparameters to the params' highest
        # dtype, and in bfloat16 b2 = 0.999 rounds to 1.0 (no longer a valid decay).
        injected = optax.inject_hyperparams(
            getattr(adamjax, self.name),
            static_args=tuple(self.static),
            hyperparam_dtype=jnp.float32,
        )
        return injected(**self.numeric, **self.static)


def _split(name: str, numeric: dict, static: dict) -> Config:
    """Moves ``None`` (an absent option) from ``numeric`` to ``static``."""
    absent = {k: v for k, v in numeric.items() if v is None}
    numeric = {k: v for k, v in numeric.items() if v is not None}
    return Config(name, numeric, static | absent)


@st.composite
def moment_config(draw: st.DrawFn, name: str, eps: st.SearchStrategy) -> Config:
    """adam, adamw, amsgrad, nadam, adamax, radam."""
    numeric = dict(learning_rate=draw(LEARNING_RATE), b1=draw(UNIT), b2=draw(UNIT))
    numeric["eps"] = draw(eps)
    static = dict(mu_dtype=draw(MOMENT_FORMATS), nu_dtype=draw(MOMENT_FORMATS))
    if name != "adamax":
        numeric["eps_root"] = draw(NON_NEGATIVE)
        static["eps_mode"] = draw(EPS_MODE)
    if name in ("adam", "adamw", "amsgrad"):
        static["nesterov"] = draw(st.booleans())
        static["max_of"] = draw(st.sampled_from(["raw", "corrected"]))
        if name != "amsgrad":
            static["amsgrad"] = draw(st.booleans())
    if name in ("adamw", "amsgrad"):
        numeric["weight_decay"] = draw(WEIGHT_DECAY)
        static["mask"] = draw(MASKS)
        scaling = draw(st.sampled_from(["learning_rate", "schedule"]))
        static["weight_decay_scaling"] = scaling
        if scaling == "schedule":
            numeric["schedule_multiplier"] = draw(st.one_of(st.none(), st.floats(0.0, 2.0)))
    if name in ("nadam", "adamax", "radam"):
        numeric["weight_decay"] = draw(WEIGHT_DECAY)
        static["decoupled_weight_decay"] = draw(st.booleans())
        static["mask"] = draw(MASKS)
    if name == "nadam":
        numeric["momentum_decay"] = draw(st.one_of(st.just(0.0), log_uniform(-4, 0)))
    if name == "adamax":
        static["eps_mode"] = draw(st.sampled_from(["max", "denominator"]))
    if name == "radam":
        numeric["threshold"] = draw(st.floats(4.0, 8.0))
    return _split(name, numeric, static)


@st.composite
def adabound_config(draw: st.DrawFn, eps: st.SearchStrategy) -> Config:
    numeric = dict(
        learning_rate=draw(LEARNING_RATE),
        final_lr=draw(st.one_of(st.just(0.0), log_uniform(-4, 0))),
        gamma=draw(st.one_of(st.sampled_from([0.0, 1e-3]), st.floats(0.0, 1.0, exclude_max=True))),
        b1=draw(UNIT),
        b2=draw(UNIT),
        eps=draw(eps),
        eps_root=draw(NON_NEGATIVE),
        weight_decay=draw(WEIGHT_DECAY),
    )
    static = dict(
        amsbound=draw(st.booleans()),
        mask=draw(MASKS),
        mu_dtype=draw(FLOAT_DTYPES),
        nu_dtype=draw(FLOAT_DTYPES),
    )
    return _split("adabound", numeric, static)


@st.composite
def adafactor_config(draw: st.DrawFn, eps: st.SearchStrategy) -> Config:
    learning_rate = draw(st.one_of(st.none(), LEARNING_RATE))
    numeric = dict(
        learning_rate=learning_rate,
        # (0, 1] as float32 sees it: validation rejects a value that rounds to 0 there.
        decay_rate=draw(st.one_of(st.just(1.0), st.floats(float(np.finfo(np.float32).tiny), 1.0))),
        decay_offset=draw(st.integers(0, 3)),
        clipping_threshold=draw(st.one_of(st.none(), log_uniform(-3, 1))),
        momentum=draw(st.one_of(st.none(), UNIT)),
        weight_decay_rate=draw(st.one_of(st.none(), WEIGHT_DECAY)),
        eps=draw(eps.map(lambda e: e**2.5)),  # added to g**2: down to 1e-30
        relative_step_cap=draw(log_uniform(-4, 0)),
        eps_scale=draw(NON_NEGATIVE),
    )
    static = dict(
        min_dim_size_to_factor=draw(st.integers(1, 4)),
        multiply_by_parameter_scale=draw(st.booleans()),
        dtype_momentum=draw(FLOAT_DTYPES),
        factored=draw(st.booleans()),
        weight_decay_mask=draw(MASKS),
        # True computes its own step size, so it needs learning_rate=None.
        relative_step=draw(
            st.sampled_from([None, False, True] if learning_rate is None else [None, False])
        ),
    )
    return _split("adafactor", numeric, static)


@st.composite
def swats_config(draw: st.DrawFn, eps: st.SearchStrategy) -> Config:
    numeric = dict(
        learning_rate=draw(LEARNING_RATE),
        b1=draw(UNIT),
        b2=draw(UNIT),
        eps=draw(eps),
        eps_root=draw(NON_NEGATIVE),
        switch_tol=draw(POSITIVE),
        # Large relative tolerances switch to SGD within the few steps drawn.
        switch_rtol=draw(st.one_of(st.sampled_from([0.0, 1e-6, 1.0, 10.0]), log_uniform(-6, 1))),
    )
    static = dict(
        granularity=draw(st.sampled_from(["global", "leaf"])),
        nesterov=draw(st.booleans()),
        eps_mode=draw(EPS_MODE),
        sgd_schedule=draw(st.sampled_from(["relative", "fixed"])),
        mu_dtype=draw(FLOAT_DTYPES),
        nu_dtype=draw(FLOAT_DTYPES),
    )
    return _split("swats", numeric, static)


def configs(name: str, *, positive_eps: bool = False) -> st.SearchStrategy:
    """Valid arguments of alias ``name``. ``positive_eps``: eps > 0 (else eps >= 0, the documented
    range; with eps = 0 an all-zero gradient history gives 0/0 = NaN, in the papers' equations as
    in torch and optax, so finiteness is only a property for eps > 0)."""
    eps = POSITIVE if positive_eps else NON_NEGATIVE
    if name == "adabound":
        return adabound_config(eps)
    if name == "adafactor":
        return adafactor_config(eps)
    if name == "swats":
        return swats_config(eps)
    return moment_config(name, eps)


# ---- running and comparing -------------------------------------------------------------------


def make_step(tx: optax.GradientTransformation, *, jit: bool) -> Any:
    """``step(params, state, grads) -> (updates, new_params, new_state)``."""

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return updates, optax.apply_updates(params, updates), state

    return jax.jit(step) if jit else step


def trajectory(tx, params, grads, step) -> list[tuple]:
    """``[(updates, new_params, new_state)]`` of one run over ``grads`` (open loop)."""
    state = tx.init(params)
    out = []
    for g in grads:
        updates, params, state = step(params, state, g)
        out.append((updates, params, state))
    return out


def signature(tree: Any) -> tuple:
    """Tree structure, and each leaf's shape and dtype."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, [(jnp.shape(x), jnp.result_type(x)) for x in leaves]


def widened(tree: Any) -> Any:
    """``tree`` with its half-precision leaves in float32 (the same values)."""
    return jax.tree.map(lambda x: x.astype(jnp.promote_types(x.dtype, jnp.float32)), tree)


def assert_finite_trajectory(tx: Any, params: Any, grads: list) -> None:
    """Updates and params stay finite, wherever the exact values fit in their dtype.

    Property 2 for any leaf dtype. In float16 (largest value 65504) the exact step can overflow:
    when b1**2 > b2 and the gradient drops to 0, v decays faster than m**2 and the step tends to
    lr * |m_hat| / eps, e.g. 2.9e5 for lr 1, eps 1e-6, b1 0.5, b2 0 and gradients 0, 1, 0. So the
    same run is repeated with the half-precision leaves widened to float32, and an entry may be
    non-finite only where that run is beyond half the dtype's largest value (from then on the run
    has left the dtype's range, and later steps are not checked). A float16 overflow that the
    float32 run does not have (of an intermediate, or a second moment flushed to zero) still
    fails.
    """
    step = make_step(tx, jit=False)
    ours = trajectory(tx, params, grads, step)
    wide = trajectory(tx, widened(params), [widened(g) for g in grads], step)
    for t, ((updates, new_params, _), (wide_updates, wide_params, _)) in enumerate(
        zip(ours, wide, strict=True), start=1
    ):
        beyond_range = False
        for what, tree, wide_tree in (
            (f"updates of step {t}", updates, wide_updates),
            (f"params after step {t}", new_params, wide_params),
        ):
            flat = jax.tree_util.tree_flatten_with_path(tree)[0]
            for (path, x), w in zip(flat, jax.tree.leaves(wide_tree), strict=True):
                limit = float(jnp.finfo(x.dtype).max) / 2
                x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
                beyond = np.abs(w) > limit  # NaN is not beyond: it is never excused
                where = f"{what} at {jax.tree_util.keystr(path) or '<root>'}"
                assert np.all(np.isfinite(x) | beyond), f"{where}: {x} (float32 run: {w})"
                beyond_range |= bool(beyond.any())
        if beyond_range:
            return


def max_abs(*arrays: Any) -> float:
    """The largest finite magnitude in ``arrays`` (0 if there is none)."""
    finite = [np.abs(a[np.isfinite(a)]) for a in (np.asarray(x, np.float64) for x in arrays)]
    return float(max((np.max(f, initial=0.0) for f in finite), default=0.0))


def assert_close(actual: Any, expected: Any, tolerance: Any, what: str) -> None:
    """``|actual - expected| <= tolerance`` entrywise, with one tolerance per leaf.

    Non-finite entries must agree exactly (finiteness is property 2, not this one).
    """
    pairs = zip(
        jax.tree_util.tree_flatten_with_path(actual)[0],
        jax.tree.leaves(expected),
        jax.tree.leaves(tolerance),
        strict=True,
    )
    for (path, a), e, tol in pairs:
        assert jnp.result_type(a) == jnp.result_type(e), what
        a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
        finite = np.isfinite(e)
        where = f"{what} at {jax.tree_util.keystr(path) or '<root>'}"
        assert np.array_equal(a[~finite], e[~finite], equal_nan=True), f"{where}:\n{a}\n{e}"
        err = np.max(np.abs(a[finite] - e[finite]), initial=0.0)
        assert err <= tol, f"{where}: |diff| {err:.3g} > {tol:.3g}\n{a}\n{e}"


# ---- 1. shapes, dtypes, structure; deterministic init ----------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS)
@examples(15)
@given(data=st.data())
def test_updates_and_state_keep_structure_shapes_and_dtypes(name, data):
    config = data.draw(configs(name), label="config")
    params, grads = data.draw(problems(STEPS_OF.get(name, STEPS)), label="params, grads")
    tx = config.build()

    state = tx.init(params)
    # init is deterministic and depends on the params' shapes and dtypes only.
    assert_bitwise_equal(tx.init(params), state, "init twice")
    assert_bitwise_equal(tx.init(jax.tree.map(jnp.zeros_like, params)), state, "init of zeros")
    assert signature(jax.eval_shape(tx.init, params)) == signature(state)

    for updates, new_params, new_state in trajectory(tx, params, grads, make_step(tx, jit=False)):
        assert signature(updates) == signature(params)
        assert signature(new_params) == signature(params)
        # The state is a fixed point of shapes and dtypes: a jitted loop never retraces.
        assert signature(new_state) == signature(state)


# ---- 2. finite -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS)
@examples(20)
@given(data=st.data())
def test_updates_and_params_are_finite(name, data):
    config = data.draw(configs(name, positive_eps=True), label="config")
    params, grads = data.draw(problems(STEPS_OF.get(name, STEPS)), label="params, grads")
    if unbounded_direction(name, config):
        # The documented float16 limitation (test_float16_direction_overflows_only_when_b1_
        # squared_exceeds_b2): the moment piece's direction is unbounded and is stored in the
        # gradients' dtype before the learning rate scales it. Checked in float32 instead.
        def no_float16(tree: Any) -> Any:
            return jax.tree.map(
                lambda x: x.astype(jnp.float32) if x.dtype == jnp.float16 else x, tree
            )

        params, grads = no_float16(params), [no_float16(g) for g in grads]
    assert_finite_trajectory(config.build(), params, grads)


def unbounded_direction(name: str, config: Config) -> bool:
    """Whether a moment piece's direction m_hat / (sqrt(v_hat) + eps) is unbounded: only when
    b1**2 > b2 (otherwise |m_hat| <= sqrt(v_hat) * (1 - b1) / sqrt(1 - b2) / ... stays within a
    small constant of 1). AdaBound, SWATS and Adafactor scale by the learning rate inside."""
    b1, b2 = config.numeric.get("b1", 0.9), config.numeric.get("b2", 0.999)
    return name in ("adam", "adamw", "amsgrad", "nadam", "adamax", "radam") and b1**2 > b2


def test_float16_direction_overflows_only_when_b1_squared_exceeds_b2():
    """A known limitation, shared with optax: with b1**2 > b2 and a gradient that drops to 0,
    v decays faster than m**2, m_hat / (sqrt(v_hat) + eps) tends to m_hat / eps, and that
    direction overflows float16 before the learning rate brings it back into range."""
    p = jnp.zeros((), jnp.float16)

    def last_update(tx: Any, dtype: Any) -> float:
        state = tx.init(p.astype(dtype))
        for g in (1.0, 0.0):
            updates, state = tx.update(jnp.asarray(g, dtype), state, p.astype(dtype))
        return float(updates)

    unbounded = dict(learning_rate=1e-3, b1=0.5, b2=0.0, eps=1e-6)
    assert np.isfinite(last_update(adamjax.adam(**unbounded), jnp.float32))  # about -333
    assert np.isinf(last_update(adamjax.adam(**unbounded), jnp.float16))
    assert np.isinf(last_update(optax.adam(**unbounded), jnp.float16))
    # With b1**2 <= b2 (the defaults) the same gradients stay finite in float16.
    assert np.isfinite(last_update(adamjax.adam(1e-3, eps=1e-6), jnp.float16))


# ---- 3. jit == eager, to a few ulps ------------------------------------------------------------

# Why not bitwise: inside a jitted step XLA's CPU backend fuses the elementwise maths, and LLVM
# contracts a * b + c into one fused multiply-add (one rounding instead of two) and a / sqrt(b)
# into a * rsqrt(b); eager execution runs each operation as its own kernel and rounds after each
# (test_jit_and_eager_round_a_multiply_add_differently shows it on a bare a * b + c). XLA's
# float32 power also differs by an ulp between the two (test_jit_and_eager_powers_differ_by_an_
# ulp_that_the_bias_correction_magnifies).
# Each such operation moves a result by about an ulp and a step is a short chain of them, so a
# step from the same inputs agrees to a few ulps: of float32 for the arithmetic, plus a few ulps
# of the leaf's dtype for the final rounding of a half-precision update (a one-ulp float32
# difference can tip it to the neighbouring bfloat16/float16 value), relative to the update's
# magnitude. One factor is not small: the bias correction c = 1 - beta**t cancels, so the ulp of
# beta**t becomes a relative error of eps / c in c, and in the update; for beta close to 1 that
# is the dominant term (float32 itself leaves the correction that uncertain).
#
# Both runs start each step from the eager run's params and state, so the bound holds per step
# and nothing compounds (an 8-bit moment code tipped by an ulp would change the next step by a
# whole quantization bin: the state's codes are not comparable to ulps).
JIT_ULPS = 4
F32_EPS = float(np.finfo(np.float32).eps)


def correction_conditioning(config: Config, t: int) -> float:
    """``1 / (1 - beta**t)`` for the largest bias-corrected beta of ``config`` at step ``t`` (the
    betas as float32 rounds them), or 1 where nothing is bias-corrected (Adafactor). Infinite
    for a beta that float32 rounds to 1: the correction is then 0 and the update meaningless."""
    names = {"adafactor": (), "adamax": ("b1",)}.get(config.name, ("b1", "b2"))
    correction = 1.0 - max((float(np.float32(config.numeric[k])) for k in names), default=0.0) ** t
    return 1.0 / correction if correction > 0 else np.inf


def arithmetic_eps(config: Config, dtype: Any) -> float:
    """The eps of the coarsest dtype a leaf of ``dtype``'s update is computed in: the leaf's own
    (its final rounding), or Adafactor's ``dtype_momentum``, which optax's ``ema`` multiplies in
    (eager rounds ``decay * ema`` to it, while jit may keep the product in float32). adamjax's
    own pieces widen stored moments to float32 before any arithmetic."""
    eps = float(jnp.finfo(dtype).eps)
    momentum_dtype = config.static.get("dtype_momentum")
    if config.name == "adafactor" and "momentum" in config.numeric and momentum_dtype:
        eps = max(eps, float(jnp.finfo(momentum_dtype).eps))
    return eps


def jit_tolerance(config: Config, t: int, updates_a: Any, updates_b: Any) -> Any:
    """Per-leaf absolute tolerance for two updates of step ``t``, see the comment above."""
    conditioning = correction_conditioning(config, t)

    def leaf(a, b):
        if np.isinf(conditioning):
            return np.inf
        eps = arithmetic_eps(config, jnp.result_type(b))
        return JIT_ULPS * (eps + F32_EPS * conditioning) * max_abs(a, b)

    return jax.tree.map(leaf, updates_a, updates_b)


@pytest.mark.parametrize("name", OPTIMIZERS)
@examples(8)
@given(data=st.data())
def test_jit_matches_eager_to_a_few_ulps_and_is_deterministic(name, data):
    config = data.draw(configs(name), label="config")
    params, grads = data.draw(problems(STEPS_OF.get(name, STEPS)), label="params, grads")
    tx = config.build()
    eager, jitted = make_step(tx, jit=False), make_step(tx, jit=True)

    state, p = tx.init(params), params
    for t, g in enumerate(grads, start=1):
        u_eager, p_eager, s_eager = eager(p, state, g)
        u_jit, p_jit, s_jit = jitted(p, state, g)
        tol = jit_tolerance(config, t, u_jit, u_eager)
        assert_close(u_jit, u_eager, tol, f"updates of step {t}")
        # p + u rounds once more, to an ulp of the new params.
        p_tol = jax.tree.map(
            lambda u_tol, a, b: u_tol + JIT_ULPS * float(jnp.finfo(b.dtype).eps) * max_abs(a, b),
            tol,
            p_jit,
            p_eager,
        )
        assert_close(p_jit, p_eager, p_tol, f"params after step {t}")
        assert signature(s_jit) == signature(s_eager)
        p, state = p_eager, s_eager

    # Two jitted runs of the whole trajectory are bitwise equal (stochastic rounding included).
    first = trajectory(tx, params, grads, jitted)
    assert_bitwise_equal(trajectory(tx, params, grads, jitted), first, "second jitted run")


def test_jit_and_eager_round_a_multiply_add_differently():
    """Why property 3 has a tolerance: on this backend a jitted a * b + c is one fused
    multiply-add (a single rounding of the exact value), the eager one two roundings."""
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=4096).astype(np.float32) for _ in range(3))

    def f(a, b, c):
        return a * b + c

    eager = np.asarray(f(jnp.asarray(a), jnp.asarray(b), jnp.asarray(c)))
    jitted = np.asarray(jax.jit(f)(a, b, c))
    np.testing.assert_array_equal(eager, a * b + c)  # NumPy: round(round(a * b) + c)
    # a * b is exact in float64, so this is the exact a * b + c rounded once to float32.
    np.testing.assert_array_equal(jitted, (a.astype(np.float64) * b + c).astype(np.float32))
    assert np.any(jitted != eager)  # a bitwise comparison of jit and eager fails
    # They differ by the rounding of a * b: an ulp of the product, not of the (cancelling) sum.
    ulp_of_terms = np.spacing(np.abs(a * b)) + np.spacing(np.maximum(np.abs(jitted), np.abs(eager)))
    assert np.all(np.abs(jitted - eager) <= ulp_of_terms)
    # A second, separately compiled jit of the same maths is bitwise equal to the first.
    again = np.asarray(jax.jit(lambda a, b, c: a * b + c)(a, b, c))
    assert again.tobytes() == jitted.tobytes()


def test_jit_and_eager_powers_differ_by_an_ulp_that_the_bias_correction_magnifies():
    """Why property 3's tolerance grows as 1 / (1 - beta**t): XLA's float32 power differs by an
    ulp between jit and eager, and 1 - beta**t turns that ulp into a relative error eps / c."""
    beta = jnp.float32(0.999)

    def correction(t):
        return 1 - beta**t

    ts = jnp.arange(1, 9, dtype=jnp.int32)
    eager = np.asarray([correction(t) for t in ts])
    jitted = np.asarray(jax.vmap(jax.jit(correction))(ts))
    assert np.any(eager != jitted)
    relative = np.abs(eager - jitted) / eager
    assert np.all(relative <= 2 * F32_EPS / eager)  # one ulp of beta**t (< 1), over c
    assert np.max(relative) > 10 * F32_EPS  # far more than an ulp of c itself


# ---- 4. inject_hyperparams == direct construction --------------------------------------------


def as_injected(numeric: dict) -> dict:
    """The numbers as ``optax.inject_hyperparams(..., hyperparam_dtype=jnp.float32)`` passes
    them to the alias: float32 arrays (integers: int32 arrays)."""
    return {
        k: jnp.asarray(v, jnp.float32) if isinstance(v, float) else jnp.asarray(v)
        for k, v in numeric.items()
    }


@pytest.mark.parametrize("name", OPTIMIZERS)
@examples(15)
@given(data=st.data())
def test_inject_hyperparams_equals_direct_construction(name, data):
    """Bitwise, in eager mode, against the alias built with the same values as float32 arrays.

    The same values as Python floats would not do: a Python float multiplies a bfloat16 update
    in bfloat16 (weak typing) and a float32 array in float32, so half-precision leaves round
    differently. Eager mode, because under jit the direct construction's hyperparameters are
    compile-time constants that XLA may fold and fuse differently (see property 3).
    """
    config = data.draw(configs(name), label="config")
    params, grads = data.draw(problems(STEPS_OF.get(name, STEPS)), label="params, grads")
    injected, direct = config.inject(), config.build(as_injected(config.numeric))

    inj_state, dir_state = injected.init(params), direct.init(params)
    assert_bitwise_equal(inj_state.inner_state, dir_state, "init")
    # The numbers were really injected: they are arrays in the state, not constants.
    assert set(config.numeric) <= set(inj_state.hyperparams)

    inj_step, dir_step = make_step(injected, jit=False), make_step(direct, jit=False)
    inj_params = dir_params = params
    for t, g in enumerate(grads, start=1):
        inj_updates, inj_params, inj_state = inj_step(inj_params, inj_state, g)
        dir_updates, dir_params, dir_state = dir_step(dir_params, dir_state, g)
        assert_bitwise_equal(inj_updates, dir_updates, f"updates of step {t}")
        assert_bitwise_equal(inj_params, dir_params, f"params after step {t}")
        assert_bitwise_equal(inj_state.inner_state, dir_state, f"state after step {t}")


# ---- float64 ---------------------------------------------------------------------------------


@examples(15)
@given(data=st.data())
def test_float64_trees_keep_their_dtypes_and_stay_finite(data):
    """Properties 1 and 2 under x64, for trees mixing float64 with float32 and half leaves."""
    name = data.draw(st.sampled_from(OPTIMIZERS), label="name")
    with jax.enable_x64(True):
        config = data.draw(configs(name, positive_eps=True), label="config")
        dtypes = st.sampled_from([jnp.float64, jnp.float32, jnp.bfloat16, jnp.float16])
        problem = problems(STEPS_OF.get(name, STEPS), dtypes, required_dtype=jnp.float64)
        params, grads = data.draw(problem, label="params, grads")
        tx = config.build()
        state = tx.init(params)
        assert_bitwise_equal(tx.init(params), state, "init twice")
        for updates, new_params, new_state in trajectory(
            tx, params, grads, make_step(tx, jit=False)
        ):
            assert signature(updates) == signature(params)
            assert signature(new_params) == signature(params)
            assert signature(new_state) == signature(state)
        assert_finite_trajectory(tx, params, grads)
