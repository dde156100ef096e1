"""Generate golden Schedule-Free AdamW trajectories from the authors' ``schedulefree`` package.

Runs ``schedulefree.AdamWScheduleFree`` (float64, ``foreach=False``) on the golden problem of
``make_golden.py`` (read from ``golden/torch_adam.npz``, so this script needs neither keras nor
the other packages) and records, at the usual checkpoints, the params the optimizer trains (the
``y`` sequence, in train mode), the params ``optimizer.eval()`` swaps in (the average ``x``),
the base iterate ``z`` and the raw second moment.

How to regenerate (from the repository root):

    pip install torch==2.13.0 schedulefree==1.4.1 numpy
    python tests/reference/make_golden_schedule_free.py

Before writing a file, the script replays the case with the float64 NumPy reference written from
the paper (``schedule_free_reference.py``) and with the package's own simplified
``AdamWScheduleFreeReference`` (which keeps x, y and z explicitly), and refuses to save it unless
every recorded array of both agrees to a relative 1e-12.

Layout: as ``make_golden.py`` (``meta_generator``, ``meta_convention``, ``hp_*``, ``leaves``,
``steps``, ``p0__L``, ``h__L``, ``c__L``, ``noise__L``, ``param__L``, ``nu__L``), plus
``x__L`` (the eval params), ``z__L`` (the z sequence) and the hyperparameters
``hp_warmup_steps`` (int64), ``hp_r`` and ``hp_weight_lr_power`` (float64). ``param__L`` is
``y``; ``mu__L`` is absent (Schedule-Free AdamW keeps no first moment).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import schedulefree
import torch
from schedule_free_reference import ScheduleFreeReference

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
SOURCE = GOLDEN / "torch_adam.npz"  # the shared problem of make_golden.py
TOLERANCE = 1e-12

CONVENTION = (
    "schedulefree.AdamWScheduleFree: step t (1-based) uses lr_t = lr*min(1, t/warmup_steps) "
    "for both the z step and the averaging weight w_t = t^r * max(lr_1..lr_t)^weight_lr_power; "
    "c_t = w_t/sum(w) (0 while the sum is 0); v = b2*v + (1-b2)*g^2, "
    "d = g/(sqrt(v/(1-b2^t)) + eps) + weight_decay*y (decay at y); z -= lr_t*d; "
    "x = (1-c_t)*x + c_t*z; y = b1*x + (1-b1)*z, computed in place on y as "
    "y = (1-c_t)*y + c_t*z_old + lr_t*(b1*(1-c_t) - 1)*d. eval() sets p = x = y + (1-1/b1)*(z-y)"
)

CASES = {
    "schedulefree_adamw": dict(
        lr=1e-2, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.0, warmup_steps=0, r=0.0,
        weight_lr_power=2.0,
    ),
    "schedulefree_adamw_warmup_wd": dict(
        lr=1e-2, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.1, warmup_steps=20, r=0.0,
        weight_lr_power=2.0,
    ),
    "schedulefree_adamw_r": dict(
        lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, warmup_steps=10, r=1.0,
        weight_lr_power=1.0,
    ),
}  # fmt: skip


def load_problem() -> tuple[dict, list[str], np.ndarray]:
    with np.load(SOURCE) as data:
        leaves = [str(k) for k in data["leaves"]]
        problem = {k: {f: data[f"{f}__{k}"] for f in ("p0", "h", "c", "noise")} for k in leaves}
        steps = data["steps"]
    return problem, leaves, steps


def gradients(problem: dict, params: dict, k: int) -> dict:
    return {
        name: np.asarray(leaf["h"] * (params[name] - leaf["c"]) + leaf["noise"][k])
        for name, leaf in problem.items()
    }


def run_package(
    problem: dict,
    leaves: list[str],
    steps: np.ndarray,
    kwargs: dict,
    optimizer: type = schedulefree.AdamWScheduleFree,
) -> dict:
    tensors = {k: torch.tensor(problem[k]["p0"], dtype=torch.float64) for k in leaves}
    params = [torch.nn.Parameter(t.clone()) for t in tensors.values()]
    by_name = dict(zip(leaves, params, strict=True))
    opt = optimizer(params, foreach=False, **kwargs)
    opt.train()
    records: dict[str, list[np.ndarray]] = {}
    for k in range(int(steps[-1])):
        y = {n: p.detach().numpy().copy() for n, p in by_name.items()}
        for n, g in gradients(problem, y, k).items():
            by_name[n].grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        if k + 1 in set(int(s) for s in steps):
            snap = {"param": {n: p.detach().numpy().copy() for n, p in by_name.items()}}
            snap["z"] = {n: opt.state[p]["z"].numpy().copy() for n, p in by_name.items()}
            snap["nu"] = {n: opt.state[p]["exp_avg_sq"].numpy().copy() for n, p in by_name.items()}
            opt.eval()
            snap["x"] = {n: p.detach().numpy().copy() for n, p in by_name.items()}
            opt.train()
            for kind, values in snap.items():
                for n in leaves:
                    records.setdefault(f"{kind}__{n}", []).append(values[n])
    return {key: np.stack(v) for key, v in records.items()}


def run_reference(problem: dict, leaves: list[str], steps: np.ndarray, kwargs: dict) -> dict:
    b1, b2 = kwargs["betas"]
    ref = ScheduleFreeReference(
        kwargs["lr"], b1, b2, kwargs["eps"], kwargs["weight_decay"], kwargs["warmup_steps"],
        kwargs["r"], kwargs["weight_lr_power"],
    )  # fmt: skip
    y = {k: problem[k]["p0"].copy() for k in leaves}
    records: dict[str, list[np.ndarray]] = {}
    for k in range(int(steps[-1])):
        y = ref.step(y, gradients(problem, y, k))
        if k + 1 in set(int(s) for s in steps):
            snap = {"param": y, "z": ref.z, "nu": ref.v, "x": ref.x}
            for kind, values in snap.items():
                for n in leaves:
                    records.setdefault(f"{kind}__{n}", []).append(np.array(values[n]))
    return {key: np.stack(v) for key, v in records.items()}


def relative_error(got: dict, want: dict) -> float:
    """The largest ``max|got - want| / max|want|`` over the recorded arrays."""
    worst = 0.0
    for key in want:
        scale = float(np.max(np.abs(want[key])))
        err = float(np.max(np.abs(got[key] - want[key])))
        worst = max(worst, err / scale if scale > 0 else err)
    return worst


def main() -> None:
    torch.set_default_dtype(torch.float64)
    problem, leaves, steps = load_problem()
    version = importlib.metadata.version("schedulefree")
    for name, kwargs in CASES.items():
        got = run_package(problem, leaves, steps, kwargs)
        want = run_reference(problem, leaves, steps, kwargs)
        # The package's simplified implementation, which keeps x, y and z explicitly.
        simple = run_package(
            problem, leaves, steps, kwargs, schedulefree.AdamWScheduleFreeReference
        )
        worst = relative_error(got, want)
        worst_simple = relative_error(simple, want)
        print(
            f"{name}: max rel err vs the paper reference {worst:.2e} (AdamWScheduleFree), "
            f"{worst_simple:.2e} (AdamWScheduleFreeReference)"
        )
        if max(worst, worst_simple) >= TOLERANCE:
            raise RuntimeError(f"{name}: package and reference disagree ({worst:.2e})")
        call = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        b1, b2 = kwargs["betas"]
        arrays = {
            "meta_generator": np.array(
                f"schedulefree {version} on torch {torch.__version__}: "
                f"schedulefree.AdamWScheduleFree({call}, foreach=False), float64, train mode; "
                "x from optimizer.eval()"
            ),
            "meta_convention": np.array(CONVENTION),
            "hp_lr": np.array(kwargs["lr"], np.float64),
            "hp_b1": np.array(b1, np.float64),
            "hp_b2": np.array(b2, np.float64),
            "hp_eps": np.array(kwargs["eps"], np.float64),
            "hp_weight_decay": np.array(kwargs["weight_decay"], np.float64),
            "hp_lr_decay": np.array(1.0, np.float64),
            "hp_amsgrad": np.array(False),
            "hp_warmup_steps": np.array(kwargs["warmup_steps"], np.int64),
            "hp_r": np.array(kwargs["r"], np.float64),
            "hp_weight_lr_power": np.array(kwargs["weight_lr_power"], np.float64),
            "leaves": np.array(leaves),
            "steps": np.asarray(steps, np.int64),
        }
        for n in leaves:
            for f in ("p0", "h", "c", "noise"):
                arrays[f"{f}__{n}"] = problem[n][f]
        arrays.update(got)
        np.savez_compressed(GOLDEN / f"{name}.npz", **arrays)
    print(f"wrote {len(CASES)} files to {GOLDEN}")


if __name__ == "__main__":
    main()
