"""Generate golden Adam-family trajectories from torch.optim, Keras 3 and two reference packages.

The ``.npz`` files in ``tests/reference/golden/`` record what the reference libraries
actually do on one small, fixed, noisy optimisation problem. The ``adamjax`` test suite
only *reads* these files, so running the tests never needs torch, keras or the packages.

Sources: ``torch.optim`` (Adam with no, coupled L2 or decoupled weight decay, AMSGrad, AdamW,
AdamW with AMSGrad, NAdam, Adamax with and without L2, RAdam), Keras 3 on the JAX backend
(Adam, AMSGrad, AdamW, Nadam, Adamax), the AdaBound authors' package ``adabound``
(AdaBound, AMSBound) and ``torch-optimizer`` (SWATS).

How to regenerate:

    pip install torch==2.13.0 keras numpy jax adabound==0.0.5 torch-optimizer==0.3.0
    python tests/reference/make_golden.py

Run the command from the repository root; it (re)writes every file in
``tests/reference/golden/``. A CPU-only torch build is enough. The script selects the JAX
backend for Keras and enables JAX float64 itself, so no environment setup is needed.

Each run is deterministic: the problem comes from a fixed numpy seed and is shared by
every case except SWATS, which gets a dedicated noiseless one-leaf problem (see
:func:`make_swats_problem`). Before writing anything, the script replays every case with
an independent float64 numpy implementation of the published update equations (one
replay class per algorithm family and library convention) and refuses to save a case
whose trajectory disagrees by a relative error of 1e-12 or more.

File layout (``__`` separates a key from a leaf name ``L``):

* ``meta_generator``, ``meta_convention``: 0-d strings describing the source and the
  update convention it follows.
* ``hp_lr``, ``hp_b1``, ``hp_b2``, ``hp_eps``, ``hp_weight_decay``, ``hp_lr_decay``:
  float64 scalars holding the values the library effectively used. The learning rate
  of 0-based step ``k`` is ``hp_lr * hp_lr_decay**k``. ``hp_amsgrad``: bool scalar, true
  when the running maximum of the second moment is used (AMSGrad, AMSBound).
* Family-specific ``hp_<name>`` float64 or bool scalars, only in the files that need
  them: ``hp_momentum_decay`` (torch NAdam; Keras Nadam has no such argument, its fixed
  schedule is torch's with momentum_decay=1, see ``KERAS_NADAM_CONVENTION``, and its file
  has no ``hp_momentum_decay``), ``hp_decoupled`` (NAdam, RAdam, AdaBound, and the
  torch.optim.Adam and Adamax files with weight decay: whether ``hp_weight_decay`` is
  decoupled ``p *= 1 - lr*wd`` or coupled ``g += wd*p``; the AdamW files have no such key,
  AdamW always decouples),
  ``hp_final_lr``, ``hp_gamma``, ``hp_amsbound`` (AdaBound), ``hp_nesterov`` (SWATS) and
  the int64 result ``hp_switch_step`` (SWATS: the 1-based step whose Adam update triggered
  the switch, or -1).
* ``leaves``: leaf names; ``steps``: checkpoint step counts (updates applied).
* ``p0__L``, ``h__L``, ``c__L``, ``noise__L``: the problem. The gradient at step ``k``
  is ``h * (p - c) + noise[k]`` evaluated at the current parameters.
* ``param__L``, ``mu__L``, ``nu__L`` and, for AMSGrad/AMSBound, ``nu_max__L``:
  parameters, first moment, raw second moment (Adamax: the infinity norm ``u``, which
  holds torch's eps but not Keras's, see the conventions) and raw running maximum of the
  second moment at each checkpoint, stacked along a leading axis of length ``len(steps)``.
* Extra state slots, stacked the same way: ``mu_product__L`` (NAdam, 0-d per checkpoint:
  torch's per-tensor ``mu_product``; Keras Nadam's single ``u_product``, repeated per leaf),
  ``lambda__L`` (SWATS scaling EMA, 0-d per checkpoint) and ``momentum__L`` (SWATS
  SGD-phase buffer, zero before the switch).
* Per-step records of length ``NUM_STEPS`` (SWATS only): ``phase_per_step`` (int64, 0
  Adam, 1 SGD) and ``lr_per_step`` (float64), the parameter group's phase and learning
  rate read after each update.
"""

from __future__ import annotations

import os

# Both variables are read when jax and keras are first imported, so they must be set
# before those imports. Without x64, JAX silently turns float64 into float32 and Keras
# would run the "float64" cases in single precision.
os.environ["KERAS_BACKEND"] = "jax"
os.environ["JAX_ENABLE_X64"] = "1"

import contextlib
import dataclasses
import functools
import importlib.metadata
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

import adabound
import jax
import keras
import numpy as np
import torch
import torch_optimizer

jax.config.update("jax_enable_x64", True)
# Keras creates its learning-rate variable with dtype floatx(); in the default float32
# this would round 1e-2 to float32. Setting floatx first keeps every case in float64.
keras.config.set_floatx("float64")

# adabound 0.0.5 calls the old scalar-first overloads add(alpha, other),
# add_(alpha, other) and addcmul_(value, t1, t2). torch 2.13 still accepts them (same
# kernels, same arithmetic) and only warns, so no compatibility shim is needed; the
# warnings are silenced for that one module to keep the output readable.
warnings.filterwarnings(
    "ignore", message="This overload of", category=UserWarning, module=r"adabound\.adabound"
)

SEED = 20250611
NUM_STEPS = 300
CHECKPOINTS = (1, 2, 3, 5, 10, 30, 100, 200, 300)
LEAF_SHAPES: dict[str, tuple[int, ...]] = {"w": (4, 3), "b": (5,), "s": (), "t": (3,)}
# Trajectories must match the numpy replay to this relative error (per tensor).
TOLERANCE = 1e-12
OUTPUT_DIR = Path(__file__).resolve().parent / "golden"

# The SWATS problem (see make_swats_problem): one isotropic, noiseless leaf.
SWATS_SHAPE = (6,)
SWATS_CURVATURE = 4e-3
SWATS_START = 2.5e-4
# torch-optimizer's switching test: Tensor.allclose(rtol=1e-6) with torch's default atol.
SWATS_RTOL = 1e-6
SWATS_ATOL = 1e-8

