"""Moment storage formats (adamjax._formats): the 8-bit maps, block layout, non-finite values,
fidelity against float64 NumPy Adam and float32 Adam, memory, checkpoints, sharding, stochastic
rounding, float16 safety and the step from the stored moments (step_from_stored)."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax
from adamjax import _formats as codecs
from benchmarks.state_memory import ALIASES, fidelity, moments_at
from benchmarks.step_time import train_step
from benchmarks.workloads import count, gpt2_small_shapes

from helpers import assert_bitwise_equal
from reference.numpy_reference import AdamReference, NadamReference, adam_direction

Q8 = adamjax.q8()
EPS32 = float(np.finfo(np.float32).eps)  # 2**-23


def _step(tx):
    return jax.jit(train_step(tx))


# ---- the maps -------------------------------------------------------------------------------


@pytest.mark.parametrize("mapping", codecs.MAPPINGS)
@pytest.mark.parametrize("signed", [True, False])
def test_code_table_is_sorted_and_holds_zero_and_one(mapping, signed):
    table = codecs.code_table(mapping, signed)
    assert table.shape == (256,) and table.dtype == np.float32
    assert np.all(np.diff(table) >= 0)
    assert table[-1] == 1.0 and 0.0 in table
    if signed and mapping == "dynamic":  # symmetric around the zero code, 127
        np.testing.assert_array_equal(table[:127], -table[254:127:-1])
        assert table[127] == 0
    if signed:
        assert table.min() < -0.99
    else:
        assert table.min() == 0.0


def test_dynamic_map_has_seven_decades_and_bnb_bin_counts():
    """Dettmers et al.'s dynamic tree map: per decade 10**-e, 2**(6-e) midpoints (signed) or
    2**(7-e) (unsigned) of equal bins of [0.1, 1)."""
    for signed, top in ((True, 64), (False, 128)):
        positive = codecs.code_table("dynamic", signed)
        positive = positive[(positive > 0) & (positive < 1)]
        for e in range(7):
            in_decade = positive[(positive >= 10.0 ** -(e + 1)) & (positive < 10.0**-e)]
            assert len(in_decade) == top >> e, (signed, e)
        # The single (signed) or two (unsigned) bins of the smallest decade.
        assert positive.min() == pytest.approx(0.55e-6 if signed else 0.325e-6, rel=1e-6)


@pytest.mark.parametrize("mapping", codecs.MAPPINGS)
@pytest.mark.parametrize("signed", [True, False])
def test_every_table_value_encodes_to_its_own_code(mapping, signed):
    table = codecs.code_table(mapping, signed)
    codes = np.arange(256)
    if mapping == "linear" and signed:
        codes = codes[:255]  # code 255 repeats 1.0 (= code 254)
    values = jnp.asarray(table[codes])
    q = codecs.quantize(jnp.concatenate([values, jnp.ones(1)]), mapping=mapping, signed=signed,
                        block_size=300)  # fmt: skip
    np.testing.assert_array_equal(_table_index(q, signed)[:-1], codes)
    np.testing.assert_array_equal(np.asarray(codecs.dequantize(q, signed))[:-1], table[codes])


def _table_index(q: codecs.QuantizedArray, signed: bool) -> np.ndarray:
    """The index in ``code_table`` of each code (linear codes are int8, offset by 127 or 128)."""
    codes = np.asarray(q.codes).astype(np.int64)
    if q.mapping == "linear":
        codes = codes + (127 if signed else 128)
    return codes


def _half_bin(a: np.ndarray, mapping: str, signed: bool) -> np.ndarray:
    """The largest rounding error the map allows at normalized magnitude ``a``."""
    if mapping == "linear":
        if not signed:  # a nonzero second moment is stored as at least 1/255
            return np.where(a < 1 / 255, 1 / 255, 0.5 / 255) * (1 + 1e-5)
        return np.full_like(a, 0.5 / 127)
    e = np.clip(np.floor(-np.log10(np.maximum(a, 1e-30))), 0, 7)
    bins = 2.0 ** (6 - e + (0 if signed else 1))
    bound = 0.45 / bins * 10.0**-e
    # Below the last decade: rounded to 0, or (second moments) up to the smallest value.
    floor = 1e-7 if signed else 0.325e-6
    return np.where(e >= 7, floor, np.maximum(bound, 1e-7)) * (1 + 1e-5)


@pytest.mark.parametrize("mapping", codecs.MAPPINGS)
@pytest.mark.parametrize("signed", [True, False])
def test_round_trip_error_is_within_half_a_bin_of_each_block(mapping, signed):
    rng = np.random.default_rng(0)
    # Heavy tails, so that blocks span many decades; one block of zeros.
    x = (rng.standard_t(2, (16, 1024)) * 10.0 ** rng.integers(-3, 3, (16, 1))).astype(np.float32)
    x[3, :256] = 0
    if not signed:
        x = x**2
    q = codecs.quantize(jnp.asarray(x), mapping=mapping, signed=signed)
    y = np.asarray(codecs.dequantize(q, signed))
    scale = np.repeat(np.asarray(q.scale), 256, axis=-1)
    np.testing.assert_array_equal(scale.reshape(16, 4, 256)[:, :, 0],
                                  np.abs(x).reshape(16, 4, 256).max(-1))  # fmt: skip
    a = np.abs(x) / np.where(scale > 0, scale, 1)
    assert np.all(np.abs(y - x) <= _half_bin(a, mapping, signed) * scale)
    assert np.all(y[3, :256] == 0)
    # The nearest value of the map (but for float32 ties).
    table = codecs.code_table(mapping, signed).astype(np.float64)
    target = (a * np.sign(x)).reshape(-1, 1).astype(np.float64)
    distance = np.abs(target - table)
    if not signed:  # nonzero second moments are never stored as zero
        distance[:, 0] = np.where(target[:, 0] > 0, np.inf, distance[:, 0])
    chosen = distance[np.arange(len(target)), _table_index(q, signed).reshape(-1)]
    assert np.all(chosen <= distance.min(1) + 1e-6)


def _bnb_dynamic_map(signed: bool) -> np.ndarray:
    """bitsandbytes' ``create_dynamic_map(signed, max_exponent_bits=7, total_bits=8)``, built
    from its definition and not from adamjax: for i = 0..6, the midpoints of 2**i (signed) or
    2**(i+1) (unsigned) equal bins of [0.1, 1], times 10**(i - 6), with their negatives when
    signed; then 0 and 1. Sorted, so a value's index is its code."""
    values = [0.0, 1.0]
    for i in range(7):
        edges = np.linspace(0.1, 1.0, 2 ** (i + (0 if signed else 1)) + 1)
        means = 10.0 ** (i - 6) * (edges[:-1] + edges[1:]) / 2
        values += [*means, *(-means if signed else [])]
    assert len(values) == 256
    return np.sort(np.asarray(values)).astype(np.float32)


