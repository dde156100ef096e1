"""Tests of adamjax._diagnostics: every metric against a NumPy float64 computation from the same
gradients, updates, params and states; the wrapper under jit, nnx.jit, chains and
inject_hyperparams; and the variant signals on problems where they must move."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax
from adamjax import diagnostics, with_diagnostics

from reference import diagnostics_reference as ref

SHAPES = {"w": (4, 3), "b": (5,)}


class Run(NamedTuple):
    grads: dict
    updates: dict
    params: dict  # the params the last update saw (before it was applied)
    state: Any
    metrics: dict
    t: int


def gradient(rng: np.random.Generator, k: int) -> dict:
    """Gradients whose scale differs per leaf (so step sizes spread out) and shrinks after step
    6 (so an AMSGrad maximum becomes active)."""
    shrink = 1.0 if k < 6 else 0.05
    scale = {"w": 1.0, "b": 1e-3}
    return {n: rng.normal(size=s) * scale[n] * shrink for n, s in SHAPES.items()}


def run(tx, steps: int = 12, seed: int = 0, *, jit: bool = True) -> Run:
    rng = np.random.default_rng(seed)
    params = {n: jnp.asarray(rng.normal(size=s)) for n, s in SHAPES.items()}
    state = tx.init(params)
    update = jax.jit(tx.update) if jit else tx.update
    for k in range(steps):
        grads = {n: jnp.asarray(g) for n, g in gradient(rng, k).items()}
        updates, state = update(grads, state, params)
        before, params = params, optax.apply_updates(params, updates)
    to_np = lambda tree: jax.tree.map(np.asarray, tree)  # noqa: E731
    return Run(to_np(grads), to_np(updates), to_np(before), state, to_np(diagnostics(state)), steps)


def find(state: Any, kind: type) -> Any:
    """The one state of type ``kind`` inside ``state``."""
    found = []

    def walk(node):
        if isinstance(node, kind):
            found.append(node)
        elif isinstance(node, dict):
            for child in node.values():
                walk(child)
        elif isinstance(node, tuple | list):
            for child in node:
                walk(child)

    walk(state)
    (one,) = found
    return jax.tree.map(lambda x: np.asarray(x, np.float64), one)


def assert_metrics(metrics: dict, expected: dict, rtol: float = 1e-12) -> None:
    for key, value in expected.items():
        np.testing.assert_allclose(metrics[key], value, rtol=rtol, atol=0, err_msg=key)


# The NumPy effective learning rates, written from each algorithm's update equation -------------


def adam_expected(
    r: Run, lr, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, hat=False, amsgrad=None, kind=None
):
    kind = kind or (adamjax.ScaleByAmsgradState if amsgrad else adamjax.ScaleByAdamState)
    s = find(r.state, kind)
    c1, c2 = 1 - b1**r.t, 1 - b2**r.t
    m_hat = {n: s.mu[n] / c1 for n in SHAPES}
    v_hat = {n: s.nu[n] / c2 for n in SHAPES}
    used = v_hat
    if amsgrad == "raw":
        used = {n: s.nu_max[n] / c2 for n in SHAPES}
    elif amsgrad == "corrected":
        used = {n: s.nu_max[n] for n in SHAPES}
    if hat:  # sqrt(c2)/c1 * m / (sqrt(v + eps_root) + eps) = m_hat * eta / lr
        eta = {n: lr * np.sqrt(c2) / (np.sqrt(used[n] * c2 + eps_root) + eps) for n in SHAPES}
    else:
        eta = {n: lr / (np.sqrt(used[n] + eps_root) + eps) for n in SHAPES}
    out = ref.pooled(eta, m_hat, used)
    if amsgrad:
        out["amsgrad/active_fraction"] = ref.fraction({n: used[n] > v_hat[n] for n in SHAPES})
    return out, eta


@pytest.mark.parametrize(
    "make, options",
    [
        (lambda: adamjax.adamw(3e-3, weight_decay=1e-2), dict(lr=3e-3)),
        (
            lambda: adamjax.adam(1e-3, b1=0.8, b2=0.99, eps=1e-3),
            dict(lr=1e-3, b1=0.8, b2=0.99, eps=1e-3),
        ),
        (
            lambda: adamjax.adam(1e-3, eps=1e-4, eps_root=1e-6, eps_mode="hat"),
            dict(lr=1e-3, eps=1e-4, eps_root=1e-6, hat=True),
        ),
        (lambda: adamjax.amsgrad(1e-3), dict(lr=1e-3, amsgrad="raw")),
        (lambda: adamjax.amsgrad(1e-3, max_of="corrected"), dict(lr=1e-3, amsgrad="corrected")),
        (
            lambda: adamjax.adam(1e-3, nesterov=True, eps_mode="hat"),
            dict(lr=1e-3, hat=True),
        ),
    ],
    ids=[
        "adamw",
        "adam_options",
        "adam_hat_eps_root",
        "amsgrad_raw",
        "amsgrad_corrected",
        "nesterov",
    ],
)
def test_adam_and_amsgrad_metrics_match_numpy(make, options):
    with jax.enable_x64(True):
        r = run(with_diagnostics(make()))
    expected, _ = adam_expected(r, **options)
    expected.update(ref.global_metrics(r.grads, r.updates, r.params))
    assert_metrics(r.metrics, expected)
    assert int(r.metrics["step"]) == r.t


def test_nadam_adamax_and_radam_metrics_match_numpy():
    with jax.enable_x64(True):
        nadam = run(with_diagnostics(adamjax.nadam(2e-3)))
        adamax = run(with_diagnostics(adamjax.adamax(2e-3)))
        keras_adamax = run(with_diagnostics(adamjax.adamax(2e-3, eps=1e-3, eps_mode="denominator")))
        radams = {t: run(with_diagnostics(adamjax.radam(1e-3)), steps=t) for t in (4, 12)}
    # NAdam: Adam's moments; m_hat is the moving average's own bias correction.
    assert_metrics(nadam.metrics, adam_expected(nadam, lr=2e-3, kind=adamjax.ScaleByNadamState)[0])
    for r, eps in ((adamax, 0.0), (keras_adamax, 1e-3)):
        s = find(r.state, adamjax.ScaleByAdamaxState)
        m_hat = {n: s.mu[n] / (1 - 0.9**r.t) for n in SHAPES}
        eta = {n: 2e-3 / (s.nu[n] + eps) for n in SHAPES}
        assert_metrics(r.metrics, ref.pooled(eta, m_hat, s.nu))
    b2 = 0.999
    for t, r in radams.items():
        rho_inf = 2 / (1 - b2) - 1
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        ratio = (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
        rect = np.sqrt(ratio) if rho > 4 else 0.0
        s = find(r.state, adamjax.ScaleByRadamState)
        c2 = 1 - b2**t
        if rho > 5:  # torch's threshold and eps-hat form
            eta = {n: rect * 1e-3 * np.sqrt(c2) / (np.sqrt(s.nu[n]) + 1e-8) for n in SHAPES}
        else:
            eta = {n: np.full(SHAPES[n], 1e-3) for n in SHAPES}
        expected = ref.pooled(
            eta, {n: s.mu[n] / (1 - 0.9**t) for n in SHAPES}, {n: s.nu[n] / c2 for n in SHAPES}
        )
        expected["radam/rectification"] = rect if rho > 5 else 0.0
        assert_metrics(r.metrics, expected)
    # One run in each phase.
    assert float(radams[4].metrics["radam/rectification"]) == 0.0
    assert float(radams[12].metrics["radam/rectification"]) > 0.0


@pytest.mark.parametrize("amsbound", [False, True])
def test_adabound_metrics_match_numpy(amsbound):
    # Bounds chosen so that some entries are clipped at each bound and some are not.
    lr, final, gamma, b1, b2, eps = 3e-3, 0.01, 0.1, 0.9, 0.999, 1e-8
    with jax.enable_x64(True):
        r = run(
            with_diagnostics(adamjax.adabound(lr, final_lr=final, gamma=gamma, amsbound=amsbound))
        )
    s = find(r.state, adamjax.ScaleByAdaBoundState)
    t = r.t
    c1, c2 = 1 - b1**t, 1 - b2**t
    lower, upper = final * (1 - 1 / (gamma * t + 1)), final * (1 + 1 / (gamma * t))
    used = s.nu_max if amsbound else s.nu
    step = {n: lr * np.sqrt(c2) / c1 / (np.sqrt(used[n]) + eps) for n in SHAPES}
    eta = {n: np.clip(step[n], lower, upper) * c1 for n in SHAPES}
    v_hat = {n: used[n] / c2 for n in SHAPES}
    expected = ref.pooled(eta, {n: s.mu[n] / c1 for n in SHAPES}, v_hat)
    expected["adabound/lower_bound"], expected["adabound/upper_bound"] = lower, upper
    low = {n: step[n] < lower for n in SHAPES}
    high = {n: step[n] > upper for n in SHAPES}
    expected["adabound/lower_clipped_fraction"] = ref.fraction(low)
    expected["adabound/upper_clipped_fraction"] = ref.fraction(high)
    if amsbound:
        active = {n: s.nu_max[n] > s.nu[n] for n in SHAPES}
        expected["amsgrad/active_fraction"] = ref.fraction(active)
    assert_metrics(r.metrics, expected)
    # The problem clips entries at both bounds and leaves others alone.
    low_frac = expected["adabound/lower_clipped_fraction"]
    high_frac = expected["adabound/upper_clipped_fraction"]
    assert low_frac > 0 and high_frac > 0 and low_frac + high_frac < 1


def test_adafactor_metrics_match_numpy():
    lr = 1e-2
    with jax.enable_x64(True):
        tx = adamjax.adafactor(lr, min_dim_size_to_factor=2, clipping_threshold=0.1)
        r = run(with_diagnostics(tx))
    s = find(r.state, adamjax.ScaleByFactoredRmsState)
    # The paper's V = R C / (1^T R), with R and C the row and column sums of the EMA of G^2:
    # the state keeps their means, v_col over the short axis (rows) and v_row over the long one.
    rows, cols = SHAPES["w"][0], SHAPES["w"][1]
    big_r, big_c = s.v_col["w"] * cols, s.v_row["w"] * rows
    v_hat = {"w": np.outer(big_r, big_c) / big_r.sum(), "b": s.v["b"]}
    eta = {n: lr / np.sqrt(v_hat[n]) for n in SHAPES}
    expected = ref.pooled(eta, None, v_hat)
    u = {n: r.grads[n] / np.sqrt(v_hat[n]) for n in SHAPES}
    factors = [max(1.0, np.sqrt(np.mean(u[n] ** 2)) / 0.1) for n in SHAPES]
    expected["adafactor/clip_factor"] = max(factors)
    assert_metrics(r.metrics, expected, rtol=1e-10)
    assert "m_hat/mean_abs" not in r.metrics
    assert max(factors) > 1  # the threshold was chosen so that the update is clipped


def test_histogram_and_per_leaf_metrics_match_numpy():
    bins, span = 6, (1e-5, 1e-1)
    with jax.enable_x64(True):
        tx = adamjax.adamw(3e-3, weight_decay=1e-2)
        r = run(with_diagnostics(tx, per_leaf=True, histogram_bins=bins, histogram_range=span))
    _, eta = adam_expected(r, lr=3e-3)
    edges = ref.log_edges(bins, *span)
    np.testing.assert_allclose(r.metrics["effective_lr/histogram_edges"], edges, rtol=1e-15)
    np.testing.assert_array_equal(r.metrics["effective_lr/histogram"], ref.histogram(eta, edges))
    # The spread of step sizes fills more than one bin.
    assert (r.metrics["effective_lr/histogram"] > 0).sum() >= 2
    s = find(r.state, adamjax.ScaleByAdamState)
    for n in SHAPES:

        def one(tree: dict, n: str = n) -> dict:
            return {n: tree[n]}

        m_hat = one({k: s.mu[k] / (1 - 0.9**r.t) for k in SHAPES})
        v_hat = one({k: s.nu[k] / (1 - 0.999**r.t) for k in SHAPES})
        expected = ref.pooled(one(eta), m_hat, v_hat)
        expected.update(ref.global_metrics(one(r.grads), one(r.updates), one(r.params)))
        expected["effective_lr/histogram"] = ref.histogram(one(eta), edges)
        assert_metrics({k[len(f"leaf/{n}/") :]: x for k, x in r.metrics.items()
                        if k.startswith(f"leaf/{n}/")}, expected)  # fmt: skip


def test_non_finite_gradients_and_missing_params():
    tx = with_diagnostics(optax.sgd(0.1))
    params = {"w": jnp.ones(4), "b": jnp.ones(2)}
    grads = {"w": jnp.array([1.0, jnp.nan, 2.0, jnp.inf]), "b": jnp.array([0.5, -0.5])}
    _updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
    m = diagnostics(state)
    assert float(m["nonfinite_grad_fraction"]) == pytest.approx(2 / 6)
    assert np.isnan(m["grad_norm"]) and np.isnan(m["update_norm"])
    assert float(m["param_norm"]) == pytest.approx(np.sqrt(6))
    # No params passed: the parameter norm is NaN, everything else is still reported.
    clean = {"w": jnp.full(4, 3.0), "b": jnp.zeros(2)}
    _, state = jax.jit(tx.update)(clean, tx.init(params))
    m = diagnostics(state)
    assert np.isnan(m["param_norm"]) and float(m["grad_norm"]) == pytest.approx(6.0)
    assert float(m["update_norm"]) == pytest.approx(0.6, rel=1e-6)
    # Only generic metrics for a transformation without Adam-family state.
    assert set(m) == {
        "step", "grad_norm", "update_norm", "param_norm", "update_param_ratio",
        "nonfinite_grad_fraction",
    }  # fmt: skip


# Edges: empty trees, 0-size leaves, non-finite gradients, histogram bins ------------------------

# What a metric over no entries at all is: norms and fractions 0, means and extrema NaN.
ZERO_WITHOUT_ENTRIES = {
    "grad_norm", "update_norm", "param_norm", "update_param_ratio", "nonfinite_grad_fraction",
    "amsgrad/active_fraction", "adabound/lower_clipped_fraction",
    "adabound/upper_clipped_fraction", "swats/phase", "effective_lr/histogram",
}  # fmt: skip
NAN_WITHOUT_ENTRIES = {
    "effective_lr/mean", "effective_lr/min", "effective_lr/max", "m_hat/mean_abs", "v_hat/mean",
}  # fmt: skip
EDGE_CASES = {
    "adam": lambda: adamjax.adam(1e-3),
    "amsbound": lambda: adamjax.adabound(1e-3, amsbound=True),
    "swats": lambda: adamjax.swats(1e-3),
    "adafactor": lambda: adamjax.adafactor(1e-3),
    "radam": lambda: adamjax.radam(1e-3),
    "sgd": lambda: optax.sgd(0.1),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_empty_tree_reports_the_same_keys_with_defined_values(case):
    tx = with_diagnostics(EDGE_CASES[case](), histogram_bins=3)
    params = {"w": jnp.ones((2, 3))}
    _, full = jax.jit(tx.update)({"w": jnp.full((2, 3), 0.5)}, tx.init(params), params)
    for update in (tx.update, jax.jit(tx.update)):
        updates, state = update({}, tx.init({}), {})
        m = diagnostics(state)
        assert updates == {} and set(m) == set(diagnostics(full)), case
        assert int(m["step"]) == 1
        for key, value in m.items():
            if key in ZERO_WITHOUT_ENTRIES:
                np.testing.assert_array_equal(value, np.zeros_like(value), err_msg=key)
            elif key in NAN_WITHOUT_ENTRIES:
                assert np.isnan(value), key
            else:  # the piece's own scalars (bounds, rectification, switch step, edges)
                assert np.all(np.isfinite(value)), key


def test_empty_tree_without_params_has_an_unknown_param_norm():
    tx = with_diagnostics(adamjax.adam(1e-3))
    _, state = jax.jit(tx.update)({}, tx.init({}))
    m = diagnostics(state)
    assert np.isnan(m["param_norm"]) and np.isnan(m["update_param_ratio"])
    assert float(m["grad_norm"]) == 0.0 and float(m["nonfinite_grad_fraction"]) == 0.0


def test_zero_size_leaves_add_nothing_and_keep_their_keys():
    def metrics(params):
        tx = with_diagnostics(adamjax.amsgrad(1e-3), per_leaf=True, histogram_bins=4)
        grads = {n: jnp.linspace(-1.0, 2.0, p.size).reshape(p.shape) for n, p in params.items()}
        _, state = jax.jit(tx.update)(grads, tx.init(params), params)
        return diagnostics(state)

    w = jnp.arange(1.0, 4.0)
    base = metrics({"w": w})
    with_empty = metrics({"w": w, "empty": jnp.zeros((0, 4)), "none": jnp.zeros((0,))})
    only_empty = metrics({"empty": jnp.zeros((0, 4))})
    for key, value in base.items():
        np.testing.assert_array_equal(with_empty[key], value, err_msg=key)
    for leaf in ("leaf/empty/", "leaf/none/"):
        own = {k[len(leaf) :]: x for k, x in with_empty.items() if k.startswith(leaf)}
        assert set(own) == {k[len("leaf/w/") :] for k in with_empty if k.startswith("leaf/w/")}
        assert float(own["grad_norm"]) == 0.0 and float(own["nonfinite_grad_fraction"]) == 0.0
        assert float(own["amsgrad/active_fraction"]) == 0.0
        assert np.isnan(own["effective_lr/min"]) and np.isnan(own["v_hat/mean"])
        np.testing.assert_array_equal(own["effective_lr/histogram"], np.zeros(4))
    # A tree with only 0-size leaves reports what an empty tree reports.
    assert {k for k in only_empty if not k.startswith("leaf/")} == set(base) - {
        k for k in base if k.startswith("leaf/")
    }
    assert float(only_empty["update_param_ratio"]) == 0.0
    assert np.isnan(only_empty["effective_lr/max"]) and np.isnan(only_empty["m_hat/mean_abs"])


def test_update_param_ratio_is_zero_only_when_nothing_moved():
    tx = with_diagnostics(optax.sgd(0.5))
    zeros = {"w": jnp.zeros(3)}
    ratios = []
    for params, grads in ((zeros, zeros), (zeros, {"w": jnp.ones(3)}), ({"w": jnp.ones(3)}, zeros)):
        _, state = jax.jit(tx.update)(grads, tx.init(params), params)
        ratios.append(float(diagnostics(state)["update_param_ratio"]))
    assert ratios == [0.0, np.inf, 0.0]


@pytest.mark.parametrize(
    "w, b",
    [
        ([np.inf, 1.0, np.inf, 2.0, 3.0, np.inf, 0.0, 1.0], [1.0, 2.0, 3.0, 4.0]),
        ([-np.inf, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [1.0, -np.inf, 3.0, 4.0]),
        ([np.nan, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [1.0, 2.0, 3.0, 4.0]),
        ([np.nan, np.inf, -np.inf, 3.0, 4.0, 5.0, 6.0, 7.0], [np.inf, 2.0, -np.inf, 4.0]),
        # Finite entries whose squares overflow: the norm is inf, the fraction still 0.
        ([3e30, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [1.0, 2.0, 3.0, 4.0]),
    ],
    ids=["plus_inf_only", "minus_inf_only", "nan_only", "mixed", "overflowing_finite"],
)
def test_nonfinite_grad_fraction_counts_nan_and_both_infinities(w, b):
    tx = with_diagnostics(optax.sgd(0.1), per_leaf=True)
    params = {"w": jnp.ones(8), "b": jnp.ones(4)}
    grads = {"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32)}
    _, state = jax.jit(tx.update)(grads, tx.init(params), params)
    m = diagnostics(state)
    bad = {n: int(np.sum(~np.isfinite(np.asarray(x, np.float64)))) for n, x in (("w", w), ("b", b))}
    # The counts are exact; XLA may divide by the constant size as a multiply (one ulp).
    fractions = {"": (bad["w"] + bad["b"]) / 12, "leaf/w/": bad["w"] / 8, "leaf/b/": bad["b"] / 4}
    for prefix, fraction in fractions.items():
        np.testing.assert_allclose(m[prefix + "nonfinite_grad_fraction"], fraction, rtol=1e-6)
    assert not np.isfinite(m["grad_norm"])


def test_histogram_value_on_an_edge_falls_in_the_bin_above():
    """Adam with b1 = b2 = eps = 0 and learning rate 1 steps by eta = 1/|g| after one update:
    powers of two, exact in float32, as are the edges 2**-4, ..., 2**4 (8 bins)."""
    tx = with_diagnostics(
        adamjax.adam(1.0, b1=0.0, b2=0.0, eps=0.0), histogram_bins=8, histogram_range=(2**-4, 2**4)
    )
    eta = 2.0 ** np.arange(-5, 6)  # one below the range, one on each of the 9 edges, one above
    grads = {"w": jnp.asarray(np.append(1 / eta, np.nan), jnp.float32)}  # and a NaN (no bin)
    _, state = jax.jit(tx.update)(grads, tx.init({"w": jnp.ones(12)}), {"w": jnp.ones(12)})
    m = diagnostics(state)
    edges = 2.0 ** np.arange(-4, 5)
    np.testing.assert_array_equal(m["effective_lr/histogram_edges"], edges)
    # bin k holds edges[k] <= eta < edges[k+1]; the outer bins are open; NaN counts nowhere.
    counts = np.array([2, 1, 1, 1, 1, 1, 1, 3])  # [2**-5, 2**-4], 2**-3 ... 2**2, [2**3 ... 2**5]
    np.testing.assert_array_equal(m["effective_lr/histogram"], np.float32(counts) / np.float32(12))
    np.testing.assert_allclose(
        m["effective_lr/histogram"], ref.histogram({"w": np.append(eta, np.nan)}, edges), rtol=1e-7
    )


def test_histogram_edges_are_the_range_exactly():
    # np.logspace misses both 1e-5 and 0.05 by an ulp in float64.
    span = (1e-5, 0.05)
    assert tuple(ref.log_edges(5, *span)[[0, -1]]) != span
    with jax.enable_x64(True):
        tx = with_diagnostics(adamjax.adam(1e-3), histogram_bins=5, histogram_range=span)
        _, state = tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}), {"w": jnp.ones(2)})
        edges = np.asarray(diagnostics(state)["effective_lr/histogram_edges"])
    assert edges.dtype == np.float64 and (edges[0], edges[-1]) == span
    np.testing.assert_allclose(edges, ref.log_edges(5, *span), rtol=1e-15)


# optax.MultiSteps, on either side of the wrapper ------------------------------------------------


def test_multi_steps_metrics_keep_the_last_applied_update():
    k = 3
    inside = with_diagnostics(optax.MultiSteps(adamjax.amsgrad(1e-2), k).gradient_transformation())
    outside = optax.MultiSteps(with_diagnostics(adamjax.amsgrad(1e-2)), k)
    params = {n: jnp.ones(s) for n, s in SHAPES.items()}
    s_in, s_out = inside.init(params), outside.init(params)
    previous = diagnostics(s_in)
    rng = np.random.default_rng(3)
    for micro in range(8):
        grads = {n: jnp.asarray(g, jnp.float32) for n, g in gradient(rng, micro).items()}
        _, s_in = jax.jit(inside.update)(grads, s_in, params)
        _, s_out = jax.jit(outside.update)(grads, s_out, params)
        m_in, m_out = diagnostics(s_in), diagnostics(s_out)
        applied = micro % k == k - 1
        assert int(m_in["step"]) == int(m_out["step"]) == (micro + 1) // k
        for key, value in m_in.items():
            assert np.all(np.isfinite(value)), (micro, key)
            if not applied:  # an accumulation step changes nothing
                np.testing.assert_array_equal(value, previous[key], err_msg=f"{micro} {key}")
            elif key not in ("grad_norm", "nonfinite_grad_fraction"):
                np.testing.assert_allclose(value, m_out[key], rtol=1e-5, err_msg=f"{micro} {key}")
        if applied:  # inside, the gradient metrics are of the micro-batch that applied it
            np.testing.assert_allclose(m_in["grad_norm"], ref.norm(grads), rtol=1e-6)
        previous = m_in


def test_multi_steps_skipped_step_keeps_the_metrics():
    multi = optax.MultiSteps(adamjax.adam(1e-2), 1, should_skip_update_fn=optax.skip_not_finite)
    tx = with_diagnostics(multi.gradient_transformation())
    params = {"w": jnp.ones(3)}
    _, state = jax.jit(tx.update)({"w": jnp.asarray([1.0, 2.0, 3.0])}, tx.init(params), params)
    before = diagnostics(state)
    _, state = jax.jit(tx.update)({"w": jnp.asarray([1.0, jnp.nan, 3.0])}, state, params)
    assert int(before["step"]) == 1 and float(before["grad_norm"]) > 0
    for key, value in diagnostics(state).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_multi_steps_object_is_refused_with_the_fix():
    multi = optax.MultiSteps(adamjax.adam(1e-3), 4)
    with pytest.raises(TypeError) as info:
        with_diagnostics(multi)
    message = str(info.value)
    assert message.startswith("with_diagnostics: tx must be an optax.GradientTransformation, got")
    assert "optax.MultiSteps object" in message
    assert "multi_steps.gradient_transformation()" in message


def test_float32_metrics_match_numpy():
    r = run(with_diagnostics(adamjax.adamw(3e-3, weight_decay=1e-2)))
    expected, _ = adam_expected(r, lr=3e-3)
    expected.update(ref.global_metrics(r.grads, r.updates, r.params))
    assert all(np.asarray(x).dtype in (np.float32, np.int32) for x in r.metrics.values())
    # float32 rounds 1 - 0.999**12 (taken by pow, as in optax) to ~1e-5 relative.
    assert_metrics(r.metrics, expected, rtol=3e-5)


def test_eager_and_jit_agree():
    tx = adamjax.amsgrad(1e-3)
    eager = run(with_diagnostics(tx, per_leaf=True), jit=False)
    jitted = run(with_diagnostics(tx, per_leaf=True))
    assert set(eager.metrics) == set(jitted.metrics)
    for key in eager.metrics:
        # Compiled and eager float32 differ by a few roundings (fusion, pow).
        np.testing.assert_allclose(jitted.metrics[key], eager.metrics[key], rtol=1e-5, err_msg=key)


def test_wrapper_returns_exactly_the_inner_updates_and_state():
    tx = adamjax.adamw(1e-3, weight_decay=1e-2)
    wrapped = with_diagnostics(tx, per_leaf=True, histogram_bins=4)
    rng = np.random.default_rng(1)
    params = {n: jnp.asarray(rng.normal(size=s), jnp.float32) for n, s in SHAPES.items()}
    s_plain, s_wrapped = tx.init(params), wrapped.init(params)
    for k in range(5):
        grads = {n: jnp.asarray(g, jnp.float32) for n, g in gradient(rng, k).items()}
        u_plain, s_plain = jax.jit(tx.update)(grads, s_plain, params)
        u_wrapped, s_wrapped = jax.jit(wrapped.update)(grads, s_wrapped, params)
        for a, b in zip(
            jax.tree.leaves((u_plain, s_plain)),
            jax.tree.leaves((u_wrapped, s_wrapped.inner_state)),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)


# Learning-rate discovery: chains, inject_hyperparams, schedules, multi_transform ---------------


def test_learning_rate_is_found_through_wrappers_and_schedules():
    schedule = optax.linear_schedule(1e-2, 1e-3, 10)
    t = 12
    cases = {
        "schedule": (adamjax.adam(schedule), schedule(t - 1)),
        "clipped": (optax.chain(optax.clip_by_global_norm(0.5), adamjax.adamw(2e-3)), 2e-3),
        "inject": (optax.inject_hyperparams(adamjax.adam)(learning_rate=schedule), schedule(t - 1)),
        "inject_optax_lr": (
            optax.inject_hyperparams(
                lambda learning_rate: optax.chain(
                    adamjax.scale_by_adam(), optax.scale_by_learning_rate(learning_rate)
                )
            )(learning_rate=5e-3),
            5e-3,
        ),
        "argument": (
            optax.chain(adamjax.scale_by_adam(), optax.scale_by_learning_rate(4e-3)),
            4e-3,
        ),
        "paper_adamw": (
            adamjax.adamw(
                1e-3,
                weight_decay=1e-4,
                weight_decay_scaling="schedule",
                schedule_multiplier=optax.cosine_decay_schedule(1.0, 20),
            ),
            1e-3 * optax.cosine_decay_schedule(1.0, 20)(t - 1),
        ),
    }
    with jax.enable_x64(True):
        for name, (tx, lr) in cases.items():
            extra = {"learning_rate": 4e-3} if name == "argument" else {}
            r = run(with_diagnostics(tx, **extra), steps=t)
            expected, _ = adam_expected(r, lr=float(lr))
            assert_metrics(r.metrics, expected, rtol=1e-6)  # schedules are float32 in optax
            # Global metrics see the raw gradients, before the clip.
            assert_metrics(r.metrics, ref.global_metrics(r.grads, r.updates, r.params))


def test_unknown_learning_rate_reports_the_preconditioner():
    with jax.enable_x64(True):
        tx = optax.chain(adamjax.scale_by_adam(), optax.scale(-1e-3))
        r = run(with_diagnostics(tx))
    expected, _ = adam_expected(r, lr=1.0)
    renamed = {k.replace("effective_lr", "preconditioner"): x for k, x in expected.items()}
    assert_metrics(r.metrics, renamed)
    assert not any(k.startswith("effective_lr") for k in r.metrics)


def test_multi_transform_pools_states_with_their_own_learning_rates():
    tx = optax.multi_transform(
        {"fast": adamjax.adam(1e-2), "slow": adamjax.amsgrad(1e-4)}, {"w": "fast", "b": "slow"}
    )
    with jax.enable_x64(True):
        r = run(with_diagnostics(tx, per_leaf=True))
    fast = find(r.state, adamjax.ScaleByAdamState)
    slow = find(r.state, adamjax.ScaleByAmsgradState)
    c2 = 1 - 0.999**r.t
    eta = {
        "w": 1e-2 / (np.sqrt(fast.nu["w"] / c2) + 1e-8),
        "b": 1e-4 / (np.sqrt(slow.nu_max["b"] / c2) + 1e-8),
    }
    flat = np.concatenate([eta["w"].ravel(), eta["b"].ravel()])
    np.testing.assert_allclose(r.metrics["effective_lr/mean"], flat.mean(), rtol=1e-12)
    np.testing.assert_allclose(r.metrics["effective_lr/max"], flat.max(), rtol=1e-12)
    np.testing.assert_allclose(r.metrics["leaf/b/effective_lr/min"], eta["b"].min(), rtol=1e-12)
    # AMSGrad's fraction is over the entries AMSGrad owns.
    active = slow.nu_max["b"] > slow.nu["b"]
    np.testing.assert_allclose(r.metrics["amsgrad/active_fraction"], active.mean(), rtol=1e-12)


# Variant signals on problems where they must move ---------------------------------------------


def test_amsgrad_max_becomes_active_when_v_decreases():
    tx = with_diagnostics(adamjax.amsgrad(1e-3))
    params = {"w": jnp.zeros(50)}
    state = tx.init(params)
    step = jax.jit(tx.update)
    rng = np.random.default_rng(0)
    fractions = []
    for k in range(40):
        # Growing gradients, then a sudden drop: v decays below its running max.
        scale = (1 + k) if k < 20 else 0.01
        _updates, state = step(
            {"w": jnp.asarray(rng.normal(size=50) * scale, jnp.float32)}, state, params
        )
        fractions.append(float(diagnostics(state)["amsgrad/active_fraction"]))
    assert max(fractions[:20]) < 0.5
    assert min(fractions[21:]) == 1.0


def test_swats_phase_flips_on_the_family_problem():
    from test_switching import TORCH_RULE, golden_hyper, load_golden

    g = load_golden()
    with jax.enable_x64(True):
        tx = with_diagnostics(adamjax.swats(**golden_hyper(g), **TORCH_RULE))
        h, c, noise = g["h__w"], g["c__w"], g["noise__w"]
        params = {"w": jnp.asarray(g["p0__w"])}
        state = tx.init(params)
        step = jax.jit(tx.update)
        rows = []
        for k in range(len(noise)):
            grads = {"w": h * (np.asarray(params["w"]) - c) + noise[k]}
            updates, state = step(grads, state, params)
            params = optax.apply_updates(params, updates)
            rows.append(
                (jax.device_get(diagnostics(state)), find(state, adamjax.ScaleBySwatsState))
            )
    phase = np.array([m["swats/phase"] for m, _ in rows])
    switch = int(rows[-1][0]["swats/switch_step"])
    assert switch == 179  # the switch torch-optimizer makes on this problem (test_switching)
    assert (phase[: switch - 1] == 0).all() and (phase[switch - 1 :] == 1).all()
    assert (np.array([m["swats/switch_step"] for m, _ in rows[: switch - 1]]) == -1).all()
    m, s = rows[-1]
    assert float(m["swats/sgd_rate"]) == float(s.sgd_rate) > 0
    # After the switch every entry steps with the SGD step size; the switching step itself was
    # still an Adam step.
    for key in ("mean", "min", "max"):
        assert float(m[f"effective_lr/{key}"]) == pytest.approx(float(s.sgd_rate), rel=1e-12)
    m_switch, s_switch = rows[switch - 1]
    lr, eps = golden_hyper(g)["learning_rate"], golden_hyper(g)["eps"]
    c2 = 1 - golden_hyper(g)["b2"] ** switch
    adam_eta = lr * np.sqrt(c2) / (np.sqrt(s_switch.nu["w"]) + eps)  # torch's eps-hat form
    assert float(m_switch["effective_lr/max"]) == pytest.approx(adam_eta.max(), rel=1e-12)


# Integration: jit, nnx, History ---------------------------------------------------------------


def test_inside_an_nnx_train_step():
    from flax import nnx

    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, with_diagnostics(adamjax.adamw(1e-2)), wrt=nnx.Param)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 3)), jnp.float32)
    y = jnp.ones((8, 2))

    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return jnp.mean((model(x) - y) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss, grads, diagnostics(optimizer.opt_state)

    for _ in range(3):
        _loss, grads, metrics = train_step(model, optimizer, x, y)
    flat = jax.tree.leaves(grads)
    assert float(metrics["grad_norm"]) == pytest.approx(
        float(np.sqrt(sum(np.sum(np.asarray(g) ** 2) for g in flat))), rel=1e-6
    )
    assert int(metrics["step"]) == 3
    assert 0 < float(metrics["effective_lr/min"]) <= float(metrics["effective_lr/max"])
    # Outside the step, on the optimizer's stored state, too.
    assert int(diagnostics(optimizer.opt_state)["step"]) == 3


def test_history_to_dict_summary_and_plot(tmp_path):
    tx = with_diagnostics(adamjax.adabound(1e-3, amsbound=True))
    params = {n: jnp.zeros(s) for n, s in SHAPES.items()}
    state = tx.init(params)
    rng = np.random.default_rng(0)
    history = adamjax.History()
    for k in range(8):
        grads = {n: jnp.asarray(g, jnp.float32) for n, g in gradient(rng, k).items()}
        _, state = jax.jit(tx.update)(grads, state, params)
        history.append(diagnostics(state), loss=float(k))
    data = history.to_dict()
    assert len(history) == 8 and data["step"].tolist() == list(range(1, 9))
    assert data["loss"].shape == (8,) and data["effective_lr/min"].dtype == np.float32
    table = history.summary(["grad_norm", "loss"])
    assert table.splitlines()[2].startswith("| grad_norm |") and "| loss | 0 | 7 | 0 | 7 |" in table

    fig = history.plot(tmp_path / "d.png")
    png = (tmp_path / "d.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # Saved at 2x (220 dpi): the IHDR chunk holds the width and height in pixels.
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == tuple(round(220 * x) for x in fig.get_size_inches())
    assert all(text.get_fontsize() >= 9 for ax in fig.axes for text in ax.get_legend().get_texts())
    # effective lr, gradient norm, update magnitude, AMSGrad, AdaBound.
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 5, titles
    assert titles[3].startswith("AMSGrad") and titles[4].startswith("AdaBound")
    for ax in fig.axes:
        assert ax.get_xlabel() == "step" and ax.get_ylabel()
        assert len(ax.get_lines()) >= 1


def test_history_extend_takes_scanned_metrics_and_plot_needs_data():
    tx = with_diagnostics(adamjax.adam(1e-3))
    params = {"w": jnp.zeros(3)}

    def body(state, g):
        _, state = tx.update({"w": g}, state, params)
        return state, diagnostics(state)

    grads = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float32)
    _, stacked = jax.lax.scan(body, tx.init(params), grads)
    history = adamjax.History()
    with pytest.raises(ValueError, match="nothing recorded"):
        history.plot()
    history.extend(stacked)
    assert history.to_dict()["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert len(history.plot().axes) == 3
    with pytest.raises(ValueError, match="leading"):
        history.extend({"a": np.zeros(3), "b": np.zeros(4)})


def test_history_summary_names_a_metric_that_is_not_a_number():
    history = adamjax.History()
    for k in range(3):
        history.append({"grad_norm": np.float32(k + 1)}, phase="warmup", flag=k > 0, z=1j * k)
    assert "| flag | 0 | 1 | 0 | 1 |" in history.summary(["grad_norm", "flag"])

    def fails(keys, error, message):
        with pytest.raises(error, match=re.escape(message)):
            history.summary(keys)

    phase = "History.summary: metric 'phase' holds values of dtype <U6 (e.g. 'warmup'), not real"
    fails(["grad_norm", "phase"], TypeError, phase)
    fails(["z"], TypeError, "History.summary: metric 'z' holds values of dtype complex128")
    # Selected by keys=None too: a metric the user recorded is never dropped silently.
    fails(None, TypeError, phase)
    fails(["loss"], KeyError, "History.summary: no metric 'loss' was recorded")
    history = adamjax.History()
    history.append({"grad_norm": np.float32(1), "effective_lr/histogram": np.zeros(4)})
    fails(["effective_lr/histogram"], TypeError, "'effective_lr/histogram' is not a scalar per")
    assert "effective_lr/histogram" not in history.summary()  # histograms are not listed


def test_no_reductions_without_the_wrapper():
    """The pieces only record scalars: an unwrapped step has no reduction at all."""
    params = {n: jnp.zeros(s) for n, s in SHAPES.items()}
    for tx in (
        adamjax.adamw(1e-3),
        adamjax.amsgrad(1e-3),
        adamjax.nadam(),
        adamjax.radam(),
        adamjax.adamax(),
        adamjax.adabound(amsbound=True),
    ):
        text = jax.jit(tx.update).lower(params, tx.init(params), params).as_text()
        assert "reduce" not in text
        wrapped = with_diagnostics(tx)
        text = jax.jit(wrapped.update).lower(params, wrapped.init(params), params).as_text()
        assert "reduce" in text


def test_every_k_computes_on_multiples_of_k_and_keeps_the_metrics_between():
    params = {"w": jnp.linspace(-1.0, 1.0, 6), "b": jnp.ones(3)}
    each, sparse = (
        with_diagnostics(adamjax.adam(1e-2)),
        with_diagnostics(adamjax.adam(1e-2), every=3),
    )
    s_each, s_sparse = each.init(params), sparse.init(params)
    step_each, step_sparse = jax.jit(each.update), jax.jit(sparse.update)
    latest = jax.tree.map(np.asarray, diagnostics(s_sparse))
    for t in range(1, 8):
        grads = jax.tree.map(lambda p, t=t: jnp.sin(t * p) + 0.1 * t, params)
        u_each, s_each = step_each(grads, s_each, params)
        u_sparse, s_sparse = step_sparse(grads, s_sparse, params)
        np.testing.assert_array_equal(u_each["w"], u_sparse["w"])  # the updates never change
        m_each, m_sparse = diagnostics(s_each), diagnostics(s_sparse)
        if t % 3 == 0:
            latest = jax.tree.map(np.asarray, m_each)
        assert set(m_sparse) == set(m_each)
        for key, value in m_sparse.items():
            # The reducing steps run the update again in their own kernels, which XLA may
            # round differently by an ulp (measured: 2e-7 relative in v_hat/mean).
            np.testing.assert_allclose(value, latest[key], rtol=1e-6, err_msg=f"step {t}: {key}")
        assert int(m_sparse["step"]) == 3 * (t // 3)
        params = optax.apply_updates(params, u_each)


def test_one_conditional_for_the_whole_tree():
    """The non-finite count is decided once for all the leaves, not per leaf (compile time)."""
    params = {f"w{i}": jnp.ones((3, i + 1)) for i in range(12)}
    # With every: the branch of the norms (holding the count's) and the branch of the views.
    for kwargs, conditionals in ((dict(), 1), (dict(every=5), 3)):
        tx = with_diagnostics(adamjax.adam(1e-3), per_leaf=True, **kwargs)
        text = jax.jit(tx.update).lower(params, tx.init(params), params).compile().as_text()
        assert text.count(" conditional(") == conditionals, kwargs


def _compiled_train_step(tx, params, wrapped: bool = True) -> str:
    """The compiled text of a jitted step that donates its params and state."""

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, diagnostics(s) if wrapped else None

    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params), params)
    return lowered.compile().as_text()


def _param_shaped_copies(text: str, shape: str) -> int:
    return len(re.findall(rf"= f32\[{shape}\]\{{[^}}]*\}} copy\(", text))


@pytest.mark.parametrize("every", [1, 4])
def test_the_wrapped_step_copies_no_donated_buffer(every):
    """The step overwrites the donated params and moments in place. The reductions read the
    old params (and, with ``every``, the old moments), so XLA would copy each such buffer
    first unless the writes are ordered after the reductions; the wrapper orders them. The
    unwrapped step has no such copy either: a regression makes the count grow per leaf."""
    params = {k: jnp.ones((96, 160)) for k in "abcd"}
    for tx in (adamjax.adamw(1e-3, weight_decay=1e-2), adamjax.amsgrad(1e-3), optax.adam(1e-3)):
        text = _compiled_train_step(with_diagnostics(tx, every=every), params)
        assert _param_shaped_copies(text, "96,160") == 0, tx

    # The check can fail: a reduction of the old params with no order copies every leaf.
    def unordered(p, s, g):
        u, s = adamjax.adamw(1e-3).update(g, s, p)
        norm = sum(jnp.sum(x * x) for x in jax.tree.leaves(p))
        return optax.apply_updates(p, u), s, norm

    tx = adamjax.adamw(1e-3)
    lowered = jax.jit(unordered, donate_argnums=(0, 1)).lower(params, tx.init(params), params)
    assert _param_shaped_copies(lowered.compile().as_text(), "96,160") == 4


def test_every_k_branch_reads_only_the_step_inputs():
    """With ``every``, the steps that reduce nothing cost the inner update: the branches take
    the step's inputs and its new state, not its updates, so no param-shaped value is written
    out for them."""
    params = {k: jnp.ones((96, 160)) for k in "abc"}
    plain = _compiled_train_step(adamjax.adam(1e-3), params, wrapped=False)
    text = _compiled_train_step(with_diagnostics(adamjax.adam(1e-3), every=10), params)
    entry = text[text.index("ENTRY") :]
    conditional = [line for line in entry.splitlines() if " conditional(" in line]
    assert len(conditional) == 2  # norms and views; the non-finite count's is inside the first

    # Param-shaped values computed in the entry computation (not inside the branch): the
    # same number as for the unwrapped step (the moments and the new params).
    def computed(text: str) -> int:
        body = text[text.index("ENTRY") :]
        return len(re.findall(r"= f32\[96,160\]\{[^}]*\} fusion\(", body))

    assert computed(text) == computed(plain)


def test_per_leaf_nonfinite_fractions_with_one_conditional():
    tx = with_diagnostics(optax.sgd(0.1), per_leaf=True)
    params = {"a": jnp.ones(4), "b": jnp.ones(2), "c": jnp.zeros((0,))}
    grads = {"a": jnp.array([1.0, jnp.inf, 2.0, 3.0]), "b": jnp.ones(2), "c": jnp.zeros((0,))}
    _, state = jax.jit(tx.update)(grads, tx.init(params), params)
    m = diagnostics(state)
    assert float(m["leaf/a/nonfinite_grad_fraction"]) == 0.25
    assert float(m["leaf/b/nonfinite_grad_fraction"]) == 0.0
    assert float(m["leaf/c/nonfinite_grad_fraction"]) == 0.0
    assert float(m["nonfinite_grad_fraction"]) == pytest.approx(1 / 6)


# Validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(per_leaf=1), TypeError, "per_leaf must be True or False"),
        (dict(histogram_bins=0), ValueError, "histogram_bins must be an integer >= 1, got 0"),
        (dict(histogram_bins=2.5), TypeError, "histogram_bins must be an integer >= 1"),
        (dict(histogram_range=(0.0, 1.0)), ValueError, r"histogram_range must satisfy 0 < low"),
        (dict(histogram_range=(1.0, 0.1)), ValueError, r"histogram_range must satisfy 0 < low"),
        (dict(histogram_range="ab"), TypeError, "histogram_range must be a pair of numbers"),
        (dict(learning_rate=-1.0), ValueError, "learning_rate must be"),
        (dict(every=0), ValueError, "every must be an integer >= 1, got 0"),
        (dict(every=2.0), TypeError, "every must be an integer >= 1"),
    ],
)
def test_bad_options_fail_at_construction(kwargs, error, message):
    with pytest.raises(error, match=f"with_diagnostics: {message}"):
        with_diagnostics(adamjax.adam(), **kwargs)


def test_bad_transformation_and_missing_state():
    with pytest.raises(TypeError, match="with_diagnostics: tx must be an optax"):
        with_diagnostics(lambda g: g)
    tx = adamjax.adam()
    with pytest.raises(ValueError, match="diagnostics: opt_state holds no with_diagnostics"):
        diagnostics(tx.init({"w": jnp.zeros(2)}))


@pytest.mark.parametrize("size", [3000, 300_000])
def test_reductions_of_small_and_large_leaves_match_float64(size):
    """The pooled metrics of a tree with a small and a large leaf against float64 NumPy."""
    rng = np.random.default_rng(3)
    params = {"big": jnp.asarray(rng.normal(size=size), jnp.float32), "b": jnp.ones(5)}
    grads = {"big": jnp.asarray(rng.normal(size=size), jnp.float32), "b": jnp.arange(5.0)}
    tx = with_diagnostics(adamjax.adam(1e-2), per_leaf=True)
    updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
    metrics = diagnostics(state)
    adam = state.inner_state[0]
    flat = {k: np.concatenate([np.asarray(t[n], np.float64) for n in ("b", "big")])
            for k, t in (("g", grads), ("u", updates), ("p", params), ("m", adam.mu),
                         ("v", adam.nu))}  # fmt: skip
    v_hat = flat["v"] / (1 - 0.999)
    eta = 1e-2 / (np.sqrt(v_hat) + 1e-8)
    expected = {
        "grad_norm": np.linalg.norm(flat["g"]),
        "update_norm": np.linalg.norm(flat["u"]),
        "param_norm": np.linalg.norm(flat["p"]),
        "m_hat/mean_abs": np.mean(np.abs(flat["m"]) / (1 - 0.9)),
        "v_hat/mean": np.mean(v_hat),
        "effective_lr/mean": np.mean(eta),
        "effective_lr/min": np.min(eta),
        "effective_lr/max": np.max(eta),
        "leaf/big/grad_norm": np.linalg.norm(np.asarray(grads["big"], np.float64)),
    }
    for key, value in expected.items():
        np.testing.assert_allclose(metrics[key], value, rtol=2e-5, err_msg=key)
