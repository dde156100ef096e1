"""Generate golden trajectories of the modifiers (cautious, update clipping, atan2, AdamC).

Sources: timm 1.0.31 (``AdamWLegacy`` with ``caution``, ``clipping_threshold`` and
``corrected_weight_decay``), pytorch_optimizer 4.1.0 (``StableAdamW``, ``AdamC``) and
adam-atan2-pytorch 0.4.1 (``AdamAtan2``, lucidrains).

How to regenerate (from the repository root; a CPU-only torch is enough):

    pip install torch==2.13.0 timm==1.0.31 pytorch_optimizer==4.1.0 adam-atan2-pytorch==0.4.1
    python tests/reference/make_golden_modifiers.py

timm's package ``__init__`` imports torchvision and adam-atan2-pytorch's imports einops; the script
loads ``timm/optim/adamw.py`` (with its helpers) and ``adam_atan2_pytorch/adam_atan2.py`` by file
path instead, so neither is needed.

The problem is the one of ``make_golden.py``, read from ``golden/torch_adam.npz`` (its
``p0__L``, ``h__L``, ``c__L``, ``noise__L``): the gradient at 0-based step ``k`` is
``h * (p - c) + noise[k]`` at the current params, 300 steps, float64. Each file has the layout of
``make_golden.py``'s files, with ``param__L`` at the checkpoints only (the modifiers keep no state
of their own) plus ``mu__L``/``nu__L`` where the library keeps Adam's raw moments, and
``meta_generator`` naming the library version and call.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
SOURCE = GOLDEN / "torch_adam.npz"
LR, B1, B2, EPS, WD = 1e-2, 0.8, 0.95, 1e-6, 0.1
LR_DECAY = 0.99  # LambdaLR(0.99**k) in the schedule cases


def load_timm_adamw() -> types.ModuleType:
    """``timm.optim.adamw`` without timm's package ``__init__`` (which needs torchvision)."""
    import importlib

    root = Path(importlib.util.find_spec("timm").submodule_search_locations[0]) / "optim"
    for name in ("timm", "timm.optim"):
        module = types.ModuleType(name)
        module.__path__ = [str(root.parent if name == "timm" else root)]
        sys.modules.setdefault(name, module)
    for sub in ("_types", "_helpers", "adamw"):
        spec = importlib.util.spec_from_file_location(f"timm.optim.{sub}", root / f"{sub}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["timm.optim.adamw"]


def problem() -> dict:
    with np.load(SOURCE) as data:
        src = {k: data[k] for k in data.files}
    keep = (
        "leaves",
        "steps",
        *(f"{key}__{leaf}" for leaf in src["leaves"] for key in ("p0", "h", "c", "noise")),
    )
    return {k: src[k] for k in keep}


def run(prob: dict, build: Callable, lr_decay: float = 1.0) -> dict:
    """Closed loop in float64; returns params (and Adam's raw moments if kept) per checkpoint."""
    leaves = [str(x) for x in prob["leaves"]]
    params = [torch.tensor(prob[f"p0__{k}"], dtype=torch.float64) for k in leaves]
    for p in params:
        p.requires_grad_(True)
    opt = build(params)
    sched = None
    if lr_decay != 1.0:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_decay**k)
    checkpoints = {int(s) for s in prob["steps"]}
    out: dict[str, list] = {}
    for k in range(int(prob["steps"][-1])):
        for name, p in zip(leaves, params, strict=True):
            h, c = prob[f"h__{name}"], prob[f"c__{name}"]
            g = h * (p.detach().numpy() - c) + prob[f"noise__{name}"][k]
            p.grad = torch.tensor(np.asarray(g, np.float64).reshape(p.shape))
        opt.step()
        if sched is not None:
            sched.step()
        if k + 1 in checkpoints:
            for name, p in zip(leaves, params, strict=True):
                out.setdefault(f"param__{name}", []).append(p.detach().numpy().copy())
                state = opt.state[p]
                for slot, key in (("mu", "exp_avg"), ("nu", "exp_avg_sq")):
                    if key in state:
                        out.setdefault(f"{slot}__{name}", []).append(state[key].numpy().copy())
    return {k: np.stack(v) for k, v in out.items()}