def _bnb_decode(q: codecs.QuantizedArray, signed: bool) -> np.ndarray:
    """A dynamic-map leaf decoded with :func:`_bnb_dynamic_map`: ``table[code] * scale``, in
    float64, for a last axis made of whole blocks."""
    codes = np.asarray(q.codes)
    assert codes.dtype == np.uint8, "not stored with the dynamic map"
    scale = np.asarray(q.scale, np.float64)
    table = _bnb_dynamic_map(signed).astype(np.float64)
    blocks = codes.reshape(*scale.shape, -1)
    return (table[blocks] * scale[..., None]).reshape(codes.shape)


def _assert_nearest_values(decoded: np.ndarray, exact: np.ndarray, signed: bool, block: int):
    """Each entry of ``decoded`` is ``s`` times a value of the bitsandbytes map nearest to
    ``exact / s``, ``s`` the largest magnitude of its block of ``exact`` (for the unsigned map a
    nonzero entry is never rounded to 0), up to the float32 roundings of the moment, the scale
    and the decoding."""
    table = _bnb_dynamic_map(signed).astype(np.float64)
    exact = np.asarray(exact, np.float64).reshape(-1, block)
    scale = np.max(np.abs(exact), axis=-1, keepdims=True)
    target = exact / np.where(scale > 0, scale, 1)
    chosen = decoded.reshape(-1, block) / np.where(scale > 0, scale, 1)

    def distance(values: np.ndarray) -> np.ndarray:  # from target to the nearest of values
        i = np.clip(np.searchsorted(values, target), 1, len(values) - 1)
        return np.minimum(np.abs(target - values[i - 1]), np.abs(values[i] - target))

    nearest = distance(table) if signed else np.where(target > 0, distance(table[1:]), 0)
    worst = np.max(np.abs(chosen - target) - nearest)
    assert worst <= 4 * EPS32, worst


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_dynamic_maps_are_the_bitsandbytes_maps(signed):
    """The tables, and what a block of their values times 3 encodes and decodes to, are
    bitsandbytes' (to float32 rounding: the definition is evaluated in float64 here)."""
    bnb = _bnb_dynamic_map(signed)
    np.testing.assert_allclose(codecs.code_table("dynamic", signed), bnb, rtol=1e-6, atol=0)
    q = codecs.quantize(jnp.asarray(bnb * np.float32(3)), signed=signed)
    np.testing.assert_array_equal(np.asarray(q.codes), np.arange(256))
    np.testing.assert_array_equal(np.asarray(q.scale), [3.0])
    np.testing.assert_allclose(np.asarray(codecs.dequantize(q, signed)), bnb * 3.0, rtol=1e-6)


def test_adam_stores_mu_in_the_signed_and_nu_in_the_unsigned_dynamic_map():
    """One step from zero moments: mu = 0.1 g and nu = 0.001 g**2, each stored as the nearest
    value of its own bitsandbytes map (gradients spanning four decades, so that the maps'
    resolutions tell them apart), and adamjax decodes them to those values."""
    rng = np.random.default_rng(5)
    g = rng.standard_normal((64, 512)) * 10.0 ** rng.uniform(-4, 0, (64, 512))
    params = jnp.zeros((64, 512))
    tx = adamjax.adam(1e-3, mu_dtype=Q8, nu_dtype=Q8)
    _, state = tx.update(jnp.asarray(g, jnp.float32), tx.init(params), params)
    for name, exact, signed in (("mu", 0.1 * g, True), ("nu", 1e-3 * g**2, False)):
        stored = getattr(state[0], name)
        decoded = _bnb_decode(stored, signed)
        _assert_nearest_values(decoded, exact, signed, block=256)
        np.testing.assert_allclose(np.asarray(codecs.decode(stored, signed)), decoded, rtol=1e-6)


def _block_bound(mapping: str, signed: bool) -> float:
    """The largest round-trip error of an entry over its block's scale: half the widest gap
    between adjacent values of the map, or, for an unsigned map, its smallest positive value
    if larger (a nonzero entry is never stored as 0)."""
    table = codecs.code_table(mapping, signed).astype(np.float64)
    half_gap = float(np.max(np.diff(table))) / 2
    return half_gap if signed else max(half_gap, float(table[table > 0].min()))


# Block peaks from the smallest subnormal to the largest float32, across 2**-126 (smallest
# normal) and 2**126 (above which 1 / peak is subnormal, which used to decode to zeros).
PEAKS = [2.0**-149, 1e-40, 2.0**-126, 1.5 * 2.0**-126, 1e-36, 1e-30, 1.0, 1e30, 8.6e37,
         2.0**126, 1e38, float(np.finfo(np.float32).max)]  # fmt: skip


@pytest.mark.parametrize("mapping", codecs.MAPPINGS)
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_every_finite_float32_block_round_trips_within_its_bound(mapping, signed):
    """|decoded - x| <= (h + eps) s + 2**-126 for every entry: h is _block_bound, s the block's
    largest magnitude, eps (2**-23) covers the float32 roundings of normalizing and decoding,
    and 2**-126 the flush of subnormal results to zero (XLA:CPU flushes them); a block whose
    peak is at most 2**-126 is stored as zeros."""
    rng = np.random.default_rng(7)
    peaks = np.asarray(PEAKS, np.float64)[:, None]
    x = rng.uniform(-1, 1, (len(PEAKS), 256)) * 10.0 ** -rng.uniform(0, 8, (len(PEAKS), 256))
    x[:, 0] = rng.choice([-1.0, 1.0], len(PEAKS))  # each block reaches its peak, either sign
    x = (np.abs(x) if not signed else x) * peaks
    x = x.astype(np.float32)
    q = codecs.quantize(jnp.asarray(x), mapping=mapping, signed=signed)
    y = np.asarray(codecs.dequantize(q, signed), np.float64)
    tiny = float(np.finfo(np.float32).tiny)
    s = np.abs(x).max(axis=-1, keepdims=True).astype(np.float64)
    assert np.all(np.isfinite(y))
    excess = np.abs(y - x) - ((_block_bound(mapping, signed) + EPS32) * s + tiny)
    assert np.all(excess <= 0), dict(zip(PEAKS, excess.max(axis=-1), strict=True))
    normal = s[:, 0] > tiny
    np.testing.assert_array_equal(np.asarray(q.scale)[normal, 0], s[normal, 0])
    assert np.all(y[~normal] == 0)


