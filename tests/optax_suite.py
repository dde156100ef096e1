"""Runs optax's own tests with adamjax's constructors swapped in for optax's.

Run from the repository root (pytest does not collect this file; a full run takes minutes)::

    python tests/optax_suite.py [--files alias transform combining state_utils common]
        [-k EXPR] [--json out.json] [--no-swap] [--strict] [--keep] [--jobs N]

The test files ship in the installed optax wheel; they are copied into a temporary directory and
run by pytest, one subprocess per file, ``--jobs`` of them at once (2 by default). There a
generated ``conftest.py`` calls :func:`apply_swaps` before collection: each :data:`SWAPS` entry
replaces the optax object wherever an ``optax*`` module binds it (``optax.adam``,
``optax._src.alias.adam``), so optax's own aliases built on a swapped piece (``sgd`` on
``scale_by_learning_rate``) use adamjax's too. An entry's keyword options pick optax's
convention where adamjax defaults to another and are added only where the caller leaves them
unbound; arguments pass through unchanged, so a positional-order difference fails as it would
for a user (the signature differences are also printed). ``--no-swap`` is the baseline: the same
files unpatched.

Per file it prints passed/failed/errors/skipped from ``--junitxml`` (per test: failing subtests
count once) and each failing test id with its absl parameters and a one-line error (the
exception's first line; for a numerical mismatch the tolerance and largest differences). Exit
code 0; with ``--strict``, 1 if a failure matches no :data:`KNOWN_DIFFERENCES` pattern.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

FILES: dict[str, str] = {
    "alias": "_src/alias_test.py",
    "transform": "_src/transform_test.py",
    "combining": "transforms/_combining_test.py",
    "state_utils": "tree_utils/_state_utils_test.py",
    "common": "contrib/_common_test.py",
    "schedule_free": "contrib/_schedule_free_test.py",
}

# optax name -> (adamjax name, keyword options added unless the caller binds them).
SWAPS: dict[str, tuple[str, dict[str, Any]]] = {
    "adam": ("adam", {}),
    "adamw": ("adamw", {}),
    # adamjax defaults to torch's max of the raw v; optax takes the max of the corrected v-hat.
    "amsgrad": ("amsgrad", {"max_of": "corrected"}),
    "scale_by_amsgrad": ("scale_by_amsgrad", {"max_of": "corrected"}),
    # optax.nadam is Adam with a constant-b1 Nesterov look-ahead; adamjax.nadam is torch's NAdam
    # (with its momentum schedule), so optax.nadam is adam(nesterov=True); nadamw has its alias.
    "nadam": ("adam", {"nesterov": True}),
    "nadamw": ("nadamw", {}),
    # Both put eps inside the max (adamjax's default eps_mode="max").
    "adamax": ("adamax", {}),
    "scale_by_adamax": ("scale_by_adamax", {}),
    "adamaxw": ("adamaxw", {}),
    # adamjax defaults to torch's eps placement ("hat"); optax divides by sqrt(v_hat) + eps.
    "radam": ("radam", {"eps_mode": "paper"}),
    "scale_by_radam": ("scale_by_radam", {"eps_mode": "paper"}),
    "scale_by_adam": ("scale_by_adam", {}),
    "adafactor": ("adafactor", {}),
    "scale_by_factored_rms": ("scale_by_factored_rms", {}),
    "clip_by_block_rms": ("clip_by_block_rms", {}),
    "add_decayed_weights": ("add_decayed_weights", {}),
    "scale_by_learning_rate": ("scale_by_learning_rate", {}),
    # optax.contrib reads its warm-up one step behind the authors' package (adamjax's default).
    "contrib.schedule_free": ("schedule_free", {"convention": "optax"}),
    "contrib.schedule_free_adamw": ("schedule_free_adamw", {"convention": "optax"}),
    "contrib.schedule_free_eval_params": ("schedule_free_eval_params", {}),
    "contrib.adopt": ("adopt", {}),
    "contrib.scale_by_adopt": ("scale_by_adopt", {}),
    "contrib.ademamix": ("ademamix", {}),
    # optax's piece defaults to alpha=6.0 (its alias and adamjax to 5.0).
    "contrib.scale_by_ademamix": ("scale_by_ademamix", {"alpha": 6.0}),
    "contrib.simplified_ademamix": ("simplified_ademamix", {}),
    "contrib.scale_by_simplified_ademamix": ("scale_by_simplified_ademamix", {}),
    # adamjax follows the Adan authors: optax weighs the gradient difference by 1 - b2, decays
    # the weights as AdamW does and puts eps_root=1e-8 under the root of its alias.
    "adan": ("adan", {"difference_weight": "1-b2", "no_prox": True, "eps_root": 1e-8}),
    "scale_by_adan": ("scale_by_adan", {"difference_weight": "1-b2"}),
    "lamb": ("lamb", {}),
    "scale_by_trust_ratio": ("scale_by_trust_ratio", {}),
    "adabelief": ("adabelief", {}),
    "scale_by_belief": ("scale_by_belief", {}),
    "yogi": ("yogi", {}),
    "scale_by_yogi": ("scale_by_yogi", {}),
}

# fnmatch pattern on the test id -> the documented reason it fails under the swap. Numbered ids
# are absl's parameterizations in optax 0.2.8's test files.
_LAYOUT = (
    "state layout by design (README): adamjax states add fields (ScaleByAdamState.last_step) and "
    "scale_by_learning_rate keeps ScaleByLearningRateState where optax has EmptyState"
)
_REAL_MU = "a complex mu_dtype for real params is rejected (complex moments give complex updates)"
_COMPLEX_MU = "complex params keep a complex mu for a real mu_dtype (docs/conventions.md)"
_DTYPE = "alias_test.py::AliasTest::test_explicit_dtype"
KNOWN_DIFFERENCES: dict[str, str] = {
    "transform_test.py::TransformTest::test_rms_match_adam": (
        "float32 rounding: adamjax multiplies by 1/(1 - b2^t) where optax divides (a divide per "
        "element is slower on CPU); 2.3e-6 relative against the test's rtol=1e-6"
    ),
    "_combining_test.py::ExtraArgsTest::test_extra_args": (
        "int params are rejected in init (docs/reliability.md); optax's test uses {'a': 1}"
    ),
    "_state_utils_test.py::StateUtilsTest::test_adam": _LAYOUT,
    "_state_utils_test.py::StateUtilsTest::test_map_*params_to_none": _LAYOUT,
    "_state_utils_test.py::StateUtilsTest::test_tree_set": _LAYOUT,
    **{f"{_DTYPE}{i}": _REAL_MU for i in (7, 8, 19, 20, 43, 44)},
    **{f"{_DTYPE}{i}": _COMPLEX_MU for i in (25, 26, 28, 29)},
    **{
        f"_schedule_free_test.py::ScheduleFreeTest::test_explicit_dtype{i}": (
            "a complex state_dtype (z) for real params is rejected, as a complex mu_dtype is"
        )
        for i in (2, 6, 14)
    },
}


def _with_defaults(fn: Callable[..., Any], extras: dict[str, Any]) -> Callable[..., Any]:
    """``fn`` with ``extras`` as defaults for the parameters the caller leaves unbound."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind_partial(*args, **kwargs).arguments
        except TypeError:  # let fn raise its own error
            return fn(*args, **kwargs)
        return fn(*args, **{k: v for k, v in extras.items() if k not in bound}, **kwargs)

    params = [
        p.replace(default=extras.get(p.name, p.default)) for p in signature.parameters.values()
    ]
    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper


