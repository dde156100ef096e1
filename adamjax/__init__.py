"""adamjax: Adam and its relatives as composable, optax-compatible gradient transformations.

The package exports aliases (``adam``, ``adamw``, ...), the pieces they chain (``scale_by_*``,
``add_decayed_weights``, ``scale_by_learning_rate``), their states, the moment storage formats
(``q8``, ``stochastic_bf16``) and the wrappers (``with_diagnostics``). The implementation is in
private modules, in layers without cycles:

* ``_moments``: the moment maths (EMA, bias correction, eps placement), written once;
* ``_formats``: how moments are stored, and the boundary every piece runs its per-leaf maths in
  (decode, compute, encode);
* ``_piece`` and ``_scaling``: what the pieces share; the learning rate and weight decay;
* one module per variant (``_adam``, ``_nadam``, ``_adamax``, ``_radam``, ``_adabound``,
  ``_adafactor``, ``_swats``), each owning its piece, its alias and its diagnostics view;
* ``_diagnostics`` and ``_history``: finding the views in any state, pooling their metrics.

Importing adamjax sets no XLA flags, does not enable x64 and imports no plotting library.
"""

from adamjax._adabelief import ScaleByBeliefState, adabelief, scale_by_belief
from adamjax._adabound import ScaleByAdaBoundState, adabound, adabound_bounds, scale_by_adabound
from adamjax._adafactor import (
    AdafactorMomentumState,
    ClipByBlockRmsState,
    ScaleByFactoredRmsState,
    adafactor,
    clip_by_block_rms,
    relative_step_schedule,
    scale_by_factored_rms,
)
from adamjax._adam import (
    ScaleByAdamState,
    ScaleByAmsgradState,
    adam,
    adamw,
    amsgrad,
    scale_by_adam,
    scale_by_amsgrad,
)
from adamjax._adamax import ScaleByAdamaxState, adamax, scale_by_adamax
from adamjax._diagnostics import DiagnosticsState, diagnostics, with_diagnostics
from adamjax._formats import (
    QuantizedArray,
    StochasticRoundingState,
    moment_presets,
    q8,
    stochastic_bf16,
    stochastic_rounding,
)
from adamjax._history import History
from adamjax._lamb import ScaleByTrustRatioState, lamb, scale_by_trust_ratio
from adamjax._moments import StepScalars
from adamjax._nadam import ScaleByNadamState, nadam, scale_by_nadam
from adamjax._radam import ScaleByRadamState, radam, scale_by_radam
from adamjax._scaling import (
    ScaleByLearningRateState,
    WeightDecayScheduleState,
    add_decayed_weights,
    scale_by_learning_rate,
)
from adamjax._schedules import beta1_cyclic, beta1_decay
from adamjax._swats import ScaleBySwatsState, scale_by_swats, swats
from adamjax._yogi import ScaleByYogiState, scale_by_yogi, yogi

__version__ = "0.1.0"

__all__ = [
    "AdafactorMomentumState",
    "ClipByBlockRmsState",
    "DiagnosticsState",
    "History",
    "QuantizedArray",
    "ScaleByAdaBoundState",
    "ScaleByAdamState",
    "ScaleByAdamaxState",
    "ScaleByAmsgradState",
    "ScaleByBeliefState",
    "ScaleByFactoredRmsState",
    "ScaleByLearningRateState",
    "ScaleByNadamState",
    "ScaleByRadamState",
    "ScaleBySwatsState",
    "ScaleByTrustRatioState",
    "ScaleByYogiState",
    "StepScalars",
    "StochasticRoundingState",
    "WeightDecayScheduleState",
    "__version__",
    "adabelief",
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
    "diagnostics",
    "lamb",
    "moment_presets",
    "nadam",
    "q8",
    "radam",
    "relative_step_schedule",
    "scale_by_adabound",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_amsgrad",
    "scale_by_belief",
    "scale_by_factored_rms",
    "scale_by_learning_rate",
    "scale_by_nadam",
    "scale_by_radam",
    "scale_by_swats",
    "scale_by_trust_ratio",
    "scale_by_yogi",
    "stochastic_bf16",
    "stochastic_rounding",
    "swats",
    "with_diagnostics",
    "yogi",
]
