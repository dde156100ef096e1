"""The hostile-input sweep: every public constructor x every hyperparameter x a table of bad
values, every alias x gradient dtypes that cannot carry an update, and every alias x edge trees.

Each case is generated, not written by hand. Its expected outcome comes from the parameter's
documented domain (``DOMAINS``), independently of how adamjax checks it:

* a value outside the domain must raise ``TypeError`` or ``ValueError`` whose message starts
  with ``"<function>: <parameter> "`` and says what it got;
* a value inside it must build an optimizer whose first two updates are finite and keep the
  state's structure, shapes and dtypes (no silent broadcasting, no silent overflow).

``test_tally`` prints the counts recorded in docs/reliability.md.
"""

import collections
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax

F32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass(frozen=True)
class Domain:
    """Where a hyperparameter's valid values lie, as documented."""

    low: float = 0.0
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False
    integer: bool = False
    schedule: bool = False  # a schedule (a function of the step) is valid
    optional: bool = False  # None is valid (the feature is off)
    jax_array: bool = True  # a 0-d jax array of a valid value is valid (NumPy ones always are)
    rounded: bool = True  # the value must stay inside the domain once rounded to float32
    maximum: int = 2**31 - 1  # for integers: jax's default int is int32

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if callable(value) and not isinstance(value, type):
            return self.schedule and _takes_one_argument(value)
        if isinstance(value, (np.ndarray, jax.Array)):
            if value.ndim != 0 or value.dtype == bool:
                return False
            if isinstance(value, jax.Array) and not self.jax_array:
                return False
            if np.iscomplexobj(value):
                return False
            if self.integer and not np.issubdtype(value.dtype, np.integer):
                return False
            value = value.item()
        if isinstance(value, (bool, np.bool_, str, complex, np.complexfloating, type)):
            return False
        if not isinstance(value, (int, float, np.integer, np.floating)):
            return False
        if isinstance(value, int) and abs(value) > np.iinfo(np.int32).max:
            return False  # jax would pass it as an int32
        if self.integer:
            ok = isinstance(value, (int, np.integer)) and value <= self.maximum
            return ok and self._inside(float(value))
        # The optimizer computes in float32: a value must stay inside once rounded to it.
        with np.errstate(over="ignore"):
            rounded = float(np.float32(value))
        return self._inside(float(value)) and (self._inside(rounded) or not self.rounded)

    def _inside(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        above = x > self.low if self.open_low else x >= self.low
        below = x < self.high if self.open_high else x <= self.high
        return above and below


def _takes_one_argument(fn: Callable) -> bool:
    import inspect

    try:
        inspect.signature(fn).bind(0)
    except TypeError:
        return False
    return True


RATE = Domain(high=1.0, open_high=True, schedule=True)
LR = Domain(schedule=True)
NONNEG = Domain()
POSITIVE = Domain(open_low=True)
COUNT = Domain(integer=True, low=1)
CONSTANT_RATE = Domain(high=1.0, open_high=True)

# Every public constructor's numeric hyperparameters and their domains.
DOMAINS: dict[str, dict[str, Domain]] = {
    "adam": dict(learning_rate=LR, b1=RATE, b2=RATE, eps=NONNEG, eps_root=NONNEG),
    "adamw": dict(
        learning_rate=LR, b1=RATE, b2=RATE, eps=NONNEG, eps_root=NONNEG,
        weight_decay=Domain(schedule=True),
        schedule_multiplier=Domain(schedule=True, optional=True),
    ),
    "amsgrad": dict(
        learning_rate=LR, b1=RATE, b2=RATE, eps=NONNEG, eps_root=NONNEG,
        weight_decay=Domain(schedule=True),
    ),
    "nadam": dict(
        learning_rate=LR, b1=RATE, b2=RATE, eps=NONNEG, eps_root=NONNEG, momentum_decay=NONNEG,
        weight_decay=Domain(schedule=True),
    ),
    "adamax": dict(
        learning_rate=LR, b1=RATE, b2=RATE, eps=NONNEG, weight_decay=Domain(schedule=True)
    ),
    "radam": dict(
        learning_rate=LR, b1=RATE, b2=Domain(high=1.0, open_high=True), eps=NONNEG,
        eps_root=NONNEG, threshold=Domain(low=4.0), weight_decay=Domain(schedule=True),
    ),
    "adabound": dict(
        learning_rate=LR, final_lr=NONNEG, b1=RATE, b2=RATE,
        gamma=Domain(high=1.0, open_high=True, rounded=False), eps=NONNEG, eps_root=NONNEG,
        weight_decay=Domain(schedule=True),
    ),
    "adafactor": dict(
        learning_rate=Domain(schedule=True, optional=True),
        min_dim_size_to_factor=Domain(integer=True, low=1, jax_array=False),
        decay_rate=Domain(high=1.0, open_low=True),
        decay_offset=Domain(integer=True),
        clipping_threshold=Domain(open_low=True, optional=True),
        momentum=Domain(high=1.0, open_high=True, optional=True),
        weight_decay_rate=Domain(schedule=True, optional=True),
        eps=NONNEG, relative_step_cap=POSITIVE, eps_scale=NONNEG,
    ),
    "swats": dict(
        learning_rate=LR, b1=RATE, b2=RATE, eps=NONNEG, switch_tol=POSITIVE, switch_rtol=NONNEG,
        eps_root=NONNEG,
    ),
    "scale_by_adam": dict(b1=RATE, b2=RATE, eps=NONNEG, eps_root=NONNEG),
    "scale_by_factored_rms": dict(
        decay_rate=Domain(high=1.0, open_low=True), step_offset=Domain(integer=True),
        min_dim_size_to_factor=Domain(integer=True, low=1, jax_array=False), epsilon=NONNEG,
    ),
    "scale_by_learning_rate": dict(learning_rate=Domain(schedule=True, optional=True)),
    "add_decayed_weights": dict(weight_decay=Domain(low=-math.inf, schedule=True)),
    "clip_by_block_rms": dict(threshold=POSITIVE),
    "relative_step_schedule": dict(cap=POSITIVE),
    "q8": dict(
        block_size=Domain(integer=True, low=1, jax_array=False),
        min_size=Domain(integer=True, jax_array=False),
    ),
    "stochastic_bf16": dict(seed=Domain(integer=True, maximum=2**32 - 1, jax_array=False)),
    "stochastic_rounding": dict(seed=Domain(integer=True, maximum=2**32 - 1, jax_array=False)),
    "beta1_decay": dict(b1=CONSTANT_RATE, rate=NONNEG, steps_per_epoch=COUNT),
    "beta1_cyclic": dict(b1=CONSTANT_RATE, period=POSITIVE, steps_per_epoch=COUNT),
    "schedule_free_adamw": dict(
        learning_rate=LR, warmup_steps=Domain(integer=True, optional=True, jax_array=False),
        b1=Domain(high=1.0, open_low=True), b2=RATE, eps=NONNEG,
        weight_decay=Domain(schedule=True), weight_lr_power=NONNEG, r=Domain(high=100.0),
        eps_root=NONNEG,
    ),
    "schedule_free": dict(
        learning_rate=LR, b1=Domain(high=1.0, open_low=True), weight_lr_power=NONNEG,
        r=Domain(high=100.0),
    ),
    "adam_mini": dict(
        learning_rate=LR, b1=RATE, b2=RATE, eps=NONNEG, weight_decay=Domain(schedule=True),
        n_heads=Domain(integer=True, low=1, jax_array=False, optional=True),
    ),
    "scale_by_adam_mini": dict(
        b1=RATE, b2=RATE, eps=NONNEG,
        n_heads=Domain(integer=True, low=1, jax_array=False, optional=True),
    ),
    "adam_mini_partition": dict(
        n_heads=Domain(integer=True, low=1, jax_array=False, optional=True)
    ),
    "came": dict(
        learning_rate=LR, b1=CONSTANT_RATE, b2=RATE, b3=CONSTANT_RATE, eps1=NONNEG, eps2=NONNEG,
        clip_threshold=Domain(open_low=True, optional=True), weight_decay=Domain(schedule=True),
    ),
    "scale_by_came": dict(b1=CONSTANT_RATE, b3=CONSTANT_RATE, eps=NONNEG),
    "ademamix": dict(
        learning_rate=LR, b1=RATE, b2=RATE, b3=RATE, alpha=Domain(schedule=True), eps=NONNEG,
        eps_root=NONNEG, weight_decay=Domain(schedule=True),
    ),
    "simplified_ademamix": dict(
        learning_rate=LR, b1=RATE, b2=RATE, alpha=Domain(schedule=True), eps=NONNEG,
        eps_root=NONNEG, weight_decay=Domain(schedule=True),
    ),
    "scale_by_ademamix": dict(
        b1=RATE, b2=RATE, b3=RATE, alpha=Domain(schedule=True), eps=NONNEG, eps_root=NONNEG
    ),
    "scale_by_simplified_ademamix": dict(
        b1=RATE, b2=RATE, alpha=Domain(schedule=True), eps=NONNEG, eps_root=NONNEG
    ),
    "ademamix_b3_schedule": dict(
        b3=CONSTANT_RATE, warmup=Domain(integer=True, low=1, jax_array=False),
        b3_start=CONSTANT_RATE, first_step=Domain(integer=True, jax_array=False),
        log_eps=Domain(high=1e-6),
    ),
    "ademamix_alpha_schedule": dict(
        alpha=NONNEG, warmup=Domain(integer=True, low=1, jax_array=False),
        alpha_start=Domain(low=-math.inf), first_step=Domain(integer=True, jax_array=False),
    ),
    "cautious": dict(),
    "update_clipping": dict(threshold=POSITIVE, eps=NONNEG),
    "stable_adamw": dict(
        learning_rate=LR, b1=RATE, b2=RATE, eps=NONNEG, weight_decay=Domain(schedule=True),
        threshold=POSITIVE, eps_root=NONNEG,
    ),
    "adam_atan2": dict(
        learning_rate=LR, b1=RATE, b2=RATE, weight_decay=Domain(schedule=True),
        a=Domain(low=-math.inf), b=POSITIVE,
    ),
    "corrected_weight_decay": dict(
        weight_decay=Domain(schedule=True), learning_rate=LR,
        max_lr=Domain(open_low=True, optional=True),
    ),
    "laprop": dict(
        learning_rate=LR, b1=RATE, b2=RATE, eps=NONNEG, eps_root=NONNEG,
        weight_decay=Domain(schedule=True),
        schedule_multiplier=Domain(schedule=True, optional=True),
        centered_after=Domain(integer=True),
    ),
    "scale_by_laprop": dict(
        b1=RATE, b2=RATE, eps=NONNEG, eps_root=NONNEG,
        centered_after=Domain(integer=True),
    ),
    "adopt": dict(
        learning_rate=LR, b1=RATE, b2=RATE, eps=NONNEG, weight_decay=Domain(schedule=True)
    ),
    "scale_by_adopt": dict(b1=RATE, b2=RATE, eps=NONNEG),
    "nadamw": dict(
        learning_rate=LR, b1=RATE, b2=RATE, eps=NONNEG, eps_root=NONNEG,
        weight_decay=Domain(schedule=True),
        schedule_multiplier=Domain(schedule=True, optional=True),
    ),
    "adamaxw": dict(
        learning_rate=LR, b1=RATE, b2=RATE, eps=NONNEG, weight_decay=Domain(schedule=True)
    ),
    "adan": dict(
        learning_rate=LR, b1=RATE, b2=RATE, b3=RATE, eps=NONNEG, eps_root=NONNEG,
        weight_decay=Domain(schedule=True),
    ),
    "scale_by_adan": dict(b1=RATE, b2=RATE, b3=RATE, eps=NONNEG, eps_root=NONNEG),
    "lamb": dict(
        learning_rate=LR, b1=RATE, b2=RATE, eps=NONNEG, eps_root=NONNEG,
        weight_decay=Domain(schedule=True), trust_ratio_eps=NONNEG,
        max_param_norm=Domain(open_low=True, optional=True),
    ),
    "scale_by_trust_ratio": dict(
        min_norm=NONNEG, trust_coefficient=NONNEG, eps=NONNEG,
        max_param_norm=Domain(open_low=True, optional=True),
    ),
    "adabelief": dict(
        learning_rate=LR, b1=RATE, b2=RATE, eps=NONNEG, eps_root=NONNEG,
        threshold=Domain(low=4.0), weight_decay=Domain(schedule=True),
    ),
    "scale_by_belief": dict(
        b1=RATE, b2=RATE, eps=NONNEG, eps_root=NONNEG, threshold=Domain(low=4.0)
    ),
    "yogi": dict(
        learning_rate=LR, b1=RATE, b2=RATE, eps=NONNEG, eps_root=NONNEG,
        initial_accumulator_value=NONNEG, weight_decay=Domain(schedule=True),
    ),
    "scale_by_yogi": dict(
        b1=RATE, b2=RATE, eps=NONNEG, eps_root=NONNEG, initial_accumulator_value=NONNEG
    ),
}  # fmt: skip

# Arguments a constructor needs besides the one under test.
REQUIRED = {
    "beta1_decay": dict(b1=0.9, rate=0.1),
    "beta1_cyclic": dict(b1=0.9, period=10.0),
    "cautious": dict(tx=adamjax.adam(1e-3)),
    "update_clipping": dict(tx=adamjax.adam(1e-3)),
    "corrected_weight_decay": dict(weight_decay=0.1, learning_rate=1e-3, max_lr=1e-3),
}
REQUIRED["schedule_free"] = dict(base_optimizer=optax.sgd(1e-3), learning_rate=1e-3)
ALSO = {
    ("adamw", "schedule_multiplier"): dict(weight_decay_scaling="schedule"),
    ("laprop", "schedule_multiplier"): dict(weight_decay_scaling="schedule"),
    ("nadamw", "schedule_multiplier"): dict(weight_decay_scaling="schedule"),
}

# The bad (and borderline) values, by name. Each is judged against each parameter's Domain.
VALUES: dict[str, Any] = {
    "negative": -1.0,
    "negative_int": -3,
    "zero": 0.0,
    "zero_int": 0,
    "half": 0.5,
    "one": 1.0,
    "one_int": 1,
    "one_and_a_half": 1.5,
    "just_below_one_f64": 1 - 1e-12,
    "four": 4.0,
    "large": 1e6,
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "float32_overflow": 1e39,
    "float32_underflow": 1e-50,
    "huge_int": 10**400,
    "seed_overflow": 2**70,
    "np_float32_nan": np.float32("nan"),
    "np_float64": np.float64(0.5),
    "np_int": np.int64(2),
    "np_0d_half": np.array(0.5),
    "np_0d_negative": np.array(-1.0),
    "np_0d_one_and_a_half": np.array(1.5),
    "np_0d_int": np.array(2),
    "jnp_0d_half": jnp.asarray(0.5),
    "jnp_0d_negative": jnp.asarray(-1.0),
    "jnp_0d_int": jnp.asarray(2),
    "np_vector": np.array([0.5, 0.5]),
    "jnp_vector": jnp.asarray([1e-3, 1.0]),
    "jnp_matrix": jnp.full((2, 2), 0.5),
    "string": "0.5",
    "none": None,
    "true": True,
    "np_bool": np.bool_(False),
    "complex": 0.5j,
    "np_complex": np.complex64(0.5),
    "dtype_class": jnp.float32,
    "np_dtype": np.dtype("float32"),
    "type": float,
    "two_argument_fn": lambda a, b: a,
    "schedule": optax.constant_schedule(0.5),
    "list": [0.5],
}


def _factory(name: str) -> Callable[..., Any]:
    return getattr(adamjax, name)


def _construction_cases() -> list[tuple[str, str, str]]:
    return [
        (fn, param, value) for fn, params in DOMAINS.items() for param in params for value in VALUES
    ]


CONSTRUCTION = _construction_cases()
TALLY: collections.Counter = collections.Counter()

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(3, 4), "b": jnp.ones(3)}
GRADS = jax.tree.map(lambda p: jnp.cos(3 * p) + 0.1, PARAMS)


