"""Every optimizer on a 2x4 mesh of eight fake CPU devices: where its state lives, which collectives
its compiled update needs, and that the sharded update computes what one device computes.

The checks run in one child process started with ``--xla_force_host_platform_device_count=8``
(the flag must be set before JAX starts, and this process has started it already). The child
prints one JSON report; the tests below read it, one test per optimizer and property.

The params are a (16, 32) matrix on ``P("data", "model")``, a (32,) vector on ``P("model")``, an
(8, 16, 4) tensor on ``P("data", "model")`` and a scalar on ``P()``. A state leaf *follows* its
param when its sharding is the one this rule derives from the param's (``_CHILD``'s
``expected_spec``):

* a leaf of the param's shape (``mu``, ``nu``, ``nu_max``, the 8-bit ``codes``, ...) has exactly
  the param's sharding;
* a leaf of the param's shape less one axis (Adafactor's ``v_row`` and ``v_col``) has the param's
  spec less that axis: ``v_row`` of the matrix, shape (16,), is on ``P("data")`` and ``v_col``,
  (32,), on ``P("model")``;
* a leaf of the param's shape with a block axis last (the 8-bit ``scale``) keeps the leading
  axes' spec; the block axis here has one block, so it is unsharded;
* anything else (``count``, per-leaf scalars, the ``(1,)`` placeholders) is replicated.

The sharded updates run under auto mesh axes (``AxisType.Auto``), where the compiler propagates
shardings itself, and the rule is exactly what it gives every state leaf
(``test_update_keeps_state_sharding``). ``jax.jit(tx.init)`` runs under both kinds of axes. Under
explicit axes (``AxisType.Explicit``) the params' shardings are part of their types. Under auto
axes a traced param carries no sharding, and a zero built from its shape alone is a constant the
compiler puts on one device (``optax.adam`` does); adamjax ties each zero to its param
(``adamjax._formats.zeros_like_param``) so that propagation places it, and the params given to
that init hold NaN and infinities, which must not reach the zero state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

# An exhaustive layer: run with `pytest -m slow` (.ci/run does).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

# name -> the expression that builds it in the child (``adamjax``, ``optax`` are in scope).
OPTIMIZERS: dict[str, str] = {
    "adam": "adamjax.adam(1e-3)",
    "adamw": "adamjax.adamw(1e-3, weight_decay=1e-2)",
    "amsgrad_raw": "adamjax.amsgrad(1e-3, max_of='raw')",
    "amsgrad_corrected": "adamjax.amsgrad(1e-3, max_of='corrected')",
    "nadam": "adamjax.nadam(1e-3)",
    "adamax": "adamjax.adamax(1e-3)",
    "radam": "adamjax.radam(1e-3)",
    "adabound": "adamjax.adabound(1e-3)",
    "amsbound": "adamjax.adabound(1e-3, amsbound=True)",
    # min_dim_size_to_factor=8 so that the matrix and the 3-d tensor are factored; momentum adds
    # a first moment of each param's shape.
    "adafactor": "adamjax.adafactor(1e-2, min_dim_size_to_factor=8, momentum=0.9)",
    "swats": "adamjax.swats(1e-3)",
    "adam_diagnostics": "adamjax.with_diagnostics(adamjax.adam(1e-3))",
    "adam_q8": "adamjax.adam(1e-3, mu_dtype=adamjax.q8(min_size=0), "
    "nu_dtype=adamjax.q8(min_size=0))",
    # The modern family and the modifiers.
    "lamb": "adamjax.lamb(1e-3, weight_decay=1e-2)",
    "adabelief": "adamjax.adabelief(1e-3)",
    "yogi": "adamjax.yogi(1e-3)",
    "adan": "adamjax.adan(1e-3, weight_decay=1e-2)",
    "nadamw": "adamjax.nadamw(1e-3)",
    "adamaxw": "adamjax.adamaxw(1e-3)",
    "laprop": "adamjax.laprop(1e-3)",
    "adopt": "adamjax.adopt(1e-3)",
    "ademamix": "adamjax.ademamix(1e-3)",
    "simplified_ademamix": "adamjax.simplified_ademamix(1e-4, alpha=1.0)",
    "schedule_free_adamw": "adamjax.schedule_free_adamw(1e-3, warmup_steps=2)",
    "adam_mini": "adamjax.adam_mini(1e-3)",
    "came": "adamjax.came(1e-3)",
    "stable_adamw": "adamjax.stable_adamw(1e-3)",
    "adam_atan2": "adamjax.adam_atan2(1e-3)",
    "cautious_adamw": "adamjax.cautious(adamjax.adamw(1e-3))",
}

# The other moment formats, whose update is elementwise like adam's: only their init is checked.
INIT_ONLY: dict[str, str] = {
    "adam_bf16": "adamjax.adam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)",
    "adam_stochastic_bf16": "adamjax.adam(1e-3, mu_dtype=adamjax.stochastic_bf16(), "
    "nu_dtype=adamjax.stochastic_bf16())",
    # Below min_size, so stored as float32 arrays rather than codes and scales.
    "adam_q8_small_leaves": "adamjax.adam(1e-3, mu_dtype=adamjax.q8(), nu_dtype=adamjax.q8())",
}
INITS = OPTIMIZERS | INIT_ONLY
# Inits whose state holds a copy of the params, so that hostile params give a different state.
INIT_COPIES_PARAMS = {"schedule_free_adamw"}

# The collective kinds of each compiled update. The elementwise updates need none: every entry
# of the new state depends only on the same entry of the old state and of the gradient.
ALL_REDUCE = {"all-reduce"}
EXPECTED_COLLECTIVES: dict[str, set[str]] = {name: set() for name in OPTIMIZERS} | {
    # Means of G^2 over rows and columns, the mean of the row statistic, the RMS of the update for
    # clipping and the RMS of the param that scales the step, each over sharded axes.
    "adafactor": ALL_REDUCE,
    # The projection p.p / (-p.g) takes two dot products over all entries of all leaves.
    "swats": ALL_REDUCE,
    # Norms, means, minima and maxima over all entries.
    "adam_diagnostics": ALL_REDUCE,
    # The absmax of each 256-entry block: the blocks of these small leaves span the shards of the
    # "model" axis. With blocks that lie inside one shard there is none (test_codecs.py).
    "adam_q8": ALL_REDUCE,
    # Per-leaf norms (trust ratio), means over blocks or factored axes, per-tensor RMS and mask
    # means, each over sharded axes.
    **{name: ALL_REDUCE for name in ("lamb", "adam_mini", "came", "stable_adamw")},
    "cautious_adamw": ALL_REDUCE,
}

# Where a sum runs over shards, each device adds its own entries first and the partial sums are
# added across devices, an order that differs from one device's: such results are compared to a
# tolerance, all others bitwise. (A max, such as the 8-bit block scale, is exact in any order.)
# part -> the optimizers whose results in that part come from such sums. The updates of SWATS are
# elementwise until it switches, which it does not within these 8 steps; its state's rate_ema
# comes from its dot products. The diagnostics wrapper returns the inner updates unchanged.
_REDUCING = {"lamb", "adam_mini", "came", "stable_adamw", "cautious_adamw"}
SUMMED: dict[str, set[str]] = {
    "updates": {"adafactor"} | _REDUCING,
    "params": {"adafactor"} | _REDUCING,
    "state": {"adafactor", "swats", "adam_diagnostics"} | _REDUCING,
}
# Yogi has no sum, but its sharded compilation rounds differently from the single-device one
# (measured 1.8e-7 relative in the updates, one float32 ulp): it is compared to the tolerance.
for part in ("updates", "params", "state"):
    SUMMED[part] = SUMMED[part] | {"yogi"}
# Measured largest relative difference over the 8 steps (per leaf, relative to the leaf's largest
# magnitude): 4.4e-7 (adafactor), 3.9e-7 (swats' rate_ema), 2.4e-7 (the diagnostics' metrics).
RTOL = 2e-6

_CHILD = textwrap.dedent(
    """
    import json, re, sys
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    import adamjax

    OPTIMIZERS, INIT_ONLY = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    STEPS = 8
    KINDS = ("all-gather", "all-reduce", "collective-permute", "all-to-all", "reduce-scatter")
    SHAPES = {"w": (16, 32), "b": (32,), "t": (8, 16, 4), "s": ()}
    SPECS = {"w": ("data", "model"), "b": ("model",), "t": ("data", "model", None), "s": ()}
    rng = np.random.default_rng(0)
    HOST = {k: np.asarray(rng.standard_normal(s), np.float32) for k, s in SHAPES.items()}
    GRADS = [{k: np.asarray(0.1 * rng.standard_normal(s), np.float32) for k, s in SHAPES.items()}
             for _ in range(STEPS)]
    # The params with NaN, inf and -inf entries (the scalar is NaN): the zero state may depend on
    # where a param is, never on what it holds.
    HOSTILE = {k: np.where(np.arange(x.size).reshape(x.shape) % 4 == 0, np.nan, x)
               for k, x in HOST.items()}
    HOSTILE["w"][1::2] = np.inf
    HOSTILE["t"][:, ::3] = -np.inf
    AUTO = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
    EXPLICIT = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AxisType.Explicit,) * 2)
    ONE = jax.devices()[0]

    def collectives(compiled):
        # An instruction reads "%name = shape kind(operands)"; async forms end in "-start".
        found = re.findall(r"[ =](" + "|".join(KINDS) + r")(?:-start)?\\(", compiled.as_text())
        return sorted(set(found))

    def param_of(path):
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey) and k.key in SHAPES]
        return names[-1] if names else None

    def expected_spec(name, shape):
        if name is None:
            return P()
        pshape, pspec = SHAPES[name], SPECS[name]
        if shape == pshape:
            return P(*pspec)
        dropped = [i for i in range(len(pshape)) if pshape[:i] + pshape[i + 1:] == shape]
        if len(dropped) == 1:
            i = dropped[0]
            return P(*(pspec[:i] + pspec[i + 1:]))
        if len(shape) == len(pshape) > 0 and shape[:-1] == pshape[:-1]:
            return P(*pspec[:-1], pspec[-1] if shape[-1] > 1 else None)
        return P()

    def shardings(tree, mesh):
        return jax.tree_util.tree_map_with_path(
            lambda path, x: NamedSharding(mesh, expected_spec(param_of(path), tuple(x.shape))),
            tree)

    def describe(sharding, ndim):
        if isinstance(sharding, NamedSharding):
            spec = list(sharding.spec) + [None] * (ndim - len(sharding.spec))
            return [list(a) if isinstance(a, tuple) else a for a in spec]
        return type(sharding).__name__ + f" on {len(sharding.device_set)} device(s)"

    def placement(tree, mesh):
        rows = []
        for path, x in jax.tree_util.tree_leaves_with_path(tree):
            name, shape = param_of(path), tuple(x.shape)
            want = NamedSharding(mesh, expected_spec(name, shape))
            rows.append({
                "path": jax.tree_util.keystr(path), "shape": list(shape), "param": name,
                # A per-leaf scalar (Adafactor's clip_factor) is a scalar for every param, so it
                # has the scalar param's shape by coincidence only: not a moment of it.
                "mirrors": name is not None and shape == SHAPES[name]
                and "clip_factor" not in jax.tree_util.keystr(path),
                "expected": describe(want, len(shape)), "got": describe(x.sharding, len(shape)),
                "ok": bool(x.sharding.is_equivalent_to(want, len(shape))),
            })
        return rows

    def put(tree, mesh):
        return jax.device_put(tree, shardings(tree, mesh))

    def step_of(tx):
        def step(params, state, grads):
            updates, state = tx.update(grads, state, params)
            return updates, optax.apply_updates(params, updates), state
        return step

    def same(a, b):
        # Bitwise, and a NaN anywhere is a difference.
        return (jax.tree.structure(a) == jax.tree.structure(b)
                and all(x.dtype == y.dtype and np.array_equal(np.asarray(x), np.asarray(y))
                        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)))

    def check_init(tx):
        out = {}
        with jax.set_mesh(EXPLICIT):
            out["init_jit_explicit"] = placement(jax.jit(tx.init)(put(HOST, EXPLICIT)), EXPLICIT)
        out["init_eager"] = placement(tx.init(put(HOST, AUTO)), AUTO)
        state = jax.jit(tx.init)(put(HOSTILE, AUTO))
        out["init_jit_auto"] = placement(state, AUTO)
        out["init_jit_auto_equals_eager"] = same(state, tx.init(HOST))
        return out

    def compare(sharded, single):
        equal, worst = True, 0.0
        for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(single), strict=True):
            a, b = np.asarray(a), np.asarray(b)
            if not np.array_equal(a, b, equal_nan=True):
                a, b = a.astype(np.float64), b.astype(np.float64)
                scale = max(float(np.max(np.abs(b))), 1e-30)
                equal, worst = False, max(worst, float(np.max(np.abs(a - b))) / scale)
        return {"bitwise": equal, "max_rel_diff": worst}

    def build(expr):
        return eval(expr, {"adamjax": adamjax, "optax": optax, "jnp": jnp})

    def check(expr):
        tx = build(expr)
        step, out = step_of(tx), check_init(tx)
        with jax.set_mesh(EXPLICIT):
            params = put(HOST, EXPLICIT)
            try:
                state = put(tx.init(HOST), EXPLICIT)
                compiled = jax.jit(step).lower(params, state, put(GRADS[0], EXPLICIT)).compile()
                _, new_params, state = compiled(params, state, put(GRADS[0], EXPLICIT))
                out["update_explicit"] = {
                    "error": None, "collectives": collectives(compiled),
                    "state": placement(state, EXPLICIT), "params": placement(new_params, EXPLICIT)}
            except Exception as e:  # reported, and asserted on, by the parent
                out["update_explicit"] = {"error": f"{type(e).__name__}: {str(e)[:600]}"}
        params = put(HOST, AUTO)
        state = put(tx.init(HOST), AUTO)
        compiled = jax.jit(step).lower(params, state, put(GRADS[0], AUTO)).compile()
        out["collectives"] = collectives(compiled)
        single_step = jax.jit(step)
        p1, s1 = jax.device_put((HOST, tx.init(HOST)), ONE)
        out["steps"] = []
        for g in GRADS:
            updates, params, state = compiled(params, state, put(g, AUTO))
            u1, p1, s1 = single_step(p1, s1, jax.device_put(g, ONE))
            out["steps"].append({"updates": compare(updates, u1), "params": compare(params, p1),
                                 "state": compare(state, s1)})
        out["state_after"] = placement(state, AUTO)
        out["params_after"] = placement(params, AUTO)
        out["single_device_after"] = sorted({len(x.sharding.device_set)
                                             for x in jax.tree.leaves((p1, s1))})
        return out

    report = {"devices": jax.device_count(), "optimizers": {}}
    for name, expr in OPTIMIZERS.items():
        report["optimizers"][name] = check(expr)
    for name, expr in INIT_ONLY.items():
        report["optimizers"][name] = check_init(build(expr))

    # jit(init) under auto axes elsewhere: output shardings given from jax.eval_shape (the
    # documented pattern), one device, complex params, and nnx Variables (bare 8-bit moments).
    report["out_shardings"] = {}
    for name in ("adam_q8", "adafactor"):
        tx, params = build(OPTIMIZERS[name]), put(HOSTILE, AUTO)
        abstract = jax.eval_shape(tx.init, params)
        state = jax.jit(tx.init, out_shardings=shardings(abstract, AUTO))(params)
        report["out_shardings"][name] = {"rows": placement(state, AUTO),
                                         "equals_eager": same(state, tx.init(HOST))}
    report["one_device"] = {}
    for name in ("adam_q8", "adafactor", "swats"):
        tx = build(OPTIMIZERS[name])
        # Not the default device, where a constant would land.
        state = jax.jit(tx.init)(jax.device_put(HOSTILE, jax.devices()[5]))
        devices = {d.id for x in jax.tree.leaves(state) for d in x.sharding.device_set}
        report["one_device"][name] = {"devices": sorted(devices),
                                      "equals_eager": same(state, tx.init(HOST))}
    cplx = {k: (x + 1j * x).astype(np.complex64) for k, x in HOSTILE.items()}
    tx = build(OPTIMIZERS["adam"])
    state = jax.jit(tx.init)(put(cplx, AUTO))
    report["complex"] = {"rows": placement(state, AUTO), "equals_eager": same(state, tx.init(cplx))}
    from flax import nnx
    report["nnx"] = {}
    for name in ("adam", "adam_q8"):
        tx = build(OPTIMIZERS[name])
        state = jax.jit(tx.init)({k: nnx.Param(x) for k, x in put(HOSTILE, AUTO).items()})
        eager = tx.init({k: nnx.Param(x) for k, x in HOST.items()})
        report["nnx"][name] = {"rows": placement(state, AUTO), "equals_eager": same(state, eager)}

    # Controls: the checks above can fail.
    params = put(HOST, AUTO)
    norm = jax.jit(optax.global_norm).lower(params).compile()
    report["control_global_norm_collectives"] = collectives(norm)
    report["control_optax_adam"] = check("optax.adam(1e-3)")
    report["control_auto_jit_init"] = placement(jax.jit(optax.adam(1e-3).init)(params), AUTO)
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(OPTIMIZERS), json.dumps(INIT_ONLY)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _wrong(rows: list[dict[str, Any]]) -> list[str]:
    return [f"{r['path']} {r['shape']}: {r['got']}, expected {r['expected']}" for r in rows
            if not r["ok"]]  # fmt: skip


