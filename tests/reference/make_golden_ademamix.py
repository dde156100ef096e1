"""Generate golden AdEMAMix and Simplified AdEMAMix trajectories from their reference code.

Sources (all run in float64 on CPU torch):

* ``authors_ademamix``: ``AdEMAMix`` from the authors' repository github.com/apple/ml-ademamix
  (``pytorch/ademamix.py``, commit c3d73c0), with its alpha and beta3 warm-ups;
* ``pytorch_optimizer_ademamix``: ``pytorch_optimizer.AdEMAMix`` 4.1.0, with its joint warm-up;
* ``authors_simplified_ademamix`` and ``authors_simplified_ademamix_bias_correction``:
  ``SimAdEMAMix`` from the authors' repository github.com/DepenM/Simplified-AdEMAMix
  (``simplified_AdEMAMix.py``, commit dba14d0), with its beta1 warm-up, without and with its
  ``bias_correction1``;
* ``pytorch_optimizer_simplified_ademamix``: ``pytorch_optimizer.SimplifiedAdEMAMix`` 4.1.0.

How to regenerate:

    pip install torch==2.13.0 pytorch_optimizer==4.1.0 numpy jax
    git clone https://github.com/apple/ml-ademamix /tmp/ml-ademamix
    git clone https://github.com/DepenM/Simplified-AdEMAMix /tmp/simplified-ademamix
    python tests/reference/make_golden_ademamix.py /tmp/ml-ademamix /tmp/simplified-ademamix

from the repository root. The authors' files are loaded from those checkouts at generation time
(they are not on PyPI and are not part of this repository). The problem, the closed loop, the
file layout and the cross-check come from ``make_golden.py``, whose Keras and AdaBound imports
are stubbed (they are not needed here): every case is replayed with the float64 NumPy
references of ``ademamix_reference.py`` and saved only if the library and the replay agree to a
relative 1e-12. Besides the common keys, each file holds the warm-up hyperparameters as
``hp_<name>`` and the slow EMA as ``mu_slow__L`` (AdEMAMix).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from unittest import mock

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
for _name in ("keras", "adabound", "torch_optimizer"):
    sys.modules.setdefault(_name, mock.MagicMock())

import make_golden as mg  # noqa: E402
import pytorch_optimizer  # noqa: E402
import torch  # noqa: E402
from ademamix_reference import (  # noqa: E402
    AdemamixReference,
    SimplifiedAdemamixReference,
    f_alpha,
    f_beta3,
)

PTO = f"pytorch_optimizer {importlib.metadata.version('pytorch_optimizer')}"


def load_module(path: Path, name: str) -> ModuleType:
    """Imports one file of a checkout of the authors' code."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ReferenceStepper:
    """Drives a NumPy reference (``ademamix_reference.py``) as a :class:`make_golden.Stepper`.

    ``slots`` maps a slot name to ``(attribute, scale)``: the reference's moment times ``scale``.
    """

    def __init__(self, problem, hyper, reference, slots) -> None:
        self.hyper = hyper
        self._ref = reference
        self._params = {name: np.array(leaf["p0"], np.float64) for name, leaf in problem.items()}
        self._slots = slots

    def params(self):
        return {name: p.copy() for name, p in self._params.items()}

    def step(self, grads) -> None:
        self._params = self._ref.step(self._params, grads)

    def slots(self):
        return {
            slot: {n: scale * np.asarray(getattr(self._ref, attr)[n]) for n in self._params}
            for slot, (attr, scale) in self._slots.items()
        }

    def step_info(self):
        return {}

    def notes(self):
        return []


ADEMAMIX_SLOTS = {"mu": ("m1", 1.0), "nu": ("nu", 1.0), "mu_slow": ("m2", 1.0)}


def ademamix_replay(problem, hp):
    """AdEMAMix with the paper's schedulers of the 1-based step t = k + 1."""
    x = hp.extra
    reference = AdemamixReference(
        hp.lr, hp.b1, hp.b2,
        b3=lambda k: f_beta3(k + 1, x["b3"], x["b3_start"], x["b3_warmup"], x["log_eps"]),
        alpha=lambda k: f_alpha(k + 1, x["alpha"], x["alpha_warmup"]),
        eps=hp.eps, weight_decay=hp.weight_decay,
    )  # fmt: skip
    return ReferenceStepper(problem, hp, reference, ADEMAMIX_SLOTS)