Problem = dict[str, dict[str, np.ndarray]]
Params = dict[str, np.ndarray]
# slot name ("mu", "nu", "nu_max", "mu_product", ...) -> leaf name -> array
Slots = dict[str, dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Hyper:
    """Hyperparameters of one case, as the library effectively used them.

    Attributes:
        lr: Learning rate of the first step.
        b1: First-moment decay rate.
        b2: Second-moment decay rate.
        eps: Epsilon, in whatever convention the library uses.
        weight_decay: Weight-decay coefficient (0.0 for none). AdamW decouples it; for
            torch.optim.Adam with weight decay and in the other families
            ``extra["decoupled"]`` says which form is used.
        lr_decay: Per-step factor; step ``k`` (0-based) uses ``lr * lr_decay**k``.
        amsgrad: Whether the running maximum of the second moment is used (AMSGrad,
            AMSBound).
        extra: Family-specific hyperparameters (floats or bools), saved as ``hp_<name>``.
    """

    lr: float
    b1: float
    b2: float
    eps: float
    weight_decay: float = 0.0
    lr_decay: float = 1.0
    amsgrad: bool = False
    extra: Mapping[str, float | bool] = dataclasses.field(default_factory=dict)

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

    def step_info(self) -> dict[str, float]:
        """Returns scalars recorded after every step as ``<name>_per_step``; usually empty."""
        ...


# --------------------------------------------------------------------------------------
# The problems
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


def to_float32_grid(leaf: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rounds a leaf's inputs to float32-representable values, still stored as float64.

    A float32 test can then feed exactly the same problem, and the zeroed low mantissa
    bits roughly halve the compressed file size.
    """
    return {
        key: np.asarray(value, dtype=np.float32).astype(np.float64) for key, value in leaf.items()
    }


def make_problem(seed: int = SEED, num_steps: int = NUM_STEPS) -> Problem:
    """Builds the noisy separable quadratic that every case but SWATS optimises.

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
        problem[name] = to_float32_grid({"p0": p0, "h": h, "c": c, "noise": noise})
    return problem


def make_swats_problem(seed: int = SEED, num_steps: int = NUM_STEPS) -> Problem:
    """Builds the noiseless one-leaf quadratic on which SWATS provably switches.

    One leaf ``w`` of shape ``SWATS_SHAPE`` with the same curvature ``h`` in every entry,
    minimum ``c = 0`` (so ``p - c`` is exact however small ``p`` gets) and no noise;
    ``p0`` has random signs and magnitudes in ``SWATS_START * [0.5, 1.5]``. A single leaf
    makes torch-optimizer's per-parameter estimate and per-group phase coincide.

    Why the switch must happen (with the SWATS case's lr=1e-2, b1=0.8, b2=0.9, eps=1e-3):
    ``|g| <= h*|p0| ~ 1e-3 * eps``, so ``sqrt(v)`` is a 1e-3 perturbation of ``eps`` that
    decays with ``|g|``. Up to it, the Adam step is heavy-ball SGD with step ``lr/eps``,
    a linear recursion that is the same for every entry (isotropic ``h``) and overdamped
    (``(1-b1)*lr*h/eps = 0.008 < (1 - sqrt(b1))**2 = 0.011``): its two real modes decay
    as about 0.95**k and 0.84**k. So the Adam step ``s`` and the gradient align with the
    slow mode, ``gamma_k = s.s/(-s.g)`` converges geometrically to ``lr/eps`` times that
    mode's ``m/g``, the bias-corrected EMA of ``gamma`` catches up (its transients decay
    like b2**k and the fast mode), and the relative gap falls below the 1e-6 of the
    switching test after about 180 steps (step 179; the test fails by 1.5% one step
    earlier), while ``|p|`` is still ~1e-4 of its start, far above round-off. With
    b2 = 0.95 the EMA lags too long and no switch happens within 300 steps.

    Args:
        seed: Seed for numpy's generator.
        num_steps: Length of the (all-zero) noise sequence.

    Returns:
        Mapping ``{"w": {"p0", "h", "c", "noise"}}`` of float32-representable float64s.
    """
    rng = np.random.default_rng(seed)
    magnitude = rng.uniform(0.5, 1.5, size=SWATS_SHAPE)
    sign = rng.choice([-1.0, 1.0], size=SWATS_SHAPE)
    leaf = {
        "p0": SWATS_START * sign * magnitude,
        "h": np.full(SWATS_SHAPE, SWATS_CURVATURE),
        "c": np.zeros(SWATS_SHAPE),
        "noise": np.zeros((num_steps, *SWATS_SHAPE)),
    }
    return {"w": to_float32_grid(leaf)}


def gradients(problem: Problem, params: Params, k: int) -> Params:
    """Evaluates the gradient of step ``k`` at ``params`` (closed loop).

    The order of operations is part of the golden data's contract: tests recompute the
    gradient the same way and must get bit-identical float64 values.
    """
    return {
        name: np.asarray(leaf["h"] * (params[name] - leaf["c"]) + leaf["noise"][k])
        for name, leaf in problem.items()
    }


def run_closed_loop(problem: Problem, stepper: Stepper) -> dict[str, np.ndarray]:
    """Runs ``NUM_STEPS`` updates and records parameters and state at the checkpoints.

    Args:
        problem: The problem to optimise.
        stepper: The optimiser to drive.

    Returns:
        Mapping ``"<kind>__<leaf>"`` -> array stacked over the checkpoints, for the
        parameters and every slot the stepper reports, plus ``"<name>_per_step"`` ->
        array of length ``NUM_STEPS`` for every value of ``stepper.step_info()``.
    """
    records: dict[str, list[np.ndarray]] = {}
    per_step: dict[str, list[float]] = {}
    for k in range(NUM_STEPS):
        stepper.step(gradients(problem, stepper.params(), k))
        for key, value in stepper.step_info().items():
            per_step.setdefault(f"{key}_per_step", []).append(value)
        if k + 1 in CHECKPOINTS:
            snapshot = {"param": stepper.params(), **stepper.slots()}
            for kind, leaves in snapshot.items():
                for name in problem:
                    records.setdefault(f"{kind}__{name}", []).append(leaves[name])
    out = {key: np.stack(values) for key, values in records.items()}
    out.update({key: np.asarray(values) for key, values in per_step.items()})
    return out


# --------------------------------------------------------------------------------------
# torch.optim, adabound and torch-optimizer
# --------------------------------------------------------------------------------------

TorchBuild = Callable[[list[torch.Tensor], Hyper], torch.optim.Optimizer]
ADAM_SLOTS: Mapping[str, str] = {"mu": "exp_avg", "nu": "exp_avg_sq"}


def build_torch_adam(params: list[torch.Tensor], hp: Hyper) -> torch.optim.Optimizer:
    """torch.optim.Adam, or AdamW when ``hp.weight_decay`` is set.

    With ``hp.extra["decoupled"]`` present, torch.optim.Adam itself is built with
    ``weight_decay`` and ``decoupled_weight_decay`` (False: coupled L2, Adam's default).
    """
    common = {
        "lr": hp.lr,
        "betas": (hp.b1, hp.b2),
        "eps": hp.eps,
        "amsgrad": hp.amsgrad,
        "foreach": False,
    }
    if "decoupled" in hp.extra:
        return torch.optim.Adam(
            params,
            weight_decay=hp.weight_decay,
            decoupled_weight_decay=bool(hp.extra["decoupled"]),
            **common,
        )
    if hp.weight_decay:
        return torch.optim.AdamW(params, weight_decay=hp.weight_decay, **common)
    return torch.optim.Adam(params, **common)


def build_torch_nadam(params: list[torch.Tensor], hp: Hyper) -> torch.optim.Optimizer:
    """torch.optim.NAdam with ``hp.extra`` momentum_decay and decoupled."""
    return torch.optim.NAdam(
        params,
        lr=hp.lr,
        betas=(hp.b1, hp.b2),
        eps=hp.eps,
        weight_decay=hp.weight_decay,
        momentum_decay=hp.extra["momentum_decay"],
        decoupled_weight_decay=bool(hp.extra["decoupled"]),
        foreach=False,
    )


def build_torch_adamax(params: list[torch.Tensor], hp: Hyper) -> torch.optim.Optimizer:
    """torch.optim.Adamax (coupled weight decay only)."""
    return torch.optim.Adamax(
        params,
        lr=hp.lr,
        betas=(hp.b1, hp.b2),
        eps=hp.eps,
        weight_decay=hp.weight_decay,
        foreach=False,
    )


def build_torch_radam(params: list[torch.Tensor], hp: Hyper) -> torch.optim.Optimizer:
    """torch.optim.RAdam with ``hp.extra["decoupled"]``."""
    return torch.optim.RAdam(
        params,
        lr=hp.lr,
        betas=(hp.b1, hp.b2),
        eps=hp.eps,
        weight_decay=hp.weight_decay,
        decoupled_weight_decay=bool(hp.extra["decoupled"]),
        foreach=False,
    )


def build_adabound(params: list[torch.Tensor], hp: Hyper) -> torch.optim.Optimizer:
    """The authors' adabound.AdaBound (coupled L2 weight decay only)."""
    if hp.extra["decoupled"] or hp.amsgrad != hp.extra["amsbound"]:
        raise ValueError("adabound: coupled weight decay only; amsgrad must equal amsbound")
    return adabound.AdaBound(
        params,
        lr=hp.lr,
        betas=(hp.b1, hp.b2),
        final_lr=hp.extra["final_lr"],
        gamma=hp.extra["gamma"],
        eps=hp.eps,
        weight_decay=hp.weight_decay,
        amsbound=bool(hp.extra["amsbound"]),
    )


def build_swats(params: list[torch.Tensor], hp: Hyper) -> torch.optim.Optimizer:
    """torch_optimizer.SWATS (coupled L2 weight decay only; no schedule)."""
    if hp.lr_decay != 1.0:
        raise ValueError("swats: a schedule would overwrite the switched learning rate")
    return torch_optimizer.SWATS(
        params,
        lr=hp.lr,
        betas=(hp.b1, hp.b2),
        eps=hp.eps,
        weight_decay=hp.weight_decay,
        amsgrad=hp.amsgrad,
        nesterov=bool(hp.extra["nesterov"]),
    )


@contextlib.contextmanager
def torch_default_dtype(dtype: torch.dtype | None) -> Iterator[None]:
    """Temporarily sets torch's default dtype (``None`` leaves it alone)."""
    if dtype is None:
        yield
        return
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


class TorchStepper:
    """Drives a torch optimizer on float64 CPU tensors.

    torch's single-tensor path (``foreach=False``) reads lr, betas, eps and weight decay
    as Python floats, so the effective hyperparameters are exactly the ones requested.
    Its step counter is a float32 tensor, which is exact for the step counts used here.
    adabound and torch-optimizer have a single code path and keep ``step`` as an int.

    torch.optim creates per-parameter scalar state (``step``, NAdam's ``mu_product``) at
    the first step in ``torch.get_default_dtype()``. ``default_dtype=torch.float64``
    runs every step under that default so that ``mu_product`` is float64; with the
    float32 default torch would round the product to float32 at every step.
    """

    def __init__(
        self,
        problem: Problem,
        hyper: Hyper,
        build: TorchBuild = build_torch_adam,
        slot_keys: Mapping[str, str] = ADAM_SLOTS,
        default_dtype: torch.dtype | None = None,
    ) -> None:
        """Creates the tensors, the optimizer and, for ``lr_decay != 1``, a LambdaLR.

        Args:
            problem: The problem (only ``p0`` is used).
            hyper: Hyperparameters passed to ``build``.
            build: Creates the optimizer for the parameter tensors.
            slot_keys: Slot name -> key in the optimizer's per-parameter state;
                ``nu_max`` -> ``max_exp_avg_sq`` is added when ``hyper.amsgrad``.
            default_dtype: torch default dtype to step under (``None``: unchanged).
        """
        self.hyper = hyper
        self._tensors = {
            name: torch.tensor(leaf["p0"], dtype=torch.float64, requires_grad=True)
            for name, leaf in problem.items()
        }
        self._opt = build(list(self._tensors.values()), hyper)
        self._slot_keys = dict(slot_keys)
        if hyper.amsgrad:
            self._slot_keys["nu_max"] = "max_exp_avg_sq"
        self._default_dtype = default_dtype
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
        with torch_default_dtype(self._default_dtype):
            self._opt.step()
        if self._sched is not None:
            self._sched.step()

    def slots(self) -> Slots:
        """See :class:`Stepper`.

        Per-tensor scalar state (NAdam's 0-d ``mu_product``, SWATS's shape-(1,)
        ``exp_avg2``) is returned 0-d; state the optimizer has not created yet (SWATS's
        ``momentum_buffer`` before the switch) is returned as zeros.
        """
        out: Slots = {}
        for slot, key in self._slot_keys.items():
            out[slot] = {}
            for name, t in self._tensors.items():
                value = self._opt.state[t].get(key)
                if value is None:
                    out[slot][name] = np.zeros(t.shape)
                    continue
                array = value.detach().numpy().copy()
                out[slot][name] = array if array.shape == t.shape else array.reshape(())
        return out

    def step_info(self) -> dict[str, float]:
        """See :class:`Stepper`."""
        return {}


class SwatsStepper(TorchStepper):
    """torch_optimizer.SWATS, also recording the group's phase and learning rate per step."""

    def step_info(self) -> dict[str, float]:
        """See :class:`Stepper`: ``phase`` (0 Adam, 1 SGD) and the group ``lr``."""
        group = self._opt.param_groups[0]
        return {"phase": int(group["phase"] == "SGD"), "lr": float(group["lr"])}


# --------------------------------------------------------------------------------------
# Keras 3 (JAX backend)
# --------------------------------------------------------------------------------------

KerasBuild = Callable[[Hyper], keras.optimizers.Optimizer]
# slot name -> attribute of the Keras optimizer: a list of per-variable slot variables,
# indexed through the optimizer's own variable index, or one optimizer-wide variable.
KERAS_ADAM_SLOTS: Mapping[str, str] = {"mu": "_momentums", "nu": "_velocities"}


def keras_common_args(hp: Hyper) -> dict[str, float]:
    """The constructor arguments every Keras Adam-family optimizer takes."""
    return {
        "learning_rate": hp.lr,
        "beta_1": hp.b1,
        "beta_2": hp.b2,
        "epsilon": hp.eps,
    }


def build_keras_adam(hp: Hyper) -> keras.optimizers.Optimizer:
    """keras.optimizers.Adam, or AdamW when ``hp.weight_decay`` is set."""
    common = {**keras_common_args(hp), "amsgrad": hp.amsgrad}
    if hp.weight_decay:
        return keras.optimizers.AdamW(weight_decay=hp.weight_decay, **common)
    return keras.optimizers.Adam(**common)


def build_keras_nadam(hp: Hyper) -> keras.optimizers.Optimizer:
    """keras.optimizers.Nadam (no weight decay, no AMSGrad variant)."""
    if hp.weight_decay or hp.amsgrad:
        raise ValueError("keras nadam: the replay covers weight_decay=0, amsgrad=False")
    return keras.optimizers.Nadam(**keras_common_args(hp))


def build_keras_adamax(hp: Hyper) -> keras.optimizers.Optimizer:
    """keras.optimizers.Adamax (no weight decay, no AMSGrad variant)."""
    if hp.weight_decay or hp.amsgrad:
        raise ValueError("keras adamax: the replay covers weight_decay=0, amsgrad=False")
    return keras.optimizers.Adamax(**keras_common_args(hp))


class KerasStepper:
    """Drives a ``keras.optimizers`` optimizer on float64 ``keras.Variable`` objects.

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
    * Nadam keeps one optimizer-wide ``_u_product`` (the product of its momentum
      coefficients ``u_i``), created in ``build`` with the dtype of the first variable
      (float64 here) and multiplied by ``u_t`` once per ``apply``, in
      ``_backend_update_step``, before the per-variable updates read it. Its schedule
      ``u_t = beta_1*(1 - 0.5*0.96**t)`` is fixed (no momentum_decay argument). Although
      the docstring calls epsilon "epsilon hat", the update adds it to the square root of
      the bias-corrected ``v``, i.e. the paper placement.
    * Adamax keeps ``_m`` and the infinity norm ``_u``; ``u = max(beta_2*u, |g|)`` holds
      no epsilon, which is added to ``u`` in the denominator instead.
    """

    def __init__(
        self,
        problem: Problem,
        requested: Hyper,
        build: KerasBuild = build_keras_adam,
        slot_attrs: Mapping[str, str] = KERAS_ADAM_SLOTS,
    ) -> None:
        """Creates the variables and the optimizer and reads back its hyperparameters.

        Args:
            problem: The problem (only ``p0`` is used).
            requested: Hyperparameters passed to ``build``; a schedule is not supported.
            build: Creates the optimizer.
            slot_attrs: Slot name -> attribute of the optimizer holding that slot (see
                ``KERAS_ADAM_SLOTS``); ``nu_max`` -> ``_velocity_hats`` is added when
                ``requested.amsgrad``.

        Raises:
            ValueError: If ``requested.lr_decay`` is not 1.
            RuntimeError: If the learning rate or a slot variable is not float64.
        """
        if requested.lr_decay != 1.0:
            raise ValueError("KerasStepper: learning-rate schedules are not supported")
        self._vars = {
            name: keras.Variable(leaf["p0"], dtype="float64", name=name)
            for name, leaf in problem.items()
        }
        self._opt = build(requested)
        self._opt.build(list(self._vars.values()))
        self._slot_attrs = dict(slot_attrs)
        if requested.amsgrad:
            self._slot_attrs["nu_max"] = "_velocity_hats"

        lr_var = self._opt.learning_rate
        if keras.backend.standardize_dtype(lr_var.dtype) != "float64":
            raise RuntimeError(f"Keras learning rate is {lr_var.dtype}, expected float64")
        for attr in self._slot_attrs.values():
            slot = getattr(self._opt, attr)
            for var in slot if isinstance(slot, list) else [slot]:
                if keras.backend.standardize_dtype(var.dtype) != "float64":
                    raise RuntimeError(f"Keras slot {attr} is {var.dtype}, expected float64")
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
        """See :class:`Stepper`.

        An optimizer-wide slot (Nadam's 0-d ``_u_product``) is returned for every leaf.
        """
        # Keras has no public per-variable slot accessor; these private lists are indexed
        # through the optimizer's own variable index.
        opt = self._opt
        out: Slots = {}
        for slot, attr in self._slot_attrs.items():
            slot_vars = getattr(opt, attr)
            out[slot] = {}
            for name, v in self._vars.items():
                var = (
                    slot_vars[opt._get_variable_index(v)]
                    if isinstance(slot_vars, list)
                    else slot_vars
                )
                out[slot][name] = np.array(var.numpy(), dtype=np.float64)
        return out

    def step_info(self) -> dict[str, float]:
        """See :class:`Stepper`."""
        return {}


# --------------------------------------------------------------------------------------
# Independent float64 numpy replays of the published equations
# --------------------------------------------------------------------------------------


class Replay:
    """Shared plumbing of the numpy replays: float64 parameters and per-leaf state slots.

    A subclass names its slots, may give them other initial values, and implements
    :meth:`_step_leaf` from its paper; :meth:`notes` returns diagnostic lines to print.
    """

    def __init__(self, problem: Problem, hyper: Hyper) -> None:
        self.hyper = hyper
        self._t = 0
        self._p = {name: leaf["p0"].copy() for name, leaf in problem.items()}
        self._state = {name: self._init_state(p) for name, p in self._p.items()}

    def _slot_names(self) -> tuple[str, ...]:
        """Slots kept per leaf, in recording order."""
        return ("mu", "nu", "nu_max") if self.hyper.amsgrad else ("mu", "nu")

    def _init_state(self, p: np.ndarray) -> dict[str, np.ndarray]:
        """Initial state of one leaf (zeros unless overridden)."""
        return {slot: np.zeros_like(p) for slot in self._slot_names()}

    def _step_leaf(
        self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], lr: float, t: int
    ) -> np.ndarray:
        """Updates ``state`` in place and returns the new parameters of one leaf."""
        raise NotImplementedError

    def params(self) -> Params:
        """See :class:`Stepper`."""
        return {name: p.copy() for name, p in self._p.items()}

    def step(self, grads: Params) -> None:
        """See :class:`Stepper`."""
        lr = self.hyper.lr_at(self._t)
        self._t += 1
        for name, g in grads.items():
            self._p[name] = self._step_leaf(self._p[name], g, self._state[name], lr, self._t)

    def slots(self) -> Slots:
        """See :class:`Stepper`."""
        return {
            slot: {name: state[slot].copy() for name, state in self._state.items()}
            for slot in self._slot_names()
        }

    def step_info(self) -> dict[str, float]:
        """See :class:`Stepper`."""
        return {}

    def notes(self) -> list[str]:
        """Diagnostic lines about the run so far."""
        return []


class AdamReplay(Replay):
    """Adam/AMSGrad/AdamW (Kingma & Ba 2015; Reddi et al. 2018; Loshchilov & Hutter 2019).

    ``eps_hat=False`` follows the torch documentation (paper epsilon)::

        p <- p - lr*wd*p                                  (AdamW: decoupled)
        g <- g + wd*p                         (torch.optim.Adam's default L2: coupled)
        m <- b1*m + (1-b1)*g;  v <- b2*v + (1-b2)*g^2;  v_max <- max(v_max, v)
        p <- p - lr * (m/(1-b1^t)) / (sqrt(v_or_vmax/(1-b2^t)) + eps)

    Weight decay is decoupled unless ``hyper.extra["decoupled"]`` is False (the AdamW files
    have no ``decoupled`` entry: AdamW always decouples).

    ``eps_hat=True`` follows Kingma & Ba's efficient form, as Keras implements it::

        p <- p - p*wd*lr                                  (AdamW only)
        alpha = lr*sqrt(1-b2^t)/(1-b1^t)
        p <- p - alpha * m / (sqrt(v_or_vmax) + eps)
    """

    def __init__(self, problem: Problem, hyper: Hyper, eps_hat: bool) -> None:
        self._eps_hat = eps_hat
        super().__init__(problem, hyper)

    def _step_leaf(
        self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], lr: float, t: int
    ) -> np.ndarray:
        hp = self.hyper
        if hp.weight_decay:
            if not hp.extra.get("decoupled", True):
                g = g + hp.weight_decay * p
            elif self._eps_hat:
                p = p - p * hp.weight_decay * lr
            else:
                p = p - lr * hp.weight_decay * p
        m = state["mu"] = hp.b1 * state["mu"] + (1.0 - hp.b1) * g
        v = state["nu"] = hp.b2 * state["nu"] + (1.0 - hp.b2) * g * g
        if hp.amsgrad:
            v = state["nu_max"] = np.maximum(state["nu_max"], v)
        if self._eps_hat:
            alpha = lr * np.sqrt(1.0 - hp.b2**t) / (1.0 - hp.b1**t)
            return p - alpha * m / (np.sqrt(v) + hp.eps)
        m_hat = m / (1.0 - hp.b1**t)
        v_hat = v / (1.0 - hp.b2**t)
        return p - lr * m_hat / (np.sqrt(v_hat) + hp.eps)


