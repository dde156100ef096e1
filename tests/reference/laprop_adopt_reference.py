"""Float64 NumPy references of LaProp and ADOPT, written from the papers' equations.

Like ``numpy_reference.py`` this shares no code with adamjax and follows each paper's algorithm
step by step:

* LaProp: Ziyin, Wang & Ueda (2020), Algorithm 1: ``v`` as in Adam, the gradient divided by
  ``sqrt(v_hat) + eps`` (or the eps-hat form), the momentum taken of that quotient and
  bias-corrected by ``1 - b1^t``. Decoupled weight decay as in AdamW, from the params before the
  step, multiplied by the learning rate (or, with ``decay_scaling="schedule"``, not). The
  authors' code adds ``centered`` (``v - a^2``, ``a`` the EMA of ``g`` with ``b2``, after 10
  steps) and ``amsgrad`` (the running maximum of that raw moment, started with the centering).
* ADOPT: Taniguchi et al. (2024), Algorithm 2 (with clipping): the first gradient only sets
  ``v_0 = g_0^2``; afterwards ``m_t = b1 m_{t-1} + (1 - b1) clip(g_t / max(sqrt(v_{t-1}), eps),
  c_t)``, ``theta_t = theta_{t-1} - lr m_t`` and ``v_t = b2 v_{t-1} + (1 - b2) g_t^2``. The
  paper's step ``t`` counts the updates after the initialization; ``clip_offset=1`` calls the
  clip function with ``t + 1`` (pytorch_optimizer's count).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Array = np.ndarray
Schedule = Callable[[int], float]


@dataclass
class LapropReference:
    """LaProp over a dict of float64 arrays; ``lr(k)`` is read at the 0-based step ``k``."""

    lr: Schedule
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-15
    eps_root: float = 0.0
    eps_mode: str = "paper"  # or "hat": eps / sqrt(1 - b2^t), eps_root / (1 - b2^t)
    weight_decay: float = 0.0
    decay_scaling: str = "learning_rate"  # or "schedule" (the decay not multiplied by lr)
    centered: bool = False
    centered_after: int = 10
    amsgrad: bool = False
    t: int = 0
    m: dict[str, Array] = field(default_factory=dict)
    v: dict[str, Array] = field(default_factory=dict)
    v_max: dict[str, Array] = field(default_factory=dict)
    mean: dict[str, Array] = field(default_factory=dict)

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        k = self.t
        self.t += 1
        lr = self.lr(k)
        bc1, bc2 = 1.0 - self.b1**self.t, 1.0 - self.b2**self.t
        eps, eps_root = self.eps, self.eps_root
        if self.eps_mode == "hat":
            eps, eps_root = eps / np.sqrt(bc2), eps_root / bc2
        new = {}
        for name, theta in params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            v = self.b2 * self.v.get(name, np.zeros_like(g)) + (1.0 - self.b2) * g * g
            second = v
            started = not self.centered or self.t > self.centered_after
            if self.centered:
                a = self.b2 * self.mean.get(name, np.zeros_like(g)) + (1.0 - self.b2) * g
                self.mean[name] = a
                if started:
                    second = np.maximum(v - a * a, 0.0)
            if self.amsgrad:
                v_max = self.v_max.get(name, np.zeros_like(g))
                if started:
                    v_max = second = np.maximum(v_max, second)
                self.v_max[name] = v_max
            normalized = g / (np.sqrt(second / bc2 + eps_root) + eps)
            m = self.b1 * self.m.get(name, np.zeros_like(g)) + (1.0 - self.b1) * normalized
            self.m[name], self.v[name] = m, v
            decay = self.weight_decay * theta
            if self.decay_scaling == "learning_rate":
                new[name] = theta - lr * (m / bc1 + decay)
            else:
                new[name] = theta - (lr * m / bc1 + decay)
        return new


def quarter_root(x: float) -> float:
    """The paper's clip value ``c_t = t^(1/4)``."""
    return x**0.25


@dataclass
class AdoptReference:
    """ADOPT over a dict of float64 arrays; ``lr(k)`` is read at the 0-based call ``k``.

    ``eps_mode="max"`` divides by ``max(sqrt(v), eps)`` (the paper), ``"denominator"`` by
    ``sqrt(v) + eps``. ``weight_decay`` is L2 (added to the gradient) unless ``decoupled``, then
    ``theta -= lr * wd * theta`` with each real step (none at the initialization).
    """

    lr: Schedule
    b1: float = 0.9
    b2: float = 0.9999
    eps: float = 1e-6
    clip: Callable[[float], float] | None = quarter_root
    clip_offset: int = 0
    eps_mode: str = "max"
    nesterov: bool = False
    weight_decay: float = 0.0
    decoupled: bool = False
    calls: int = 0
    m: dict[str, Array] = field(default_factory=dict)
    v: dict[str, Array] = field(default_factory=dict)

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        k = self.calls
        self.calls += 1
        new = {}
        for name, theta in params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            if self.weight_decay and not self.decoupled:
                g = g + self.weight_decay * theta
            if k == 0:
                # Initialization: v_0 = g_0^2, no step.
                self.v[name], self.m[name] = g * g, np.zeros_like(g)
                new[name] = theta
                continue
            t = k  # the paper's step: updates after the initialization
            v_prev = self.v[name]
            if self.eps_mode == "max":
                n = g / np.maximum(np.sqrt(v_prev), self.eps)
            else:
                n = g / (np.sqrt(v_prev) + self.eps)
            if self.clip is not None:
                c = self.clip(float(t + self.clip_offset))
                n = np.clip(n, -c, c)
            m = self.b1 * self.m[name] + (1.0 - self.b1) * n
            direction = self.b1 * m + (1.0 - self.b1) * n if self.nesterov else m
            self.m[name] = m
            self.v[name] = self.b2 * v_prev + (1.0 - self.b2) * g * g
            if self.decoupled:
                direction = direction + self.weight_decay * theta
            new[name] = theta - self.lr(k) * direction
        return new
