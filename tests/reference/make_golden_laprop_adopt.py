"""Generate golden LaProp and ADOPT trajectories from timm, pytorch_optimizer and the authors' code.

Writes ``tests/reference/golden/{laprop,adopt}_*.npz`` in the layout of ``make_golden.py`` (see
``tests/reference/README.md``), on the same noisy quadratic, which this script reads from the
committed ``golden/torch_adam.npz`` (``p0``, ``h``, ``c``, ``noise``; the gradient of 0-based step
``k`` is ``h * (p - c) + noise[k]``). The tests only read the files.

How to regenerate (from the repository root, CPU torch is enough):

    pip install torch==2.13.0 timm==1.0.31 pytorch_optimizer==4.1.0 numpy
    git clone https://github.com/iShohei220/adopt /tmp/adopt            # optional
    git clone https://github.com/Z-T-WANG/LaProp-Optimizer /tmp/laprop  # optional
    python tests/reference/make_golden_laprop_adopt.py \
        --authors-adopt /tmp/adopt/src/adopt/adopt.py --authors-laprop /tmp/laprop/laprop.py

The authors' files are imported from where they lie and never copied into this repository;
without the two options their cases are skipped (their committed files stay as they are).
timm is imported without its package ``__init__`` (which needs torchvision): only
``timm/optim/{adopt,laprop}.py`` and the helpers they import are loaded.

Before writing, every case is replayed with the float64 paper references in
``laprop_adopt_reference.py`` under the convention the library follows, and a case whose
trajectory differs by a relative error of 1e-12 or more is refused.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import subprocess
import sys
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from laprop_adopt_reference import AdoptReference, LapropReference

GOLDEN = Path(__file__).resolve().parent / "golden"
PROBLEM_FILE = GOLDEN / "torch_adam.npz"
NUM_STEPS = 300
CHECKPOINTS = (1, 2, 3, 5, 10, 30, 100, 200, 300)
TOLERANCE = 1e-12
LR, B1, B2, EPS, WD = 1e-2, 0.8, 0.95, 1e-6, 0.1

warnings.filterwarnings("ignore", category=UserWarning)  # deprecated overloads in old code
warnings.filterwarnings("ignore", category=FutureWarning)


def load_problem() -> dict[str, dict[str, np.ndarray]]:
    with np.load(PROBLEM_FILE) as data:
        leaves = [str(n) for n in data["leaves"]]
        return {n: {f: data[f"{f}__{n}"] for f in ("p0", "h", "c", "noise")} for n in leaves}


def load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def timm_optim(module: str) -> types.ModuleType:
    """``timm.optim.<module>`` without running timm's package ``__init__`` (torchvision)."""
    root = Path(importlib.metadata.distribution("timm").locate_file("timm"))
    for package, path in (("timm", root), ("timm.optim", root / "optim")):
        if package not in sys.modules:
            stub = types.ModuleType(package)
            stub.__path__ = [str(path)]
            sys.modules[package] = stub
    return load_file(f"timm.optim.{module}", root / "optim" / f"{module}.py")


