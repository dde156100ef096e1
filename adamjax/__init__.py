"""adamjax: Adam and its relatives as composable, optax-compatible gradient transformations.

The package exports aliases (``adam``, ``adamw``, ...), the pieces they chain (``scale_by_*``,
``add_decayed_weights``, ``scale_by_learning_rate``), their states, the moment storage formats
(``q8``, ``stochastic_bf16``, ``step_from_stored``) and the wrappers (``with_diagnostics``).
The implementation is in private modules, in layers without cycles:

* ``_moments``: the moment maths (EMA, bias correction, eps placement), written once;
* ``_formats``: how moments are stored, and the boundary every piece runs its per-leaf maths in
  (decode, compute, encode);
* ``_piece`` and ``_scaling``: what the pieces share; the learning rate and weight decay;
* one module per variant (``_adam``, ``_nadam``, ``_adamax``, ``_radam``, ``_adabound``,
  ``_adafactor``, ``_swats`` and the modern family: ``_ademamix``, ``_schedule_free``,
  ``_adam_mini``, ``_came``, ``_laprop``, ``_adopt``, ...), each owning its piece, its alias
  and its diagnostics view;
* ``_modifiers``: what composes with any piece (``cautious``, ``update_clipping``) and the
  aliases built from the modifiers (``stable_adamw``, ``adam_atan2``);
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
    nadamw,
    scale_by_adam,
    scale_by_amsgrad,
)
from adamjax._adam_mini import (
    ScaleByAdamMiniState,
    adam_mini,
    adam_mini_decay_mask,
    adam_mini_partition,
    scale_by_adam_mini,
)
from adamjax._adamax import ScaleByAdamaxState, adamax, adamaxw, scale_by_adamax
from adamjax._adan import ScaleByAdanState, adan, scale_by_adan
from adamjax._ademamix import (
    ScaleByAdemamixState,
    ScaleBySimplifiedAdemamixState,
    ademamix,
    ademamix_alpha_schedule,
    ademamix_b3_schedule,
    scale_by_ademamix,
    scale_by_simplified_ademamix,
    simplified_ademamix,
)
from adamjax._adopt import ScaleByAdoptState, adopt, scale_by_adopt
from adamjax._came import ScaleByCameState, came, scale_by_came
from adamjax._diagnostics import DiagnosticsState, diagnostics, with_diagnostics
from adamjax._formats import (
    QuantizedArray,
    StochasticRoundingState,
    moment_presets,
    q8,
    step_from_stored,
    stochastic_bf16,
    stochastic_rounding,
)
from adamjax._history import History
from adamjax._lamb import ScaleByTrustRatioState, lamb, scale_by_trust_ratio
from adamjax._laprop import ScaleByLapropState, laprop, scale_by_laprop
from adamjax._modifiers import adam_atan2, cautious, stable_adamw, update_clipping
from adamjax._moments import StepScalars
from adamjax._nadam import ScaleByNadamState, nadam, scale_by_nadam
from adamjax._radam import ScaleByRadamState, radam, scale_by_radam
from adamjax._scaling import (
    ScaleByLearningRateState,
    WeightDecayScheduleState,
    add_decayed_weights,
    corrected_weight_decay,
    scale_by_learning_rate,
)
from adamjax._schedule_free import (
    ScaleByRmsState,
    ScheduleFreeState,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
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
    "ScaleByAdamMiniState",
    "ScaleByAdamState",
    "ScaleByAdamaxState",
    "ScaleByAdanState",
    "ScaleByAdemamixState",
    "ScaleByAdoptState",
    "ScaleByAmsgradState",
    "ScaleByBeliefState",
    "ScaleByCameState",
    "ScaleByFactoredRmsState",
    "ScaleByLapropState",
    "ScaleByLearningRateState",
    "ScaleByNadamState",
    "ScaleByRadamState",
    "ScaleByRmsState",
    "ScaleBySimplifiedAdemamixState",
    "ScaleBySwatsState",
    "ScaleByTrustRatioState",
    "ScaleByYogiState",
    "ScheduleFreeState",
    "StepScalars",
    "StochasticRoundingState",
    "WeightDecayScheduleState",
    "__version__",
    "adabelief",
    "adabound",
    "adabound_bounds",
    "adafactor",
    "adam",
    "adam_atan2",
    "adam_mini",
    "adam_mini_decay_mask",
    "adam_mini_partition",
    "adamax",
    "adamaxw",
    "adamw",
    "adan",
    "add_decayed_weights",
    "ademamix",
    "ademamix_alpha_schedule",
    "ademamix_b3_schedule",
    "adopt",
    "amsgrad",
    "beta1_cyclic",
    "beta1_decay",
    "came",
    "cautious",
    "clip_by_block_rms",
    "corrected_weight_decay",
    "diagnostics",
    "lamb",
    "laprop",
    "moment_presets",
    "nadam",
    "nadamw",
    "q8",
    "radam",
    "relative_step_schedule",
    "scale_by_adabound",
    "scale_by_adam",
    "scale_by_adam_mini",
    "scale_by_adamax",
    "scale_by_adan",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_amsgrad",
    "scale_by_belief",
    "scale_by_came",
    "scale_by_factored_rms",
    "scale_by_laprop",
    "scale_by_learning_rate",
    "scale_by_nadam",
    "scale_by_radam",
    "scale_by_simplified_ademamix",
    "scale_by_swats",
    "scale_by_trust_ratio",
    "scale_by_yogi",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "simplified_ademamix",
    "stable_adamw",
    "step_from_stored",
    "stochastic_bf16",
    "stochastic_rounding",
    "swats",
    "update_clipping",
    "with_diagnostics",
    "yogi",
]
