"""Generate golden Adan and NAdamW trajectories from the Adan authors' code, pytorch_optimizer
and timm.

How to regenerate (from the repository root, CPU torch is enough)::

    pip install torch==2.13.0 pytorch_optimizer==4.1.0 timm==1.0.31 numpy
    git clone https://github.com/sail-sg/Adan /tmp/Adan   # used at commit 2c65bea (bare is fine)
    ADAN_REPO=/tmp/Adan python tests/reference/make_golden_adan.py

The authors' ``Adan`` is not on PyPI: the script imports ``$ADAN_REPO/adan.py`` at generation
time (nothing of it is committed). timm is imported without its package ``__init__`` (which
needs torchvision): only ``timm/optim/nadamw.py`` and the two helper modules it imports are
loaded. keras, adabound and torch-optimizer, which ``make_golden.py`` imports for its own cases,
are replaced by empty stand-ins when absent: this script uses only its problem, its closed loop
and its torch stepper, so the files share the problem, checkpoints and layout of
``make_golden.py`` (see ``tests/reference/README.md``).

Every run is in float64. Each case is also replayed by the float64 NumPy references of
``adan_reference.py``; the script prints the relative error of each replay convention and
refuses to write a case that the convention it names misses by 1e-12 or more.

Extra keys: ``mu_diff__L`` (Adan's moment of gradient differences, the libraries'
``exp_avg_diff``), ``prev_grad__L`` (the previous gradient; both libraries store its negative),
``hp_b3``, ``hp_no_prox`` (bool) and, for timm, ``hp_lookahead_current`` (bool).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _stand_in(name: str) -> None:
    """An empty module for ``name`` unless it is installed (see the module docstring)."""
    if importlib.util.find_spec(name) is None:
        module = types.ModuleType(name)
        module.config = types.SimpleNamespace(set_floatx=lambda _: None)  # type: ignore[attr-defined]
        module.optimizers = types.SimpleNamespace(Optimizer=object)  # type: ignore[attr-defined]
        sys.modules[name] = module


for _name in ("keras", "adabound", "torch_optimizer"):
    _stand_in(_name)

import make_golden as mg  # noqa: E402
import pytorch_optimizer  # noqa: E402
from adan_reference import AdanReference, NadamwReference  # noqa: E402

TOLERANCE = 1e-12
LR, BETAS, EPS, WD = 1e-2, (0.98, 0.92, 0.99), 1e-8, 0.1
NADAMW_BETAS, NADAMW_EPS = (0.8, 0.95), 1e-6
ADAN_SLOTS = {"mu": "exp_avg", "nu": "exp_avg_sq", "mu_diff": "exp_avg_diff"}


def load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def timm_nadamw() -> type:
    """timm's ``NAdamW`` class, loaded without ``timm/__init__.py``."""
    root = Path(importlib.util.find_spec("timm").submodule_search_locations[0])
    for package, path in (("timm", root), ("timm.optim", root / "optim")):
        module = types.ModuleType(package)
        module.__path__ = [str(path)]
        sys.modules.setdefault(package, module)
    return load_file("timm.optim.nadamw", root / "optim" / "nadamw.py").NAdamW


def authors_adan() -> tuple[type, str]:
    """The authors' ``Adan`` class from ``$ADAN_REPO/adan.py`` and the repo's commit."""
    repo = Path(os.environ["ADAN_REPO"])
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    source = repo / "adan.py"
    if not source.exists():  # a bare clone: take the file from HEAD
        text = subprocess.run(
            ["git", "-C", str(repo), "show", "HEAD:adan.py"], capture_output=True, text=True,
            check=True,
        ).stdout  # fmt: skip
        source = Path(tempfile.mkdtemp()) / "adan.py"
        source.write_text(text)
    return load_file("authors_adan", source).Adan, commit or "unknown"