# ---- the set-up and the controls -------------------------------------------------------------


def test_child_sees_eight_devices(report: dict[str, Any]) -> None:
    assert report["devices"] == 8
    assert set(report["optimizers"]) == set(INITS)


def test_collective_detector_finds_the_all_reduce_of_a_global_norm(report: dict[str, Any]) -> None:
    assert report["control_global_norm_collectives"] == ["all-reduce"]


def test_placement_check_passes_for_optax_adam_and_flags_a_one_device_state(
    report: dict[str, Any],
) -> None:
    """optax.adam builds its moments with ``zeros_like``, which keeps the params' sharding; under
    auto axes ``jax.jit(init)`` knows no sharding and puts the whole state on one device."""
    control = report["control_optax_adam"]
    assert _wrong(control["init_jit_explicit"]) == []
    assert _wrong([r for r in control["init_eager"] if r["mirrors"]]) == []
    flagged = [r for r in report["control_auto_jit_init"] if not r["ok"]]
    assert {r["path"] for r in flagged if r["mirrors"]} == {
        f"[0].{m}['{k}']" for m in ("mu", "nu") for k in ("w", "b", "t", "s")
    }
    assert all(r["got"] == "SingleDeviceSharding on 1 device(s)" for r in flagged)


# ---- every optimizer -------------------------------------------------------------------------


