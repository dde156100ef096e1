"""Generate golden Adam-family trajectories from torch.optim and Keras 3.

The ``.npz`` files in ``tests/reference/golden/`` record what the reference libraries
actually do on one small, fixed, noisy optimisation problem. The ``adamjax`` test suite
only *reads* these files, so running the tests never needs torch or keras.

How to regenerate:

    pip install torch==2.13.0 keras numpy jax
    python tests/reference/make_golden.py

Run the command from the repository root; it (re)writes every file in
``tests/reference/golden/``. A CPU-only torch build is enough. The script selects the JAX
backend for Keras and enables JAX float64 itself, so no environment setup is needed.

Each run is deterministic: the problem comes from a fixed numpy seed and is shared by
every case. Before writing anything, the script replays every case with an independent
float64 numpy implementation of the published update equations and refuses to save a
case whose trajectory disagrees by a relative error of 1e-12 or more.

File layout (``__`` separates a key from a leaf name ``L``):

* ``meta_generator``, ``meta_convention``: 0-d strings describing the source and the
  update convention it follows.
* ``hp_lr``, ``hp_b1``, ``hp_b2``, ``hp_eps``, ``hp_weight_decay``, ``hp_lr_decay``:
  float64 scalars holding the values the library effectively used. The learning rate
  of 0-based step ``k`` is ``hp_lr * hp_lr_decay**k``. ``hp_amsgrad``: bool scalar.
* ``leaves``: leaf names; ``steps``: checkpoint step counts (updates applied).
* ``p0__L``, ``h__L``, ``c__L``, ``noise__L``: the problem. The gradient at step ``k``
  is ``h * (p - c) + noise[k]`` evaluated at the current parameters.
* ``param__L``, ``mu__L``, ``nu__L`` and, for AMSGrad, ``nu_max__L``: parameters, first
  moment, raw second moment and raw running maximum of the second moment at each
  checkpoint, stacked along a leading axis of length ``len(steps)``.
"""

from __future__ import annotations

import os

# Both variables are read when jax and keras are first imported, so they must be set
# before those imports. Without x64, JAX silently turns float64 into float32 and Keras
# would run the "float64" cases in single precision.
os.environ["KERAS_BACKEND"] = "jax"
os.environ["JAX_ENABLE_X64"] = "1"

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import jax
import keras
import numpy as np
import torch

jax.config.update("jax_enable_x64", True)
# Keras creates its learning-rate variable with dtype floatx(); in the default float32
# this would round 1e-2 to float32. Setting floatx first keeps every case in float64.
keras.config.set_floatx("float64")

SEED = 20250611
NUM_STEPS = 300
CHECKPOINTS = (1, 2, 3, 5, 10, 30, 100, 200, 300)
LEAF_SHAPES: dict[str, tuple[int, ...]] = {"w": (4, 3), "b": (5,), "s": (), "t": (3,)}
# Trajectories must match the numpy replay to this relative error (per tensor).
TOLERANCE = 1e-12
OUTPUT_DIR = Path(__file__).resolve().parent / "golden"

