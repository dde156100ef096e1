"""benchmarks.fused_cpu: the prototype kernels compute adamjax's steps, so the speed that
docs/performance.md records for them is the speed of the same arithmetic; and the script keeps
working (tiny trees)."""

import json
import math

import jax
import jax.numpy as jnp
import pytest

from adamjax import _formats
from benchmarks import fused_cpu
from benchmarks.fused_cpu import _copy, fused_step, groups, register, xla_step

pytestmark = pytest.mark.slow

ULP = 2.0**-23


def test_kernels_reproduce_adamjax_and_the_report_is_written(tmp_path):
    report = fused_cpu.main(["--quick", "--rounds", "1", "--out", str(tmp_path)])
    assert set(report["checks"]) == {"1x64k", "3 leaves"}
    for found in report["checks"].values():
        # Params within one float32 ulp of each leaf's largest magnitude (float rounding of a
        # different order of the same operations); the q8 codes equal, bit for bit.
        for group in ("adam", "q8", "diagnostics"):
            assert found[f"{group}: params, ulps"] <= 1
        for field in ("mu", "nu"):
            assert found[f"q8 {field}: codes differing"] == 0
            assert found[f"q8 {field}: scale, relative"] <= 2 * ULP
        metrics = {k: v for k, v in found.items() if k.startswith("metric ")}
        assert len(metrics) == 8
        assert max(metrics.values()) <= 4 * ULP
    for rows in report["results"]["3 leaves"].values():
        assert rows[0]["ratio"] == 1
        assert all(r["median_ms"] > 0 and math.isfinite(r["ratio"]) for r in rows)
    [path] = tmp_path.glob("fused_cpu_*_quick.json")
    assert json.loads(path.read_text())["checks"] == report["checks"]


def test_a_non_finite_moment_poisons_its_q8_block_as_adamjax_does():
    register()
    [_, (_, tx, _), _] = groups()["q8"]
    params = {"w": jnp.linspace(-1.0, 1.0, 8192).reshape(16, 512)}
    grads = {"w": jnp.full((16, 512), 1e-3).at[3, 300].set(jnp.inf)}
    ref = jax.jit(xla_step(tx))(_copy(params), tx.init(params), grads)
    got = jax.jit(fused_step(0.0))(_copy(params), tx.init(params), grads)
    for field in ("mu", "nu"):
        a, b = getattr(ref[1][0], field)["w"], getattr(got[1][0], field)["w"]
        assert _formats.is_quantized(a) and _formats.is_quantized(b)
        assert bool(jnp.all(a.codes == b.codes))
        assert bool(jnp.all(jnp.isnan(a.scale) == jnp.isnan(b.scale)))
        assert int(jnp.sum(jnp.isnan(b.scale))) == 1
    assert bool(jnp.all(jnp.isnan(ref[0]["w"]) == jnp.isnan(got[0]["w"])))
