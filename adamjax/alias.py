r"""The aliases ``adam``, ``adamw``, ``amsgrad``, ``nadam``, ``adamax``, ``radam``: optax chains.

The aliases add no maths: they validate their arguments (so errors name the alias the user called)
and chain :mod:`adamjax.transform` pieces with :func:`adamjax.scale_by_learning_rate` (optax's
scaling, which also records the learning rate in its state).

Every alias spells its arguments like optax; ``learning_rate`` is a number or an optax schedule.
Keyword-only options choose the convention of the library you compare against:

==========================  =============================  ==================================
option                      value                          matches
==========================  =============================  ==================================
``eps_mode``                ``"paper"`` (default)          torch.optim, optax
\                           ``"hat"``                      Keras 3, TensorFlow (eps=1e-7)
``max_of``                  ``"raw"`` (default)            ``torch.optim.Adam(amsgrad=True)``,
                                                           Keras 3
\                           ``"corrected"``                ``optax.amsgrad``
``weight_decay_scaling``    ``"learning_rate"`` (default)  ``torch.optim.AdamW``,
                                                           ``optax.adamw``, Keras 3 ``AdamW``
\                           ``"schedule"``                 Loshchilov & Hutter (2019)
``nesterov``                ``True``                       ``optax.nadam``
==========================  =============================  ==================================
"""

from __future__ import annotations

from typing import Any, Literal

import optax

from adamjax import _validation as v
from adamjax import moments, transform

WeightDecayScaling = Literal["learning_rate", "schedule"]
WEIGHT_DECAY_SCALINGS: tuple[str, ...] = ("learning_rate", "schedule")


def _scale_by_moments(
    fn: str,
    b1: Any,
    b2: Any,
    eps: Any,
    eps_root: Any,
    nesterov: bool,
    amsgrad: bool,
    max_of: str,
    eps_mode: str,
    mu_dtype: Any,
    nu_dtype: Any,
) -> optax.GradientTransformationExtraArgs:
    """Validates the moment options under the alias' name and returns the moment piece."""
    v.check_moment_hyperparams(fn, b1, b2, eps, eps_root, eps_mode, mu_dtype, nu_dtype)
    v.check_bool(fn, "nesterov", nesterov)
    v.check_bool(fn, "amsgrad", amsgrad)
    v.check_choice(fn, "max_of", max_of, moments.MAX_OF)
    kwargs = dict(nesterov=nesterov, eps_mode=eps_mode, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    if amsgrad:
        return transform.scale_by_amsgrad(b1, b2, eps, eps_root, max_of=max_of, **kwargs)
    return transform.scale_by_adam(b1, b2, eps, eps_root, **kwargs)


def adam(
    learning_rate: transform.ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    *,
    nesterov: bool = False,
    amsgrad: bool = False,
    max_of: moments.MaxOf = "raw",
    eps_mode: moments.EpsMode = "paper",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Adam (Kingma & Ba 2015): :func:`~adamjax.scale_by_adam` then the learning rate.

    .. math::

        \theta_t = \theta_{t-1} - \eta_t\, \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)

    With the defaults this is ``optax.adam`` and ``torch.optim.Adam``. ``eps_mode="hat"`` with
    ``eps=1e-7`` is ``keras.optimizers.Adam``; ``nesterov=True`` is ``optax.nadam``;
    ``amsgrad=True`` chains :func:`~adamjax.scale_by_amsgrad` instead (see :func:`amsgrad`).

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      nesterov: Dozat's Nesterov look-ahead, as in ``optax.nadam``.
      amsgrad: keep a running maximum of the second moment.
      max_of: with ``amsgrad``: ``"raw"`` (torch, Keras) or ``"corrected"`` (optax).
      eps_mode: ``"paper"`` (torch, optax) or ``"hat"`` (Keras, TensorFlow).
      mu_dtype: storage of the first moment; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).
      nu_dtype: storage of the second moment(s); ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_adam | scale_by_amsgrad,
      scale_by_learning_rate)``.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.

    Example:
      >>> tx = adamjax.adam(learning_rate=1e-3)
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "adam"
    v.check_non_negative(fn, "learning_rate", learning_rate, schedule_ok=True)
    return optax.chain(
        _scale_by_moments(
            fn, b1, b2, eps, eps_root, nesterov, amsgrad, max_of, eps_mode, mu_dtype, nu_dtype
        ),
        transform.scale_by_learning_rate(learning_rate),
    )