Problem = dict[str, dict[str, np.ndarray]]
Params = dict[str, np.ndarray]
# slot name ("mu", "nu", "nu_max") -> leaf name -> array
Slots = dict[str, dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Hyper:
    """Hyperparameters of one case, as the library effectively used them.

    Attributes:
        lr: Learning rate of the first step.
        b1: First-moment decay rate.
        b2: Second-moment decay rate.
        eps: Epsilon, in whatever convention the library uses.
        weight_decay: Decoupled weight-decay coefficient (0.0 for plain Adam).
        lr_decay: Per-step factor; step ``k`` (0-based) uses ``lr * lr_decay**k``.
        amsgrad: Whether the AMSGrad running maximum is used.
    """

    lr: float
    b1: float
    b2: float
    eps: float
    weight_decay: float = 0.0
    lr_decay: float = 1.0
    amsgrad: bool = False

    def lr_at(self, k: int) -> float:
        """Returns the learning rate of 0-based step ``k``.

        Written exactly as torch's LambdaLR evaluates ``base_lr * lambda(k)`` so that
        the replay uses bit-identical learning rates.
        """
        return self.lr * self.lr_decay**k


class Stepper(Protocol):
    """One optimiser under test, driven step by step by :func:`run_closed_loop`.

    Attributes:
        hyper: The hyperparameters the optimiser effectively uses.
    """

    hyper: Hyper

    def params(self) -> Params:
        """Returns copies of the current parameters as float64 numpy arrays."""
        ...

    def step(self, grads: Params) -> None:
        """Applies one optimiser update with the given gradients."""
        ...

    def slots(self) -> Slots:
        """Returns copies of the optimiser state (raw moments) per leaf."""
        ...


# --------------------------------------------------------------------------------------
# The shared problem
# --------------------------------------------------------------------------------------


def noise_envelope(num_steps: int) -> np.ndarray:
    """Returns the time-varying noise magnitude.

    A large initial burst that fades away, then a low floor interrupted by a few short
    bursts. Each burst pushes the second moment up and the quiet stretch after it lets
    the second moment fall again, so AMSGrad's running maximum stays above the current
    value for many entries. The last burst ends well before the final step for the same
    reason.

    Args:
        num_steps: Number of optimisation steps.

    Returns:
        Array of shape ``(num_steps,)``.
    """
    k = np.arange(num_steps, dtype=np.float64)
    envelope = 0.05 + 1.5 * np.exp(-k / 20.0)
    for start, length, height in ((90, 8, 1.0), (160, 5, 0.8), (230, 6, 0.6)):
        envelope[start : start + length] += height
    return envelope


def make_problem(seed: int = SEED, num_steps: int = NUM_STEPS) -> Problem:
    """Builds the noisy separable quadratic that every case optimises.

    Args:
        seed: Seed for numpy's generator.
        num_steps: Length of the noise sequences.

    Returns:
        Mapping leaf name -> {"p0", "h", "c", "noise"}, all float64 arrays holding
        float32-representable values.
    """
    rng = np.random.default_rng(seed)
    envelope = noise_envelope(num_steps)
    problem: Problem = {}
    for name, shape in LEAF_SHAPES.items():
        c = rng.normal(size=shape)
        p0 = c + rng.normal(size=shape)
        h = rng.uniform(0.5, 2.0, size=shape)
        white = rng.normal(size=(num_steps, *shape))
        noise = white * envelope.reshape((num_steps,) + (1,) * len(shape))
        if name == "b":
            # An entry whose gradient is exactly zero at every step: Adam must leave it
            # untouched (0/(0+eps)) while AdamW must still decay it.
            h[0] = 0.0
            noise[:, 0] = 0.0
        if name == "t":
            # Tiny gradients (~1e-6) make sqrt(v) comparable to eps, so where eps sits
            # relative to the bias correction changes the trajectory visibly.
            p0 = c + rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.8, 1.2, size=shape)
            h = h * 1e-6
            noise = noise * 1e-7
        # Round the inputs to float32-representable values (still stored as float64):
        # a float32 test can then feed exactly the same problem, and the zeroed low
        # mantissa bits roughly halve the compressed file size.
        problem[name] = {
            key: np.asarray(value, dtype=np.float32).astype(np.float64)
            for key, value in (("p0", p0), ("h", h), ("c", c), ("noise", noise))
        }
    return problem


def gradients(problem: Problem, params: Params, k: int) -> Params:
    """Evaluates the gradient of step ``k`` at ``params`` (closed loop).

    The order of operations is part of the golden data's contract: tests recompute the
    gradient the same way and must get bit-identical float64 values.
    """
    return {
        name: np.asarray(leaf["h"] * (params[name] - leaf["c"]) + leaf["noise"][k])
        for name, leaf in problem.items()
    }


