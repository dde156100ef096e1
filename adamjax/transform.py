r"""The chainable pieces: Adam moment scaling, AMSGrad's max-v, decoupled weight decay.

Each piece is a pure ``init``/``update`` pair returned as ``optax.GradientTransformationExtraArgs``;
its state is a ``NamedTuple`` of arrays with an int32 ``count``. The moment maths comes from
``adamjax.moments``; nothing here writes a moment formula of its own.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _tree, moments
from adamjax import _validation as v

ScalarOrSchedule = float | jax.Array | optax.Schedule


class ScaleByAdamState(NamedTuple):
    """State of :func:`scale_by_adam`.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t`, shaped like the params, in ``mu_dtype``.
      nu: raw (not bias-corrected) second moment :math:`v_t`, real-valued, in ``nu_dtype``.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


class ScaleByAmsgradState(NamedTuple):
    r"""State of :func:`scale_by_amsgrad`.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t`, in ``mu_dtype``.
      nu: raw second moment :math:`v_t`, in ``nu_dtype``.
      nu_max: running maximum, in ``nu_dtype``: of the raw :math:`v_t` when ``max_of="raw"``, of
        the bias-corrected :math:`\hat v_t` when ``max_of="corrected"``.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    nu_max: optax.Updates


class AddDecayedWeightsState(NamedTuple):
    """State of :func:`add_decayed_weights`: the int32 step ``count`` that drives a schedule."""

    count: jax.Array