def _signature_gaps(old: Callable[..., Any], new: Callable[..., Any]) -> list[str]:
    """Where ``new`` cannot be called like ``old``: positional order, parameters, defaults."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    old_p, new_p = inspect.signature(old).parameters, inspect.signature(new).parameters
    new_pos = [n for n, p in new_p.items() if p.kind in kinds]
    gaps: list[str] = []
    for i, n in enumerate(n for n, p in old_p.items() if p.kind in kinds):
        got = new_pos[i] if i < len(new_pos) else "keyword-only" if n in new_p else "none"
        if got != n:
            gaps.append(f"positional {i}: optax {n}, adamjax {got}")
    for n, p in old_p.items():
        if n not in new_p:
            gaps.append(f"no parameter {n}")
        elif p.default is not p.empty and new_p[n].default != p.default:
            old_d, new_d = (getattr(d, "__name__", repr(d)) for d in (p.default, new_p[n].default))
            gaps.append(
                f"default {n}: optax {old_d}, adamjax {new_d.replace('_empty', 'required')}"
            )
    return gaps


def apply_swaps() -> dict[str, dict[str, list[str]]]:
    """Rebinds, in every loaded ``optax*`` module, each SWAPS name to adamjax's constructor."""
    import optax
    import optax.contrib  # every module that may bind a name is loaded before the rebinding
    import optax.tree_utils

    import adamjax

    done: dict[str, dict[str, list[str]]] = {}
    for name, (target, extras) in SWAPS.items():
        original, fn = functools.reduce(getattr, name.split("."), optax), getattr(adamjax, target)
        if original is None or fn is None:
            done[name] = {"bound": [], "gaps": [f"skipped: optax.{name} or adamjax.{target}"]}
            continue
        new = _with_defaults(fn, extras) if extras else fn
        done[name] = {"bound": [], "gaps": _signature_gaps(original, new)}
        for mod_name, mod in sorted(sys.modules.items()):
            if mod is not None and (mod_name == "optax" or mod_name.startswith("optax.")):
                for attr, value in list(vars(mod).items()):
                    if value is original:
                        setattr(mod, attr, new)
                        done[name]["bound"].append(f"{mod_name}.{attr}")
    return done


