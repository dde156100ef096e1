r"""Adamax (Kingma & Ba 2015, §7.1): Adam with the infinity norm as its second moment. Its piece,
its alias and its diagnostics view."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _formats, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v

ADAMAX_EPS_MODES: tuple[str, ...] = ("max", "denominator")


class ScaleByAdamaxState(NamedTuple):
    r"""State of scale_by_adamax.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t`, in ``mu_dtype``.
      nu: the exponentially weighted infinity norm :math:`u_t`, real, in ``nu_dtype``.
      last_step: the :class:`~adamjax.StepScalars` of the latest update: ``m_correction``
        and, as ``eps``, the eps added to :math:`u_t` in the denominator (0 with
        ``eps_mode="max"``); ``v_correction`` is 1.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    last_step: mo.StepScalars


def _direction(m_hat: jax.Array, u: jax.Array, eps: Any, guard: bool = False) -> jax.Array:
    r"""Adamax's direction :math:`\hat m_t / (u_t + \epsilon)` (``eps`` is 0 when it sits inside
    the max, see :func:`~adamjax._moments.infinity_norm`); ``guard``: 0 where :math:`u_t = 0`,
    which needs the user's eps to be 0 (:func:`~adamjax._moments.divide_or_zero`)."""
    return mo.divide_or_zero(m_hat, u + mo.as_scalar(eps, u.dtype), guard)


def scale_by_adamax(
    b1: float | jax.Array | optax.Schedule = 0.9,
    b2: float | jax.Array | optax.Schedule = 0.999,
    eps: float | jax.Array = 1e-8,
    *,
    eps_mode: str = "max",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by Adamax's infinity norm (Kingma & Ba 2015, §7.1).

    Update rule::

        m = b1*m + (1-b1)*g
        u = max(b2*u, |g| + eps)                  (eps_mode="max", the default: eps inside)
        update = m / (1 - b1**t) / u              (t = 1, 2, ...; u needs no bias correction)
        eps_mode="denominator":  u = max(b2*u, |g|);  update = m / (1 - b1**t) / (u + eps)

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        u_t = \max(\beta_2 u_{t-1}, |g_t|), \qquad
        \text{update}_t = \frac{m_t}{(1-\beta_1^t)\, u_t}.

    The infinity norm needs no bias correction. The paper has no :math:`\epsilon`; the libraries
    place it differently:

    * ``eps_mode="max"`` (default; ``torch.optim.Adamax``, ``optax.adamax``):
      :math:`u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)`, and the update divides by
      :math:`u_t`.
    * ``eps_mode="denominator"`` (Keras 3 ``Adamax``): :math:`u_t` as above without
      :math:`\epsilon`, and the update divides by :math:`u_t + \epsilon`.

    Args:
      b1: :math:`\beta_1`, in [0, 1), or a schedule (exact bias correction).
      b2: :math:`\beta_2`, in [0, 1), or a schedule.
      eps: see ``eps_mode``, >= 0.
      eps_mode: ``"max"`` (torch, optax) or ``"denominator"`` (Keras).
      mu_dtype: storage of ``mu``: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of ``nu``, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByAdamaxState`.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, §7.1.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_adamax(), optax.scale_by_learning_rate(2e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    return _adamax_moments(
        "scale_by_adamax", b1=b1, b2=b2, eps=eps, eps_mode=eps_mode, mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )  # fmt: skip


def _adamax_moments(
    fn: str, *, b1: Any, b2: Any, eps: Any, eps_mode: str, mu_dtype: Any, nu_dtype: Any
) -> optax.GradientTransformationExtraArgs:
    _piece.check_moment_options(
        fn, b1=b1, b2=b2, eps=eps, eps_root=0.0, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    v.check_choice(fn, "eps_mode", eps_mode, ADAMAX_EPS_MODES)
    eps_in_max, eps_outside = (eps, 0.0) if eps_mode == "max" else (0.0, eps)
    guard = mo.is_static_zero(eps)

    def init_fn(params: optax.Params) -> ScaleByAdamaxState:
        _piece.check_params(fn, params, mu_dtype, b1=b1, b2=b2)
        return ScaleByAdamaxState(
            count=jnp.zeros([], jnp.int32),
            mu=_piece.zeros_moment(params, mu_dtype, real=False),
            nu=_piece.zeros_moment(params, nu_dtype, real=True),
            last_step=mo.StepScalars.initial(_piece.scalar_dtype(params)),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        d1 = mo.decay_step(b1, state.count, state.last_step.m_correction)
        b2_t = mo.rate_at(b2, state.count)

        def leaf(g, m, u, *, settle):
            # The first moment is Adam's; the second moment is replaced by the infinity norm.
            m, u = settle(mo.ema(g, m, d1.rate), mo.infinity_norm(g, u, b2_t, eps_in_max))
            return _direction(mo.corrected(m, d1), u, eps_outside, guard)

        stored = _formats.adam_stored(state, mu_dtype, nu_dtype)
        count = optax.safe_increment(state.count)
        updates, (mu, nu) = _formats.update_leaves(fn, leaf, updates, stored, count)
        last = mo.StepScalars.of(
            state.last_step.m_correction.dtype, m_correction=d1.correction, v_correction=1,
            eps=eps_outside, eps_root=0.0,
        )  # fmt: skip
        return updates, ScaleByAdamaxState(count, mu, nu, last)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@_piece.register_view(ScaleByAdamaxState)
def _adamax_view(state: ScaleByAdamaxState, grads: Any) -> _piece.View:
    del grads
    last = state.last_step
    u = jax.tree.map(_piece.real, state.nu)

    def scale(x: jax.Array) -> jax.Array:
        return _direction(jnp.ones([], x.dtype), x, last.eps.astype(x.dtype))

    return _piece.View(u, _piece.each(u, scale), False, _piece.first_moment_view(state.mu, last), u)


def adamax(
    learning_rate: _piece.ScalarOrSchedule = 2e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.999,
    eps: float = 1e-8,
    *,
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    decoupled_weight_decay: bool = False,
    mask: Any | None = None,
    eps_mode: str = "max",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Adamax (Kingma & Ba 2015, §7.1): Adam with the infinity norm as second moment.

    Update rule::

        g = g + weight_decay * param                      (L2: decoupled_weight_decay=False)
        m = b1*m + (1-b1)*g
        u = max(b2*u, |g| + eps)                  (eps_mode="max", the default: eps inside)
        d = m / (1 - b1**t) / u                   (t = 1, 2, ...; u needs no bias correction)
        update = -learning_rate * d
        eps_mode="denominator":  u = max(b2*u, |g|);  d = m / (1 - b1**t) / (u + eps)
        decoupled_weight_decay=True:  no L2;  update = -learning_rate * (d + weight_decay * param)

    .. math::

        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \qquad
        \theta_t = \theta_{t-1} - \frac{\eta_t}{1-\beta_1^t} \frac{m_t}{u_t}

    With the defaults this is ``torch.optim.Adamax`` and ``optax.adamax`` (whose positional
    parameters it keeps), which both put eps inside the max; ``eps_mode="denominator"`` with
    ``eps=1e-7`` is Keras 3 ``Adamax``, which divides by :math:`u_t + \epsilon` instead (see
    :func:`~adamjax.scale_by_adamax`). ``decoupled_weight_decay=True`` is ``optax.adamaxw``.

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule (paper: 0.002).
      b1: :math:`\beta_1`, in [0, 1), or a schedule.
      b2: :math:`\beta_2`, in [0, 1), or a schedule.
      eps: >= 0, placed by ``eps_mode``.
      weight_decay: :math:`\lambda`, a number >= 0 or a schedule; L2 like ``torch.optim.Adamax``
        unless ``decoupled_weight_decay``.
      decoupled_weight_decay: decay :math:`\theta \leftarrow \theta - \eta_t\lambda\theta` after
        the Adamax step instead (``optax.adamaxw``).
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      eps_mode: ``"max"`` (torch, optax) or ``"denominator"`` (Keras).
      mu_dtype: storage of the first moment: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of the infinity norm, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` chaining :func:`~adamjax.scale_by_adamax` with
      the weight decay and the learning rate, as in :func:`~adamjax.nadam`.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, §7.1.

    Example:
      >>> tx = adamjax.adamax(learning_rate=2e-3)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "adamax"
    piece = _adamax_moments(
        fn, b1=b1, b2=b2, eps=eps, eps_mode=eps_mode, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    return _scaling.torch_style_chain(
        fn, piece, learning_rate=learning_rate, weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay, mask=mask,
    )  # fmt: skip


def adamaxw(
    learning_rate: _piece.ScalarOrSchedule = 2e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.999,
    eps: float = 1e-8,
    weight_decay: _piece.ScalarOrSchedule = 1e-4,
    mask: Any | None = None,
    *,
    eps_mode: str = "max",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdamaxW: Adamax with decoupled weight decay (optax.adamaxw).

    Update rule::

        m = b1*m + (1-b1)*g
        u = max(b2*u, |g| + eps)                  (eps_mode="max", the default: eps inside)
        d = m / (1 - b1**t) / u                   (t = 1, 2, ...)
        update = -learning_rate * (d + weight_decay * param)

    .. math::

        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \qquad
        \theta_t = \theta_{t-1} - \eta_t \left(\frac{m_t}{(1-\beta_1^t)\, u_t}
        + \lambda\theta_{t-1}\right)

    The same update as ``adamjax.adamax(decoupled_weight_decay=True)``, with ``optax.adamaxw``'s
    positional parameters in its order and its default ``weight_decay=1e-4``. :func:`adamax`
    itself defaults to torch's coupled L2 (``torch.optim.Adamax`` has no decoupled form).

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: :math:`\beta_1`, in [0, 1), or a schedule.
      b2: :math:`\beta_2`, in [0, 1), or a schedule.
      eps: >= 0, placed by ``eps_mode``.
      weight_decay: decoupled decay :math:`\lambda`, a number >= 0 or a schedule.
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      eps_mode: ``"max"`` (torch, optax) or ``"denominator"`` (Keras).
      mu_dtype: storage of the first moment: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of the infinity norm, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_adamax,
      add_decayed_weights, scale_by_learning_rate)``. ``update`` needs ``params``.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, §7.1.
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.

    Example:
      >>> tx = adamjax.adamaxw(learning_rate=2e-3, weight_decay=1e-2)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "adamaxw"
    piece = _adamax_moments(
        fn, b1=b1, b2=b2, eps=eps, eps_mode=eps_mode, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    return _scaling.decoupled_chain(
        fn, piece, learning_rate=learning_rate, weight_decay=weight_decay, mask=mask
    )
