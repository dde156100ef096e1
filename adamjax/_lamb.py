r"""LAMB (You et al. 2020): Adam's direction, decoupled weight decay and a layer-wise trust ratio.
The trust-ratio piece, the alias and the trust ratio's diagnostics view."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _adam, _formats, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v


class ScaleByTrustRatioState(NamedTuple):
    r"""State of scale_by_trust_ratio.

    Attributes:
      trust_ratio: one scalar per leaf (a tree shaped like the params' leaves, each 0-d), the
        factor :math:`r` of the latest update (0 before the first), which diagnostics report.
    """

    trust_ratio: Any


def trust_ratio(
    update: jax.Array,
    param: jax.Array,
    *,
    min_norm: Any,
    trust_coefficient: Any,
    eps: Any,
    max_param_norm: Any | None,
) -> jax.Array:
    r"""The layer-wise trust ratio :math:`r = c\, \phi(\lVert\theta\rVert) /
    (\lVert u\rVert + \epsilon)` of one leaf, 1 where either norm is 0.

    :math:`\phi(x) = \min(\max(x, n_{min}), n_{max})`; the update norm is floored at
    :math:`n_{min}` too (``optax.scale_by_trust_ratio``'s ``min_norm``).
    """
    dtype = mo.real_dtype(mo.compute_dtype(update.dtype, param.dtype))
    floor = mo.as_scalar(min_norm, dtype)
    param_norm, update_norm = _norm(param, floor, dtype), _norm(update, floor, dtype)
    if max_param_norm is not None:
        param_norm = jnp.minimum(param_norm, mo.as_scalar(max_param_norm, dtype))
    coefficient, eps = mo.as_scalar(trust_coefficient, dtype), mo.as_scalar(eps, dtype)
    ratio = coefficient * param_norm / (update_norm + eps)
    zero = jnp.logical_or(param_norm == 0, update_norm == 0)
    return jnp.where(zero, jnp.ones([], dtype), ratio)


def _norm(x: jax.Array, floor: Any, dtype: Any) -> jax.Array:
    r""":math:`\max(\lVert x\rVert_2, n_{min})` in the real ``dtype`` (complex entries count by
    :math:`|x|^2`), with a finite gradient at 0, like ``optax.safe_norm``."""
    squared = jnp.sum(mo.squared_magnitude(x.astype(mo.compute_dtype(x.dtype, dtype))))
    above = squared > floor * floor
    return jnp.where(above, jnp.sqrt(jnp.where(above, squared, 1)), floor).astype(dtype)


def scale_by_trust_ratio(
    min_norm: float | jax.Array = 0.0,
    trust_coefficient: float | jax.Array = 1.0,
    eps: float | jax.Array = 0.0,
    *,
    max_param_norm: float | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Scales each leaf's update by its trust ratio, the param norm over the update norm.

    Update rule::

        n = clip(||param||, min_norm, max_param_norm)       (per leaf, Frobenius norms)
        r = trust_coefficient * n / (max(||u||, min_norm) + eps)     (r = 1 if a norm is 0)
        update = r * u

    .. math::

        u_\ell \leftarrow \frac{c\, \phi(\lVert\theta_\ell\rVert_2)}
        {\max(\lVert u_\ell\rVert_2, n_{min}) + \epsilon}\, u_\ell, \qquad
        \phi(x) = \min(\max(x, n_{min}), n_{max})

    The norms are Frobenius norms of whole leaves ("layers"). With the defaults this is
    ``optax.scale_by_trust_ratio`` (same positional parameters), plus the state recording each
    leaf's ratio. ``pytorch_optimizer.Lamb`` clamps the param norm at 10
    (``max_param_norm=10.0``) and adds its ``eps`` to the update norm (``eps=eps``).

    Args:
      min_norm: floor of both norms, >= 0.
      trust_coefficient: :math:`c`, multiplies the ratio, >= 0.
      eps: added to the update norm, >= 0.
      max_param_norm: clamp of the param norm, > 0, or ``None`` for none.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByTrustRatioState`;
      ``update`` needs ``params``.

    References:
      You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
      ICLR 2020.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_adam(), adamjax.scale_by_trust_ratio(),
      ...                  adamjax.scale_by_learning_rate(1e-3))
      >>> updates, state = tx.update(grads, tx.init(params), params)
    """
    return _trust_ratio(
        "scale_by_trust_ratio", min_norm=min_norm, trust_coefficient=trust_coefficient,
        eps=eps, max_param_norm=max_param_norm,
    )  # fmt: skip


def _trust_ratio(
    fn: str,
    *,
    min_norm: Any,
    trust_coefficient: Any,
    eps: Any,
    max_param_norm: Any,
    eps_name: str = "eps",
) -> optax.GradientTransformationExtraArgs:
    v.check_non_negative(fn, "min_norm", min_norm)
    v.check_non_negative(fn, "trust_coefficient", trust_coefficient)
    v.check_non_negative(fn, eps_name, eps)
    if max_param_norm is not None:
        v.check_range(fn, "max_param_norm", max_param_norm, low=0.0, open_low=True)
    options = dict(
        min_norm=min_norm, trust_coefficient=trust_coefficient, eps=eps,
        max_param_norm=max_param_norm,
    )  # fmt: skip

    def init_fn(params: optax.Params) -> ScaleByTrustRatioState:
        dtype = _piece.scalar_dtype(params)

        def zero(p: Any) -> jax.Array:
            # A reduction of zeros placed like the param, not jnp.zeros: the ratio then lives
            # on the param's devices (a scalar param's ratio is sharded like it).
            return jnp.sum(_formats.zeros_like_param(p, dtype), dtype=dtype)

        return ScaleByTrustRatioState(jax.tree.map(zero, params))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                f"{fn}: update() needs params for their norms; call tx.update(grads, state, "
                "params)."
            )
        v.check_tree_match(fn, updates, params, what="params")
        ratios = jax.tree.map(lambda u, p: trust_ratio(u, p, **options), updates, params)
        updates = jax.tree.map(lambda u, r: (r * u).astype(u.dtype), updates, ratios)
        recorded = jax.tree.map(lambda r, old: r.astype(old.dtype), ratios, state.trust_ratio)
        return updates, ScaleByTrustRatioState(recorded)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@_piece.register_view(ScaleByTrustRatioState)
def _trust_ratio_view(state: ScaleByTrustRatioState, grads: Any) -> _piece.View:
    del grads
    ratios = jax.tree.leaves(state.trust_ratio)
    if not ratios:
        nan = jnp.full([], jnp.nan)
        return _piece.View(scalars={"lamb/trust_ratio_min": nan, "lamb/trust_ratio_max": nan})
    stacked = jnp.stack(ratios)
    scalars = {"lamb/trust_ratio_min": stacked.min(), "lamb/trust_ratio_max": stacked.max()}
    return _piece.View(scalars=scalars, leaf_scalars={"lamb/trust_ratio": state.trust_ratio})


def lamb(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.999,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
    *,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    trust_ratio_eps: float = 0.0,
    max_param_norm: float | None = None,
    eps_mode: mo.EpsMode = "paper",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""LAMB (You et al. 2020): Adam plus decoupled decay, scaled per layer by a trust ratio.

    Update rule::

        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*|g|**2
        m_hat = m / (1 - b1**t);  v_hat = v / (1 - b2**t)          (t = 1, 2, ...)
        d = m_hat / (sqrt(v_hat + eps_root) + eps) + weight_decay * param
        r = min(||param||, max_param_norm) / (||d|| + trust_ratio_eps)    (per leaf; 1 if 0/x)
        update = -learning_rate * r * d

    .. math::

        d_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon} + \lambda\theta_{t-1},
        \qquad \theta_t = \theta_{t-1} - \eta_t
        \frac{\lVert\theta_{t-1}\rVert}{\lVert d_t\rVert}\, d_t

    The norms are per leaf. The alias is ``chain(scale_by_adam, add_decayed_weights,
    scale_by_trust_ratio, scale_by_learning_rate)``, so a modifier can be put between any two
    pieces. With the defaults this is ``optax.lamb`` (same positional parameters) and the
    paper's Algorithm 2. ``pytorch_optimizer.Lamb(adam_debias=True, weight_decouple=False)``
    is ``bias_correction_mu=False, bias_correction_nu=False, max_param_norm=10.0,
    trust_ratio_eps=eps``; its default ``adam_debias=False`` divides the step size by
    :math:`1 - \beta_1^t` *after* the trust ratio, which is the same with the learning rate
    ``lambda count: lr / (1 - b1 ** (count + 1))``. Its default ``weight_decouple=True``
    multiplies the params by :math:`1 - \eta\lambda` before reading their norm, outside the
    ratio, which no setting here reproduces exactly (decaying after the ratio comes within a
    factor :math:`1 - \eta\lambda` of its param norm).

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: :math:`\beta_1`, in [0, 1), or a schedule.
      b2: :math:`\beta_2`, in [0, 1), or a schedule.
      eps: added to Adam's denominator, >= 0 (optax, paper code: 1e-6).
      eps_root: added inside the square root, >= 0.
      weight_decay: :math:`\lambda`, a number >= 0 or a schedule, inside the trust ratio.
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      bias_correction_mu: divide :math:`m_t` by :math:`1 - \beta_1^t`.
      bias_correction_nu: divide :math:`v_t` by :math:`1 - \beta_2^t`.
      trust_ratio_eps: added to the update norm, >= 0 (see :func:`~adamjax.scale_by_trust_ratio`).
      max_param_norm: clamp of the param norm, > 0, or ``None``.
      eps_mode: where Adam's eps goes: ``"paper"`` (optax, the paper), ``"hat"`` (see
        :func:`~adamjax.scale_by_adam`) or ``"atan2"`` (:math:`\operatorname{atan2}(\hat m,
        \sqrt{\hat v})` replaces the division, eps unused; see :func:`~adamjax.adam_atan2`).
      mu_dtype: storage of the first moment: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of the second moment, as ``mu_dtype``.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_adam,
      add_decayed_weights, scale_by_trust_ratio, scale_by_learning_rate)``. ``update`` needs
      ``params``.

    References:
      You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
      ICLR 2020.

    Example:
      >>> tx = adamjax.lamb(learning_rate=1e-3, weight_decay=1e-2)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "lamb"
    moments = _adam.adam_moments(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=False,
        eps_mode=eps_mode, nu_dtype=nu_dtype, bias_correction_mu=bias_correction_mu,
        bias_correction_nu=bias_correction_nu,
    )  # fmt: skip
    return optax.chain(
        moments,
        _scaling.decayed_weights(fn, weight_decay, mask),
        _trust_ratio(
            fn,
            min_norm=0.0,
            trust_coefficient=1.0,
            eps=trust_ratio_eps,
            max_param_norm=max_param_norm,
            eps_name="trust_ratio_eps",
        ),
        _scaling._learning_rate(fn, learning_rate),
    )
