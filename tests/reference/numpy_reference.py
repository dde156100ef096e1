"""Float64 NumPy references of the Adam family, written from the papers' equations.

This is the one place the tests keep their own statement of the maths. It deliberately shares no
code with adamjax and follows each paper's notation step by step, so a test comparing the two
checks adamjax against the published algorithm rather than against itself.

* Adam: Kingma & Ba (2015), Algorithm 1 (paper eps) and the eps-hat form at the end of §2.
* AMSGrad: Reddi et al. (2018), Algorithm 2, with bias correction as torch.optim and Keras apply
  it (max over the raw v, corrected afterwards), or as optax applies it (max over the corrected v).
* Nesterov Adam: Dozat (2016), Algorithm 2, in optax's form (without the extra b2 factor).
* AdamW: Loshchilov & Hutter (2019), Algorithm 2, either with the decay multiplied by the learning
  rate (torch.optim.AdamW, optax.adamw) or by the schedule multiplier only (the paper).
* Time-varying betas: ``b1``/``b2`` may be functions of the 0-based step; the bias corrections are
  then ``1 - prod(beta_i)``, the products kept as plain float64 running products.
* NAdam: Dozat (2016) with the momentum schedule mu_t = b1 (1 - 0.96^(t psi) / 2) as
  torch.optim.NAdam documents it (the moving average keeps the constant b1).
* Adamax: Kingma & Ba (2015), §7.1 (Algorithm 2), with eps in the denominator or inside the max.
* RAdam: Liu et al. (2020), Algorithm 2, with the threshold and eps placement as options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Array = np.ndarray
Schedule = Callable[[int], float]


def value(beta: float | Schedule, k: int) -> float:
    """A constant beta, or a schedule's value at the 0-based step ``k``."""
    return float(beta(k)) if callable(beta) else float(beta)


class Product:
    """The running product of a (possibly time-varying) beta: ``prod_{i<=t} beta_i``.

    A constant beta uses the power ``beta**t``, as the papers write it.
    """

    def __init__(self, beta: float | Schedule) -> None:
        self.beta = beta
        self.product = 1.0
        self.t = 0

    def advance(self, k: int) -> float:
        """Multiplies in the beta of 0-based step ``k`` and returns ``1 - product``."""
        self.t += 1
        self.product = self._times(k, self.t)
        return 1.0 - self.product

    def peek(self, k: int) -> float:
        """Returns ``1 - product * beta_k`` without advancing (Nesterov's look-ahead)."""
        return 1.0 - self._times(k, self.t + 1)

    def _times(self, k: int, t: int) -> float:
        if callable(self.beta):
            return self.product * value(self.beta, k)
        return float(self.beta) ** t


def decay_then_step(
    theta: Array, direction: Array, lr: float, weight_decay: float, decoupled: bool
) -> Array:
    """torch's order: decoupled decay ``theta * (1 - lr wd)`` first, then the step."""
    if decoupled:
        theta = theta * (1.0 - lr * weight_decay)
    return theta - lr * direction


def adam_direction(m_hat: Array, v_hat: Array, eps: float, eps_root: float = 0.0) -> Array:
    """Adam's direction with the paper's eps, from the bias-corrected moments (Algorithm 1):
    ``m_hat / (sqrt(v_hat + eps_root) + eps)``."""
    return m_hat / (np.sqrt(v_hat + eps_root) + eps)


