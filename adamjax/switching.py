r"""SWATS (Keskar & Socher 2017): start with Adam, switch to SGD with momentum when it is safe.

After every Adam step :math:`p_k` the method asks which plain-SGD learning rate would move as far
along the gradient: the projection :math:`\gamma_k = p_k^\top p_k / (-p_k^\top g_k)`. Its
bias-corrected exponential average :math:`\Lambda_k = \lambda_k / (1 - \beta_2^k)` is the SGD
rate the run switches to once the average agrees with the latest projection. One piece,
:func:`scale_by_swats`, and one alias, :func:`swats`.

Conventions (the choices Algorithm 1 leaves open, or where adamjax departs from it):

* **The learning rate lives in the piece.** :math:`\gamma_k` is measured on the step that is
  actually taken, so :func:`scale_by_swats` takes ``learning_rate`` and returns the whole step
  with the sign of the gradient (:math:`-p_k` in the Adam phase); :func:`swats` chains
  ``optax.scale(-1.0)`` after it. Anything chained between the two changes the parameters but not
  :math:`\gamma_k`.
* **eps.** ``eps_mode="paper"`` (default) is Adam's :math:`\hat m/(\sqrt{\hat v}+\epsilon)`;
  ``"hat"`` is :math:`\sqrt{1-\beta_2^k}/(1-\beta_1^k)\cdot m/(\sqrt{v}+\epsilon)`, the form
  torch-optimizer uses. Algorithm 1 writes the second form without any eps in the denominator
  (its :math:`\epsilon = 10^{-9}` is the switching threshold); ``eps=0`` gives that exactly in
  either mode.
* **The switching test** is :math:`k > 1`, :math:`\Lambda_k > 0` and
  :math:`|\Lambda_k - \gamma_k| < \text{switch\_tol} + \text{switch\_rtol}\,|\gamma_k|`.
  Algorithm 1 is ``switch_rtol=0`` with ``switch_tol`` its :math:`\epsilon`; the guard
  :math:`\Lambda_k > 0` (torch-optimizer has it too) keeps a run from switching to an ascent
  rate. An absolute ``switch_tol`` is measured in units of the learning rate (:math:`\gamma_k`
  scales with :math:`\alpha`), so a relative ``switch_rtol`` transfers better between learning
  rates and precisions (see *float32* below). A step with :math:`p_k^\top g_k = 0` (a zero
  gradient, or :math:`\alpha_k = 0` at the start of a warmup) leaves :math:`\lambda` unchanged
  while :math:`1-\beta_2^k` advances, as in Algorithm 1, so :math:`\Lambda_k` is biased low for
  a while after it.
* **Granularity.** ``"global"`` keeps one :math:`\Lambda_k`, phase and :math:`\Lambda` for the
  whole parameter vector (dot products summed over all leaves), as Algorithm 1 is written;
  ``"leaf"`` keeps them per leaf, so every leaf (layer) switches on its own.
* **SGD phase.** :math:`v_k = \beta_1 v_{k-1} + g_k` from :math:`v = 0` at the switch, step
  :math:`(1-\beta_1)\Lambda v_k`, exactly Algorithm 1; the Adam moments and :math:`\lambda` stay
  frozen and the step count keeps running. ``nesterov=True`` steps along
  :math:`g_k + \beta_1 v_k` instead (the look-ahead of ``torch.optim.SGD(nesterov=True)`` and
  ``optax.trace(nesterov=True)``), still scaled by :math:`(1-\beta_1)\Lambda`.
* **Learning-rate schedules after the switch.** Algorithm 1 has a constant :math:`\alpha` and a
  fixed :math:`\Lambda`. Since :math:`\gamma_k` is proportional to :math:`\alpha_k`,
  ``sgd_schedule="relative"`` (default) keeps the schedule's shape in the SGD phase: the rate is
  :math:`\Lambda\,\alpha_k/\alpha_{k^*}` with :math:`k^*` the switch step (this is also what a
  multiplicative torch scheduler does to torch-optimizer's switched ``lr``). ``"fixed"`` keeps
  :math:`\Lambda`. With a constant learning rate both are Algorithm 1 exactly.
* ``b1``/``b2`` may be schedules; the moments and :math:`\Lambda_k` then use the exact bias
  corrections :math:`c_k = 1 - \prod_{i \le k} \beta_{2,i}` of :mod:`adamjax.moments`, and the
  SGD momentum uses the current :math:`\beta_{1,k}`.
* **The state keeps** :math:`\Lambda_k = \lambda_k / c_k`, **not** :math:`\lambda_k`. It is
  updated as an EMA of itself with decay :math:`\beta_{2,k} c_{k-1}/c_k` (algebraically
  Algorithm 1's :math:`\lambda_k/c_k`): the first average is :math:`\gamma_1` exactly and a
  constant :math:`\gamma` gives a gap of exactly 0, whereas :math:`\lambda_k / c_k` carries the
  rounding of :math:`c_k` into the test.
* **float32.** :math:`1-\beta^k` rounded to float32 is off by up to ~1e-5 relative
  (:math:`\beta^k` itself is rounded), so :math:`\hat m_k`, :math:`\hat v_k` and with them
  :math:`\gamma_k` jitter at that level from step to step. The paper's test, 1e-9 absolute at
  :math:`\gamma \approx \alpha = 10^{-3}`, asks for ~1e-6 relative agreement: in float32 it
  passes late or never (a constant gradient, which switches at step 2 in float64, switches a few
  steps later). In float32 use ``switch_rtol`` >= 1e-5, or compute in float64.

Differences from ``torch_optimizer.SWATS`` (0.3.0). With ``eps_mode="hat"``,
``switch_tol=1e-8``, ``switch_rtol=1e-6`` and one parameter tensor, adamjax reproduces its Adam
phase, the step that switches, :math:`\Lambda` and the first SGD step; after that they differ:

1. *SGD momentum.* torch-optimizer multiplies its momentum buffer by :math:`1-\beta_1` in place, so
   from the second SGD step on it runs :math:`b \leftarrow (1-\beta_1)(\beta_1 b + g)`,
   :math:`w \leftarrow w - \Lambda b`: momentum :math:`\beta_1(1-\beta_1)` instead of
   :math:`\beta_1`. adamjax follows Algorithm 1 and has no option for the torch-optimizer form.
2. *Nesterov.* Its ``nesterov=True`` adds :math:`\beta_1 b` to that same aliased buffer (the first
   SGD step becomes :math:`w \leftarrow w - \Lambda g`); adamjax's form is described above.
3. *Granularity.* It keeps :math:`\gamma, \lambda` per parameter tensor but the phase and rate
   per parameter group: the first tensor that passes the test switches the whole group to its
   own :math:`\Lambda`, and the tensors after it in that step already take an SGD step. Neither
   ``"global"`` nor ``"leaf"`` does this for more than one tensor.
4. *Switching test.* ``Tensor.allclose(rtol=1e-6)``, i.e.
   :math:`|\Lambda_k-\gamma_k| \le 10^{-8} + 10^{-6}|\gamma_k|` (non-strict; adamjax's test is
   strict, which matters only on exact equality).
5. *eps and defaults.* eps-hat form with ``eps=1e-3`` and ``lr=1e-3`` by default; adamjax defaults
   to the paper form and ``eps=1e-8``. Its state keeps the raw :math:`\lambda_k`
   (``exp_avg2``), adamjax's the bias-corrected :math:`\Lambda_k`.
6. *Weight decay.* Coupled L2 added to the gradient before everything (including
   :math:`\gamma_k`); ``optax.chain(optax.add_decayed_weights(wd), swats(...))`` is the same.
   AMSGrad is not offered here.
7. *Schedules.* The switched rate is written into ``group["lr"]``, so a ``LambdaLR`` overwrites
   it with the Adam-phase rate while a multiplicative scheduler rescales it; see
   ``sgd_schedule``.

References:
  Keskar & Socher, "Improving Generalization Performance by Switching from Adam to SGD",
  arXiv:1712.07628, 2017, Algorithm 1.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _tree, moments, transform
from adamjax import _validation as v

Granularity = Literal["global", "leaf"]
GRANULARITIES: tuple[str, ...] = ("global", "leaf")
SgdSchedule = Literal["relative", "fixed"]
SGD_SCHEDULES: tuple[str, ...] = ("relative", "fixed")

#: :attr:`ScaleBySwatsState.phase` while the Adam phase runs.
PHASE_ADAM = 0
#: :attr:`ScaleBySwatsState.phase` once the switch to SGD has happened.
PHASE_SGD = 1


class ScaleBySwatsState(NamedTuple):
    r"""State of :func:`scale_by_swats`.

    The switching fields (``rate_ema`` to ``switch_learning_rate``) are 0-d arrays with
    ``granularity="global"``, and pytrees of 0-d arrays shaped like the params (one per leaf) with
    ``"leaf"``. The structure never depends on the values, so the state is a plain, checkpointable
    pytree of arrays.

    Attributes:
      count: int32 scalar, the number of updates applied so far (both phases).
      mu: Adam's first moment :math:`m_k`, in ``mu_dtype``; frozen once its leaf is in the SGD
        phase.
      nu: Adam's raw second moment :math:`v_k` (real), in ``nu_dtype``; frozen likewise.
      momentum: the SGD-phase buffer :math:`v_k` (zero until the switch), in ``mu_dtype``.
      rate_ema: :math:`\Lambda_k = \lambda_k/(1-\beta_2^k)`, the bias-corrected EMA of the
        projected rates :math:`\gamma_k` (the paper's :math:`\lambda_k` times
        :math:`1/(1-\beta_2^k)`), real; frozen in the SGD phase, where it equals ``sgd_rate``.
      phase: int32, :data:`PHASE_ADAM` (0) or :data:`PHASE_SGD` (1).
      switch_step: int32, the step :math:`k^*` (1-based, like ``count``) whose Adam update passed
        the switching test; -1 while in the Adam phase.
      sgd_rate: :math:`\Lambda = \Lambda_{k^*}`, the SGD learning rate estimated at the switch;
        0 before it.
      switch_learning_rate: :math:`\alpha_{k^*}`, the learning rate of the switching step (for
        ``sgd_schedule="relative"``); 0 before the switch.
      b1_correction: when ``b1`` is a schedule, :math:`1 - \prod_{i \le k}\beta_{1,i}`; else
        ``None``.
      b2_correction: the same for ``b2``.
      learning_rate: scalar, the learning rate :math:`\alpha_k` of the latest step (0 before the
        first).
      sgd_step_size: shaped like ``sgd_rate``, the step size the SGD phase applies to the
        momentum after the latest step: :math:`\Lambda`, times :math:`\alpha_k/\alpha_{k^*}` with
        ``sgd_schedule="relative"``; 0 before the switch.
      last_step: the :class:`~adamjax.moments.StepScalars` of the latest Adam-phase computation
        (bias corrections and placed eps), for diagnostics.
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates
    momentum: optax.Updates
    rate_ema: Any
    phase: Any
    switch_step: Any
    sgd_rate: Any
    switch_learning_rate: Any
    b1_correction: jax.Array | None = None
    b2_correction: jax.Array | None = None
    learning_rate: jax.Array | None = None
    sgd_step_size: Any = None
    last_step: moments.StepScalars | None = None


