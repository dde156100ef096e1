"""Generate golden LAMB, AdaBelief and Yogi trajectories from the torch reference packages.

Sources: ``pytorch_optimizer`` 4.1.0 (``Lamb``, ``AdaBelief``, ``Yogi``) and the AdaBelief
authors' package ``adabelief_pytorch`` 0.2.1 (``AdaBelief``, with and without ``rectify``).

How to regenerate:

    pip install torch==2.13.0 pytorch_optimizer==4.1.0 adabelief_pytorch==0.2.1 numpy
    python tests/reference/make_golden_lamb_group.py

Run it from the repository root; it (re)writes the ``lamb_group_*`` files in
``tests/reference/golden/``. The problem is the shared noisy quadratic of ``make_golden.py``,
read from ``golden/torch_adam.npz`` (so this script needs neither keras nor the other packages
``make_golden.py`` drives), and the file layout is that script's (see its docstring). Before
writing, each case is replayed by the float64 NumPy reference in ``lamb_group_reference.py``
with the library's conventions, and a case whose trajectory disagrees by a relative error of
1e-12 or more is refused.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_optimizer
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lamb_group_reference import AdaBeliefReference, LambReference, YogiReference

with contextlib.redirect_stdout(io.StringIO()):  # the package prints a banner on import
    import adabelief_pytorch

GOLDEN = Path(__file__).resolve().parent / "golden"
TOLERANCE = 1e-12
LR, B1, B2, WD = 1e-2, 0.8, 0.95, 0.1
# Why lamb_group_pto_lamb_debias uses b2=0.999 and wd=0.01 (saved in its meta_generator): with
# the shared b2=0.95 and wd=0.1, the tiny-gradient leaf t, whose uncorrected direction is
# dominated by wd*p, amplifies round-off: the library and the replay part by 6e-10 at step 300.
LAMB_DEBIAS_NOTE = (
    "; b2=0.999 and wd=0.01 instead of the shared 0.95 and 0.1: with those, round-off in the "
    "decay-driven tiny-gradient leaf t grows to 6e-10 by step 300"
)


def load_problem() -> dict:
    with np.load(GOLDEN / "torch_adam.npz") as data:
        leaves = [str(n) for n in data["leaves"]]
        problem = {n: {f: data[f"{f}__{n}"] for f in ("p0", "h", "c", "noise")} for n in leaves}
        return {"problem": problem, "steps": [int(s) for s in data["steps"]]}


def run(problem: dict, steps: list[int], step: Callable, slots: Callable) -> dict:
    """Closed loop: the gradient of 0-based step k is h*(p - c) + noise[k] at the current p."""
    params = {n: leaf["p0"].copy() for n, leaf in problem.items()}
    records: dict[str, list] = {}
    for k in range(steps[-1]):
        grads = {
            n: leaf["h"] * (params[n] - leaf["c"]) + leaf["noise"][k] for n, leaf in problem.items()
        }
        params = step(params, grads)
        if k + 1 in steps:
            for kind, leaves in {"param": params, **slots()}.items():
                for n in problem:
                    records.setdefault(f"{kind}__{n}", []).append(np.array(leaves[n]))
    return {key: np.stack(values) for key, values in records.items()}


def torch_stepper(problem: dict, make: Callable) -> tuple[Callable, Callable]:
    tensors = {n: torch.tensor(leaf["p0"], dtype=torch.float64) for n, leaf in problem.items()}
    with contextlib.redirect_stdout(io.StringIO()):
        opt = make(list(tensors.values()))
    keys = {"mu": "exp_avg", "nu": "exp_avg_sq"}

    def step(params: dict, grads: dict) -> dict:
        for n, t in tensors.items():
            t.grad = torch.from_numpy(np.array(grads[n], dtype=np.float64))
        opt.step()
        return {n: t.detach().numpy().copy() for n, t in tensors.items()}

    def slots() -> dict:
        state = {n: opt.state[t] for n, t in tensors.items()}
        nu_key = "exp_avg_var" if "exp_avg_var" in next(iter(state.values())) else keys["nu"]
        return {
            "mu": {n: s["exp_avg"].numpy().copy() for n, s in state.items()},
            "nu": {n: s[nu_key].numpy().copy() for n, s in state.items()},
        }

    return step, slots


def replay_stepper(ref) -> tuple[Callable, Callable]:
    return ref.step, lambda: {"mu": dict(ref.m), "nu": dict(ref.v)}


@dataclass(frozen=True)
class Case:
    name: str
    generator: str
    convention: str
    make_torch: Callable
    make_reference: Callable
    hp: dict


def cases() -> list[Case]:
    po = pytorch_optimizer
    ab = adabelief_pytorch.AdaBelief
    betas = (B1, B2)
    hp = {"lr": LR, "b1": B1, "b2": B2}
    return [
        Case(
            "lamb_group_pto_lamb",
            f"pytorch_optimizer.Lamb(lr={LR}, betas={betas}, eps=1e-6, foreach=False)",
            "m corrected in the step size after the trust ratio, v uncorrected; "
            "||p|| clamped at 10; trust ratio ||p||/(||d|| + eps)",
            lambda p: po.Lamb(p, lr=LR, betas=betas, eps=1e-6, foreach=False),
            lambda: LambReference(
                LR,
                B1,
                B2,
                1e-6,
                correct_v=False,
                max_norm=10.0,
                trust_eps=1e-6,
                correct_m_in_step=True,
            ),
            {**hp, "eps": 1e-6, "weight_decay": 0.0},
        ),
        Case(
            "lamb_group_pto_lamb_debias",
            f"pytorch_optimizer.Lamb(lr={LR}, betas=({B1}, 0.999), eps=1e-6, weight_decay=0.01, "
            "weight_decouple=False, adam_debias=True, foreach=False)" + LAMB_DEBIAS_NOTE,
            "no bias correction; decay wd*p inside the trust ratio; ||p|| clamped at 10; "
            "trust ratio ||p||/(||d|| + eps)",
            lambda p: po.Lamb(
                p,
                lr=LR,
                betas=(B1, 0.999),
                eps=1e-6,
                weight_decay=0.01,
                weight_decouple=False,
                adam_debias=True,
                foreach=False,
            ),
            lambda: LambReference(
                LR,
                B1,
                0.999,
                1e-6,
                0.01,
                correct_m=False,
                correct_v=False,
                max_norm=10.0,
                trust_eps=1e-6,
            ),
            {"lr": LR, "b1": B1, "b2": 0.999, "eps": 1e-6, "weight_decay": 0.01},
        ),
        Case(
            "lamb_group_pto_lamb_decoupled",
            f"pytorch_optimizer.Lamb(lr={LR}, betas={betas}, eps=1e-6, weight_decay={WD}, "
            "foreach=False)",
            "as lamb_group_pto_lamb, with p *= 1 - lr*wd before the norms (weight_decouple=True)",
            lambda p: po.Lamb(p, lr=LR, betas=betas, eps=1e-6, weight_decay=WD, foreach=False),
            lambda: LambReference(
                LR,
                B1,
                B2,
                1e-6,
                WD,
                correct_v=False,
                max_norm=10.0,
                trust_eps=1e-6,
                decay_outside=True,
                correct_m_in_step=True,
            ),
            {**hp, "eps": 1e-6, "weight_decay": WD},
        ),
        Case(
            "lamb_group_adabelief_authors",
            f"adabelief_pytorch.AdaBelief(lr={LR}, betas={betas}, eps=1e-12, weight_decay={WD}, "
            "weight_decouple=True, rectify=False)",
            "s = b2*s + (1-b2)*(g-m)^2 + eps (eps kept in s); p -= lr*m_hat/(sqrt(s_hat)+eps); "
            "p *= 1 - lr*wd first",
            lambda p: ab(
                p,
                lr=LR,
                betas=betas,
                eps=1e-12,
                weight_decay=WD,
                weight_decouple=True,
                rectify=False,
                print_change_log=False,
            ),
            lambda: AdaBeliefReference(LR, B1, B2, 1e-12, 1e-12, WD),
            {**hp, "eps": 1e-12, "weight_decay": WD},
        ),
        Case(
            "lamb_group_adabelief_authors_rectify",
            f"adabelief_pytorch.AdaBelief(lr={LR}, betas={betas}, eps=1e-12, weight_decay={WD}, "
            "weight_decouple=True, rectify=True)",
            "as lamb_group_adabelief_authors, rectified as RAdam when rho_t >= 5: "
            "p -= lr*r_t*sqrt(1-b2^t)/(1-b1^t)*m/(sqrt(s)+eps); momentum SGD before",
            lambda p: ab(
                p,
                lr=LR,
                betas=betas,
                eps=1e-12,
                weight_decay=WD,
                weight_decouple=True,
                rectify=True,
                print_change_log=False,
            ),
            lambda: AdaBeliefReference(LR, B1, B2, 1e-12, 1e-12, WD, rectify=True),
            {**hp, "eps": 1e-12, "weight_decay": WD, "rectify": True},
        ),
        Case(
            "lamb_group_pto_adabelief",
            f"pytorch_optimizer.AdaBelief(lr={LR}, betas={betas}, eps=1e-12, weight_decay={WD}, "
            "foreach=False)",
            "as lamb_group_adabelief_authors",
            lambda p: po.AdaBelief(
                p, lr=LR, betas=betas, eps=1e-12, weight_decay=WD, foreach=False
            ),
            lambda: AdaBeliefReference(LR, B1, B2, 1e-12, 1e-12, WD),
            {**hp, "eps": 1e-12, "weight_decay": WD},
        ),
        Case(
            "lamb_group_pto_yogi",
            f"pytorch_optimizer.Yogi(lr={LR}, betas={betas}, eps=1e-3, initial_accumulator=1e-6, "
            f"weight_decay={WD}, foreach=False)",
            "m and v start at 1e-6; v -= (1-b2)*sign(v-g^2)*g^2; both bias-corrected; "
            "p *= 1 - lr*wd first",
            lambda p: po.Yogi(
                p,
                lr=LR,
                betas=betas,
                eps=1e-3,
                initial_accumulator=1e-6,
                weight_decay=WD,
                foreach=False,
            ),
            lambda: YogiReference(LR, B1, B2, 1e-3, 1e-6, weight_decay=WD),
            {**hp, "eps": 1e-3, "weight_decay": WD},
        ),
        Case(
            "lamb_group_pto_yogi_debias",
            f"pytorch_optimizer.Yogi(lr={LR}, betas={betas}, eps=1e-3, initial_accumulator=1e-3, "
            "adam_debias=True, foreach=False)",
            "as lamb_group_pto_yogi without weight decay, initial value 1e-3 and m uncorrected",
            lambda p: po.Yogi(
                p,
                lr=LR,
                betas=betas,
                eps=1e-3,
                initial_accumulator=1e-3,
                adam_debias=True,
                foreach=False,
            ),
            lambda: YogiReference(LR, B1, B2, 1e-3, 1e-3, correct_m=False),
            {**hp, "eps": 1e-3, "weight_decay": 0.0},
        ),
    ]


def main() -> None:
    loaded = load_problem()
    problem, steps = loaded["problem"], loaded["steps"]
    versions = {
        pkg: importlib.metadata.version(pkg)
        for pkg in ("torch", "pytorch_optimizer", "adabelief_pytorch")
    }
    for case in cases():
        got = run(problem, steps, *torch_stepper(problem, case.make_torch))
        want = run(problem, steps, *replay_stepper(case.make_reference()))
        worst = max(
            float(np.max(np.abs(got[k] - want[k])) / max(np.max(np.abs(want[k])), 1e-300))
            for k in want
        )
        print(f"{case.name}: max rel err vs replay {worst:.2e}")
        if worst >= TOLERANCE:
            raise RuntimeError(f"{case.name}: library and replay disagree ({worst:.2e})")
        arrays = {
            "meta_generator": np.array(f"{case.generator}; versions {versions}"),
            "meta_convention": np.array(case.convention),
            "leaves": np.array(list(problem)),
            "steps": np.array(steps, dtype=np.int64),
        }
        for key, value in case.hp.items():
            dtype = np.bool_ if isinstance(value, bool) else np.float64
            arrays[f"hp_{key}"] = np.array(value, dtype=dtype)
        for n, leaf in problem.items():
            for f, x in leaf.items():
                arrays[f"{f}__{n}"] = x
        arrays.update(got)
        np.savez_compressed(GOLDEN / f"{case.name}.npz", **arrays)
    print(f"wrote {len(cases())} files to {GOLDEN}")


if __name__ == "__main__":
    main()
