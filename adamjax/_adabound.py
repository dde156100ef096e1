r"""AdaBound and AMSBound (Luo et al. 2019): Adam with its per-entry step size clipped to bounds
that close in on an SGD learning rate.

One piece, one alias and their diagnostics view:

* :func:`scale_by_adabound` keeps Adam's moments (or AMSGrad's running maximum, for AMSBound),
  forms the per-entry step size, clips it to the dynamic bounds and returns the *already scaled*
  step :math:`\eta_t \odot m_t` (positive: a descent direction times a step size);
* :func:`adabound` chains coupled L2 weight decay, that piece and ``optax.scale(-1.0)``.

The learning rate is an argument of the piece, not a separate ``optax.scale_by_learning_rate``
after it, because AdaBound applies it *inside* the clip: scaling the clipped step afterwards would
also scale the bounds. Do not chain another learning-rate piece after :func:`scale_by_adabound`.

The conventions are those of the authors' package ``adabound`` 0.0.5 (which differ from the
paper's Algorithm 2 in three places: the bias corrections, eps, and no :math:`1/\sqrt t` decay),
see :func:`scale_by_adabound`.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _formats, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v


class ScaleByAdaBoundState(NamedTuple):
    r"""State of scale_by_adabound.

    Besides the moments, the state records the scalars of the last step (the learning rate, the
    bounds, the bias corrections and the placed eps), so diagnostics can rebuild the step sizes and
    count the clipped entries with :func:`clipped_step_size`, the function the update uses,
    without costing the update anything.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: raw first moment :math:`m_t` (not bias-corrected), in ``mu_dtype``.
      nu: raw second moment :math:`v_t`, real-valued, in ``nu_dtype``.
      nu_max: for AMSBound, the running maximum :math:`\max_{i \le t} v_i` of the raw second
        moment, in ``nu_dtype`` (a buffer of its own); ``None`` for AdaBound.
      base_lr: scalar, the learning rate at ``init`` (:math:`\alpha_0`, ``schedule(0)`` for a
        schedule), against which the bounds follow the learning rate.
      last_learning_rate: scalar, the learning rate :math:`\alpha_t` of the last step (0 before
        the first). Not called ``learning_rate``, so that ``optax.tree_utils.tree_get`` of
        ``"learning_rate"`` under ``optax.inject_hyperparams`` finds the hyperparameter.
      lower_bound: scalar, the lower bound :math:`\eta_l(t)` of the last step (0 before the first).
      upper_bound: scalar, the upper bound :math:`\eta_u(t)` of the last step (0 before the first;
        ``inf`` with ``gamma=0``).
      last_step: the :class:`~adamjax.StepScalars` of the last step: :math:`c_{1,t}`,
        :math:`c_{2,t}` (which a scheduled ``b1``/``b2`` continues from), :math:`\epsilon` in the
        :math:`\hat\epsilon` form and, for AMSBound, the correction of ``nu_max``
        (:math:`c_{2,t}`: the maximum is of the raw :math:`v`).
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    nu_max: optax.Updates | None
    base_lr: jax.Array
    last_learning_rate: jax.Array
    lower_bound: jax.Array
    upper_bound: jax.Array
    last_step: mo.StepScalars


# ---- the step size and the bounds, written once ----------------------------------------------


def adabound_step_size(
    learning_rate: jax.Array, v_used: jax.Array, last_step: mo.StepScalars
) -> jax.Array:
    r"""Returns AdaBound's unclipped step size :math:`\hat\eta_t` for one leaf.

    :math:`\hat\eta_t = \alpha_t / c_{1,t} \cdot 1/(\sqrt{\tilde v_t / c_{2,t}} + \epsilon_t)`,
    the :math:`\hat\epsilon`-form Adam direction of a first moment equal to :math:`\alpha_t`
    everywhere; ``last_step`` holds the corrections and :math:`\epsilon_t` (see
    :func:`scale_by_adabound`). ``v_used`` is :math:`v_t` (AdaBound) or its running maximum
    (AMSBound), in the compute dtype.
    """
    real = v_used.dtype
    return mo.precondition(
        learning_rate.astype(real) / last_step.m_correction.astype(real),
        v_used / last_step.v_correction.astype(real),
        last_step.eps.astype(real),
        last_step.eps_root.astype(real),
    )