CONFTEST = """\
import importlib.util, json, os
_spec = importlib.util.spec_from_file_location("_adamjax_optax_suite", {script!r})
_suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_suite)
if {swap!r}:
    with open(os.environ["ADAMJAX_SWAPS_JSON"], "w") as _f:
        json.dump(_suite.apply_swaps(), _f, indent=1)

def pytest_collection_modifyitems(items):  # absl's parameters, for the report
    for item in items:
        params = getattr(getattr(item, "obj", None), "__x_params_repr__", "")
        if params:
            item.user_properties.append(("params", params))
"""
PYTEST = ("-m", "pytest", "-p", "no:cacheprovider", "-q", "-o", "addopts=")  # and no -x
_JAX_NOTE = "\n--------------------\nFor simplicity, JAX has removed"


def _one_line(element: ET.Element) -> str:
    """The exception's first line; for a numerical mismatch the tolerance and differences."""
    message = (element.get("message") or "").split(_JAX_NOTE)[0].strip()
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    if not lines:  # e.g. a collection error: the last ``E`` line of the report
        lines = [ln[1:].strip() for ln in (element.text or "").splitlines() if ln[:2] == "E "]
        return ([ln for ln in lines if ln] or ["(no message)"])[-1][:200]
    if any(ln.startswith("Not equal to tolerance") for ln in lines):
        keep = ("Not equal to tolerance", "Mismatched", "Max absolute", "Max relative")
        return "; ".join([lines[0]] + [ln for ln in lines[1:] if ln.startswith(keep)])[:200]
    if lines[0].endswith(":") and len(lines) > 1:  # "AssertionError:" alone says nothing
        return f"{lines[0]} {lines[1]}"[:200]
    return lines[0][:200]