class AdanStepper(mg.TorchStepper):
    """A torch Adan; ``prev_grad`` is read from the negated previous gradient both keep."""

    def __init__(self, problem, hyper, build, prev_key: str) -> None:
        super().__init__(problem, hyper, build, ADAN_SLOTS)
        self._prev_key = prev_key

    def slots(self) -> mg.Slots:
        out = super().slots()
        out["prev_grad"] = {
            name: -self._opt.state[t][self._prev_key].detach().numpy().copy()
            for name, t in self._tensors.items()
        }
        return out


class ReplayStepper:
    """Drives a NumPy reference through ``make_golden.run_closed_loop``."""

    def __init__(self, problem: mg.Problem, reference, slots: Mapping[str, str]) -> None:
        self._params = {name: leaf["p0"].copy() for name, leaf in problem.items()}
        self._ref, self._slots = reference, slots

    def params(self) -> mg.Params:
        return {name: p.copy() for name, p in self._params.items()}

    def step(self, grads: mg.Params) -> None:
        self._params = self._ref.step(self._params, grads)

    def slots(self) -> mg.Slots:
        return {
            slot: {name: np.asarray(getattr(self._ref, attr)[name]).copy() for name in self._params}
            for slot, attr in self._slots.items()
        }

    def step_info(self) -> dict[str, float]:
        return {}


ADAN_REPLAY_SLOTS = {"mu": "m", "nu": "n", "mu_diff": "v", "prev_grad": "g_prev"}
NADAMW_REPLAY_SLOTS = {"mu": "m", "nu": "v"}


def adan_replays(no_prox: bool) -> dict[str, Callable[[], object]]:
    paper = tuple(1 - b for b in BETAS)
    return {
        weight: lambda weight=weight: AdanReference(
            lambda k: LR, *paper, eps=EPS, weight_decay=WD, no_prox=no_prox, weight=weight
        )
        for weight in ("paper", "optax")
    }


def nadamw_replays() -> dict[str, Callable[[], object]]:
    b1, b2 = NADAMW_BETAS
    return {
        lookahead: lambda lookahead=lookahead: NadamwReference(
            lambda k: LR, b1, b2, NADAMW_EPS, WD, lookahead=lookahead
        )
        for lookahead in ("next", "current")
    }


def generate(
    name: str,
    stepper: mg.Stepper,
    replays: dict[str, Callable[[], object]],
    replay_slots: Mapping[str, str],
    expected: str,
    arrays: dict[str, np.ndarray],
) -> None:
    problem = mg.make_problem()
    trajectory = mg.run_closed_loop(problem, stepper)
    for convention, make in replays.items():
        replay = mg.run_closed_loop(problem, ReplayStepper(problem, make(), replay_slots))
        worst = max(mg.relative_errors(trajectory, replay).values())
        print(f"{name}: replay {convention!r}: max rel err {worst:.2e}")
        if convention == expected and worst >= TOLERANCE:
            raise RuntimeError(f"{name}: the {convention!r} replay misses by {worst:.2e}")
    arrays = {
        **arrays,
        "hp_lr": np.array(LR),
        "hp_weight_decay": np.array(WD),
        "hp_lr_decay": np.array(1.0),
        "hp_amsgrad": np.array(False),
        "leaves": np.array(list(problem)),
        "steps": np.array(mg.CHECKPOINTS, dtype=np.int64),
    }
    for leaf_name, leaf in problem.items():
        for key in ("p0", "h", "c", "noise"):
            arrays[f"{key}__{leaf_name}"] = leaf[key]
    arrays.update(trajectory)
    np.savez_compressed(mg.OUTPUT_DIR / f"{name}.npz", **arrays)