def run_closed_loop(problem: Problem, stepper: Stepper, amsgrad: bool) -> dict[str, np.ndarray]:
    """Runs ``NUM_STEPS`` updates and records parameters and state at the checkpoints.

    Args:
        problem: The shared problem.
        stepper: The optimiser to drive.
        amsgrad: Whether to record the ``nu_max`` slot.

    Returns:
        Mapping ``"<kind>__<leaf>"`` -> array stacked over the checkpoints.
    """
    kinds = ["param", "mu", "nu"] + (["nu_max"] if amsgrad else [])
    records: dict[str, list[np.ndarray]] = {
        f"{kind}__{name}": [] for kind in kinds for name in problem
    }
    for k in range(NUM_STEPS):
        stepper.step(gradients(problem, stepper.params(), k))
        if k + 1 in CHECKPOINTS:
            snapshot = {"param": stepper.params(), **stepper.slots()}
            for kind in kinds:
                for name in problem:
                    records[f"{kind}__{name}"].append(snapshot[kind][name])
    return {key: np.stack(values) for key, values in records.items()}


# --------------------------------------------------------------------------------------
# torch.optim
# --------------------------------------------------------------------------------------


class TorchStepper:
    """Drives a ``torch.optim`` Adam/AdamW on float64 CPU tensors.

    torch's single-tensor path (``foreach=False``) reads lr, betas, eps and weight decay
    as Python floats, so the effective hyperparameters are exactly the ones requested.
    Its step counter is a float32 tensor, which is exact for the step counts used here.
    """

    def __init__(self, problem: Problem, hyper: Hyper) -> None:
        self.hyper = hyper
        self._tensors = {
            name: torch.tensor(leaf["p0"], dtype=torch.float64, requires_grad=True)
            for name, leaf in problem.items()
        }
        params = list(self._tensors.values())
        common = {
            "lr": hyper.lr,
            "betas": (hyper.b1, hyper.b2),
            "eps": hyper.eps,
            "amsgrad": hyper.amsgrad,
            "foreach": False,
        }
        if hyper.weight_decay:
            self._opt: torch.optim.Optimizer = torch.optim.AdamW(
                params, weight_decay=hyper.weight_decay, **common
            )
        else:
            self._opt = torch.optim.Adam(params, **common)
        self._sched = None
        if hyper.lr_decay != 1.0:
            decay = hyper.lr_decay
            self._sched = torch.optim.lr_scheduler.LambdaLR(self._opt, lambda k: decay**k)

    def params(self) -> Params:
        """See :class:`Stepper`."""
        return {name: t.detach().numpy().copy() for name, t in self._tensors.items()}

    def step(self, grads: Params) -> None:
        """See :class:`Stepper`."""
        for name, t in self._tensors.items():
            t.grad = torch.from_numpy(np.array(grads[name], dtype=np.float64))
        self._opt.step()
        if self._sched is not None:
            self._sched.step()

    def slots(self) -> Slots:
        """See :class:`Stepper`."""
        names = {"mu": "exp_avg", "nu": "exp_avg_sq"}
        if self.hyper.amsgrad:
            names["nu_max"] = "max_exp_avg_sq"
        return {
            slot: {
                name: self._opt.state[t][key].detach().numpy().copy()
                for name, t in self._tensors.items()
            }
            for slot, key in names.items()
        }


# --------------------------------------------------------------------------------------
# Keras 3 (JAX backend)
# --------------------------------------------------------------------------------------


