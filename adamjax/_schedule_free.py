r"""Schedule-Free learning (Defazio et al. 2024): the wrapper ``schedule_free`` that makes any
base transformation schedule-free, the alias ``schedule_free_adamw``, the evaluation params
``schedule_free_eval_params``, and the diagnostics view of the wrapper's state."""

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _diagnostics, _formats, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v

Convention = Literal["schedulefree", "optax"]
CONVENTIONS: tuple[str, ...] = ("schedulefree", "optax")

#: The largest polynomial weighting power accepted: the weights t**r are summed in the params'
#: scalar dtype, and 2**100 already needs a float32 exponent of 100 of its 127.
MAX_R = 100.0

#: What ``state_dtype`` (the storage of the z sequence) accepts.
Z_FORMAT_DOC = "None (the params' dtype), a floating dtype or adamjax.stochastic_bf16()"


class ScheduleFreeState(NamedTuple):
    r"""State of schedule_free, with the fields of optax.contrib's ScheduleFreeState.

    The field names and order are optax's, so ``optax.contrib.schedule_free_eval_params`` and
    ``optax.tree_utils.tree_get(state, "z")`` read it as they read optax's state.

    Attributes:
      b1: scalar, the interpolation :math:`\beta_1` between the average :math:`x` and the
        base iterate :math:`z` (kept so that the evaluation params need only the state).
      weight_sum: scalar, :math:`\sum_{i \le t} w_i`, the total averaging weight.
      step_count: int32 scalar, the number of updates applied plus one (optax's convention:
        1 before the first update).
      max_lr: scalar, the largest learning rate seen, :math:`\max_{i \le t}\gamma_i`.
      base_optimizer_state: the base transformation's state.
      z: the base iterate :math:`z_t`, shaped like the params, stored in ``state_dtype``.
      averaging_weight: scalar, :math:`c_t = w_t / \sum_{i \le t} w_i` of the latest update
        (0 before the first); diagnostics report it.
    """

    b1: jax.Array
    weight_sum: jax.Array
    step_count: jax.Array
    max_lr: jax.Array
    base_optimizer_state: optax.OptState
    z: optax.Params
    averaging_weight: jax.Array


class ScaleByRmsState(NamedTuple):
    r"""State of the second-moment piece of schedule_free_adamw (Adam without its first moment).

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      nu: raw (not bias-corrected) second moment :math:`v_t`, real, in ``nu_dtype``.
      last_step: the :class:`~adamjax.StepScalars` of the latest update (``m_correction``
        is 1: there is no first moment).
    """

    count: jax.Array
    nu: optax.Updates
    last_step: mo.StepScalars


def _check_b1(fn: str, b1: Any) -> None:
    v.check_range(
        fn, "b1", b1, low=0.0, high=1.0, open_low=True,
        why="the evaluation params divide by b1",
    )  # fmt: skip


def _check_z_format(fn: str, state_dtype: Any) -> None:
    if isinstance(_formats.stored_format(state_dtype), _formats.Q8):
        raise ValueError(
            f"{fn}: state_dtype cannot be adamjax.q8(): z is the base iterate itself, not a "
            "moment, and 8-bit blocks would move every parameter by up to 0.7% of its block's "
            f"largest entry at each step; use {Z_FORMAT_DOC}"
        )
    _formats.check_format(fn, "state_dtype", state_dtype)


