r"""Reddi, Kale & Kumar's online problem on which Adam converges to the worst point and AMSGrad not.

On the interval :math:`\mathcal F = [-1, 1]` the loss at step :math:`t = 1, 2, \ldots` is linear,

.. math::

    f_t(x) = \begin{cases} 1010\,x & t \bmod 3 = 1 \\ -10\,x & \text{otherwise,} \end{cases}

so the gradient is +1010 once and -10 twice in every period of three. Their sum is positive, and
the best fixed point is :math:`x^* = -1`; every iterate is projected back onto the interval. This
is §3 of the paper, :math:`f_t = C x` or :math:`-x` with :math:`C = 101`, scaled by 10 (which
Adam's updates do not see). Adam's second moment forgets the rare large gradient within a step
or two, so the two small gradients, divided by a small :math:`\sqrt{\hat v_t}`, push x up by more
than the large one pushes it down: Adam drifts to :math:`x = +1`, the *worst* point. AMSGrad
divides by the running maximum of :math:`v_t`, which keeps the large gradient's scale, and goes
to -1. Run it from the repository root::

    python examples/amsgrad_counterexample.py            # 10^6 rounds, 6-10 s on 2 CPU cores
    python examples/amsgrad_counterexample.py --schedule constant
    python examples/amsgrad_counterexample.py --period 101 --b1 0.9 --b2 0.99 --learning-rate 1

Settings (all flags). The step size is :math:`\alpha_t = \alpha/\sqrt t` (``--schedule
inverse_sqrt``, an optax schedule of the 0-based count :math:`t - 1`) with :math:`\alpha = 0.1`,
as in the paper's analysis; ``--schedule constant`` keeps :math:`\alpha`. The moments follow the
paper's Theorem 1 for this problem, :math:`\beta_1 = 0` and :math:`\beta_2 = 1/(1 + C^2) =
1/(1 + 101^2) \approx 9.8 \cdot 10^{-5}`; ``eps`` is the default 1e-8 and x starts at 0.
The paper's synthetic *experiment* (§5) uses :math:`\beta_1 = 0.9, \beta_2 = 0.99` but with the
large gradient every 101 steps, not every 3; the last command above runs it.

It writes ``amsgrad_counterexample.png`` (:math:`x_t` and the average regret :math:`R_t/t`
against t, log axes) and ``metrics.json``, and prints the final values and the paths of both
files. ``--quick`` runs 3,000
steps, for tests. Three optimizers run: ``adamjax.adam``, ``adamjax.amsgrad`` (maximum of the
raw :math:`v_t`, as torch) and ``adamjax.amsgrad(max_of="corrected")`` (maximum of the
bias-corrected :math:`\hat v_t`, as ``optax.amsgrad``).

Measured (float32, defaults: 10^6 rounds; about 2 s of optimizing and 6-10 s in all on 2 CPU
cores): Adam reaches x = +1 by round ~600 and stays there (final x = 0.9999, one small step
below the bound, since round 10^6 has the large gradient), with average regret
:math:`R_T/T` = 660: it sits at the worst point, where the regret per period is
2 · 1010 - 4 · 10. Both AMSGrads reach x = -1
by round ~240 and end there with :math:`R_T/T` = 0.028, still falling like 1/T. With these
:math:`\beta` the two AMSGrads coincide, as :math:`1 - \beta_2^t` is 1 from the second step on.
Other settings (x at :math:`T = 10^6`):

* ``--b1 0.9 --b2 0.99`` (the §5 pair) on this period-3 problem: Adam goes to -1 too. Its
  momentum averages the large gradient over ~10 rounds, so :math:`m_t > 0` throughout and every
  step goes down. The failure here needs :math:`\beta_1 \approx 0`: with ``--b1 0.01`` Adam
  ends at x = -0.55 (:math:`R_T/T` = 201), neither end.
* :math:`\beta_1 = 0` and :math:`\beta_2` up to :math:`5 \cdot 10^{-3}`: as the default; with
  ``--b2 1e-2`` Adam goes to -1.
* ``--schedule constant`` (:math:`\alpha = 0.1`): Adam hops between 0.9 and 1 (mean 0.957 over
  the last 10%, :math:`R_T/T` = 660), AMSGrad between -1 and -0.998 (:math:`R_T/T` = 0.67).
* ``--period 101 --b1 0.9 --b2 0.99 --learning-rate 1`` (the §5 experiment): Adam +1.0,
  AMSGrad (raw) -0.995, AMSGrad (corrected) -0.999, as in the paper's Figure 1. Here the two
  AMSGrads differ: the corrected maximum is :math:`\hat v_1 = g_1^2 = 1010^2` from round 1 on,
  while the raw one levels off at :math:`1.6 \cdot 10^4`, 63 times smaller, so the corrected
  variant's steps are 8 times smaller and it stays closer to -1. With ``--learning-rate 0.1``
  the AMSGrads are still at -0.39 and -0.20 after 10^6 rounds while Adam is at +1.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import adamjax

import common

LARGE_GRADIENT = 1010.0
SMALL_GRADIENT = -10.0
PERIOD = 3
# Theorem 1 of the paper for f_t = C x or -x: beta_2 = 1 / (1 + C^2), here C = 1010 / 10.
C = LARGE_GRADIENT / -SMALL_GRADIENT
THEOREM_B2 = 1.0 / (1.0 + C**2)
# With at most 100 small gradients per large one the gradients' partial sums stay positive, so
# x* = -1 is the best fixed point after every step and the regret below is exact.
MAX_PERIOD = int(LARGE_GRADIENT // -SMALL_GRADIENT)
# Host round trips per run: the progress bar moves once per chunk of jitted steps.
CHUNKS = 100
SCHEDULES = ("inverse_sqrt", "constant")


def gradient(t: jax.Array | int, period: int = PERIOD) -> jax.Array:
    """The gradient of :math:`f_t`: +1010 when ``t mod period == 1``, -10 otherwise (t from 1)."""
    return jnp.where(jnp.asarray(t) % period == 1, LARGE_GRADIENT, SMALL_GRADIENT)


def project(x: jax.Array) -> jax.Array:
    """The Euclidean projection onto the feasible set [-1, 1]."""
    return jnp.clip(x, -1.0, 1.0)


def inverse_sqrt_schedule(alpha: float) -> optax.Schedule:
    r""":math:`\alpha_t = \alpha/\sqrt t` as an optax schedule of the 0-based count :math:`t-1`."""
    return lambda count: alpha / jnp.sqrt(count + 1.0)


def make_optimizers(
    learning_rate: float | optax.Schedule, b1: float, b2: float
) -> dict[str, optax.GradientTransformation]:
    """Adam, AMSGrad (torch's maximum of the raw :math:`v_t`) and AMSGrad with optax's maximum of
    the bias-corrected :math:`\\hat v_t`, all with the same step size and moments."""
    return {
        "adam": adamjax.adam(learning_rate, b1, b2),
        "amsgrad": adamjax.amsgrad(learning_rate, b1, b2),
        "amsgrad_corrected": adamjax.amsgrad(learning_rate, b1, b2, max_of="corrected"),
    }


@functools.partial(jax.jit, static_argnames=("tx", "period", "length"))
def _advance(x, state, t0, *, tx, period, length):
    """``length`` projected steps from step ``t0``; returns the new carry and the iterates."""

    def step(carry, t):
        x, state = carry
        updates, state = tx.update(gradient(t, period), state, x)
        x = project(optax.apply_updates(x, updates))
        return (x, state), x

    (x, state), xs = jax.lax.scan(step, (x, state), t0 + jnp.arange(length, dtype=jnp.int32))
    return x, state, xs


def run(
    tx: optax.GradientTransformation,
    steps: int,
    *,
    x0: float = 0.0,
    period: int = PERIOD,
    progress: tqdm | None = None,
) -> np.ndarray:
    """Plays ``steps`` rounds of the online problem with ``tx``, projecting after each update.

    The steps run in ``CHUNKS`` jitted ``lax.scan`` calls; ``progress`` advances after each.

    Args:
        tx: The optimizer.
        steps: Number of rounds T.
        x0: The first iterate :math:`x_1`, in [-1, 1].
        period: A large gradient every ``period`` steps, 2 to 101.
        progress: A tqdm bar to advance, or None.

    Returns:
        ``float32`` array of shape ``(steps + 1,)``: :math:`x_1, \\ldots, x_{T+1}`, where
        :math:`x_t` is the point played in round t and :math:`x_{T+1}` the final one.
    """
    x = jnp.asarray(x0, jnp.float32)
    state = tx.init(x)
    chunk = math.ceil(steps / CHUNKS)
    pieces = [np.asarray([x0], np.float32)]
    t = 1
    while t <= steps:
        length = min(chunk, steps - t + 1)
        x, state, xs = _advance(x, state, jnp.int32(t), tx=tx, period=period, length=length)
        pieces.append(np.asarray(xs))
        t += length
        if progress is not None:
            progress.update(length)
    return np.concatenate(pieces)


def average_regret(xs: np.ndarray, period: int = PERIOD) -> np.ndarray:
    r""":math:`R_t/t` for t = 1..T from the iterates :math:`x_1, \ldots, x_{T+1}` of :func:`run`.

    :math:`R_T = \sum_{t \le T} f_t(x_t) - \min_{x \in [-1, 1]} \sum_{t \le T} f_t(x) =
    \sum_{t \le T} g_t (x_t + 1)`, since the minimum is at -1 for every T (period <= 101).
    Summed in float64.
    """
    t = np.arange(1, len(xs))
    g = np.where(t % period == 1, LARGE_GRADIENT, SMALL_GRADIENT)
    return np.cumsum(g * (xs[:-1].astype(np.float64) + 1.0)) / t


def plot(paths: dict[str, np.ndarray], regrets: dict[str, np.ndarray], title: str):
    """:math:`x_t` and :math:`R_t/t` against t (log t), one line per optimizer."""
    fig, axes = common.new_figure(1, 2, width=5.6, height=4.0)
    ax_x, ax_r = axes[0]
    styles = {"adam": ("C3", "-"), "amsgrad": ("C0", "-"), "amsgrad_corrected": ("C2", "--")}
    for name, xs in paths.items():
        color, ls = styles.get(name, ("C7", "-"))
        # About 4,000 log-spaced rounds: every round early on, where x moves, then a sample.
        idx = np.unique(np.geomspace(1, len(xs), 4000).astype(np.int64)) - 1
        ax_x.plot(idx + 1, xs[idx], color=color, ls=ls, lw=1.3, label=name)
        r_idx = idx[idx < len(regrets[name])]
        ax_r.plot(r_idx + 1, regrets[name][r_idx], color=color, ls=ls, lw=1.3, label=name)
    ax_x.axhline(-1.0, color="k", lw=0.6, ls=":")
    ax_x.set(xscale="log", xlabel="round t", ylabel="$x_t$", ylim=(-1.08, 1.08),
             title="iterate (optimum $x^*=-1$)")  # fmt: skip
    # An online learner can beat the best fixed point for a while, so R_t may dip below 0.
    positive = all(np.all(r > 0) for r in regrets.values())
    ax_r.set(xscale="log", yscale="log" if positive else "symlog", xlabel="round t",
             ylabel="$R_t / t$", title="average regret")  # fmt: skip
    for ax in (ax_x, ax_r):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=common.LEGEND_FONTSIZE)
    fig.suptitle(title, fontsize=9)
    return fig


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses the command-line flags; ``argv=None`` reads ``sys.argv``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(
        parser, length="steps", default=1_000_000, quick=3000, out="out/amsgrad_counterexample"
    )
    parser.add_argument(
        "--learning-rate", type=float, default=0.1, help="alpha of the step size (default 0.1)"
    )
    parser.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="inverse_sqrt",
        help="inverse_sqrt: alpha/sqrt(t) (default); constant: alpha",
    )
    parser.add_argument("--b1", type=_probability, default=0.0, help="beta_1 (default 0)")
    parser.add_argument(
        "--b2",
        type=_probability,
        default=THEOREM_B2,
        help=f"beta_2 (default 1/(1+101^2) = {THEOREM_B2:.3g})",
    )
    parser.add_argument(
        "--period",
        type=int,
        default=PERIOD,
        help=f"a +1010 gradient every PERIOD rounds, -10 in the others (default {PERIOD}; "
        f"2 to {MAX_PERIOD}; the paper's experiment uses 101)",
    )
    parser.add_argument("--x0", type=float, default=0.0, help="first iterate, in [-1, 1]")
    args = parser.parse_args(argv)
    if not 2 <= args.period <= MAX_PERIOD:
        parser.error(f"--period must be in [2, {MAX_PERIOD}] so that x* = -1, got {args.period}")
    if not -1.0 <= args.x0 <= 1.0:
        parser.error(f"--x0 must be in [-1, 1], got {args.x0}")
    if args.learning_rate < 0:
        parser.error(f"--learning-rate must be >= 0, got {args.learning_rate}")
    return common.finish_args(args)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs Adam and the two AMSGrads on the problem, writes the figure and ``metrics.json``.

    Args:
        argv: Command-line arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        ``{"optimizers": {name: {...}}, "steps": T, "seconds": ...}``; per optimizer
        ``final_x`` (:math:`x_{T+1}`), ``mean_x_last_tenth`` (over the last 10% of rounds, which
        averages out the within-period wobble of a constant step), ``min_x``, ``max_x`` and
        ``average_regret`` (:math:`R_T/T`).
    """
    args = parse_args(argv)
    devices = common.report_devices()
    began = time.perf_counter()
    lr = (
        inverse_sqrt_schedule(args.learning_rate)
        if args.schedule == "inverse_sqrt"
        else args.learning_rate
    )
    optimizers = make_optimizers(lr, args.b1, args.b2)

    paths, regrets, results = {}, {}, {}
    with tqdm(total=len(optimizers) * args.steps, desc="rounds", unit="step") as progress:
        for name, tx in optimizers.items():
            progress.set_postfix(optimizer=name)
            xs = run(tx, args.steps, x0=args.x0, period=args.period, progress=progress)
            regret = average_regret(xs, args.period)
            paths[name], regrets[name] = xs, regret
            tail = xs[-max(1, args.steps // 10) :]
            results[name] = {
                "final_x": float(xs[-1]),
                "mean_x_last_tenth": float(tail.mean()),
                "min_x": float(xs.min()),
                "max_x": float(xs.max()),
                "average_regret": float(regret[-1]),
            }
    metrics = {"optimizers": results, "steps": args.steps}
    metrics["seconds"] = time.perf_counter() - began

    alpha = f"{args.learning_rate:g}"
    step = f"{alpha}/sqrt(t)" if args.schedule == "inverse_sqrt" else f"constant {alpha}"
    title = (
        f"gradient +1010 if t mod {args.period} = 1 else -10, x in [-1, 1]; step {step}, "
        f"b1={args.b1:g}, b2={args.b2:.3g}, x1={args.x0:g}"
    )
    written = [
        common.save_figure(plot(paths, regrets, title), args.out / "amsgrad_counterexample.png"),
        common.write_metrics(args.out, metrics, args=common.args_dict(args), device=devices),
    ]

    print(f"\n{'optimizer':<18} {'final x':>8} {'mean x (last 10%)':>18} {'R_T/T':>10}")
    for name, m in results.items():
        print(f"{name:<18} {m['final_x']:>8.4f} {m['mean_x_last_tenth']:>18.4f} "
              f"{m['average_regret']:>10.4g}")  # fmt: skip
    print(f"{args.steps} rounds; optimum x* = -1; wall time {metrics['seconds']:.1f} s "
          "(without plotting)")  # fmt: skip
    common.report_written(written)
    return metrics


if __name__ == "__main__":
    main()
