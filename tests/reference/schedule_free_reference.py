"""Float64 NumPy reference of Schedule-Free learning, written from the paper's equations.

Defazio et al., "The Road Less Scheduled" (NeurIPS 2024), Algorithm 1 (Schedule-Free AdamW)
and the general form of §2 (any base step on z). It shares no code with adamjax and keeps all
three sequences explicitly, as the paper writes them:

    y_t       = (1 - b1) z_t + b1 x_t                   (where the gradient is taken)
    z_{t+1}   = z_t - gamma_t * d_t                      (the base step; AdamW: see below)
    x_{t+1}   = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}
    c_{t+1}   = w_{t+1} / sum_{i <= t+1} w_i,    w_t = t^r * (max_{i <= t} gamma_i)^p

AdamW's base step (Algorithm 1): v_t = b2 v_{t-1} + (1 - b2) g_t^2, the bias-corrected
v_hat_t = v_t / (1 - b2^t), d_t = g_t / (sqrt(v_hat_t) + eps) + lambda * y_t (weight decay at y,
the paper's and the package's choice). SGD's: d_t = g_t + lambda * y_t.

Warm-up: gamma_t = lr * min(1, t / W) for the 1-based step t (the authors' package). The optax
variant (``warmup="optax"``) takes the z step with lr * min(1, (t - 1) / W) while the weight reads
lr * min(1, t / W), as optax.contrib does.
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray


class ScheduleFreeReference:
    """Schedule-Free with an AdamW (``base="adamw"``) or SGD (``base="sgd"``) z step."""

    def __init__(
        self,
        lr: float,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        base: str = "adamw",
        warmup: str = "schedulefree",
    ) -> None:
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.weight_decay, self.warmup_steps = weight_decay, warmup_steps
        self.r, self.power, self.base, self.warmup = r, weight_lr_power, base, warmup
        self.t = 0
        self.lr_max = 0.0
        self.weight_sum = 0.0
        self.x: dict[str, Array] | None = None
        self.z: dict[str, Array] | None = None
        self.v: dict[str, Array] | None = None

    def gamma(self, t: int) -> float:
        """The learning rate of the 1-based step ``t`` with linear warm-up."""
        if self.warmup_steps and t < self.warmup_steps:
            return self.lr * t / self.warmup_steps
        return self.lr

    def y(self) -> dict[str, Array]:
        """The params training sees, y = (1 - b1) z + b1 x."""
        return {k: (1 - self.b1) * self.z[k] + self.b1 * self.x[k] for k in self.z}

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        """One step from the gradient taken at ``params`` (= y); returns the new y."""
        if self.x is None:
            self.x = {k: np.array(p, np.float64) for k, p in params.items()}
            self.z = {k: np.array(p, np.float64) for k, p in params.items()}
            self.v = {k: np.zeros_like(np.asarray(p, np.float64)) for k, p in params.items()}
        y = self.y()
        self.t += 1
        t = self.t
        gamma = self.gamma(t)
        step_lr = self.gamma(t - 1) if self.warmup == "optax" and self.warmup_steps else gamma
        self.lr_max = max(self.lr_max, gamma)
        weight = t**self.r * self.lr_max**self.power
        self.weight_sum += weight
        c = weight / self.weight_sum if self.weight_sum > 0 else 0.0
        for k, g in grads.items():
            g = np.asarray(g, np.float64)
            if self.base == "adamw":
                self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
                v_hat = self.v[k] / (1 - self.b2**t)
                d = g / (np.sqrt(v_hat) + self.eps)
            else:
                d = g
            d = d + self.weight_decay * y[k]
            self.z[k] = self.z[k] - step_lr * d
            self.x[k] = (1 - c) * self.x[k] + c * self.z[k]
        return self.y()