class KerasStepper:
    """Drives a ``keras.optimizers`` Adam/AdamW on float64 ``keras.Variable`` objects.

    Findings from reading keras/src/optimizers (Keras 3.15):

    * The learning rate lives in a ``keras.Variable`` of dtype ``floatx()`` created in
      the optimizer's constructor; with floatx float64 it holds 1e-2 exactly. The value
      stored in the golden file is read back from that variable, so a float32 rounding
      would show up in ``hp_lr`` instead of silently breaking the replay.
    * beta_1, beta_2 and weight_decay are Python floats cast to the variable dtype
      (float64) inside the update; epsilon is a Python float added to a float64 array.
    * Decoupled decay ``var -= var * wd * lr`` runs before the Adam step, uses the same
      ``self.learning_rate`` (the schedule value at the current iteration, if any), and
      acts on the variable only: the gradient is left as given.
    """

    def __init__(self, problem: Problem, requested: Hyper) -> None:
        self._vars = {
            name: keras.Variable(leaf["p0"], dtype="float64", name=name)
            for name, leaf in problem.items()
        }
        common = {
            "learning_rate": requested.lr,
            "beta_1": requested.b1,
            "beta_2": requested.b2,
            "epsilon": requested.eps,
            "amsgrad": requested.amsgrad,
        }
        if requested.weight_decay:
            self._opt: keras.optimizers.Optimizer = keras.optimizers.AdamW(
                weight_decay=requested.weight_decay, **common
            )
        else:
            self._opt = keras.optimizers.Adam(**common)
        self._opt.build(list(self._vars.values()))

        lr_var = self._opt.learning_rate
        if keras.backend.standardize_dtype(lr_var.dtype) != "float64":
            raise RuntimeError(f"Keras learning rate is {lr_var.dtype}, expected float64")
        self.hyper = dataclasses.replace(
            requested,
            lr=float(np.asarray(lr_var)),
            b1=float(np.float64(self._opt.beta_1)),
            b2=float(np.float64(self._opt.beta_2)),
            eps=float(np.float64(self._opt.epsilon)),
            weight_decay=float(np.float64(self._opt.weight_decay or 0.0)),
        )

    def params(self) -> Params:
        """See :class:`Stepper`."""
        return {name: np.array(v.numpy(), dtype=np.float64) for name, v in self._vars.items()}

    def step(self, grads: Params) -> None:
        """See :class:`Stepper`."""
        variables = list(self._vars.values())
        self._opt.apply([grads[name] for name in self._vars], variables)

    def slots(self) -> Slots:
        """See :class:`Stepper`."""
        # Keras has no public per-variable slot accessor; these private lists are indexed
        # through the optimizer's own variable index.
        opt = self._opt
        lists = {"mu": opt._momentums, "nu": opt._velocities}
        if self.hyper.amsgrad:
            lists["nu_max"] = opt._velocity_hats
        return {
            slot: {
                name: np.array(slot_vars[opt._get_variable_index(v)].numpy(), dtype=np.float64)
                for name, v in self._vars.items()
            }
            for slot, slot_vars in lists.items()
        }


# --------------------------------------------------------------------------------------
# Independent float64 numpy replay of the published equations
# --------------------------------------------------------------------------------------


class NumpyReplay:
    """Float64 numpy Adam written from the published algorithms, for cross-checking.

    ``eps_hat=False`` follows the torch documentation (paper epsilon)::

        p <- p - lr*wd*p                                  (AdamW only)
        m <- b1*m + (1-b1)*g;  v <- b2*v + (1-b2)*g^2;  v_max <- max(v_max, v)
        p <- p - lr * (m/(1-b1^t)) / (sqrt(v_or_vmax/(1-b2^t)) + eps)

    ``eps_hat=True`` follows Kingma & Ba's efficient form, as Keras implements it::

        p <- p - p*wd*lr                                  (AdamW only)
        alpha = lr*sqrt(1-b2^t)/(1-b1^t)
        p <- p - alpha * m / (sqrt(v_or_vmax) + eps)
    """

    def __init__(self, problem: Problem, hyper: Hyper, eps_hat: bool) -> None:
        self.hyper = hyper
        self._eps_hat = eps_hat
        self._t = 0
        self._p = {name: leaf["p0"].copy() for name, leaf in problem.items()}
        self._m = {name: np.zeros_like(p) for name, p in self._p.items()}
        self._v = {name: np.zeros_like(p) for name, p in self._p.items()}
        self._v_max = {name: np.zeros_like(p) for name, p in self._p.items()}

    def params(self) -> Params:
        """See :class:`Stepper`."""
        return {name: p.copy() for name, p in self._p.items()}

    def step(self, grads: Params) -> None:
        """See :class:`Stepper`."""
        hp = self.hyper
        lr = hp.lr_at(self._t)
        self._t += 1
        t = self._t
        for name, g in grads.items():
            p = self._p[name]
            if hp.weight_decay:
                p = p - p * hp.weight_decay * lr if self._eps_hat else p - lr * hp.weight_decay * p
            m = hp.b1 * self._m[name] + (1.0 - hp.b1) * g
            v = hp.b2 * self._v[name] + (1.0 - hp.b2) * g * g
            v_max = np.maximum(self._v_max[name], v)
            denom_v = v_max if hp.amsgrad else v
            if self._eps_hat:
                alpha = lr * np.sqrt(1.0 - hp.b2**t) / (1.0 - hp.b1**t)
                p = p - alpha * m / (np.sqrt(denom_v) + hp.eps)
            else:
                m_hat = m / (1.0 - hp.b1**t)
                v_hat = denom_v / (1.0 - hp.b2**t)
                p = p - lr * m_hat / (np.sqrt(v_hat) + hp.eps)
            self._p[name], self._m[name], self._v[name], self._v_max[name] = p, m, v, v_max

    def slots(self) -> Slots:
        """See :class:`Stepper`."""
        slots = {"mu": self._m, "nu": self._v}
        if self.hyper.amsgrad:
            slots["nu_max"] = self._v_max
        return {slot: {n: a.copy() for n, a in leaves.items()} for slot, leaves in slots.items()}


