r"""CAME (Luo et al. 2023): Adafactor's factored second moment with a confidence-guided momentum.
Its piece, its alias and its diagnostics view.

The alias chains Adafactor's pieces (:mod:`adamjax._adafactor`: the factored second moment with a
constant decay, every rank >= 2 leaf factored, and the update clipping by block RMS) with
:func:`scale_by_came`, the paper's new step: a first moment of the clipped update, divided by
the square root of a factored estimate of its *instability* (the squared difference between the
update and the first moment), computed with the same factored maths.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _adafactor, _formats, _piece, _scaling
from adamjax import _moments as mo
from adamjax import _validation as v

# CAME factors every leaf of rank >= 2 (no minimum size).
_FACTORING = _adafactor._Factoring(factored=True, min_dim=1)


class ScaleByCameState(NamedTuple):
    r"""State of scale_by_came.

    Attributes:
      came_count: int32 scalar, the number of updates applied so far (not called ``count``, so
        that ``optax.tree_utils.tree_get(state, "count")`` on :func:`came`'s state finds the one
        count of its factored second moment).
      mu: :math:`m_t`, the EMA of the clipped, preconditioned updates, in ``mu_dtype``.
      res_row: for a leaf of rank >= 2, the EMA of the instability
        :math:`(\hat U_t - m_t)^2 + \epsilon_2` averaged over the leaf's largest axis (as
        ``v_row`` of :class:`~adamjax.ScaleByFactoredRmsState`); ``(1,)`` for other leaves.
      res_col: the same averaged over the second-largest axis; ``(1,)`` for other leaves.
    """

    came_count: jax.Array
    mu: optax.Updates
    res_row: optax.Updates
    res_col: optax.Updates


def scale_by_came(
    b1: float | jax.Array = 0.9,
    b3: float | jax.Array = 0.9999,
    eps: float | jax.Array = 1e-16,
    *,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""CAME's confidence-guided step: momentum divided by its factored instability.

    Update rule::

        m = b1*m + (1-b1)*u                      (u: the incoming, clipped, preconditioned update)
        rank >= 2 leaf (largest axis L, second-largest S):
            s = (u - m)**2 + eps
            r_row = b3*r_row + (1-b3) * mean(s, over L)
            r_col = b3*r_col + (1-b3) * mean(s, over S)
            update = m / sqrt(r_row * r_col / mean(r_row, over S))
        other leaf:  update = m

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) \hat U_t, \qquad
        S_t = (\hat U_t - m_t)^2 + \epsilon_2, \\
        \hat S_t = \frac{r_t\, c_t}{\operatorname{mean}_a(r_t)}, \qquad
        \text{update}_t = m_t / \sqrt{\hat S_t},

    where :math:`r_t, c_t` are EMAs (decay :math:`\beta_3`) of the row and column means of
    :math:`S_t`, the same factored estimate as :func:`~adamjax.scale_by_factored_rms`'s. There is
    no bias correction (as in the paper and the reference code). Put it after
    ``scale_by_factored_rms`` and ``clip_by_block_rms``, as :func:`came` does.

    Args:
      b1: :math:`\beta_1`, in [0, 1).
      b3: :math:`\beta_3`, the instability's decay, in [0, 1).
      eps: :math:`\epsilon_2`, added to the instability, >= 0.
      mu_dtype: storage of ``mu``: None (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage dtype of ``res_row`` and ``res_col``; ``None`` follows the params.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByCameState`.

    References:
      Luo et al., "CAME: Confidence-guided Adaptive Memory Efficient Optimization", ACL 2023,
      Algorithm 1. Convention: ``came_pytorch.CAME`` 0.1.3.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_factored_rms(), adamjax.scale_by_came())
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    return _came_confidence("scale_by_came", b1=b1, b3=b3, eps=eps, mu_dtype=mu_dtype,
                            nu_dtype=nu_dtype)  # fmt: skip


def _came_confidence(
    fn: str, *, b1: Any, b3: Any, eps: Any, mu_dtype: Any, nu_dtype: Any, b3_name: str = "b3",
    eps_name: str = "eps",
) -> optax.GradientTransformationExtraArgs:  # fmt: skip
    v.check_unit_interval(fn, "b1", b1)
    v.check_unit_interval(fn, b3_name, b3)
    v.check_non_negative(fn, eps_name, eps)
    _formats.check_format(fn, "mu_dtype", mu_dtype)
    v.check_float_dtype(fn, "nu_dtype", nu_dtype)
    guard = mo.is_static_zero(eps)

    def init_fn(params: optax.Params) -> ScaleByCameState:
        _piece.check_params(fn, params, mu_dtype)
        rows, cols = _piece.map_unzip(
            lambda p: _adafactor._zero_statistics(p, _FACTORING, nu_dtype)[:2], 2, params
        )
        mu = _piece.zeros_moment(params, mu_dtype, real=False)
        return ScaleByCameState(jnp.zeros([], jnp.int32), mu, rows, cols)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        def leaf(u, m, r_row, r_col, *, settle):
            m = mo.ema(u, m, b1)
            axes = _FACTORING.axes(jnp.shape(u))
            if axes is None:
                return settle(m, r_row, r_col)[0]
            instability = mo.squared_magnitude(u - m) + eps  # from m as computed
            # With 1 for the update, the factored step is the inverse-RMS factor alone.
            one = jnp.ones([], instability.dtype)
            factor, r_row, r_col = _adafactor._factored_step(
                one, instability, r_row, r_col, b3, axes, guard
            )
            m, _, _ = settle(m, r_row, r_col)
            return m * factor

        stored = [
            _formats.Stored(state.mu, mu_dtype, signed=True),
            _formats.Stored(state.res_row, nu_dtype, signed=False),
            _formats.Stored(state.res_col, nu_dtype, signed=False),
        ]
        count = optax.safe_increment(state.came_count)
        updates, (mu, rows, cols) = _formats.update_leaves(fn, leaf, updates, stored, count)
        return updates, ScaleByCameState(count, mu, rows, cols)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@_piece.register_view(ScaleByCameState)
def _came_view(state: ScaleByCameState, grads: Any) -> _piece.View:
    """The first moment's magnitude :math:`|m_t|` (CAME has no bias correction); the step
    sizes come from the factored second moment's view."""
    del grads
    mu = _piece.decoded(state).mu
    return _piece.View(m_hat=jax.tree.map(lambda m: jnp.abs(_piece.real(m)), mu))


