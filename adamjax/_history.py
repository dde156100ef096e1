"""Host-side record of diagnostics: :class:`History` collects the metric dicts of
:func:`adamjax.diagnostics` step by step, converts them to NumPy arrays and plots them.

matplotlib is imported only inside :meth:`History.plot`.
"""

import math
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np

# The variant-specific panels: (title, y label, keys), drawn when any of the keys was recorded.
_VARIANT_PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("AMSGrad: where the max is active", "fraction of entries", ("amsgrad/active_fraction",)),
    (
        "AdaBound: step sizes clipped",
        "fraction of entries",
        ("adabound/lower_clipped_fraction", "adabound/upper_clipped_fraction"),
    ),
    ("RAdam: rectification", "r_t (0: SGD step)", ("radam/rectification",)),
    ("SWATS: phase", "fraction in SGD phase", ("swats/phase",)),
    ("Adafactor: update clipping", "largest clip factor", ("adafactor/clip_factor",)),
    ("AdEMAMix: alpha warm-up", "alpha_t", ("ademamix/alpha", "simplified_ademamix/alpha")),
)


class History:
    """Appends diagnostics step by step on the host and turns them into arrays and plots.

    Example:
      >>> history = adamjax.History()
      >>> for batch in batches:
      ...     params, opt_state, loss, metrics = train_step(params, opt_state, batch)
      ...     history.append(metrics, loss=loss)
      >>> history.plot("diagnostics.png")
    """

    def __init__(self) -> None:
        self._rows: list[dict[str, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self._rows)

    def append(self, metrics: Mapping[str, Any], **extra: Any) -> None:
        """Records one step: a metrics dict plus any extra scalars (e.g. loss=loss).

        The dict is what :func:`adamjax.diagnostics` returns; values are fetched from the device.
        """
        row = {**metrics, **extra}
        self._rows.append({k: np.asarray(x) for k, x in jax.device_get(row).items()})

    def extend(self, metrics: Mapping[str, Any], **extra: Any) -> None:
        """Records several steps at once from arrays with a leading step axis.

        For example the stacked metrics of a ``jax.lax.scan`` over steps.
        """
        stacked = {k: np.asarray(x) for k, x in jax.device_get({**metrics, **extra}).items()}
        lengths = {x.shape[0] if x.ndim else None for x in stacked.values()}
        if len(lengths) != 1 or None in lengths:
            raise ValueError(
                "History.extend: every value needs the same leading (step) axis, got shapes "
                f"{ {k: x.shape for k, x in stacked.items()} }"
            )
        (n,) = lengths
        for i in range(n):
            self._rows.append({k: x[i] for k, x in stacked.items()})

    def to_dict(self) -> dict[str, np.ndarray]:
        """Returns every metric stacked over the recorded steps (step axis first).

        A metric missing from some steps is NaN there (float metrics only; a missing integer
        metric raises ``ValueError``).
        """
        keys: list[str] = []
        for row in self._rows:
            keys.extend(k for k in row if k not in keys)
        out = {}
        for key in keys:
            present = [row[key] for row in self._rows if key in row]
            if len(present) == len(self._rows):
                out[key] = np.stack(present)
                continue
            example = present[0]
            if not np.issubdtype(example.dtype, np.floating):
                raise ValueError(
                    f"History.to_dict: metric {key!r} of type {example.dtype} is missing in "
                    "some steps; only float metrics can be filled (with NaN)"
                )
            filler = np.full(example.shape, np.nan, example.dtype)
            out[key] = np.stack([row.get(key, filler) for row in self._rows])
        return out

    def summary(self, keys: Iterable[str] | None = None) -> str:
        """Returns a markdown table of the first, last, minimum and maximum of scalar metrics.

        Minimum and maximum are over the finite values (NaN when there are none).

        Args:
          keys: the metrics to list; ``None`` lists every global scalar metric (not the
            ``leaf/...`` ones, nor the histograms), in recorded order.

        Raises:
          KeyError: if a metric in ``keys`` was never recorded.
          TypeError: if a listed metric, including one that ``keys=None`` selects, is not a real
            number per step (for example a string or a complex value recorded with
            :meth:`append`), or (named in ``keys``) not a scalar per step. Such a metric is not
            skipped silently: pass ``keys`` without it.
        """
        data = self.to_dict()
        if keys is None:
            keys = [k for k, x in data.items() if x.ndim == 1 and not k.startswith("leaf/")]
        lines = ["| metric | first | last | min | max |", "|---|---|---|---|---|"]
        for key in keys:
            x = _summary_column(data, key)
            finite = x[np.isfinite(x)]
            low, high = (finite.min(), finite.max()) if finite.size else (math.nan, math.nan)
            cells = " | ".join(f"{value:.4g}" for value in (x[0], x[-1], low, high))
            lines.append(f"| {key} | {cells} |")
        return "\n".join(lines)

    def plot(self, path: str | None = None, *, title: str | None = None) -> Any:
        """Draws the diagnostics as a column of panels sharing the step axis.

        Panels, each drawn when its metrics were recorded:

        1. the effective learning rate: its mean, with the min–max band (log scale);
           ``preconditioner/*`` when no learning rate was found;
        2. the gradient norm (log scale);
        3. the update magnitude: the update norm and the update/parameter ratio (log scale);
        4. one panel per variant-specific signal present (AMSGrad, AdaBound, RAdam, SWATS,
           Adafactor).

        Args:
          path: if given, the figure is saved there as PNG.
          title: an optional figure title.

        Returns:
          The ``matplotlib.figure.Figure`` (made without pyplot, so no window opens and no global
          state changes).

        Raises:
          ImportError: if matplotlib is not installed.
          ValueError: if nothing was recorded.
        """
        if not self._rows:
            raise ValueError("History.plot: nothing recorded yet; call append() first")
        try:
            from matplotlib.figure import Figure
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "History.plot needs matplotlib: pip install matplotlib (or adamjax[examples])"
            ) from err

        data = self.to_dict()
        steps = data.get("step", np.arange(1, len(self) + 1))
        panels = []
        for key in ("effective_lr", "preconditioner"):
            if f"{key}/mean" in data:
                panels.append(("lr", key))
                break
        if "grad_norm" in data:
            panels.append(("grad", None))
        if "update_norm" in data:
            panels.append(("update", None))
        for spec in _VARIANT_PANELS:
            if any(k in data for k in spec[2]):
                panels.append(("variant", spec))

        fig = Figure(figsize=(8, 2.4 * len(panels) + 0.6), layout="constrained")
        axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        for ax, (kind, spec) in zip(axes, panels, strict=True):
            if kind == "lr":
                label = "effective learning rate" if spec == "effective_lr" else "preconditioner"
                ax.fill_between(
                    steps, data[f"{spec}/min"], data[f"{spec}/max"], alpha=0.25, label="min–max"
                )
                ax.plot(steps, data[f"{spec}/mean"], label="mean")
                ax.set_yscale("log")
                ax.set_title(label.capitalize())
                ax.set_ylabel(label)
            elif kind == "grad":
                ax.plot(steps, data["grad_norm"], label="‖g‖₂")
                ax.set_yscale("log")
                ax.set_title("Gradient norm")
                ax.set_ylabel("‖g‖₂")
            elif kind == "update":
                ax.plot(steps, data["update_norm"], label="‖u‖₂")
                if "update_param_ratio" in data:
                    ax.plot(steps, data["update_param_ratio"], label="‖u‖₂ / ‖θ‖₂")
                ax.set_yscale("log")
                ax.set_title("Update magnitude")
                ax.set_ylabel("norm / ratio")
            else:
                name, ylabel, keys = spec
                for key in keys:
                    if key in data:
                        ax.plot(steps, data[key], label=key.split("/", 1)[1].replace("_", " "))
                if name.startswith("SWATS") and "swats/switch_step" in data:
                    switched = data["swats/switch_step"][-1]
                    if switched >= 0:
                        ax.axvline(switched, color="k", linestyle=":", label=f"switch @ {switched}")
                ax.set_title(name)
                ax.set_ylabel(ylabel)
            ax.set_xlabel("step")
            ax.grid(True, alpha=0.3)
            ax.legend(loc="best", fontsize=9)
        if title:
            fig.suptitle(title)
        if path is not None:
            # 2x, so that the figure stays sharp when a 784 px text column scales it down.
            fig.savefig(path, format="png", dpi=220)
        return fig


def _summary_column(data: dict[str, np.ndarray], key: str) -> np.ndarray:
    """The float64 values of metric ``key`` for :meth:`History.summary`, or a clear error."""
    if key not in data:
        raise KeyError(f"History.summary: no metric {key!r} was recorded; recorded: {list(data)}")
    x = data[key]
    if x.dtype.kind not in "biuf":  # bool, signed and unsigned integers, real floats
        raise TypeError(
            f"History.summary: metric {key!r} holds values of dtype {x.dtype} "
            f"(e.g. {x.reshape(-1)[:1].tolist()[0]!r}), not real numbers; the summary lists "
            "numbers only, so pass keys=[...] without it."
        )
    if x.ndim != 1:
        raise TypeError(
            f"History.summary: metric {key!r} is not a scalar per step (each step holds shape "
            f"{x.shape[1:]}); the summary lists scalar metrics only."
        )
    return x.astype(np.float64)
