"""The aliases against golden trajectories recorded from torch.optim and Keras 3 (float64).

The ``.npz`` files and the script that regenerates them live in ``tests/reference/``; this test
needs neither torch nor keras. Each file holds a closed-loop run on a noisy quadratic
(``g = h * (p - c) + noise[k]``); adamjax replays it and must agree with the params and every
state tensor at every checkpoint to a relative error of 1e-10.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax

from helpers import jitted_step, max_rel_err

GOLDEN = Path(__file__).parent / "reference" / "golden"


def load(name: str) -> dict:
    with np.load(GOLDEN / f"{name}.npz") as data:
        return {key: data[key] for key in data.files}


def learning_rate(g: dict):
    lr, decay = float(g["hp_lr"]), float(g["hp_lr_decay"])
    if decay == 1.0:
        return lr
    # torch's LambdaLR: lr * decay**k for the 0-based step k, computed in float64.
    return lambda count: lr * jnp.asarray(decay, jnp.float64) ** count


def hyper(g: dict) -> dict:
    return dict(b1=float(g["hp_b1"]), b2=float(g["hp_b2"]), eps=float(g["hp_eps"]))


def wd(g: dict) -> float:
    return float(g["hp_weight_decay"])


def adam_l2(g: dict) -> optax.GradientTransformation:
    """torch.optim.Adam's default weight decay: L2, wd * p joins the gradient before the moments."""
    return optax.chain(
        adamjax.add_decayed_weights(wd(g)), adamjax.adam(learning_rate(g), **hyper(g))
    )


# name -> adamjax transformation under the convention that library follows.
CASES = {
    "torch_adam": lambda g: adamjax.adam(learning_rate(g), **hyper(g)),
    "torch_amsgrad": lambda g: adamjax.amsgrad(learning_rate(g), **hyper(g)),
    "torch_adamw": lambda g: adamjax.adamw(
        learning_rate(g), weight_decay=float(g["hp_weight_decay"]), **hyper(g)
    ),
    "torch_adamw_schedule": lambda g: adamjax.adamw(
        learning_rate(g), weight_decay=float(g["hp_weight_decay"]), **hyper(g)
    ),
    "torch_adam_l2": adam_l2,
    # torch.optim.Adam(decoupled_weight_decay=True) is AdamW.
    "torch_adam_decoupled": lambda g: adamjax.adamw(
        learning_rate(g), weight_decay=wd(g), **hyper(g)
    ),
    "torch_adamw_amsgrad": lambda g: adamjax.amsgrad(
        learning_rate(g), weight_decay=wd(g), **hyper(g)
    ),
    "keras_adam": lambda g: adamjax.adam(learning_rate(g), eps_mode="hat", **hyper(g)),
    "keras_amsgrad": lambda g: adamjax.amsgrad(learning_rate(g), eps_mode="hat", **hyper(g)),
    "keras_adamw": lambda g: adamjax.adamw(
        learning_rate(g), weight_decay=float(g["hp_weight_decay"]), eps_mode="hat", **hyper(g)
    ),
    **{
        name: lambda g: adamjax.nadam(
            learning_rate(g),
            momentum_decay=float(g["hp_momentum_decay"]),
            weight_decay=float(g["hp_weight_decay"]),
            decoupled_weight_decay=bool(g["hp_decoupled"]),
            **hyper(g),
        )
        for name in ("torch_nadam", "torch_nadam_l2", "torch_nadam_decoupled")
    },
    "torch_adamax": lambda g: adamjax.adamax(learning_rate(g), **hyper(g)),
    # torch.optim.Adamax's weight decay is L2: adamjax.adamax's default
    # decoupled_weight_decay=False.
    "torch_adamax_l2": lambda g: adamjax.adamax(learning_rate(g), weight_decay=wd(g), **hyper(g)),
    # Keras' fixed momentum schedule b1*(1 - 0.5*0.96**t) is torch's with momentum_decay=1; its
    # eps sits outside the square root of the bias-corrected v, adamjax's default "paper" mode.
    "keras_nadam": lambda g: adamjax.nadam(learning_rate(g), momentum_decay=1.0, **hyper(g)),
    # Keras adds eps to u in the denominator; torch (the default "max") adds it to |g|.
    "keras_adamax": lambda g: adamjax.adamax(learning_rate(g), eps_mode="denominator", **hyper(g)),
    **{
        name: lambda g: adamjax.radam(
            learning_rate(g),
            weight_decay=float(g["hp_weight_decay"]),
            decoupled_weight_decay=bool(g["hp_decoupled"]),
            **hyper(g),
        )
        for name in ("torch_radam", "torch_radam_decoupled")
    },
}


