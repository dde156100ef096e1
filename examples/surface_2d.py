"""Trajectories of Adam-family optimizers on two 2-D test functions, drawn on their surfaces.

Minimises the sphere :math:`f(x, y) = x^2 + y^2` and the Rosenbrock function
:math:`f(x, y) = (1 - x)^2 + 100 (y - x^2)^2` from a common start with adamjax's ``adam``,
``amsgrad``, ``adamw`` and ``nadam``, and with optax's SGD with momentum, RMSprop and Adagrad as
baselines; then with the modern family of ``common.NEW_FAMILY`` (LAMB, AdaBelief, ..., cautious
AdamW). Run it from the repository root::

    python examples/surface_2d.py                 # 2000 steps per optimizer
    python examples/surface_2d.py --start -1 2.5  # another start, used for both functions

It writes ``surface_sphere.png`` and ``surface_rosenbrock.png`` (a 3-D surface and a contour plot
with the trajectories), the same for the modern family (``surface_sphere_modern.png``,
``surface_rosenbrock_modern.png``), ``loss.png`` (f against the step, log scale; a row per
group) and ``metrics.json``, and
prints a table of the final values and the path of every file it wrote. ``--quick`` runs 500
steps, for tests.

Measured with the defaults (2000 steps, float32, 2 CPU cores; 10-15 s including compilation
and plotting): on the sphere from (-1.5, 1.8), f = 5.49, every optimizer reaches f = 0 in float32
except RMSprop, which keeps hopping around the minimum at its step size (f = 5e-5), and Adagrad
(3e-19). On Rosenbrock from (-1.5, 2.0), f = 12.5, all follow the curved valley; the final f are
Adam 8e-8, AMSGrad 9e-5, AdamW 9e-4 (its decay pulls towards the origin; it levels off near
3e-4), NAdam 1e-3 (with periodic spikes to f ~ 1 in the valley at this lr), SGD with momentum
8e-5, RMSprop 9e-3 and Adagrad 0.14.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import common


def sphere(p: jax.Array) -> jax.Array:
    """:math:`x^2 + y^2` of a point ``p`` of shape ``(2,)``; the minimum is 0 at (0, 0)."""
    return jnp.sum(p**2)


def rosenbrock(p: jax.Array, a: float = 1.0, b: float = 100.0) -> jax.Array:
    """:math:`(a - x)^2 + b (y - x^2)^2` of ``p = (x, y)``; the minimum is 0 at :math:`(a, a^2)`."""
    x, y = p[0], p[1]
    return (a - x) ** 2 + b * (y - x**2) ** 2


@dataclass(frozen=True)
class Problem:
    """A test function with its minimum, default start, plot window and learning rates."""

    f: Callable[[jax.Array], jax.Array]
    minimum: tuple[float, float]
    start: tuple[float, float]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    learning_rates: dict[str, float]
    log_levels: bool


# The optimizers in plotting order; their factories come from common.OPTIMIZERS (AdamW decays by
# 1e-2, SGD uses momentum 0.9). adamjax's first, then the optax baselines.
OPTIMIZERS: tuple[str, ...] = (
    "adam", "amsgrad", "adamw", "nadam", "sgd_momentum", "rmsprop", "adagrad",
)  # fmt: skip
# The modern family (common.NEW_FAMILY, those this adamjax has), drawn in figures of their own.
# Their learning rate on each problem is Adam's there, rescaled as their base rate in
# common.OPTIMIZERS is rescaled from Adam's (LAMB 5 times, simplified AdEMAMix 1/100).
MODERN: tuple[str, ...] = tuple(name for name in common.NEW_FAMILY if name in common.OPTIMIZERS)

# Learning rates per problem, chosen so that every optimizer visibly moves within a few hundred
# steps without blowing up; they are not the libraries' defaults. Measured from the default
# starts (float32, CPU), f after 500 and 2000 steps (f = 5.49 and 12.5 at the starts):
#
# ============  =========  ===================  =========  ====================
# optimizer     sphere lr  sphere f 500 / 2000  rosen. lr  rosen. f 500 / 2000
# ============  =========  ===================  =========  ====================
# adam          0.02       7e-19 / 0            0.03       0.66 / 8e-8
# amsgrad       0.02       5e-21 / 0            0.03       0.98 / 9e-5
# adamw         0.02       2e-19 / 0            0.03       0.54 / 9e-4
# nadam         0.02       8e-18 / 0            0.03       0.15 / 1e-3
# sgd_momentum  0.003      6e-23 / 0            5e-4       0.08 / 8e-5
# rmsprop       0.01       5e-5 / 5e-5          3e-3       3.7 / 9e-3
# adagrad       0.1        3e-5 / 3e-19         0.5        3.9 / 0.14
# ============  =========  ===================  =========  ====================
#
# Adam-type steps are about lr in each coordinate whatever the gradient's size, so one lr fits
# both functions; SGD's step scales with the gradient, which reaches ~200 in Rosenbrock's walls
# (lr 3e-3 diverges there). Adagrad's steps shrink like 1/sqrt(t) and need a large base rate
# (its first step, lr in each coordinate, overshoots to f = 229 on Rosenbrock). RMSprop keeps
# hopping around the sphere's minimum at its step size.
PROBLEMS: dict[str, Problem] = {
    "sphere": Problem(
        f=sphere,
        minimum=(0.0, 0.0),
        start=(-1.5, 1.8),
        xlim=(-2.0, 2.0),
        ylim=(-2.0, 2.0),
        learning_rates={
            "adam": 0.02,
            "amsgrad": 0.02,
            "adamw": 0.02,
            "nadam": 0.02,
            "sgd_momentum": 3e-3,
            "rmsprop": 1e-2,
            "adagrad": 0.1,
        },
        log_levels=False,
    ),
    "rosenbrock": Problem(
        f=rosenbrock,
        minimum=(1.0, 1.0),
        start=(-1.5, 2.0),
        xlim=(-2.0, 2.0),
        ylim=(-1.0, 3.0),
        learning_rates={
            "adam": 0.03,
            "amsgrad": 0.03,
            "adamw": 0.03,
            "nadam": 0.03,
            "sgd_momentum": 5e-4,
            "rmsprop": 3e-3,
            "adagrad": 0.5,
        },
        log_levels=True,
    ),
}

# log-scale plots cannot show an exact 0, which float32 reaches on the sphere.
LOSS_FLOOR = 1e-30


def learning_rate(problem: Problem, opt: str) -> float:
    """``opt``'s learning rate on ``problem``: from its table, or for the modern family Adam's
    rate times the ratio of their base rates in ``common.OPTIMIZERS``."""
    if opt in problem.learning_rates:
        return problem.learning_rates[opt]
    ratio = common.OPTIMIZERS[opt].learning_rate / common.OPTIMIZERS["adam"].learning_rate
    return problem.learning_rates["adam"] * ratio


@functools.partial(jax.jit, static_argnames=("f", "tx", "steps", "eval_params"))
def trajectory(
    start: jax.Array,
    *,
    f: Callable,
    tx: optax.GradientTransformation,
    steps: int,
    eval_params: Callable | None = None,
) -> jax.Array:
    """Runs ``steps`` updates of ``tx`` on ``f`` from ``start`` in one ``lax.scan``.

    Args:
        start: The first point, shape ``(2,)``; its dtype is the run's dtype.
        f: The scalar function to minimise.
        tx: The optimizer.
        steps: Number of updates.
        eval_params: For an optimizer that evaluates elsewhere than it takes gradients
            (schedule-free), ``eval_params(state, params)``: the points recorded are those.

    Returns:
        The points visited, shape ``(steps + 1, 2)``, starting with ``start``.
    """

    def step(carry, _):
        p, state = carry
        updates, state = tx.update(jax.grad(f)(p), state, p)
        p = optax.apply_updates(p, updates)
        return (p, state), p if eval_params is None else eval_params(state, p)

    _, points = jax.lax.scan(step, (start, tx.init(start)), length=steps)
    return jnp.concatenate([start[None], points])


def plot_problem(
    name: str, problem: Problem, paths: dict[str, np.ndarray], values: dict[str, np.ndarray]
):
    """A 3-D surface and a contour plot of ``problem`` with the trajectories ``paths``."""
    from matplotlib.colors import LogNorm

    points = np.concatenate(list(paths.values()))
    points = points[np.all(np.isfinite(points), axis=1)]
    # The window grows to hold every trajectory (a momentum overshoot may leave the default).
    xlim = (min(problem.xlim[0], points[:, 0].min()), max(problem.xlim[1], points[:, 0].max()))
    ylim = (min(problem.ylim[0], points[:, 1].min()), max(problem.ylim[1], points[:, 1].max()))
    gx, gy = np.meshgrid(np.linspace(*xlim, 200), np.linspace(*ylim, 200))
    grid = np.stack([gx, gy], axis=-1).reshape(-1, 2)
    gz = np.asarray(jax.vmap(problem.f)(jnp.asarray(grid))).reshape(gx.shape)

    fig, axes = common.new_figure(1, 2, width=5.8, height=4.8)
    axes[0, 0].remove()
    # Drawn in call order, so the trajectories stay on top of the translucent surface.
    ax3d = fig.add_subplot(1, 2, 1, projection="3d", computed_zorder=False)
    contour_ax = axes[0, 1]
    if problem.log_levels:
        norm = LogNorm(vmin=max(gz.min(), 1e-2), vmax=gz.max())
        levels = np.logspace(-1, np.log10(gz.max()), 16)
    else:
        norm = None
        levels = np.linspace(0.0, gz.max(), 16)[1:]
    ax3d.plot_surface(gx, gy, np.maximum(gz, 1e-2), cmap="viridis", norm=norm, alpha=0.4,
                      linewidth=0, antialiased=True, rstride=4, cstride=4)  # fmt: skip
    contour_ax.contour(gx, gy, gz, levels=levels, cmap="viridis", norm=norm, linewidths=0.8)

    for opt, path in paths.items():
        style = {**_style(opt), "lw": 1.4}
        label = f"{opt} (lr {learning_rate(problem, opt):g})"
        ax3d.plot(path[:, 0], path[:, 1], np.maximum(values[opt], 1e-2), **style)
        contour_ax.plot(path[:, 0], path[:, 1], label=label, **style)
    contour_ax.plot(*next(iter(paths.values()))[0], "ko", ms=6, label="start")
    contour_ax.plot(*problem.minimum, "r*", ms=12, label="minimum")
    ax3d.set(xlabel="x", ylabel="y", zlabel="f", title=f"{name}: surface")
    ax3d.view_init(elev=35, azim=-120)
    title = f"{name}: contours" + (" (log levels)" if problem.log_levels else "")
    contour_ax.set(xlabel="x", ylabel="y", xlim=xlim, ylim=ylim, title=title)
    contour_ax.set_aspect("equal")
    contour_ax.legend(fontsize=common.LEGEND_FONTSIZE, loc="best")
    return fig


def plot_losses(values: dict[str, dict[str, np.ndarray]]):
    """f against the step for every problem and optimizer, on a log scale: a row for the
    classic variants and baselines, and one for the modern family when it ran."""
    groups = [g for g in (OPTIMIZERS, MODERN) if any(o in g for v in values.values() for o in v)]
    fig, axes = common.new_figure(len(groups), len(values), width=5.5, height=4.0)
    for row, group in enumerate(groups):
        for ax, (name, per_opt) in zip(axes[row], values.items(), strict=True):
            for opt, f in per_opt.items():
                if opt in group:
                    ax.plot(np.maximum(f, LOSS_FLOOR), lw=1.3, label=opt, **_style(opt))
            ax.set(yscale="log", xlabel="step", ylabel=f"f (floored at {LOSS_FLOOR:g})",
                   title=name)  # fmt: skip
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=common.LEGEND_FONTSIZE)
    return fig


def _library(opt: str) -> str:
    return common.OPTIMIZERS[opt].library


def _style(opt: str) -> dict[str, Any]:
    # Fixed per optimizer, so that runs with a subset of --optimizers match the full figures:
    # the classic ones in matplotlib's ten colours (optax's dashed), the modern family in
    # tab20's twenty (each hue's light shade dashed).
    if opt in OPTIMIZERS:
        return {"color": f"C{OPTIMIZERS.index(opt)}",
                "ls": "-" if _library(opt) == "adamjax" else "--"}  # fmt: skip
    from matplotlib import colormaps

    index = MODERN.index(opt)
    return {"color": colormaps["tab20"](index % 20), "ls": "-" if index % 2 == 0 else "--"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses the command-line flags; ``argv=None`` reads ``sys.argv``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_args(parser, length="steps", default=2000, quick=500, out="out/surface_2d")
    parser.add_argument(
        "--start",
        type=float,
        nargs=2,
        metavar=("X", "Y"),
        default=None,
        help="start point for both functions (default: (-1.5, 1.8) for the sphere, "
        "(-1.5, 2.0) for Rosenbrock)",
    )
    parser.add_argument(
        "--optimizers",
        nargs="+",
        choices=OPTIMIZERS + MODERN,
        default=list(OPTIMIZERS + MODERN),
        metavar="NAME",
        help=f"optimizers to run (default all: {' '.join(OPTIMIZERS + MODERN)})",
    )
    return common.finish_args(parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs every optimizer on both functions, writes the figures and ``metrics.json``.

    Args:
        argv: Command-line arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        ``{"sphere": ..., "rosenbrock": ..., "seconds": ...}``; each function's entry holds its
        ``start``, ``start_f``, ``minimum`` and, under ``optimizers``, per optimizer the
        ``library``, ``learning_rate``, ``steps``, ``final_f``, ``final_distance`` (to the
        minimum), ``final_point`` and ``finite`` (whether every point of the trajectory is finite).
    """
    args = parse_args(argv)
    devices = common.report_devices()
    common.report_missing()
    began = time.perf_counter()

    metrics: dict[str, Any] = {}
    paths: dict[str, dict[str, np.ndarray]] = {}
    values: dict[str, dict[str, np.ndarray]] = {}
    total = len(PROBLEMS) * len(args.optimizers) * args.steps
    with tqdm(total=total, desc="optimizing", unit="step") as progress:
        for name, problem in PROBLEMS.items():
            start = jnp.asarray(problem.start if args.start is None else args.start, jnp.float32)
            entry = {
                "start": start.tolist(),
                "start_f": float(problem.f(start)),
                "minimum": list(problem.minimum),
                "optimizers": {},
            }
            paths[name], values[name] = {}, {}
            for opt in args.optimizers:
                progress.set_postfix(function=name, optimizer=opt)
                lr = learning_rate(problem, opt)
                tx = common.make_optimizer(opt, lr)
                eval_params = common.OPTIMIZERS[opt].eval_params
                path = trajectory(start, f=problem.f, tx=tx, steps=args.steps,
                                  eval_params=eval_params)  # fmt: skip
                path = np.asarray(path)
                f_path = np.asarray(jax.vmap(problem.f)(jnp.asarray(path)))
                paths[name][opt], values[name][opt] = path, f_path
                entry["optimizers"][opt] = {
                    "library": _library(opt),
                    "learning_rate": lr,
                    "steps": args.steps,
                    "final_f": float(f_path[-1]),
                    "final_distance": float(np.linalg.norm(path[-1] - np.array(problem.minimum))),
                    "final_point": path[-1].tolist(),
                    "finite": bool(np.all(np.isfinite(path))),
                }
                progress.update(args.steps)
            metrics[name] = entry
    metrics["seconds"] = time.perf_counter() - began

    written = []
    for group, suffix in ((OPTIMIZERS, ""), (MODERN, "_modern")):
        for name, problem in PROBLEMS.items():
            in_group = [opt for opt in paths[name] if opt in group]
            if in_group:
                fig = plot_problem(name, problem, {o: paths[name][o] for o in in_group},
                                   {o: values[name][o] for o in in_group})  # fmt: skip
                written.append(common.save_figure(fig, args.out / f"surface_{name}{suffix}.png"))
    written.append(common.save_figure(plot_losses(values), args.out / "loss.png"))
    written.append(
        common.write_metrics(args.out, metrics, args=common.args_dict(args), device=devices)
    )

    print(f"\n{'function':<11} {'optimizer':<19} {'library':<8} {'lr':>7} "
          f"{'final f':>10} {'distance':>9}")  # fmt: skip
    for name in PROBLEMS:
        entry = metrics[name]
        print(f"{name:<11} {'(start)':<19} {'':<8} {'':>7} {entry['start_f']:>10.3g}")
        for opt, m in entry["optimizers"].items():
            print(f"{name:<11} {opt:<19} {m['library']:<8} {m['learning_rate']:>7g} "
                  f"{m['final_f']:>10.3g} {m['final_distance']:>9.3g}")  # fmt: skip
    print(f"{args.steps} steps per optimizer; wall time {metrics['seconds']:.1f} s "
          "(without plotting)")  # fmt: skip
    common.report_written(written)
    return metrics


if __name__ == "__main__":
    main()
