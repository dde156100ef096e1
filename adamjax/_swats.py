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
  corrections :math:`c_k = 1 - \prod_{i \le k} \beta_{2,i}` of :mod:`adamjax._moments`, and the
  SGD momentum uses the current :math:`\beta_{1,k}`.
* **The state keeps** :math:`\Lambda_k = \lambda_k / c_k`, **not** :math:`\lambda_k`. It is
  updated as an EMA of itself with decay :math:`\beta_{2,k} c_{k-1}/c_k` (algebraically
  Algorithm 1's :math:`\lambda_k/c_k`): the first average is :math:`\gamma_1` exactly and a
  constant :math:`\gamma` gives a gap of exactly 0, whereas :math:`\lambda_k / c_k` carries the
  rounding of :math:`c_k` into the test.
* **Storage.** ``mu_dtype`` stores both :math:`m_k` and the SGD momentum, ``nu_dtype``
  :math:`v_k`; each accepts every format of :mod:`adamjax._formats` (a dtype,
  ``adamjax.stochastic_bf16()``, ``adamjax.q8()``, :func:`adamjax.step_from_stored`). The step
  is computed in at least float32 from the decoded moments, as in :func:`adamjax.scale_by_adam`.
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

import functools
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _formats, _piece
from adamjax import _moments as mo
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
    r"""State of scale_by_swats.

    The switching fields (``rate_ema`` to ``switch_learning_rate``, and ``sgd_step_size``) are
    0-d arrays with ``granularity="global"``, and pytrees of 0-d arrays shaped like the params
    (one per leaf) with ``"leaf"``. The structure never depends on the values, so the state is a
    plain, checkpointable pytree of arrays.

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
      last_learning_rate: scalar, the learning rate :math:`\alpha_k` of the latest step (0 before
        the first). Not called ``learning_rate``, so that ``optax.inject_hyperparams``'
        ``learning_rate`` is the only one ``optax.tree_utils.tree_get`` finds.
      sgd_step_size: shaped like ``sgd_rate``, the step size the SGD phase applies to the
        momentum after the latest step: :math:`\Lambda`, times :math:`\alpha_k/\alpha_{k^*}` with
        ``sgd_schedule="relative"``; 0 before the switch.
      last_step: the :class:`~adamjax.StepScalars` of the latest update (recorded in both
        phases): the bias corrections, which a scheduled ``b1``/``b2`` continues from, and the
        placed eps, which diagnostics read.
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
    last_learning_rate: jax.Array
    sgd_step_size: Any
    last_step: mo.StepScalars


class _Switch(NamedTuple):
    """The switching fields of one group (all leaves, or one leaf)."""

    rate_ema: jax.Array
    phase: jax.Array
    switch_step: jax.Array
    sgd_rate: jax.Array
    switch_learning_rate: jax.Array


class _Options(NamedTuple):
    """The validated hyperparameters of one :func:`scale_by_swats`."""

    learning_rate: Any
    b1: Any
    b2: Any
    eps: Any
    eps_root: Any
    eps_mode: str
    switch_tol: Any
    switch_rtol: Any
    granularity: str
    nesterov: bool
    sgd_schedule: str
    mu_dtype: Any
    nu_dtype: Any


# ---- the switch (Algorithm 1, lines 11-17) ----------------------------------------------------


def projected_rate(uu: jax.Array, ug: jax.Array, in_adam: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""Algorithm 1's projection :math:`\gamma_k = p_k^\top p_k / (-p_k^\top g_k)`.

    With the step :math:`u_k = -p_k` this piece returns, ``uu`` is :math:`u_k^\top u_k =
    p_k^\top p_k` and ``ug`` is :math:`u_k^\top g_k = -p_k^\top g_k`.

    Returns:
      ``(projected, gamma)``: whether the step projects (in the Adam phase, ``in_adam``, and
      :math:`p_k^\top g_k \ne 0`) and :math:`\gamma_k` = ``uu / ug`` (``uu`` where it does not).
    """
    projected = in_adam & (ug != 0)
    return projected, uu / jnp.where(projected, ug, 1)


def averaged_rate(
    rate_ema: jax.Array,
    gamma: jax.Array,
    projected: jax.Array,
    in_adam: jax.Array,
    *,
    b2: Any,
    keep: jax.Array,
) -> jax.Array:
    r""":math:`\Lambda_k = \lambda_k / c_k` from :math:`\Lambda_{k-1}` (``rate_ema``).

    Algorithm 1 updates :math:`\lambda_k = \beta_2\lambda_{k-1} + (1-\beta_2)\gamma_k` where the
    step projects and keeps :math:`\lambda_k = \lambda_{k-1}` where it does not; with ``keep`` =
    :math:`c_{k-1}/c_k` (:math:`c_k = 1 - \prod_{i \le k}\beta_{2,i}`) that is an EMA of
    :math:`\Lambda` with decay :math:`\beta_2 c_{k-1}/c_k`, or :math:`\Lambda_{k-1} c_{k-1}/c_k`.
    Frozen in the SGD phase. Returned in ``rate_ema``'s dtype.
    """
    decay = b2 * keep
    averaged = (1 - decay) * gamma + decay * rate_ema
    unprojected = jnp.where(in_adam, rate_ema * keep, rate_ema)
    return jnp.where(projected, averaged, unprojected).astype(rate_ema.dtype)


def switch_test(
    rate_ema: jax.Array,
    gamma: jax.Array,
    projected: jax.Array,
    count: jax.Array,
    switch_tol: Any,
    switch_rtol: Any,
) -> jax.Array:
    r"""Algorithm 1's switching test at step :math:`k` = ``count`` (1-based).

    True where the step projected, :math:`k > 1`, :math:`\Lambda_k > 0` and
    :math:`|\Lambda_k - \gamma_k| < \text{switch\_tol} + \text{switch\_rtol}\,|\gamma_k|`, with
    ``rate_ema`` = :math:`\Lambda_k = \lambda_k/(1-\beta_2^k)` (Algorithm 1 is ``switch_rtol=0``,
    ``switch_tol`` its :math:`\epsilon`).
    """
    gap = jnp.abs(rate_ema - gamma)
    # jnp.real: optax.inject_hyperparams gives complex params complex hyperparameters.
    tol = jnp.real(switch_tol + switch_rtol * jnp.abs(gamma))
    return projected & (count > 1) & (rate_ema > 0) & (gap < tol)


def decide_switch(
    old: _Switch,
    uu: jax.Array,
    ug: jax.Array,
    *,
    count: jax.Array,
    b2: Any,
    keep: jax.Array,
    learning_rate: Any,
    switch_tol: Any,
    switch_rtol: Any,
) -> _Switch:
    """One group's switching fields after step ``count``, from its dot products ``uu``, ``ug``
    (see :func:`projected_rate`). A group that switches records :math:`\\Lambda_k` and
    :math:`\\alpha_k`; the phase that chose this step's update is ``old.phase``."""
    dtype = old.rate_ema.dtype
    uu, ug = uu.astype(dtype), ug.astype(dtype)
    in_adam = old.phase == PHASE_ADAM
    projected, gamma = projected_rate(uu, ug, in_adam)
    mean = averaged_rate(old.rate_ema, gamma, projected, in_adam, b2=b2, keep=keep)
    switch = switch_test(mean, gamma, projected, count, switch_tol, switch_rtol)
    alpha = jnp.real(learning_rate).astype(dtype)
    return _Switch(
        mean,
        jnp.where(switch, PHASE_SGD, old.phase).astype(jnp.int32),
        jnp.where(switch, count, old.switch_step).astype(jnp.int32),
        jnp.where(switch, mean, old.sgd_rate).astype(dtype),
        jnp.where(switch, alpha, old.switch_learning_rate).astype(dtype),
    )


def previous_correction(b2: Any, count: jax.Array, last: mo.StepScalars) -> jax.Array:
    r""":math:`c_{k-1} = 1 - \prod_{i<k} \beta_{2,i}` (0 at :math:`k = 1`), in the dtype of
    ``last`` (the state's ``last_step``): a schedule's running correction as recorded, a
    constant's :math:`1 - \beta_2^{k-1}`."""
    if mo.is_scheduled(b2):
        return last.v_correction
    return 1 - jnp.asarray(b2, last.v_correction.dtype) ** count


def _decide_groups(
    old: _Switch, dots: list[tuple[jax.Array, jax.Array]], granularity: str, **scalars: Any
) -> _Switch:
    """:func:`decide_switch` for the whole tree (``"global"``: the dot products summed over the
    leaves) or for every leaf; ``dots`` holds each leaf's ``(uu, ug)`` in leaf order."""
    decide = functools.partial(decide_switch, **scalars)
    if granularity == "global":
        total = functools.partial(functools.reduce, jnp.add)
        zero = jnp.zeros([], old.rate_ema.dtype)
        return decide(old, total([d[0] for d in dots], zero), total([d[1] for d in dots], zero))
    treedef = jax.tree.structure(old.rate_ema)
    columns = [treedef.flatten_up_to(field) for field in old]
    groups = [
        decide(_Switch(*fields), uu, ug)
        for fields, (uu, ug) in zip(zip(*columns, strict=True), dots, strict=True)
    ]
    return _Switch(*(treedef.unflatten([g[i] for g in groups]) for i in range(len(old))))


# ---- the step of one leaf ---------------------------------------------------------------------


def sgd_step_size(
    sgd_rate: jax.Array, switch_learning_rate: jax.Array, learning_rate: Any, sgd_schedule: str
) -> jax.Array:
    r"""The SGD phase's rate: :math:`\Lambda`, times :math:`\alpha_k/\alpha_{k^*}` with
    ``sgd_schedule="relative"`` (a switch rate of 0, before any switch, counts as 1)."""
    if sgd_schedule != "relative":
        return sgd_rate
    return sgd_rate * (
        learning_rate / jnp.where(switch_learning_rate == 0, 1, switch_learning_rate)
    )


def adam_step(m: jax.Array, nu: jax.Array, step: mo.MomentStep, learning_rate: Any) -> jax.Array:
    r"""The Adam phase's :math:`u_k = \alpha_k \hat m_k / (\sqrt{\hat v_k + \epsilon_{root}} +
    \epsilon)` (eps placed by ``step``) from the new moments :math:`m_k`, :math:`v_k`, in the
    compute dtype."""
    m_hat = mo.corrected(m, step.b1)
    direction = mo.precondition(m_hat, mo.corrected(nu, step.b2), step.eps, step.eps_root)
    return learning_rate * direction


def sgd_step(
    g: jax.Array, buf: jax.Array, b1: Any, step_size: jax.Array, nesterov: bool
) -> jax.Array:
    r"""The SGD phase's :math:`u_k = (1-\beta_1)\,\text{step\_size}\; v_k` from the new
    momentum :math:`v_k = \beta_1 v_{k-1} + g_k` (:math:`g_k + \beta_1 v_k` in place of
    :math:`v_k` with ``nesterov``)."""
    direction = g + b1 * buf if nesterov else buf
    return (1 - b1) * step_size * direction


def _real_dot(a: jax.Array, b: jax.Array) -> jax.Array:
    r""":math:`\mathrm{Re}\sum_i \bar a_i b_i`, elementwise (a TPU dot rounds to bf16)."""
    if jnp.iscomplexobj(a) or jnp.iscomplexobj(b):
        return jnp.sum(jnp.real(a) * jnp.real(b) + jnp.imag(a) * jnp.imag(b))
    return jnp.sum(a * b)


def leaf_update(
    g: jax.Array,
    m: jax.Array,
    nu: jax.Array,
    buf: jax.Array,
    *,
    step: mo.MomentStep,
    learning_rate: Any,
    in_sgd: jax.Array,
    step_size: jax.Array,
    nesterov: bool,
    settle: _formats.Settle,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """One leaf's step in the phase ``in_sgd`` it started in: ``(u, (uu, ug))``, the new
    moments (those of the other phase unchanged) stored by ``settle``, and the Adam step's dot
    products (:func:`projected_rate`, which reads them in the Adam phase only: in the SGD phase
    they are those of the unchanged moments). Arrays in the compute dtype."""
    b1 = step.b1.rate
    m_t, v_t = mo.ema(g, m, b1), mo.ema(mo.squared_magnitude(g), nu, step.b2.rate)
    m, nu, buf = settle(
        jnp.where(in_sgd, m, m_t), jnp.where(in_sgd, nu, v_t), jnp.where(in_sgd, b1 * buf + g, buf)
    )
    u_adam = adam_step(m, nu, step, learning_rate)
    dots = (_real_dot(u_adam, u_adam), _real_dot(u_adam, g))
    return jnp.where(in_sgd, sgd_step(g, buf, b1, step_size, nesterov), u_adam), dots


# ---- the piece --------------------------------------------------------------------------------


def _leaf_phases(
    old: _Switch, o: _Options, learning_rate: Any, updates: Any
) -> tuple[list[jax.Array], list[jax.Array]]:
    """Per leaf, in leaf order: whether it starts this step in the SGD phase, and its SGD step
    size."""
    if o.granularity == "global":
        n = len(jax.tree.leaves(updates))
        size = sgd_step_size(old.sgd_rate, old.switch_learning_rate, learning_rate, o.sgd_schedule)
        return [old.phase == PHASE_SGD] * n, [size] * n
    trees = (old.phase, old.sgd_rate, old.switch_learning_rate)
    fields = zip(*(jax.tree.leaves(tree) for tree in trees), strict=True)
    in_sgd, sizes = [], []
    for phase, rate, switch_lr in fields:
        in_sgd.append(phase == PHASE_SGD)
        sizes.append(sgd_step_size(rate, switch_lr, learning_rate, o.sgd_schedule))
    return in_sgd, sizes


def _step_leaves(
    fn: str,
    o: _Options,
    updates: Any,
    state: ScaleBySwatsState,
    step: mo.MomentStep,
    learning_rate: Any,
    phases: tuple[list[jax.Array], list[jax.Array]],
) -> tuple[Any, list[Any], list[tuple[jax.Array, jax.Array]]]:
    """:func:`leaf_update` on every leaf, through the storage boundary
    (:func:`adamjax._formats.update_leaves`); returns the updates, ``[mu, nu, momentum]`` and
    each leaf's dot products."""
    in_sgd, sizes = phases
    dots: list[tuple[jax.Array, jax.Array]] = []

    def leaf(g, m, nu, buf, *, settle):
        # update_leaves calls this once per leaf, in the order of jax.tree.leaves(updates).
        i = len(dots)
        u, dot = leaf_update(
            g, m, nu, buf, step=step, learning_rate=learning_rate, in_sgd=in_sgd[i],
            step_size=sizes[i], nesterov=o.nesterov, settle=settle,
        )  # fmt: skip
        dots.append(dot)
        return u

    stored = [
        _formats.Stored(state.mu, o.mu_dtype, signed=True),
        _formats.Stored(state.nu, o.nu_dtype, signed=False),
        _formats.Stored(state.momentum, o.mu_dtype, signed=True),
    ]
    updates, (mu, nu, momentum) = _formats.update_leaves(fn, leaf, updates, stored, step.count)
    frozen_adam = in_sgd
    frozen_sgd = [~x for x in in_sgd]
    moments = [
        _keep_stored(mu, state.mu, frozen_adam),
        _keep_stored(nu, state.nu, frozen_adam),
        _keep_stored(momentum, state.momentum, frozen_sgd),
    ]
    return updates, moments, dots


def _keep_stored(new: Any, old: Any, frozen: list[jax.Array]) -> Any:
    """``new`` with the stored leaves of ``old`` (a :class:`~adamjax.QuantizedArray` counts as
    one) kept bit for bit where ``frozen`` (in leaf order). Storing a decoded moment again is
    not always the identity (q8's signed dynamic map shrinks a block whose largest entry is
    negative), and a frozen moment must not drift."""
    treedef = jax.tree.structure(old, is_leaf=_formats.is_quantized)
    kept = [
        jax.tree.map(lambda x, kept, f=f: jnp.where(f, kept, x), n, o)
        for n, o, f in zip(
            treedef.flatten_up_to(new), treedef.flatten_up_to(old), frozen, strict=True
        )
    ]
    return treedef.unflatten(kept)


def _init(fn: str, o: _Options, params: optax.Params) -> ScaleBySwatsState:
    """The state before the first update: zero moments, the Adam phase, no switch."""
    _piece.check_params(fn, params, o.mu_dtype, b1=o.b1, b2=o.b2)
    dtype = _piece.scalar_dtype(params)

    def fields(value: Any, field_dtype: Any) -> Any:
        if o.granularity == "global":
            return jnp.full([], value, field_dtype)
        return jax.tree.map(lambda _: jnp.full([], value, field_dtype), params)

    return ScaleBySwatsState(
        count=jnp.zeros([], jnp.int32),
        mu=_piece.zeros_moment(params, o.mu_dtype, real=False),
        nu=_piece.zeros_moment(params, o.nu_dtype, real=True),
        momentum=_piece.zeros_moment(params, o.mu_dtype, real=False),
        rate_ema=fields(0, dtype),
        phase=fields(PHASE_ADAM, jnp.int32),
        switch_step=fields(-1, jnp.int32),
        sgd_rate=fields(0, dtype),
        switch_learning_rate=fields(0, dtype),
        last_learning_rate=jnp.zeros([], dtype),
        sgd_step_size=fields(0, dtype),
        last_step=mo.StepScalars.initial(dtype),
    )


def _update(
    fn: str, o: _Options, updates: Any, state: ScaleBySwatsState
) -> tuple[Any, ScaleBySwatsState]:
    """One SWATS step: the step's scalars once, every leaf's step in the phase it started in,
    then the switching test on the Adam steps' projections."""
    step = mo.moment_step(o.b1, o.b2, o.eps, o.eps_root, o.eps_mode, state.count, state.last_step)
    lr = mo.rate_at(o.learning_rate, state.count)
    old = _Switch(
        state.rate_ema, state.phase, state.switch_step, state.sgd_rate, state.switch_learning_rate
    )
    phases = _leaf_phases(old, o, lr, updates)
    updates, (mu, nu, momentum), dots = _step_leaves(fn, o, updates, state, step, lr, phases)
    keep = previous_correction(o.b2, state.count, state.last_step) / step.b2.correction
    new = _decide_groups(
        old, dots, o.granularity, count=step.count, b2=step.b2.rate, keep=keep,
        learning_rate=lr, switch_tol=o.switch_tol, switch_rtol=o.switch_rtol,
    )  # fmt: skip
    dtype = state.last_learning_rate.dtype
    lr_t = jnp.real(jnp.asarray(lr)).astype(dtype)
    step_sizes = jax.tree.map(
        lambda rate, switch_lr: sgd_step_size(rate, switch_lr, lr_t, o.sgd_schedule).astype(dtype),
        new.sgd_rate,
        new.switch_learning_rate,
    )
    return updates, ScaleBySwatsState(
        step.count, mu, nu, momentum, *new, lr_t, step_sizes, step.record(dtype)
    )


def _swats_moments(
    fn: str,
    *,
    learning_rate: Any,
    b1: Any,
    b2: Any,
    eps: Any,
    switch_tol: Any,
    granularity: str,
    nesterov: bool,
    switch_rtol: Any,
    eps_root: Any,
    eps_mode: str,
    sgd_schedule: str,
    mu_dtype: Any,
    nu_dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    """:func:`scale_by_swats`, validated under ``fn``, the name of the function the user
    called."""
    v.check_non_negative(fn, "learning_rate", learning_rate, schedule_ok=True)
    _piece.check_moment_options(
        fn, b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    v.check_choice(fn, "eps_mode", eps_mode, mo.EPS_MODES)
    v.check_positive(fn, "switch_tol", switch_tol)
    v.check_non_negative(fn, "switch_rtol", switch_rtol)
    v.check_choice(fn, "granularity", granularity, GRANULARITIES)
    v.check_choice(fn, "sgd_schedule", sgd_schedule, SGD_SCHEDULES)
    v.check_bool(fn, "nesterov", nesterov)
    o = _Options(
        learning_rate, b1, b2, eps, eps_root, eps_mode, switch_tol, switch_rtol, granularity,
        nesterov, sgd_schedule, mu_dtype, nu_dtype,
    )  # fmt: skip

    def init_fn(params: optax.Params) -> ScaleBySwatsState:
        return _init(fn, o, params)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        return _update(fn, o, updates, state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def scale_by_swats(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    switch_tol: float | jax.Array = 1e-9,
    granularity: Granularity = "global",
    nesterov: bool = False,
    *,
    switch_rtol: float | jax.Array = 0.0,
    eps_root: float | jax.Array = 0.0,
    eps_mode: mo.EpsMode = "paper",
    sgd_schedule: SgdSchedule = "relative",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""The SWATS step (Keskar & Socher 2017, Algorithm 1), returned with the gradient's sign.

    Update rule::

        Adam phase, at step k = 1, 2, ...:
            m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*|g|**2
            m_hat = m / (1 - b1**k);  v_hat = v / (1 - b2**k)
            u = learning_rate * m_hat / (sqrt(v_hat + eps_root) + eps)
            gamma = dot(u, u) / dot(u, g)                       (only where dot(u, g) != 0)
            lam = b2*lam + (1-b2)*gamma;  Lambda = lam / (1 - b2**k)
            switch to SGD after this step if k > 1, Lambda > 0 and
                |Lambda - gamma| < switch_tol + switch_rtol * |gamma|
        SGD phase (Lambda as at the switch; the Adam moments frozen):
            buf = b1*buf + g;  u = (1-b1) * Lambda * buf
            sgd_schedule="relative":  Lambda times learning_rate / (learning_rate at the switch)
            nesterov=True:  g + b1*buf in place of buf
        update = u               (the gradient's sign: chain optax.scale(-1.0) to descend)

    The dot products run over all leaves (``granularity="global"``) or over each leaf
    (``"leaf"``, each leaf then switching on its own). The Adam phase, at step :math:`k` with
    gradient :math:`g_k`:

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
    the SWATS page of the documentation for the conventions and how this differs from
    torch-optimizer. The
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
      mu_dtype: storage of ``mu`` and ``momentum``: ``None`` (the params' dtype), a dtype,
        ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of ``nu``, as ``mu_dtype`` (real for complex params).

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
    return _swats_moments(
        "scale_by_swats", learning_rate=learning_rate, b1=b1, b2=b2, eps=eps,
        switch_tol=switch_tol, granularity=granularity, nesterov=nesterov,
        switch_rtol=switch_rtol, eps_root=eps_root, eps_mode=eps_mode,
        sgd_schedule=sgd_schedule, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
    )  # fmt: skip


# ---- diagnostics ------------------------------------------------------------------------------


def _sgd_aware_scale(state: ScaleBySwatsState, phase: jax.Array, switch_step: jax.Array,
                     step_size: jax.Array) -> Any:  # fmt: skip
    """One leaf's effective learning rate as a function of :math:`\\hat v`: the SGD step size
    where the leaf took an SGD step, Adam's :math:`\\alpha_k/(\\sqrt{\\hat v}+\\epsilon)`
    elsewhere."""
    # A leaf that switched in this very step still took an Adam step.
    in_sgd = (phase == PHASE_SGD) & (switch_step < state.count)
    last = state.last_step

    def scale(x: jax.Array) -> jax.Array:
        adam_rate = state.last_learning_rate.astype(x.dtype) * mo.inverse_denominator(x, last)
        return jnp.where(in_sgd, step_size.astype(x.dtype), adam_rate)

    return scale


def _leaf_mode_scalars(state: ScaleBySwatsState) -> dict[str, jax.Array]:
    """``granularity="leaf"``: the earliest switch step (-1 before any) and :math:`\\Lambda`
    averaged over the entries of the switched leaves (0 before any switch)."""
    never = jnp.iinfo(jnp.int32).max
    steps = jax.tree.leaves(state.switch_step)
    first = jnp.min(jnp.stack([jnp.where(s >= 0, s, never) for s in steps]))
    sizes = [m.size for m in jax.tree.leaves(state.mu)]
    rates = jax.tree.leaves(state.sgd_rate)
    weight = sum(jnp.where(s >= 0, n, 0) for s, n in zip(steps, sizes, strict=True))
    total = sum(jnp.where(s >= 0, n * r, 0) for s, n, r in zip(steps, sizes, rates, strict=True))
    return {
        "swats/switch_step": jnp.where(first == never, -1, first),
        "swats/sgd_rate": jnp.where(weight > 0, total / jnp.maximum(weight, 1), 0),
    }


@_piece.register_view(ScaleBySwatsState)
def _swats_view(state: ScaleBySwatsState, grads: Any) -> _piece.View:
    """Adam's view, with the SGD step size for the entries that took an SGD step and the
    ``swats/*`` metrics (``state``'s moments already decoded)."""
    adam = _piece.adam_view(state, grads)
    # granularity="global" keeps one 0-d array per field; "leaf" a tree shaped like the params
    # (for params that are a single array the two coincide and are treated alike).
    global_mode = isinstance(state.phase, jax.Array)

    def per_leaf(field: Any) -> Any:
        return jax.tree.map(lambda _: field, state.mu) if global_mode else field

    phase = per_leaf(state.phase)
    scale_of = jax.tree.map(
        functools.partial(_sgd_aware_scale, state),
        phase,
        per_leaf(state.switch_step),
        per_leaf(state.sgd_step_size),
    )
    in_sgd = jax.tree.map(
        lambda m, ph: jnp.broadcast_to(ph == PHASE_SGD, jnp.shape(m)), state.mu, phase
    )
    if global_mode:
        scalars = {"swats/switch_step": state.switch_step, "swats/sgd_rate": state.sgd_rate}
        leaf_scalars = None
    else:
        scalars = _leaf_mode_scalars(state)
        leaf_scalars = {
            "swats/phase": state.phase,
            "swats/switch_step": state.switch_step,
            "swats/sgd_rate": state.sgd_rate,
        }
    return adam._replace(
        scale_of=scale_of,
        lr_included=True,
        fractions={"swats/phase": in_sgd},
        scalars=scalars,
        leaf_scalars=leaf_scalars,
    )


# ---- the alias --------------------------------------------------------------------------------


def swats(
    learning_rate: _piece.ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    switch_tol: float = 1e-9,
    granularity: Granularity = "global",
    nesterov: bool = False,
    *,
    switch_rtol: float = 0.0,
    eps_root: float = 0.0,
    eps_mode: mo.EpsMode = "paper",
    sgd_schedule: SgdSchedule = "relative",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""SWATS: Adam that switches to SGD with momentum (Keskar & Socher 2017).

    Update rule::

        Adam phase, at step k = 1, 2, ...:
            m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*|g|**2
            a = learning_rate * (m / (1 - b1**k)) / (sqrt(v / (1 - b2**k) + eps_root) + eps)
            update = -a
            switch to SGD after this step if k > 1, Lambda > 0 and
                |Lambda - gamma| < switch_tol + switch_rtol * |gamma|,
            with gamma = dot(a, a) / dot(a, g) and Lambda its bias-corrected EMA (decay b2)
        SGD phase (Lambda as at the switch):
            buf = b1*buf + g;  update = -(1-b1) * Lambda * buf
            sgd_schedule="relative" (default): Lambda times learning_rate / its value at the switch

    .. math::

        \theta_k = \theta_{k-1} - \begin{cases}
            \alpha_k\, \hat m_k / (\sqrt{\hat v_k} + \epsilon) & \text{Adam phase,} \\
            (1-\beta_1)\, \Lambda\, v_k, \quad v_k = \beta_1 v_{k-1} + g_k & \text{SGD phase,}
        \end{cases}

    where the switch happens after the first Adam step :math:`k > 1` whose projected rate
    :math:`\gamma_k` agrees with its bias-corrected running average :math:`\Lambda_k > 0` to
    within ``switch_tol + switch_rtol * |gamma_k|``, and :math:`\Lambda = \Lambda_k`. See
    :func:`scale_by_swats` for the equations and the SWATS page of the documentation for the
    conventions. With
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
      mu_dtype: storage of the first moment and SGD momentum: ``None`` (the params' dtype), a
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()``, each also through
        ``adamjax.step_from_stored``.
      nu_dtype: storage of the second moment, as ``mu_dtype``.

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
    piece = _swats_moments(
        "swats", learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, switch_tol=switch_tol,
        granularity=granularity, nesterov=nesterov, switch_rtol=switch_rtol, eps_root=eps_root,
        eps_mode=eps_mode, sgd_schedule=sgd_schedule, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
    )  # fmt: skip
    return optax.chain(piece, optax.scale(-1.0))
