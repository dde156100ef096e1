"""adamjax: Adam and its relatives as composable, optax-compatible gradient transformations.

Layers, bottom up:

* :mod:`adamjax.moments`: the shared moment maths (EMA, bias correction, eps placement);
* :mod:`adamjax.transform`: the chainable pieces (``scale_by_adam``, ``scale_by_amsgrad``,
  ``add_decayed_weights``);
* :mod:`adamjax.alias`: ``adam``, ``adamw``, ``amsgrad``, each a single ``optax.chain`` of pieces.

Importing adamjax sets no XLA flags, does not enable x64 and imports no plotting library.
"""

from adamjax import moments
from adamjax.alias import adam, adamw, amsgrad
from adamjax.transform import (
    AddDecayedWeightsState,
    ScaleByAdamState,
    ScaleByAmsgradState,
    add_decayed_weights,
    scale_by_adam,
    scale_by_amsgrad,
)

__version__ = "0.1.0"

__all__ = [
    "AddDecayedWeightsState",
    "ScaleByAdamState",
    "ScaleByAmsgradState",
    "__version__",
    "adam",
    "adamw",
    "add_decayed_weights",
    "amsgrad",
    "moments",
    "scale_by_adam",
    "scale_by_amsgrad",
]
