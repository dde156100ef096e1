"""The modifiers (cautious, update clipping, eps_mode="atan2", corrected weight decay): golden
trajectories from timm, pytorch_optimizer and adam-atan2-pytorch, the float64 NumPy references of
``tests/reference/modifiers_reference.py``, composition with the aliases, formats and jit."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax

from helpers import jitted_step, max_rel_err

sys.path.insert(0, str(Path(__file__).parent / "reference"))
import modifiers_reference as ref

# The golden files' layout is make_golden.py's: read them as test_golden does.
from test_golden import hyper as adam_hp
from test_golden import learning_rate as lr_of
from test_golden import load, wd
from test_validation_sweep import EDGE_TREES, _leaf_types


def cautious_chain(g: dict) -> optax.GradientTransformation:
    """The chain placement: only the Adam direction is masked (timm)."""
    return optax.chain(
        adamjax.cautious(adamjax.scale_by_adam(**adam_hp(g)), descent=False),
        adamjax.add_decayed_weights(wd(g)),
        adamjax.scale_by_learning_rate(lr_of(g)),
    )


def corrected(g: dict, **options) -> optax.GradientTransformation:
    decay = adamjax.corrected_weight_decay(wd(g), lr_of(g), max_lr=float(g["hp_lr"]))
    return adamjax.adamw(lr_of(g), weight_decay=decay, **adam_hp(g), **options)


GOLDEN_CASES = {
    # Without decay, the whole-alias and chain placements are the same updates.
    "timm_cadam": lambda g: adamjax.cautious(adamjax.adam(lr_of(g), **adam_hp(g))),
    "timm_cadamw": cautious_chain,
    "timm_adamw_clip": lambda g: adamjax.stable_adamw(
        lr_of(g), weight_decay=wd(g), clip_decay=False, rms_of="denominator", **adam_hp(g)
    ),
    "po_stable_adamw": lambda g: adamjax.stable_adamw(lr_of(g), weight_decay=wd(g), **adam_hp(g)),
    "timm_adamw_corrected": corrected,
    # AdamC adds 1e-15 to the raw v inside the square root: eps_root, placed as eps is.
    "po_adamc": lambda g: corrected(g, eps_mode="hat", eps_root=1e-15),
    "atan2_adam": lambda g: adamjax.adam_atan2(
        lr_of(g),
        float(g["hp_b1"]),
        float(g["hp_b2"]),
        wd(g),
        a=float(g["hp_a"]),
        b=float(g["hp_b"]),
    ),
}


def replay(g: dict, tx: optax.GradientTransformation) -> list[dict]:
    leaves = [str(name) for name in g["leaves"]]
    params = {k: jnp.asarray(g[f"p0__{k}"]) for k in leaves}
    checkpoints = {int(s) for s in g["steps"]}
    step = jitted_step(tx)
    state = tx.init(params)
    out = []
    for k in range(int(g["steps"][-1])):
        grads = {
            n: g[f"h__{n}"] * (np.asarray(p) - g[f"c__{n}"]) + g[f"noise__{n}"][k]
            for n, p in params.items()
        }
        params, state = step(params, state, grads)
        if k + 1 in checkpoints:
            out.append(params)
    return out


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_matches_golden_trajectory(name):
    with jax.enable_x64(True):
        g = load(name)
        ours = replay(g, GOLDEN_CASES[name](g))
        leaves = [str(n) for n in g["leaves"]]
        for i, params in enumerate(ours):
            expected = {k: g[f"param__{k}"][i] for k in leaves}
            assert max_rel_err(params, expected) <= 1e-10, (name, int(g["steps"][i]))


@pytest.mark.slow
def test_golden_cases_exercise_the_modifiers():
    """Each golden case differs from the unmodified optimizer, so a modifier that did nothing
    would fail its golden test."""
    with jax.enable_x64(True):
        for name in ("timm_cadamw", "timm_adamw_clip", "po_stable_adamw", "po_adamc"):
            g = load(name)
            plain = replay(g, adamjax.adamw(lr_of(g), weight_decay=wd(g), **adam_hp(g)))[-1]
            expected = {k: g[f"param__{k}"][-1] for k in (str(n) for n in g["leaves"])}
            assert max_rel_err(plain, expected) > 1e-6, name


# Each switch is a real difference: the other setting misses the library's trajectory.
OTHER_CONVENTION = {
    "timm_cadamw": lambda g: optax.chain(
        adamjax.cautious(adamjax.scale_by_adam(**adam_hp(g)), descent=False, rescale="count"),
        adamjax.add_decayed_weights(wd(g)),
        adamjax.scale_by_learning_rate(lr_of(g)),
    ),
    "po_stable_adamw": lambda g: adamjax.stable_adamw(
        lr_of(g), weight_decay=wd(g), clip_decay=False, **adam_hp(g)
    ),
    "timm_adamw_clip": lambda g: adamjax.stable_adamw(
        lr_of(g), weight_decay=wd(g), clip_decay=False, **adam_hp(g)
    ),
    "po_adamc": lambda g: corrected(g),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OTHER_CONVENTION))
def test_the_other_convention_does_not_match(name):
    with jax.enable_x64(True):
        g = load(name)
        ours = replay(g, OTHER_CONVENTION[name](g))[-1]
        expected = {k: g[f"param__{k}"][-1] for k in (str(n) for n in g["leaves"])}
        assert max_rel_err(ours, expected) > 1e-6


@pytest.mark.slow
def test_whole_alias_placement_masks_the_decay_too():
    """cautious(adamw(...)) masks everything adamw returns, so it is not timm's cautious AdamW
    (the chain placement is); it matches the NumPy reference that masks the decayed update."""
    with jax.enable_x64(True):
        g = load("timm_cadamw")
        whole = replay(
            g, adamjax.cautious(adamjax.adamw(lr_of(g), weight_decay=wd(g), **adam_hp(g)))
        )
        expected = {k: g[f"param__{k}"][-1] for k in (str(n) for n in g["leaves"])}
        assert max_rel_err(whole[-1], expected) > 1e-6


# ---- the float64 NumPy references, 500 steps ------------------------------------------------

STEPS = 500


def problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    shapes = {"w": (4, 3), "b": (5,), "s": ()}
    c = {k: rng.normal(size=s) for k, s in shapes.items()}
    h = {k: rng.uniform(0.5, 2.0, size=s) for k, s in shapes.items()}
    noise = {k: rng.normal(size=(STEPS, *s)) * 0.3 for k, s in shapes.items()}
    p0 = {k: c[k] + rng.normal(size=s) for k, s in shapes.items()}
    for k in noise:  # bursts, so that update clipping acts
        noise[k][100:105] *= 8.0
        noise[k][300:303] *= 8.0

    def grad(params, k):
        return {n: h[n] * (params[n] - c[n]) + noise[n][k] for n in params}

    return p0, grad


def run_both(tx, reference) -> float:
    p0, grad = problem()
    step = jitted_step(tx)
    ours = {k: jnp.asarray(v) for k, v in p0.items()}
    theirs = dict(p0)
    state = tx.init(ours)
    for k in range(STEPS):
        g = grad(theirs, k)  # forced: both see the reference's gradients
        theirs = reference.step(theirs, g, k)
        ours, state = step(ours, state, g)
    return max_rel_err(ours, theirs)


LR = 1e-2


def schedule(count):
    return LR * jnp.asarray(0.995, jnp.float64) ** count


REFERENCE_CASES = {
    "cautious_adam_mean": (
        lambda: adamjax.cautious(adamjax.adam(LR, 0.9, 0.99, 1e-8)),
        lambda: ref.CautiousAdamW(LR, 0.9, 0.99, 1e-8, rescale="mean"),
    ),
    "cautious_adamw_count_chain": (
        lambda: optax.chain(
            adamjax.cautious(
                adamjax.scale_by_adam(0.9, 0.99, 1e-8), descent=False, rescale="count"
            ),
            adamjax.add_decayed_weights(0.05),
            adamjax.scale_by_learning_rate(LR),
        ),
        lambda: ref.CautiousAdamW(LR, 0.9, 0.99, 1e-8, weight_decay=0.05, rescale="count"),
    ),
    "cautious_adamw_whole": (
        lambda: adamjax.cautious(adamjax.adamw(LR, 0.9, 0.99, 1e-8, weight_decay=0.05)),
        lambda: ref.CautiousAdamW(LR, 0.9, 0.99, 1e-8, weight_decay=0.05, mask_decay=True),
    ),
    "stable_adamw": (
        lambda: adamjax.stable_adamw(LR, 0.9, 0.99, 1e-8, 0.05),
        lambda: ref.StableAdamW(LR, 0.9, 0.99, 1e-8, 0.05),
    ),
    "stable_adamw_unclipped_decay": (
        lambda: adamjax.stable_adamw(
            LR, 0.9, 0.99, 1e-8, 0.05, clip_decay=False, rms_of="denominator", threshold=0.8
        ),
        lambda: ref.StableAdamW(
            LR, 0.9, 0.99, 1e-8, 0.05, clip_decay=False, rms_of="denominator", threshold=0.8
        ),
    ),
    "adam_atan2": (
        lambda: adamjax.adam_atan2(LR, 0.9, 0.99, 0.05, a=1.27, b=0.7),
        lambda: ref.AdamAtan2(LR, 0.9, 0.99, 0.05, a=1.27, b=0.7),
    ),
    "adamc": (
        lambda: adamjax.adamw(
            schedule,
            0.9,
            0.99,
            1e-8,
            weight_decay=adamjax.corrected_weight_decay(0.05, schedule, max_lr=LR),
        ),
        lambda: ref.AdamC(lambda k: LR * 0.995**k, 0.9, 0.99, 1e-8, 0.05, max_lr=LR),
    ),
}


# Two cases in the default layer, all of them in the slow one.
FAST_REFERENCE = {"cautious_adamw_whole", "stable_adamw"}


@pytest.mark.parametrize(
    "name",
    [
        n if n in FAST_REFERENCE else pytest.param(n, marks=pytest.mark.slow)
        for n in sorted(REFERENCE_CASES)
    ],
)
def test_matches_numpy_reference(name):
    make_tx, make_ref = REFERENCE_CASES[name]
    with jax.enable_x64(True):
        assert run_both(make_tx(), make_ref()) <= 1e-10


def test_reference_clipping_acts():
    """The clip factor is below 1 on some steps of the reference problem (else the test above
    could not tell a clipped step from an unclipped one)."""
    p0, grad = problem()
    r = ref.StableAdamW(LR, 0.9, 0.99, 1e-8, 0.05)
    params = dict(p0)
    for k in range(STEPS):
        params = r.step(params, grad(params, k), k)
    assert 0 < r.clipped_steps < STEPS


# ---- composition with the aliases -------------------------------------------------------------

# The integrator appends laprop, adopt, lamb, ... here: a constructor taking a learning rate and
# keyword options (eps_mode, weight_decay where the alias has them).
ALIASES = {
    "adam": adamjax.adam,
    "adamw": adamjax.adamw,
    "nadam": adamjax.nadam,
    "amsgrad": adamjax.amsgrad,
    "laprop": adamjax.laprop,
    "adopt": adamjax.adopt,
    "lamb": adamjax.lamb,
}
# LAMB's trust ratio rescales each leaf's step to the param norm: atan2 bounds its direction,
# not its step.
STEP_BOUNDED_BY_ATAN2 = set(ALIASES) - {"lamb"}
DECAYING = {
    "adamw": adamjax.adamw,
    "amsgrad": adamjax.amsgrad,
    "nadam": lambda lr, **kw: adamjax.nadam(lr, decoupled_weight_decay=True, **kw),
    "laprop": adamjax.laprop,
    "adopt": lambda lr, **kw: adamjax.adopt(lr, decoupled_weight_decay=True, **kw),
}


def _tree(seed: int, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(scale * rng.normal(size=(3, 4)), jnp.float32),
        "b": jnp.asarray(scale * rng.normal(size=(5,)), jnp.float32),
    }


def _steps(tx, n: int = 4, scale: float = 1.0):
    params = _tree(0)
    state = tx.init(params)
    outs = []
    for k in range(n):
        updates, state = tx.update(_tree(k + 1, scale), state, params)
        params = optax.apply_updates(params, updates)
        outs.append(updates)
    return outs, state


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_cautious_composes(alias):
    """cautious(alias) returns alias's updates with the disagreeing entries zeroed and the rest
    rescaled per tensor."""
    make = ALIASES[alias]
    params = _tree(0)
    inner = make(1e-2)
    tx = adamjax.cautious(make(1e-2))
    s_in, s_tx = inner.init(params), tx.init(params)
    masked = 0
    for k in range(3):
        # A large first gradient, then small opposite ones: momentum disagrees with them.
        factor = 10.0 if k == 0 else -0.1
        g = jax.tree.map(lambda a, b, f=factor: f * a + 0.01 * b, _tree(1), _tree(k + 2))
        u_in, s_in = inner.update(g, s_in, params)
        u, s_tx = tx.update(g, s_tx, params)
        for name in g:
            keep = np.asarray(u_in[name] * g[name] < 0, np.float32)
            expected = np.asarray(u_in[name]) * keep / max(keep.mean(), 1e-3)
            np.testing.assert_allclose(u[name], expected, rtol=1e-6, atol=1e-12)
            masked += keep.size - keep.sum()
    assert masked > 0


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_atan2_reaches_the_alias(alias):
    """eps_mode="atan2": every entry's step is bounded by lr*pi/2, and the updates do not change
    when the gradients are scaled down to where eps would dominate a division."""
    make = ALIASES[alias]
    big, _ = _steps(make(1e-2, eps_mode="atan2"))
    tiny, _ = _steps(make(1e-2, eps_mode="atan2"), scale=1e-12)
    paper, _ = _steps(make(1e-2), scale=1e-12)
    moved = 0
    for u, w, p in zip(big, tiny, paper, strict=True):
        largest = max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(u))
        if alias in STEP_BOUNDED_BY_ATAN2:
            assert largest <= 1e-2 * math.pi / 2
        assert max_rel_err(w, u) < 1e-5
        if largest > 0:  # ADOPT's first step only initializes its second moment
            moved += 1
            # The division at 1e-12 gradients is eps-damped (LaProp: eps 1e-15 is not, but
            # atan2 is not the ratio where the ratio is not small).
            assert max_rel_err(p, u) > 0.1
    assert moved >= 3


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_update_clipping_composes(alias):
    """update_clipping(alias) divides each tensor's update by max(1, rms(g^2 / v_hat)), v_hat
    being the alias's own second moment (AMSGrad: its running maximum)."""
    make = ALIASES[alias]
    params = _tree(0)
    inner = make(1e-2)
    tx = adamjax.update_clipping(make(1e-2))
    s_in, s_tx = inner.init(params), tx.init(params)
    clipped = 0
    for k in range(4):
        g = _tree(k + 1, scale=1.0 if k != 2 else 10.0)  # a jump at step 3
        u_in, s_in = inner.update(g, s_in, params)
        u, s_tx = tx.update(g, s_tx, params)
        moment = next(
            s for s in jax.tree.leaves(s_in, is_leaf=lambda s: hasattr(s, "nu")) if hasattr(s, "nu")
        )
        last = moment.last_step
        if getattr(moment, "nu_max", None) is not None:
            v_hat = jax.tree.map(lambda x, c=last.max_correction: x / c, moment.nu_max)
        else:
            v_hat = jax.tree.map(lambda x, c=last.v_correction: x / c, moment.nu)
        for name in g:
            rms = float(jnp.sqrt(jnp.mean(g[name] ** 2 / jnp.maximum(v_hat[name], 1e-16))))
            clipped += rms > 1
            np.testing.assert_allclose(u[name], u_in[name] / max(1.0, rms), rtol=1e-5)
    assert clipped > 0