def _scale_by_rms(
    fn: str, b2: Any, eps: Any, eps_root: Any, nu_dtype: Any
) -> optax.GradientTransformationExtraArgs:
    r"""Adam's step with no first moment, :math:`g_t / (\sqrt{\hat v_t + \epsilon_{root}} +
    \epsilon)` (``optax.scale_by_rms(eps_in_sqrt=False, bias_correction=True)``)."""
    _piece.check_moment_options(
        fn, b1=0.0, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=None, nu_dtype=nu_dtype
    )

    def init_fn(params: optax.Params) -> ScaleByRmsState:
        _piece.check_params(fn, params, None, b2=b2)
        nu = _piece.zeros_moment(params, nu_dtype, real=True)
        last = mo.StepScalars.initial(_piece.scalar_dtype(params))
        return ScaleByRmsState(jnp.zeros([], jnp.int32), nu, last)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        step = mo.moment_step(0.0, b2, eps, eps_root, "paper", state.count, state.last_step)

        def leaf(g, y, nu, *, settle):
            _, nu = settle(y, mo.ema(mo.squared_magnitude(g), nu, step.b2.rate))
            return mo.precondition(g, mo.corrected(nu, step.b2), step.eps, step.eps_root)

        # The params (which the wrapper always passes) go first and come back unused: the
        # boundary checks a complex gradient against its first tree, which must be the
        # params' shape and type, not the real second moment.
        stored = [
            _formats.Stored(params, None, signed=True),
            _formats.Stored(state.nu, nu_dtype, signed=False),
        ]
        updates, (_, nu) = _formats.update_leaves(fn, leaf, updates, stored, step.count)
        return updates, ScaleByRmsState(step.count, nu, step.record(state.last_step.eps.dtype))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@_piece.register_view(ScaleByRmsState)
def _rms_view(state: ScaleByRmsState, grads: Any) -> _piece.View:
    del grads
    last = state.last_step
    v_hat = _piece.corrected_tree(state.nu, last.v_correction)
    scale_of = _piece.each(v_hat, lambda x: mo.inverse_denominator(x, last))
    return _piece.View(v_hat, scale_of, False, None, v_hat)


def schedule_free(
    base_optimizer: optax.GradientTransformation,
    learning_rate: _piece.ScalarOrSchedule,
    b1: float | jax.Array = 0.9,
    weight_lr_power: float | jax.Array = 2.0,
    state_dtype: Any | None = None,
    *,
    r: float | jax.Array = 0.0,
    convention: Convention = "schedulefree",
) -> optax.GradientTransformationExtraArgs:
    r"""Makes any base transformation schedule-free (Defazio et al. 2024).

    Update rule::

        u = base_optimizer.update(g, params=y)      (the base step, learning rate included)
        lr = learning_rate(t - 1)   (convention="optax": learning_rate(t));  t = 1, 2, ...
        lr_max = max(lr_max, lr);  w = t**r * lr_max**weight_lr_power
        c = w / sum(w)                              (0 while sum(w) = 0)
        z = z + u;  x = (1 - c)*x + c*z;  y = b1*x + (1 - b1)*z
        update = y_new - y = c*(z_old - y) + (1 - b1*(1 - c)) * u

    The params the optimizer sees (and where gradients are taken) are :math:`y_t`. The base
    transformation steps the sequence :math:`z_t`, the average :math:`x_t` of the :math:`z`'s
    (the params to evaluate, see :func:`schedule_free_eval_params`) is never stored:

    .. math::

        z_{t} &= z_{t-1} + u_t, \qquad
        x_{t} = (1 - c_t)\, x_{t-1} + c_t z_t, \qquad
        y_t = \beta_1 x_t + (1-\beta_1) z_t, \\
        c_t &= \frac{w_t}{\sum_{i \le t} w_i}, \qquad
        w_t = t^r \left(\max_{i \le t} \gamma_i\right)^{p},

    with :math:`u_t` the base update at :math:`y_{t-1}`, :math:`\gamma_t` the learning rate and
    :math:`p` ``weight_lr_power``. Turn the base optimizer's momentum off (``b1=0``): the
    interpolation replaces it.

    The averaging weight reads ``learning_rate`` (a schedule, for warm-up) at a step that
    differs between the references:

    * ``convention="schedulefree"`` (default; the authors' ``schedulefree`` package): the
      0-based count of the update, the value the base optimizer's own schedule takes at that
      update.
    * ``convention="optax"`` (``optax.contrib.schedule_free``): one step ahead, the 1-based
      count.

    Args:
      base_optimizer: the transformation that steps :math:`z`, its learning rate included.
      learning_rate: :math:`\gamma_t`, a number >= 0 or an optax schedule of the step; only
        the averaging weights read it (pass the base optimizer's).
      b1: :math:`\beta_1`, the interpolation, in (0, 1].
      weight_lr_power: :math:`p`, a number >= 0 (0: uniform weights).
      state_dtype: storage of ``z``: None (the params' dtype), a floating dtype (optax's
        ``state_dtype``) or ``adamjax.stochastic_bf16()``. Not ``adamjax.q8()``: :math:`z` is
        an iterate, and its errors go straight into the params.
      r: :math:`r`, polynomial weighting :math:`t^r`, in [0, 100] (the package's ``r``). The
        weights are summed in the params' scalar dtype (float32 unless x64): :math:`t^r` must
        stay finite over the run.
      convention: ``"schedulefree"`` or ``"optax"``, see above.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScheduleFreeState`.
      ``update`` needs ``params``.

    References:
      Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less Scheduled", NeurIPS
      2024 (arXiv:2405.15682). Package ``schedulefree`` 1.4.1 (``convention="schedulefree"``);
      ``optax.contrib.schedule_free`` (``convention="optax"``).

    Example:
      >>> base = optax.chain(optax.scale_by_rms(), adamjax.scale_by_learning_rate(1e-3))
      >>> tx = adamjax.schedule_free(base, 1e-3, b1=0.9)
      >>> updates, state = tx.update(grads, tx.init(params), params)
    """
    fn = "schedule_free"
    if not isinstance(base_optimizer, optax.GradientTransformation):
        raise TypeError(
            f"{fn}: base_optimizer must be an optax.GradientTransformation, got "
            f"{type(base_optimizer).__name__}"
        )
    return _schedule_free(
        fn, base_optimizer, learning_rate, b1=b1, weight_lr_power=weight_lr_power,
        state_dtype=state_dtype, r=r, convention=convention,
    )  # fmt: skip