class NAdamReplay(Replay):
    """NAdam (Dozat 2016) with torch's momentum schedule and weight-decay options.

    With ``psi = momentum_decay`` and ``mu_t = b1 * (1 - 0.5 * 0.96**(t*psi))``::

        g <- g + wd*p   (coupled)      or      p <- p*(1 - lr*wd)   (decoupled, first)
        P_t = P_{t-1} * mu_t            (P_0 = 1; the ``mu_product`` slot)
        m <- b1*m + (1-b1)*g;  v <- b2*v + (1-b2)*g^2        (constant b1, b2)
        denom = sqrt(v/(1-b2^t)) + eps
        p <- p - lr*(1-mu_t)/(1-P_t) * g/denom - lr*mu_{t+1}/(1-P_t*mu_{t+1}) * m/denom
    """

    def _slot_names(self) -> tuple[str, ...]:
        return ("mu", "nu", "mu_product")

    def _init_state(self, p: np.ndarray) -> dict[str, np.ndarray]:
        return {"mu": np.zeros_like(p), "nu": np.zeros_like(p), "mu_product": np.ones(())}

    def _step_leaf(
        self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], lr: float, t: int
    ) -> np.ndarray:
        hp = self.hyper
        psi = hp.extra["momentum_decay"]
        if hp.weight_decay:
            if hp.extra["decoupled"]:
                p = p * (1.0 - lr * hp.weight_decay)
            else:
                g = g + hp.weight_decay * p
        mu_t = hp.b1 * (1.0 - 0.5 * 0.96 ** (t * psi))
        mu_next = hp.b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * psi))
        product = state["mu_product"] = state["mu_product"] * mu_t
        m = state["mu"] = hp.b1 * state["mu"] + (1.0 - hp.b1) * g
        v = state["nu"] = hp.b2 * state["nu"] + (1.0 - hp.b2) * g * g
        denom = np.sqrt(v / (1.0 - hp.b2**t)) + hp.eps
        gradient_part = lr * (1.0 - mu_t) / (1.0 - product) * g / denom
        momentum_part = lr * mu_next / (1.0 - product * mu_next) * m / denom
        return p - gradient_part - momentum_part