def simplified_replay(problem, hp):
    """Simplified AdEMAMix with the authors' beta1 warm-up (``b1_warmup`` 0: none)."""
    x = hp.extra
    b1 = hp.b1
    if x.get("b1_warmup", 0):
        b1 = lambda k: f_beta3(k + 1, hp.b1, x["b1_start"], x["b1_warmup"], x["log_eps"])  # noqa: E731
    reference = SimplifiedAdemamixReference(
        hp.lr, b1, hp.b2, x["alpha"], hp.eps, weight_decay=hp.weight_decay,
        bias_correction_mu=x.get("bias_correction_mu", False),
    )  # fmt: skip
    return ReferenceStepper(problem, hp, reference, {"mu": ("m", 1.0), "nu": ("nu", 1.0)})


def pto_simplified_replay(problem, hp):
    """pytorch_optimizer's SimplifiedAdEMAMix as the authors' algorithm with rescaled inputs.

    It keeps the EMA ``(1 - b1) * m`` of the authors' sum ``m`` and divides the step once more
    by ``c_t = 1 - b2**t``, so it is Simplified AdEMAMix with the learning rate
    ``lr (1 - b1) / c_t``, alpha ``alpha / (1 - b1)`` and the decoupled decay ``wd c_t / (1 - b1)``
    (so that learning rate times decay stays ``lr wd``).
    """
    b1, b2, lr, wd = hp.b1, hp.b2, hp.lr, hp.weight_decay
    reference = SimplifiedAdemamixReference(
        lambda k: lr * (1 - b1) / (1 - b2 ** (k + 1)), b1, b2, hp.extra["alpha"] / (1 - b1),
        hp.eps, weight_decay=lambda k: wd * (1 - b2 ** (k + 1)) / (1 - b1),
    )  # fmt: skip
    return ReferenceStepper(problem, hp, reference, {"mu": ("m", 1 - b1), "nu": ("nu", 1.0)})


