"""Moment storage formats (adamjax._formats): the 8-bit maps, block layout, fidelity against float32
Adam, memory, checkpoints, sharding, stochastic rounding and float16 safety."""

from __future__ import annotations

import json
import os
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

Q8 = adamjax.q8()


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


# ---- fidelity -------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", list(ALIASES))
def test_q8_one_step_matches_float32_adam_at_bitsandbytes_tolerances(alias):
    """From the same params and the decoded moments, the 8-bit step is float32 Adam's: the
    update is computed in float32 before the new moments are quantized."""
    kw = {"mu_dtype": Q8, "nu_dtype": Q8}
    err, rel = fidelity(ALIASES[alias], kw, "one step")
    assert err < 6e-5 and rel < 6e-4
    assert err < 1e-8  # in fact the same float32 arithmetic


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