@pytest.mark.parametrize("alias", sorted(DECAYING))
def test_corrected_decay_composes(alias):
    """With corrected_weight_decay, the decay part of the update is lr_t**2/max_lr*wd*param."""
    make = DECAYING[alias]
    lr = optax.linear_schedule(1e-2, 1e-3, 10)
    params = _tree(0)
    with_decay = make(lr, weight_decay=adamjax.corrected_weight_decay(0.5, lr, max_lr=2e-2))
    without = make(lr, weight_decay=0.0)
    s1, s0 = with_decay.init(params), without.init(params)
    for k in range(3):
        g = _tree(k + 1)
        u1, s1 = with_decay.update(g, s1, params)
        u0, s0 = without.update(g, s0, params)
        rate = float(lr(k))
        # ADOPT's first call only initializes its second moment: no step, no decay.
        applied = 0.0 if alias == "adopt" and k == 0 else 1.0
        for name in g:
            expected = -applied * rate * (0.5 * rate / 2e-2) * params[name]
            np.testing.assert_allclose(u1[name] - u0[name], expected, rtol=1e-4, atol=1e-9)


def test_corrected_decay_composes_with_lamb():
    """In LAMB the corrected decay sits inside the trust ratio: d = adam + wd*lr_t/max_lr*param,
    then the step is lr_t * ||param|| / ||d|| * d per leaf."""
    lr = optax.linear_schedule(1e-2, 1e-3, 10)
    wd, max_lr = 0.5, 2e-2
    tx = adamjax.lamb(lr, weight_decay=adamjax.corrected_weight_decay(wd, lr, max_lr=max_lr))
    adam_direction = adamjax.scale_by_adam(eps=1e-6)
    params = _tree(0)
    state, s_adam = tx.init(params), adam_direction.init(params)
    for k in range(3):
        g = _tree(k + 1)
        u, state = tx.update(g, state, params)
        d0, s_adam = adam_direction.update(g, s_adam)
        rate = float(lr(k))
        for name in g:
            d = np.asarray(d0[name], np.float64) + wd * rate / max_lr * np.asarray(params[name])
            ratio = np.linalg.norm(params[name]) / np.linalg.norm(d)
            np.testing.assert_allclose(u[name], -rate * ratio * d, rtol=2e-5)
        params = optax.apply_updates(params, u)


