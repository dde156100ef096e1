"""Float64 NumPy references of the modifiers, written from the papers' equations.

Shares no code with adamjax. Each class is a stateful ``step(params, grads, k) -> params`` for the
0-based step ``k``; params and grads are dicts of float64 arrays.

* Cautious Adam(W): Liang et al. (2024), Algorithm 1 on Adam: the direction's entries whose sign
  disagrees with the gradient are zeroed, the rest rescaled per tensor, by 1 / max(mean, 1e-3)
  (``"mean"``) or n / (kept + 1) (``"count"``); the decoupled decay is not masked unless
  ``mask_decay`` (the mask then covers the whole update).
* StableAdamW: Wortsman et al. (2023), Algorithm 2: per tensor, lr_t = lr / max(1, RMS / tau)
  with RMS = sqrt(mean(g^2 / max(v_hat, eps^2))) (or, ``rms_of="denominator"``, the RMS of
  g / (sqrt(v_hat) + eps)); the decay uses lr_t, or lr with ``clip_decay=False``.
* Adam-atan2: Everett et al. (2024): a * atan2(m_hat, b * sqrt(v_hat)), decoupled decay.
* AdamC: Defazio et al. (2025): AdamW whose decay is scaled by lr_t^2 / max_lr.
"""

from __future__ import annotations

import numpy as np


class _Adam:
    def __init__(self, b1: float, b2: float) -> None:
        self.b1, self.b2 = b1, b2
        self.m: dict = {}
        self.v: dict = {}
        self.t = 0

    def moments(self, g: dict) -> tuple[dict, dict]:
        """Advances the moments; returns the bias-corrected m_hat, v_hat."""
        self.t += 1
        m_hat, v_hat = {}, {}
        for k, x in g.items():
            self.m[k] = self.b1 * self.m.get(k, 0.0) + (1 - self.b1) * x
            self.v[k] = self.b2 * self.v.get(k, 0.0) + (1 - self.b2) * x * x
            m_hat[k] = self.m[k] / (1 - self.b1**self.t)
            v_hat[k] = self.v[k] / (1 - self.b2**self.t)
        return m_hat, v_hat


def _cautious(update: np.ndarray, g: np.ndarray, descent: bool, rescale: str) -> np.ndarray:
    phi = ((update * g < 0) if descent else (update * g > 0)).astype(np.float64)
    if rescale == "mean":
        return update * phi / max(phi.mean(), 1e-3)
    return update * phi * phi.size / (phi.sum() + 1)


class CautiousAdamW(_Adam):
    def __init__(self, lr, b1, b2, eps, weight_decay=0.0, rescale="mean", mask_decay=False):
        super().__init__(b1, b2)
        self.lr, self.eps, self.wd = lr, eps, weight_decay
        self.rescale, self.mask_decay = rescale, mask_decay

    def step(self, p: dict, g: dict, k: int) -> dict:
        m_hat, v_hat = self.moments(g)
        out = {}
        for n in p:
            d = m_hat[n] / (np.sqrt(v_hat[n]) + self.eps)
            if self.mask_decay:
                out[n] = p[n] + _cautious(-self.lr * (d + self.wd * p[n]), g[n], True, self.rescale)
            else:
                d = _cautious(d, g[n], False, self.rescale)
                out[n] = p[n] - self.lr * (d + self.wd * p[n])
        return out


class StableAdamW(_Adam):
    def __init__(self, lr, b1, b2, eps, weight_decay, *, threshold=1.0, clip_decay=True,
                 rms_of="v_hat"):  # fmt: skip
        super().__init__(b1, b2)
        self.lr, self.eps, self.wd, self.tau = lr, eps, weight_decay, threshold
        self.clip_decay, self.rms_of = clip_decay, rms_of
        self.clipped_steps = 0

    def step(self, p: dict, g: dict, k: int) -> dict:
        m_hat, v_hat = self.moments(g)
        out, clipped = {}, False
        for n in p:
            if self.rms_of == "v_hat":
                rms = np.sqrt(np.mean(g[n] ** 2 / np.maximum(v_hat[n], self.eps**2)))
            else:
                rms = np.sqrt(np.mean((g[n] / (np.sqrt(v_hat[n]) + self.eps)) ** 2))
            lr_t = self.lr / max(1.0, rms / self.tau)
            clipped |= rms > self.tau
            decay_lr = lr_t if self.clip_decay else self.lr
            d = m_hat[n] / (np.sqrt(v_hat[n]) + self.eps)
            out[n] = p[n] - lr_t * d - decay_lr * self.wd * p[n]
        self.clipped_steps += clipped
        return out


class AdamAtan2(_Adam):
    def __init__(self, lr, b1, b2, weight_decay, *, a=1.27, b=1.0):
        super().__init__(b1, b2)
        self.lr, self.wd, self.a, self.b = lr, weight_decay, a, b

    def step(self, p: dict, g: dict, k: int) -> dict:
        m_hat, v_hat = self.moments(g)
        return {
            n: p[n]
            - self.lr * (self.a * np.arctan2(m_hat[n], self.b * np.sqrt(v_hat[n])) + self.wd * p[n])
            for n in p
        }


class AdamC(_Adam):
    def __init__(self, lr, b1, b2, eps, weight_decay, *, max_lr):
        super().__init__(b1, b2)
        self.lr, self.eps, self.wd, self.max_lr = lr, eps, weight_decay, max_lr

    def step(self, p: dict, g: dict, k: int) -> dict:
        m_hat, v_hat = self.moments(g)
        lr = self.lr(k)
        return {
            n: p[n]
            - lr * m_hat[n] / (np.sqrt(v_hat[n]) + self.eps)
            - lr**2 / self.max_lr * self.wd * p[n]
            for n in p
        }