def came(
    learning_rate: _piece.ScalarOrSchedule = 2e-4,
    b1: float = 0.9,
    b2: float | optax.Schedule = 0.999,
    b3: float = 0.9999,
    eps1: float = 1e-30,
    eps2: float = 1e-16,
    clip_threshold: float | None = 1.0,
    weight_decay: _piece.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
    *,
    decoupled_weight_decay: bool = True,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""CAME (Luo et al. 2023): Adafactor with a confidence-guided first moment.

    Update rule::

        factored second moment of g (scale_by_factored_rms, constant decay b2, eps1 added to
            g**2, every rank >= 2 leaf factored):  u = g / sqrt(v_hat)
        u = u / max(1, rms(u) / clip_threshold)                     (per leaf)
        m = b1*m + (1-b1)*u
        rank >= 2:  s = (u - m)**2 + eps2;  s_hat = factored EMA (decay b3) of s
                    d = m / sqrt(s_hat)
        other leaf: d = m
        update = -learning_rate * (d + weight_decay * param)

    .. math::

        \hat U_t = \frac{G_t/\sqrt{\hat V_t}}{\max(1, \mathrm{RMS}(G_t/\sqrt{\hat V_t})/d)},
        \quad m_t = \beta_1 m_{t-1} + (1-\beta_1)\hat U_t, \quad
        \theta_t = \theta_{t-1} - \eta_t \left(m_t/\sqrt{\hat S_t} + \lambda\theta_{t-1}\right)

    with :math:`\hat V_t` Adafactor's factored estimate (:func:`~adamjax.scale_by_factored_rms`,
    decay :math:`\beta_2`, no bias correction) and :math:`\hat S_t` the factored instability of
    :func:`~adamjax.scale_by_came`. Vectors and scalars are not factored: their second moment is
    the full EMA and their step is :math:`m_t` itself, as in the reference.

    For a matrix this is ``came_pytorch.CAME`` (and ``pytorch_optimizer.CAME``). Leaves of rank
    >= 3 are factored over their two *largest* axes, Adafactor's and optax's rule; the reference
    factors the *last two* (for a torch conv kernel, the spatial ones). Weight decay is
    decoupled, :math:`\theta \leftarrow \theta(1 - \eta\lambda)`, as in both references;
    ``decoupled_weight_decay=False`` adds :math:`\lambda\theta` to the gradient instead
    (``pytorch_optimizer.CAME(weight_decouple=False)``).

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: :math:`\beta_1`, the first moment's decay, in [0, 1).
      b2: :math:`\beta_2`, the squared gradient's decay, in [0, 1), or a schedule.
      b3: :math:`\beta_3`, the instability's decay, in [0, 1).
      eps1: :math:`\epsilon_1`, added to the squared gradient, >= 0.
      eps2: :math:`\epsilon_2`, added to the instability, >= 0.
      clip_threshold: :math:`d > 0`; ``None`` disables the update clipping.
      weight_decay: :math:`\lambda`, a number >= 0 or a schedule.
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      decoupled_weight_decay: decay the params directly (default) rather than add to the
        gradient.
      mu_dtype: storage of the first moment: None (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage dtype of the factored statistics; ``None`` follows the params.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_factored_rms,
      clip_by_block_rms, scale_by_came, add_decayed_weights, scale_by_learning_rate)``.

    References:
      Luo et al., "CAME: Confidence-guided Adaptive Memory Efficient Optimization", ACL 2023.
      Convention: ``came_pytorch.CAME`` 0.1.3 (its defaults; ``learning_rate`` defaults to
      ``pytorch_optimizer.CAME``'s 2e-4, the authors' package has none).

    Example:
      >>> tx = adamjax.came(learning_rate=2e-4)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "came"
    v.check_unit_interval(fn, "b2", b2, schedule_ok=True)
    pieces = [
        _adafactor._factored_rms(
            fn, factored=True, decay_rate=b2, step_offset=0, min_dim_size_to_factor=1,
            epsilon=eps1, decay_rate_fn=lambda step, rate: mo.rate_at(rate, step),
            nu_dtype=nu_dtype, spelled={"epsilon": "eps1"},
        )
    ]  # fmt: skip
    if clip_threshold is not None:
        pieces.append(
            _adafactor._clip_by_block_rms(fn, threshold=clip_threshold, name="clip_threshold")
        )
    confidence = _came_confidence(
        fn, b1=b1, b3=b3, eps=eps2, mu_dtype=mu_dtype, nu_dtype=nu_dtype, eps_name="eps2"
    )
    pieces.append(confidence)
    return _scaling.torch_style_chain(
        fn, optax.chain(*pieces), learning_rate=learning_rate, weight_decay=weight_decay,
        decoupled_weight_decay=decoupled_weight_decay, mask=mask,
    )  # fmt: skip