# --------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """One golden file.

    Attributes:
        name: File stem.
        requested: Hyperparameters passed to the library.
        make_stepper: Builds the library stepper for a problem and hyperparameters.
        eps_hat: Whether the library uses the epsilon-hat form (selects the replay).
        generator: Human-readable description of the library call.
        convention: One-line description of the update convention.
    """

    name: str
    requested: Hyper
    make_stepper: Callable[[Problem, Hyper], Stepper]
    eps_hat: bool
    generator: str
    convention: str


TORCH_CONVENTION = (
    "paper eps: p -= lr*m_hat/(sqrt(v_hat)+eps), m_hat=m/(1-b1^t), v_hat=v/(1-b2^t); "
    "AMSGrad max over raw v, bias-corrected after the max; "
    "AdamW decay p *= 1-lr*wd before the Adam step"
)
KERAS_CONVENTION = (
    "eps-hat form: p -= lr*sqrt(1-b2^t)/(1-b1^t)*m/(sqrt(v)+eps) on raw v; "
    "AMSGrad max over raw v; AdamW decay p -= p*wd*lr before the Adam step"
)


def build_cases() -> list[Case]:
    """Returns every golden case, with the installed library versions in the metadata."""
    tv = f"torch {torch.__version__}"
    kv = f"keras {keras.__version__} (jax {jax.__version__} backend, float64)"
    torch_hp = Hyper(lr=1e-2, b1=0.8, b2=0.95, eps=1e-6)
    keras_hp = Hyper(lr=1e-2, b1=0.9, b2=0.999, eps=1e-7)
    t_args = "lr=0.01, betas=(0.8, 0.95), eps=1e-06"
    k_args = "learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-07"
    return [
        Case(
            "torch_adam",
            torch_hp,
            TorchStepper,
            False,
            f"{tv}: torch.optim.Adam({t_args}, foreach=False)",
            TORCH_CONVENTION,
        ),
        Case(
            "torch_amsgrad",
            dataclasses.replace(torch_hp, amsgrad=True),
            TorchStepper,
            False,
            f"{tv}: torch.optim.Adam({t_args}, amsgrad=True, foreach=False)",
            TORCH_CONVENTION,
        ),
        Case(
            "torch_adamw",
            dataclasses.replace(torch_hp, weight_decay=0.1),
            TorchStepper,
            False,
            f"{tv}: torch.optim.AdamW({t_args}, weight_decay=0.1, foreach=False)",
            TORCH_CONVENTION,
        ),
        Case(
            "torch_adamw_schedule",
            dataclasses.replace(torch_hp, weight_decay=0.1, lr_decay=0.99),
            TorchStepper,
            False,
            f"{tv}: torch.optim.AdamW({t_args}, weight_decay=0.1, foreach=False)"
            " + LambdaLR(0.99**k)",
            TORCH_CONVENTION,
        ),
        Case(
            "keras_adam",
            keras_hp,
            KerasStepper,
            True,
            f"{kv}: keras.optimizers.Adam({k_args})",
            KERAS_CONVENTION,
        ),
        Case(
            "keras_amsgrad",
            dataclasses.replace(keras_hp, amsgrad=True),
            KerasStepper,
            True,
            f"{kv}: keras.optimizers.Adam({k_args}, amsgrad=True)",
            KERAS_CONVENTION,
        ),
        Case(
            "keras_adamw",
            dataclasses.replace(keras_hp, weight_decay=0.1),
            KerasStepper,
            True,
            f"{kv}: keras.optimizers.AdamW({k_args}, weight_decay=0.1)",
            KERAS_CONVENTION,
        ),
    ]


def relative_errors(
    got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Returns ``max|got - want| / max|want|`` for every key."""
    return {
        key: float(np.max(np.abs(got[key] - want[key])) / np.max(np.abs(want[key]))) for key in want
    }


