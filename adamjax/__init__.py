"""adamjax: Adam and its relatives as composable, optax-compatible gradient transformations.

Layers, bottom up:

* :mod:`adamjax.moments`: the shared moment maths (EMA, bias correction, eps placement);
* :mod:`adamjax.codecs`: how moments are stored (``mu_dtype``/``nu_dtype``): a dtype, bfloat16
  with stochastic rounding (``stochastic_bf16``) or 8-bit block-wise quantization (``q8``);
* :mod:`adamjax.transform`: the chainable pieces (``scale_by_adam``, ``scale_by_amsgrad``,
  ``scale_by_nadam``, ``scale_by_adamax``, ``scale_by_radam``, ``add_decayed_weights``);
* :mod:`adamjax.alias`: ``adam``, ``adamw``, ``amsgrad``, ``nadam``, ``adamax``, ``radam``, each a
  single ``optax.chain`` of pieces;
* :mod:`adamjax.schedules`: momentum schedules for ``b1`` (``beta1_decay``, ``beta1_cyclic``);
* :mod:`adamjax.bounded` (AdaBound), :mod:`adamjax.factored` (Adafactor) and
  :mod:`adamjax.switching` (SWATS): the variants whose
  state goes beyond Adam's moments, each module holding its state, its piece and its alias (all
  built on :mod:`adamjax.moments` and the pieces above).

Importing adamjax sets no XLA flags, does not enable x64 and imports no plotting library.
"""

from adamjax import codecs, moments
from adamjax.alias import adam, adamax, adamw, amsgrad, nadam, radam
from adamjax.bounded import ScaleByAdaBoundState, adabound, adabound_bounds, scale_by_adabound
from adamjax.codecs import (
    QuantizedArray,
    StochasticRoundingState,
    q8,
    stochastic_bf16,
    stochastic_rounding,
)
from adamjax.factored import (
    ClipByBlockRmsState,
    ScaleByFactoredRmsState,
    adafactor,
    clip_by_block_rms,
    relative_step_schedule,
    scale_by_factored_rms,
)
from adamjax.history import History
from adamjax.observe import DiagnosticsState, diagnostics, with_diagnostics
from adamjax.schedules import beta1_cyclic, beta1_decay
from adamjax.switching import ScaleBySwatsState, scale_by_swats, swats
from adamjax.transform import (
    AddDecayedWeightsState,
    ScaleByAdamaxState,
    ScaleByAdamState,
    ScaleByAmsgradState,
    ScaleByLearningRateState,
    ScaleByNadamState,
    ScaleByRadamState,
    add_decayed_weights,
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
    scale_by_learning_rate,
    scale_by_nadam,
    scale_by_radam,
)

__version__ = "0.1.0"

__all__ = [
    "AddDecayedWeightsState",
    "ClipByBlockRmsState",
    "DiagnosticsState",
    "History",
    "QuantizedArray",
    "ScaleByAdaBoundState",
    "ScaleByAdamState",
    "ScaleByAdamaxState",
    "ScaleByAmsgradState",
    "ScaleByFactoredRmsState",
    "ScaleByLearningRateState",
    "ScaleByNadamState",
    "ScaleByRadamState",
    "ScaleBySwatsState",
    "StochasticRoundingState",
    "__version__",
    "adabound",
    "adabound_bounds",
    "adafactor",
    "adam",
    "adamax",
    "adamw",
    "add_decayed_weights",
    "amsgrad",
    "beta1_cyclic",
    "beta1_decay",
    "clip_by_block_rms",
    "codecs",
    "diagnostics",
    "moments",
    "nadam",
    "q8",
    "radam",
    "relative_step_schedule",
    "scale_by_adabound",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_amsgrad",
    "scale_by_factored_rms",
    "scale_by_learning_rate",
    "scale_by_nadam",
    "scale_by_radam",
    "scale_by_swats",
    "stochastic_bf16",
    "stochastic_rounding",
    "swats",
    "with_diagnostics",
]