def replay(g: dict, tx: optax.GradientTransformation) -> list[tuple[dict, object]]:
    """Runs ``tx`` on the recorded problem; returns (params, moment state) at each checkpoint."""
    leaves = [str(name) for name in g["leaves"]]
    params = {k: jnp.asarray(g[f"p0__{k}"]) for k in leaves}
    h = {k: g[f"h__{k}"] for k in leaves}
    c = {k: g[f"c__{k}"] for k in leaves}
    checkpoints = {int(s) for s in g["steps"]}
    step = jitted_step(tx)
    state = tx.init(params)
    out = []
    for k in range(int(g["steps"][-1])):
        grads = {
            name: h[name] * (np.asarray(p) - c[name]) + g[f"noise__{name}"][k]
            for name, p in params.items()
        }
        params, state = step(params, state, grads)
        if k + 1 in checkpoints:
            # The alias' moment piece: the first state in the chain that holds moments, searched
            # depth first (optax.chain(add_decayed_weights, adam) nests adam's own chain).
            nodes = jax.tree.leaves(state, is_leaf=lambda s: hasattr(s, "mu"))
            out.append((params, next(s for s in nodes if hasattr(s, "mu"))))
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_golden_trajectory(name):
    with jax.enable_x64(True):
        g = load(name)
        trajectory = replay(g, CASES[name](g))
    leaves = [str(n) for n in g["leaves"]]
    fields = {"param": None, "mu": "mu", "nu": "nu"}
    if bool(g["hp_amsgrad"]):
        fields["nu_max"] = "nu_max"
    if "mu_product__w" in g:
        # torch keeps prod(mu_i); adamjax keeps the bias correction 1 - prod(mu_i) the update
        # divides by (compared as such: the product itself underflows towards 1e-100).
        fields["mu_product"] = "momentum_correction"
    assert len(trajectory) == len(g["steps"])
    for i, (params, moments) in enumerate(trajectory):
        for field, attr in fields.items():
            actual = params if attr is None else getattr(moments, attr)
            expected = {k: g[f"{field}__{k}"][i] for k in leaves}
            if field == "mu_product":
                actual = {k: actual for k in leaves}
                expected = {k: 1 - e for k, e in expected.items()}
            err = max_rel_err(actual, expected)
            assert err <= 1e-10, f"{name}: {field} at step {g['steps'][i]}: rel err {err:.2e}"


@pytest.mark.parametrize(
    ("name", "wrong"),
    [
        ("keras_adam", lambda g: adamjax.adam(learning_rate(g), **hyper(g))),
        ("torch_adam", lambda g: adamjax.adam(learning_rate(g), eps_mode="hat", **hyper(g))),
        (
            "torch_amsgrad",
            lambda g: adamjax.amsgrad(learning_rate(g), max_of="corrected", **hyper(g)),
        ),
        # optax.nadam's constant mu_t = b1 is not torch's NAdam.
        ("torch_nadam", lambda g: adamjax.adam(learning_rate(g), nesterov=True, **hyper(g))),
        (
            "torch_nadam_decoupled",
            lambda g: adamjax.nadam(learning_rate(g), weight_decay=0.1, **hyper(g)),
        ),
        (
            "torch_adamax",
            lambda g: adamjax.adamax(learning_rate(g), eps_mode="denominator", **hyper(g)),
        ),
        # torch's momentum_decay=4e-3 is not Keras' fixed schedule.
        (
            "keras_nadam",
            lambda g: adamjax.nadam(learning_rate(g), momentum_decay=4e-3, **hyper(g)),
        ),
        ("keras_adamax", lambda g: adamjax.adamax(learning_rate(g), **hyper(g))),
        ("torch_radam", lambda g: adamjax.radam(learning_rate(g), eps_mode="paper", **hyper(g))),
        # torch.optim.Adam's weight decay is L2, not AdamW's, and the other way round.
        (
            "torch_adam_l2",
            lambda g: adamjax.adamw(learning_rate(g), weight_decay=wd(g), **hyper(g)),
        ),
        ("torch_adam_decoupled", adam_l2),
        (
            "torch_adamw_amsgrad",
            lambda g: adamjax.amsgrad(
                learning_rate(g), weight_decay=wd(g), max_of="corrected", **hyper(g)
            ),
        ),
        (
            "torch_adamax_l2",
            lambda g: adamjax.adamax(
                learning_rate(g), weight_decay=wd(g), decoupled_weight_decay=True, **hyper(g)
            ),
        ),
    ],
)
def test_the_other_convention_does_not_match(name, wrong):
    """The golden data tells the conventions apart, so the parity above means something."""
    with jax.enable_x64(True):
        g = load(name)
        params, _ = replay(g, wrong(g))[-1]
    expected = {str(k): g[f"param__{k}"][-1] for k in g["leaves"]}
    assert max_rel_err(params, expected) > 1e-4