@dataclass
class AdamReference:
    """A float64 Adam-family optimizer over a dict of NumPy arrays.

    ``lr(k)`` and ``multiplier(k)`` are evaluated at the 0-based step index ``k``, like optax
    schedules. With ``decay_scaling="learning_rate"`` the update is
    ``theta <- theta * (1 - lr(k) * weight_decay) - lr(k) * direction``; with ``"schedule"``,
    ``theta <- theta - multiplier(k) * (lr(k) * direction + weight_decay * theta)``.
    """

    lr: Schedule
    b1: float | Schedule = 0.9
    b2: float | Schedule = 0.999
    eps: float = 1e-8
    eps_root: float = 0.0
    eps_mode: str = "paper"  # "paper" or "hat"
    amsgrad: bool = False
    max_of: str = "raw"  # "raw" or "corrected"
    nesterov: bool = False
    weight_decay: float = 0.0
    decay_scaling: str = "learning_rate"  # or "schedule"
    multiplier: Schedule = lambda k: 1.0
    t: int = 0
    m: dict[str, Array] = field(default_factory=dict)
    v: dict[str, Array] = field(default_factory=dict)
    v_max: dict[str, Array] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._p1, self._p2 = Product(self.b1), Product(self.b2)

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        """Applies one update and returns the new params (the inputs are not modified)."""
        k = self.t  # 0-based index of this step, what schedules see
        self.t += 1
        b1, b2 = value(self.b1, k), value(self.b2, k)
        bc1, bc2 = self._p1.advance(k), self._p2.advance(k)
        bc1_next, b1_next = self._p1.peek(k + 1), value(self.b1, k + 1)
        new = {}
        for name, theta in params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            m = self.m.get(name, np.zeros_like(g))
            v = self.v.get(name, np.zeros_like(g))
            m = b1 * m + (1.0 - b1) * g
            v = b2 * v + (1.0 - b2) * g * g
            self.m[name], self.v[name] = m, v

            # The first-moment estimate: plain bias correction, or Dozat's look-ahead.
            m_hat = m / bc1
            if self.nesterov:
                m_hat = b1_next * m / bc1_next + (1.0 - b1) * g / bc1

            # The second moment the denominator uses, raw (not bias-corrected) for now.
            if self.amsgrad and self.max_of == "raw":
                v_used = np.maximum(self.v_max.get(name, np.zeros_like(g)), v)
                self.v_max[name] = v_used
                v_hat = v_used / bc2
            elif self.amsgrad:
                v_hat = np.maximum(self.v_max.get(name, np.zeros_like(g)), v / bc2)
                self.v_max[name] = v_hat
            else:
                v_hat = v / bc2

            if self.eps_mode == "paper":
                direction = adam_direction(m_hat, v_hat, self.eps, self.eps_root)
            else:
                # Adam §2: alpha_t = alpha sqrt(1-b2^t) / (1-b1^t), step alpha_t m / (sqrt(v)+eps).
                # (eps_root, when used, goes under the root with the raw v.)
                # m_hat already carries 1 / (1 - b1^t); v_raw is the uncorrected (max-)moment.
                v_raw = v_hat * bc2
                direction = np.sqrt(bc2) * m_hat / (np.sqrt(v_raw + self.eps_root) + self.eps)

            if self.decay_scaling == "learning_rate":
                # torch.optim.AdamW's documented order: decay by lr * wd first, then the Adam step.
                decayed = theta * (1.0 - self.lr(k) * self.weight_decay)
                new[name] = decayed - self.lr(k) * direction
            else:
                new[name] = theta - self.multiplier(k) * (
                    self.lr(k) * direction + self.weight_decay * theta
                )
        return new


@dataclass
class NadamReference:
    """torch.optim.NAdam's documented algorithm (Dozat 2016 with a momentum schedule)."""

    lr: Schedule
    b1: float | Schedule = 0.9
    b2: float | Schedule = 0.999
    eps: float = 1e-8
    momentum_decay: float = 4e-3
    weight_decay: float = 0.0
    decoupled: bool = False
    t: int = 0
    mu_product: float = 1.0
    m: dict[str, Array] = field(default_factory=dict)
    v: dict[str, Array] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._p2 = Product(self.b2)

    def momentum(self, t: int) -> float:
        """mu_t for the 1-based step t."""
        return value(self.b1, t - 1) * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        k = self.t
        self.t += 1
        t = self.t
        lr, b1, b2 = self.lr(k), value(self.b1, k), value(self.b2, k)
        bc2 = self._p2.advance(k)
        mu_t, mu_next = self.momentum(t), self.momentum(t + 1)
        self.mu_product *= mu_t
        product_next = self.mu_product * mu_next
        new = {}
        for name, theta in params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            if self.weight_decay and not self.decoupled:
                g = g + self.weight_decay * theta
            m = b1 * self.m.get(name, np.zeros_like(g)) + (1.0 - b1) * g
            v = b2 * self.v.get(name, np.zeros_like(g)) + (1.0 - b2) * g * g
            self.m[name], self.v[name] = m, v
            denom = np.sqrt(v / bc2) + self.eps
            direction = (1.0 - mu_t) / (1.0 - self.mu_product) * g / denom + mu_next / (
                1.0 - product_next
            ) * m / denom
            new[name] = decay_then_step(
                theta, direction, lr, self.weight_decay, self.decoupled and self.weight_decay > 0
            )
        return new


