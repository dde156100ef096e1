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

from adamjax import _tree, codecs, moments
from adamjax import _validation as v

#: A learning rate or a decay, given as a number, an array, or an optax schedule of the step.
ScalarOrSchedule = float | jax.Array | optax.Schedule


class ScaleByAdamState(NamedTuple):
    r"""State of :func:`scale_by_adam`.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t`, shaped like the params, in ``mu_dtype``.
      nu: raw (not bias-corrected) second moment :math:`v_t`, real-valued, in ``nu_dtype``.
      b1_correction: when ``b1`` is a schedule, the running bias correction
        :math:`1 - \prod_{i \le t}\beta_{1,i}` (a scalar); ``None`` for a constant ``b1``.
      b2_correction: the same for ``b2``.
      last_step: the :class:`~adamjax.moments.StepScalars` of the latest update (bias corrections
        and the placed eps), which diagnostics read; placeholders before the first update.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    b1_correction: jax.Array | None = None
    b2_correction: jax.Array | None = None
    last_step: moments.StepScalars | None = None


class ScaleByAmsgradState(NamedTuple):
    r"""State of :func:`scale_by_amsgrad`.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t`, in ``mu_dtype``.
      nu: raw second moment :math:`v_t`, in ``nu_dtype``.
      nu_max: running maximum, in ``nu_dtype``: of the raw :math:`v_t` when ``max_of="raw"``, of
        the bias-corrected :math:`\hat v_t` when ``max_of="corrected"``.
      b1_correction: see :class:`ScaleByAdamState`.
      b2_correction: see :class:`ScaleByAdamState`.
      last_step: see :class:`ScaleByAdamState`; its ``max_correction`` says which convention
        ``nu_max`` is in.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    nu_max: optax.Updates
    b1_correction: jax.Array | None = None
    b2_correction: jax.Array | None = None
    last_step: moments.StepScalars | None = None


class AddDecayedWeightsState(NamedTuple):
    """State of :func:`add_decayed_weights`: the int32 step ``count`` that drives a schedule."""

    count: jax.Array


def _init_corrections(params: optax.Params, b1: Any, b2: Any) -> tuple[Any, Any]:
    """Returns the state's bias-correction slots for ``b1`` and ``b2`` (``None`` if constant)."""
    dtype = _tree.scalar_dtype(params)
    return moments.init_correction(b1, dtype), moments.init_correction(b2, dtype)


def _init_adam_state(
    fn: str, params: optax.Params, b1: Any, b2: Any, mu_dtype: Any, nu_dtype: Any
) -> ScaleByAdamState:
    """Returns the zero :class:`ScaleByAdamState` of ``params`` (Adam's and RAdam's state)."""
    v.check_params(fn, params)
    return ScaleByAdamState(
        jnp.zeros([], jnp.int32),
        _tree.zeros_moment(params, mu_dtype, real=False),
        _tree.zeros_moment(params, nu_dtype, real=True),
        *_init_corrections(params, b1, b2),
        moments.initial_step_scalars(_tree.scalar_dtype(params)),
    )


def _step_decays(
    b1: Any, b2: Any, state: Any, nesterov: bool
) -> tuple[moments.StepDecay, moments.StepDecay, moments.StepDecay | None]:
    """Returns this step's ``b1``, ``b2`` and, for Nesterov, the ``b1`` of the next step."""
    d1 = moments.step_decay(b1, state.count, state.b1_correction)
    d2 = moments.step_decay(b2, state.count, state.b2_correction)
    ahead = moments.step_decay(b1, d1.count, d1.correction) if nesterov else None
    return d1, d2, ahead


def _record(
    d1: moments.StepDecay,
    d2: moments.StepDecay | None,
    eps: Any,
    eps_root: Any,
    eps_mode: str,
    state: Any,
    max_correction: Any | None = None,
) -> moments.StepScalars:
    """Returns the step's :class:`~adamjax.moments.StepScalars`, in the dtype the state keeps."""
    dtype = state.last_step.m_correction.dtype
    return moments.record_step(
        d1.bias_correction(dtype),
        d2,
        eps,
        eps_root,
        eps_mode,
        dtype,
        max_correction=max_correction,
    )


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
      mu_dtype: storage of ``mu``; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).
      nu_dtype: storage of ``nu``; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).

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
        return _init_adam_state(fn, params, b1, b2, mu_dtype, nu_dtype)

    def update_fn(updates, state, params=None):
        del params
        v.check_tree_match(fn, updates, state.mu)
        d1, d2, ahead = _step_decays(b1, b2, state, nesterov)
        out = codecs.Writer(d1.count, mu_dtype, nu_dtype)

        def leaf(g, m, nu, i):
            m_in, nu_in = codecs.load(m, signed=True), codecs.load(nu, signed=False)
            g_c, m_t, v_t = moments.update_moments(g, m_in, nu_in, d1.rate, d2.rate)
            v_hat = d2.corrected(v_t)
            m_hat = moments.first_moment_estimate(m_t, g_c, d1, ahead)
            u = moments.direction(m_hat, v_hat, d2, eps=eps, eps_root=eps_root, eps_mode=eps_mode)
            return u.astype(g.dtype), out.store(0, m_t, m, i), out.store(1, v_t, nu, i)

        updates, mu, nu = _tree.map_unzip(leaf, 3, updates, state.mu, state.nu, indexed=True)
        last = _record(d1, d2, eps, eps_root, eps_mode, state)
        return updates, ScaleByAdamState(d1.count, mu, nu, d1.correction, d2.correction, last)

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
      mu_dtype: storage of ``mu``; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).
      nu_dtype: storage of ``nu`` and ``nu_max``; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).

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
            jnp.zeros([], jnp.int32),
            _tree.zeros_moment(params, mu_dtype, real=False),
            _tree.zeros_moment(params, nu_dtype, real=True),
            _tree.zeros_moment(params, nu_dtype, real=True),
            *_init_corrections(params, b1, b2),
            moments.initial_step_scalars(_tree.scalar_dtype(params), with_max=True),
        )

    def update_fn(updates, state, params=None):
        del params
        v.check_tree_match(fn, updates, state.mu)
        d1, d2, ahead = _step_decays(b1, b2, state, nesterov)
        out = codecs.Writer(d1.count, mu_dtype, nu_dtype, nu_dtype)

        def leaf(g, m, nu, nu_max, i):
            m_in, nu_in = codecs.load(m, signed=True), codecs.load(nu, signed=False)
            g_c, m_t, v_t = moments.update_moments(g, m_in, nu_in, d1.rate, d2.rate)
            previous = codecs.load(nu_max, signed=False).astype(v_t.dtype)
            if max_of == "raw":
                v_max = jnp.maximum(previous, v_t)
                v_hat = d2.corrected(v_max)
            else:
                v_max = v_hat = jnp.maximum(previous, d2.corrected(v_t))
            m_hat = moments.first_moment_estimate(m_t, g_c, d1, ahead)
            u = moments.direction(m_hat, v_hat, d2, eps=eps, eps_root=eps_root, eps_mode=eps_mode)
            return (
                u.astype(g.dtype),
                out.store(0, m_t, m, i),
                out.store(1, v_t, nu, i),
                out.store(2, v_max, nu_max, i),
            )

        updates, mu, nu, nu_max = _tree.map_unzip(
            leaf, 4, updates, state.mu, state.nu, state.nu_max, indexed=True
        )
        dtype = state.last_step.m_correction.dtype
        max_correction = d2.bias_correction(dtype) if max_of == "raw" else 1
        last = _record(d1, d2, eps, eps_root, eps_mode, state, max_correction)
        return updates, ScaleByAmsgradState(
            d1.count, mu, nu, nu_max, d1.correction, d2.correction, last
        )

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
    return tx if mask is None else checked_mask(fn, tx, mask)


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


def masked_decay(
    fn: str, weight_decay: Any, mask: Any, name: str = "mask"
) -> optax.GradientTransformation:
    """:func:`add_decayed_weights` for an alias: a bad ``mask`` is reported under ``fn``."""
    decay = add_decayed_weights(weight_decay)
    return decay if mask is None else checked_mask(fn, decay, mask, name)


class ScaleByNadamState(NamedTuple):
    r"""State of :func:`scale_by_nadam`.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t`, in ``mu_dtype``.
      nu: raw second moment :math:`v_t`, in ``nu_dtype``.
      momentum_correction: :math:`1 - \prod_{i \le t}\mu_i` for Dozat's momentum schedule (a
        scalar). ``torch.optim.NAdam`` keeps the product itself, ``mu_product``; this is one minus
        it, kept in that form so it does not lose digits to cancellation.
      b1_correction: when ``b1`` is a schedule, :math:`1 - \prod_{i \le t}\beta_{1,i}`, the bias
        correction of the moving average :math:`m_t` (the estimate uses the momentum schedule's
        instead; this one is kept for diagnostics); else ``None``.
      b2_correction: when ``b2`` is a schedule, :math:`1 - \prod_{i \le t}\beta_{2,i}`; else
        ``None``.
      last_step: see :class:`ScaleByAdamState`; its ``m_correction`` is the moving average's
        :math:`1 - \prod\beta_1`.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    momentum_correction: jax.Array
    b1_correction: jax.Array | None = None
    b2_correction: jax.Array | None = None
    last_step: moments.StepScalars | None = None