class AdamaxReplay(Replay):
    """Adamax (Kingma & Ba 2015, sec. 7.1) with torch's eps inside the max.

    ``nu`` holds the exponentially weighted infinity norm ``u``::

        g <- g + wd*p                                   (coupled weight decay)
        m <- b1*m + (1-b1)*g
        u <- max(b2*u, |g| + eps)
        p <- p - lr/(1-b1^t) * m/u

    torch.optim.Adamax has no decoupled option, so neither has the replay.
    """

    def __init__(self, problem: Problem, hyper: Hyper) -> None:
        if hyper.extra.get("decoupled", False):
            raise ValueError("AdamaxReplay covers coupled weight decay only")
        super().__init__(problem, hyper)

    def _step_leaf(
        self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], lr: float, t: int
    ) -> np.ndarray:
        hp = self.hyper
        if hp.weight_decay:
            g = g + hp.weight_decay * p
        m = state["mu"] = hp.b1 * state["mu"] + (1.0 - hp.b1) * g
        u = state["nu"] = np.maximum(hp.b2 * state["nu"], np.abs(g) + hp.eps)
        return p - lr / (1.0 - hp.b1**t) * m / u


class KerasNadamReplay(NAdamReplay):
    """Nadam (Dozat 2016) as Keras 3 runs it, from keras/src/optimizers/nadam.py (the slots are
    those of :class:`NAdamReplay`; the update is written here on its own).

    Keras has no momentum-decay parameter; its momentum schedule is fixed::

        u_t = b1*(1 - 0.5*0.96^t)
        P_t = P_{t-1} * u_t                 (P_0 = 1; the ``mu_product`` slot)
        m <- b1*m + (1-b1)*g;  v <- b2*v + (1-b2)*g^2        (constant b1, b2)
        m_hat = u_{t+1}*m/(1 - P_t*u_{t+1}) + (1-u_t)*g/(1 - P_t)
        v_hat = v/(1-b2^t)
        p <- p - lr*m_hat/(sqrt(v_hat) + eps)
    """

    def __init__(self, problem: Problem, hyper: Hyper) -> None:
        if hyper.weight_decay or hyper.amsgrad:
            raise ValueError("KerasNadamReplay covers weight_decay=0, amsgrad=False")
        super().__init__(problem, hyper)

    def _step_leaf(
        self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], lr: float, t: int
    ) -> np.ndarray:
        hp = self.hyper
        u_t = hp.b1 * (1.0 - 0.5 * 0.96**t)
        u_next = hp.b1 * (1.0 - 0.5 * 0.96 ** (t + 1))
        product = state["mu_product"] = state["mu_product"] * u_t
        m = state["mu"] = hp.b1 * state["mu"] + (1.0 - hp.b1) * g
        v = state["nu"] = hp.b2 * state["nu"] + (1.0 - hp.b2) * g * g
        m_hat = u_next * m / (1.0 - product * u_next) + (1.0 - u_t) * g / (1.0 - product)
        v_hat = v / (1.0 - hp.b2**t)
        return p - lr * m_hat / (np.sqrt(v_hat) + hp.eps)