def test_signed_dynamic_map_shrinks_a_negative_peak_at_every_round_trip():
    """As bitsandbytes' map, the signed map holds 1 but not -1: its lowest value is the
    midpoint of the top bin, -(1 - 0.45 / 64). A block whose largest magnitude is negative so
    loses 0.45 / 64 = 0.70% of it at every decode and encode (0.494 of it is left after 100
    round trips); a positive peak is kept exactly. This pins the current behaviour, so that a
    change shows."""
    lowest = 1 - 0.9 / 64 / 2
    x = np.random.default_rng(8).uniform(-1, 1, 256).astype(np.float32)
    x[17] = -2.0
    round_trip = jax.jit(lambda v: codecs.dequantize(codecs.quantize(v), True))
    y, peaks = jnp.asarray(x), [2.0]
    for _ in range(100):
        y = round_trip(y)
        assert int(jnp.argmax(jnp.abs(y))) == 17
        peaks.append(-float(y[17]))
    np.testing.assert_allclose(np.diff(np.log(peaks)), np.log(lowest), rtol=1e-4)
    assert peaks[-1] / peaks[0] == pytest.approx(lowest**100, rel=1e-5)  # 0.4938
    x[17] = 2.0
    once = round_trip(jnp.asarray(x))
    assert float(once[17]) == 2.0
    np.testing.assert_array_equal(np.asarray(round_trip(once)), np.asarray(once))


# ---- layout ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "scale_shape"),
    [
        ((1000,), (4,)),  # 4 blocks of 250
        ((1001,), (4,)),  # 4 blocks of 251, the last one 248
        ((3, 300), (3, 2)),  # per row: 2 blocks of 150
        ((5, 100), (5, 1)),  # a row shorter than a block is one block
        ((2, 3, 512), (2, 3, 2)),
        ((), (1,)),
        ((0,), (0,)),
        ((4, 0), (4, 0)),
    ],
)
def test_block_layout_shapes_and_round_trip(shape, scale_shape):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal(shape).astype(np.float32))
    q = codecs.quantize(x)
    assert q.codes.shape == shape and q.codes.dtype == jnp.uint8
    assert q.scale.shape == scale_shape and q.scale.dtype == jnp.float32
    y = codecs.dequantize(q, signed=True)
    assert y.shape == shape and y.dtype == jnp.float32
    if x.size:
        assert float(jnp.max(jnp.abs(y - x))) <= 0.0071 * float(jnp.max(jnp.abs(x)))
    # The same through an optimizer, with every leaf quantized.
    tx = adamjax.adam(1e-3, mu_dtype=adamjax.q8(min_size=0), nu_dtype=adamjax.q8(min_size=0))
    state = tx.init(x)
    assert isinstance(state[0].mu, codecs.QuantizedArray)
    params, state = _step(tx)(x, state, x)
    assert params.shape == shape and bool(jnp.all(jnp.isfinite(params)))


def test_params_named_codes_and_scale_are_not_taken_for_a_quantized_leaf():
    params = {"layer": {"codes": jnp.ones((64, 128)), "scale": jnp.full((64, 128), 2.0)}}
    tx = adamjax.adam(1e-3, mu_dtype=Q8, nu_dtype=Q8)
    params2, state = _step(tx)(params, tx.init(params), params)
    mu = state[0].mu["layer"]
    assert isinstance(mu["codes"], codecs.QuantizedArray)
    assert isinstance(mu["scale"], codecs.QuantizedArray)
    assert not codecs.is_quantized(params["layer"]) and codecs.is_quantized(
        dict(mu["codes"]._asdict())
    )
    np.testing.assert_allclose(np.asarray(params2["layer"]["codes"]), 1 - 1e-3, rtol=1e-5)


def test_small_leaves_keep_float32_moments():
    params = {
        "big": jnp.ones((64, 64)),
        "small": jnp.ones((4095,)),
        "bf16": jnp.ones(8, jnp.bfloat16),
    }
    state = adamjax.adam(1e-3, mu_dtype=Q8, nu_dtype=Q8).init(params)[0]
    assert isinstance(state.mu["big"], codecs.QuantizedArray)
    assert state.mu["big"].codes.dtype == jnp.uint8 and state.mu["big"].mapping == "dynamic"
    assert state.mu["small"].dtype == jnp.float32 and state.nu["bf16"].dtype == jnp.float32


# ---- non-finite values ----------------------------------------------------------------------

NONFINITE = {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf}
# A leaf, one entry in it, and that entry's block: small leaves, and leaves of 4096 entries or
# more, from which XLA:CPU's maximum drops a NaN.
POISONED = {
    "300": ((300,), (200,), np.s_[150:300]),  # two blocks of 150
    "8192": ((8192,), (5000,), np.s_[4864:5120]),
    "16x1024": ((16, 1024), (3, 700), np.s_[3, 512:768]),
}


@pytest.mark.parametrize("leaf", list(POISONED))
@pytest.mark.parametrize("value", list(NONFINITE))
@pytest.mark.parametrize("mapping", codecs.MAPPINGS)
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_a_non_finite_entry_decodes_its_whole_block_to_nan(signed, mapping, value, leaf):
    """Its block's scale is NaN and its codes are those of 0 (whatever a backend makes of NaN
    as an integer); every other block is stored as without it."""
    shape, index, block = POISONED[leaf]
    x = np.random.default_rng(9).standard_normal(shape).astype(np.float32)
    x = x if signed else x**2
    clean = codecs.quantize(jnp.asarray(x), mapping=mapping, signed=signed)
    x[index] = NONFINITE[value]
    q = codecs.quantize(jnp.asarray(x), mapping=mapping, signed=signed)
    y = np.asarray(codecs.dequantize(q, signed))
    assert np.all(np.isnan(y[block]))
    zero = codecs.quantize(jnp.zeros(1), mapping=mapping, signed=signed).codes[0]
    assert np.all(np.asarray(q.codes)[block] == zero)
    others = np.ones(shape, bool)
    others[block] = False
    np.testing.assert_array_equal(np.asarray(q.codes)[others], np.asarray(clean.codes)[others])
    assert np.sum(np.isnan(np.asarray(q.scale))) == 1