@pytest.mark.parametrize("name", INITS)
def test_jitted_init_places_state_like_the_params(report: dict[str, Any], name: str) -> None:
    """Under explicit mesh axes the params' shardings are part of their types, so ``jax.jit(init)``
    can (and must) give every state leaf the sharding of the rule in the module docstring: the
    moments exactly the param's, the scalars replicated."""
    rows = report["optimizers"][name]["init_jit_explicit"]
    assert any(r["mirrors"] for r in rows), "no state leaf of a param's shape: nothing checked"
    assert _wrong(rows) == []


@pytest.mark.parametrize("name", INITS)
def test_jitted_init_under_auto_axes(report: dict[str, Any], name: str) -> None:
    """Under auto axes (``jax.make_mesh`` and ``jax.device_put``, the usual set-up)
    ``jax.jit(init)`` gives every state leaf the rule's sharding too, and the state it builds from
    params holding NaN and infinities equals, bitwise, the eager init of finite params."""
    result = report["optimizers"][name]
    assert any(r["mirrors"] for r in result["init_jit_auto"])
    assert _wrong(result["init_jit_auto"]) == []
    # Schedule-Free's z starts at the params (z_1 = x_1), so its init holds their NaNs.
    assert result["init_jit_auto_equals_eager"] != (name in INIT_COPIES_PARAMS)