def scale_by_adam(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    *,
    nesterov: bool = False,
    eps_mode: moments.EpsMode = "paper",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by Adam's bias-corrected moments (Kingma & Ba 2015).

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) |g_t|^2, \\
        u_t &= \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon),
        \quad \hat m_t = \frac{m_t}{1-\beta_1^t},\ \hat v_t = \frac{v_t}{1-\beta_2^t}.

    With ``eps_mode="hat"`` the update is the :math:`\hat\epsilon` form of the paper's §2
    (Keras, TensorFlow),
    :math:`u_t = \sqrt{1-\beta_2^t}/(1-\beta_1^t) \cdot m_t/(\sqrt{v_t+\epsilon_{root}}+\epsilon)`.
    With ``nesterov=True``, :math:`\hat m_t` is replaced by
    :math:`\beta_1 m_t/(1-\beta_1^{t+1}) + (1-\beta_1) g_t/(1-\beta_1^t)`, exactly as in
    ``optax.scale_by_adam(nesterov=True)``/``optax.nadam``.

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root (keeps the derivative finite when differentiating
        through the update, e.g. in meta-learning), >= 0.
      nesterov: use Dozat's Nesterov look-ahead of the first moment.
      eps_mode: ``"paper"`` (torch.optim, optax) or ``"hat"`` (Keras, TensorFlow).
      mu_dtype: storage dtype of ``mu``; ``None`` follows the params.
      nu_dtype: storage dtype of ``nu``; ``None`` follows the params (real part for complex).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByAdamState`. Updates
      come back in the gradients' dtype; arithmetic runs in at least float32.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_adam(), optax.scale_by_learning_rate(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    fn = "scale_by_adam"
    v.check_moment_hyperparams(fn, b1, b2, eps, eps_root, eps_mode, mu_dtype, nu_dtype)
    v.check_bool(fn, "nesterov", nesterov)

    def init_fn(params: optax.Params) -> ScaleByAdamState:
        v.check_params(fn, params)
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_moment(params, mu_dtype, real=False),
            nu=_tree.zeros_moment(params, nu_dtype, real=True),
        )

    def update_fn(updates, state, params=None):
        del params
        v.check_tree_match(fn, updates, state.mu)
        count = optax.safe_increment(state.count)

        def leaf(g, m, nu):
            g_c, m_t, v_t = moments.update_moments(g, m, nu, b1, b2)
            v_hat = v_t / moments.bias_correction(b2, count, v_t.dtype)
            u = moments.direction(
                m_t, g_c, v_hat, count, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
                eps_mode=eps_mode, nesterov=nesterov,
            )  # fmt: skip
            return u.astype(g.dtype), m_t.astype(m.dtype), v_t.astype(nu.dtype)

        updates, mu, nu = _tree.map_unzip(leaf, 3, updates, state.mu, state.nu)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def scale_by_amsgrad(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    *,
    max_of: moments.MaxOf = "raw",
    eps_mode: moments.EpsMode = "paper",
    nesterov: bool = False,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates like Adam, dividing by a running maximum of the second moment ("max-v").

    AMSGrad (Reddi et al. 2018) never lets the denominator shrink. The two conventions in use
    differ in *what* the maximum is taken of:

    * ``max_of="raw"`` (default; ``torch.optim.Adam(amsgrad=True)``, Keras 3):
      :math:`v^{max}_t = \max(v^{max}_{t-1}, v_t)`, then bias-corrected,
      :math:`u_t = \hat m_t / (\sqrt{v^{max}_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon)`.
    * ``max_of="corrected"`` (``optax.scale_by_amsgrad`` defaults):
      :math:`\hat v^{max}_t = \max(\hat v^{max}_{t-1}, \hat v_t)`,
      :math:`u_t = \hat m_t / (\sqrt{\hat v^{max}_t + \epsilon_{root}} + \epsilon)`.

    The moments, eps placement (``eps_mode``) and the optional Nesterov estimate are those of
    :func:`scale_by_adam`.

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      max_of: ``"raw"`` or ``"corrected"``, see above.
      eps_mode: ``"paper"`` or ``"hat"``, see :func:`scale_by_adam`.
      nesterov: use Dozat's Nesterov look-ahead of the first moment.
      mu_dtype: storage dtype of ``mu``; ``None`` follows the params.
      nu_dtype: storage dtype of ``nu`` and ``nu_max``; ``None`` follows the params.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByAmsgradState`.

    References:
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
      optax issue #1389 (why optax's AMSGrad differs from PyTorch's).

    Example:
      >>> tx = optax.chain(adamjax.scale_by_amsgrad(), optax.scale_by_learning_rate(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    fn = "scale_by_amsgrad"
    v.check_moment_hyperparams(fn, b1, b2, eps, eps_root, eps_mode, mu_dtype, nu_dtype)
    v.check_choice(fn, "max_of", max_of, moments.MAX_OF)
    v.check_bool(fn, "nesterov", nesterov)

    def init_fn(params: optax.Params) -> ScaleByAmsgradState:
        v.check_params(fn, params)
        # nu and nu_max get buffers of their own: a state donated to a jitted step must not
        # hold the same buffer twice.
        return ScaleByAmsgradState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_moment(params, mu_dtype, real=False),
            nu=_tree.zeros_moment(params, nu_dtype, real=True),
            nu_max=_tree.zeros_moment(params, nu_dtype, real=True),
        )

    def update_fn(updates, state, params=None):
        del params
        v.check_tree_match(fn, updates, state.mu)
        count = optax.safe_increment(state.count)

        def leaf(g, m, nu, nu_max):
            g_c, m_t, v_t = moments.update_moments(g, m, nu, b1, b2)
            bc2 = moments.bias_correction(b2, count, v_t.dtype)
            if max_of == "raw":
                v_max = jnp.maximum(nu_max.astype(v_t.dtype), v_t)
                v_hat = v_max / bc2
            else:
                v_max = v_hat = jnp.maximum(nu_max.astype(v_t.dtype), v_t / bc2)
            u = moments.direction(
                m_t, g_c, v_hat, count, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
                eps_mode=eps_mode, nesterov=nesterov,
            )  # fmt: skip
            return (
                u.astype(g.dtype),
                m_t.astype(m.dtype),
                v_t.astype(nu.dtype),
                v_max.astype(nu_max.dtype),
            )

        updates, mu, nu, nu_max = _tree.map_unzip(
            leaf, 4, updates, state.mu, state.nu, state.nu_max
        )
        return updates, ScaleByAmsgradState(count=count, mu=mu, nu=nu, nu_max=nu_max)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _is_zero(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == 0


def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0, mask: Any | None = None
) -> optax.GradientTransformationExtraArgs:
    r"""Adds decoupled weight decay :math:`\lambda_t \theta_{t-1}` to the updates.

    .. math::

        u_t \leftarrow u_t + \lambda_t \theta_{t-1}

    Chained *after* a moment-scaling piece and *before* the learning rate (as in
    :func:`adamjax.adamw`), the decay is not rescaled by Adam's preconditioner: this is the
    decoupling of Loshchilov & Hutter (2019). Whether the decay is then multiplied by the learning
    rate is decided by where the alias puts it (``weight_decay_scaling`` in :func:`adamjax.adamw`).

    Args:
      weight_decay: :math:`\lambda`, a finite number >= 0, a jax array, or an optax schedule of the
        step count.
      mask: a pytree of bools shaped like the params (or a prefix of them), or a callable that
        returns one from the params; only leaves marked ``True`` are decayed (commonly: not biases
        or norm scales). ``None`` decays every leaf.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`AddDecayedWeightsState`
      (wrapped in ``optax.MaskedState`` when ``mask`` is given). ``update`` needs ``params`` unless
      ``weight_decay`` is the constant 0.

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_adam(), adamjax.add_decayed_weights(1e-4),
      ...                  optax.scale_by_learning_rate(1e-3))
      >>> updates, state = tx.update(grads, tx.init(params), params)
    """
    fn = "add_decayed_weights"
    v.check_non_negative(fn, "weight_decay", weight_decay, schedule_ok=True)

    def init_fn(params: optax.Params) -> AddDecayedWeightsState:
        del params
        return AddDecayedWeightsState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        new_state = AddDecayedWeightsState(count=optax.safe_increment(state.count))
        if _is_zero(weight_decay):
            return updates, new_state
        if params is None:
            raise ValueError(
                f"{fn}: update() needs params to decay them; call tx.update(grads, state, params)."
            )
        v.check_tree_match(fn, updates, params, what="params")
        wd = weight_decay(state.count) if callable(weight_decay) else weight_decay
        # Cast back: an array or scheduled decay is not weakly typed and would promote bf16
        # updates to float32.
        updates = jax.tree.map(lambda u, p: (u + wd * p).astype(u.dtype), updates, params)
        return updates, new_state

    tx = optax.GradientTransformationExtraArgs(init_fn, update_fn)
    return tx if mask is None else optax.masked(tx, mask)