def cases() -> dict[str, tuple[str, str, Callable, dict]]:
    """name -> (meta_generator, meta_convention, builder, hyperparameters and lr_decay)."""
    timm = load_timm_adamw()
    import pytorch_optimizer as po

    # The package __init__ imports einops for its other optimizers; AdamAtan2 needs torch only.
    root = Path(importlib.util.find_spec("adam_atan2_pytorch").submodule_search_locations[0])
    spec = importlib.util.spec_from_file_location("adam_atan2", root / "adam_atan2.py")
    adam_atan2_pytorch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(adam_atan2_pytorch)

    tv = f"timm {importlib.metadata.version('timm')}"
    pv = f"pytorch_optimizer {importlib.metadata.version('pytorch_optimizer')}"
    av = f"adam-atan2-pytorch {importlib.metadata.version('adam-atan2-pytorch')}"
    hp = {"lr": LR, "b1": B1, "b2": B2, "eps": EPS}

    def timm_adamw(**kw: object) -> Callable:
        return lambda ps: timm.AdamWLegacy(ps, lr=LR, betas=(B1, B2), eps=EPS, foreach=False, **kw)

    return {
        "timm_cadam": (
            f"{tv}: AdamWLegacy(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0, "
            "caution=True, foreach=False)",
            "cautious Adam: mask (m*g > 0) / max(mean(mask), 1e-3) per tensor",
            timm_adamw(weight_decay=0.0, caution=True),
            {**hp, "weight_decay": 0.0},
        ),
        "timm_cadamw": (
            f"{tv}: AdamWLegacy(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1, "
            "caution=True, foreach=False)",
            "cautious AdamW: the mask applies to the Adam direction only; decay p *= 1 - lr*wd",
            timm_adamw(weight_decay=WD, caution=True),
            {**hp, "weight_decay": WD},
        ),
        "timm_adamw_clip": (
            f"{tv}: AdamWLegacy(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1, "
            "clipping_threshold=1.0, foreach=False)",
            "update clipping: denom *= max(1, rms(g / (sqrt(v_hat) + eps))); decay not clipped",
            timm_adamw(weight_decay=WD, clipping_threshold=1.0),
            {**hp, "weight_decay": WD},
        ),
        "timm_adamw_corrected": (
            f"{tv}: AdamWLegacy(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1, "
            "corrected_weight_decay=True, foreach=False) + LambdaLR(0.99**k)",
            "corrected decay: p *= 1 - wd * lr_t**2 / max_lr, max_lr = the constructor lr",
            timm_adamw(weight_decay=WD, corrected_weight_decay=True),
            {**hp, "weight_decay": WD, "lr_decay": LR_DECAY},
        ),
        "po_stable_adamw": (
            f"{pv}: StableAdamW(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1, "
            "kahan_sum=False, foreach=False)",
            "StableAdamW: debiased betas (mu, nu hold m_hat, v_hat); lr_t = lr / max(1, "
            "sqrt(mean(g^2 / max(v_hat, eps^2)))); decay p *= 1 - lr_t*wd",
            lambda ps: po.StableAdamW(
                ps,
                lr=LR,
                betas=(B1, B2),
                eps=EPS,
                weight_decay=WD,
                kahan_sum=False,
                foreach=False,
            ),
            {**hp, "weight_decay": WD},
        ),
        "po_adamc": (
            f"{pv}: AdamC([{{'params': ps, 'normalized': True}}], lr=0.01, betas=(0.8, 0.95), "
            "eps=1e-6, weight_decay=0.1, foreach=False) + LambdaLR(0.99**k)",
            "AdamC: eps in the hat form (sqrt(v + 1e-15) + eps) / sqrt(1 - b2**t) (its "
            "apply_ams_bound adds exp_avg_sq_eps=1e-15 to the raw v); decay p *= 1 - wd * "
            "lr_t**2 / max_lr",
            lambda ps: po.AdamC(
                [{"params": ps, "normalized": True}],
                lr=LR,
                betas=(B1, B2),
                eps=EPS,
                weight_decay=WD,
                foreach=False,
            ),
            {**hp, "weight_decay": WD, "lr_decay": LR_DECAY},
        ),
        "atan2_adam": (
            f"{av}: AdamAtan2(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1, a=1.27, b=1.5)",
            "Adam-atan2: p *= 1 - lr*wd; p -= lr * a * atan2(m_hat, b * sqrt(v_hat))",
            lambda ps: adam_atan2_pytorch.AdamAtan2(
                ps, lr=LR, betas=(B1, B2), weight_decay=WD, a=1.27, b=1.5
            ),
            {"lr": LR, "b1": B1, "b2": B2, "weight_decay": WD, "a": 1.27, "b": 1.5},
        ),
    }


def main() -> None:
    torch.set_default_dtype(torch.float64)
    prob = problem()
    for name, (generator, convention, build, hp) in cases().items():
        hp = dict(hp)
        lr_decay = hp.pop("lr_decay", 1.0)
        out = run(prob, build, lr_decay)
        record = {
            "meta_generator": np.asarray(generator),
            "meta_convention": np.asarray(convention),
            "hp_lr_decay": np.float64(lr_decay),
            **{f"hp_{k}": np.float64(v) for k, v in hp.items()},
            **prob,
            **out,
        }
        np.savez_compressed(GOLDEN / f"{name}.npz", **record)
        size = (GOLDEN / f"{name}.npz").stat().st_size
        print(f"{name}: {size / 1024:.0f} KB, {generator}")


if __name__ == "__main__":
    main()