def _decoupled_chain(
    fn: str,
    moment_piece: optax.GradientTransformationExtraArgs,
    learning_rate: Any,
    weight_decay: Any,
    mask: Any,
    weight_decay_scaling: str,
    schedule_multiplier: Any,
) -> optax.GradientTransformationExtraArgs:
    """Chains a moment piece with decoupled weight decay under either scaling convention."""
    v.check_non_negative(fn, "learning_rate", learning_rate, schedule_ok=True)
    v.check_non_negative(fn, "weight_decay", weight_decay, schedule_ok=True)
    v.check_choice(fn, "weight_decay_scaling", weight_decay_scaling, WEIGHT_DECAY_SCALINGS)
    decay = transform.masked_decay(fn, weight_decay, mask)
    if weight_decay_scaling == "learning_rate":
        if schedule_multiplier is not None:
            raise ValueError(
                f"{fn}: schedule_multiplier is only used with weight_decay_scaling='schedule', "
                f"got {schedule_multiplier!r}; with 'learning_rate', put the schedule in "
                "learning_rate."
            )
        return optax.chain(moment_piece, decay, transform.scale_by_learning_rate(learning_rate))
    if callable(learning_rate):
        raise ValueError(
            f"{fn}: with weight_decay_scaling='schedule', learning_rate is the base rate alpha and "
            f"must be a number, got the schedule {learning_rate!r}; pass the schedule's shape as "
            "schedule_multiplier (e.g. optax.cosine_decay_schedule(1.0, steps))."
        )
    multiplier = 1.0 if schedule_multiplier is None else schedule_multiplier
    v.check_non_negative(fn, "schedule_multiplier", multiplier, schedule_ok=True)
    return optax.chain(
        moment_piece,
        transform.scale_by_learning_rate(learning_rate, flip_sign=False),
        decay,
        transform.scale_by_learning_rate(multiplier),
    )


def adamw(
    learning_rate: transform.ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: transform.ScalarOrSchedule = 1e-4,
    mask: Any | None = None,
    *,
    weight_decay_scaling: WeightDecayScaling = "learning_rate",
    schedule_multiplier: transform.ScalarOrSchedule | None = None,
    nesterov: bool = False,
    amsgrad: bool = False,
    max_of: moments.MaxOf = "raw",
    eps_mode: moments.EpsMode = "paper",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    Two conventions scale the decay differently:

    * ``weight_decay_scaling="learning_rate"`` (default; ``torch.optim.AdamW``, ``optax.adamw``,
      Keras 3 ``AdamW``): the decay is multiplied by the learning rate,

      .. math:: \theta_t = \theta_{t-1} - \eta_t \left(\hat m_t/(\sqrt{\hat v_t} + \epsilon)
                + \lambda \theta_{t-1}\right).

    * ``weight_decay_scaling="schedule"`` (the paper's Algorithm 2): ``learning_rate`` is the base
      rate :math:`\alpha` (a number) and the decay is scaled only by the schedule multiplier
      :math:`s_t` (``schedule_multiplier``, default 1), not by :math:`\alpha`,

      .. math:: \theta_t = \theta_{t-1} - s_t \left(\alpha\, \hat m_t/(\sqrt{\hat v_t} + \epsilon)
                + \lambda \theta_{t-1}\right).

      With a constant rate this equals the default form with ``weight_decay``
      :math:`\lambda/\alpha`.

    Args:
      learning_rate: :math:`\eta_t` (a number >= 0 or a schedule); with ``"schedule"`` scaling,
        the base rate :math:`\alpha` (a number).
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      weight_decay: :math:`\lambda`, a number >= 0 or a schedule.
      mask: which leaves to decay: a pytree of bools or a callable on the params (see
        :func:`~adamjax.add_decayed_weights`).
      weight_decay_scaling: ``"learning_rate"`` or ``"schedule"``, see above.
      schedule_multiplier: :math:`s_t` for ``"schedule"`` scaling, a number or a schedule.
      nesterov: Dozat's Nesterov look-ahead, as in ``optax.nadam``.
      amsgrad: keep a running maximum of the second moment.
      max_of: with ``amsgrad``: ``"raw"`` (torch, Keras) or ``"corrected"`` (optax).
      eps_mode: ``"paper"`` (torch, optax) or ``"hat"`` (Keras ``AdamW``, with eps=1e-7).
      mu_dtype: storage of the first moment; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).
      nu_dtype: storage of the second moment(s); ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_adam | scale_by_amsgrad,
      add_decayed_weights, scale_by_learning_rate)``; with ``"schedule"`` scaling the base rate is
      applied before the decay and the multiplier after it. ``update`` needs ``params``.

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.

    Example:
      >>> tx = adamjax.adamw(learning_rate=1e-3, weight_decay=1e-2)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "adamw"
    return _decoupled_chain(
        fn,
        _scale_by_moments(
            fn, b1, b2, eps, eps_root, nesterov, amsgrad, max_of, eps_mode, mu_dtype, nu_dtype
        ),
        learning_rate,
        weight_decay,
        mask,
        weight_decay_scaling,
        schedule_multiplier,
    )