class _Switch(NamedTuple):
    """The switching fields of one group (all leaves, or one leaf)."""

    rate_ema: jax.Array
    phase: jax.Array
    switch_step: jax.Array
    sgd_rate: jax.Array
    switch_learning_rate: jax.Array


def _check_hyperparams(
    fn: str,
    learning_rate: Any,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    switch_tol: Any,
    granularity: Any,
    nesterov: Any,
    switch_rtol: Any,
    eps_mode: Any,
    sgd_schedule: Any,
    mu_dtype: Any,
    nu_dtype: Any,
) -> None:
    v.check_non_negative(fn, "learning_rate", learning_rate, schedule_ok=True)
    v.check_moment_hyperparams(
        fn, b1, b2, eps, eps_root, eps_mode, mu_dtype, nu_dtype, formats_ok=False
    )
    v.check_positive(fn, "switch_tol", switch_tol)
    v.check_non_negative(fn, "switch_rtol", switch_rtol)
    v.check_choice(fn, "granularity", granularity, GRANULARITIES)
    v.check_choice(fn, "sgd_schedule", sgd_schedule, SGD_SCHEDULES)
    v.check_bool(fn, "nesterov", nesterov)


def _previous_correction(b2: Any, state: ScaleBySwatsState, dtype: Any) -> jax.Array:
    r"""Returns the previous step's :math:`c_{k-1} = 1 - \prod_{i<k} \beta_{2,i}` (0 at k=1)."""
    if moments.is_scheduled(b2):
        return state.b2_correction.astype(dtype)
    return moments.bias_correction(b2, state.count, dtype)


