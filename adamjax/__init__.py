"""adamjax: Adam and its relatives as composable, optax-compatible gradient transformations.

Layers, bottom up:

* :mod:`adamjax.moments`: the shared moment maths (EMA, bias correction, eps placement);
* :mod:`adamjax.transform`: the chainable pieces (``scale_by_adam``, ``scale_by_amsgrad``,
  ``scale_by_nadam``, ``scale_by_adamax``, ``scale_by_radam``, ``add_decayed_weights``);
* :mod:`adamjax.alias`: ``adam``, ``adamw``, ``amsgrad``, ``nadam``, ``adamax``, ``radam``, each a
  single ``optax.chain`` of pieces;
* :mod:`adamjax.schedules`: momentum schedules for ``b1`` (``beta1_decay``, ``beta1_cyclic``).

Importing adamjax sets no XLA flags, does not enable x64 and imports no plotting library.
"""

from adamjax import moments
from adamjax.alias import adam, adamax, adamw, amsgrad, nadam, radam
from adamjax.schedules import beta1_cyclic, beta1_decay
from adamjax.transform import (
    AddDecayedWeightsState,
    ScaleByAdamaxState,
    ScaleByAdamState,
    ScaleByAmsgradState,
    ScaleByNadamState,
    add_decayed_weights,
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
    scale_by_nadam,
    scale_by_radam,
)

__version__ = "0.1.0"

__all__ = [
    "AddDecayedWeightsState",
    "ScaleByAdamState",
    "ScaleByAdamaxState",
    "ScaleByAmsgradState",
    "ScaleByNadamState",
    "__version__",
    "adam",
    "adamax",
    "adamw",
    "add_decayed_weights",
    "amsgrad",
    "beta1_cyclic",
    "beta1_decay",
    "moments",
    "nadam",
    "radam",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_amsgrad",
    "scale_by_nadam",
    "scale_by_radam",
]