@pytest.mark.parametrize("value", list(NONFINITE))
def test_a_non_finite_gradient_entry_stays_non_finite_in_q8_updates_and_state(value):
    """optax.apply_if_finite sees the gradient; the 8-bit state must not hide it either, in a
    small leaf or a large one: the entry's update and both moments are non-finite, and stay so
    at the next, finite step, while the other blocks stay finite."""
    q8 = adamjax.q8(min_size=0)
    tx = adamjax.adam(1e-3, mu_dtype=q8, nu_dtype=q8)
    rng = np.random.default_rng(10)
    params = {"small": jnp.ones(300), "large": jnp.ones((64, 128))}
    grads = {k: jnp.asarray(rng.standard_normal(p.shape), jnp.float32) for k, p in params.items()}
    where = {"small": ((200,), np.s_[150:300]), "large": ((10, 100), np.s_[10, :])}
    poisoned = {k: grads[k].at[i].set(NONFINITE[value]) for k, (i, _) in where.items()}
    update = jax.jit(tx.update)
    _, state = update(grads, tx.init(params), params)
    for g in (poisoned, grads):
        updates, state = update(g, state, params)
        for k, (i, block) in where.items():
            mu, nu = codecs.decode(state[0].mu[k], True), codecs.decode(state[0].nu[k], False)
            assert not np.isfinite(updates[k][i]), k
            assert not np.isfinite(mu[i]) and not np.isfinite(nu[i]), k
            assert np.all(np.isnan(mu[block])) and np.all(np.isnan(nu[block])), k
            others = np.ones(params[k].shape, bool)
            others[block] = False
            assert np.all(np.isfinite(mu[others])) and np.all(np.isfinite(nu[others])), k


# ---- fidelity -------------------------------------------------------------------------------


# tests/reference's float64 NumPy statement of each alias in ALIASES, same hyperparameters.
REFERENCES = {
    "adam": lambda: AdamReference(lambda k: 1e-3),
    "adamw": lambda: AdamReference(lambda k: 1e-3, weight_decay=1e-2),
    "amsgrad": lambda: AdamReference(lambda k: 1e-3, amsgrad=True),
    "nadam": lambda: NadamReference(lambda k: 1e-3),
}


@pytest.mark.parametrize("alias", list(ALIASES))
def test_q8_steps_match_numpy_float64_adam_at_bitsandbytes_tolerances(alias):
    """bitsandbytes' test_optimizer8bit protocol, against the float64 NumPy reference: at each
    step both take the same gradient from the same params; the params must agree at
    bitsandbytes' float32 tolerances, and each stored moment, decoded with the bitsandbytes map
    built in this file, must be the reference's new moment rounded to a nearest value of that
    map. Then, as there, the reference continues from the stored moments, and both runs from
    the 8-bit run's params, so each step's error is that step's alone."""
    rng = np.random.default_rng(0)
    shape = (256, 512)  # two blocks per row
    params = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    tx, ref = ALIASES[alias](mu_dtype=Q8, nu_dtype=Q8), REFERENCES[alias]()
    step, state = _step(tx), tx.init(jnp.asarray(params))
    v_max = vars(ref).get("v_max")  # AMSGrad's
    memories = {"mu": (ref.m, True), "nu": (ref.v, False), "nu_max": (v_max, False)}
    for _ in range(20):
        g = (rng.standard_normal(shape) * 0.01).astype(np.float32)
        expected = ref.step({"w": params.astype(np.float64)}, {"w": g})["w"]
        new, state = step(jnp.asarray(params), state, jnp.asarray(g))
        err = np.abs(np.asarray(new, np.float64) - expected)
        # bitsandbytes' float32 thresholds: mean absolute and relative error, and per entry.
        assert err.mean() < 6e-5 and np.mean(err / (np.abs(expected) + 1e-9)) < 6e-4
        assert np.all(err <= 1e-5 + 1e-3 * np.abs(expected))
        # And the step is float32 arithmetic on the stored moments: only the new param's
        # rounding (an ulp) and the update's differ. float32 holds b2 = 0.999 as 0.99900001, so
        # 1 - b2 is off by 1.3e-5 of itself, and the updates here stay below 3 lr (2.3 lr).
        assert np.all(err <= np.spacing(np.abs(expected).astype(np.float32)) + 1.3e-5 * 3e-3)
        moments = state[moments_at(state)]
        for name, (memory, signed) in memories.items():
            if getattr(moments, name, None) is not None:
                decoded = _bnb_decode(getattr(moments, name), signed)
                _assert_nearest_values(decoded, memory["w"], signed, block=256)
                memory["w"] = decoded
        params = np.asarray(new)


@pytest.mark.parametrize("alias", list(ALIASES))
def test_q8_moments_stay_close_to_float32_moments(alias):
    """The moments evolve on their own (8 bits against float32) and only the params are shared:
    each step's error is what 50 steps of quantized moments cost. Measured on this seed: mean
    absolute 3-5e-6 (the issue's bound is 6e-5); mean relative 4e-4 to 1.1e-3, which the few
    near-zero params dominate (asserted: 2e-3; docs/memory.md gives the figures)."""
    kw = {"mu_dtype": Q8, "nu_dtype": Q8}
    err, rel = fidelity(ALIASES[alias], kw, "moments drift")
    assert err < 6e-5 and rel < 2e-3
    bf16 = {"mu_dtype": jnp.bfloat16, "nu_dtype": jnp.bfloat16}
    bf16_err, _ = fidelity(ALIASES[alias], bf16, "moments drift")
    assert bf16_err < err  # 16 bits are closer than 8


def test_quantized_state_decodes_to_the_float32_moments():
    rng = np.random.default_rng(2)
    params = jnp.asarray(rng.standard_normal((256, 256)).astype(np.float32))
    ref, q = adamjax.amsgrad(1e-3), adamjax.amsgrad(1e-3, mu_dtype=Q8, nu_dtype=Q8)
    rs, qs = ref.init(params), q.init(params)
    for t in range(5):
        g = jnp.asarray(rng.standard_normal((256, 256)).astype(np.float32)) * (t + 1)
        _, rs = ref.update(g, rs, params)
        _, qs = q.update(g, qs, params)
    for name, bound in (("mu", 0.0071), ("nu", 0.0036), ("nu_max", 0.0036)):
        ours, theirs = codecs.decode(getattr(qs[0], name), name == "mu"), getattr(rs[0], name)
        peak = float(jnp.max(jnp.abs(theirs)))
        assert float(jnp.max(jnp.abs(ours - theirs))) < 2 * bound * peak, name


# ---- memory and checkpoints -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mu", "nu", "low", "high"),
    [(None, None, 8.0, 8.0001), (jnp.bfloat16, jnp.bfloat16, 4.0, 4.0001), (Q8, Q8, 2.0, 2.1)],
    ids=["float32", "bfloat16", "q8"],
)
def test_state_bytes_per_parameter_on_the_gpt2_tree(mu, nu, low, high):
    shapes = gpt2_small_shapes()
    params = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in shapes.items()}
    state = jax.eval_shape(adamjax.adamw(1e-3, mu_dtype=mu, nu_dtype=nu).init, params)
    nbytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    assert low <= nbytes / count(shapes) <= high


