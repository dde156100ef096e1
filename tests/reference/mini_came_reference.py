"""Float64 NumPy references of Adam-mini and CAME, written from the papers' algorithms.

* Adam-mini: Zhang et al., "Adam-mini: Use Fewer Learning Rates To Gain More" (ICLR 2025),
  Algorithm 1: Adam's first moment per entry, one second moment per block, the mean of the
  squared gradient over the block; Adam's bias corrections and eps outside the root; AdamW's
  decoupled weight decay. The blocks are given as an integer block id per entry.
* CAME: Luo et al., "CAME: Confidence-guided Adaptive Memory Efficient Optimization" (ACL 2023),
  Algorithm 1, with row and column *sums* ``R_t``, ``C_t`` over the last two axes of a matrix;
  vectors keep the full second moment and step by the first moment (the authors' code).

It shares no code with adamjax.
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray


class AdamMini:
    """Adam-mini on a dict of float64 arrays; ``blocks[name]`` gives each entry's block id."""

    def __init__(self, params, blocks, *, lr, b1, b2, eps, weight_decay, decay):
        self.blocks, self.decay = blocks, decay
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, b1, b2, eps, weight_decay
        self.t = 0
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros(int(b.max()) + 1) for k, b in blocks.items()}

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        self.t += 1
        out = {}
        for k, p in params.items():
            g, ids = grads[k], self.blocks[k]
            # One mean of g^2 per block id.
            mean_sq = np.bincount(ids.ravel(), (g * g).ravel()) / np.bincount(ids.ravel())
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * mean_sq
            m_hat = self.m[k] / (1 - self.b1**self.t)
            v_hat = (self.v[k] / (1 - self.b2**self.t))[ids]
            step = m_hat / (np.sqrt(v_hat) + self.eps)
            if self.decay[k]:
                step = step + self.wd * p
            out[k] = p - self.lr * step
        return out


def _factored_inverse_root(r: Array, c: Array) -> Array:
    """``V^{-1/2}`` with ``V = R C^T / (1^T R)`` from row sums ``R`` and column sums ``C``."""
    return 1 / np.sqrt(np.outer(r, c) / r.sum())


class Came:
    """CAME on a dict of float64 matrices and vectors."""

    def __init__(self, params, *, lr, b1, b2, b3, eps1, eps2, clip, weight_decay):
        self.lr, self.b1, self.b2, self.b3 = lr, b1, b2, b3
        self.eps1, self.eps2, self.clip, self.wd = eps1, eps2, clip, weight_decay
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.r = {k: np.zeros(p.shape[0]) for k, p in params.items() if p.ndim == 2}
        self.c = {k: np.zeros(p.shape[1]) for k, p in params.items() if p.ndim == 2}
        self.rr = {k: np.zeros(p.shape[0]) for k, p in params.items() if p.ndim == 2}
        self.cr = {k: np.zeros(p.shape[1]) for k, p in params.items() if p.ndim == 2}
        self.v = {k: np.zeros_like(p) for k, p in params.items() if p.ndim != 2}

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        out = {}
        for k, p in params.items():
            g = grads[k]
            sq = g * g + self.eps1
            if p.ndim == 2:
                self.r[k] = self.b2 * self.r[k] + (1 - self.b2) * sq.sum(axis=1)
                self.c[k] = self.b2 * self.c[k] + (1 - self.b2) * sq.sum(axis=0)
                u = g * _factored_inverse_root(self.r[k], self.c[k])
            else:
                self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * sq
                u = g / np.sqrt(self.v[k])
            u = u / max(1.0, np.sqrt(np.mean(u * u)) / self.clip)
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * u
            if p.ndim == 2:
                res = (u - self.m[k]) ** 2 + self.eps2
                self.rr[k] = self.b3 * self.rr[k] + (1 - self.b3) * res.sum(axis=1)
                self.cr[k] = self.b3 * self.cr[k] + (1 - self.b3) * res.sum(axis=0)
                step = self.m[k] * _factored_inverse_root(self.rr[k], self.cr[k])
            else:
                step = self.m[k]
            out[k] = p - self.lr * (step + self.wd * p)
        return out