# ---- formats, jit, validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: adamjax.cautious(adamjax.adamw(1e-2, **kw)),
        lambda **kw: adamjax.stable_adamw(1e-2, **kw),
        lambda **kw: adamjax.adam_atan2(1e-2, weight_decay=0.01, **kw),
    ],
    ids=["cautious", "stable_adamw", "adam_atan2"],
)
@pytest.mark.parametrize("fmt", ["q8", pytest.param("bf16", marks=pytest.mark.slow)])
def test_formats(make, fmt):
    """With low-precision moments the modifiers run jitted and stay close to float32 storage."""
    options = (
        dict(mu_dtype=adamjax.stochastic_bf16(), nu_dtype=adamjax.stochastic_bf16())
        if fmt == "bf16"
        else dict(mu_dtype=adamjax.q8(), nu_dtype=adamjax.q8())
    )
    reference, _ = _steps(make())
    tx = make(**options)
    params = _tree(0)
    state = tx.init(params)
    step = jax.jit(tx.update)
    for k, expected in enumerate(reference):
        updates, state = step(_tree(k + 1), state, params)
        params = optax.apply_updates(params, updates)
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(updates))
        assert max_rel_err(updates, expected) < 0.1


def test_atan2_zero_gradient_and_eps_irrelevant():
    """A zero gradient gives a zero update (atan2(0, 0) = 0, no NaN); eps plays no part."""
    params = {"w": jnp.zeros(3)}
    g = {"w": jnp.array([0.0, 1.0, -2.0])}
    out = []
    for eps in (0.0, 1e-8, 1.0):
        tx = adamjax.adam(1.0, eps=eps, eps_mode="atan2")
        u, _ = tx.update(g, tx.init(params))
        out.append(np.asarray(u["w"]))
    np.testing.assert_allclose(out[0], [0.0, -math.pi / 4, math.pi / 4], rtol=1e-5)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])