@pytest.mark.parametrize("fmt", [Q8, adamjax.stochastic_bf16(seed=3)], ids=["q8", "sr-bf16"])
def test_orbax_round_trip_resumes_bit_identically(tmp_path, fmt):
    ocp = pytest.importorskip("orbax.checkpoint")
    rng = np.random.default_rng(4)
    params = {"w": jnp.asarray(rng.standard_normal((64, 512)).astype(np.float32)),
              "b": jnp.zeros(16)}  # fmt: skip
    grads = [jax.tree.map(lambda p, i=i: jnp.sin(p * (i + 1)), params) for i in range(6)]
    tx = adamjax.amsgrad(1e-3, mu_dtype=fmt, nu_dtype=fmt)
    step = _step(tx)
    p, s = params, tx.init(params)
    for g in grads[:3]:
        p, s = step(p, s, g)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "ckpt", {"params": p, "opt": s})
    checkpointer.wait_until_finished()
    target = jax.eval_shape(lambda: {"params": params, "opt": tx.init(params)})
    restored = checkpointer.restore(tmp_path / "ckpt", target)
    jax.tree.map(np.testing.assert_array_equal, restored["opt"], s)
    p2, s2 = restored["params"], restored["opt"]
    for g in grads[3:]:
        p, s = step(p, s, g)
        p2, s2 = step(p2, s2, g)
    jax.tree.map(np.testing.assert_array_equal, (p2, s2), (p, s))


# ---- sharding -------------------------------------------------------------------------------

