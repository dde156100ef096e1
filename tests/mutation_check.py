"""A scripted mutation check: does the test suite catch deliberate bugs?

Each mutant replaces one exact piece of adamjax's source (it must occur exactly once) in a
scratch copy of the repository, then runs the tests that should catch it. A mutant is *caught*
when those tests fail, *survives* when they pass. Each selection of tests is first run without
any mutant and must pass, so that a broken selection cannot pass for a catch. The script
prints one line per mutant and exits 1 unless every mutant is caught (one that no longer
applies names source that has changed: update it).

Usage (from the repository root; about 10 minutes on 2 cores)::

    python tests/mutation_check.py            # every mutant
    python tests/mutation_check.py ema q8     # the mutants whose names contain these words

This is a script, not a CI job: the result is recorded in docs/reliability.md.
"""

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # relative to adamjax/
    old: str
    new: str
    tests: tuple[str, ...]  # pytest node ids or files, relative to the repository root
    keyword: str = ""  # a pytest -k expression narrowing the tests, if any


ALIAS = "tests/test_alias.py"
MOMENTS = "tests/test_moments.py"
CODECS = "tests/test_codecs.py"
OBSERVE = "tests/test_observe.py"
SWEEP = "tests/test_validation_sweep.py"

MUTANTS = [
    # ---- the moment maths (adamjax/_moments.py) ----
    Mutant(
        "ema_weights_swapped", "_moments.py",
        "return (1 - decay) * new + decay * moment",
        "return decay * new + (1 - decay) * moment",
        (MOMENTS, ALIAS), "reference or ema",
    ),
    Mutant(
        "bias_correction_power_off_by_one", "_moments.py",
        "rate, correction = decay, 1 - jnp.asarray(decay, dtype) ** t",
        "rate, correction = decay, 1 - jnp.asarray(decay, dtype) ** count",
        (ALIAS,), "reference",
    ),
    Mutant(
        "scheduled_correction_drops_rate", "_moments.py",
        "correction = (1 - rate) + rate * previous",
        "correction = (1 - rate) + previous",
        (ALIAS, MOMENTS), "schedule",
    ),
    Mutant(
        "corrected_multiplies_by_correction", "_moments.py",
        "return x * decay.inverse.astype(real_dtype(x.dtype))",
        "return x * decay.correction.astype(real_dtype(x.dtype))",
        (MOMENTS, ALIAS), "reference",
    ),
    Mutant(
        "squared_magnitude_abs", "_moments.py",
        "    return g * g\n",
        "    return jnp.abs(g)\n",
        (MOMENTS, ALIAS), "reference",
    ),
    Mutant(
        "eps_inside_the_root", "_moments.py",
        "denominator = jnp.sqrt(v_hat + as_scalar(eps_root, dtype)) + as_scalar(eps, dtype)",
        "denominator = jnp.sqrt(v_hat + as_scalar(eps_root, dtype) + as_scalar(eps, dtype))",
        (ALIAS,), "reference",
    ),
    Mutant(
        "hat_eps_root_not_divided_by_correction", "_moments.py",
        "eps_root = as_scalar(eps_root, dtype) / b2.correction",
        "eps_root = as_scalar(eps_root, dtype)",
        (ALIAS, MOMENTS, "tests/test_transform.py", "tests/test_golden.py"),
    ),
    Mutant(
        "hat_eps_divided_by_correction_not_its_root", "_moments.py",
        "eps = as_scalar(eps, dtype) / jnp.sqrt(b2.correction)",
        "eps = as_scalar(eps, dtype) / b2.correction",
        (ALIAS,), "reference",
    ),
    Mutant(
        "nesterov_look_ahead_uses_this_step", "_moments.py",
        "return corrected(mu_next * m, ahead) + corrected((1 - mu_t) * g, b1)",
        "return corrected(mu_next * m, b1) + corrected((1 - mu_t) * g, b1)",
        (ALIAS,), "nesterov or nadam",
    ),
    Mutant(
        "infinity_norm_without_decay", "_moments.py",
        "return jnp.maximum(as_scalar(b2, dtype) * u, jnp.abs(g).astype(dtype) + eps_in_max)",
        "return jnp.maximum(u, jnp.abs(g).astype(dtype) + eps_in_max)",
        (ALIAS,), "adamax",
    ),
    Mutant(
        "eps_zero_guard_removed", "_moments.py",
        "    if not guard:\n        return numerator / denominator\n",
        "    if True:\n        return numerator / denominator\n",
        (SWEEP,), "eps_zero",
    ),
    Mutant(
        "amsgrad_minimum", "_adam.py",
        "new_max = jnp.maximum(nu_max[0], nu)",
        "new_max = jnp.minimum(nu_max[0], nu)",
        (ALIAS,), "amsgrad",
    ),
    Mutant(
        "radam_threshold_off_by_one", "_radam.py",
        "adaptive = rho > threshold",
        "adaptive = rho > threshold - 1",
        (ALIAS,), "radam_switches",
    ),
    Mutant(
        "nadam_look_ahead_in_int32", "_nadam.py",
        "t = jnp.asarray(count, dtype) + 1",
        "t = jnp.asarray(count + 1, dtype)",
        (ALIAS,), "largest_counts",
    ),
    Mutant(
        "adafactor_eps_zero_guard_removed", "_adafactor.py",
        "guard = mo.is_static_zero(epsilon)",
        "guard = False",
        (SWEEP,), "eps_zero",
    ),
    # ---- diagnostics (adamjax/_diagnostics.py) ----
    Mutant(
        "nonfinite_fraction_counts_nan_only", "_diagnostics.py",
        "        jnp.isfinite(sum_squares),\n",
        "        ~jnp.isnan(sum_squares),\n",
        (OBSERVE,), "nonfinite",
    ),
    Mutant(
        "histogram_edge_goes_to_the_bin_below", "_diagnostics.py",
        "index = jnp.sum(x.reshape(-1, 1) >= inner, axis=1)",
        "index = jnp.sum(x.reshape(-1, 1) > inner, axis=1)",
        (OBSERVE,), "histogram",
    ),
    # ---- validation (adamjax/_validation.py) ----
    Mutant(
        "non_scalar_hyperparameters_pass", "_validation.py",
        "        if np.ndim(value) != 0:\n            raise ValueError(",
        "        if np.ndim(value) > 5:\n            raise ValueError(",
        (SWEEP,), "test_hyperparameter",
    ),
    Mutant(
        "float32_overflow_not_checked", "_validation.py",
        "    if inside(x) and inside(rounded):",
        "    if inside(x):",
        (SWEEP,), "test_hyperparameter",
    ),
    Mutant(
        "complex_gradients_for_real_params_pass", "_validation.py",
        "if jnp.iscomplexobj(u) and ref is not None and not jnp.iscomplexobj(ref):",
        "if False:",
        (SWEEP,), "gradient_dtype",
    ),
    # ---- storage formats (adamjax/_formats.py) ----
    Mutant(
        "q8_nu_stored_with_the_signed_map", "_formats.py",
        "return quantize(x, mapping=self.mapping, signed=signed, block_size=self.block_size)",
        "return quantize(x, mapping=self.mapping, signed=True, block_size=self.block_size)",
        (CODECS,),
    ),
    Mutant(
        "q8_nu_stored_with_the_linear_map", "_formats.py",
        "return quantize(x, mapping=self.mapping, signed=signed, block_size=self.block_size)",
        "return quantize(x, mapping='linear' if not signed else self.mapping, signed=signed, "
        "block_size=self.block_size)",
        (CODECS,),
    ),
    Mutant(
        "q8_scale_from_the_maximum_only", "_formats.py",
        "peak = jnp.maximum(jnp.max(xb, axis=-1), -jnp.min(xb, axis=-1))",
        "peak = jnp.max(xb, axis=-1)",
        (CODECS,),
    ),
    Mutant(
        "q8_nan_left_to_the_backend_max", "_formats.py",
        "    return peak + poison\n",
        "    return peak\n",
        (CODECS,),
    ),
    Mutant(
        "q8_reciprocal_of_the_scale", "_formats.py",
        "return jnp.where(usable, xb * inverse * np.float32(0.25), 0)",
        "return jnp.where(usable, xb * (1 / jnp.where(usable, scale[..., None], 1)), 0)",
        (CODECS,),
    ),
    Mutant(
        "stochastic_rounding_keys_collide_across_slots", "_formats.py",
        "return jax.random.fold_in(key, leaf * 4 + slot)",
        "return jax.random.fold_in(key, leaf + slot)",
        (CODECS,),
    ),
]  # fmt: skip


