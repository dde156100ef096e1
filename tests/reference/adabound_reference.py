"""Float64 NumPy reference of AdaBound and AMSBound, written from the equations.

Luo, Xiong, Liu & Sun, "Adaptive Gradient Methods with Dynamic Bound of Learning Rate" (ICLR 2019),
Algorithms 2 and 3, in the form the authors' package ``adabound`` 0.0.5 computes them:

* coupled L2 weight decay, ``g <- g + wd * theta``, before the moments;
* raw moments ``m``, ``v`` (and for AMSBound ``v_max = max(v_max, v)`` over the raw ``v``);
* the step size ``eta = lr_t * sqrt(1 - prod b2) / (1 - prod b1) / (sqrt(v) + eps)``: the
  bias corrections and eps sit in the step size (the paper has neither, and divides by sqrt(t));
* the bounds ``final_t * (1 - 1/(gamma t + 1))`` and ``final_t * (1 + 1/(gamma t))`` with
  ``final_t = final_lr * lr_t / lr_0``, so a learning-rate schedule moves the bounds too;
* ``theta <- theta - clip(eta, lower, upper) * m`` with the raw ``m``.

``b1`` and ``b2`` may be callables of the 0-based step (schedules); the corrections are then the
exact ``1 - prod_i beta_i``. Three switches give deliberately *wrong* variants, used as negative
controls by the tests: ``first_moment="corrected"`` clips the step size without ``1/(1-b1^t)`` and
multiplies the bias-corrected ``m_hat`` instead (Adam's layout); ``eps_mode="paper"`` puts eps
after the bias correction, ``sqrt(v_hat) + eps``; ``follow_schedule=False`` keeps the bounds at
``final_lr`` whatever the learning rate does. The reference shares no code with adamjax.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Array = np.ndarray
Schedule = Callable[[int], float]


def _at(value: float | Schedule, k: int) -> float:
    return float(value(k)) if callable(value) else float(value)


@dataclass
class AdaBoundReference:
    """A float64 AdaBound/AMSBound optimizer over a dict of NumPy arrays.

    ``lr(k)`` is evaluated at the 0-based step ``k``, like an optax schedule (and like the
    learning rate a torch ``LambdaLR`` sets before step ``k + 1``). After each ``step`` the
    attributes ``lower`` and ``upper`` hold that step's bounds, and ``clipped`` maps each leaf to
    ``(entries raised to the lower bound, entries lowered to the upper bound, entries)``.
    """

    lr: Schedule
    final_lr: float = 0.1
    gamma: float = 1e-3
    b1: float | Schedule = 0.9
    b2: float | Schedule = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsbound: bool = False
    first_moment: str = "raw"  # "raw" (the package) or "corrected" (wrong on purpose)
    eps_mode: str = "hat"  # "hat" (the package) or "paper" (wrong on purpose)
    follow_schedule: bool = True  # False is wrong on purpose
    t: int = 0
    b1_product: float = 1.0
    b2_product: float = 1.0
    m: dict[str, Array] = field(default_factory=dict)
    v: dict[str, Array] = field(default_factory=dict)
    v_max: dict[str, Array] = field(default_factory=dict)
    lower: float = 0.0
    upper: float = 0.0
    clipped: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        """Applies one update and returns the new params (the inputs are not modified)."""
        k = self.t
        self.t += 1
        t = self.t
        b1, b2 = _at(self.b1, k), _at(self.b2, k)
        self.b1_product *= b1
        self.b2_product *= b2
        bc1, bc2 = 1.0 - self.b1_product, 1.0 - self.b2_product
        lr = self.lr(k)

        # Dynamic bounds (the package's "lr_scheduler cannot affect final_lr" workaround).
        final = self.final_lr * lr / self.lr(0) if self.follow_schedule else self.final_lr
        self.lower = final * (1.0 - 1.0 / (self.gamma * t + 1.0))
        self.upper = final * (1.0 + 1.0 / (self.gamma * t)) if self.gamma > 0 else np.inf

        new = {}
        for name, theta in params.items():
            theta = np.asarray(theta, dtype=np.float64)
            g = np.asarray(grads[name], dtype=np.float64)
            if self.weight_decay:
                g = g + self.weight_decay * theta
            m = b1 * self.m.get(name, np.zeros_like(g)) + (1.0 - b1) * g
            v = b2 * self.v.get(name, np.zeros_like(g)) + (1.0 - b2) * g * g
            self.m[name], self.v[name] = m, v
            if self.amsbound:
                v = np.maximum(self.v_max.get(name, np.zeros_like(g)), v)
                self.v_max[name] = v

            if self.eps_mode == "hat":
                denom = np.sqrt(v) + self.eps
            else:
                denom = (np.sqrt(v / bc2) + self.eps) * np.sqrt(bc2)
            if self.first_moment == "raw":
                eta = lr * np.sqrt(bc2) / bc1 / denom
                direction = m
            else:
                eta = lr * np.sqrt(bc2) / denom
                direction = m / bc1

            self.clipped[name] = (
                int(np.count_nonzero(eta < self.lower)),
                int(np.count_nonzero(eta > self.upper)),
                eta.size,
            )
            new[name] = theta - np.clip(eta, self.lower, self.upper) * direction
        return new
