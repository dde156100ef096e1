r"""Adan (Xie et al. 2022): Adam's moments plus a moment of gradient differences, its piece, its
alias with the authors' proximal decay, and its diagnostics view."""

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _formats, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v

DifferenceWeight = Literal["b2", "1-b2"]
DIFFERENCE_WEIGHTS: tuple[str, ...] = ("b2", "1-b2")


class ScaleByAdanState(NamedTuple):
    r"""State of scale_by_adan.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t` of the gradients, in ``mu_dtype``.
      nu: raw second moment :math:`n_t` of :math:`g_t + w\,(g_t - g_{t-1})`, real, in
        ``nu_dtype``.
      mu_diff: first moment :math:`d_t` of the gradient differences :math:`g_t - g_{t-1}`, in
        ``mu_dtype`` (a signed moment like ``mu``).
      prev_grad: the previous gradient :math:`g_{t-1}` (zeros before the first update), in
        ``prev_grad_dtype``.
      diff_correction: :math:`1 - \prod_{i \le t}\beta_{2,i}`, the bias correction of
        ``mu_diff`` (a scalar; a scheduled ``b2`` continues from it).
      last_step: the :class:`~adamjax.StepScalars` of the latest update: ``m_correction`` of
        ``mu``, ``v_correction`` of ``nu`` (the :math:`\beta_3` correction), and eps, which
        diagnostics read.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    mu_diff: optax.Updates
    prev_grad: optax.Updates
    diff_correction: jax.Array
    last_step: mo.StepScalars


def scale_by_adan(
    b1: float | jax.Array | optax.Schedule = 0.98,
    b2: float | jax.Array | optax.Schedule = 0.92,
    b3: float | jax.Array | optax.Schedule = 0.99,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    *,
    difference_weight: DifferenceWeight = "b2",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
    prev_grad_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by Adan's three moments (Xie et al. 2022).

    Update rule::

        diff = g - g_prev                          (0 at the first step)
        m = b1*m + (1-b1)*g
        d = b2*d + (1-b2)*diff
        n = b3*n + (1-b3)*|g + w*diff|**2          (w = b2; difference_weight="1-b2": w = 1-b2)
        m_hat = m / (1 - b1**t);  d_hat = d / (1 - b2**t);  n_hat = n / (1 - b3**t)
        update = (m_hat + w*d_hat) / (sqrt(n_hat + eps_root) + eps)

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        d_t = \beta_2 d_{t-1} + (1-\beta_2)(g_t - g_{t-1}), \\
        n_t &= \beta_3 n_{t-1} + (1-\beta_3) |g_t + w (g_t - g_{t-1})|^2, \qquad
        u_t = \frac{\hat m_t + w\, \hat d_t}{\sqrt{\hat n_t + \epsilon_{root}} + \epsilon}.

    The betas are decay rates, as in optax and the authors' code; the paper writes
    :math:`1-\beta`, so its :math:`(1-\beta_2)` weight is ``b2`` here. Two conventions weigh
    the gradient difference :math:`g_t - g_{t-1}`:

    * ``difference_weight="b2"`` (default): :math:`w = \beta_2`, as in the paper's Algorithm 1,
      the authors' ``Adan`` (``sail-sg/Adan``) and ``pytorch_optimizer.Adan``.
    * ``difference_weight="1-b2"``: :math:`w = 1-\beta_2`, as ``optax.scale_by_adan`` (0.2.8)
      computes it.

    Every implementation sets the difference to 0 at the first step (the paper instead starts
    from an extra gradient :math:`g_0`) and bias-corrects the three moments, which the paper's
    Algorithm 1 does not.

    Args:
      b1: decay of the gradients' moment, in [0, 1), or a schedule.
      b2: decay of the differences' moment, in [0, 1), or a schedule.
      b3: decay of the second moment, in [0, 1), or a schedule.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      difference_weight: ``"b2"`` (paper, authors, pytorch_optimizer) or ``"1-b2"`` (optax).
      mu_dtype: storage of ``mu`` and ``mu_diff``: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of ``nu``, as ``mu_dtype``.
      prev_grad_dtype: storage of ``prev_grad``, as ``mu_dtype``. The default keeps the
        gradient exactly, so the difference of two close gradients is not drowned in rounding.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByAdanState`.

    References:
      Xie, Zhou, Li, Lin & Yan, "Adan: Adaptive Nesterov Momentum Algorithm for Faster
      Optimizing Deep Models", arXiv:2208.06677, 2022 (TPAMI 2024).

    Example:
      >>> tx = optax.chain(adamjax.scale_by_adan(), optax.scale_by_learning_rate(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    return _adan_moments(
        "scale_by_adan", b1=b1, b2=b2, b3=b3, eps=eps, eps_root=eps_root,
        difference_weight=difference_weight, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
        prev_grad_dtype=prev_grad_dtype,
    )  # fmt: skip


def _adan_moments(
    fn: str,
    *,
    b1: Any,
    b2: Any,
    b3: Any,
    eps: Any,
    eps_root: Any,
    difference_weight: str,
    mu_dtype: Any,
    nu_dtype: Any,
    prev_grad_dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    _piece.check_moment_options(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    v.check_unit_interval(fn, "b3", b3, schedule_ok=True)
    _formats.check_format(fn, "prev_grad_dtype", prev_grad_dtype)
    v.check_choice(fn, "difference_weight", difference_weight, DIFFERENCE_WEIGHTS)

    def init_fn(params: optax.Params) -> ScaleByAdanState:
        _piece.check_params(fn, params, mu_dtype, b1=b1, b2=b2, b3=b3)
        dtype = _piece.scalar_dtype(params)
        return ScaleByAdanState(
            count=jnp.zeros([], jnp.int32),
            mu=_piece.zeros_moment(params, mu_dtype, real=False),
            nu=_piece.zeros_moment(params, nu_dtype, real=True),
            mu_diff=_piece.zeros_moment(params, mu_dtype, real=False),
            prev_grad=_piece.zeros_moment(params, prev_grad_dtype, real=False),
            diff_correction=jnp.zeros([], dtype),
            last_step=mo.StepScalars.initial(dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        last = state.last_step
        d1 = mo.decay_step(b1, state.count, last.m_correction)
        d2 = mo.decay_step(b2, state.count, state.diff_correction)
        d3 = mo.decay_step(b3, state.count, last.v_correction)
        weight = d2.rate if difference_weight == "b2" else 1 - d2.rate
        # The first step has no previous gradient: its difference is 0, as in every reference.
        started = state.count > 0

        def leaf(g, m, n, d, g_prev, *, settle):
            diff = jnp.where(started, g - g_prev, 0)
            w = mo.as_scalar(weight, mo.real_dtype(g.dtype))
            m, d = mo.ema(g, m, d1.rate), mo.ema(diff, d, d2.rate)
            n = mo.ema(mo.squared_magnitude(g + w * diff), n, d3.rate)
            m, n, d, _ = settle(m, n, d, g)
            numerator = mo.corrected(m, d1) + w * mo.corrected(d, d2)
            return mo.precondition(numerator, mo.corrected(n, d3), eps, eps_root)

        stored = [
            *_formats.adam_stored(state, mu_dtype, nu_dtype),
            _formats.Stored(state.mu_diff, mu_dtype, signed=True),
            _formats.Stored(state.prev_grad, prev_grad_dtype, signed=True),
        ]
        count = optax.safe_increment(state.count)
        updates, moments = _formats.update_leaves(fn, leaf, updates, stored, count)
        dtype = last.m_correction.dtype
        recorded = mo.StepScalars.of(
            dtype, m_correction=d1.correction, v_correction=d3.correction, eps=eps,
            eps_root=eps_root,
        )  # fmt: skip
        diff_correction = d2.correction.astype(dtype)
        return updates, ScaleByAdanState(count, *moments, diff_correction, recorded)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# The statistic, the per-entry step factor and |m_hat| are Adam's: n_hat plays v_hat's part.
_piece.register_view(ScaleByAdanState)(_piece.adam_view)


def _proximal_scale(
    fn: str, learning_rate: Any, weight_decay: Any, mask: Any
) -> optax.GradientTransformationExtraArgs:
    r"""Multiplies the (decayed, learning-rate-scaled) updates of the leaves in ``mask`` by
    :math:`1/(1 + \eta_t\lambda_t)`, which turns
    :math:`\theta - \eta_t(u + \lambda_t\theta)` into the proximal step
    :math:`(\theta - \eta_t u)/(1 + \eta_t\lambda_t)`."""
    scheduled = callable(learning_rate) or callable(weight_decay)

    def factor(count: Any) -> Any:
        lr, wd = mo.rate_at(learning_rate, count), mo.rate_at(weight_decay, count)
        return 1 / (1 + lr * wd)

    def init_fn(params: optax.Params) -> Any:
        del params
        if scheduled:
            return _scaling.WeightDecayScheduleState(jnp.zeros([], jnp.int32))
        return optax.EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        if mo.is_static_zero(weight_decay):
            return updates, state
        if scheduled:
            scale = factor(state.schedule_count)
            state = _scaling.WeightDecayScheduleState(optax.safe_increment(state.schedule_count))
        else:
            scale = factor(0)
        # Cast back: an array factor is not weakly typed and would promote bf16 updates.
        return jax.tree.map(lambda u: (u * scale).astype(u.dtype), updates), state

    tx = optax.GradientTransformationExtraArgs(init_fn, update_fn)
    return tx if mask is None else _scaling.checked_mask(fn, tx, mask)


def adan(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    b1: float | optax.Schedule = 0.98,
    b2: float | optax.Schedule = 0.92,
    b3: float | optax.Schedule = 0.99,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
    *,
    no_prox: bool = False,
    difference_weight: DifferenceWeight = "b2",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
    prev_grad_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Adan (Xie et al. 2022): Nesterov-style gradient-difference momentum with Adam's scaling.

    Update rule::

        u = (m_hat + b2*d_hat) / (sqrt(n_hat + eps_root) + eps)      (see scale_by_adan)
        param = (param - learning_rate*u) / (1 + learning_rate*weight_decay)   (no_prox=False)
        param = param - learning_rate*(u + weight_decay*param)                 (no_prox=True)

    .. math::

        \theta_t = \frac{\theta_{t-1} - \eta_t u_t}{1 + \eta_t\lambda}
        \quad\text{or, with no\_prox,}\quad
        \theta_t = \theta_{t-1} - \eta_t (u_t + \lambda\theta_{t-1}),

    with :math:`u_t` the direction of :func:`~adamjax.scale_by_adan`. The defaults follow the
    paper and the authors' code (``sail-sg/Adan``, also ``pytorch_optimizer.Adan``): the
    gradient difference weighted by ``b2``, and the proximal weight decay. The positional
    parameters are ``optax.adan``'s, in its order, but optax (0.2.8) computes a different
    update: ``difference_weight="1-b2", no_prox=True, eps_root=1e-8`` reproduces ``optax.adan``.
    The authors' ``max_grad_norm`` is ``optax.clip_by_global_norm`` chained in front.

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: decay of the gradients' moment, in [0, 1), or a schedule (paper: 0.02 as
        :math:`1-\beta_1`).
      b2: decay of the differences' moment, in [0, 1), or a schedule.
      b3: decay of the second moment, in [0, 1), or a schedule.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0 (the authors: 0; ``optax.adan``: 1e-8).
      weight_decay: :math:`\lambda`, a number >= 0 or a schedule.
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      no_prox: ``False`` (the authors' default): the proximal decay
        :math:`\theta/(1+\eta_t\lambda)` after the step; ``True``: the decoupled decay
        :math:`\theta(1-\eta_t\lambda)` of AdamW (the authors' ``no_prox=True``, optax,
        ``pytorch_optimizer.Adan(weight_decouple=True)``).
      difference_weight: ``"b2"`` (paper, authors) or ``"1-b2"`` (optax), see
        :func:`~adamjax.scale_by_adan`.
      mu_dtype: storage of the two first moments: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of the second moment, as ``mu_dtype``.
      prev_grad_dtype: storage of the previous gradient, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_adan, add_decayed_weights,
      scale_by_learning_rate)``, and with the proximal decay a last piece that divides the
      decayed leaves' updates by :math:`1+\eta_t\lambda`. ``update`` needs ``params`` unless
      ``weight_decay`` is the constant 0.

    References:
      Xie, Zhou, Li, Lin & Yan, "Adan: Adaptive Nesterov Momentum Algorithm for Faster
      Optimizing Deep Models", arXiv:2208.06677, 2022 (TPAMI 2024); code:
      github.com/sail-sg/Adan.

    Example:
      >>> tx = adamjax.adan(learning_rate=1e-3, weight_decay=2e-2)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "adan"
    v.check_bool(fn, "no_prox", no_prox)
    piece = _adan_moments(
        fn, b1=b1, b2=b2, b3=b3, eps=eps, eps_root=eps_root,
        difference_weight=difference_weight, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
        prev_grad_dtype=prev_grad_dtype,
    )  # fmt: skip
    if no_prox:
        return _scaling.decoupled_chain(
            fn, piece, learning_rate=learning_rate, weight_decay=weight_decay, mask=mask
        )
    return optax.chain(
        piece,
        _scaling.decayed_weights(fn, weight_decay, mask),
        _scaling._learning_rate(fn, learning_rate),
        _proximal_scale(fn, learning_rate, weight_decay, mask),
    )