class KerasAdamaxReplay(Replay):
    """Adamax (Kingma & Ba 2015, sec. 7.1) as Keras 3 runs it: eps in the denominator.

    ``nu`` holds the exponentially weighted infinity norm ``u``::

        m <- b1*m + (1-b1)*g
        u <- max(b2*u, |g|)                             (no eps inside the max)
        p <- p - lr*m / ((1-b1^t) * (u + eps))
    """

    def __init__(self, problem: Problem, hyper: Hyper) -> None:
        if hyper.weight_decay or hyper.amsgrad:
            raise ValueError("KerasAdamaxReplay covers weight_decay=0, amsgrad=False")
        super().__init__(problem, hyper)

    def _step_leaf(
        self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], lr: float, t: int
    ) -> np.ndarray:
        hp = self.hyper
        m = state["mu"] = hp.b1 * state["mu"] + (1.0 - hp.b1) * g
        u = state["nu"] = np.maximum(hp.b2 * state["nu"], np.abs(g))
        return p - lr * m / ((1.0 - hp.b1**t) * (u + hp.eps))


class RAdamReplay(Replay):
    """RAdam (Liu et al. 2020, Algorithm 2) in torch's conventions.

    ::

        p <- p*(1 - lr*wd)  (decoupled, first)   or   g <- g + wd*p  (coupled)
        m <- b1*m + (1-b1)*g;  v <- b2*v + (1-b2)*g^2;  m_hat = m/(1-b1^t)
        rho_inf = 2/(1-b2) - 1;  rho_t = rho_inf - 2*t*b2^t/(1-b2^t)
        if rho_t > 5:
            r_t = sqrt((rho_t-4)(rho_t-2)rho_inf / ((rho_inf-4)(rho_inf-2)rho_t))
            p <- p - lr * m_hat * r_t * sqrt(1-b2^t)/(sqrt(v) + eps)
        else:
            p <- p - lr * m_hat
    """

    def __init__(self, problem: Problem, hyper: Hyper) -> None:
        super().__init__(problem, hyper)
        self._first_rectified: int | None = None
        self._rho: list[float] = []

    def _step_leaf(
        self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], lr: float, t: int
    ) -> np.ndarray:
        hp = self.hyper
        if hp.weight_decay:
            if hp.extra["decoupled"]:
                p = p * (1.0 - lr * hp.weight_decay)
            else:
                g = g + hp.weight_decay * p
        m = state["mu"] = hp.b1 * state["mu"] + (1.0 - hp.b1) * g
        v = state["nu"] = hp.b2 * state["nu"] + (1.0 - hp.b2) * g * g
        m_hat = m / (1.0 - hp.b1**t)
        rho_inf = 2.0 / (1.0 - hp.b2) - 1.0
        rho_t = rho_inf - 2.0 * t * hp.b2**t / (1.0 - hp.b2**t)
        if len(self._rho) < t:
            self._rho.append(rho_t)
        if rho_t <= 5.0:
            return p - lr * m_hat
        if self._first_rectified is None:
            self._first_rectified = t
        rect = math.sqrt(
            (rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
        )
        return p - lr * m_hat * rect * math.sqrt(1.0 - hp.b2**t) / (np.sqrt(v) + hp.eps)

    def notes(self) -> list[str]:
        """Reports the first rectified step and rho_t around it."""
        t = self._first_rectified
        if t is None:
            return ["never rectified"]
        rho = ", ".join(f"rho_{s}={self._rho[s - 1]:.3f}" for s in range(max(1, t - 2), t + 2))
        return [f"first rectified step (rho_t > 5): t={t}; {rho}"]


class AdaBoundReplay(Replay):
    """AdaBound/AMSBound (Luo et al. 2019, Algorithms 2 and 3) as the authors' package runs it.

    ::

        g <- g + wd*p                                     (coupled L2)
        m <- b1*m + (1-b1)*g;  v <- b2*v + (1-b2)*g^2;  v_max <- max(v_max, v)
        eta = lr_t * sqrt(1-b2^t)/(1-b1^t) / (sqrt(v_or_vmax) + eps)
        final = final_lr * lr_t / lr_0          (a schedule on lr also scales final_lr)
        eta <- clip(eta, final*(1 - 1/(gamma*t + 1)), final*(1 + 1/(gamma*t)))
        p <- p - eta * m                        (raw m: the bias correction sits in eta)
    """

    CLIP_REPORT_STEPS = (1, 2, 10, 30, 100, 200, 300)

    def __init__(self, problem: Problem, hyper: Hyper) -> None:
        super().__init__(problem, hyper)
        # step -> [entries clipped at the lower bound, at the upper bound, entries with m != 0]
        self._clipped: dict[int, list[int]] = {}

    def _step_leaf(
        self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], lr: float, t: int
    ) -> np.ndarray:
        hp = self.hyper
        if hp.weight_decay:
            g = g + hp.weight_decay * p
        m = state["mu"] = hp.b1 * state["mu"] + (1.0 - hp.b1) * g
        v = state["nu"] = hp.b2 * state["nu"] + (1.0 - hp.b2) * g * g
        if hp.amsgrad:
            v = state["nu_max"] = np.maximum(state["nu_max"], v)
        eta = lr * math.sqrt(1.0 - hp.b2**t) / (1.0 - hp.b1**t) / (np.sqrt(v) + hp.eps)
        final_lr = hp.extra["final_lr"] * lr / hp.lr
        gamma = hp.extra["gamma"]
        lower = final_lr * (1.0 - 1.0 / (gamma * t + 1.0))
        upper = final_lr * (1.0 + 1.0 / (gamma * t))
        # Count only entries the clip acts on: where m == 0 (the zero-gradient entry of
        # leaf b without weight decay) eta is huge but the update is zero anyway.
        acts = m != 0.0
        counts = self._clipped.setdefault(t, [0, 0, 0])
        counts[0] += int(np.count_nonzero((eta < lower) & acts))
        counts[1] += int(np.count_nonzero((eta > upper) & acts))
        counts[2] += int(np.count_nonzero(acts))
        return p - np.clip(eta, lower, upper) * m

    def notes(self) -> list[str]:
        """Reports how many entries the lower/upper bounds clipped at a few steps."""
        shown = [t for t in self.CLIP_REPORT_STEPS if t in self._clipped]
        size = self._clipped[shown[0]][2]
        parts = [f"t={t}: {self._clipped[t][0]}/{self._clipped[t][1]}" for t in shown]
        every = np.array([c[:2] for c in self._clipped.values()])
        steps_lower = int(np.count_nonzero(every[:, 0]))
        steps_upper = int(np.count_nonzero(every[:, 1]))
        return [
            f"entries with m != 0 clipped at lower/upper bound (of {size}): " + ", ".join(parts),
            f"steps with any entry at the lower bound: {steps_lower}/{len(every)}, "
            f"at the upper bound: {steps_upper}/{len(every)}",
        ]


