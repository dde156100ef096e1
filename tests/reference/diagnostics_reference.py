"""NumPy float64 definitions of the diagnostics metrics (see ``adamjax._diagnostics``).

Each function takes plain dicts of NumPy arrays (leaf name -> array) and returns the metric dict
``with_diagnostics`` is specified to report; the tests feed them the same gradients, updates,
params and optimizer states as the wrapper saw.
"""

from __future__ import annotations

import numpy as np


def norm(tree: dict) -> float:
    return float(
        np.sqrt(sum(np.sum(np.abs(np.asarray(x, np.complex128)) ** 2) for x in tree.values()))
    )


def global_metrics(grads: dict, updates: dict, params: dict | None) -> dict:
    g, u = norm(grads), norm(updates)
    p = np.nan if params is None else norm(params)
    entries = sum(np.size(x) for x in grads.values())
    bad = sum(int(np.sum(~np.isfinite(np.asarray(x)))) for x in grads.values())
    return {
        "grad_norm": g,
        "update_norm": u,
        "param_norm": p,
        "update_param_ratio": u / p if p else (0.0 if u == 0 else np.inf),  # 0/0: nothing moved
        "nonfinite_grad_fraction": bad / entries,
    }


def pooled(eta: dict, m_hat: dict | None, v_hat: dict, key: str = "effective_lr") -> dict:
    """The pooled Adam-family statistics of per-entry effective learning rates ``eta``."""
    flat = np.concatenate([np.ravel(x) for x in eta.values()])
    out = {f"{key}/mean": flat.mean(), f"{key}/min": flat.min(), f"{key}/max": flat.max()}
    out["v_hat/mean"] = np.concatenate([np.ravel(x) for x in v_hat.values()]).mean()
    if m_hat is not None:
        out["m_hat/mean_abs"] = np.concatenate([np.abs(np.ravel(x)) for x in m_hat.values()]).mean()
    return out


def fraction(flags: dict) -> float:
    return float(np.concatenate([np.ravel(x) for x in flags.values()]).mean())


def log_edges(bins: int, low: float, high: float) -> np.ndarray:
    return np.logspace(np.log10(low), np.log10(high), bins + 1)


def histogram(eta: dict, edges: np.ndarray) -> np.ndarray:
    """Fractions per bin; bin k holds edges[k] <= x < edges[k+1], the outer bins open-ended."""
    flat = np.concatenate([np.ravel(x) for x in eta.values()])
    index = np.searchsorted(edges[1:-1], flat, side="right")
    counts = np.bincount(index[~np.isnan(flat)], minlength=len(edges) - 1)
    return counts / flat.size