def _real_dot(a: jax.Array, b: jax.Array) -> jax.Array:
    r"""Returns :math:`\mathrm{Re}\sum_i \bar a_i b_i`, elementwise (a TPU dot rounds to bf16)."""
    if jnp.iscomplexobj(a) or jnp.iscomplexobj(b):
        return jnp.sum(jnp.real(a) * jnp.real(b) + jnp.imag(a) * jnp.imag(b))
    return jnp.sum(a * b)


def scale_by_swats(
    learning_rate: transform.ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    switch_tol: float | jax.Array = 1e-9,
    granularity: Granularity = "global",
    nesterov: bool = False,
    *,
    switch_rtol: float | jax.Array = 0.0,
    eps_root: float | jax.Array = 0.0,
    eps_mode: moments.EpsMode = "paper",
    sgd_schedule: SgdSchedule = "relative",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""The SWATS step (Keskar & Socher 2017, Algorithm 1), returned with the gradient's sign.

    Adam phase, at step :math:`k` with gradient :math:`g_k`:

    .. math::

        u_k &= \alpha_k\, \hat m_k / (\sqrt{\hat v_k} + \epsilon), \qquad
        \gamma_k = \frac{u_k^\top u_k}{u_k^\top g_k} \quad (\text{if } u_k^\top g_k \ne 0), \\
        \lambda_k &= \beta_2 \lambda_{k-1} + (1-\beta_2)\gamma_k, \qquad
        \Lambda_k = \lambda_k / (1-\beta_2^k),

    (:math:`u_k = -p_k`, the paper's step with the sign of the gradient). After the step, switch
    when :math:`k > 1`, :math:`\Lambda_k > 0` and
    :math:`|\Lambda_k - \gamma_k| < \text{switch\_tol} + \text{switch\_rtol}\,|\gamma_k|`; then
    :math:`\Lambda = \Lambda_k`. SGD phase, from :math:`v = 0`:

    .. math::

        v_k = \beta_1 v_{k-1} + g_k, \qquad u_k = (1-\beta_1)\, \Lambda\, v_k

    (:math:`g_k + \beta_1 v_k` in place of :math:`v_k` with ``nesterov``; :math:`\Lambda` times
    :math:`\alpha_k/\alpha_{k^*}` with ``sgd_schedule="relative"``). See
    :mod:`adamjax.switching` for the conventions and how this differs from torch-optimizer. The
    decision is taken with ``jnp.where``: both phases' steps are computed every step, and nothing
    branches on values.

    Args:
      learning_rate: :math:`\alpha_k` of the Adam phase, a number >= 0 or an optax schedule.
      b1: decay of the first moment and SGD momentum, in [0, 1).
      b2: decay of the second moment and of :math:`\lambda`, in [0, 1).
      eps: Adam's eps, >= 0 (see ``eps_mode``).
      switch_tol: absolute tolerance of the switching test, a finite number > 0 (the paper's
        :math:`\epsilon = 10^{-9}`).
      granularity: ``"global"`` (one switch for all leaves) or ``"leaf"`` (one per leaf).
      nesterov: Nesterov look-ahead in the SGD phase.
      switch_rtol: relative tolerance of the switching test, >= 0 (torch-optimizer: 1e-6, with
        ``switch_tol=1e-8``).
      eps_root: added to the second moment inside the square root, >= 0 (0 in the paper).
        Make it positive to differentiate through the update: the square root's derivative at
        a zero second moment is infinite.
      eps_mode: ``"paper"`` or ``"hat"``, as in :func:`adamjax.scale_by_adam`.
      sgd_schedule: ``"relative"`` or ``"fixed"``: whether the learning rate's change since the
        switch rescales :math:`\Lambda`.
      mu_dtype: storage dtype of ``mu`` and ``momentum``; ``None`` follows the params.
      nu_dtype: storage dtype of ``nu``; ``None`` follows the params.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with state :class:`ScaleBySwatsState`. Its
      updates are the full steps with the sign of the gradient, in the gradients' dtype;
      arithmetic runs in at least float32. Chain ``optax.scale(-1.0)`` to descend.

    References:
      Keskar & Socher, "Improving Generalization Performance by Switching from Adam to SGD",
      arXiv:1712.07628, 2017.

    Example:
      >>> tx = optax.chain(adamjax.scale_by_swats(1e-3), optax.scale(-1.0))
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> phase, sgd_rate = state[0].phase, state[0].sgd_rate  # 0 = Adam; rate 0 until switched
    """
    fn = "scale_by_swats"
    _check_hyperparams(
        fn,
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        switch_tol,
        granularity,
        nesterov,
        switch_rtol,
        eps_mode,
        sgd_schedule,
        mu_dtype,
        nu_dtype,
    )

    def init_fn(params: optax.Params) -> ScaleBySwatsState:
        v.check_params(fn, params)
        dtype = _tree.scalar_dtype(params)

        def fields(value: Any, field_dtype: Any) -> Any:
            if granularity == "global":
                return jnp.full([], value, field_dtype)
            return jax.tree.map(lambda _: jnp.full([], value, field_dtype), params)

        return ScaleBySwatsState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_moment(params, mu_dtype, real=False),
            nu=_tree.zeros_moment(params, nu_dtype, real=True),
            momentum=_tree.zeros_moment(params, mu_dtype, real=False),
            rate_ema=fields(0, dtype),
            phase=fields(PHASE_ADAM, jnp.int32),
            switch_step=fields(-1, jnp.int32),
            sgd_rate=fields(0, dtype),
            switch_learning_rate=fields(0, dtype),
            b1_correction=moments.init_correction(b1, dtype),
            b2_correction=moments.init_correction(b2, dtype),
            learning_rate=jnp.zeros([], dtype),
            sgd_step_size=fields(0, dtype),
            last_step=moments.initial_step_scalars(dtype),
        )

    def sgd_step_size(sgd_rate: jax.Array, switch_lr: jax.Array, lr: Any) -> jax.Array:
        if sgd_schedule != "relative":
            return sgd_rate
        return sgd_rate * (lr / jnp.where(switch_lr == 0, 1, switch_lr))

    def update_fn(updates, state, params=None):
        del params
        v.check_tree_match(fn, updates, state.mu)
        d1, d2, _ = transform._step_decays(b1, b2, state, False)
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate

        def adam_leaf(g, m, nu):
            g, m_t, v_t = moments.update_moments(g, m, nu, d1.rate, d2.rate)
            m_hat = moments.first_moment_estimate(m_t, g, d1)
            v_hat = d2.corrected(v_t)
            d = moments.direction(m_hat, v_hat, d2, eps=eps, eps_root=eps_root, eps_mode=eps_mode)
            u = lr * d
            return g, m_t, v_t, u, _real_dot(u, u), _real_dot(u, g)

        g, m_t, v_t, u_adam, uu, ug = _tree.map_unzip(adam_leaf, 6, updates, state.mu, state.nu)

        def decide(mean, phase, switch_step, sgd_rate, switch_lr, uu, ug) -> _Switch:
            dtype = mean.dtype
            uu, ug = uu.astype(dtype), ug.astype(dtype)
            in_adam = phase == PHASE_ADAM
            projected = in_adam & (ug != 0)
            gamma = uu / jnp.where(projected, ug, 1)
            # mean is lambda_k / c_k with c_k = 1 - beta2^k. Without a projection lambda_k stays
            # put, so the mean scales by c_{k-1}/c_k; with one, lambda_k's EMA becomes an EMA of
            # the mean with decay beta2 c_{k-1}/c_k (0 at k=1, so the first mean is gamma_1).
            keep = _previous_correction(b2, state, dtype) / d2.bias_correction(dtype)
            mean = jnp.where(
                projected,
                moments.ema(gamma, mean, d2.rate * keep),
                jnp.where(in_adam, mean * keep, mean),
            ).astype(dtype)
            gap = jnp.abs(mean - gamma)
            switch = projected & (d1.count > 1) & (mean > 0)
            # jnp.real: optax.inject_hyperparams gives complex params complex hyperparameters.
            tol = jnp.real(switch_tol + switch_rtol * jnp.abs(gamma))
            switch = switch & (gap < tol)
            return _Switch(
                mean,
                jnp.where(switch, PHASE_SGD, phase).astype(jnp.int32),
                jnp.where(switch, d1.count, switch_step).astype(jnp.int32),
                jnp.where(switch, mean, sgd_rate).astype(dtype),
                jnp.where(switch, jnp.real(lr).astype(dtype), switch_lr).astype(dtype),
            )

        old = _Switch(
            state.rate_ema,
            state.phase,
            state.switch_step,
            state.sgd_rate,
            state.switch_learning_rate,
        )
        if granularity == "global":
            total = functools.partial(functools.reduce, jnp.add)
            zero = jnp.zeros([], state.rate_ema.dtype)
            new = decide(*old, total(jax.tree.leaves(uu), zero), total(jax.tree.leaves(ug), zero))
            # The step is chosen by the phase at the start of the step, for every leaf.
            per_leaf = _Switch(*(jax.tree.map(lambda _, f=f: f, updates) for f in old))
        else:
            new = _Switch(*_tree.map_unzip(decide, 5, state.rate_ema, *old[1:], uu, ug))
            per_leaf = old

        def step_leaf(g_raw, g, m, nu, m_t, v_t, u_adam, buf, phase, sgd_rate, switch_lr):
            in_sgd = phase == PHASE_SGD
            buf_t = d1.rate * buf.astype(g.dtype) + g
            direction = g + d1.rate * buf_t if nesterov else buf_t
            rate = sgd_step_size(sgd_rate, switch_lr, lr)
            u = jnp.where(in_sgd, (1 - d1.rate) * rate * direction, u_adam)
            return (
                u.astype(g_raw.dtype),
                jnp.where(in_sgd, m, m_t.astype(m.dtype)),
                jnp.where(in_sgd, nu, v_t.astype(nu.dtype)),
                jnp.where(in_sgd, buf_t.astype(buf.dtype), buf),
            )

        updates, mu, nu, momentum = _tree.map_unzip(
            step_leaf,
            4,
            updates,
            g,
            state.mu,
            state.nu,
            m_t,
            v_t,
            u_adam,
            state.momentum,
            per_leaf.phase,
            per_leaf.sgd_rate,
            per_leaf.switch_learning_rate,
        )
        dtype = state.learning_rate.dtype
        lr_t = jnp.real(jnp.asarray(lr)).astype(dtype)
        step_sizes = jax.tree.map(
            lambda rate, switch_lr: sgd_step_size(rate, switch_lr, lr_t).astype(dtype),
            new.sgd_rate,
            new.switch_learning_rate,
        )
        last = transform._record(d1, d2, eps, eps_root, eps_mode, state)
        return updates, ScaleBySwatsState(
            d1.count,
            mu,
            nu,
            momentum,
            *new,
            d1.correction,
            d2.correction,
            lr_t,
            step_sizes,
            last,
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def swats(
    learning_rate: transform.ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    switch_tol: float = 1e-9,
    granularity: Granularity = "global",
    nesterov: bool = False,
    *,
    switch_rtol: float = 0.0,
    eps_root: float = 0.0,
    eps_mode: moments.EpsMode = "paper",
    sgd_schedule: SgdSchedule = "relative",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""SWATS: Adam that switches to SGD with momentum (Keskar & Socher 2017).

    .. math::

        \theta_k = \theta_{k-1} - \begin{cases}
            \alpha_k\, \hat m_k / (\sqrt{\hat v_k} + \epsilon) & \text{Adam phase,} \\
            (1-\beta_1)\, \Lambda\, v_k, \quad v_k = \beta_1 v_{k-1} + g_k & \text{SGD phase,}
        \end{cases}

    where the switch happens after the first Adam step :math:`k > 1` whose projected rate
    :math:`\gamma_k` agrees with its bias-corrected running average :math:`\Lambda_k > 0` to
    within ``switch_tol + switch_rtol * |gamma_k|``, and :math:`\Lambda = \Lambda_k`. See
    :func:`scale_by_swats` for the equations and :mod:`adamjax.switching` for the conventions. With
    ``eps_mode="hat"``, ``switch_tol=1e-8`` and ``switch_rtol=1e-6`` the Adam phase, the switch
    and :math:`\Lambda` are those of ``torch_optimizer.SWATS`` on a single tensor; its SGD phase
    differs (see the module documentation).

    Args:
      learning_rate: :math:`\alpha_k`, a number >= 0 or an optax schedule.
      b1: decay of the first moment and SGD momentum, in [0, 1).
      b2: decay of the second moment and of the rate average, in [0, 1).
      eps: Adam's eps, >= 0.
      switch_tol: absolute tolerance of the switching test, > 0 (the paper's :math:`\epsilon`).
      granularity: ``"global"`` (one switch for all parameters, the paper) or ``"leaf"`` (each
        leaf switches on its own).
      nesterov: Nesterov look-ahead in the SGD phase.
      switch_rtol: relative tolerance of the switching test, >= 0.
      eps_root: added to the second moment inside the square root, >= 0 (see
        :func:`scale_by_swats`).
      eps_mode: ``"paper"`` (torch.optim/optax Adam) or ``"hat"`` (torch-optimizer's SWATS).
      sgd_schedule: ``"relative"`` (the SGD rate follows the learning rate's changes since the
        switch) or ``"fixed"`` (the paper's constant :math:`\Lambda`).
      mu_dtype: storage dtype of the first moment and SGD momentum; ``None`` follows the params.
      nu_dtype: storage dtype of the second moment; ``None`` follows the params.

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_swats, scale(-1))``. The
      phase, switch step and :math:`\Lambda` are in ``state[0]`` (:class:`ScaleBySwatsState`).

    References:
      Keskar & Socher, "Improving Generalization Performance by Switching from Adam to SGD",
      arXiv:1712.07628, 2017.

    Example:
      >>> tx = adamjax.swats(learning_rate=1e-3)
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> params = optax.apply_updates(params, updates)
    """
    _check_hyperparams(
        "swats",
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        switch_tol,
        granularity,
        nesterov,
        switch_rtol,
        eps_mode,
        sgd_schedule,
        mu_dtype,
        nu_dtype,
    )
    return optax.chain(
        scale_by_swats(
            learning_rate,
            b1,
            b2,
            eps,
            switch_tol,
            granularity,
            nesterov,
            switch_rtol=switch_rtol,
            eps_root=eps_root,
            eps_mode=eps_mode,
            sgd_schedule=sgd_schedule,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        optax.scale(-1.0),
    )