def amsgrad(
    learning_rate: transform.ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: transform.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
    *,
    max_of: moments.MaxOf = "raw",
    weight_decay_scaling: WeightDecayScaling = "learning_rate",
    schedule_multiplier: transform.ScalarOrSchedule | None = None,
    nesterov: bool = False,
    eps_mode: moments.EpsMode = "paper",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""AMSGrad (Reddi et al. 2018): max-v moment scaling, optional decay, learning rate.

    With ``weight_decay=0`` (default) this computes exactly ``adam(amsgrad=True)``; with a positive
    ``weight_decay`` it is ``adamw(amsgrad=True)``. The default ``max_of="raw"`` is
    ``torch.optim.Adam(amsgrad=True)`` (and Keras 3 with ``eps_mode="hat"``, ``eps=1e-7``);
    ``max_of="corrected"`` is ``optax.amsgrad``.

    .. math::

        v^{max}_t = \max(v^{max}_{t-1}, v_t), \qquad
        \theta_t = \theta_{t-1} - \eta_t \left(\frac{\hat m_t}{\sqrt{v^{max}_t/(1-\beta_2^t)}
        + \epsilon} + \lambda\theta_{t-1}\right)

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the denominator outside the square root, >= 0.
      eps_root: added inside the square root, >= 0.
      weight_decay: decoupled decay :math:`\lambda` (see :func:`adamw`), a number >= 0 or a
        schedule. ``update`` needs ``params`` unless it is the constant 0.
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      max_of: ``"raw"`` (torch, Keras) or ``"corrected"`` (optax).
      weight_decay_scaling: ``"learning_rate"`` or ``"schedule"``, see :func:`adamw`.
      schedule_multiplier: the schedule multiplier for ``"schedule"`` scaling.
      nesterov: Dozat's Nesterov look-ahead of the first moment.
      eps_mode: ``"paper"`` (torch, optax) or ``"hat"`` (Keras, TensorFlow).
      mu_dtype: storage of the first moment; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).
      nu_dtype: storage of ``nu`` and ``nu_max``; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).

    Returns:
      An ``optax.GradientTransformationExtraArgs``: ``chain(scale_by_amsgrad,
      add_decayed_weights, scale_by_learning_rate)``.

    References:
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.

    Example:
      >>> tx = adamjax.amsgrad(learning_rate=1e-3)
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "amsgrad"
    return _decoupled_chain(
        fn,
        _scale_by_moments(
            fn, b1, b2, eps, eps_root, nesterov, True, max_of, eps_mode, mu_dtype, nu_dtype
        ),
        learning_rate,
        weight_decay,
        mask,
        weight_decay_scaling,
        schedule_multiplier,
    )


