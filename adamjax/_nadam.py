r"""NAdam as ``torch.optim.NAdam``: Adam's moments with Dozat's momentum schedule in the
first-moment estimate. Its piece, its alias and its diagnostics view."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _formats, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v


class ScaleByNadamState(NamedTuple):
    r"""State of scale_by_nadam.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t`, in ``mu_dtype``.
      nu: raw second moment :math:`v_t`, in ``nu_dtype``.
      momentum_correction: :math:`1 - \prod_{i \le t}\mu_i` for Dozat's momentum schedule (a
        scalar). ``torch.optim.NAdam`` keeps the product itself, ``mu_product``; this is one minus
        it, kept in that form so it does not lose digits to cancellation.
      last_step: see :class:`~adamjax.ScaleByAdamState`; its ``m_correction`` is the moving
        average's :math:`1 - \prod\beta_1`.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    momentum_correction: jax.Array
    last_step: mo.StepScalars


def nadam_momentum(b1: Any, momentum_decay: float, dtype: Any) -> optax.Schedule:
    r"""Dozat's momentum schedule :math:`\mu_t = \beta_{1,t}(1 - \tfrac12 \cdot 0.96^{t\psi})`
    as a function of the 0-based count :math:`t - 1`, computed in ``dtype``.

    This is the schedule of ``torch.optim.NAdam`` (:math:`\psi` = ``momentum_decay``, 4e-3 by
    default). ``b1`` may itself be a schedule. :math:`t` is formed in ``dtype``, so the look-ahead
    :math:`\mu_{t+1}` at the largest int32 count (``2**31 - 1``, where ``optax.safe_increment``
    saturates) is taken at a large positive :math:`t`, not at a wrapped-around negative one.
    """

    def schedule(count: jax.Array) -> jax.Array:
        # count + 1 in int32 would wrap to -2**31 at the saturated count, and 0.96**(t psi) with
        # a negative t overflows to inf (NaN updates); in dtype it is just large.
        t = jnp.asarray(count, dtype) + 1
        b1_t = jnp.asarray(mo.rate_at(b1, count), dtype)
        return b1_t * (1 - 0.5 * jnp.asarray(0.96, dtype) ** (t * momentum_decay))

    return schedule


def scale_by_nadam(
    b1: float | jax.Array | optax.Schedule = 0.9,
    b2: float | jax.Array | optax.Schedule = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    mu_dtype: Any | None = None,
    *,
    momentum_decay: float = 4e-3,
    eps_mode: mo.EpsMode = "paper",
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by NAdam's moments and Dozat's momentum schedule (torch.optim.NAdam).

    Update rule::

        mu(t) = b1 * (1 - 0.5 * 0.96**(t * momentum_decay))        (t = 1, 2, ...)
        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*|g|**2
        m_bar = mu(t+1)*m / (1 - mu(1)*...*mu(t+1)) + (1-mu(t))*g / (1 - mu(1)*...*mu(t))
        update = m_bar / (sqrt(v / (1 - b2**t) + eps_root) + eps)

    The moments are Adam's, with the constant (or scheduled) :math:`\beta_1`, :math:`\beta_2`.
    The first-moment estimate weights them with the momentum schedule
    :math:`\mu_t = \beta_1 (1 - \tfrac12 \cdot 0.96^{t\psi})`:

    .. math::

        \bar m_t &= \frac{\mu_{t+1} m_t}{1 - \prod_{i \le t+1}\mu_i}
                  + \frac{(1 - \mu_t) g_t}{1 - \prod_{i \le t}\mu_i}, \\
        u_t &= \bar m_t / (\sqrt{v_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon).

    ``adamjax.adam(nesterov=True)`` (``optax.nadam``) is the special case :math:`\mu_t = \beta_1`
    (``momentum_decay=0`` gives :math:`\mu_t = \beta_1/2`, not that case). Dozat's paper also
    uses :math:`\mu_t` in the moving average itself; torch, and adamjax, keep :math:`\beta_1`
    there.

    The count saturates at ``2**31 - 1`` (``optax.safe_increment``); there, and at
    ``2**31 - 2``, the update is the finite large-:math:`t` one (with ``momentum_decay`` > 0,
    :math:`\mu_t = \mu_{t+1} = \beta_1`, and the bias corrections have reached 1), not NaN.

    Args:
      b1: :math:`\beta_1`, in [0, 1), or a schedule.
      b2: :math:`\beta_2`, in [0, 1), or a schedule.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      mu_dtype: storage of ``mu``: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      momentum_decay: :math:`\psi`, >= 0 (torch's ``momentum_decay``).
      eps_mode: ``"paper"`` (torch) or ``"hat"``, see :func:`~adamjax.scale_by_adam`.
      nu_dtype: storage of ``nu``, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByNadamState`.

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop.
      ``torch.optim.NAdam`` (the convention followed).

    Example:
      >>> tx = optax.chain(adamjax.scale_by_nadam(), optax.scale_by_learning_rate(2e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    return _nadam_moments(
        "scale_by_nadam", b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
        momentum_decay=momentum_decay, eps_mode=eps_mode, nu_dtype=nu_dtype,
    )  # fmt: skip


def _nadam_moments(
    fn: str,
    *,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    mu_dtype: Any,
    momentum_decay: Any,
    eps_mode: str,
    nu_dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    _piece.check_moment_options(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    v.check_choice(fn, "eps_mode", eps_mode, mo.EPS_MODES)
    v.check_non_negative(fn, "momentum_decay", momentum_decay)

    def init_fn(params: optax.Params) -> ScaleByNadamState:
        _piece.check_params(fn, params, mu_dtype, b1=b1, b2=b2)
        dtype = _piece.scalar_dtype(params)
        return ScaleByNadamState(
            count=jnp.zeros([], jnp.int32),
            mu=_piece.zeros_moment(params, mu_dtype, real=False),
            nu=_piece.zeros_moment(params, nu_dtype, real=True),
            momentum_correction=jnp.zeros([], dtype),
            last_step=mo.StepScalars.initial(dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        step = mo.moment_step(b1, b2, eps, eps_root, eps_mode, state.count, state.last_step)
        schedule = nadam_momentum(b1, momentum_decay, state.momentum_correction.dtype)
        mu_t = mo.decay_step(schedule, state.count, state.momentum_correction)
        mu_next = mo.decay_step(schedule, step.count, mu_t.correction)

        def leaf(g, m, nu, *, settle):
            m = mo.ema(g, m, step.b1.rate)
            nu = mo.ema(mo.squared_magnitude(g), nu, step.b2.rate)
            m, nu = settle(m, nu)
            m_bar = mo.nesterov_estimate(m, g, mu_t, mu_next)
            return mo.precondition(m_bar, mo.corrected(nu, step.b2), step.eps, step.eps_root)

        stored = _formats.adam_stored(state, mu_dtype, nu_dtype)
        updates, (mu, nu) = _formats.update_leaves(fn, leaf, updates, stored, step.count)
        last = step.record(state.last_step.m_correction.dtype)
        return updates, ScaleByNadamState(step.count, mu, nu, mu_t.correction, last)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


_piece.register_view(ScaleByNadamState)(_piece.adam_view)


def nadam(
    learning_rate: _piece.ScalarOrSchedule = 2e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    *,
    momentum_decay: float = 4e-3,
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    decoupled_weight_decay: bool = False,
    mask: Any | None = None,
    eps_mode: mo.EpsMode = "paper",
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""NAdam as torch.optim.NAdam: Adam with Dozat's Nesterov momentum schedule.

    Update rule::

        g = g + weight_decay * param                      (L2: decoupled_weight_decay=False)
        mu(t) = b1 * (1 - 0.5 * 0.96**(t * momentum_decay))        (t = 1, 2, ...)
        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*|g|**2
        m_bar = mu(t+1)*m / (1 - mu(1)*...*mu(t+1)) + (1-mu(t))*g / (1 - mu(1)*...*mu(t))
        d = m_bar / (sqrt(v / (1 - b2**t) + eps_root) + eps)
        update = -learning_rate * d
        decoupled_weight_decay=True:  no L2;  update = -learning_rate * (d + weight_decay * param)

    .. math::

        \mu_t = \beta_1 (1 - \tfrac12 \cdot 0.96^{t\psi}), \qquad
        \theta_t = \theta_{t-1} - \eta_t \left(\frac{\mu_{t+1} m_t}{1 - \prod_{i\le t+1}\mu_i}
        + \frac{(1-\mu_t) g_t}{1 - \prod_{i\le t}\mu_i}\right) \Big/
        \left(\sqrt{v_t / (1-\beta_2^t)} + \epsilon\right)

    (see :func:`~adamjax.scale_by_nadam`). This is *not* ``optax.nadam``, which uses the constant
    :math:`\mu_t = \beta_1`; that form is ``adamjax.adam(nesterov=True)``. The positional
    parameters are ``optax.nadam``'s, in its order; torch's ``momentum_decay``, ``weight_decay``
    and ``decoupled_weight_decay`` are keywords. Keras 3's ``Nadam`` raises 0.96 to the power
    :math:`t` (no :math:`\psi`): ``momentum_decay=1.0, eps=1e-7`` reproduces it.

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: :math:`\beta_1`, in [0, 1), or a schedule.
      b2: :math:`\beta_2`, in [0, 1), or a schedule.
      eps: added to the denominator, >= 0.
      eps_root: added inside the square root, >= 0.
      mu_dtype: storage of the first moment: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      momentum_decay: :math:`\psi` of the momentum schedule, >= 0.
      weight_decay: :math:`\lambda`, a number >= 0 or a schedule.
      decoupled_weight_decay: ``False`` (torch's default): L2, :math:`g_t + \lambda\theta_{t-1}`
        enters the moments; ``True``: decoupled, :math:`\theta \leftarrow \theta -
        \eta_t\lambda\theta` (NAdamW).
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      eps_mode: ``"paper"`` (torch) or ``"hat"``.
      nu_dtype: storage of the second moment, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(add_decayed_weights, scale_by_nadam,
      scale_by_learning_rate)``, or with ``decoupled_weight_decay`` ``chain(scale_by_nadam,
      add_decayed_weights, scale_by_learning_rate)``.

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop.

    Example:
      >>> tx = adamjax.nadam(learning_rate=2e-3)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "nadam"
    piece = _nadam_moments(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
        momentum_decay=momentum_decay, eps_mode=eps_mode, nu_dtype=nu_dtype,
    )  # fmt: skip
    return _scaling.torch_style_chain(
        fn, piece, learning_rate=learning_rate, weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay, mask=mask,
    )  # fmt: skip
