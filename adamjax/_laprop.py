r"""LaProp (Ziyin et al. 2020): momentum of the gradient already divided by Adam's denominator.
Its piece, its alias and its diagnostics view (Adam's: the same moments and scalars)."""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _formats, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v


class ScaleByLapropState(NamedTuple):
    r"""State of scale_by_laprop.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: momentum :math:`m_t` of the *normalized* gradients, in ``mu_dtype``.
      nu: raw (not bias-corrected) second moment :math:`v_t`, real, in ``nu_dtype``.
      last_step: the :class:`~adamjax.StepScalars` of the latest update: the bias corrections
        and the placed eps, as in :class:`~adamjax.ScaleByAdamState`.
      nu_max: with ``amsgrad``, the running maximum of the raw (centered) second moment, in
        ``nu_dtype``; else ``None``.
      nu_mean: with ``centered``, the EMA of the gradients with decay :math:`\beta_2`, in
        ``mu_dtype``; else ``None``.
      centered_from: with ``centered``, int32 scalar: the first step that centers; else
        ``None``.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    last_step: mo.StepScalars
    nu_max: optax.Updates | None = None
    nu_mean: optax.Updates | None = None
    centered_from: jax.Array | None = None


def scale_by_laprop(
    b1: float | jax.Array | optax.Schedule = 0.9,
    b2: float | jax.Array | optax.Schedule = 0.999,
    eps: float | jax.Array = 1e-15,
    eps_root: float | jax.Array = 0.0,
    mu_dtype: Any | None = None,
    *,
    eps_mode: mo.EpsMode = "paper",
    nu_dtype: Any | None = None,
    centered: bool = False,
    centered_after: int = 10,
    amsgrad: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by LaProp: momentum of gradients divided by Adam's denominator.

    Update rule::

        v = b2*v + (1-b2)*|g|**2
        v_hat = v / (1 - b2**t)                                     (t = 1, 2, ...)
        m = b1*m + (1-b1) * g / (sqrt(v_hat + eps_root) + eps)
        update = m / (1 - b1**t)
        eps_mode="hat":  eps -> eps / sqrt(1-b2**t),  eps_root -> eps_root / (1-b2**t)
        centered=True:  a = b2*a + (1-b2)*g;  v -> v - |a|**2 in v_hat   (t > centered_after)
        amsgrad=True:   v_max = max(v_max, v);  v -> v_max in v_hat      (t > centered_after
                                                                          if centered)

    .. math::

        v_t &= \beta_2 v_{t-1} + (1-\beta_2) |g_t|^2, \qquad
        \hat v_t = \frac{v_t}{1-\beta_2^t}, \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) \frac{g_t}{\sqrt{\hat v_t + \epsilon_{root}}
        + \epsilon}, \qquad u_t = \frac{m_t}{1-\beta_1^t}.

    Adam divides the momentum by the denominator; LaProp divides each gradient first and takes
    the momentum of the quotients, which decouples :math:`\beta_1` from :math:`\beta_2` (any
    :math:`\beta_1 < 1` with any :math:`\beta_2`). The division is
    :func:`~adamjax._moments.precondition`, with the eps placed by ``eps_mode``:

    * ``eps_mode="paper"`` (default): :math:`\sqrt{\hat v_t + \epsilon_{root}} + \epsilon`, the
      authors' code and ``timm.optim.LaProp``.
    * ``eps_mode="hat"`` with ``eps_root=1e-15``: ``pytorch_optimizer.LaProp``, which divides by
      :math:`(\sqrt{v_t + 10^{-15}} + \epsilon)/\sqrt{1-\beta_2^t}`.

    The authors' two options: ``centered`` divides by the centered second moment
    :math:`v_t - a_t^2` (:math:`a_t` the EMA of :math:`g` with :math:`\beta_2`) from step
    ``centered_after + 1`` on, and ``amsgrad`` by the running maximum of the raw (centered)
    :math:`v`, bias-corrected afterwards; with both, the maximum starts when the centering does,
    as in the authors' code (``pytorch_optimizer.LaProp(centered=True, ams_bound=True)`` takes
    the maximum from the first step). A rounding below 0 of :math:`v_t - a_t^2` counts as 0.
    A schedule for ``b1`` or ``b2`` gets the exact bias correction
    :math:`1 - \prod_{i \le t}\beta_i`.

    Args:
      b1: decay of the momentum, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      eps: added to the denominator outside the square root, >= 0 (the authors': 1e-15).
      eps_root: added inside the square root, >= 0.
      mu_dtype: storage of ``mu``: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      eps_mode: ``"paper"`` (authors, timm) or ``"hat"`` (pytorch_optimizer), see above.
      nu_dtype: storage of ``nu``, as ``mu_dtype`` (real for complex params).
      centered: divide by the centered second moment (the authors' ``centered``).
      centered_after: with ``centered``, the number of steps before the centering starts, an
        integer >= 0 (the authors' fixed 10).
      amsgrad: divide by the running maximum of the second moment (the authors' ``amsgrad``,
        pytorch_optimizer's ``ams_bound``).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByLapropState`.

    References:
      Ziyin, Wang & Ueda, "LaProp: Separating Momentum and Adaptivity in Adam",
      arXiv:2002.04839, 2020.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_laprop(), optax.scale_by_learning_rate(4e-4))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    return _laprop_moments(
        "scale_by_laprop", b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
        eps_mode=eps_mode, nu_dtype=nu_dtype, centered=centered, centered_after=centered_after,
        amsgrad=amsgrad,
    )  # fmt: skip


def _laprop_moments(
    fn: str, *, b1: Any, b2: Any, eps: Any, eps_root: Any, mu_dtype: Any, eps_mode: str,
    nu_dtype: Any, centered: bool, centered_after: int, amsgrad: bool,
) -> optax.GradientTransformationExtraArgs:  # fmt: skip
    _piece.check_moment_options(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    v.check_choice(fn, "eps_mode", eps_mode, mo.EPS_MODES)
    v.check_bool(fn, "centered", centered)
    v.check_integer(fn, "centered_after", centered_after, minimum=0, array_ok=True)
    v.check_bool(fn, "amsgrad", amsgrad)

    def init_fn(params: optax.Params) -> ScaleByLapropState:
        _piece.check_params(fn, params, mu_dtype, b1=b1, b2=b2)
        return ScaleByLapropState(
            count=jnp.zeros([], jnp.int32),
            mu=_piece.zeros_moment(params, mu_dtype, real=False),
            nu=_piece.zeros_moment(params, nu_dtype, real=True),
            last_step=mo.StepScalars.initial(_piece.scalar_dtype(params)),
            nu_max=_piece.zeros_moment(params, nu_dtype, real=True) if amsgrad else None,
            nu_mean=_piece.zeros_moment(params, mu_dtype, real=False) if centered else None,
            centered_from=jnp.asarray(centered_after + 1, jnp.int32) if centered else None,
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        step = mo.moment_step(b1, b2, eps, eps_root, eps_mode, state.count, state.last_step)
        stored = _formats.adam_stored(state, mu_dtype, nu_dtype)
        if amsgrad:
            stored.append(_formats.Stored(state.nu_max, nu_dtype, signed=False))
        if centered:
            stored.append(_formats.Stored(state.nu_mean, mu_dtype, signed=True))
        # Whether this step centers (and, with amsgrad, takes the maximum): a traced boolean.
        centering = step.count >= state.centered_from if centered else None
        leaf = functools.partial(laprop_leaf, step, amsgrad, centering)
        updates, moments = _formats.update_leaves(fn, leaf, updates, stored, step.count)
        mu, nu, *rest = moments
        nu_max = rest.pop(0) if amsgrad else None
        nu_mean = rest.pop(0) if centered else None
        last = step.record(state.last_step.m_correction.dtype)
        return updates, ScaleByLapropState(
            step.count, mu, nu, last, nu_max, nu_mean, state.centered_from
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def laprop_leaf(
    step: mo.MomentStep, amsgrad: bool, centering: jax.Array | None, g: jax.Array,
    m: jax.Array, nu: jax.Array, *extra: jax.Array, settle: _formats.Settle,
) -> jax.Array:  # fmt: skip
    """One leaf of LaProp: the new moments, stored by ``settle``, and the direction, in the
    compute dtype. ``extra`` holds the running maximum (``amsgrad``) and the mean
    (``centering`` not ``None``)."""
    nu = mo.ema(mo.squared_magnitude(g), nu, step.b2.rate)
    second, new = _second_moment(step, amsgrad, centering, g, nu, *extra)
    # The only difference from Adam: the gradient is divided before the momentum sees it.
    normalized = mo.precondition(g, mo.corrected(second, step.b2), step.eps, step.eps_root)
    m, *_ = settle(mo.ema(normalized, m, step.b1.rate), nu, *new)
    return mo.corrected(m, step.b1)


def _second_moment(
    step: mo.MomentStep, amsgrad: bool, centering: jax.Array | None, g: jax.Array,
    nu: jax.Array, *extra: jax.Array,
) -> tuple[jax.Array, list[jax.Array]]:  # fmt: skip
    """The raw second moment the step divides by, and the new ``nu_max``/``nu_mean``."""
    extra = list(extra)
    v_max = extra.pop(0) if amsgrad else None
    second, new = nu, []
    if centering is not None:
        mean = mo.ema(g, extra.pop(0), step.b2.rate)
        centered = jnp.maximum(nu - mo.squared_magnitude(mean), 0)
        second = jnp.where(centering, centered, nu)
    if amsgrad:
        larger = jnp.maximum(v_max, second)
        if centering is not None:  # the maximum starts with the centering (the authors')
            larger = jnp.where(centering, larger, v_max)
            second = jnp.where(centering, larger, second)
        else:
            second = larger
        new.append(larger)
    if centering is not None:
        new.append(mean)
    return second, new


@_piece.register_view(ScaleByLapropState)
def _laprop_view(state: ScaleByLapropState, grads: Any) -> _piece.View:
    """Adam's view of ``nu`` (the "m_hat" it reports is the corrected momentum of normalized
    gradients, the update itself); with ``amsgrad``, of the maximum, once it is in use."""
    view = _piece.adam_view(state, grads)
    if state.nu_max is None:
        return view
    last = state.last_step
    v_max = _piece.corrected_tree(state.nu_max, last.v_correction)
    if state.centered_from is not None:
        in_use = state.count >= state.centered_from
        v_max = jax.tree.map(
            lambda a, b: jnp.where(in_use, a, _piece.value(b)), v_max, view.statistic
        )
    scale_of = _piece.each(v_max, lambda x: mo.inverse_denominator(x, last))
    return view._replace(statistic=v_max, scale_of=scale_of, v_hat=v_max)


def laprop(
    learning_rate: _piece.ScalarOrSchedule = 4e-4,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.999,
    eps: float = 1e-15,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
    *,
    weight_decay_scaling: _scaling.WeightDecayScaling = "learning_rate",
    schedule_multiplier: _piece.ScalarOrSchedule | None = None,
    eps_mode: mo.EpsMode = "paper",
    nu_dtype: Any | None = None,
    centered: bool = False,
    centered_after: int = 10,
    amsgrad: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""LaProp (Ziyin et al. 2020): scale_by_laprop, decoupled weight decay, learning rate.

    Update rule::

        v = b2*v + (1-b2)*|g|**2;  v_hat = v / (1 - b2**t)          (t = 1, 2, ...)
        m = b1*m + (1-b1) * g / (sqrt(v_hat + eps_root) + eps)
        update = -learning_rate * (m / (1 - b1**t) + weight_decay * param)
        weight_decay_scaling="schedule":
            update = -schedule_multiplier * (learning_rate * m / (1 - b1**t) + weight_decay * param)

    In the notation of :func:`~adamjax.scale_by_laprop`:

    .. math::

        \theta_t = \theta_{t-1} - \eta_t \left(\frac{m_t}{1-\beta_1^t}
        + \lambda\theta_{t-1}\right)

    optax has no LaProp; the defaults (``learning_rate=4e-4``, ``eps=1e-15``) are the authors',
    timm's and pytorch_optimizer's. With ``weight_decay=0`` and a constant learning rate the
    default is the authors' ``LaProp`` and ``timm.optim.LaProp``; ``eps_mode="hat"`` with
    ``eps_root=1e-15`` is ``pytorch_optimizer.LaProp``. Differences that remain:

    * Weight decay: timm and pytorch_optimizer multiply the params by :math:`1 - \eta\lambda`
      *after* the step (``p = (p - eta*u) * (1 - eta*wd)``), which differs from the decoupled
      form here by :math:`\eta^2\lambda u_t` per step; the authors' code multiplies by
      :math:`1 - \lambda` (no learning rate), which ``weight_decay_scaling="schedule"`` with
      ``learning_rate`` as the base rate reproduces up to the same second-order term.
    * A learning-rate *schedule*: the three torch implementations accumulate
      :math:`\eta_t g_t/(\dots)` in the momentum and correct it by an EMA of the rates; here the
      momentum is of the normalized gradients and the current rate multiplies it (optax's
      convention for every momentum). Equal for a constant rate.

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: decay of the momentum, in [0, 1), or a schedule.
      b2: decay of the second moment, in [0, 1), or a schedule.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      mu_dtype: storage of the momentum: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      weight_decay: decoupled decay :math:`\lambda`, a number >= 0 or a schedule. ``update``
        needs ``params`` unless it is the constant 0.
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      weight_decay_scaling: ``"learning_rate"`` or ``"schedule"``, see :func:`~adamjax.adamw`.
      schedule_multiplier: the schedule multiplier for ``"schedule"`` scaling.
      eps_mode: ``"paper"`` (authors, timm) or ``"hat"`` (pytorch_optimizer).
      nu_dtype: storage of the second moment, as ``mu_dtype``.
      centered: divide by the centered second moment, see :func:`~adamjax.scale_by_laprop`.
      centered_after: with ``centered``, the steps before the centering starts, >= 0.
      amsgrad: divide by the running maximum of the second moment.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_laprop,
      add_decayed_weights, scale_by_learning_rate)``, as :func:`~adamjax.adamw`.

    References:
      Ziyin, Wang & Ueda, "LaProp: Separating Momentum and Adaptivity in Adam",
      arXiv:2002.04839, 2020; code: github.com/Z-T-WANG/LaProp-Optimizer.

    Example:
      >>> tx = adamjax.laprop(learning_rate=4e-4)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "laprop"
    piece = _laprop_moments(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, eps_mode=eps_mode,
        nu_dtype=nu_dtype, centered=centered, centered_after=centered_after, amsgrad=amsgrad,
    )  # fmt: skip
    return _scaling.decoupled_chain(
        fn, piece, learning_rate=learning_rate, weight_decay=weight_decay, mask=mask,
        weight_decay_scaling=weight_decay_scaling, schedule_multiplier=schedule_multiplier,
    )  # fmt: skip