@pytest.mark.parametrize("name", INITS)
def test_eager_init_places_moments_like_the_params(report: dict[str, Any], name: str) -> None:
    """``tx.init(params)`` outside jit (as ``nnx.Optimizer`` calls it): a moment of a sharded
    param is sharded like it, not gathered onto one device."""
    rows = [r for r in report["optimizers"][name]["init_eager"] if r["mirrors"]]
    assert rows
    assert _wrong(rows) == []


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_update_collectives(report: dict[str, Any], name: str) -> None:
    assert set(report["optimizers"][name]["collectives"]) == EXPECTED_COLLECTIVES[name]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_update_matches_single_device(report: dict[str, Any], name: str) -> None:
    """Updates, params and state after each of 8 steps equal those of the same jitted step on one
    device: bitwise, or to ``RTOL`` in the parts that ``SUMMED`` lists."""
    result = report["optimizers"][name]
    assert result["single_device_after"] == [1]
    assert len(result["steps"]) == 8
    for part, summed in SUMMED.items():
        found = [step[part] for step in result["steps"]]
        if name in summed:
            assert max(f["max_rel_diff"] for f in found) <= RTOL, (part, found)
        else:
            assert all(f["bitwise"] for f in found), (part, found)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_update_keeps_state_sharding(report: dict[str, Any], name: str) -> None:
    """After 8 sharded steps every state leaf still has the rule's sharding, and the params theirs:
    the step's outputs can be fed back without resharding."""
    result = report["optimizers"][name]
    assert _wrong(result["state_after"]) == []
    assert _wrong(result["params_after"]) == []
    assert any(r["mirrors"] for r in result["state_after"])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_update_under_explicit_axes(report: dict[str, Any], name: str) -> None:
    """The same step traced with explicit mesh axes (state placed by the rule): it compiles,
    needs the same collectives and keeps every sharding."""
    result = report["optimizers"][name]["update_explicit"]
    assert result["error"] is None, result["error"]
    assert set(result["collectives"]) == EXPECTED_COLLECTIVES[name]
    assert _wrong(result["state"]) == []
    assert _wrong(result["params"]) == []


