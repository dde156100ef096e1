"""Float64 NumPy references of LAMB, AdaBelief and Yogi, written from the papers' equations.

Like ``numpy_reference.py``, this shares no code with adamjax. Each class follows its paper step
by step, with the conventions the libraries differ on as options:

* LAMB: You et al. (2020), Algorithm 2: Adam's bias-corrected direction plus the decay inside the
  per-layer trust ratio ``||theta|| / ||d||``. Options: which moments are bias-corrected, a clamp
  of the param norm and an eps on the update norm (pytorch_optimizer.Lamb), and, for the golden
  generator only, ``decay_outside`` (pytorch_optimizer's ``weight_decouple=True``: the params are
  multiplied by ``1 - lr*wd`` first and the norms read afterwards) and ``correct_m_in_step``
  (pytorch_optimizer's default: m's correction divides the step size, after the trust ratio).
* AdaBelief: Zhuang et al. (2020), Algorithm 2: ``s = b2 s + (1-b2)(g - m)^2 + eps`` (eps kept in
  ``s``), with RAdam's rectification (Liu et al. 2020) as an option in the authors' code's form.
* Yogi: Zaheer et al. (2018), Algorithm 2: ``v = v - (1-b2) sign(v - g^2) g^2``, with both moments
  started at an initial value and optional bias correction (optax, pytorch_optimizer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Array = np.ndarray


def _decayed(theta: Array, direction: Array, lr: float, wd: float, decoupled: bool) -> Array:
    """``theta - lr * direction``, after AdamW's ``theta *= 1 - lr*wd`` when ``decoupled``."""
    if decoupled:
        theta = theta * (1.0 - lr * wd)
    return theta - lr * direction


@dataclass
class LambReference:
    """LAMB, You et al. (2020) Algorithm 2 (phi = identity, or a clamp at ``max_norm``)."""

    lr: float
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-6
    weight_decay: float = 0.0
    mask: dict[str, bool] | None = None  # leaf name -> decayed (absent: decayed)
    correct_m: bool = True
    correct_v: bool = True
    max_norm: float | None = None
    trust_eps: float = 0.0
    decay_outside: bool = False
    correct_m_in_step: bool = False
    t: int = 0
    m: dict[str, Array] = field(default_factory=dict)
    v: dict[str, Array] = field(default_factory=dict)

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t
        new = {}
        for name, theta in params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            m = b1 * self.m.get(name, np.zeros_like(g)) + (1.0 - b1) * g
            v = b2 * self.v.get(name, np.zeros_like(g)) + (1.0 - b2) * g * g
            self.m[name], self.v[name] = m, v
            m_hat = m / bc1 if self.correct_m and not self.correct_m_in_step else m
            v_hat = v / bc2 if self.correct_v else v
            d = m_hat / (np.sqrt(v_hat) + self.eps)
            wd = self.weight_decay if (self.mask is None or self.mask.get(name, True)) else 0.0
            if self.decay_outside:
                theta = theta * (1.0 - self.lr * wd)
            else:
                d = d + wd * theta
            p_norm, d_norm = np.linalg.norm(theta), np.linalg.norm(d)
            if self.max_norm is not None:
                p_norm = min(p_norm, self.max_norm)
            ratio = 1.0 if p_norm == 0 or d_norm == 0 else p_norm / (d_norm + self.trust_eps)
            step = self.lr / bc1 if self.correct_m_in_step else self.lr
            new[name] = theta - step * ratio * d
        return new


@dataclass
class AdaBeliefReference:
    """AdaBelief, Zhuang et al. (2020) Algorithm 2; ``rectify`` as the authors' code does it."""

    lr: float
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-16
    eps_root: float = 1e-16
    weight_decay: float = 0.0
    decoupled: bool = True
    rectify: bool = False
    threshold: float = 5.0
    t: int = 0
    m: dict[str, Array] = field(default_factory=dict)
    v: dict[str, Array] = field(default_factory=dict)

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        rho_t = rho_inf - 2.0 * t * b2**t / bc2
        adaptive = not self.rectify or rho_t > self.threshold
        r_t = 1.0
        if self.rectify and adaptive:
            num = (rho_t - 4.0) * (rho_t - 2.0) * rho_inf
            r_t = np.sqrt(num / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
        new = {}
        for name, theta in params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            if self.weight_decay and not self.decoupled:
                g = g + self.weight_decay * theta
            m = b1 * self.m.get(name, np.zeros_like(g)) + (1.0 - b1) * g
            s = b2 * self.v.get(name, np.zeros_like(g)) + (1.0 - b2) * (g - m) ** 2 + self.eps_root
            self.m[name], self.v[name] = m, s
            if not adaptive:
                direction = m / bc1
            elif self.rectify:
                # The authors' rectified step: sqrt(1-b2^t) r_t / (1-b1^t) * m / (sqrt(s) + eps).
                direction = r_t * np.sqrt(bc2) / bc1 * m / (np.sqrt(s) + self.eps)
            else:
                direction = (m / bc1) / (np.sqrt(s / bc2) + self.eps)
            decoupled = self.decoupled and self.weight_decay > 0
            new[name] = _decayed(theta, direction, self.lr, self.weight_decay, decoupled)
        return new


@dataclass
class YogiReference:
    """Yogi, Zaheer et al. (2018) Algorithm 2, with the libraries' initial value and corrections."""

    lr: float
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-3
    initial: float = 1e-6
    correct_m: bool = True
    correct_v: bool = True
    weight_decay: float = 0.0
    decoupled: bool = True
    t: int = 0
    m: dict[str, Array] = field(default_factory=dict)
    v: dict[str, Array] = field(default_factory=dict)

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        self.t += 1
        t, b1, b2 = self.t, self.b1, self.b2
        bc1 = 1.0 - b1**t if self.correct_m else 1.0
        bc2 = 1.0 - b2**t if self.correct_v else 1.0
        new = {}
        for name, theta in params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            if self.weight_decay and not self.decoupled:
                g = g + self.weight_decay * theta
            m0 = self.m.get(name, np.full_like(g, self.initial))
            v0 = self.v.get(name, np.full_like(g, self.initial))
            m = b1 * m0 + (1.0 - b1) * g
            v = v0 - (1.0 - b2) * np.sign(v0 - g * g) * g * g
            self.m[name], self.v[name] = m, v
            direction = (m / bc1) / (np.sqrt(v / bc2) + self.eps)
            decoupled = self.decoupled and self.weight_decay > 0
            new[name] = _decayed(theta, direction, self.lr, self.weight_decay, decoupled)
        return new
