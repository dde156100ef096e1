"""Float64 NumPy reference of SWATS (Keskar & Socher 2017, Algorithm 1).

Written from the paper's Algorithm 1 and shares no code with adamjax. One object runs the
algorithm over a dict of arrays and keeps, per *group* of leaves, the quantities that decide the
switch: with ``granularity="global"`` all leaves form one group (the paper's single parameter
vector), with ``"leaf"`` every leaf is a group of its own.

Per step ``k`` (1-based; schedules see the 0-based ``k - 1``), for a group still in the Adam phase::

    m <- b1_k m + (1 - b1_k) g,   a <- b2_k a + (1 - b2_k) g^2
    c1 = 1 - prod_{i<=k} b1_i,    c2 = 1 - prod_{i<=k} b2_i          (1 - b^k for constants)
    p = -alpha_k (m/c1) / (sqrt(a/c2) + eps)                            (eps_mode "paper")
    p = -alpha_k sqrt(c2)/c1 * m / (sqrt(a) + eps)                      (eps_mode "hat")
    x <- x + p
    if p.g != 0 (dot products over the group's leaves):
        gamma = p.p / (-p.g);  lam <- b2_k lam + (1 - b2_k) gamma;  L = lam / c2
        if k > 1 and L > 0 and |L - gamma| < tol + rtol |gamma|:
            switch: phase = SGD, Lambda = L, v = 0, remember k and alpha_k

and for a group in the SGD phase (m, a and lam stay frozen)::

    v <- b1_k v + g
    x <- x - (1 - b1_k) Lambda_k v                     (nesterov: v replaced by g + b1_k v)

with ``Lambda_k = Lambda`` (``sgd_schedule="fixed"``, Algorithm 1) or
``Lambda * alpha_k / alpha_switch`` (``"relative"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Array = np.ndarray
Rate = float | Callable[[int], float]


def _at(rate: Rate, k: int) -> float:
    return float(rate(k)) if callable(rate) else float(rate)


@dataclass
class SwatsGroup:
    """Switching quantities of one group of leaves."""

    names: list[str]
    lam: float = 0.0
    mean: float = 0.0  # lam / c2 after the group's latest Adam step (adamjax's rate_ema)
    phase: int = 0  # 0 Adam, 1 SGD
    switch_step: int = -1
    sgd_rate: float = 0.0
    switch_lr: float = 0.0
    # |L - gamma| / (tol + rtol |gamma|) at every Adam step that updated lam: (k, ratio)
    gaps: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class SwatsReference:
    """SWATS over a dict of float64 arrays; ``step`` returns the new params.

    ``increments`` holds the last step's change of every leaf, computed directly (not as a
    difference of params), so tests can compare steps that are tiny next to the params.
    """

    names: list[str]
    lr: Rate = 1e-3
    b1: Rate = 0.9
    b2: Rate = 0.999
    eps: float = 1e-8
    switch_tol: float = 1e-9
    switch_rtol: float = 0.0
    granularity: str = "global"
    nesterov: bool = False
    eps_mode: str = "paper"
    sgd_schedule: str = "relative"
    t: int = 0
    prod1: float = 1.0
    prod2: float = 1.0
    m: dict[str, Array] = field(default_factory=dict)
    a: dict[str, Array] = field(default_factory=dict)
    v: dict[str, Array] = field(default_factory=dict)
    groups: list[SwatsGroup] = field(default_factory=list)
    increments: dict[str, Array] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.granularity == "global":
            self.groups = [SwatsGroup(list(self.names))]
        else:
            self.groups = [SwatsGroup([name]) for name in self.names]

    def group_of(self, name: str) -> SwatsGroup:
        return next(grp for grp in self.groups if name in grp.names)

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        k0 = self.t  # 0-based index, what schedules see
        self.t += 1
        k = self.t
        alpha, beta1, beta2 = _at(self.lr, k0), _at(self.b1, k0), _at(self.b2, k0)
        self.prod1 *= beta1
        self.prod2 *= beta2
        c1, c2 = 1.0 - self.prod1, 1.0 - self.prod2
        new = dict(params)
        for grp in self.groups:
            g = {n: np.asarray(grads[n], np.float64) for n in grp.names}
            x = {n: np.asarray(params[n], np.float64) for n in grp.names}
            if grp.phase == 1:
                rate = grp.sgd_rate
                if self.sgd_schedule == "relative":
                    rate = grp.sgd_rate * (alpha / grp.switch_lr)
                for n in grp.names:
                    self.v[n] = beta1 * self.v[n] + g[n]
                    d = g[n] + beta1 * self.v[n] if self.nesterov else self.v[n]
                    self.increments[n] = -(1.0 - beta1) * rate * d
                    new[n] = x[n] + self.increments[n]
                continue

            p = {}
            for n in grp.names:
                m = self.m[n] = beta1 * self.m.get(n, 0.0 * g[n]) + (1.0 - beta1) * g[n]
                a = self.a[n] = beta2 * self.a.get(n, 0.0 * g[n]) + (1.0 - beta2) * g[n] ** 2
                self.v.setdefault(n, 0.0 * g[n])
                if self.eps_mode == "paper":
                    p[n] = -alpha * (m / c1) / (np.sqrt(a / c2) + self.eps)
                else:
                    p[n] = -alpha * math.sqrt(c2) / c1 * m / (np.sqrt(a) + self.eps)
                self.increments[n] = p[n]
                new[n] = x[n] + p[n]
            pp = sum(float(np.sum(p[n] * p[n])) for n in grp.names)
            pg = sum(float(np.sum(p[n] * g[n])) for n in grp.names)
            if pg == 0.0:
                grp.mean = grp.lam / c2  # lam_k = lam_{k-1}
                continue
            gamma = pp / -pg
            grp.lam = beta2 * grp.lam + (1.0 - beta2) * gamma
            estimate = grp.mean = grp.lam / c2
            tolerance = self.switch_tol + self.switch_rtol * abs(gamma)
            grp.gaps.append((k, abs(estimate - gamma) / tolerance))
            if k > 1 and estimate > 0.0 and abs(estimate - gamma) < tolerance:
                grp.phase, grp.switch_step = 1, k
                grp.sgd_rate, grp.switch_lr = estimate, alpha
                for n in grp.names:
                    self.v[n] = 0.0 * g[n]
        return new
