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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Array = np.ndarray
Schedule = Callable[[int], float]


@dataclass
class AdamReference:
    """A float64 Adam-family optimizer over a dict of NumPy arrays.

    ``lr(k)`` and ``multiplier(k)`` are evaluated at the 0-based step index ``k``, like optax
    schedules. With ``decay_scaling="learning_rate"`` the update is
    ``theta <- theta * (1 - lr(k) * weight_decay) - lr(k) * direction``; with ``"schedule"``,
    ``theta <- theta - multiplier(k) * (lr(k) * direction + weight_decay * theta)``.
    """

    lr: Schedule
    b1: float = 0.9
    b2: float = 0.999
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

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> dict[str, Array]:
        """Applies one update and returns the new params (the inputs are not modified)."""
        k = self.t  # 0-based index of this step, what schedules see
        self.t += 1
        t = self.t
        new = {}
        for name, theta in params.items():
            g = np.asarray(grads[name], dtype=np.float64)
            m = self.m.get(name, np.zeros_like(g))
            v = self.v.get(name, np.zeros_like(g))
            m = self.b1 * m + (1.0 - self.b1) * g
            v = self.b2 * v + (1.0 - self.b2) * g * g
            self.m[name], self.v[name] = m, v

            # The first-moment estimate: plain bias correction, or Dozat's look-ahead.
            if self.nesterov:
                m_hat = self.b1 * m / (1.0 - self.b1 ** (t + 1)) + (1.0 - self.b1) * g / (
                    1.0 - self.b1**t
                )
            else:
                m_hat = m / (1.0 - self.b1**t)

            # The second moment the denominator uses, raw (not bias-corrected) for now.
            if self.amsgrad and self.max_of == "raw":
                v_used = np.maximum(self.v_max.get(name, np.zeros_like(g)), v)
                self.v_max[name] = v_used
                v_hat = v_used / (1.0 - self.b2**t)
            elif self.amsgrad:
                v_hat = np.maximum(self.v_max.get(name, np.zeros_like(g)), v / (1.0 - self.b2**t))
                self.v_max[name] = v_hat
            else:
                v_hat = v / (1.0 - self.b2**t)

            if self.eps_mode == "paper":
                direction = m_hat / (np.sqrt(v_hat + self.eps_root) + self.eps)
            else:
                # Adam §2: alpha_t = alpha sqrt(1-b2^t) / (1-b1^t), step alpha_t m / (sqrt(v)+eps).
                # (eps_root, when used, goes under the root with the raw v.)
                # m_hat already carries 1 / (1 - b1^t); v_raw is the uncorrected (max-)moment.
                v_raw = v_hat * (1.0 - self.b2**t)
                direction = (
                    np.sqrt(1.0 - self.b2**t) * m_hat / (np.sqrt(v_raw + self.eps_root) + self.eps)
                )

            if self.decay_scaling == "learning_rate":
                # torch.optim.AdamW's documented order: decay by lr * wd first, then the Adam step.
                decayed = theta * (1.0 - self.lr(k) * self.weight_decay)
                new[name] = decayed - self.lr(k) * direction
            else:
                new[name] = theta - self.multiplier(k) * (
                    self.lr(k) * direction + self.weight_decay * theta
                )
        return new