def nadam_momentum(b1: Any, momentum_decay: float, dtype: Any) -> optax.Schedule:
    r"""Returns Dozat's momentum schedule :math:`\mu_t = \beta_{1,t}(1 - \tfrac12 \cdot
    0.96^{t\psi})` as a function of the 0-based count :math:`t - 1`, computed in ``dtype``.

    This is the schedule of ``torch.optim.NAdam`` (:math:`\psi` = ``momentum_decay``, 4e-3 by
    default). ``b1`` may itself be a schedule.
    """

    def schedule(count: jax.Array) -> jax.Array:
        t = (count + 1).astype(dtype)
        b1_t = jnp.asarray(moments.rate_at(b1, count), dtype)
        return b1_t * (1 - 0.5 * jnp.asarray(0.96, dtype) ** (t * momentum_decay))

    return schedule


def scale_by_nadam(
    b1: float | jax.Array | optax.Schedule = 0.9,
    b2: float | jax.Array | optax.Schedule = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    momentum_decay: float = 4e-3,
    *,
    eps_mode: moments.EpsMode = "paper",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by NAdam's moments and Dozat's momentum schedule (``torch.optim.NAdam``).

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

    Args:
      b1: :math:`\beta_1`, in [0, 1), or a schedule.
      b2: :math:`\beta_2`, in [0, 1), or a schedule.
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      momentum_decay: :math:`\psi`, >= 0 (torch's ``momentum_decay``).
      eps_mode: ``"paper"`` (torch) or ``"hat"``, see :func:`scale_by_adam`.
      mu_dtype: storage of ``mu``; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).
      nu_dtype: storage of ``nu``; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).

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
    fn = "scale_by_nadam"
    v.check_moment_hyperparams(fn, b1, b2, eps, eps_root, eps_mode, mu_dtype, nu_dtype)
    v.check_non_negative(fn, "momentum_decay", momentum_decay)

    def init_fn(params: optax.Params) -> ScaleByNadamState:
        v.check_params(fn, params)
        dtype = _tree.scalar_dtype(params)
        return ScaleByNadamState(
            jnp.zeros([], jnp.int32),
            _tree.zeros_moment(params, mu_dtype, real=False),
            _tree.zeros_moment(params, nu_dtype, real=True),
            jnp.zeros([], dtype),
            *_init_corrections(params, b1, b2),
            moments.initial_step_scalars(dtype),
        )

    def update_fn(updates, state, params=None):
        del params
        v.check_tree_match(fn, updates, state.mu)
        schedule = nadam_momentum(b1, momentum_decay, state.momentum_correction.dtype)
        mu_t = moments.step_decay(schedule, state.count, state.momentum_correction)
        mu_next = moments.step_decay(schedule, mu_t.count, mu_t.correction)
        d1, d2, _ = _step_decays(b1, b2, state, False)
        out = codecs.Writer(d1.count, mu_dtype, nu_dtype)

        def leaf(g, m, nu, i):
            m_in, nu_in = codecs.load(m, signed=True), codecs.load(nu, signed=False)
            g_c, m_t, v_t = moments.update_moments(g, m_in, nu_in, d1.rate, d2.rate)
            v_hat = d2.corrected(v_t)
            m_bar = moments.first_moment_estimate(m_t, g_c, mu_t, mu_next)
            u = moments.direction(m_bar, v_hat, d2, eps=eps, eps_root=eps_root, eps_mode=eps_mode)
            return u.astype(g.dtype), out.store(0, m_t, m, i), out.store(1, v_t, nu, i)

        updates, mu, nu = _tree.map_unzip(leaf, 3, updates, state.mu, state.nu, indexed=True)
        last = _record(d1, d2, eps, eps_root, eps_mode, state)
        return updates, ScaleByNadamState(
            mu_t.count, mu, nu, mu_t.correction, d1.correction, d2.correction, last
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class ScaleByAdamaxState(NamedTuple):
    r"""State of :func:`scale_by_adamax`.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t`, in ``mu_dtype``.
      nu: the exponentially weighted infinity norm :math:`u_t`, real, in ``nu_dtype``.
      b1_correction: when ``b1`` is a schedule, :math:`1 - \prod_{i \le t}\beta_{1,i}`; else
        ``None``.
      last_step: the :class:`~adamjax.moments.StepScalars` of the latest update: ``m_correction``
        and, as ``eps``, the eps added to :math:`u_t` in the denominator (0 with
        ``eps_mode="max"``); ``v_correction`` is 1.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    b1_correction: jax.Array | None = None
    last_step: moments.StepScalars | None = None


ADAMAX_EPS_MODES: tuple[str, ...] = ("max", "denominator")


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
      mu_dtype: storage of ``mu``; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).
      nu_dtype: storage of ``nu``; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByAdamaxState`.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, §7.1.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_adamax(), optax.scale_by_learning_rate(2e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    fn = "scale_by_adamax"
    v.check_moment_hyperparams(fn, b1, b2, eps, 0.0, "paper", mu_dtype, nu_dtype)
    v.check_choice(fn, "eps_mode", eps_mode, ADAMAX_EPS_MODES)
    eps_in_max, eps_outside = (eps, 0.0) if eps_mode == "max" else (0.0, eps)

    def init_fn(params: optax.Params) -> ScaleByAdamaxState:
        v.check_params(fn, params)
        return ScaleByAdamaxState(
            jnp.zeros([], jnp.int32),
            _tree.zeros_moment(params, mu_dtype, real=False),
            _tree.zeros_moment(params, nu_dtype, real=True),
            moments.init_correction(b1, _tree.scalar_dtype(params)),
            moments.initial_step_scalars(_tree.scalar_dtype(params)),
        )

    def update_fn(updates, state, params=None):
        del params
        v.check_tree_match(fn, updates, state.mu)
        d1 = moments.step_decay(b1, state.count, state.b1_correction)
        b2_t = moments.rate_at(b2, state.count)
        out = codecs.Writer(d1.count, mu_dtype, nu_dtype)

        def leaf(g, m, nu, i):
            # The first moment is Adam's; the second moment is replaced by the infinity norm.
            m_in, nu_in = codecs.load(m, signed=True), codecs.load(nu, signed=False)
            g_c, m_t = moments.update_first_moment(g, m_in, d1.rate, nu_in.dtype)
            u_t = moments.update_infinity_norm(g_c, nu_in, b2_t, eps_in_max)
            m_hat = moments.first_moment_estimate(m_t, g_c, d1)
            u = moments.infinity_norm_direction(m_hat, u_t, eps_outside)
            return u.astype(g.dtype), out.store(0, m_t, m, i), out.store(1, u_t, nu, i)

        updates, mu, nu = _tree.map_unzip(leaf, 3, updates, state.mu, state.nu, indexed=True)
        last = _record(d1, None, eps_outside, 0.0, "paper", state)
        return updates, ScaleByAdamaxState(d1.count, mu, nu, d1.correction, last)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class ScaleByRadamState(NamedTuple):
    r"""State of :func:`scale_by_radam`: :class:`ScaleByAdamState`'s fields and the rectification.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      mu: first moment :math:`m_t`, in ``mu_dtype``.
      nu: raw second moment :math:`v_t`, real, in ``nu_dtype``.
      b1_correction: see :class:`ScaleByAdamState`.
      b2_correction: always ``None`` (``b2`` must be a constant).
      last_step: see :class:`ScaleByAdamState`.
      rectification: scalar, :math:`r_t` of the latest update when it took the adaptive step,
        0 when it took the momentum-SGD step (and before the first update).
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    b1_correction: jax.Array | None = None
    b2_correction: jax.Array | None = None
    last_step: moments.StepScalars | None = None
    rectification: jax.Array | None = None


def radam_rectification(b2: float, count: jax.Array, dtype: Any) -> tuple[jax.Array, jax.Array]:
    r"""Returns RAdam's ``(rho_t, r_t)`` at step ``count`` (Liu et al. 2020, eq. 6 and Alg. 2).

    .. math::

        \rho_\infty = \frac{2}{1-\beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t}, \qquad
        r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}.

    :math:`r_t` is only meaningful where :math:`\rho_t > 4`; elsewhere it is returned as 0 (not
    NaN, so gradients through an unselected branch stay finite).
    """
    # rho_t is a difference of two terms near 2/(1-b2) (~2000 for b2=0.999), so both are taken
    # from 1 - b2 through log1p/expm1: with b2**t rounded in float32, as optax computes it, rho_t
    # is off by ~1e-2 in the first steps and r_t by ~0.5%.
    one_minus_b2 = 1 - (b2.astype(dtype) if isinstance(b2, jax.Array) else b2)
    log_b2 = jnp.log1p(-jnp.asarray(one_minus_b2, dtype))
    t = count.astype(dtype)
    power = jnp.exp(t * log_b2)
    rho_inf = 2 / jnp.asarray(one_minus_b2, dtype) - 1
    rho_t = rho_inf - 2 * t * power / -jnp.expm1(t * log_b2)
    ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
    valid = rho_t > 4
    return rho_t, jnp.where(valid, jnp.sqrt(jnp.where(valid, ratio, 1.0)), 0.0)


def scale_by_radam(
    b1: float | jax.Array | optax.Schedule = 0.9,
    b2: float = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    threshold: float = 5.0,
    *,
    eps_mode: moments.EpsMode = "hat",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Rescales updates by Rectified Adam (Liu et al. 2020).

    While the variance of the adaptive learning rate is intractable (:math:`\rho_t \le`
    ``threshold``) the update is momentum SGD, :math:`\hat m_t`; afterwards it is Adam's
    direction times the rectification :math:`r_t` (see :func:`radam_rectification`):

    .. math::

        u_t = \begin{cases} r_t\, \hat m_t / (\sqrt{\hat v_t + \epsilon_{root,t}} + \epsilon_t)
              & \rho_t > \text{threshold} \\ \hat m_t & \text{otherwise.} \end{cases}

    Conventions: the paper's Algorithm 2 switches at :math:`\rho_t > 4` and has no eps;
    ``torch.optim.RAdam`` switches at :math:`\rho_t > 5` and places eps in the
    :math:`\hat\epsilon` form, :math:`\sqrt{1-\beta_2^t}/(\sqrt{v_t} + \epsilon)`
    (``eps_mode="hat"``, the default here); ``optax.radam`` switches at :math:`\rho_t \ge 5` and
    uses the paper form :math:`\sqrt{\hat v_t} + \epsilon` (``eps_mode="paper"``).

    Args:
      b1: :math:`\beta_1`, in [0, 1), or a schedule (exact bias correction).
      b2: :math:`\beta_2`, in [0, 1); a constant, since :math:`\rho_t` is derived for one.
      eps: added to the denominator, >= 0, placed by ``eps_mode``.
      eps_root: added inside the square root, >= 0.
      threshold: the :math:`\rho_t` above which the adaptive step is used, >= 4 (torch, optax:
        5; paper: 4).
      eps_mode: ``"hat"`` (torch, authors' code) or ``"paper"`` (optax).
      mu_dtype: storage of ``mu``; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).
      nu_dtype: storage of ``nu``; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByRadamState`.

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_radam(), optax.scale_by_learning_rate(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state)
    """
    fn = "scale_by_radam"
    v.check_moment_hyperparams(fn, b1, b2, eps, eps_root, eps_mode, mu_dtype, nu_dtype)
    check_radam(fn, b2, threshold)

    def init_fn(params: optax.Params) -> ScaleByRadamState:
        adam_state = _init_adam_state(fn, params, b1, b2, mu_dtype, nu_dtype)
        return ScaleByRadamState(*adam_state, jnp.zeros([], _tree.scalar_dtype(params)))

    def update_fn(updates, state, params=None):
        del params
        v.check_tree_match(fn, updates, state.mu)
        d1, d2, _ = _step_decays(b1, b2, state, False)
        dtype = state.rectification.dtype
        rho, rectification = radam_rectification(b2, d2.count, dtype)
        out = codecs.Writer(d1.count, mu_dtype, nu_dtype)

        def leaf(g, m, nu, i):
            m_in, nu_in = codecs.load(m, signed=True), codecs.load(nu, signed=False)
            g_c, m_t, v_t = moments.update_moments(g, m_in, nu_in, d1.rate, d2.rate)
            rho_t, rect = radam_rectification(b2, d2.count, v_t.dtype)
            m_hat = moments.first_moment_estimate(m_t, g_c, d1)
            v_hat = d2.corrected(v_t)
            adaptive = moments.direction(
                m_hat, v_hat, d2, eps=eps, eps_root=eps_root, eps_mode=eps_mode
            )
            u = jnp.where(rho_t > threshold, rect * adaptive, m_hat)
            return u.astype(g.dtype), out.store(0, m_t, m, i), out.store(1, v_t, nu, i)

        updates, mu, nu = _tree.map_unzip(leaf, 3, updates, state.mu, state.nu, indexed=True)
        last = _record(d1, d2, eps, eps_root, eps_mode, state)
        taken = jnp.where(rho > threshold, rectification, 0).astype(dtype)
        return updates, ScaleByRadamState(
            d1.count, mu, nu, d1.correction, d2.correction, last, taken
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def check_radam(fn: str, b2: Any, threshold: Any) -> None:
    if moments.is_scheduled(b2):
        raise ValueError(
            f"{fn}: b2 must be a constant, got the schedule {b2!r}; RAdam's rectification term "
            "is derived for a constant b2."
        )
    v.check_non_negative(fn, "threshold", threshold)
    if isinstance(threshold, (int, float)) and threshold < 4:
        raise ValueError(
            f"{fn}: threshold must be a finite number in [4, inf), got {threshold!r}; the "
            "rectification term is undefined for rho_t <= 4."
        )


class ScaleByLearningRateState(NamedTuple):
    r"""State of :func:`scale_by_learning_rate`.

    Attributes:
      count: int32 scalar, the number of updates applied so far.
      learning_rate: scalar, the learning rate :math:`\alpha_t` of the latest update, unsigned
        (0 before the first); diagnostics read it to turn Adam's preconditioner into effective
        learning rates.
    """

    count: jax.Array
    learning_rate: jax.Array


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule, *, flip_sign: bool = True
) -> optax.GradientTransformationExtraArgs:
    r"""Multiplies updates by :math:`-\alpha_t` (or :math:`\alpha_t`) and records :math:`\alpha_t`.

    The same updates as ``optax.scale_by_learning_rate``: a Python number multiplies weakly typed,
    an array or a schedule's value is cast to each update's dtype first. The only difference is
    the state, which keeps the step's learning rate so that :func:`adamjax.with_diagnostics` can
    report effective per-parameter learning rates. Every adamjax alias uses this piece.

    Args:
      learning_rate: :math:`\alpha`, a finite number >= 0, a jax array or an optax schedule of the
        0-based step count.
      flip_sign: multiply by :math:`-\alpha_t` (descent, the default) rather than
        :math:`\alpha_t`.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleByLearningRateState`.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_adam(), adamjax.scale_by_learning_rate(1e-3))
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> state[1].learning_rate  # 1e-3
    """
    fn = "scale_by_learning_rate"
    v.check_non_negative(fn, "learning_rate", learning_rate, schedule_ok=True)
    v.check_bool(fn, "flip_sign", flip_sign)
    sign = -1 if flip_sign else 1

    def init_fn(params: optax.Params) -> ScaleByLearningRateState:
        return ScaleByLearningRateState(
            jnp.zeros([], jnp.int32), jnp.zeros([], _tree.scalar_dtype(params))
        )

    def update_fn(updates, state, params=None):
        del params
        dtype = state.learning_rate.dtype
        if callable(learning_rate):
            rate = learning_rate(state.count)
            updates = jax.tree.map(lambda g: jnp.array(sign * rate, dtype=g.dtype) * g, updates)
        else:
            # Cast back: an array learning rate must not promote bfloat16 updates to float32.
            updates = jax.tree.map(lambda g: ((sign * learning_rate) * g).astype(g.dtype), updates)
            rate = learning_rate
        recorded = jnp.real(jnp.asarray(rate)).astype(dtype)
        return updates, ScaleByLearningRateState(optax.safe_increment(state.count), recorded)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