def _with_weight_decay(
    fn: str,
    moment_piece: optax.GradientTransformationExtraArgs,
    learning_rate: Any,
    weight_decay: Any,
    decoupled_weight_decay: bool,
    mask: Any,
) -> optax.GradientTransformationExtraArgs:
    """Chains a moment piece with torch-style weight decay, coupled (L2) or decoupled."""
    v.check_bool(fn, "decoupled_weight_decay", decoupled_weight_decay)
    if decoupled_weight_decay:
        return _decoupled_chain(
            fn, moment_piece, learning_rate, weight_decay, mask, "learning_rate", None
        )
    v.check_non_negative(fn, "learning_rate", learning_rate, schedule_ok=True)
    v.check_non_negative(fn, "weight_decay", weight_decay, schedule_ok=True)
    # L2 regularisation: lambda * theta joins the gradient before the moments see it.
    return optax.chain(
        transform.masked_decay(fn, weight_decay, mask),
        moment_piece,
        transform.scale_by_learning_rate(learning_rate),
    )


def nadam(
    learning_rate: transform.ScalarOrSchedule = 2e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.999,
    eps: float = 1e-8,
    momentum_decay: float = 4e-3,
    weight_decay: transform.ScalarOrSchedule = 0.0,
    decoupled_weight_decay: bool = False,
    mask: Any | None = None,
    *,
    eps_root: float = 0.0,
    eps_mode: moments.EpsMode = "paper",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""NAdam as ``torch.optim.NAdam``: Adam with Dozat's Nesterov momentum schedule.

    .. math::

        \mu_t = \beta_1 (1 - \tfrac12 \cdot 0.96^{t\psi}), \qquad
        \theta_t = \theta_{t-1} - \eta_t \left(\frac{\mu_{t+1} m_t}{1 - \prod_{i\le t+1}\mu_i}
        + \frac{(1-\mu_t) g_t}{1 - \prod_{i\le t}\mu_i}\right) \Big/
        \left(\sqrt{v_t / (1-\beta_2^t)} + \epsilon\right)

    (see :func:`~adamjax.scale_by_nadam`). This is *not* ``optax.nadam``, which uses the constant
    :math:`\mu_t = \beta_1`; that form is ``adamjax.adam(nesterov=True)``. Keras 3's ``Nadam``
    raises 0.96 to the power :math:`t` (no :math:`\psi`): ``momentum_decay=1.0, eps=1e-7``
    reproduces it.

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: :math:`\beta_1`, in [0, 1), or a schedule.
      b2: :math:`\beta_2`, in [0, 1), or a schedule.
      eps: added to the denominator, >= 0.
      momentum_decay: :math:`\psi` of the momentum schedule, >= 0.
      weight_decay: :math:`\lambda`, a number >= 0 or a schedule.
      decoupled_weight_decay: ``False`` (torch's default): L2, :math:`g_t + \lambda\theta_{t-1}`
        enters the moments; ``True``: decoupled, :math:`\theta \leftarrow \theta -
        \eta_t\lambda\theta` (NAdamW).
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      eps_root: added inside the square root, >= 0.
      eps_mode: ``"paper"`` (torch) or ``"hat"``.
      mu_dtype: storage of the first moment; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).
      nu_dtype: storage of the second moment; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).

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
    v.check_moment_hyperparams(fn, b1, b2, eps, eps_root, eps_mode, mu_dtype, nu_dtype)
    v.check_non_negative(fn, "momentum_decay", momentum_decay)
    piece = transform.scale_by_nadam(
        b1, b2, eps, eps_root, momentum_decay, eps_mode=eps_mode, mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )  # fmt: skip
    return _with_weight_decay(fn, piece, learning_rate, weight_decay, decoupled_weight_decay, mask)