@dataclass
class AdamaxReference:
    """Adamax, Kingma & Ba (2015) §7.1; ``eps_in_max`` puts eps inside the max (torch)."""

    lr: Schedule
    b1: float | Schedule = 0.9
    b2: float | Schedule = 0.999
    eps: float = 1e-8
    eps_in_max: bool = False
    weight_decay: float = 0.0
    decoupled: bool = False
    t: int = 0
    m: dict[str, Array] = field(default_factory=dict)
    u: dict[str, Array] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._p1 = Product(self.b1)

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        k = self.t
        self.t += 1
        lr, b1, b2 = self.lr(k), value(self.b1, k), value(self.b2, k)
        bc1 = self._p1.advance(k)
        new = {}
        for name, theta in params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            if self.weight_decay and not self.decoupled:
                g = g + self.weight_decay * theta
            m = b1 * self.m.get(name, np.zeros_like(g)) + (1.0 - b1) * g
            if self.eps_in_max:
                u = np.maximum(b2 * self.u.get(name, np.zeros_like(g)), np.abs(g) + self.eps)
                direction = m / bc1 / u
            else:
                u = np.maximum(b2 * self.u.get(name, np.zeros_like(g)), np.abs(g))
                direction = m / bc1 / (u + self.eps)
            self.m[name], self.u[name] = m, u
            new[name] = decay_then_step(
                theta, direction, lr, self.weight_decay, self.decoupled and self.weight_decay > 0
            )
        return new


@dataclass
class RadamReference:
    """RAdam, Liu et al. (2020) Algorithm 2; ``eps_hat`` selects the authors'/torch eps form."""

    lr: Schedule
    b1: float | Schedule = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    threshold: float = 5.0
    eps_hat: bool = True
    weight_decay: float = 0.0
    decoupled: bool = False
    t: int = 0
    rectified_steps: list[int] = field(default_factory=list)
    m: dict[str, Array] = field(default_factory=dict)
    v: dict[str, Array] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._p1 = Product(self.b1)

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        k = self.t
        self.t += 1
        t = self.t
        lr, b1, b2 = self.lr(k), value(self.b1, k), self.b2
        bc1, bc2 = self._p1.advance(k), 1.0 - b2**t
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * b2**t / bc2
        rectified = rho_t > self.threshold
        if rectified:
            self.rectified_steps.append(t)
            numerator = (rho_t - 4.0) * (rho_t - 2.0) * rho_inf
            r_t = np.sqrt(numerator / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
        new = {}
        for name, theta in params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            if self.weight_decay and not self.decoupled:
                g = g + self.weight_decay * theta
            m = b1 * self.m.get(name, np.zeros_like(g)) + (1.0 - b1) * g
            v = b2 * self.v.get(name, np.zeros_like(g)) + (1.0 - b2) * g * g
            self.m[name], self.v[name] = m, v
            m_hat = m / bc1
            if not rectified:
                direction = m_hat
            elif self.eps_hat:
                direction = r_t * m_hat * np.sqrt(bc2) / (np.sqrt(v) + self.eps)
            else:
                direction = r_t * m_hat / (np.sqrt(v / bc2) + self.eps)
            new[name] = decay_then_step(
                theta, direction, lr, self.weight_decay, self.decoupled and self.weight_decay > 0
            )
        return new