def _leaf_types(tree: Any) -> list[tuple[tuple[int, ...], Any]]:
    return [(jnp.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(tree)]


def _exercise(fn: str, built: Any) -> None:
    """A valid value: the optimizer's first two updates are finite and its state keeps its
    structure, shapes and dtypes."""
    if fn in ("q8", "stochastic_bf16"):
        built = adamjax.adam(1e-3, mu_dtype=built, nu_dtype=built)
    elif fn in ("beta1_decay", "beta1_cyclic"):
        built = adamjax.adam(1e-3, b1=built)
    elif fn == "corrected_weight_decay":
        built = adamjax.adamw(1e-3, weight_decay=built)
    elif fn == "relative_step_schedule":
        assert np.isfinite(built(jnp.asarray(3)))
        return
    elif fn == "adam_mini_partition":
        built = adamjax.adam_mini(1e-3, partition=built)
    elif fn in ("ademamix_b3_schedule", "ademamix_alpha_schedule"):
        assert all(np.isfinite(built(jnp.asarray(k))) for k in (0, 3, 10**6))
        return
    elif fn.startswith(("scale_by", "clip_by", "add_decayed")) or fn == "stochastic_rounding":
        built = optax.chain(built, optax.scale(-1e-3))
    state = built.init(PARAMS)
    params = PARAMS
    for _ in range(2):
        updates, new_state = built.update(GRADS, state, params)
        assert jax.tree.structure(new_state) == jax.tree.structure(state)
        assert _leaf_types(new_state) == _leaf_types(state)
        assert _leaf_types(updates) == _leaf_types(GRADS)
        assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
        params, state = optax.apply_updates(params, updates), new_state


@pytest.mark.slow
@pytest.mark.parametrize(("fn", "param", "value"), CONSTRUCTION)
def test_hyperparameter(fn, param, value):
    raw = VALUES[value]
    valid = DOMAINS[fn][param].accepts(raw)
    kwargs = {**REQUIRED.get(fn, {}), **ALSO.get((fn, param), {}), param: raw}
    if not valid:
        with pytest.raises((TypeError, ValueError)) as info:
            _factory(fn)(**kwargs)
        message = str(info.value)
        assert message.startswith(f"{fn}: {param} "), message
        assert "got" in message, message
        TALLY["construction: clear error"] += 1
        return
    _exercise(fn, _factory(fn)(**kwargs))
    TALLY["construction: valid, checked"] += 1


# ---- gradients that cannot carry the params' update ------------------------------------------

ALIASES = ["adam", "adamw", "amsgrad", "nadam", "adamax", "radam", "adabound", "adafactor", "swats"]
ALIASES += ["ademamix", "simplified_ademamix"]
# adopt is not here: its first update is 0 by design (it only sets v), which the eps=0 test reads
# as a failure; test_laprop_adopt.py tests its first step with eps=0.
ALIASES += ["laprop"]
ALIASES += ["nadamw", "adamaxw", "adan"]
ALIASES += ["lamb", "adabelief", "yogi"]
FORMATS = {
    "float32": {},
    "bf16": dict(mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16),
    "q8": dict(mu_dtype=adamjax.q8(min_size=0), nu_dtype=adamjax.q8(min_size=0)),
}
BAD_GRAD_DTYPES = [jnp.int32, jnp.int8, jnp.uint8, jnp.bool_, jnp.complex64]


def _alias(name: str, fmt: str = "float32") -> Any:
    if name == "adafactor":
        return adamjax.adafactor(1e-2, min_dim_size_to_factor=2)
    return getattr(adamjax, name)(1e-3, **FORMATS[fmt])


# Adafactor has no mu_dtype/nu_dtype: it is checked once.
GRAD_CASES = [(n, f) for n in ALIASES for f in FORMATS if n != "adafactor" or f == "float32"]


@pytest.mark.parametrize("dtype", BAD_GRAD_DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize(("name", "fmt"), GRAD_CASES)
def test_gradient_dtype_that_cannot_carry_the_update_fails(name, fmt, dtype):
    tx = _alias(name, fmt)
    state = tx.init(PARAMS)
    grads = {**GRADS, "w": jnp.ones((3, 4), dtype)}
    with pytest.raises(TypeError) as info:
        tx.update(grads, state, PARAMS)
    message = str(info.value)
    assert message.startswith(f"{name}: the update at ['w'] "), message
    TALLY["gradient dtype: clear error"] += 1


# ---- edge trees ------------------------------------------------------------------------------

EDGE_TREES: dict[str, Any] = {
    "empty_dict": {},
    "none_leaf": {"w": jnp.ones(3), "frozen": None},
    "scalar": {"s": jnp.asarray(0.5)},
    "zero_size": {"w": jnp.ones(3), "e": jnp.zeros((0,))},
    "zero_size_matrix": {"w": jnp.ones((2, 3)), "e": jnp.zeros((0, 4))},
    "nested": {"a": [jnp.ones(2), (jnp.ones((2, 2)), {"b": jnp.ones(1)})]},
    "float16": {"w": jnp.ones(3, jnp.float16)},
    "bfloat16": {"w": jnp.ones((2, 3), jnp.bfloat16)},
    "complex": {"w": jnp.ones(3, jnp.complex64)},
}


@pytest.mark.parametrize("tree", list(EDGE_TREES))
@pytest.mark.parametrize("name", [*ALIASES, "with_diagnostics"])
def test_edge_tree(name, tree):
    params = EDGE_TREES[tree]
    if name == "with_diagnostics":
        tx = adamjax.with_diagnostics(adamjax.adam(1e-3))
    else:
        tx = _alias(name)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.25), params)
    state = tx.init(params)
    for _ in range(2):
        updates, new_state = jax.jit(tx.update)(grads, state, params)
        assert jax.tree.structure(updates) == jax.tree.structure(params)
        assert _leaf_types(updates) == _leaf_types(params)
        assert _leaf_types(new_state) == _leaf_types(state)
        for u in jax.tree.leaves(updates):
            assert bool(jnp.all(jnp.isfinite(u))), (name, tree, u)
        params, state = optax.apply_updates(params, updates), new_state
    TALLY["edge tree: defined result"] += 1