def generate(case: Case, problem: Problem, output_dir: Path) -> None:
    """Runs one case, cross-checks it against the numpy replay and writes its file.

    Args:
        case: The case to run.
        problem: The shared problem.
        output_dir: Directory receiving ``<case.name>.npz``.

    Raises:
        RuntimeError: If the library and the replay disagree beyond ``TOLERANCE``.
    """
    stepper = case.make_stepper(problem, case.requested)
    hyper = stepper.hyper
    trajectory = run_closed_loop(problem, stepper, hyper.amsgrad)
    replay = run_closed_loop(problem, NumpyReplay(problem, hyper, case.eps_hat), hyper.amsgrad)

    errors = relative_errors(trajectory, replay)
    worst_key = max(errors, key=errors.__getitem__)
    by_kind: dict[str, float] = {}
    for key, err in errors.items():
        kind = key.split("__")[0]
        by_kind[kind] = max(by_kind.get(kind, 0.0), err)
    summary = ", ".join(f"{kind} {err:.1e}" for kind, err in by_kind.items())
    print(f"{case.name}: max rel err vs replay {errors[worst_key]:.2e} ({worst_key}); {summary}")
    if hyper.amsgrad:
        final_max = np.concatenate([trajectory[f"nu_max__{n}"][-1].ravel() for n in problem])
        final_nu = np.concatenate([trajectory[f"nu__{n}"][-1].ravel() for n in problem])
        active = np.count_nonzero(final_max > final_nu)
        print(f"  AMSGrad active at step {NUM_STEPS}: {active}/{final_nu.size} entries")
    if errors[worst_key] >= TOLERANCE:
        raise RuntimeError(f"{case.name}: library and replay disagree ({errors[worst_key]:.2e})")

    arrays: dict[str, np.ndarray] = {
        "meta_generator": np.array(case.generator),
        "meta_convention": np.array(case.convention),
        "hp_lr": np.array(hyper.lr, dtype=np.float64),
        "hp_b1": np.array(hyper.b1, dtype=np.float64),
        "hp_b2": np.array(hyper.b2, dtype=np.float64),
        "hp_eps": np.array(hyper.eps, dtype=np.float64),
        "hp_weight_decay": np.array(hyper.weight_decay, dtype=np.float64),
        "hp_lr_decay": np.array(hyper.lr_decay, dtype=np.float64),
        "hp_amsgrad": np.array(hyper.amsgrad, dtype=np.bool_),
        "leaves": np.array(list(problem)),
        "steps": np.array(CHECKPOINTS, dtype=np.int64),
    }
    for name, leaf in problem.items():
        for field in ("p0", "h", "c", "noise"):
            arrays[f"{field}__{name}"] = leaf[field]
    arrays.update(trajectory)
    np.savez_compressed(output_dir / f"{case.name}.npz", **arrays)


def main() -> None:
    """Generates every golden file into ``tests/reference/golden/``."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    problem = make_problem()
    cases = build_cases()
    for case in cases:
        generate(case, problem, OUTPUT_DIR)
    print(f"wrote {len(cases)} files to {OUTPUT_DIR}")


if __name__ == "__main__":
    main()