def adamax(
    learning_rate: transform.ScalarOrSchedule = 2e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float | optax.Schedule = 0.999,
    eps: float = 1e-8,
    weight_decay: transform.ScalarOrSchedule = 0.0,
    decoupled_weight_decay: bool = False,
    mask: Any | None = None,
    *,
    eps_mode: str = "max",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Adamax (Kingma & Ba 2015, §7.1): Adam with the infinity norm as second moment.

    .. math::

        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \qquad
        \theta_t = \theta_{t-1} - \frac{\eta_t}{1-\beta_1^t} \frac{m_t}{u_t}

    With the defaults this is ``torch.optim.Adamax`` and ``optax.adamax``, which both put eps
    inside the max; ``eps_mode="denominator"`` with ``eps=1e-7`` is Keras 3 ``Adamax``, which
    divides by :math:`u_t + \epsilon` instead (see :func:`~adamjax.scale_by_adamax`).

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
      mu_dtype: storage of the first moment; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).
      nu_dtype: storage of the infinity norm; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` chaining :func:`~adamjax.scale_by_adamax` with
      the weight decay and the learning rate, as in :func:`nadam`.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, §7.1.

    Example:
      >>> tx = adamjax.adamax(learning_rate=2e-3)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "adamax"
    v.check_moment_hyperparams(fn, b1, b2, eps, 0.0, "paper", mu_dtype, nu_dtype)
    v.check_choice(fn, "eps_mode", eps_mode, transform.ADAMAX_EPS_MODES)
    piece = transform.scale_by_adamax(
        b1, b2, eps, eps_mode=eps_mode, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )
    return _with_weight_decay(fn, piece, learning_rate, weight_decay, decoupled_weight_decay, mask)


def radam(
    learning_rate: transform.ScalarOrSchedule = 1e-3,
    b1: float | optax.Schedule = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    weight_decay: transform.ScalarOrSchedule = 0.0,
    decoupled_weight_decay: bool = False,
    mask: Any | None = None,
    *,
    eps_mode: moments.EpsMode = "hat",
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""RAdam (Liu et al. 2020): Adam with a rectified adaptive learning rate.

    .. math::

        \theta_t = \theta_{t-1} - \eta_t \begin{cases}
        r_t\, \hat m_t \sqrt{1-\beta_2^t} / (\sqrt{v_t} + \epsilon) & \rho_t > \text{threshold}
        \\ \hat m_t & \text{otherwise} \end{cases}

    The defaults (``threshold=5``, ``eps_mode="hat"``) are ``torch.optim.RAdam``'s; the paper's
    Algorithm 2 uses ``threshold=4``; ``optax.radam`` is ``eps_mode="paper"``
    (it also switches at :math:`\rho_t \ge 5` rather than :math:`> 5`, which only differs if
    :math:`\rho_t` is exactly 5). See :func:`~adamjax.scale_by_radam`.

    Args:
      learning_rate: :math:`\eta_t`, a number >= 0 or an optax schedule.
      b1: :math:`\beta_1`, in [0, 1), or a schedule.
      b2: :math:`\beta_2`, a constant in [0, 1).
      eps: >= 0, placed by ``eps_mode``.
      eps_root: added inside the square root, >= 0.
      threshold: :math:`\rho_t` above which the adaptive step is used, >= 4.
      weight_decay: :math:`\lambda`, a number >= 0 or a schedule; L2 like ``torch.optim.RAdam``
        unless ``decoupled_weight_decay``.
      decoupled_weight_decay: decoupled decay :math:`\theta \leftarrow \theta -
        \eta_t\lambda\theta` (torch's ``decoupled_weight_decay=True``).
      mask: which leaves to decay (see :func:`~adamjax.add_decayed_weights`).
      eps_mode: ``"hat"`` (torch) or ``"paper"`` (optax).
      mu_dtype: storage of the first moment; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).
      nu_dtype: storage of the second moment; ``None`` follows the params; also a float
        dtype, ``adamjax.stochastic_bf16()`` or ``adamjax.q8()`` (:mod:`adamjax.codecs`).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` chaining :func:`~adamjax.scale_by_radam` with
      the weight decay and the learning rate, as in :func:`nadam`.

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020.

    Example:
      >>> tx = adamjax.radam(learning_rate=1e-3)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "radam"
    v.check_moment_hyperparams(fn, b1, b2, eps, eps_root, eps_mode, mu_dtype, nu_dtype)
    transform.check_radam(fn, b2, threshold)
    piece = transform.scale_by_radam(
        b1, b2, eps, eps_root, threshold, eps_mode=eps_mode, mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )  # fmt: skip
    return _with_weight_decay(fn, piece, learning_rate, weight_decay, decoupled_weight_decay, mask)