# ---- eps = 0 with zero gradients ---------------------------------------------------------------


@pytest.mark.parametrize("name", ALIASES)
def test_eps_zero_with_zero_gradients_gives_zero_updates_there(name):
    """With eps = eps_root = 0 an entry whose gradient has been 0 (or so small that its square
    underflows) gets a zero update, not 0/0 = NaN or m/0 = inf; the others move as usual."""
    extra = {"adamw": {"weight_decay": 0.0}, "adafactor": {"min_dim_size_to_factor": 2}}
    extra |= {"nadamw": {"weight_decay": 0.0}, "adamaxw": {"weight_decay": 0.0}}
    # Yogi's moments start at initial_accumulator_value: m is not 0 without a gradient.
    extra |= {"yogi": {"initial_accumulator_value": 0.0}}
    tx = getattr(adamjax, name)(1e-3, eps=0.0, **extra.get(name, {}))
    params = {"w": jnp.ones(4)}
    grads = {"w": jnp.asarray([0.0, 1.0, 0.0, 1e-30])}
    if name == "adafactor":  # a factored leaf too: its zero rows and columns
        params["m"] = jnp.ones((3, 4))
        grads["m"] = jnp.zeros((3, 4)).at[1].set(jnp.asarray([0.0, 1.0, 0.0, 1e-30]))
    state = tx.init(params)
    for _ in range(3):
        updates, state = jax.jit(tx.update)(grads, state, params)
        w = np.asarray(updates["w"])
        assert np.all(np.isfinite(w)), w
        assert w[0] == 0 and w[2] == 0, w
        assert w[1] < 0, w
        if name == "adafactor":
            m = np.asarray(updates["m"])
            assert np.all(np.isfinite(m)) and m[1, 1] < 0, m
            assert np.count_nonzero(m) == 1, m
    TALLY["eps=0: zero update"] += 1


def test_traced_zero_eps_is_not_guarded():
    """A traced eps (optax.inject_hyperparams) is not known to be 0 while tracing, so the guard
    is off and 0/0 is NaN, as documented; eps_root > 0 is the remedy."""
    tx = optax.inject_hyperparams(adamjax.adam)(learning_rate=1e-3, eps=0.0)
    params = {"w": jnp.ones(2)}
    updates, _ = jax.jit(tx.update)({"w": jnp.zeros(2)}, tx.init(params), params)
    assert np.all(np.isnan(updates["w"]))
    tx = optax.inject_hyperparams(adamjax.adam)(learning_rate=1e-3, eps=0.0, eps_root=1e-16)
    updates, _ = jax.jit(tx.update)({"w": jnp.zeros(2)}, tx.init(params), params)
    np.testing.assert_array_equal(updates["w"], 0.0)


def test_tally():
    """Prints the sweep's counts (run with -s); docs/reliability.md records them."""
    cases = len(CONSTRUCTION) + len(GRAD_CASES) * len(BAD_GRAD_DTYPES)
    cases += (len(ALIASES) + 1) * len(EDGE_TREES)
    print(f"\nsweep: {cases} generated cases; {dict(TALLY)}")
    assert cases >= 1500