_SHARDED = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import adamjax
    from adamjax import _formats as codecs

    mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"))
    rng = np.random.default_rng(0)
    shapes = {"w": (64, 2048), "e": (128, 1024), "b": (2048,)}
    host = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}

    def spec(x):
        return NamedSharding(mesh, {2: P("data", "model"), 1: P("model"), 0: P()}[x.ndim])

    out = {}
    for alias in ("adam", "adamw", "amsgrad", "nadam"):
        kw = {"mu_dtype": adamjax.q8(), "nu_dtype": adamjax.q8()}
        tx = getattr(adamjax, alias)(1e-3, **kw)
        step = lambda p, s, g: (lambda u, s: (optax.apply_updates(p, u), s))(*tx.update(g, s, p))
        params = jax.tree.map(lambda x: jax.device_put(x, spec(x)), host)
        state = jax.tree.map(lambda x: jax.device_put(x, spec(x)), tx.init(host))
        grads = jax.tree.map(lambda x: jax.device_put(0.01 * x, spec(x)), host)
        compiled = jax.jit(step).lower(params, state, grads).compile()
        hlo = compiled.as_text()
        found = [op for op in ("all-gather", "all-reduce", "collective-permute", "all-to-all",
                               "reduce-scatter") if op in hlo]
        p, s = compiled(params, state, grads)
        one = jax.devices()[0]
        inputs = (host, tx.init(host), jax.tree.map(lambda x: 0.01 * x, host))
        p1, s1 = jax.jit(step)(*jax.device_put(inputs, one))
        codes = next(x for x in s if hasattr(x, "mu")).mu["w"].codes
        out[alias] = {
            "collectives": found,
            "same": all(bool(np.array_equal(np.asarray(a), np.asarray(b)))
                        for a, b in zip(jax.tree.leaves((p, s)), jax.tree.leaves((p1, s1)))),
            "codes_sharding": list(codes.sharding.spec),
            "param_sharding": list(p["w"].sharding.spec),
            "devices": len(codes.sharding.device_set),
        }
    print(json.dumps(out))
    """
)


def test_quantized_update_needs_no_collectives_on_eight_devices():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", _SHARDED], env=env, capture_output=True,
                          text=True, check=False, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for alias, r in result.items():
        assert r["collectives"] == [], alias
        assert r["same"], alias
        assert r["codes_sharding"] == r["param_sharding"] == ["data", "model"]
        assert r["devices"] == 8


# ---- stochastic rounding --------------------------------------------------------------------


def test_stochastic_rounding_is_unbiased_and_keeps_nan_and_inf():
    x = jnp.full((200_000,), 1 + 2**-10, jnp.float32)  # a quarter of bf16's last place above 1
    y = codecs.stochastic_round_bf16(x, jax.random.key(0)).astype(jnp.float32)
    assert set(np.unique(np.asarray(y))) == {1.0, 1 + 2**-7}
    assert float(jnp.mean(y)) == pytest.approx(1 + 2**-10, abs=2e-5)
    special = jnp.asarray([jnp.nan, jnp.inf, -jnp.inf, 0.0, -0.0, 3.0])
    z = codecs.stochastic_round_bf16(special, jax.random.key(1)).astype(jnp.float32)
    assert np.isnan(z[0]) and z[1] == np.inf and z[2] == -np.inf
    np.testing.assert_array_equal(np.asarray(z[3:]), [0.0, 0.0, 3.0])


def test_stochastic_rounding_keys_differ_across_seeds_counts_leaves_and_slots():
    """step_key gives every (seed, count, leaf, slot) its own key, and update_leaves gives each
    moment its own leaf and slot: two leaves holding the same values, and the two moments of
    one leaf, round with different noise (a collision would round them identically)."""
    seen = {}
    for seed, step, leaf, slot in np.ndindex(2, 3, 5, 4):
        key = codecs.step_key(seed, jnp.int32(step), leaf, slot)
        seen.setdefault(np.asarray(jax.random.key_data(key)).tobytes(), []).append(
            (seed, step, leaf, slot)
        )
    assert [v for v in seen.values() if len(v) > 1] == []

    x = jnp.full((2048,), 1 + 2**-10, jnp.float32)  # an eighth of bfloat16's last place above 1
    fmt = adamjax.stochastic_bf16(seed=0)
    zeros = {"a": jnp.zeros(2048, jnp.bfloat16), "b": jnp.zeros(2048, jnp.bfloat16)}
    stored = [codecs.Stored(zeros, fmt, signed=True), codecs.Stored(zeros, fmt, signed=False)]

    def rounded(step):
        def leaf(g, m, v, *, settle):
            settle(x, x)
            return g

        _, (mu, nu) = codecs.update_leaves("test", leaf, zeros, stored, jnp.int32(step))
        return [np.asarray(t[k], np.float32) for t in (mu, nu) for k in ("a", "b")]

    first, again, later = rounded(1), rounded(1), rounded(2)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    for i, j in [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]:
        assert not np.array_equal(first[i], first[j]), (i, j)
    assert all(not np.array_equal(a, b) for a, b in zip(first, later, strict=True))


def test_stochastic_bf16_moments_are_deterministic_and_track_small_increments():
    params = jnp.ones((4096,))
    grads = jnp.full((4096,), 1e-2)

    def run(fmt, steps=300):
        tx = adamjax.adam(1e-3, b2=0.9999, nu_dtype=fmt)
        p, s = params, tx.init(params)
        step = _step(tx)
        for _ in range(steps):
            p, s = step(p, s, grads)
        return s[0].nu

    a, b = run(adamjax.stochastic_bf16(seed=1)), run(adamjax.stochastic_bf16(seed=1))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(run(adamjax.stochastic_bf16(seed=2))))
    exact = np.asarray(run(None), np.float64)[0]
    nearest = np.asarray(run(jnp.bfloat16), np.float64)[0]
    stochastic = np.asarray(a, np.float64).mean()
    # Increments of 1e-4 of v are below bf16's resolution: rounding to nearest stalls.
    assert abs(stochastic - exact) < 0.02 * exact < abs(nearest - exact)


def test_stochastic_rounding_of_bf16_params():
    params = {"w": jnp.ones((100_000,), jnp.bfloat16), "f": jnp.ones(3)}
    grads = jax.tree.map(jnp.ones_like, params)
    tx = optax.chain(optax.sgd(1e-4), adamjax.stochastic_rounding(seed=0))
    updates, state = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    assert new["w"].dtype == jnp.bfloat16
    assert float(jnp.mean(new["w"].astype(jnp.float32))) == pytest.approx(1 - 1e-4, abs=2e-5)
    sgd = optax.sgd(1e-4)
    plain = optax.apply_updates(params, sgd.update(grads, sgd.init(params), params)[0])
    assert float(jnp.min(plain["w"])) == 1.0  # rounding to nearest never moves it
    np.testing.assert_allclose(np.asarray(new["f"]), 1 - 1e-4, rtol=1e-6)
    assert int(state[1].rounding_count) == 1
    with pytest.raises(ValueError, match=r"stochastic_rounding: update\(\) needs params"):
        tx.update(grads, tx.init(params))


# ---- float16 --------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["adam", "adamw", "amsgrad", "nadam", "adamax", "radam"])
def test_float16_zero_and_tiny_gradients_give_finite_bounded_updates(alias):
    make = getattr(adamjax, alias)
    params = {"w": jnp.ones((64,), jnp.float16)}
    tx = make(1e-3, mu_dtype=jnp.float16, nu_dtype=jnp.float16)
    state = tx.init(params)
    for g in (0.0, 0.0, 1e-3, 1e-4, 0.0):
        grads = {"w": jnp.full((64,), g, jnp.float16)}
        updates, state = tx.update(grads, state, params)
        u = np.asarray(updates["w"], np.float32)
        assert np.all(np.isfinite(u)), (alias, g)
        assert np.all(np.abs(u) <= 1e-2), (alias, g, u[0])  # lr 1e-3: steps of order lr
    nu = state[moments_at(state)].nu["w"]
    assert nu.dtype == jnp.float16
    assert float(jnp.min(nu)) > 0  # the tiny second moment did not flush to zero


# ---- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: adamjax.q8(block_size=0), ValueError, r"q8: block_size must be an integer >= 1"),
        (lambda: adamjax.q8(block_size=2.5), TypeError, r"q8: block_size must be an integer"),
        (lambda: adamjax.q8(mapping="log"), ValueError, r"q8: mapping must be one of 'dynamic'"),
        (lambda: adamjax.q8(min_size=-1), ValueError, r"q8: min_size must be an integer >= 0"),
        (lambda: adamjax.stochastic_bf16(seed=-1), ValueError, r"seed must be an integer >= 0"),
        (lambda: adamjax.stochastic_rounding(seed=1.5), TypeError, r"seed must be an integer"),
        (lambda: adamjax.adam(1e-3, mu_dtype="int8"), ValueError, r"adam: mu_dtype must be None"),
        (
            lambda: adamjax.adam(1e-3, mu_dtype=Q8).init(jnp.ones(5000, jnp.complex64)),
            TypeError,
            r"q8: 8-bit moments are for real params",
        ),
    ],
)
def test_bad_formats_are_rejected_by_name(build, error, message):
    with pytest.raises(error, match=message):
        build()


# ---- the step from the stored moments -------------------------------------------------------

# The parameters through which the public functions take a moment format.
FORMAT_ARGS = ("mu_dtype", "nu_dtype", "state_dtype", "prev_grad_dtype")
# Those that take a plain dtype only (a factored statistic has no format): given bfloat16 here.
DTYPE_ONLY = {name: {"nu_dtype"} for name in ("came", "scale_by_came", "scale_by_factored_rms")}


def _takes_formats(name: str) -> bool:
    fn = getattr(adamjax, name)
    if isinstance(fn, type) or not callable(fn):
        return False
    params = set(inspect.signature(fn).parameters) & set(FORMAT_ARGS)
    return bool(params - DTYPE_ONLY.get(name, set()))


# Every public alias and piece that stores a moment in a format, found in adamjax.__all__, so
# that a new one is tested without being listed.
FAMILY = [name for name in adamjax.__all__ if _takes_formats(name)]
# State leaves other than moments that are functions of the step taken, so that they differ
# when the step does: LAMB's trust ratio (the update's norm), SWATS's average of projected rates
# (dot products of the Adam step) and Schedule-Free's z (the sum of the base's steps).
FOLLOWS_THE_STEP = {"lamb": ["trust_ratio"], "swats": ["rate_ema"], "scale_by_swats": ["rate_ema"],
                    "schedule_free": [".z"], "schedule_free_adamw": [".z"]}  # fmt: skip


def _family_member(name: str, fmt) -> optax.GradientTransformation:
    """``name`` with every moment in ``fmt`` (a dtype-only moment in bfloat16; Schedule-Free's
    z, which is not a moment, in the params' dtype), at a learning rate of 1e-3."""
    fn = getattr(adamjax, name)
    if name == "schedule_free":
        return fn(adamjax.adam(1e-3, mu_dtype=fmt, nu_dtype=fmt), 1e-3)
    params = inspect.signature(fn).parameters
    only = DTYPE_ONLY.get(name, set())
    kw = {a: jnp.bfloat16 if a in only else fmt for a in FORMAT_ARGS if a in params}
    kw.pop("state_dtype", None)
    return fn(*((1e-3,) if "learning_rate" in params else ()), **kw)


def _fixed_gradient_run(tx, steps: int = 4, params=None):
    """``steps`` jitted updates of ``tx`` at fixed params with gradients drawn once (seed 11):
    the updates of every step and the final state."""
    rng = np.random.default_rng(11)
    if params is None:
        params = {"w": rng.standard_normal((32, 48)), "b": rng.standard_normal(48)}
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
    grads = [jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), p.dtype), params)
             for _ in range(steps)]  # fmt: skip
    update, state, updates = jax.jit(tx.update), tx.init(params), []
    for g in grads:
        u, state = update(g, state, params)
        updates.append(u)
    return updates, state