def _parse(xml_path: Path) -> dict[str, Any]:
    """Per-test counts and the failures, sorted by id, of one junit XML report."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures: list[dict[str, str]] = []
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        tags = [c.tag for c in case]
        bad = [c for c in case if c.tag in ("failure", "error")]
        skipped = "skipped" if "skipped" in tags else "passed"
        counts["errors" if "error" in tags else "failed" if bad else skipped] += 1
        if bad:
            module, _, cls = (case.get("classname") or "").partition(".")
            parts = (f"{module}.py" if module else "", cls, case.get("name") or "")
            prop = case.find("properties/property[@name='params']")
            errors = list(dict.fromkeys(_one_line(c) for c in bad))[:3]  # distinct, subtests
            test_id = "::".join(x for x in parts if x)
            params = "" if prop is None else prop.get("value", "")
            failures.append({"id": test_id, "error": " | ".join(errors), "params": params})
    return {**counts, "failures": sorted(failures, key=lambda f: f["id"])}


def _run_file(key: str, tmp: Path, k_expr: str | None) -> dict[str, Any]:
    """Runs one optax test file under pytest in ``tmp``; its parsed results and wall time."""
    xml_path, log_path = tmp / f"{key}.xml", tmp / f"{key}.log"
    k_args = ["-k", k_expr] if k_expr else []
    cmd = [sys.executable, *PYTEST, f"--junitxml={xml_path}", Path(FILES[key]).name, *k_args]
    env = {**os.environ, "ADAMJAX_SWAPS_JSON": str(tmp / f"{key}.swaps.json")}
    start = time.perf_counter()
    with log_path.open("w") as log:
        rc = subprocess.run(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if not xml_path.exists():
        tail = "\n".join(log_path.read_text().splitlines()[-20:])
        raise RuntimeError(f"pytest wrote no report for {key} (exit {rc}):\n{tail}")
    return {**_parse(xml_path), "seconds": round(time.perf_counter() - start, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", nargs="+", choices=list(FILES), default=list(FILES))
    parser.add_argument("-k", dest="k_expr", help="pytest -k expression")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-swap", action="store_true", help="run optax's tests unpatched")
    parser.add_argument("--strict", action="store_true", help="exit 1 on unknown failures")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="test files run at once (default: 2, or 1 on a 1-core machine)",
    )
    args = parser.parse_args(argv)

    import optax  # only to find the installed test files

    tmp = Path(tempfile.mkdtemp(prefix="optax_suite_"))
    (tmp / "pytest.ini").write_text("[pytest]\n")  # the rootdir: no config from this repository
    script = str(Path(__file__).resolve())
    (tmp / "conftest.py").write_text(CONFTEST.format(script=script, swap=not args.no_swap))
    for key in args.files:
        shutil.copy(Path(optax.__file__).parent / FILES[key], tmp / Path(FILES[key]).name)

    mode = "no-swap" if args.no_swap else "swap"
    print(f"optax {optax.__version__} tests, {mode}, in {tmp}")
    # Files run in FILES order on `jobs` workers: alias, the longest, beside all the others.
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = {key: pool.submit(_run_file, key, tmp, args.k_expr) for key in args.files}
    results: dict[str, Any] = {}
    for key in args.files:
        results[key] = res = futures[key].result()
        print(
            f"\n== {FILES[key]}: {res['passed']} passed, {res['failed']} failed, "
            f"{res['errors']} errors, {res['skipped']} skipped ({res['seconds']} s)"
        )
        for fail in res["failures"]:
            params = f"  [{fail['params'][:120]}]" if fail["params"] else ""
            print(f"  {fail['id']}{params}\n      {fail['error']}")
    # Every file's process applies the same swaps; the bindings found differ with the modules
    # it imports, so the report merges them.
    swaps: dict[str, Any] = {}
    for key in args.files:
        path = tmp / f"{key}.swaps.json"
        for name, swap in (json.loads(path.read_text()) if path.exists() else {}).items():
            merged = swaps.setdefault(name, {**swap, "bound": []})
            merged["bound"] = sorted(set(merged["bound"]) | set(swap["bound"]))
    if swaps:
        bindings = ", ".join(f"{name} ({len(swap['bound'])})" for name, swap in swaps.items())
        print(f"\nswapped (bindings): {bindings}")
        print("signature differences from optax:")
        for name, swap in swaps.items():
            print("".join(f"  {name}: {gap}\n" for gap in swap["gaps"]), end="")
    failures = [f for res in results.values() for f in res["failures"]]
    by_error = Counter(f["error"] for f in failures)
    print(f"\n{len(failures)} failing tests, {len(by_error)} distinct errors:")
    for error, count in by_error.most_common():
        print(f"  {count:4d}  {error}")
    known = {f["id"]: next((why for pat, why in KNOWN_DIFFERENCES.items()
                            if fnmatch.fnmatch(f["id"], pat)), None) for f in failures}  # fmt: skip
    for why, count in Counter(why for why in known.values() if why).items():
        print(f"  known ({count}): {why}")
    unknown = [test_id for test_id, why in known.items() if why is None]
    print(f"{len(unknown)} failing tests not in KNOWN_DIFFERENCES")
    if args.json:
        out = {"mode": mode, "swaps": swaps, "files": results, "unknown": unknown}
        args.json.write_text(json.dumps(out, indent=1))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if args.strict and unknown else 0


if __name__ == "__main__":
    sys.exit(main())