def clipped_step_size(
    learning_rate: jax.Array,
    v_used: jax.Array,
    last_step: mo.StepScalars,
    lower: jax.Array,
    upper: jax.Array,
) -> jax.Array:
    r"""Returns AdaBound's step size :math:`\eta_t = \operatorname{clip}(\hat\eta_t, \eta_l(t),
    \eta_u(t))` for one leaf: :func:`adabound_step_size` clipped to the bounds of
    :func:`adabound_bounds`. The update is :math:`\eta_t \odot m_t`; diagnostics read the
    effective learning rate as :math:`\eta_t c_{1,t}` (the step multiplies the raw
    :math:`m_t = c_{1,t} \hat m_t`)."""
    step = adabound_step_size(learning_rate, v_used, last_step)
    return jnp.clip(step, lower.astype(step.dtype), upper.astype(step.dtype))


def adabound_bounds(final_lr: Any, gamma: Any, t: Any) -> tuple[jax.Array, jax.Array]:
    r"""Returns AdaBound's bounds (lower, upper) on the step size at step t.

    Bounds::

        lower = final_lr * (1 - 1 / (gamma*t + 1))
        upper = final_lr * (1 + 1 / (gamma*t))              (+inf where gamma*t = 0)

    In the paper's notation:

    .. math::

        \eta_l(t) = \alpha^\star \left(1 - \frac{1}{\gamma t + 1}\right), \qquad
        \eta_u(t) = \alpha^\star \left(1 + \frac{1}{\gamma t}\right),

    with :math:`\alpha^\star` = ``final_lr``. Both tend to :math:`\alpha^\star` as :math:`t` grows
    (the lower bound from 0, the upper bound from :math:`+\infty`), at a speed set by
    :math:`\gamma`. With :math:`\gamma t = 0` the upper bound is :math:`+\infty` (never ``nan``,
    even for :math:`\alpha^\star = 0`).

    Args:
      final_lr: :math:`\alpha^\star`, a scalar (already following the learning-rate schedule).
      gamma: :math:`\gamma`, a scalar.
      t: the 1-based step, a scalar array in the floating dtype the bounds should have.

    Returns:
      ``(lower, upper)``, scalars.
    """
    gt = gamma * t
    lower = final_lr * (1 - 1 / (gt + 1))
    positive = gt > 0
    upper = jnp.where(positive, final_lr * (1 + 1 / jnp.where(positive, gt, 1)), jnp.inf)
    return lower, upper


# ---- the step's scalars and the per-leaf maths -----------------------------------------------


class BoundStep(NamedTuple):
    """The scalars of one AdaBound update, computed once at the top of ``update_fn``.

    Attributes:
      moments: the :class:`~adamjax._moments.MomentStep` of ``b1`` and ``b2`` (eps in the
        :math:`\\hat\\epsilon` form).
      learning_rate: :math:`\\alpha_t`, in the state's scalar dtype.
      lower: :math:`\\eta_l(t)`, likewise.
      upper: :math:`\\eta_u(t)`, likewise.
      last: the :class:`~adamjax.StepScalars` the state keeps; the step size is computed from
        these recorded scalars, so diagnostics rebuild exactly the update's step sizes.
    """

    moments: mo.MomentStep
    learning_rate: jax.Array
    lower: jax.Array
    upper: jax.Array
    last: mo.StepScalars