def test_the_family_is_every_piece_that_takes_a_format():
    assert {"adam", "amsgrad", "scale_by_adam", "adan", "came", "swats", "schedule_free",
            "schedule_free_adamw", "adam_mini", "lamb", "stable_adamw"} <= set(FAMILY)  # fmt: skip
    assert "scale_by_factored_rms" not in FAMILY and "adafactor" not in FAMILY
    assert set(FOLLOWS_THE_STEP) <= set(FAMILY)


@pytest.mark.parametrize("name", FAMILY)
def test_step_from_stored_bf16_keeps_the_state_and_moves_the_step_by_bf16_rounding(name):
    """With the same gradients, step_from_stored(bfloat16) stores bitwise the moments that
    bfloat16 stores (the moments are computed before they are stored, either way), and every
    other state leaf is the same but those that follow the step taken (FOLLOWS_THE_STEP).
    The updates differ, by bfloat16's rounding of the moments: at most 2**-8 of each moment
    (half a unit in its last place), so an Adam-like direction moves by at most about
    1.5 * 2**-8 = 0.6% of itself (Adamax's infinity norm, not square-rooted: 2**-7), and sums
    in the direction (Adan, AdEMAMix, NAdam) may cancel. Measured: at most 0.62% of each
    leaf's largest update over 4 steps; asserted: 2%."""
    plain, plain_state = _fixed_gradient_run(_family_member(name, jnp.bfloat16))
    stored, state = _fixed_gradient_run(
        _family_member(name, adamjax.step_from_stored(jnp.bfloat16))
    )
    paths = jax.tree_util.tree_flatten_with_path(state)[0]
    moments = 0
    for (path, a), b in zip(paths, jax.tree.leaves(plain_state), strict=True):
        where = jax.tree_util.keystr(path)
        moments += a.dtype == jnp.bfloat16
        if not any(field in where for field in FOLLOWS_THE_STEP.get(name, [])):
            assert_bitwise_equal(a, b, f"{name}: state{where}")
    assert moments >= 2, name
    pairs = [
        (np.asarray(a, np.float64), np.asarray(b, np.float64))
        for a, b in zip(jax.tree.leaves(stored), jax.tree.leaves(plain), strict=True)
    ]
    assert not all(np.array_equal(a, b) for a, b in pairs), name
    for a, b in pairs:  # (ADOPT's first update is 0, from either)
        assert np.max(np.abs(a - b)) <= 2e-2 * np.max(np.abs(b)), name


@pytest.mark.parametrize(
    "name",
    [n if n in ("adam", "amsgrad") else pytest.param(n, marks=pytest.mark.slow) for n in FAMILY],
)
def test_step_from_stored_float32_is_the_plain_step(name):
    """Stored as float32 params' own dtype, a moment reads back as it was computed: the run is
    bitwise the plain one, updates and state. The default layer checks Adam and AMSGrad, the
    slow layer every piece; the bfloat16 sweep above runs every piece through the option in
    the default layer."""
    for fmt in (None, jnp.float32):
        expected = _fixed_gradient_run(_family_member(name, fmt), steps=2)
        actual = _fixed_gradient_run(_family_member(name, adamjax.step_from_stored(fmt)), steps=2)
        assert_bitwise_equal(actual, expected, f"{name}, {fmt}")


STORED_FORMATS = {
    "bf16": jnp.bfloat16,
    "f16": jnp.float16,
    "sr-bf16": adamjax.stochastic_bf16(seed=3),
    "q8": adamjax.q8(min_size=0),
    "q8-linear": adamjax.q8(mapping="linear", min_size=0),
}


@pytest.mark.parametrize("max_of", [None, "raw", "corrected"], ids=["adam", "raw", "corrected"])
@pytest.mark.parametrize("fmt", list(STORED_FORMATS))
def test_adam_step_is_the_direction_of_the_decoded_stored_moments(fmt, max_of):
    """Each update is, to float32 rounding, Adam's direction computed in float64 NumPy from the
    moments of the state that the step returns, decoded (mu, and nu or AMSGrad's running
    maximum nu_max), with the bias corrections the state records (float32 1 - b**t, within
    1e-4 of 1 - b**t computed in float64 from the same float32 b). The plain format's update is
    not: it is taken from the moments before they are stored. The state is bitwise the plain
    format's (stochastic rounding: the same seed, so the same bits).

    Float32 rounding: the step rounds 1 / (1 - b**t) and m times it (twice 2**-24 of the update,
    half an ulp each), the same for v (once 2**-24 through the square root), the square root,
    the sum with eps, the quotient and the product with the learning rate, which is itself
    float32's 1e-3 (4.7e-8 off): 7 * 2**-24 + 4.7e-8 = 4.6e-7 of the update at most. Measured:
    4.3e-7 (q8-linear). Asserted: 2e-6."""
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8

    def make(f):
        if max_of is None:
            return adamjax.adam(lr, b1, b2, eps, mu_dtype=f, nu_dtype=f)
        return adamjax.amsgrad(lr, b1, b2, eps, mu_dtype=f, nu_dtype=f, max_of=max_of)

    tx, plain = make(adamjax.step_from_stored(STORED_FORMATS[fmt])), make(STORED_FORMATS[fmt])
    rng = np.random.default_rng(12)
    params = jnp.asarray(rng.standard_normal((16, 512)), jnp.float32)  # 2 blocks of 256 a row
    state, plain_state = tx.init(params), plain.init(params)
    update, plain_update = jax.jit(tx.update), jax.jit(plain.update)
    for t in range(1, 6):
        g = jnp.asarray(rng.standard_normal((16, 512)) * 10.0 ** rng.uniform(-3, 0), jnp.float32)
        u, state = update(g, state, params)
        u_plain, plain_state = plain_update(g, plain_state, params)
        assert_bitwise_equal(state, plain_state, f"step {t}")
        moments = state[moments_at(state)]
        m = np.asarray(codecs.decode(moments.mu, True), np.float64)
        second = moments.nu if max_of is None else moments.nu_max
        v = np.asarray(codecs.decode(second, False), np.float64)
        c1, c2 = (
            float(x) for x in (moments.last_step.m_correction, moments.last_step.v_correction)
        )
        for c, b in ((c1, b1), (c2, b2)):
            assert c == pytest.approx(1 - float(np.float32(b)) ** t, rel=1e-4)
        v_hat = v if max_of == "corrected" else v / c2
        expected = -lr * adam_direction(m / c1, v_hat, eps)
        np.testing.assert_allclose(np.asarray(u, np.float64), expected, rtol=2e-6, atol=0)
        gap = np.max(np.abs(np.asarray(u_plain, np.float64) - expected)) / np.max(np.abs(expected))
        assert gap > 1e-4, (t, gap)  # storage rounds more than float32 (float16: 2**-12 and up)


