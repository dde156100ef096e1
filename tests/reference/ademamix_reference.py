"""Float64 NumPy references of AdEMAMix and Simplified AdEMAMix, written from the papers.

Like ``numpy_reference.py``, this shares no code with adamjax and follows the papers' notation:

* AdEMAMix: Pagliardini, Ablin & Grangier (2024), Algorithm 1: a fast EMA ``m1`` (b1,
  bias-corrected), a slow EMA ``m2`` (b3, not corrected), the second moment ``nu`` (b2,
  corrected), and ``theta -= lr * ((m1_hat + alpha * m2) / (sqrt(nu_hat) + eps) + wd * theta)``.
  The schedulers f_alpha and f_beta3 are the paper's closed forms, functions of the 1-based t.
* Simplified AdEMAMix: Morwani et al. (2025): ``m = b1 * m + g`` (no 1 - b1, no correction),
  ``theta -= lr * ((alpha * g + m) / (sqrt(nu_hat) + eps) + wd * theta)``; the authors' optional
  ``bias_correction1`` divides the step by ``n = b1 * n + 1``.

Hyperparameters that may vary (``lr``, ``b1``, ``b3``, ``alpha``, ``weight_decay``) are numbers
or functions of the 0-based step ``k``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Array = np.ndarray
Schedule = Callable[[int], float]


def value(x: float | Schedule, k: int) -> float:
    """A constant, or a schedule's value at the 0-based step ``k``."""
    return float(x(k)) if callable(x) else float(x)


def f_alpha(t: int, alpha: float, warmup: int, start: float = 0.0) -> float:
    """The paper's alpha scheduler: ``min(t * alpha / T, alpha)`` (from ``start``)."""
    a = min(t / warmup, 1.0)
    return (1 - a) * start + a * alpha


def f_beta3(t: int, b3: float, start: float, warmup: int, log_eps: float = 0.0) -> float:
    """The paper's beta3 scheduler, ``min(exp(ln(b_s) ln(b3) / ((1 - t/T) ln(b3) + (t/T) ln(b_s))),
    b3)``; ``log_eps`` shifts both betas inside the logarithms (the authors' PyTorch code)."""
    if t >= warmup:
        return b3
    ls, l3 = math.log(start + log_eps), math.log(b3 + log_eps)
    a = t / warmup
    return min(math.exp(ls * l3 / ((1 - a) * l3 + a * ls)), b3)


class AdemamixReference:
    """AdEMAMix, Algorithm 1 of the paper; ``b3`` and ``alpha`` may be schedules of ``k``."""

    def __init__(
        self,
        lr: float | Schedule,
        b1: float,
        b2: float,
        b3: float | Schedule,
        alpha: float | Schedule,
        eps: float,
        eps_root: float = 0.0,
        weight_decay: float | Schedule = 0.0,
    ) -> None:
        self.lr, self.b1, self.b2, self.b3, self.alpha = lr, b1, b2, b3, alpha
        self.eps, self.eps_root, self.weight_decay = eps, eps_root, weight_decay
        self.k = 0
        self.m1: dict[str, Array] = {}
        self.m2: dict[str, Array] = {}
        self.nu: dict[str, Array] = {}

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        k, t = self.k, self.k + 1
        b3, alpha = value(self.b3, k), value(self.alpha, k)
        lr, wd = value(self.lr, k), value(self.weight_decay, k)
        new = {}
        for name, theta in params.items():
            theta, g = np.asarray(theta, np.float64), np.asarray(grads[name], np.float64)
            m1 = self.b1 * self.m1.get(name, 0.0) + (1 - self.b1) * g
            m2 = b3 * self.m2.get(name, 0.0) + (1 - b3) * g
            nu = self.b2 * self.nu.get(name, 0.0) + (1 - self.b2) * g * g
            m1_hat = m1 / (1 - self.b1**t)
            nu_hat = nu / (1 - self.b2**t)
            direction = (m1_hat + alpha * m2) / (np.sqrt(nu_hat + self.eps_root) + self.eps)
            new[name] = theta - lr * (direction + wd * theta)
            self.m1[name], self.m2[name], self.nu[name] = m1, m2, nu
        self.k += 1
        return new


class SimplifiedAdemamixReference:
    """Simplified AdEMAMix (Morwani et al. 2025); ``b1`` and ``alpha`` may be schedules of ``k``."""

    def __init__(
        self,
        lr: float | Schedule,
        b1: float | Schedule,
        b2: float,
        alpha: float | Schedule,
        eps: float,
        eps_root: float = 0.0,
        weight_decay: float | Schedule = 0.0,
        bias_correction_mu: bool = False,
    ) -> None:
        self.lr, self.b1, self.b2, self.alpha = lr, b1, b2, alpha
        self.eps, self.eps_root, self.weight_decay = eps, eps_root, weight_decay
        self.bias_correction_mu = bias_correction_mu
        self.n = 0.0  # the momentum's accumulated weight, sum_k prod_{k<i<=t} b1_i
        self.k = 0
        self.m: dict[str, Array] = {}
        self.nu: dict[str, Array] = {}

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        k, t = self.k, self.k + 1
        b1, alpha = value(self.b1, k), value(self.alpha, k)
        lr, wd = value(self.lr, k), value(self.weight_decay, k)
        self.n = b1 * self.n + 1
        new = {}
        for name, theta in params.items():
            theta, g = np.asarray(theta, np.float64), np.asarray(grads[name], np.float64)
            m = b1 * self.m.get(name, 0.0) + g
            nu = self.b2 * self.nu.get(name, 0.0) + (1 - self.b2) * g * g
            nu_hat = nu / (1 - self.b2**t)
            direction = (alpha * g + m) / (np.sqrt(nu_hat + self.eps_root) + self.eps)
            if self.bias_correction_mu:
                direction = direction / self.n
            new[name] = theta - lr * (direction + wd * theta)
            self.m[name], self.nu[name] = m, nu
        self.k += 1
        return new
