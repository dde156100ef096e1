r"""The pieces every alias ends with, the learning rate and weight decay, and the chains that
place them: decoupled decay (AdamW), either scaling convention, or coupled L2 (torch's
``weight_decay`` on Adam, NAdam, Adamax, RAdam)."""

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _piece
from adamjax import _validation as v

WeightDecayScaling = Literal["learning_rate", "schedule"]
WEIGHT_DECAY_SCALINGS: tuple[str, ...] = ("learning_rate", "schedule")


class ScaleByLearningRateState(NamedTuple):
    r"""State of scale_by_learning_rate.

    The field names differ from every optax state's, so that ``optax.tree_utils.tree_get(state,
    "count")`` finds the moment piece's count, and ``tree_get``/``tree_set`` of
    ``"learning_rate"`` under ``optax.inject_hyperparams`` find the hyperparameter.

    Attributes:
      schedule_count: int32 scalar, the number of updates applied so far (the schedule's step).
      last_learning_rate: scalar, the learning rate :math:`\alpha_t` of the latest update,
        unsigned (0 before the first); diagnostics read it to turn Adam's preconditioner into
        effective learning rates.
    """

    schedule_count: jax.Array
    last_learning_rate: jax.Array


def scale_by_learning_rate(
    learning_rate: _piece.ScalarOrSchedule | None = None, *, flip_sign: bool = True
) -> optax.GradientTransformationExtraArgs:
    r"""Multiplies updates by minus the learning rate (or plus it) and records the rate.

    Update rule::

        update = -learning_rate * u               (flip_sign=False: learning_rate * u)

    The same updates as ``optax.scale_by_learning_rate``: a Python number multiplies weakly
    typed, an array or a schedule's value is cast to each update's dtype first. The only
    difference is the state, which keeps the step's learning rate so that
    :func:`adamjax.with_diagnostics` can report effective per-parameter learning rates. Every
    adamjax alias uses this piece.

    Args:
      learning_rate: :math:`\alpha`, a finite number >= 0, a jax array or an optax schedule of the
        0-based step count; ``None`` means no scaling at all (``optax.identity()``, as in optax,
        whose ``adadelta`` relies on it).
      flip_sign: multiply by :math:`-\alpha_t` (descent, the default) rather than
        :math:`\alpha_t`.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByLearningRateState`.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_adam(), adamjax.scale_by_learning_rate(1e-3))
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> state[1].last_learning_rate  # 1e-3
    """
    if learning_rate is None:
        v.check_bool("scale_by_learning_rate", "flip_sign", flip_sign)
        return optax.with_extra_args_support(optax.identity())
    return _learning_rate("scale_by_learning_rate", learning_rate, flip_sign)