# ---- jit(init) under auto axes in other settings --------------------------------------------


@pytest.mark.parametrize(("name", "reduced"), [("adam_q8", ".scale"), ("adafactor", ".v_row")])
def test_jitted_init_with_out_shardings_from_eval_shape(
    report: dict[str, Any], name: str, reduced: str
) -> None:
    """The pattern of docs/scaling.md: ``jax.eval_shape(tx.init, params)`` gives the state's
    structure and shapes, a rule maps them to shardings, and ``jax.jit(tx.init,
    out_shardings=...)`` builds the state there, leaves not of a param's shape included."""
    result = report["out_shardings"][name]
    assert any(reduced in r["path"] for r in result["rows"])
    assert _wrong(result["rows"]) == []
    assert result["equals_eager"]


@pytest.mark.parametrize("name", ["adam_q8", "adafactor", "swats"])
def test_jitted_init_on_one_device(report: dict[str, Any], name: str) -> None:
    """Params committed to one device (not the default one): the whole state is built there."""
    result = report["one_device"][name]
    assert result["devices"] == [5]
    assert result["equals_eager"]


def test_jitted_init_of_complex_params(report: dict[str, Any]) -> None:
    """A complex param's first moment is complex and its second real; both follow the param."""
    result = report["complex"]
    assert {r["path"] for r in result["rows"] if r["mirrors"]} == {
        f"[0].{m}['{k}']" for m in ("mu", "nu") for k in ("w", "b", "t", "s")
    }
    assert _wrong(result["rows"]) == []
    assert result["equals_eager"]


@pytest.mark.parametrize("name", ["adam", "adam_q8"])
def test_jitted_init_of_nnx_variables(report: dict[str, Any], name: str) -> None:
    """A tree of ``nnx.Param`` (``zeros_moment`` unwraps each): the moments follow the params,
    in a copy of the Variable or, for 8-bit moments, bare."""
    result = report["nnx"][name]
    assert any(r["mirrors"] for r in result["rows"])
    assert _wrong(result["rows"]) == []
    assert result["equals_eager"]
