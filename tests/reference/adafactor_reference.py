"""Float64 NumPy reference of Adafactor, written from the paper's algorithms.

Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost" (ICML 2018):

* Algorithm 4 (factored second moment of a matrix), generalised to tensors by treating every axis
  but two as a batch axis. The two axes are the tensor's two largest (ties go to the later axis),
  the rule of Mesh TensorFlow and optax. The row and column statistics are the paper's *sums*
  ``R_t`` and ``C_t``, kept with singleton axes so they broadcast against the gradient.
* Algorithm 5 (unfactored second moment) for every other leaf.
* The decay ``beta2_t = 1 - t^(-c)``, the update clipping of §6 and the relative step size
  ``rho_t = min(cap, 1/sqrt(t))`` scaled by ``max(eps2, RMS(X_{t-1}))`` (Algorithm 4, §8).
* Extensions the paper does not cover, in the form of Mesh TensorFlow's Adafactor (which optax
  follows): momentum averages the scaled step ``alpha_t * U_hat_t`` without bias correction, and
  weight decay subtracts ``lambda * X_{t-1}`` per step, not multiplied by the step size.

It shares no code with adamjax.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Array = np.ndarray


def factored_axes(shape: tuple[int, ...], min_dim: int) -> tuple[int, int] | None:
    """Returns ``(b, a)``: the largest and second-largest axes, or None when not factored."""
    if len(shape) < 2:
        return None
    ranked = sorted(range(len(shape)), key=lambda i: (shape[i], i))
    a, b = ranked[-2], ranked[-1]
    return (b, a) if shape[a] >= min_dim else None


def rms(x: Array) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


@dataclass
class AdafactorReference:
    """Adafactor over a dict of float64 arrays.

    ``lr(k)`` (the 0-based step index ``k``, like optax schedules) replaces ``rho_t`` when given.
    """

    lr: Callable[[int], float] | None = None
    relative_step_cap: float = 1e-2
    decay_rate: float = 0.8
    eps1: float = 1e-30
    eps2: float = 1e-3
    clipping_threshold: float | None = 1.0
    multiply_by_parameter_scale: bool = True
    momentum: float | None = None
    weight_decay: float = 0.0
    decay_mask: dict[str, bool] | None = None
    factored: bool = True
    min_dim_size_to_factor: int = 128
    t: int = 0
    R: dict[str, Array] = field(default_factory=dict)  # row sums, singleton column axis
    C: dict[str, Array] = field(default_factory=dict)  # column sums, singleton row axis
    V: dict[str, Array] = field(default_factory=dict)  # unfactored second moment
    m: dict[str, Array] = field(default_factory=dict)  # first moment of the scaled step
    clip: dict[str, float] = field(default_factory=dict)  # max(1, RMS(U_t)/d)

    def axes(self, shape: tuple[int, ...]) -> tuple[int, int] | None:
        return factored_axes(shape, self.min_dim_size_to_factor) if self.factored else None

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        k = self.t
        self.t += 1
        t = self.t
        beta2 = 1.0 - t ** (-self.decay_rate)
        rho = min(self.relative_step_cap, 1.0 / np.sqrt(t)) if self.lr is None else self.lr(k)
        new = {}
        for name, x in params.items():
            x = np.asarray(x, np.float64)
            g = np.asarray(grads[name], np.float64)
            sq = g * g + self.eps1
            axes = self.axes(x.shape)
            if axes is None:
                self.V[name] = beta2 * self.V.get(name, 0.0) + (1 - beta2) * sq
                v_hat = self.V[name]
            else:
                b, a = axes  # R sums over the columns b, C over the rows a
                self.R[name] = beta2 * self.R.get(name, 0.0) + (1 - beta2) * sq.sum(
                    axis=b, keepdims=True
                )
                self.C[name] = beta2 * self.C.get(name, 0.0) + (1 - beta2) * sq.sum(
                    axis=a, keepdims=True
                )
                v_hat = self.R[name] * self.C[name] / self.R[name].sum(axis=a, keepdims=True)
            u = g / np.sqrt(v_hat)
            if self.clipping_threshold is not None:
                self.clip[name] = max(1.0, rms(u) / self.clipping_threshold)
                u = u / self.clip[name]
            alpha = rho * (max(self.eps2, rms(x)) if self.multiply_by_parameter_scale else 1.0)
            step = alpha * u
            if self.momentum is not None:
                b1 = self.momentum
                self.m[name] = b1 * self.m.get(name, 0.0) + (1 - b1) * step
                step = self.m[name]
            if self.decay_mask is None or self.decay_mask[name]:
                step = step + self.weight_decay * x
            new[name] = x - step
        return new

    def row_means(self, name: str, shape: tuple[int, ...]) -> Array:
        """``R_t`` divided by the column count, without its singleton axis (optax's ``v_row``)."""
        b, _ = self.axes(shape)
        return np.squeeze(self.R[name], axis=b) / shape[b]

    def col_means(self, name: str, shape: tuple[int, ...]) -> Array:
        """``C_t`` divided by the row count, without its singleton axis (optax's ``v_col``)."""
        _, a = self.axes(shape)
        return np.squeeze(self.C[name], axis=a) / shape[a]