def main() -> None:
    torch.set_default_dtype(torch.float64)
    problem = mg.make_problem()
    hyper = mg.Hyper(lr=LR, b1=BETAS[0], b2=BETAS[1], eps=EPS, weight_decay=WD)
    authors, commit = authors_adan()
    po_version = importlib.metadata.version("pytorch_optimizer")
    adan_convention = (
        "decay rates b1, b2, b3; diff = g - g_prev (0 at step 1); m, d, n EMAs of g, diff and "
        "|g + b2*diff|^2; u = (m/(1-b1^t) + b2*d/(1-b2^t)) / (sqrt(n)/sqrt(1-b3^t) + eps)"
    )
    for no_prox in (False, True):
        decay = "p = p*(1 - lr*wd) - lr*u" if no_prox else "p = (p - lr*u)/(1 + lr*wd) (proximal)"
        common = {
            "hp_b1": np.array(BETAS[0]),
            "hp_b2": np.array(BETAS[1]),
            "hp_b3": np.array(BETAS[2]),
            "hp_eps": np.array(EPS),
            "hp_no_prox": np.array(no_prox),
            "meta_convention": np.array(f"{adan_convention}; {decay}"),
        }
        suffix = "_no_prox" if no_prox else ""
        generate(
            f"adan_authors{suffix}",
            AdanStepper(
                problem,
                hyper,
                lambda ps, hp, no_prox=no_prox: authors(
                    ps,
                    lr=hp.lr,
                    betas=BETAS,
                    eps=hp.eps,
                    weight_decay=hp.weight_decay,
                    no_prox=no_prox,
                    foreach=False,
                ),
                "neg_pre_grad",
            ),
            adan_replays(no_prox),
            ADAN_REPLAY_SLOTS,
            "paper",
            {
                **common,
                "meta_generator": np.array(
                    f"sail-sg/Adan adan.py at {commit}: Adan(lr={LR}, betas={BETAS}, eps={EPS}, "
                    f"weight_decay={WD}, no_prox={no_prox}, foreach=False), torch "
                    f"{torch.__version__}, float64"
                ),
            },
        )
        generate(
            f"pytorch_optimizer_adan{suffix}",
            AdanStepper(
                problem,
                hyper,
                lambda ps, hp, no_prox=no_prox: pytorch_optimizer.Adan(
                    ps,
                    lr=hp.lr,
                    betas=BETAS,
                    eps=hp.eps,
                    weight_decay=hp.weight_decay,
                    weight_decouple=no_prox,
                    foreach=False,
                ),
                "previous_grad",
            ),
            adan_replays(no_prox),
            ADAN_REPLAY_SLOTS,
            "paper",
            {
                **common,
                "meta_generator": np.array(
                    f"pytorch_optimizer {po_version}: Adan(lr={LR}, betas={BETAS}, eps={EPS}, "
                    f"weight_decay={WD}, weight_decouple={no_prox}, foreach=False), torch "
                    f"{torch.__version__}, float64"
                ),
            },
        )
    nadamw = timm_nadamw()
    b1, b2 = NADAMW_BETAS
    generate(
        "timm_nadamw",
        mg.TorchStepper(
            problem,
            mg.Hyper(lr=LR, b1=b1, b2=b2, eps=NADAMW_EPS, weight_decay=WD),
            lambda ps, hp: nadamw(
                ps,
                lr=hp.lr,
                betas=(hp.b1, hp.b2),
                eps=hp.eps,
                weight_decay=hp.weight_decay,
                foreach=False,
            ),
        ),
        nadamw_replays(),
        NADAMW_REPLAY_SLOTS,
        "current",
        {
            "hp_b1": np.array(b1),
            "hp_b2": np.array(b2),
            "hp_eps": np.array(NADAMW_EPS),
            "hp_lookahead_current": np.array(True),
            "meta_generator": np.array(
                f"timm {importlib.metadata.version('timm')}: timm.optim.NAdamW(lr={LR}, "
                f"betas={NADAMW_BETAS}, eps={NADAMW_EPS}, weight_decay={WD}, foreach=False), "
                f"torch {torch.__version__}, float64"
            ),
            "meta_convention": np.array(
                "p *= 1 - lr*wd; m, v Adam EMAs; p -= lr*(b1*m + (1-b1)*g)/(1-b1^t) / "
                "(sqrt(v)/sqrt(1-b2^t) + eps): the look-ahead term corrected by 1-b1^t, not "
                "1-b1^(t+1)"
            ),
        },
    )


if __name__ == "__main__":
    main()