def test_atan2_rejects_complex_params():
    tx = adamjax.adam(1.0, eps_mode="atan2")
    params = {"w": jnp.ones(2, jnp.complex64)}
    with pytest.raises(TypeError, match="atan2"):
        tx.update(params, tx.init(params))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: adamjax.cautious(adamjax.adam(), rescale="max"), "cautious: rescale"),
        (lambda: adamjax.cautious(adamjax.adam(), descent=1), "cautious: descent"),
        (lambda: adamjax.update_clipping(adamjax.adam(), 0.0), "update_clipping: threshold"),
        (lambda: adamjax.update_clipping(adamjax.adam(), rms_of="g"), "update_clipping: rms_of"),
        (lambda: adamjax.adam_atan2(b=0.0), "adam_atan2: b"),
        (lambda: adamjax.stable_adamw(clip_decay=None), "stable_adamw: clip_decay"),
        (
            lambda: adamjax.corrected_weight_decay(0.1, optax.constant_schedule(1e-3)),
            "corrected_weight_decay: max_lr",
        ),
        (lambda: adamjax.adam(eps_mode="atan3"), "adam: eps_mode"),
    ],
)
def test_validation(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_cautious_refuses_the_swapped_sign():
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="cautious: descent must be False"):
        adamjax.cautious(adamjax.scale_by_adam()).init(params)
    with pytest.raises(ValueError, match="cautious: descent must be True"):
        adamjax.cautious(adamjax.adam(1e-3), descent=False).init(params)