def build_cases(authors: Path, simplified: Path) -> list[mg.Case]:
    authors_module = load_module(authors / "pytorch" / "ademamix.py", "authors_ademamix")
    simplified_module = load_module(simplified / "simplified_AdEMAMix.py", "authors_simplified")
    ademamix_hp = dict(lr=1e-2, b1=0.8, b2=0.95, eps=1e-6, weight_decay=0.1)
    simplified_hp = dict(lr=2e-3, b1=0.9, b2=0.95, eps=1e-6, weight_decay=0.1)

    def torch_stepper(build, slots):
        return lambda problem, hp: mg.TorchStepper(problem, hp, build, slots)

    def authors_simplified(problem, hp):
        def build(params, hp):
            return simplified_module.SimAdEMAMix(
                params, lr=hp.lr, betas=(hp.b1, hp.b2), alpha=hp.extra["alpha"],
                beta1_warmup=hp.extra["b1_warmup"], eps=hp.eps, weight_decay=hp.weight_decay,
                min_beta1=hp.extra["b1_start"],
                bias_correction1=hp.extra.get("bias_correction_mu", False),
            )  # fmt: skip

        return mg.TorchStepper(problem, hp, build, {"mu": "exp_avg", "nu": "exp_avg_sq"})

    authors_extra = dict(
        b3=0.999, alpha=2.0, b3_warmup=100, alpha_warmup=150, b3_start=0.8, log_eps=1e-8
    )
    pto_extra = dict(
        b3=0.999, alpha=2.0, b3_warmup=100, alpha_warmup=100, b3_start=0.8, log_eps=0.0,
        decoupled=True,
    )  # fmt: skip
    return [
        mg.Case(
            name="authors_ademamix",
            requested=mg.Hyper(**ademamix_hp, extra=authors_extra),
            make_stepper=torch_stepper(
                lambda params, hp: authors_module.AdEMAMix(
                    params,
                    lr=hp.lr,
                    betas=(hp.b1, hp.b2, hp.extra["b3"]),
                    alpha=hp.extra["alpha"],
                    beta3_warmup=hp.extra["b3_warmup"],
                    alpha_warmup=hp.extra["alpha_warmup"],
                    eps=hp.eps,
                    weight_decay=hp.weight_decay,
                ),
                {"mu": "exp_avg_fast", "nu": "exp_avg_sq", "mu_slow": "exp_avg_slow"},
            ),
            make_replay=ademamix_replay,
            generator=(
                "apple/ml-ademamix@c3d73c0 pytorch/ademamix.py AdEMAMix(lr=1e-2, "
                "betas=(0.8, 0.95, 0.999), alpha=2.0, beta3_warmup=100, alpha_warmup=150, "
                "eps=1e-6, weight_decay=0.1)"
            ),
            convention=(
                "paper Algorithm 1; alpha_t = alpha*min(t/T_alpha, 1) and the half-life warm-up of "
                "b3 from b1 at the 1-based t; the b3 warm-up takes log(beta + 1e-8); decay "
                "decoupled, times lr"
            ),
        ),
        mg.Case(
            name="pytorch_optimizer_ademamix",
            requested=mg.Hyper(**ademamix_hp, extra=pto_extra),
            make_stepper=torch_stepper(
                lambda params, hp: pytorch_optimizer.AdEMAMix(
                    params,
                    lr=hp.lr,
                    betas=(hp.b1, hp.b2, hp.extra["b3"]),
                    weight_decay=hp.weight_decay,
                    weight_decouple=True,
                    alpha=hp.extra["alpha"],
                    t_alpha_beta3=hp.extra["b3_warmup"],
                    eps=hp.eps,
                    foreach=False,
                ),
                {"mu": "exp_avg", "nu": "exp_avg_sq", "mu_slow": "exp_avg_slow"},
            ),
            make_replay=ademamix_replay,
            generator=(
                f"{PTO} AdEMAMix(lr=1e-2, betas=(0.8, 0.95, 0.999), weight_decay=0.1, "
                "weight_decouple=True, alpha=2.0, t_alpha_beta3=100, eps=1e-6, foreach=False)"
            ),
            convention=(
                "paper Algorithm 1 with the paper's closed-form schedulers at the 1-based t, one "
                "warm-up length for alpha and b3, b3 from b1; decay decoupled, times lr"
            ),
        ),
        mg.Case(
            name="authors_simplified_ademamix",
            requested=mg.Hyper(
                **simplified_hp,
                extra=dict(alpha=2.0, b1_warmup=100, b1_start=0.8, log_eps=1e-8),
            ),
            make_stepper=authors_simplified,
            make_replay=simplified_replay,
            generator=(
                "DepenM/Simplified-AdEMAMix@dba14d0 simplified_AdEMAMix.py SimAdEMAMix(lr=2e-3, "
                "betas=(0.9, 0.95), alpha=2.0, beta1_warmup=100, min_beta1=0.8, eps=1e-6, "
                "weight_decay=0.1)"
            ),
            convention=(
                "m = b1_t*m + g (no 1-b1, no correction), nu bias-corrected, paper eps; b1 warms "
                "up from min_beta1 with the half-life rule at the 1-based t, log(beta + 1e-8); "
                "decay decoupled, times lr"
            ),
        ),
        mg.Case(
            name="authors_simplified_ademamix_bias_correction",
            requested=mg.Hyper(
                **simplified_hp,
                extra=dict(
                    alpha=2.0, b1_warmup=100, b1_start=0.8, log_eps=1e-8, bias_correction_mu=True
                ),
            ),
            make_stepper=authors_simplified,
            make_replay=simplified_replay,
            generator=(
                "DepenM/Simplified-AdEMAMix@dba14d0 simplified_AdEMAMix.py SimAdEMAMix(lr=2e-3, "
                "betas=(0.9, 0.95), alpha=2.0, beta1_warmup=100, min_beta1=0.8, eps=1e-6, "
                "weight_decay=0.1, bias_correction1=True)"
            ),
            convention=(
                "as authors_simplified_ademamix, the step divided by n = b1_t*n + 1 "
                "(bias_correction1=True)"
            ),
        ),
        mg.Case(
            name="pytorch_optimizer_simplified_ademamix",
            requested=mg.Hyper(**simplified_hp, extra=dict(alpha=2.0, decoupled=True)),
            make_stepper=torch_stepper(
                lambda params, hp: pytorch_optimizer.SimplifiedAdEMAMix(
                    params,
                    lr=hp.lr,
                    betas=(hp.b1, hp.b2),
                    weight_decay=hp.weight_decay,
                    alpha=hp.extra["alpha"],
                    eps=hp.eps,
                    foreach=False,
                ),
                {"mu": "exp_avg", "nu": "exp_avg_sq"},
            ),
            make_replay=pto_simplified_replay,
            generator=(
                f"{PTO} SimplifiedAdEMAMix(lr=2e-3, betas=(0.9, 0.95), weight_decay=0.1, "
                "alpha=2.0, eps=1e-6, foreach=False)"
            ),
            convention=(
                "departs from the authors: exp_avg = b1*m + (1-b1)*g and the step "
                "(m + alpha*g)/(sqrt(nu_hat) + eps) divided by 1 - b2**t once more; decay "
                "decoupled (p *= 1 - lr*wd)"
            ),
        ),
    ]


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    torch.set_default_dtype(torch.float64)
    mg.OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    cases = build_cases(Path(sys.argv[1]), Path(sys.argv[2]))
    for case in cases:
        mg.generate(case, mg.OUTPUT_DIR)
    print(f"wrote {len(cases)} files to {mg.OUTPUT_DIR}")


if __name__ == "__main__":
    main()