def _copy_repository(dest: Path) -> None:
    """Everything the tests may import or read (benchmarks/, docs/, README.md, ...), not .git."""
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", "_build", "*.egg-info")
    for src in ROOT.iterdir():
        if src.name == ".git":
            continue
        if src.is_dir():
            shutil.copytree(src, dest / src.name, ignore=ignore)
        else:
            shutil.copy2(src, dest / src.name)


def _env(scratch: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(scratch)}


def _check_imports_the_copy(scratch: Path) -> None:
    """An installed adamjax (pip install -e .) must not shadow the mutated copy."""
    command = [sys.executable, "-c", "import adamjax; print(adamjax.__file__)"]
    found = subprocess.run(command, cwd=scratch, env=_env(scratch), capture_output=True, text=True)
    if not found.stdout.strip().startswith(str(scratch)):
        raise SystemExit(f"the tests would import {found.stdout.strip()}, not the scratch copy")


def _pytest(mutant: Mutant, scratch: Path) -> int:
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    command += [*mutant.tests] + (["-k", mutant.keyword] if mutant.keyword else [])
    return subprocess.run(command, cwd=scratch, env=_env(scratch), capture_output=True).returncode


def run(mutant: Mutant, scratch: Path, baseline: dict) -> str:
    """Applies ``mutant`` in ``scratch`` (a copy of the repository), runs its tests, restores
    the file, and returns ``"caught"`` (the tests fail), ``"SURVIVED"`` (they pass), or why
    the mutant says nothing: it no longer applies, its tests fail without it (the baseline,
    run once per selection), or pytest ended for another reason (collection error, no test)."""
    path = scratch / "adamjax" / mutant.file
    source = path.read_text()
    if source.count(mutant.old) != 1:
        return "DOES NOT APPLY"
    selection = (mutant.tests, mutant.keyword)
    if selection not in baseline:
        baseline[selection] = _pytest(mutant, scratch)
    if baseline[selection] != 0:
        return "BASELINE FAILS"
    path.write_text(source.replace(mutant.old, mutant.new))
    try:
        code = _pytest(mutant, scratch)
    finally:
        path.write_text(source)
    # pytest: 0 all passed, 1 some test failed; 2-5 interrupted, internal or usage error, none
    # collected, which must not pass for a catch.
    return {0: "SURVIVED", 1: "caught"}.get(code, f"PYTEST EXIT {code}")


def main(words: list[str]) -> int:
    chosen = [m for m in MUTANTS if not words or any(w in m.name for w in words)]
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        _copy_repository(scratch)
        _check_imports_the_copy(scratch)
        outcomes, baseline = {}, {}
        for mutant in chosen:
            start = time.perf_counter()
            outcomes[mutant.name] = run(mutant, scratch, baseline)
            seconds = time.perf_counter() - start
            print(f"{outcomes[mutant.name]:>17}  {mutant.name}  ({seconds:.0f} s)", flush=True)
    caught = sum(o == "caught" for o in outcomes.values())
    print(f"\n{caught} of {len(outcomes)} mutants caught")
    return 0 if caught == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