class SwatsReplay(Replay):
    """SWATS (Keskar & Socher 2017, Algorithm 1) in torch-optimizer's conventions.

    Adam phase, per parameter tensor (``lr`` is the group's current learning rate)::

        g <- g + wd*p                                     (coupled L2)
        m <- b1*m + (1-b1)*g;  v <- b2*v + (1-b2)*g^2
        s = -lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v) + eps);  p <- p + s
        if s.g != 0:
            gamma = s.s/(-s.g);  lambda <- b2*lambda + (1-b2)*gamma;  L = lambda/(1-b2^t)
            if t > 1 and |L - gamma| <= atol + rtol*|gamma| and L > 0:
                group phase <- SGD;  group lr <- L

    SGD phase (the Adam moments and lambda stay frozen, ``t`` keeps counting)::

        first SGD step:  buf = g;                     p <- p - lr*(1-b1)*g
        later steps:     buf <- (1-b1)*(b1*buf + g);  p <- p - lr*buf

    The paper's SGD phase is ``v <- b1*v + g; p <- p - (1-b1)*L*v``; torch-optimizer
    rescales its buffer in place, so from the third SGD step on its momentum is
    effectively ``b1*(1-b1)`` instead of ``b1``.
    """

    def __init__(self, problem: Problem, hyper: Hyper) -> None:
        if hyper.amsgrad or hyper.extra["nesterov"] or hyper.lr_decay != 1.0:
            raise ValueError("SwatsReplay covers amsgrad=False, nesterov=False, no schedule")
        super().__init__(problem, hyper)
        self._sgd = False
        self._lr = hyper.lr
        self._switch_step = -1
        self._buffered: set[str] = set()
        # (step, |L - gamma| / tolerance) for every Adam step that updated lambda
        self._gaps: list[tuple[int, float]] = []

    def _slot_names(self) -> tuple[str, ...]:
        return ("mu", "nu", "lambda", "momentum")

    def _init_state(self, p: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "mu": np.zeros_like(p),
            "nu": np.zeros_like(p),
            "lambda": np.zeros(()),
            "momentum": np.zeros_like(p),
        }

    def step(self, grads: Params) -> None:
        """See :class:`Stepper`. Phase and learning rate belong to the group, not a leaf."""
        self._t += 1
        for name, g in grads.items():
            if self._sgd:
                self._p[name] = self._sgd_leaf(name, g)
            else:
                self._p[name] = self._step_leaf(
                    self._p[name], g, self._state[name], self._lr, self._t
                )

    def _sgd_leaf(self, name: str, g: np.ndarray) -> np.ndarray:
        hp = self.hyper
        p, state = self._p[name], self._state[name]
        if hp.weight_decay:
            g = g + hp.weight_decay * p
        if name not in self._buffered:
            self._buffered.add(name)
            state["momentum"] = g.copy()
            return p - self._lr * ((1.0 - hp.b1) * g)
        state["momentum"] = (1.0 - hp.b1) * (hp.b1 * state["momentum"] + g)
        return p - self._lr * state["momentum"]

    def _step_leaf(
        self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], lr: float, t: int
    ) -> np.ndarray:
        hp = self.hyper
        if hp.weight_decay:
            g = g + hp.weight_decay * p
        m = state["mu"] = hp.b1 * state["mu"] + (1.0 - hp.b1) * g
        v = state["nu"] = hp.b2 * state["nu"] + (1.0 - hp.b2) * g * g
        bias2 = 1.0 - hp.b2**t
        s = -(lr * math.sqrt(bias2) / (1.0 - hp.b1**t)) * (m / (np.sqrt(v) + hp.eps))
        s_dot_g = float(np.vdot(s, g))
        if s_dot_g != 0.0:
            gamma = float(np.vdot(s, s)) / -s_dot_g
            state["lambda"] = hp.b2 * state["lambda"] + (1.0 - hp.b2) * gamma
            estimate = float(state["lambda"]) / bias2
            tolerance = SWATS_ATOL + SWATS_RTOL * abs(gamma)
            self._gaps.append((t, abs(estimate - gamma) / tolerance))
            if t > 1 and abs(estimate - gamma) <= tolerance and estimate > 0.0:
                self._sgd = True
                self._lr = estimate
                self._switch_step = t
        return p + s

    def step_info(self) -> dict[str, float]:
        """See :class:`Stepper`: ``phase`` (0 Adam, 1 SGD) and the group ``lr``."""
        return {"phase": int(self._sgd), "lr": self._lr}

    def notes(self) -> list[str]:
        """Reports the switch and how clearly the switching test passed and failed."""
        if self._switch_step < 0:
            return ["no switch to SGD"]
        gaps = dict(self._gaps)
        t = self._switch_step
        return [
            f"switch to SGD after Adam step {t}: Lambda = {self._lr:.12g}",
            f"|Lambda - gamma| / tolerance: step {t - 1}: {gaps.get(t - 1, math.nan):.4f} "
            f"(fails), step {t}: {gaps[t]:.4f} (passes)",
        ]


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
        make_replay: Builds the independent numpy replay for the effective hyperparameters.
        generator: Human-readable description of the library call.
        convention: Description of the update convention.
        make_problem: Builds the problem the case optimises.
    """

    name: str
    requested: Hyper
    make_stepper: Callable[[Problem, Hyper], Stepper]
    make_replay: Callable[[Problem, Hyper], Replay]
    generator: str
    convention: str
    make_problem: Callable[[], Problem] = make_problem


# Why torch_nadam_l2 uses b2=0.999 (saved in its meta_generator). With b2=0.95 the entry
# b[0] (h=0, no noise, so its gradient is wd*p alone) is driven to ~1e-24 and then turns
# unstable: sqrt(v_hat) keeps shrinking like 0.975**t, the linearised step
# p <- p*(1 - lr*wd*c/sqrt(v_hat)) gets a factor below -1, and round-off grows ~5x per
# step to ~1e-4 by step 300, so no two implementations can agree there. NAdam is scale
# invariant in the gradient, so another weight decay does not help; b2=0.999 keeps
# sqrt(v_hat) large and the entry decays smoothly (to ~3e-13 at step 300).
NADAM_L2_B2 = (
    "; b2=0.999 instead of the shared 0.95: with 0.95 the gradient-free entry b[0] (driven by "
    "wd*p alone) becomes unstable after ~210 steps and its round-off grows to ~1e-4"
)
# Why torch_adamax_l2 uses b2=0.999 (saved in its meta_generator), the same reason and fix as
# torch_nadam_l2. With b2=0.95, the entries whose gradient is (almost) wd*p alone, b[0] and
# the tiny-gradient leaf t, collapse towards 0 while u = max(b2*u, |g| + eps) forgets their
# large past gradients like 0.95**t. Once the linearised step lr*wd*p/u overshoots, the
# entries oscillate in a nonlinear (max-driven) cycle that amplifies round-off ~1.4x per
# step: torch and the replay part by 1e-10 at step 200 and by O(1) in t after ~280 steps.
# Adamax is scale invariant in the gradient (eps aside), so another weight decay does not
# help; with b2=0.999, u keeps >= 0.74 of its peak, t decays smoothly (to ~0.16) and b[0]
# to ~3e-5. torch_adam_l2 keeps b2=0.95: its b[0] is driven to ~1e-10 and then grows back
# to ~2e-3 by step 300, but while it is small v holds its past gradients (sqrt(v_hat) >> eps),
# the recursion is linear in p, and relative round-off stays ~1e-15 per entry.
ADAMAX_L2_B2 = (
    "; b2=0.999 instead of the shared 0.95: with 0.95 the decay-driven entries (b[0] and the "
    "tiny-gradient leaf t) turn unstable after ~180 steps and their round-off grows to O(1)"
)
TORCH_CONVENTION = (
    "paper eps: p -= lr*m_hat/(sqrt(v_hat)+eps), m_hat=m/(1-b1^t), v_hat=v/(1-b2^t); "
    "AMSGrad max over raw v, bias-corrected after the max; "
    "AdamW decay p *= 1-lr*wd before the Adam step"
)
TORCH_L2_CONVENTION = (
    "paper eps: p -= lr*m_hat/(sqrt(v_hat)+eps), m_hat=m/(1-b1^t), v_hat=v/(1-b2^t); "
    "torch.optim.Adam's weight_decay is coupled L2 (decoupled_weight_decay=False, the "
    "default): g += wd*p before the moments, p itself is not decayed"
)
TORCH_ADAM_DECOUPLED_CONVENTION = (
    TORCH_CONVENTION + "; torch.optim.Adam(decoupled_weight_decay=True) runs the same code "
    "as AdamW (which is Adam with decoupled_weight_decay=True)"
)
KERAS_CONVENTION = (
    "eps-hat form: p -= lr*sqrt(1-b2^t)/(1-b1^t)*m/(sqrt(v)+eps) on raw v; "
    "AMSGrad max over raw v; AdamW decay p -= p*wd*lr before the Adam step"
)
NADAM_CONVENTION = (
    "Dozat NAdam with torch's momentum schedule mu_t = b1*(1-0.5*0.96^(t*momentum_decay)); "
    "P_t = prod_{i<=t} mu_i (state mu_product, float64 here); m, v EMAs with constant b1, b2; "
    "paper eps: denom = sqrt(v/(1-b2^t)) + eps; "
    "p -= lr*(1-mu_t)/(1-P_t)*g/denom + lr*mu_{t+1}/(1-P_t*mu_{t+1})*m/denom; "
    "weight decay: coupled g += wd*p before the moments, or (decoupled_weight_decay) "
    "p *= 1-lr*wd first"
)
ADAMAX_CONVENTION = (
    "torch Adamax: m EMA; u = max(b2*u, |g| + eps), eps added to |g| inside the max (not "
    "to the denominator), u not bias-corrected; p -= lr/(1-b1^t) * m/u"
)
ADAMAX_L2_CONVENTION = (
    ADAMAX_CONVENTION + "; weight_decay is coupled L2: g += wd*p before m and u "
    "(torch.optim.Adamax has no decoupled option)"
)
KERAS_NADAM_CONVENTION = (
    "Keras 3 Nadam: fixed momentum schedule u_t = b1*(1-0.5*0.96^t), torch's with "
    "momentum_decay=1 (Keras has no such argument); P_t = prod_{i<=t} u_i, one float64 "
    "variable per optimizer (u_product, stored per leaf as mu_product); m, v EMAs with "
    "constant b1, b2; m_hat = u_{t+1}*m/(1-P_t*u_{t+1}) + (1-u_t)*g/(1-P_t), "
    "v_hat = v/(1-b2^t); p -= lr*m_hat/(sqrt(v_hat)+eps): paper eps, outside the sqrt of the "
    "bias-corrected v (the Keras docstring calls it epsilon hat)"
)
KERAS_ADAMAX_CONVENTION = (
    "Keras 3 Adamax: m EMA; u = max(b2*u, |g|), no eps inside the max, u not "
    "bias-corrected; p -= lr*m/((1-b1^t)*(u+eps)): eps added to u in the denominator "
    "(torch adds it to |g| inside the max)"
)
RADAM_CONVENTION = (
    "torch RAdam (Liu et al. 2020): m_hat = m/(1-b1^t); rho_inf = 2/(1-b2)-1, "
    "rho_t = rho_inf - 2t*b2^t/(1-b2^t); if rho_t > 5 (strict): "
    "p -= lr*m_hat*r_t*sqrt(1-b2^t)/(sqrt(v)+eps), "
    "r_t = sqrt((rho_t-4)(rho_t-2)rho_inf/((rho_inf-4)(rho_inf-2)rho_t)), eps added to "
    "sqrt of the raw v (eps-hat placement); else p -= lr*m_hat (no adaptive term); "
    "decoupled decay p *= 1-lr*wd first, coupled g += wd*p"
)
ADABOUND_CONVENTION = (
    "Luo et al. 2019 as the authors' package runs it: coupled L2 g += wd*p; m, v EMAs; "
    "AMSBound max over raw v; eta = lr_t*sqrt(1-b2^t)/(1-b1^t)/(sqrt(v_or_vmax)+eps) "
    "(eps-hat); final = final_lr*lr_t/lr_0 (follows an lr schedule); eta clipped to "
    "[final*(1-1/(gamma*t+1)), final*(1+1/(gamma*t))]; p -= clip(eta)*m with the raw m"
)
SWATS_CONVENTION = (
    "Keskar & Socher 2017 as torch-optimizer runs it. Adam phase: eps-hat step "
    "s = -lr*sqrt(1-b2^t)/(1-b1^t)*m/(sqrt(v)+eps) (the paper has no eps in the "
    "denominator; its eps is the switching threshold); gamma = s.s/(-s.g) if s.g != 0, "
    "lambda = b2*lambda + (1-b2)*gamma, L = lambda/(1-b2^t). Switch when t > 1 and "
    "L.allclose(gamma, rtol=1e-6), i.e. |L-gamma| <= 1e-8 + 1e-6*|gamma|, and L > 0 (paper: "
    "|L-gamma| < eps absolute, eps=1e-9, no sign test); the group lr becomes L. Granularity: "
    "gamma and lambda per parameter tensor (paper: one global estimate), phase and lr per "
    "group, so the first tensor that passes switches the whole group and the tensors after "
    "it take an SGD step in that same step (identical here: one leaf). SGD phase: first "
    "step buf = g, p -= L*(1-b1)*g; then buf = (1-b1)*(b1*buf + g), p -= L*buf: "
    "torch-optimizer rescales its buffer in place, so the momentum is "
    "effectively b1*(1-b1) from the third SGD step on (paper: v = b1*v + g, "
    "p -= (1-b1)*L*v, no dampening). m, v, lambda stay frozen in the SGD phase; the step "
    "count keeps running; weight decay is coupled L2 added to p.grad in place"
)


def build_cases() -> list[Case]:
    """Returns every golden case, with the installed library versions in the metadata."""
    tv = f"torch {torch.__version__}"
    kv = f"keras {keras.__version__} (jax {jax.__version__} backend, float64)"
    abv = f"adabound {importlib.metadata.version('adabound')} on {tv}"
    tov = f"torch-optimizer {importlib.metadata.version('torch-optimizer')} on {tv}"
    torch_hp = Hyper(lr=1e-2, b1=0.8, b2=0.95, eps=1e-6)
    keras_hp = Hyper(lr=1e-2, b1=0.9, b2=0.999, eps=1e-7)
    t_args = "lr=0.01, betas=(0.8, 0.95), eps=1e-06"
    k_args = "learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-07"

    torch_replay = functools.partial(AdamReplay, eps_hat=False)
    keras_replay = functools.partial(AdamReplay, eps_hat=True)
    nadam_hp = dataclasses.replace(torch_hp, extra={"momentum_decay": 4e-3, "decoupled": False})
    nadam_stepper = functools.partial(
        TorchStepper,
        build=build_torch_nadam,
        slot_keys={**ADAM_SLOTS, "mu_product": "mu_product"},
        default_dtype=torch.float64,
    )
    nadam_call = f"{tv}: torch.optim.NAdam({t_args}, momentum_decay=0.004"
    nadam_dtype = (
        ", foreach=False), stepped under torch.set_default_dtype(torch.float64) so that "
        "mu_product is float64"
    )
    adamax_stepper = functools.partial(
        TorchStepper, build=build_torch_adamax, slot_keys={"mu": "exp_avg", "nu": "exp_inf"}
    )
    radam_hp = dataclasses.replace(torch_hp, extra={"decoupled": False})
    radam_stepper = functools.partial(TorchStepper, build=build_torch_radam)
    adabound_hp = dataclasses.replace(
        torch_hp, extra={"final_lr": 0.1, "gamma": 1e-2, "amsbound": False, "decoupled": False}
    )
    adabound_stepper = functools.partial(TorchStepper, build=build_adabound)
    ab_args = "lr=0.01, betas=(0.8, 0.95), final_lr=0.1, gamma=0.01, eps=1e-06"
    ab_note = (
        "; its deprecated scalar-first add/add_/addcmul_ overloads run unchanged in torch "
        "2.13 (UserWarning only, silenced), no compatibility shim"
    )
    swats_hp = Hyper(lr=1e-2, b1=0.8, b2=0.9, eps=1e-3, extra={"nesterov": False})
    swats_problem = (
        f"; dedicated problem: one leaf w{SWATS_SHAPE}, h={SWATS_CURVATURE} in every entry, "
        f"c=0, no noise, |p0| in {SWATS_START}*[0.5, 1.5] with random signs (seed {SEED})"
    )
    return [
        Case(
            "torch_adam",
            torch_hp,
            TorchStepper,
            torch_replay,
            f"{tv}: torch.optim.Adam({t_args}, foreach=False)",
            TORCH_CONVENTION,
        ),
        Case(
            "torch_amsgrad",
            dataclasses.replace(torch_hp, amsgrad=True),
            TorchStepper,
            torch_replay,
            f"{tv}: torch.optim.Adam({t_args}, amsgrad=True, foreach=False)",
            TORCH_CONVENTION,
        ),
        Case(
            "torch_adamw",
            dataclasses.replace(torch_hp, weight_decay=0.1),
            TorchStepper,
            torch_replay,
            f"{tv}: torch.optim.AdamW({t_args}, weight_decay=0.1, foreach=False)",
            TORCH_CONVENTION,
        ),
        Case(
            "torch_adamw_schedule",
            dataclasses.replace(torch_hp, weight_decay=0.1, lr_decay=0.99),
            TorchStepper,
            torch_replay,
            f"{tv}: torch.optim.AdamW({t_args}, weight_decay=0.1, foreach=False)"
            " + LambdaLR(0.99**k)",
            TORCH_CONVENTION,
        ),
        Case(
            "torch_adam_l2",
            dataclasses.replace(torch_hp, weight_decay=0.1, extra={"decoupled": False}),
            TorchStepper,
            torch_replay,
            f"{tv}: torch.optim.Adam({t_args}, weight_decay=0.1, "
            "decoupled_weight_decay=False, foreach=False)",
            TORCH_L2_CONVENTION,
        ),
        Case(
            "torch_adam_decoupled",
            dataclasses.replace(torch_hp, weight_decay=0.1, extra={"decoupled": True}),
            TorchStepper,
            torch_replay,
            f"{tv}: torch.optim.Adam({t_args}, weight_decay=0.1, "
            "decoupled_weight_decay=True, foreach=False)",
            TORCH_ADAM_DECOUPLED_CONVENTION,
        ),
        Case(
            "torch_adamw_amsgrad",
            dataclasses.replace(torch_hp, weight_decay=0.1, amsgrad=True),
            TorchStepper,
            torch_replay,
            f"{tv}: torch.optim.AdamW({t_args}, weight_decay=0.1, amsgrad=True, foreach=False)",
            TORCH_CONVENTION,
        ),
        Case(
            "keras_adam",
            keras_hp,
            KerasStepper,
            keras_replay,
            f"{kv}: keras.optimizers.Adam({k_args})",
            KERAS_CONVENTION,
        ),
        Case(
            "keras_amsgrad",
            dataclasses.replace(keras_hp, amsgrad=True),
            KerasStepper,
            keras_replay,
            f"{kv}: keras.optimizers.Adam({k_args}, amsgrad=True)",
            KERAS_CONVENTION,
        ),
        Case(
            "keras_adamw",
            dataclasses.replace(keras_hp, weight_decay=0.1),
            KerasStepper,
            keras_replay,
            f"{kv}: keras.optimizers.AdamW({k_args}, weight_decay=0.1)",
            KERAS_CONVENTION,
        ),
        Case(
            "keras_nadam",
            keras_hp,
            functools.partial(
                KerasStepper,
                build=build_keras_nadam,
                slot_attrs={**KERAS_ADAM_SLOTS, "mu_product": "_u_product"},
            ),
            KerasNadamReplay,
            f"{kv}: keras.optimizers.Nadam({k_args})",
            KERAS_NADAM_CONVENTION,
        ),
        Case(
            "keras_adamax",
            keras_hp,
            functools.partial(
                KerasStepper, build=build_keras_adamax, slot_attrs={"mu": "_m", "nu": "_u"}
            ),
            KerasAdamaxReplay,
            f"{kv}: keras.optimizers.Adamax({k_args})",
            KERAS_ADAMAX_CONVENTION,
        ),
        Case(
            "torch_nadam",
            nadam_hp,
            nadam_stepper,
            NAdamReplay,
            nadam_call + nadam_dtype,
            NADAM_CONVENTION,
        ),
        Case(
            "torch_nadam_l2",
            dataclasses.replace(nadam_hp, b2=0.999, weight_decay=0.1),
            nadam_stepper,
            NAdamReplay,
            f"{tv}: torch.optim.NAdam(lr=0.01, betas=(0.8, 0.999), eps=1e-06, "
            "momentum_decay=0.004, weight_decay=0.1" + nadam_dtype + NADAM_L2_B2,
            NADAM_CONVENTION,
        ),
        Case(
            "torch_nadam_decoupled",
            dataclasses.replace(
                nadam_hp, weight_decay=0.1, extra={"momentum_decay": 4e-3, "decoupled": True}
            ),
            nadam_stepper,
            NAdamReplay,
            nadam_call + ", weight_decay=0.1, decoupled_weight_decay=True" + nadam_dtype,
            NADAM_CONVENTION,
        ),
        Case(
            "torch_adamax",
            torch_hp,
            adamax_stepper,
            AdamaxReplay,
            f"{tv}: torch.optim.Adamax({t_args}, foreach=False)",
            ADAMAX_CONVENTION,
        ),
        Case(
            "torch_adamax_l2",
            dataclasses.replace(torch_hp, b2=0.999, weight_decay=0.1, extra={"decoupled": False}),
            adamax_stepper,
            AdamaxReplay,
            f"{tv}: torch.optim.Adamax(lr=0.01, betas=(0.8, 0.999), eps=1e-06, weight_decay=0.1, "
            "foreach=False)" + ADAMAX_L2_B2,
            ADAMAX_L2_CONVENTION,
        ),
        Case(
            "torch_radam",
            radam_hp,
            radam_stepper,
            RAdamReplay,
            f"{tv}: torch.optim.RAdam({t_args}, foreach=False)",
            RADAM_CONVENTION,
        ),
        Case(
            "torch_radam_decoupled",
            dataclasses.replace(radam_hp, weight_decay=0.1, extra={"decoupled": True}),
            radam_stepper,
            RAdamReplay,
            f"{tv}: torch.optim.RAdam({t_args}, weight_decay=0.1, "
            "decoupled_weight_decay=True, foreach=False)",
            RADAM_CONVENTION,
        ),
        Case(
            "adabound",
            adabound_hp,
            adabound_stepper,
            AdaBoundReplay,
            f"{abv}: adabound.AdaBound({ab_args})" + ab_note,
            ADABOUND_CONVENTION,
        ),
        Case(
            "amsbound",
            dataclasses.replace(
                adabound_hp, amsgrad=True, extra={**adabound_hp.extra, "amsbound": True}
            ),
            adabound_stepper,
            AdaBoundReplay,
            f"{abv}: adabound.AdaBound({ab_args}, amsbound=True)" + ab_note,
            ADABOUND_CONVENTION,
        ),
        Case(
            "adabound_schedule_wd",
            dataclasses.replace(adabound_hp, weight_decay=0.1, lr_decay=0.99),
            adabound_stepper,
            AdaBoundReplay,
            f"{abv}: adabound.AdaBound({ab_args}, weight_decay=0.1) + LambdaLR(0.99**k)" + ab_note,
            ADABOUND_CONVENTION,
        ),
        Case(
            "swats",
            swats_hp,
            functools.partial(
                SwatsStepper,
                build=build_swats,
                slot_keys={
                    "mu": "exp_avg",
                    "nu": "exp_avg_sq",
                    "lambda": "exp_avg2",
                    "momentum": "momentum_buffer",
                },
            ),
            SwatsReplay,
            f"{tov}: torch_optimizer.SWATS(lr=0.01, betas=(0.8, 0.9), eps=0.001, "
            "weight_decay=0, amsgrad=False, nesterov=False)" + swats_problem,
            SWATS_CONVENTION,
            make_swats_problem,
        ),
    ]


def relative_errors(
    got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Returns ``max|got - want| / max|want|`` for every key (absolute if ``want`` is 0)."""
    errors = {}
    for key in want:
        diff = float(np.max(np.abs(got[key] - want[key])))
        scale = float(np.max(np.abs(want[key])))
        errors[key] = diff / scale if scale > 0 else diff
    return errors