def _step_bounds(
    learning_rate: Any, final_lr: Any, gamma: Any, count: jax.Array, base_lr: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""``(alpha_t, lower, upper)`` of the update that follows ``count`` updates, in ``base_lr``'s
    dtype: the bounds are those of :math:`\alpha^\star_t = \alpha^\star \alpha_t / \alpha_0`
    (:math:`\alpha^\star` when :math:`\alpha_0 = 0`)."""
    dtype = base_lr.dtype
    lr = jnp.asarray(mo.rate_at(learning_rate, count), dtype)
    has_base = base_lr > 0
    # The package's order of operations: final_lr * lr / base_lr.
    final = jnp.where(has_base, final_lr * lr / jnp.where(has_base, base_lr, 1), final_lr)
    t = optax.safe_increment(count).astype(dtype)
    lower, upper = adabound_bounds(final.astype(dtype), gamma, t)
    # An array gamma of another precision must not change the state's dtypes.
    return lr, lower.astype(dtype), upper.astype(dtype)


def bound_step(
    state: ScaleByAdaBoundState,
    *,
    learning_rate: Any,
    final_lr: Any,
    gamma: Any,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    amsbound: bool,
) -> BoundStep:
    """The :class:`BoundStep` of the update that follows ``state``."""
    step = mo.moment_step(b1, b2, eps, eps_root, "hat", state.count, state.last_step)
    lr, lower, upper = _step_bounds(learning_rate, final_lr, gamma, state.count, state.base_lr)
    # AMSBound's maximum is of the raw v, so it is corrected like v.
    max_correction = step.b2.correction if amsbound else None
    last = step.record(state.base_lr.dtype, max_correction=max_correction)
    return BoundStep(step, lr, lower, upper, last)


def adabound_leaf(
    step: BoundStep, g: jax.Array, m: jax.Array, nu: jax.Array, *nu_max: jax.Array,
    settle: _formats.Settle,
) -> jax.Array:  # fmt: skip
    r"""One leaf of the update, in the compute dtype: the new ``m``, ``nu`` and, for AMSBound
    (given the previous ``nu_max``), ``nu_max``, stored by ``settle``, and
    :math:`u_t = \eta_t \odot m_t` (:func:`clipped_step_size`)."""
    m = mo.ema(g, m, step.moments.b1.rate)
    nu = mo.ema(mo.squared_magnitude(g), nu, step.moments.b2.rate)
    # The maximum of nu as computed, not as stored: the stored state is the format's own.
    m, *second = settle(m, nu, jnp.maximum(nu_max[0], nu)) if nu_max else settle(m, nu)
    size = clipped_step_size(step.learning_rate, second[-1], step.last, step.lower, step.upper)
    return size * m


# ---- the piece -------------------------------------------------------------------------------


def scale_by_adabound(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    final_lr: float | jax.Array = 0.1,
    gamma: float | jax.Array = 1e-3,
    b1: float | jax.Array | optax.Schedule = 0.9,
    b2: float | jax.Array | optax.Schedule = 0.999,
    eps: float | jax.Array = 1e-8,
    *,
    amsbound: bool = False,
    eps_root: float | jax.Array = 0.0,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Scales updates by AdaBound's clipped step size (the learning rate included).

    Update rule::

        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*|g|**2             (t = 1, 2, ...)
        amsbound=True:  v_max = max(v_max, v), used in place of v below
        step = learning_rate * sqrt(1 - b2**t) / ((1 - b1**t) * (sqrt(v + eps_root) + eps))
        final = final_lr * learning_rate / learning_rate_0         (learning_rate_0: at init)
        lower = final * (1 - 1 / (gamma*t + 1));  upper = final * (1 + 1 / (gamma*t))
        update = clip(step, lower, upper) * m                      (positive: not negated)

    With the moments of :func:`~adamjax.scale_by_adam`, bias corrections
    :math:`c_{k,t} = 1 - \prod_{i \le t}\beta_{k,i}` (:math:`1-\beta_k^t` for constants) and the
    learning rate :math:`\alpha_t`:

    .. math::

        \hat\eta_t &= \frac{\alpha_t \sqrt{c_{2,t}}}{c_{1,t}} \cdot
                     \frac{1}{\sqrt{\tilde v_t} + \epsilon}, \qquad
        \tilde v_t = v_t \ \text{(AdaBound)}, \quad
        \tilde v_t = \max(\tilde v_{t-1}, v_t) \ \text{(AMSBound)}, \\
        \alpha^\star_t &= \alpha^\star \, \alpha_t / \alpha_0, \qquad
        \eta_t = \operatorname{clip}\!\left(\hat\eta_t,\ \alpha^\star_t\Bigl(1 - \frac{1}{\gamma t
                 + 1}\Bigr),\ \alpha^\star_t\Bigl(1 + \frac{1}{\gamma t}\Bigr)\right), \\
        u_t &= \eta_t \odot m_t,

    elementwise, with the *raw* first moment :math:`m_t`: its bias correction sits inside
    :math:`\hat\eta_t` and is clipped with it. :math:`\epsilon` is added to :math:`\sqrt{v_t}`,
    before the bias correction (the :math:`\hat\epsilon` form, as ``eps_mode="hat"`` of
    :func:`~adamjax.scale_by_adam` places it), and the running maximum is taken over the raw
    :math:`v_t`. The piece returns :math:`+u_t`; negate it (``optax.scale(-1.0)``, as
    :func:`adabound` does) before ``optax.apply_updates``. Do not add a learning-rate piece:
    :math:`\alpha_t` is already in.

    These are the conventions of the authors' package (``adabound.AdaBound`` 0.0.5). The paper's
    Algorithm 2 differs: no bias corrections and no eps, a step :math:`\eta_t/\sqrt t`, and
    :math:`\gamma = 1-\beta_2`, :math:`\alpha^\star = 0.1` written in.

    **The bounds follow the learning rate.** :math:`\alpha_0` is the learning rate at ``init``
    (``schedule(0)``; kept in :attr:`ScaleByAdaBoundState.base_lr`), so a schedule scales the
    bounds along with the Adam step, as the package does under a torch ``LRScheduler``. A constant
    learning rate leaves them at :math:`\alpha^\star`, even when it is 0 (the bounds then still
    move the params, as in the paper, where they do not involve :math:`\alpha`). A schedule with
    ``schedule(0) <= 0`` is rejected at construction. Only a learning rate that is traced at
    ``init`` (e.g. under ``optax.inject_hyperparams``) can still give :math:`\alpha_0 = 0`; the
    bounds then stay at :math:`\alpha^\star` instead of becoming ``nan``.

    Args:
      learning_rate: :math:`\alpha_t`, the Adam step size: a number >= 0, a jax array or an optax
        schedule with ``schedule(0) > 0``.
      final_lr: :math:`\alpha^\star`, the SGD learning rate the bounds converge to, a finite
        number >= 0.
      gamma: :math:`\gamma`, how fast the bounds converge, in [0, 1). With 0 there are no bounds
        (lower 0, upper :math:`+\infty`): the piece is Adam with :math:`\hat\epsilon`.
      b1: decay of the first moment, in [0, 1), or a schedule of the 0-based count.
      b2: decay of the second moment, in [0, 1), or a schedule of the 0-based count.
      eps: added to :math:`\sqrt{\tilde v_t}`, >= 0.
      amsbound: use the running maximum of the second moment (AMSBound).
      eps_root: added to :math:`\tilde v_t` inside the square root, >= 0 (0 in the package).
        Make it positive to differentiate through the update (meta-learning): the square
        root's derivative at a zero second moment is infinite.
      mu_dtype: storage of ``mu``: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of ``nu`` and ``nu_max``, as ``mu_dtype`` (real for complex params).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByAdaBoundState`.
      ``update`` does not need params. Updates come back in the gradients' dtype; arithmetic runs
      in at least float32.

    References:
      Luo, Xiong, Liu & Sun, "Adaptive Gradient Methods with Dynamic Bound of Learning Rate",
      ICLR 2019, Algorithms 2 (AdaBound) and 3 (AMSBound). Convention: the authors' package
      ``adabound`` 0.0.5, ``AdaBound.step``.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_adabound(1e-3, final_lr=0.1), optax.scale(-1.0))
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> params = optax.apply_updates(params, updates)
    """
    return _adabound_moments(
        "scale_by_adabound", learning_rate=learning_rate, final_lr=final_lr, gamma=gamma, b1=b1,
        b2=b2, eps=eps, eps_root=eps_root, amsbound=amsbound, mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )  # fmt: skip


def _check_options(
    fn: str, *, learning_rate: Any, final_lr: Any, gamma: Any, amsbound: Any
) -> None:
    """Checks the options AdaBound adds to Adam's, under the name of the function the user
    called."""
    v.check_non_negative(fn, "learning_rate", learning_rate, schedule_ok=True)
    v.check_non_negative(fn, "final_lr", final_lr)
    # gamma only sets how fast the bounds close (1 / (gamma t + 1)): 1.0 in float32 is harmless.
    v.check_unit_interval(fn, "gamma", gamma, exact=False)
    v.check_bool(fn, "amsbound", amsbound)
    if callable(learning_rate):
        # The bounds scale with schedule(t) / schedule(0), which a schedule starting at 0 leaves
        # undefined. Checked once here, where the value is concrete (not under a trace).
        start = learning_rate(jnp.zeros([], jnp.int32))
        if not isinstance(start, jax.core.Tracer) and not float(start) > 0:
            raise ValueError(
                f"{fn}: a learning_rate schedule must be positive at step 0, got "
                f"schedule(0) = {float(start)!r}. The bounds follow the schedule as "
                "final_lr * schedule(t) / schedule(0); start a warmup at a small positive value, "
                "e.g. optax.linear_schedule(1e-3 * peak, peak, warmup_steps)."
            )


def _adabound_moments(
    fn: str,
    *,
    learning_rate: Any,
    final_lr: Any,
    gamma: Any,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    amsbound: bool,
    mu_dtype: Any,
    nu_dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    """:func:`scale_by_adabound`, validated under ``fn``, the name of the function the user
    called."""
    _check_options(
        fn, learning_rate=learning_rate, final_lr=final_lr, gamma=gamma, amsbound=amsbound
    )
    _piece.check_moment_options(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    scalars = functools.partial(
        bound_step, learning_rate=learning_rate, final_lr=final_lr, gamma=gamma, b1=b1, b2=b2,
        eps=eps, eps_root=eps_root, amsbound=amsbound,
    )  # fmt: skip

    def init_fn(params: optax.Params) -> ScaleByAdaBoundState:
        _piece.check_params(fn, params, mu_dtype, b1=b1, b2=b2)
        return _init_state(params, learning_rate, amsbound, mu_dtype, nu_dtype)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        step = scalars(state)
        stored = _formats.adam_stored(state, mu_dtype, nu_dtype)
        if amsbound:
            stored.append(_formats.Stored(state.nu_max, nu_dtype, signed=False))
        leaf = functools.partial(adabound_leaf, step)
        count = step.moments.count
        updates, (mu, nu, *nu_max) = _formats.update_leaves(fn, leaf, updates, stored, count)
        return updates, ScaleByAdaBoundState(
            count, mu, nu, nu_max[0] if amsbound else None, state.base_lr, step.learning_rate,
            step.lower, step.upper, step.last,
        )  # fmt: skip

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _init_state(
    params: Any, learning_rate: Any, amsbound: bool, mu_dtype: Any, nu_dtype: Any
) -> ScaleByAdaBoundState:
    """The state before the first update: zero moments (``nu_max`` a buffer of its own, as a
    state donated to jit must not hold one buffer twice) and :math:`\\alpha_0` in ``base_lr``."""
    dtype = _piece.scalar_dtype(params)
    start = mo.rate_at(learning_rate, jnp.zeros([], jnp.int32))
    return ScaleByAdaBoundState(
        count=jnp.zeros([], jnp.int32),
        mu=_piece.zeros_moment(params, mu_dtype, real=False),
        nu=_piece.zeros_moment(params, nu_dtype, real=True),
        nu_max=_piece.zeros_moment(params, nu_dtype, real=True) if amsbound else None,
        base_lr=jnp.array(start, dtype),
        last_learning_rate=jnp.zeros([], dtype),
        lower_bound=jnp.zeros([], dtype),
        upper_bound=jnp.zeros([], dtype),
        last_step=mo.StepScalars.initial(dtype, with_max=amsbound),
    )


# ---- the diagnostics view --------------------------------------------------------------------


@_piece.register_view(ScaleByAdaBoundState)
def _adabound_view(state: ScaleByAdaBoundState, grads: Any) -> _piece.View:
    """The effective learning rate is the clipped step size times :math:`c_{1,t}` (the step
    multiplies the raw :math:`m_t = c_{1,t}\\hat m_t`), the learning rate included."""
    del grads
    last, lr = state.last_step, state.last_learning_rate
    lower, upper = state.lower_bound, state.upper_bound
    v_hat = _piece.corrected_tree(state.nu, last.v_correction)
    used = jax.tree.map(_piece.real, state.nu if state.nu_max is None else state.nu_max)

    def scale(x: jax.Array) -> jax.Array:
        size = clipped_step_size(lr, x, last, lower, upper)
        return size * last.m_correction.astype(size.dtype)

    def below(x: jax.Array) -> jax.Array:
        return adabound_step_size(lr, x, last) < lower.astype(x.dtype)

    def above(x: jax.Array) -> jax.Array:
        return adabound_step_size(lr, x, last) > upper.astype(x.dtype)

    fractions = {
        "adabound/lower_clipped_fraction": jax.tree.map(below, used),
        "adabound/upper_clipped_fraction": jax.tree.map(above, used),
    }
    estimate = v_hat
    if state.nu_max is not None:
        estimate = _piece.corrected_tree(state.nu_max, last.max_correction)
        fractions["amsgrad/active_fraction"] = jax.tree.map(jnp.greater, estimate, v_hat)
    scalars = {"adabound/lower_bound": lower, "adabound/upper_bound": upper}
    m_hat = _piece.first_moment_view(state.mu, last)
    return _piece.View(used, _piece.each(used, scale), True, m_hat, estimate, fractions, scalars)


# ---- the alias -------------------------------------------------------------------------------


def adabound(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    final_lr: float | jax.Array = 0.1,
    gamma: float | jax.Array = 1e-3,
    b1: float | jax.Array | optax.Schedule = 0.9,
    b2: float | jax.Array | optax.Schedule = 0.999,
    eps: float | jax.Array = 1e-8,
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    amsbound: bool = False,
    *,
    eps_root: float | jax.Array = 0.0,
    mask: Any | None = None,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdaBound / AMSBound (Luo et al. 2019), as the authors' package adabound runs it.

    Update rule::

        g = g + weight_decay * param                               (coupled L2)
        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*|g|**2             (t = 1, 2, ...)
        amsbound=True:  v_max = max(v_max, v), used in place of v below
        step = learning_rate * sqrt(1 - b2**t) / ((1 - b1**t) * (sqrt(v + eps_root) + eps))
        final = final_lr * learning_rate / learning_rate_0         (learning_rate_0: at init)
        lower = final * (1 - 1 / (gamma*t + 1));  upper = final * (1 + 1 / (gamma*t))
        update = -clip(step, lower, upper) * m

    .. math::

        g_t \leftarrow g_t + \lambda\theta_{t-1}, \qquad
        \theta_t = \theta_{t-1} - \operatorname{clip}\!\left(\frac{\alpha_t\sqrt{1-\beta_2^t}}
        {(1-\beta_1^t)(\sqrt{v_t} + \epsilon)},\ \eta_l(t),\ \eta_u(t)\right) \odot m_t

    with :math:`\eta_l, \eta_u` the bounds of :func:`adabound_bounds` for
    :math:`\alpha^\star_t = \alpha^\star \alpha_t/\alpha_0`; see :func:`scale_by_adabound` for
    the details (AMSBound's maximum, schedules, what the state records). The weight decay is the
    package's *coupled* L2 penalty: it is added to the gradient before the moments, so it is
    rescaled by the adaptive step size (unlike :func:`~adamjax.adamw`).

    With the defaults and ``amsbound=False`` this is ``adabound.AdaBound(params)``; a torch
    ``LambdaLR`` on it corresponds to a schedule ``learning_rate`` here.

    Args:
      learning_rate: :math:`\alpha_t`, the Adam step size: a number >= 0 or an optax schedule
        with ``schedule(0) > 0`` (the bounds follow ``schedule(t)/schedule(0)``).
      final_lr: :math:`\alpha^\star`, the SGD learning rate the bounds converge to, >= 0.
      gamma: :math:`\gamma`, the convergence speed of the bounds, in [0, 1).
      b1: decay of the first moment, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      eps: added to :math:`\sqrt{v_t}` (the :math:`\hat\epsilon` form), >= 0.
      weight_decay: coupled L2 coefficient :math:`\lambda`, a number >= 0 or a schedule.
        ``update`` needs ``params`` unless it is the constant 0.
      amsbound: use the running maximum of the second moment (AMSBound).
      eps_root: added to the second moment inside the square root, >= 0 (see
        :func:`scale_by_adabound`; positive for differentiating through the update).
      mask: which leaves to decay: a pytree of bools or a callable on the params (see
        :func:`~adamjax.add_decayed_weights`).
      mu_dtype: storage of the first moment: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of the second moment(s), as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(add_decayed_weights,
      scale_by_adabound, scale(-1))``; the :class:`ScaleByAdaBoundState` is ``state[1]``.

    References:
      Luo, Xiong, Liu & Sun, "Adaptive Gradient Methods with Dynamic Bound of Learning Rate",
      ICLR 2019. Convention: the authors' package ``adabound`` 0.0.5.

    Example:
      >>> tx = adamjax.adabound(learning_rate=1e-3, final_lr=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "adabound"
    piece = _adabound_moments(
        fn, learning_rate=learning_rate, final_lr=final_lr, gamma=gamma, b1=b1, b2=b2, eps=eps,
        eps_root=eps_root, amsbound=amsbound, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
    )  # fmt: skip
    return optax.chain(_scaling.decayed_weights(fn, weight_decay, mask), piece, optax.scale(-1.0))