def test_update_clipping_needs_a_moment_piece():
    tx = adamjax.update_clipping(optax.sgd(1e-2))
    with pytest.raises(ValueError, match="update_clipping: the wrapped transformation"):
        tx.init({"w": jnp.ones(2)})
    two = adamjax.update_clipping(optax.chain(adamjax.scale_by_adam(), adamjax.scale_by_amsgrad()))
    with pytest.raises(ValueError, match="found 2 among"):
        two.init({"w": jnp.ones(2)})
    # A state with a view but no second moment (AdaBound's bounds include the learning rate) is
    # passed over: the one Adam state is used.
    mixed = adamjax.update_clipping(
        optax.chain(adamjax.scale_by_adam(), adamjax.scale_by_adabound(), optax.scale(-1e-2))
    )
    mixed.init({"w": jnp.ones(2)})


# ---- edge trees and diagnostics ---------------------------------------------------------------

MODIFIED = {
    "cautious": lambda: adamjax.cautious(adamjax.adamw(1e-3)),
    "cautious_piece": lambda: optax.chain(
        adamjax.cautious(adamjax.scale_by_adam(), descent=False, rescale="count"),
        adamjax.scale_by_learning_rate(1e-3),
    ),
    "update_clipping": lambda: adamjax.update_clipping(adamjax.nadam(1e-3)),
    "stable_adamw": lambda: adamjax.stable_adamw(1e-3),
    "adam_atan2": lambda: adamjax.adam_atan2(1e-3, weight_decay=0.01),
    "amsgrad_atan2": lambda: adamjax.amsgrad(1e-3, eps_mode="atan2"),
    "corrected": lambda: adamjax.adamw(
        optax.cosine_decay_schedule(1e-3, 10),
        weight_decay=adamjax.corrected_weight_decay(
            0.1, optax.cosine_decay_schedule(1e-3, 10), max_lr=1e-3
        ),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("tree", list(EDGE_TREES))
@pytest.mark.parametrize("name", sorted(MODIFIED))
def test_edge_tree(name, tree):
    """The sweep's edge trees: two jitted updates keep the tree, the dtypes and finite values;
    atan2 refuses complex params by name."""
    params = EDGE_TREES[tree]
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.25), params)
    tx = MODIFIED[name]()
    state = tx.init(params)
    if tree == "complex" and "atan2" in name:
        with pytest.raises(TypeError, match="atan2"):
            tx.update(grads, state, params)
        return
    for _ in range(2):
        updates, new_state = jax.jit(tx.update)(grads, state, params)
        assert jax.tree.structure(updates) == jax.tree.structure(params)
        assert _leaf_types(updates) == _leaf_types(params)
        assert _leaf_types(new_state) == _leaf_types(state)
        assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
        params, state = optax.apply_updates(params, updates), new_state


def test_diagnostics_see_through_the_modifiers():
    """with_diagnostics finds the moment piece inside the wrappers and reports finite metrics;
    in atan2 mode the preconditioner is the slope 1/sqrt(v_hat) at 0."""
    params = _tree(0)
    for tx in (
        adamjax.with_diagnostics(adamjax.cautious(adamjax.adam(1e-2))),
        adamjax.with_diagnostics(adamjax.stable_adamw(1e-2)),
        adamjax.with_diagnostics(adamjax.adam(1e-2, eps_mode="atan2")),
    ):
        state = tx.init(params)
        _, state = tx.update(_tree(1), state, params)
        metrics = adamjax.diagnostics(state)
        assert "effective_lr/mean" in metrics
        assert all(bool(jnp.isfinite(x)) for x in jax.tree.leaves(metrics))
    # At step 1, v_hat = g**2: the effective learning rate is lr / |g| in atan2 mode.
    g = _tree(1)
    expected = np.mean(1e-2 / np.abs(np.concatenate([np.ravel(x) for x in g.values()])))
    np.testing.assert_allclose(metrics["effective_lr/mean"], expected, rtol=1e-4)
