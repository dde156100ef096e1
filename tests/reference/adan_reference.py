"""Float64 NumPy reference of Adan (Xie et al. 2022, Algorithm 1), in the paper's notation.

Written from the paper and shares no code with adamjax. The paper's momentum coefficients are
the complements of the decay rates adamjax, optax and the authors' code take:
``beta_k = 1 - b_k`` (defaults 0.02, 0.08, 0.01). Per step ``k`` (1-based)::

    m_k = (1 - beta1) m_{k-1} + beta1 g_k
    v_k = (1 - beta2) v_{k-1} + beta2 (g_k - g_{k-1})
    n_k = (1 - beta3) n_{k-1} + beta3 [g_k + (1 - beta2)(g_k - g_{k-1})]^2
    eta_k = eta / (sqrt(n_k) + eps)
    theta_{k+1} = (1 + lambda eta)^-1 [theta_k - eta_k (m_k + (1 - beta2) v_k)]

with the two departures every implementation makes (authors' ``sail-sg/Adan``, optax,
pytorch_optimizer): zero-initialised moments divided by ``1 - (1 - beta)^k`` (bias correction),
and ``g_0 := g_1`` (the first difference is 0). Options:

* ``weight="paper"`` weighs the difference by ``1 - beta2`` (the paper and the authors' code);
  ``"optax"`` by ``beta2``, as ``optax.scale_by_adan`` 0.2.8 does.
* ``no_prox``: the decay ``theta (1 - lambda eta)`` before the step instead of the proximal
  division after it (the authors' ``no_prox=True``).
* ``eps_root``: added under the square root of the corrected ``n`` (optax's ``eps_root``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Array = np.ndarray


@dataclass
class AdanReference:
    """Adan over a dict of float64 arrays; ``lr(k)`` sees the 0-based step ``k``."""

    lr: Callable[[int], float]
    beta1: float = 0.02
    beta2: float = 0.08
    beta3: float = 0.01
    eps: float = 1e-8
    eps_root: float = 0.0
    weight_decay: float = 0.0
    no_prox: bool = False
    weight: str = "paper"  # or "optax"
    k: int = 0
    m: dict[str, Array] = field(default_factory=dict)
    v: dict[str, Array] = field(default_factory=dict)
    n: dict[str, Array] = field(default_factory=dict)
    g_prev: dict[str, Array] = field(default_factory=dict)

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        eta = self.lr(self.k)
        self.k += 1
        b1, b2, b3 = self.beta1, self.beta2, self.beta3
        # Bias corrections of moments that start at 0: 1 - (1 - beta)^k.
        c1, c2, c3 = (1 - (1 - b) ** self.k for b in (b1, b2, b3))
        w = 1 - b2 if self.weight == "paper" else b2
        new = {}
        for name, theta in params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            diff = g - self.g_prev.get(name, g)
            m = (1 - b1) * self.m.get(name, 0.0) + b1 * g
            v = (1 - b2) * self.v.get(name, 0.0) + b2 * diff
            n = (1 - b3) * self.n.get(name, 0.0) + b3 * (g + w * diff) ** 2
            self.m[name], self.v[name], self.n[name], self.g_prev[name] = m, v, n, g
            step = (m / c1 + w * v / c2) / (np.sqrt(n / c3 + self.eps_root) + self.eps)
            lam = self.weight_decay
            if self.no_prox:
                new[name] = theta * (1 - lam * eta) - eta * step
            else:
                new[name] = (theta - eta * step) / (1 + lam * eta)
        return new


@dataclass
class NadamwReference:
    """NAdamW: AdamW (Loshchilov & Hutter 2019, decay ``theta (1 - lr wd)`` first) with Dozat's
    (2016) constant-``b1`` Nesterov estimate of the first moment.

    ``lookahead="next"`` (Dozat, optax)::

        m_bar = b1 m_t / (1 - b1^(t+1)) + (1 - b1) g_t / (1 - b1^t)

    ``lookahead="current"`` (timm's NAdamW) divides both terms by ``1 - b1^t``.
    """

    lr: Callable[[int], float]
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    lookahead: str = "next"
    t: int = 0
    m: dict[str, Array] = field(default_factory=dict)
    v: dict[str, Array] = field(default_factory=dict)

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        lr = self.lr(self.t)
        self.t += 1
        b1, b2, t = self.b1, self.b2, self.t
        ahead = 1 - b1 ** (t + 1) if self.lookahead == "next" else 1 - b1**t
        new = {}
        for name, theta in params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            m = b1 * self.m.get(name, 0.0) + (1 - b1) * g
            v = b2 * self.v.get(name, 0.0) + (1 - b2) * g * g
            self.m[name], self.v[name] = m, v
            m_bar = b1 * m / ahead + (1 - b1) * g / (1 - b1**t)
            direction = m_bar / (np.sqrt(v / (1 - b2**t)) + self.eps)
            new[name] = theta * (1 - lr * self.weight_decay) - lr * direction
        return new