def _learning_rate(
    fn: str, learning_rate: Any, flip_sign: bool = True
) -> optax.GradientTransformationExtraArgs:
    v.check_non_negative(fn, "learning_rate", learning_rate, schedule_ok=True)
    v.check_bool(fn, "flip_sign", flip_sign)
    sign = -1 if flip_sign else 1

    def init_fn(params: optax.Params) -> ScaleByLearningRateState:
        return ScaleByLearningRateState(
            jnp.zeros([], jnp.int32), jnp.zeros([], _piece.scalar_dtype(params))
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        dtype = state.last_learning_rate.dtype
        if callable(learning_rate):
            rate = learning_rate(state.schedule_count)
            updates = jax.tree.map(lambda g: jnp.array(sign * rate, dtype=g.dtype) * g, updates)
        else:
            # Cast back: an array learning rate must not promote bfloat16 updates to float32.
            updates = jax.tree.map(lambda g: ((sign * learning_rate) * g).astype(g.dtype), updates)
            rate = learning_rate
        recorded = jnp.real(jnp.asarray(rate)).astype(dtype)
        count = optax.safe_increment(state.schedule_count)
        return updates, ScaleByLearningRateState(count, recorded)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class WeightDecayScheduleState(NamedTuple):
    """State of add_decayed_weights with a scheduled decay: the int32 step schedule_count.

    Like optax's ``WeightDecaySchedule``, with a field name that does not shadow the moment
    piece's ``count``. A constant decay keeps ``optax.EmptyState``.
    """

    schedule_count: jax.Array


def add_decayed_weights(
    weight_decay: _piece.ScalarOrSchedule = 0.0, mask: Any | None = None
) -> optax.GradientTransformationExtraArgs:
    r"""Adds decoupled weight decay, weight_decay times the params, to the updates.

    Update rule::

        update = u + weight_decay * param         (param: before the step; leaves in mask only)

    .. math::

        u_t \leftarrow u_t + \lambda_t \theta_{t-1}

    Chained *after* a moment-scaling piece and *before* the learning rate (as in
    :func:`adamjax.adamw`), the decay is not rescaled by Adam's preconditioner: this is the
    decoupling of Loshchilov & Hutter (2019). Whether the decay is then multiplied by the learning
    rate is decided by where the alias puts it (``weight_decay_scaling`` in :func:`adamjax.adamw`).

    Args:
      weight_decay: :math:`\lambda`, a finite number, a jax array, or an optax schedule of the
        step count. A negative :math:`\lambda` grows the weights instead (optax's ``fromage``
        chains one); the aliases accept only :math:`\lambda \ge 0`.
      mask: a pytree of bools shaped like the params (or a prefix of them), or a callable that
        returns one from the params; only leaves marked ``True`` are decayed (commonly: not biases
        or norm scales). ``None`` decays every leaf.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is ``optax.EmptyState`` for a
      constant decay and :class:`WeightDecayScheduleState` for a schedule (wrapped in
      ``optax.MaskedState`` when ``mask`` is given). ``update`` needs ``params`` unless
      ``weight_decay`` is the constant 0.

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_adam(), adamjax.add_decayed_weights(1e-4),
      ...                  optax.scale_by_learning_rate(1e-3))
      >>> updates, state = tx.update(grads, tx.init(params), params)
    """
    fn = "add_decayed_weights"
    v.check_finite(fn, "weight_decay", weight_decay, schedule_ok=True)
    return decayed_weights(fn, weight_decay, mask, checked=True)


def decayed_weights(
    fn: str, weight_decay: Any, mask: Any, name: str = "mask", *, checked: bool = False
) -> optax.GradientTransformationExtraArgs:
    """:func:`add_decayed_weights`, with errors (a bad ``mask`` included) reported under ``fn``;
    ``weight_decay`` must be >= 0 unless the caller ``checked`` it already."""
    if not checked:
        v.check_non_negative(fn, "weight_decay", weight_decay, schedule_ok=True)
    scheduled = callable(weight_decay)

    def init_fn(params: optax.Params) -> Any:
        del params
        return (
            WeightDecayScheduleState(jnp.zeros([], jnp.int32)) if scheduled else optax.EmptyState()
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if scheduled:
            wd, state = (
                weight_decay(state.schedule_count),
                WeightDecayScheduleState(optax.safe_increment(state.schedule_count)),
            )
        else:
            wd = weight_decay
        if isinstance(wd, (int, float)) and wd == 0:
            return updates, state
        if params is None:
            raise ValueError(
                f"{fn}: update() needs params to decay them; call tx.update(grads, state, params)."
            )
        v.check_tree_match(fn, updates, params, what="params")
        # Cast back: an array or scheduled decay is not weakly typed and would promote bf16
        # updates to float32.
        updates = jax.tree.map(lambda u, p: (u + wd * p).astype(u.dtype), updates, params)
        return updates, state

    tx = optax.GradientTransformationExtraArgs(init_fn, update_fn)
    return tx if mask is None else checked_mask(fn, tx, mask, name)


def checked_mask(
    fn: str, tx: optax.GradientTransformation, mask: Any, name: str = "mask"
) -> optax.GradientTransformation:
    """``optax.masked(tx, mask)``, with a mask that does not fit the params failing by name.

    The check runs where the mask meets a tree (``init`` and every traced ``update``), on
    structures only, so it costs nothing in a compiled step.
    """
    if not callable(mask):
        v.check_mask_flags(fn, mask, name)

    def resolve(tree: Any) -> Any:
        flags = mask(tree) if callable(mask) else mask
        v.check_mask(fn, flags, tree, name)
        return flags

    return optax.masked(tx, resolve)


def decoupled_chain(
    fn: str,
    moment_piece: optax.GradientTransformation,
    *,
    learning_rate: Any,
    weight_decay: Any,
    mask: Any,
    weight_decay_scaling: str = "learning_rate",
    schedule_multiplier: Any = None,
) -> optax.GradientTransformationExtraArgs:
    """Chains a moment piece with decoupled weight decay under either scaling convention (see
    :func:`adamjax.adamw`)."""
    v.check_choice(fn, "weight_decay_scaling", weight_decay_scaling, WEIGHT_DECAY_SCALINGS)
    decay = decayed_weights(fn, weight_decay, mask)
    if weight_decay_scaling == "learning_rate":
        if schedule_multiplier is not None:
            raise ValueError(
                f"{fn}: schedule_multiplier is only used with weight_decay_scaling='schedule', "
                f"got {schedule_multiplier!r}; with 'learning_rate', put the schedule in "
                "learning_rate."
            )
        return optax.chain(moment_piece, decay, _learning_rate(fn, learning_rate))
    if callable(learning_rate):
        raise ValueError(
            f"{fn}: with weight_decay_scaling='schedule', learning_rate is the base rate alpha and "
            f"must be a number, got the schedule {learning_rate!r}; pass the schedule's shape as "
            "schedule_multiplier (e.g. optax.cosine_decay_schedule(1.0, steps))."
        )
    multiplier = 1.0 if schedule_multiplier is None else schedule_multiplier
    v.check_non_negative(fn, "schedule_multiplier", multiplier, schedule_ok=True)
    return optax.chain(
        moment_piece,
        _learning_rate(fn, learning_rate, flip_sign=False),
        decay,
        _learning_rate(fn, multiplier),
    )


def torch_style_chain(
    fn: str,
    moment_piece: optax.GradientTransformation,
    *,
    learning_rate: Any,
    weight_decay: Any,
    decoupled_weight_decay: bool,
    mask: Any,
) -> optax.GradientTransformationExtraArgs:
    """Chains a moment piece with torch-style weight decay: coupled L2 (``weight_decay`` joins
    the gradient before the moments see it) or, with ``decoupled_weight_decay``, AdamW's."""
    v.check_bool(fn, "decoupled_weight_decay", decoupled_weight_decay)
    if decoupled_weight_decay:
        return decoupled_chain(
            fn, moment_piece, learning_rate=learning_rate, weight_decay=weight_decay, mask=mask
        )
    return optax.chain(
        decayed_weights(fn, weight_decay, mask),
        moment_piece,
        _learning_rate(fn, learning_rate),
    )


def corrected_weight_decay(
    weight_decay: _piece.ScalarOrSchedule,
    learning_rate: _piece.ScalarOrSchedule,
    max_lr: Any | None = None,
) -> optax.Schedule:
    r"""Corrected weight decay (AdamC): the decay schedule weight_decay * lr_t / max_lr.

    Update rule::

        weight_decay_t = weight_decay * learning_rate(t) / max_lr

    Passed as the ``weight_decay`` of any alias whose decay the learning rate multiplies (the
    default ``weight_decay_scaling="learning_rate"`` of :func:`adamjax.adamw`, or
    :func:`~adamjax.add_decayed_weights` chained before :func:`~adamjax.scale_by_learning_rate`),
    the decay is scaled by :math:`\eta_t^2/\eta_{max}` instead of :math:`\eta_t`:

    .. math::

        \theta_t = \theta_{t-1} - \eta_t\, u_t - \frac{\eta_t^2}{\eta_{max}} \lambda_t
        \theta_{t-1}.

    Defazio et al. show that the steady-state norm of normalized layers then follows the
    schedule instead of blowing up as :math:`\eta_t \to 0`. The decay schedule counts its own
    steps, in step with the learning rate's (an ``optax.inject_hyperparams`` learning rate is
    not seen: give the schedule itself).

    Args:
      weight_decay: :math:`\lambda`, a number >= 0 or a schedule.
      learning_rate: :math:`\eta_t`, the same number or schedule the alias is given.
      max_lr: :math:`\eta_{max}` > 0, the peak learning rate (torch's ``max_lr``: the rate the
        optimizer was constructed with). Needed for a schedule; a number ``learning_rate`` is its
        own maximum, and the decay is then the plain AdamW decay.

    Returns:
      An optax schedule of the 0-based step count.

    References:
      Defazio, Mishchenko, Jelassi et al., "Why Gradients Rapidly Increase Near the End of
      Training", 2025. ``timm``'s ``corrected_weight_decay=True`` and ``pytorch_optimizer.AdamC``
      (its ``normalized`` param groups; with ``eps_mode="hat"``) compute this decay.

    Example:
      >>> lr = optax.cosine_decay_schedule(1e-3, 1000)
      >>> wd = adamjax.corrected_weight_decay(0.1, lr, max_lr=1e-3)
      >>> tx = adamjax.adamw(lr, weight_decay=wd)
    """
    fn = "corrected_weight_decay"
    v.check_non_negative(fn, "weight_decay", weight_decay, schedule_ok=True)
    v.check_non_negative(fn, "learning_rate", learning_rate, schedule_ok=True)
    if max_lr is None:
        if callable(learning_rate):
            raise ValueError(
                f"{fn}: max_lr is needed with a learning-rate schedule, got None; pass the peak "
                "rate, e.g. max_lr=1e-3"
            )
        max_lr = learning_rate
    v.check_positive(fn, "max_lr", max_lr)

    def schedule(count: jax.Array) -> jax.Array:
        wd = weight_decay(count) if callable(weight_decay) else weight_decay
        lr = learning_rate(count) if callable(learning_rate) else learning_rate
        return wd * (lr / max_lr)

    return schedule