def _copies_of(tx, shapes: dict) -> list[str]:
    """The shapes of the ``copy`` instructions in the compiled jitted step that donates its
    params and state."""
    params = {k: jnp.ones(s) for k, s in shapes.items()}

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params), params)
    text = compiled.compile().as_text()
    return re.findall(r"= \w+\[([\d,]*)\]\{[^}]*\} copy\(", text)


def test_step_from_stored_bf16_needs_no_copy_of_a_donated_moment():
    """The reason for the option. Donated, the new bfloat16 moments are written over the old
    ones. Plain bfloat16: XLA takes the step from the old moments (it recomputes the moments'
    EMA in the update's loop instead of reading the float32 ones back), so it must first copy
    the old moments: two param-shaped copies per leaf here. From the stored moments, the step
    reads the new ones and no param-shaped array is copied (scalars may be)."""
    shapes = {k: (256, 256) for k in "abc"}
    param_shaped = "256,256"

    def copies(fmt):
        return _copies_of(adamjax.adam(1e-3, mu_dtype=fmt, nu_dtype=fmt), shapes)

    assert copies(jnp.bfloat16).count(param_shaped) > 0
    assert param_shaped not in copies(adamjax.step_from_stored(jnp.bfloat16))


def _toy_leaf_run(leaf):
    zeros = {"a": jnp.zeros(8), "b": jnp.zeros(8)}
    stored = [codecs.Stored(zeros, None, signed=True), codecs.Stored(zeros, None, signed=False)]
    return codecs.update_leaves("toy", leaf, zeros, stored, jnp.int32(1))


def test_a_leaf_that_does_not_settle_its_moments_once_is_an_internal_error():
    """A piece whose per-leaf function forgets settle (or calls it twice, or with too few
    moments) fails loudly, naming the piece, instead of keeping stale moments."""

    def forgets(g, m, v, *, settle):
        return g

    def twice(g, m, v, *, settle):
        settle(m, v)
        settle(m, v)
        return g

    def short(g, m, v, *, settle):
        settle(m)
        return g

    for leaf in (forgets, twice, short):
        with pytest.raises(RuntimeError, match=r"^toy: internal error: .*settle"):
            _toy_leaf_run(leaf)

    def once(g, m, v, *, settle):
        m, v = settle(m + g, v + 1)
        return m + v

    updates, (mu, nu) = _toy_leaf_run(once)
    np.testing.assert_array_equal(np.asarray(updates["a"]), 1.0)
    np.testing.assert_array_equal(np.asarray(mu["a"]), 0.0)
    np.testing.assert_array_equal(np.asarray(nu["b"]), 1.0)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: adamjax.step_from_stored("int8"), ValueError,
         r"^step_from_stored: fmt must be None, one of bfloat16, .* got 'int8'"),
        (lambda: adamjax.step_from_stored(3), ValueError, r"^step_from_stored: fmt .* got 3$"),
        (lambda: adamjax.step_from_stored("bf16"), ValueError, r"got 'bf16'"),
        (lambda: adamjax.adam(1e-3, nu_dtype=adamjax.step_from_stored(jnp.complex64)),
         ValueError, r"^adam: nu_dtype must be None, one of .*adamjax.step_from_stored"),
        (lambda: adamjax.adam(1e-3, mu_dtype=adamjax.step_from_stored(jnp.complex64)).init(
            jnp.ones(3)), TypeError, r"^adam: mu_dtype complex64 is complex, but the param"),
        (lambda: adamjax.schedule_free_adamw(1e-3, state_dtype=adamjax.step_from_stored(Q8)),
         ValueError, r"^schedule_free_adamw: state_dtype cannot be adamjax.q8\(\)"),
        (lambda: adamjax.came(1e-3, nu_dtype=adamjax.step_from_stored(jnp.bfloat16)),
         ValueError, r"^came: nu_dtype must be None or one of jnp.bfloat16"),
    ],
)  # fmt: skip
def test_bad_step_from_stored_is_rejected_by_name(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_step_from_stored_is_idempotent_hashable_and_stores_like_its_format():
    once = adamjax.step_from_stored(adamjax.stochastic_bf16(seed=5))
    assert adamjax.step_from_stored(once) is once
    assert once == adamjax.step_from_stored(adamjax.stochastic_bf16(seed=5))
    assert hash(once) == hash(adamjax.step_from_stored(adamjax.stochastic_bf16(seed=5)))
    assert once.needs_key and once.seed == 5
    assert not adamjax.step_from_stored(Q8).needs_key
    presets = adamjax.moment_presets()
    assert presets["bfloat16-stored"] == {
        "mu_dtype": adamjax.step_from_stored(jnp.bfloat16),
        "nu_dtype": adamjax.step_from_stored(jnp.bfloat16),
    }
    params = {"w": jnp.ones((64, 128)), "b": jnp.ones(3, jnp.bfloat16)}
    for fmt in (None, jnp.bfloat16, adamjax.stochastic_bf16(), Q8):
        wrapped = adamjax.adam(1e-3, mu_dtype=adamjax.step_from_stored(fmt), nu_dtype=fmt)
        expected = adamjax.adam(1e-3, mu_dtype=fmt, nu_dtype=fmt).init(params)
        assert_bitwise_equal(wrapped.init(params), expected, str(fmt))


def test_step_from_stored_composes_with_inject_hyperparams_and_chain():
    """Under jit, inject_hyperparams(adamw) with the learning rate and the decay injected, and a
    chain of the piece, give the alias' updates bit for bit. (b1 and b2 stay static: injected,
    they become float32 arrays whose 1 - b rounds otherwise than the Python float's, for every
    format; bfloat16 moments then differ in their last place, which shows in the updates.)"""
    fmt = adamjax.step_from_stored(jnp.bfloat16)
    alias = adamjax.adamw(1e-3, weight_decay=1e-2, mu_dtype=fmt, nu_dtype=fmt)
    injected = optax.inject_hyperparams(adamjax.adamw, static_args=("b1", "b2", "eps", "eps_root"))(
        learning_rate=1e-3, weight_decay=1e-2, mu_dtype=fmt, nu_dtype=fmt
    )
    chained = optax.chain(
        adamjax.scale_by_adam(mu_dtype=fmt, nu_dtype=fmt),
        optax.add_decayed_weights(1e-2),
        optax.scale(-1e-3),
    )
    expected, expected_state = _fixed_gradient_run(alias, steps=3)
    for tx in (injected, chained):
        actual, state = _fixed_gradient_run(tx, steps=3)
        assert_bitwise_equal(actual, expected, "updates")
        moments = state.inner_state[0] if tx is injected else state[0]
        assert_bitwise_equal(moments.mu, expected_state[0].mu, "mu")
        assert moments.mu["w"].dtype == jnp.bfloat16