def _schedule_free(
    fn: str,
    base_optimizer: optax.GradientTransformation,
    learning_rate: Any,
    *,
    b1: Any,
    weight_lr_power: Any,
    state_dtype: Any,
    r: Any,
    convention: str,
) -> optax.GradientTransformationExtraArgs:
    v.check_non_negative(fn, "learning_rate", learning_rate, schedule_ok=True)
    _check_b1(fn, b1)
    v.check_non_negative(fn, "weight_lr_power", weight_lr_power)
    v.check_range(fn, "r", r, low=0.0, high=MAX_R)
    v.check_choice(fn, "convention", convention, CONVENTIONS)
    _check_z_format(fn, state_dtype)
    base = optax.with_extra_args_support(base_optimizer)
    ahead = convention == "optax"

    def init_fn(params: optax.Params) -> ScheduleFreeState:
        v.check_params(fn, params)
        dtype = _piece.scalar_dtype(params)
        zeros = _piece.zeros_moment(params, state_dtype, real=False)
        # A sum, never the params themselves: z needs buffers of its own (params and state
        # may both be donated to a jitted step).
        z = jax.tree.map(lambda zero, p: (zero + p).astype(zero.dtype), zeros, params)
        return ScheduleFreeState(
            b1=jnp.asarray(b1, dtype),
            weight_sum=jnp.zeros([], dtype),
            step_count=jnp.ones([], jnp.int32),
            max_lr=jnp.zeros([], dtype),
            base_optimizer_state=base.init(params),
            z=z,
            averaging_weight=jnp.zeros([], dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError(
                f"{fn}: update() needs params (the y sequence); call tx.update(grads, state, "
                "params)."
            )
        v.check_tree_match(fn, updates, params, what="params")
        dtype = state.weight_sum.dtype
        t = state.step_count
        lr = learning_rate(t if ahead else t - 1) if callable(learning_rate) else learning_rate
        lr = jnp.real(jnp.asarray(lr)).astype(dtype)
        max_lr = jnp.maximum(state.max_lr, lr)
        weight = t.astype(dtype) ** mo.as_scalar(r, dtype) * max_lr ** mo.as_scalar(
            weight_lr_power, dtype
        )
        weight_sum = state.weight_sum + weight
        # c = 0 while no weight has accumulated (the package's ZeroDivisionError branch); a NaN
        # stays visible.
        c = jnp.where(weight_sum == 0, 0, weight / jnp.where(weight_sum == 0, 1, weight_sum))
        base_updates, base_state = base.update(
            updates, state.base_optimizer_state, params, **extra_args
        )

        def leaf(u, z, y, *, settle):
            settle(z + u, y)  # z_new; the step below is written in the previous z
            # y_new = b1*x_new + (1-b1)*z_new with x_new = (1-c)*x + c*z_new, written in y and
            # z (x = (y - (1-b1)*z)/b1 is never formed, so b1 is never divided by).
            return c.astype(y.dtype) * (z - y) + (1 - state.b1.astype(y.dtype) * (1 - c)) * u

        stored = [
            _formats.Stored(state.z, state_dtype, signed=True),
            _formats.Stored(params, None, signed=True),
        ]
        count = optax.safe_increment(t)
        new_updates, (z, _) = _formats.update_leaves(fn, leaf, base_updates, stored, count)
        new_state = ScheduleFreeState(
            state.b1, weight_sum, count, max_lr, base_state, z, c.astype(dtype)
        )
        return new_updates, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _is_schedule_free_state(x: Any) -> bool:
    return isinstance(x, ScheduleFreeState) or (
        type(x).__name__ == "ScheduleFreeState" and hasattr(x, "b1") and hasattr(x, "z")
    )


def schedule_free_eval_params(state: optax.OptState, params: optax.Params) -> optax.Params:
    r"""The params to evaluate a schedule-free model at: the average x of the iterates.

    Update rule::

        x = (y - (1 - b1) * z) / b1           (y: the params being trained)

    Training sees :math:`y_t`; the averaged sequence
    :math:`x_t = (y_t - (1-\beta_1) z_t)/\beta_1` is the one to evaluate (and to checkpoint for
    inference). This is what the ``schedulefree`` package's ``optimizer.eval()`` swaps into
    the model, without changing the training params: keep training from ``params``.

    Args:
      state: the optimizer state: a :class:`ScheduleFreeState`, or any state holding exactly
        one (e.g. under ``with_diagnostics`` or in a chain), or optax's
        ``optax.contrib.ScheduleFreeState``.
      params: the current params :math:`y_t`.

    Returns:
      :math:`x_t`, shaped like ``params``, in the params' dtypes.

    References:
      Defazio et al., "The Road Less Scheduled", NeurIPS 2024.

    Example:
      >>> tx = adamjax.schedule_free_adamw(1e-3, warmup_steps=100)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> x = adamjax.schedule_free_eval_params(state, optax.apply_updates(params, updates))
    """
    fn = "schedule_free_eval_params"
    found = jax.tree.leaves(state, is_leaf=_is_schedule_free_state)
    found = [s for s in found if _is_schedule_free_state(s)]
    if len(found) != 1:
        raise ValueError(
            f"{fn}: state must hold exactly one schedule-free state (from adamjax.schedule_free, "
            f"schedule_free_adamw or optax.contrib.schedule_free), found {len(found)}"
        )
    sf = found[0]
    # Leaf by leaf in flattening order, so that a flax nnx state (whose leaves sit in Variables
    # of other types than the params') pairs up too; a quantized z would count as one leaf.
    ys, treedef = jax.tree.flatten(params)
    zs = jax.tree.leaves(sf.z, is_leaf=_formats.is_quantized)
    if len(ys) != len(zs):
        raise ValueError(
            f"{fn}: params have {len(ys)} leaves but the state's z has {len(zs)}; pass the "
            "params the optimizer state was built for"
        )
    (b1,) = jax.tree.leaves(sf.b1)

    def leaf(y: jax.Array, z: Any) -> jax.Array:
        z = _formats.decode(z, signed=True)
        if jnp.shape(y) != jnp.shape(z):
            raise ValueError(
                f"{fn}: a param of shape {jnp.shape(y)} meets a z of shape {jnp.shape(z)}"
            )
        dtype = mo.compute_dtype(y.dtype, z.dtype)
        beta = jnp.asarray(b1).astype(mo.real_dtype(dtype))
        x = (y.astype(dtype) - (1 - beta) * z.astype(dtype)) / beta
        return x.astype(y.dtype)

    return treedef.unflatten([leaf(y, z) for y, z in zip(ys, zs, strict=True)])


@_piece.register_view(ScheduleFreeState)
def _schedule_free_view(state: ScheduleFreeState, grads: Any) -> _piece.View:
    """The base optimizer's view (its learning rate applied, when its chain records one) with
    the averaging weight and the largest learning rate as scalars."""
    scalars = {
        "schedule_free/averaging_weight": state.averaging_weight,
        "schedule_free/max_lr": state.max_lr,
    }
    found: list[tuple[Any, Any]] = []
    _diagnostics._find_views(state.base_optimizer_state, None, found)
    if len(found) != 1:
        return _piece.View(scalars=scalars)
    inner, lr = found[0]
    view = _piece.view_of(inner)(_piece.decoded(inner), grads)
    if lr is not None and view.statistic is not None and not view.lr_included:
        # The base's learning rate is >= 0, so the factor stays nonincreasing in the statistic.
        scale_of = jax.tree.map(
            lambda f: lambda x, f=f: f(x) * jnp.asarray(lr).astype(_piece.real(x).dtype),
            view.scale_of,
            is_leaf=callable,
        )
        view = view._replace(scale_of=scale_of, lr_included=True)
    return view._replace(scalars={**(view.scalars or {}), **scalars})


# ---- aliases --------------------------------------------------------------------------------


def _warmup(learning_rate: Any, warmup_steps: int | None, convention: str) -> Any:
    """The learning rate with linear warm-up over ``warmup_steps`` updates: the package's
    :math:`\\gamma\\min(1, (k+1)/W)` at the 0-based update ``k``, or optax's
    ``warmup_constant_schedule(0, lr, W)``, :math:`\\gamma\\min(1, k/W)`. A schedule
    :math:`\\gamma_k` is multiplied by the same factor."""
    if not warmup_steps:
        return learning_rate
    offset = 0 if convention == "optax" else 1

    def schedule(count: jax.Array) -> jax.Array:
        # In the default float dtype (float64 with x64), as the package computes in Python
        # (optax's schedule computes in float32 even with x64).
        steps = jnp.minimum(count + offset, warmup_steps).astype(jnp.result_type(float))
        base = learning_rate(count) if callable(learning_rate) else learning_rate
        return base * (steps / warmup_steps)

    return schedule


def schedule_free_adamw(
    learning_rate: _piece.ScalarOrSchedule = 0.0025,
    warmup_steps: int | None = None,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    weight_lr_power: float | jax.Array = 2.0,
    state_dtype: Any | None = None,
    *,
    mask: Any | None = None,
    r: float | jax.Array = 0.0,
    eps_root: float | jax.Array = 0.0,
    nu_dtype: Any | None = None,
    convention: Convention = "schedulefree",
) -> optax.GradientTransformationExtraArgs:
    r"""Schedule-Free AdamW (Defazio et al. 2024): AdamW without momentum, made schedule-free.

    Update rule::

        lr = learning_rate * min(1, t / warmup_steps)          (t = 1, 2, ...)
        v = b2*v + (1-b2)*g**2;  v_hat = v / (1 - b2**t)
        d = g / (sqrt(v_hat + eps_root) + eps) + weight_decay * y     (decay at y)
        z = z - lr*d
        lr_max = max(lr_max, lr);  w = t**r * lr_max**weight_lr_power;  c = w / sum(w)
        x = (1 - c)*x + c*z;  y = b1*x + (1 - b1)*z                   (the params are y)

    Gradients :math:`g_t` are taken at the params :math:`y_{t-1}`:

    .. math::

        z_t &= z_{t-1} - \gamma_t \left(\frac{g_t}{\sqrt{\hat v_t} + \epsilon}
               + \lambda y_{t-1}\right), \qquad
        x_t = (1 - c_t) x_{t-1} + c_t z_t, \qquad y_t = \beta_1 x_t + (1 - \beta_1) z_t, \\
        c_t &= \frac{w_t}{\sum_{i \le t} w_i}, \qquad
        w_t = t^r \left(\max_{i \le t}\gamma_i\right)^{p}.

    Evaluate (and export) the model at :math:`x_t`, given by
    :func:`schedule_free_eval_params`. It is :func:`schedule_free` around
    ``chain(second moment, add_decayed_weights, scale_by_learning_rate)``; the positional
    parameters are ``optax.contrib.schedule_free_adamw``'s.

    Warm-up: the references agree everywhere except in which step reads the warm-up:

    * ``convention="schedulefree"`` (default; ``schedulefree.AdamWScheduleFree``): step
      :math:`t` uses :math:`\gamma_t = \gamma \min(1, t/W)` for both the :math:`z` step and the
      weight :math:`w_t`.
    * ``convention="optax"`` (``optax.contrib.schedule_free_adamw``): the :math:`z` step uses
      :math:`\gamma\min(1, (t-1)/W)` (the first step does not move :math:`z`) and the weight
      :math:`\gamma \min(1, t/W)`.

    Without warm-up the two are the same.

    Args:
      learning_rate: :math:`\gamma`, a number >= 0 or a schedule (with ``warmup_steps``, a
        schedule is multiplied by the warm-up factor).
      warmup_steps: :math:`W`, an integer >= 0 or None (no warm-up).
      b1: :math:`\beta_1`, the interpolation between :math:`x` and :math:`z`, in (0, 1].
      b2: :math:`\beta_2`, decay of the second moment, in [0, 1).
      eps: added to the denominator outside the square root, >= 0.
      weight_decay: :math:`\lambda`, decoupled decay evaluated at :math:`y` (as the package
        and optax), a number >= 0 or a schedule.
      weight_lr_power: :math:`p`, a number >= 0.
      state_dtype: storage of ``z``, see :func:`schedule_free`.
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      r: :math:`r`, polynomial weighting, in [0, 100] (the package's ``r``), see
        :func:`schedule_free`.
      eps_root: added inside the square root, >= 0.
      nu_dtype: storage of the second moment: None (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      convention: ``"schedulefree"`` or ``"optax"``, see above.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: :func:`schedule_free` around
      ``chain(second moment, add_decayed_weights, scale_by_learning_rate)``; its state is a
      :class:`ScheduleFreeState` whose ``base_optimizer_state`` holds a
      :class:`ScaleByRmsState`. Call ``update`` with ``params``.

    References:
      Defazio et al., "The Road Less Scheduled", NeurIPS 2024. Package ``schedulefree``
      1.4.1, ``AdamWScheduleFree``
      (``convention="schedulefree"``); ``optax.contrib.schedule_free_adamw``
      (``convention="optax"``).

    Example:
      >>> tx = adamjax.schedule_free_adamw(1e-3, warmup_steps=100, weight_decay=1e-4)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> x = adamjax.schedule_free_eval_params(state, optax.apply_updates(params, updates))
    """
    fn = "schedule_free_adamw"
    v.check_choice(fn, "convention", convention, CONVENTIONS)
    if warmup_steps is not None:
        v.check_integer(fn, "warmup_steps", warmup_steps, minimum=0, array_ok=False)
    v.check_non_negative(fn, "learning_rate", learning_rate, schedule_ok=True)
    lr = _warmup(learning_rate, warmup_steps, convention)
    moments = _scale_by_rms(fn, b2, eps, eps_root, nu_dtype)
    base = _scaling.decoupled_chain(
        fn, moments, learning_rate=lr, weight_decay=weight_decay, mask=mask
    )
    return _schedule_free(
        fn, base, lr, b1=b1, weight_lr_power=weight_lr_power, state_dtype=state_dtype, r=r,
        convention=convention,
    )  # fmt: skip