def generate(case: Case, output_dir: Path) -> None:
    """Runs one case, cross-checks it against the numpy replay and writes its file.

    Args:
        case: The case to run.
        output_dir: Directory receiving ``<case.name>.npz``.

    Raises:
        RuntimeError: If the library and the replay disagree beyond ``TOLERANCE`` or
            record different keys, or if a SWATS run never switches.
    """
    problem = case.make_problem()
    stepper = case.make_stepper(problem, case.requested)
    hyper = stepper.hyper
    trajectory = run_closed_loop(problem, stepper)
    replay = case.make_replay(problem, hyper)
    expected = run_closed_loop(problem, replay)
    if trajectory.keys() != expected.keys():
        raise RuntimeError(f"{case.name}: keys differ: {sorted(trajectory)} != {sorted(expected)}")

    errors = relative_errors(trajectory, expected)
    worst_key = max(errors, key=errors.__getitem__)
    by_kind: dict[str, float] = {}
    for key, err in errors.items():
        kind = key.split("__")[0]
        by_kind[kind] = max(by_kind.get(kind, 0.0), err)
    summary = ", ".join(f"{kind} {err:.1e}" for kind, err in by_kind.items())
    print(f"{case.name}: max rel err vs replay {errors[worst_key]:.2e} ({worst_key}); {summary}")
    for line in replay.notes():
        print(f"  {line}")
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
    }
    for name, value in hyper.extra.items():
        dtype = np.bool_ if isinstance(value, bool) else np.float64
        arrays[f"hp_{name}"] = np.array(value, dtype=dtype)
    if "phase_per_step" in trajectory:
        switched = np.flatnonzero(trajectory["phase_per_step"])
        if switched.size == 0:
            raise RuntimeError(f"{case.name}: no switch to SGD within {NUM_STEPS} steps")
        # phase_per_step[k] is read after update k+1, so the first 1 marks the switch step.
        arrays["hp_switch_step"] = np.array(switched[0] + 1, dtype=np.int64)
    arrays["leaves"] = np.array(list(problem))
    arrays["steps"] = np.array(CHECKPOINTS, dtype=np.int64)
    for name, leaf in problem.items():
        for field in ("p0", "h", "c", "noise"):
            arrays[f"{field}__{name}"] = leaf[field]
    arrays.update(trajectory)
    np.savez_compressed(output_dir / f"{case.name}.npz", **arrays)


def main() -> None:
    """Generates every golden file into ``tests/reference/golden/``."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    cases = build_cases()
    for case in cases:
        generate(case, OUTPUT_DIR)
    print(f"wrote {len(cases)} files to {OUTPUT_DIR}")


if __name__ == "__main__":
    main()