def git_commit(path: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(path.parent), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown commit"
    except OSError:
        return "unknown commit"


@dataclass
class Case:
    name: str
    generator: str
    convention: str
    build: Callable[[list[torch.Tensor]], torch.optim.Optimizer]
    reference: Callable[[], Any]
    hp: dict[str, float | bool]
    mu_times_lr: bool = False  # LaProp's torch codes keep lr * m as their exp_avg
    extra: dict[str, Any] = field(default_factory=dict)


def run(problem, step, read_slots) -> dict[str, np.ndarray]:
    params = {n: leaf["p0"].astype(np.float64) for n, leaf in problem.items()}
    records: dict[str, list[np.ndarray]] = {}
    for k in range(NUM_STEPS):
        grads = {
            n: np.asarray(leaf["h"] * (params[n] - leaf["c"]) + leaf["noise"][k])
            for n, leaf in problem.items()
        }
        params = step(params, grads)
        if k + 1 in CHECKPOINTS:
            for kind, leaves in {"param": params, **read_slots()}.items():
                for n in problem:
                    records.setdefault(f"{kind}__{n}", []).append(np.array(leaves[n]))
    return {key: np.stack(v) for key, v in records.items()}


SLOTS = {
    "mu": "exp_avg",
    "nu": "exp_avg_sq",
    "nu_max": "max_exp_avg_sq",
    "nu_mean": "exp_mean_avg_beta2",
}


def run_torch(problem, case: Case) -> dict[str, np.ndarray]:
    tensors = {n: torch.tensor(leaf["p0"], dtype=torch.float64) for n, leaf in problem.items()}
    for t in tensors.values():
        t.requires_grad_(True)
    opt = case.build(list(tensors.values()))

    def step(params, grads):
        for n, t in tensors.items():
            t.grad = torch.tensor(grads[n], dtype=torch.float64)
        opt.step()
        return {n: t.detach().numpy().copy() for n, t in tensors.items()}

    def slots():
        out = {"mu": {}, "nu": {}}
        for n, t in tensors.items():
            state = opt.state[t]
            for slot, key in SLOTS.items():
                if key in state:
                    out.setdefault(slot, {})[n] = state[key].numpy().copy()
        return out

    return run(problem, step, slots)


def run_reference(problem, case: Case) -> dict[str, np.ndarray]:
    ref = case.reference()
    scale = LR if case.mu_times_lr else 1.0

    def slots():
        out = {"mu": {n: scale * m for n, m in ref.m.items()}, "nu": dict(ref.v)}
        for slot, attr in (("nu_max", "v_max"), ("nu_mean", "mean")):
            if getattr(ref, attr, None):
                out[slot] = dict(getattr(ref, attr))
        return out

    return run(problem, ref.step, slots)


def relative_error(a: np.ndarray, e: np.ndarray) -> float:
    scale = float(np.max(np.abs(e)))
    err = float(np.max(np.abs(a - e)))
    return err / scale if scale > 0 else err


def constant(lr: float) -> Callable[[int], float]:
    return lambda k: lr


def build_cases(authors_adopt: Path | None, authors_laprop: Path | None) -> list[Case]:
    import pytorch_optimizer

    timm_version = importlib.metadata.version("timm")
    po_version = importlib.metadata.version("pytorch_optimizer")
    timm_laprop, timm_adopt = timm_optim("laprop"), timm_optim("adopt")
    betas = (B1, B2)
    base = {"lr": LR, "b1": B1, "b2": B2, "eps": EPS}
    laprop_conv = (
        "LaProp: v = b2 v + (1-b2) g^2; n = g / (sqrt(v/(1-b2^t)) + eps); m = b1 m + (1-b1) lr n; "
        "p -= m / (1-b1^t) (constant lr; the file's mu is the library's lr*m)"
    )
    cases = [
        Case(
            "laprop_timm",
            f"timm {timm_version}: timm.optim.laprop.LaProp(lr={LR}, betas={betas}, eps={EPS})",
            laprop_conv,
            lambda ps: timm_laprop.LaProp(ps, lr=LR, betas=betas, eps=EPS),
            lambda: LapropReference(constant(LR), B1, B2, EPS),
            {**base, "weight_decay": 0.0},
            mu_times_lr=True,
        ),
        Case(
            "laprop_pytorch_optimizer",
            f"pytorch_optimizer {po_version}: pytorch_optimizer.LaProp(lr={LR}, betas={betas}, "
            f"eps={EPS}, foreach=False)",
            "LaProp with n = g * sqrt(1-b2^t) / (sqrt(v + 1e-15) + eps), i.e. eps-hat with "
            "eps_root=1e-15; otherwise as timm",
            lambda ps: pytorch_optimizer.LaProp(ps, lr=LR, betas=betas, eps=EPS, foreach=False),
            lambda: LapropReference(constant(LR), B1, B2, EPS, 1e-15, "hat"),
            {**base, "weight_decay": 0.0, "eps_root": 1e-15},
            mu_times_lr=True,
        ),
        Case(
            "adopt_timm",
            f"timm {timm_version}: timm.optim.adopt.Adopt(lr={LR}, betas={betas}, eps={EPS}) "
            "(default clip_exp=0.333)",
            "ADOPT: first call v = g^2 only; then n = clip(g / max(sqrt(v), eps), (t-1)^0.333) "
            "with t the 1-based call; m = b1 m + (1-b1) n; p -= lr m; v = b2 v + (1-b2) g^2",
            lambda ps: timm_adopt.Adopt(ps, lr=LR, betas=betas, eps=EPS, foreach=False),
            lambda: AdoptReference(constant(LR), B1, B2, EPS, clip=lambda x: x**0.333),
            {**base, "weight_decay": 0.0, "clip_exponent": 0.333, "clip_offset": 0.0},
        ),
        Case(
            "adopt_pytorch_optimizer",
            f"pytorch_optimizer {po_version}: pytorch_optimizer.ADOPT(lr={LR}, betas={betas}, "
            f"eps={EPS}, weight_decay={WD}, foreach=False) (coupled L2)",
            "ADOPT as timm with the clip t^0.25 of the 1-based call t (one step later than "
            "the paper); L2 g += wd p before everything",
            lambda ps: pytorch_optimizer.ADOPT(
                ps, lr=LR, betas=betas, eps=EPS, weight_decay=WD, foreach=False
            ),
            lambda: AdoptReference(constant(LR), B1, B2, EPS, clip_offset=1, weight_decay=WD),
            {
                **base,
                "weight_decay": WD,
                "decoupled": False,
                "clip_exponent": 0.25,
                "clip_offset": 1.0,
            },
        ),
    ]
    for option, kw in (("centered", {"centered": True}), ("ams_bound", {"amsgrad": True})):
        cases.append(
            Case(
                f"laprop_pytorch_optimizer_{option}",
                f"pytorch_optimizer {po_version}: pytorch_optimizer.LaProp(lr={LR}, betas={betas}, "
                f"eps={EPS}, {option}=True, foreach=False)",
                f"as laprop_pytorch_optimizer with {option} (centering after 10 steps; the "
                "maximum of the raw second moment)",
                lambda ps, option=option: pytorch_optimizer.LaProp(
                    ps, lr=LR, betas=betas, eps=EPS, foreach=False, **{option: True}
                ),
                lambda kw=kw: LapropReference(constant(LR), B1, B2, EPS, 1e-15, "hat", **kw),
                {**base, "weight_decay": 0.0, "eps_root": 1e-15, **kw},
                mu_times_lr=True,
            )
        )
    if authors_adopt is not None:
        authors = load_file("authors_adopt", authors_adopt)
        where = f"github.com/iShohei220/adopt {git_commit(authors_adopt)} src/adopt/adopt.py"
        for suffix, wd, decouple in (
            ("", 0.0, False),
            ("_l2", WD, False),
            ("_decoupled", WD, True),
        ):
            cases.append(
                Case(
                    f"adopt_authors{suffix}",
                    f"{where}: ADOPT(lr={LR}, betas={betas}, eps={EPS}, weight_decay={wd}, "
                    f"decouple={decouple}) (default clip_lambda=step**0.25)",
                    "ADOPT as the paper: clip (t-1)^0.25 of the 1-based call t; L2 g += wd p, "
                    "or decoupled p -= lr wd p from the second call on",
                    lambda ps, wd=wd, decouple=decouple: authors.ADOPT(
                        ps, lr=LR, betas=betas, eps=EPS, weight_decay=wd, decouple=decouple
                    ),
                    lambda wd=wd, decouple=decouple: AdoptReference(
                        constant(LR), B1, B2, EPS, weight_decay=wd, decoupled=decouple
                    ),
                    {
                        **base,
                        "weight_decay": wd,
                        "decoupled": decouple,
                        "clip_exponent": 0.25,
                        "clip_offset": 0.0,
                    },
                )
            )
    if authors_laprop is not None:
        authors_lp = load_file("authors_laprop", authors_laprop)
        where = f"github.com/Z-T-WANG/LaProp-Optimizer {git_commit(authors_laprop)} laprop.py"
        for suffix, kw in (
            ("", {}),
            ("_amsgrad", {"amsgrad": True}),
            ("_centered_amsgrad", {"centered": True, "amsgrad": True}),
        ):
            cases.append(
                Case(
                    f"laprop_authors{suffix}",
                    f"{where}: LaProp(lr={LR}, betas={betas}, eps={EPS}"
                    + "".join(f", {k}=True" for k in kw)
                    + ")",
                    laprop_conv
                    + (
                        "; centered: v - a^2 after 10 steps, a = EMA of g with b2"
                        if "centered" in kw
                        else ""
                    )
                    + ("; amsgrad: max of the raw (centered) v" if "amsgrad" in kw else ""),
                    lambda ps, kw=kw: authors_lp.LaProp(ps, lr=LR, betas=betas, eps=EPS, **kw),
                    lambda kw=kw: LapropReference(constant(LR), B1, B2, EPS, **kw),
                    {**base, "weight_decay": 0.0, **kw},
                    mu_times_lr=True,
                )
            )
    return cases


def generate(problem, case: Case) -> None:
    torch.set_default_dtype(torch.float64)
    trajectory = run_torch(problem, case)
    expected = run_reference(problem, case)
    if trajectory.keys() != expected.keys():
        raise RuntimeError(f"{case.name}: keys differ: {sorted(trajectory)} != {sorted(expected)}")
    worst = max(relative_error(trajectory[k], expected[k]) for k in expected)
    print(f"{case.name}: max rel err vs the float64 paper reference {worst:.2e}")
    if worst >= TOLERANCE:
        raise RuntimeError(f"{case.name}: library and reference disagree ({worst:.2e})")
    arrays: dict[str, np.ndarray] = {
        "meta_generator": np.array(case.generator),
        "meta_convention": np.array(case.convention),
        "hp_lr_decay": np.array(1.0),
        "hp_amsgrad": np.array(False),
        "hp_mu_times_lr": np.array(case.mu_times_lr),
    }
    for key, value in case.hp.items():
        arrays[f"hp_{key}"] = np.array(value, dtype=np.bool_ if isinstance(value, bool) else None)
    arrays["leaves"] = np.array(list(problem))
    arrays["steps"] = np.array(CHECKPOINTS, dtype=np.int64)
    for n, leaf in problem.items():
        for f in ("p0", "h", "c", "noise"):
            arrays[f"{f}__{n}"] = leaf[f]
    arrays.update(trajectory)
    np.savez_compressed(GOLDEN / f"{case.name}.npz", **arrays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors-adopt", type=Path, help="path to the authors' adopt.py")
    parser.add_argument("--authors-laprop", type=Path, help="path to the authors' laprop.py")
    args = parser.parse_args()
    problem = load_problem()
    for case in build_cases(args.authors_adopt, args.authors_laprop):
        generate(problem, case)


if __name__ == "__main__":
    main()
