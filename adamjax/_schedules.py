r"""Ready-made momentum (``b1``) schedules.

Every Adam-family piece accepts a schedule for ``b1`` and ``b2`` and corrects its bias exactly,
with :math:`1 - \prod_{i \le t}\beta_i` (the running correction is kept in the state's
``last_step``). Like optax's learning-rate schedules, a schedule is a function of the 0-based
update count :math:`k`; the update of step :math:`t = k + 1` uses its value at :math:`k`. Here
an epoch is a fixed number of steps, :math:`e = \lfloor k / \text{steps\_per\_epoch} \rfloor`.
"""

import math

import jax
import jax.numpy as jnp
import optax

from adamjax import _validation as v


def _epoch(count: jax.Array, steps_per_epoch: int) -> jax.Array:
    return (jnp.asarray(count) // steps_per_epoch).astype(jnp.result_type(float))


def beta1_decay(b1: float, rate: float, steps_per_epoch: int = 1) -> optax.Schedule:
    r"""Returns the decaying momentum b1 / (1 + rate * epoch).

    Here epoch = count // steps_per_epoch, for the 0-based update count:

    .. math::

        \beta_{1,k} = \beta_1 / (1 + \text{rate} \cdot e), \qquad
        e = \lfloor k / \text{steps\_per\_epoch} \rfloor.

    Args:
      b1: the initial :math:`\beta_1`, in [0, 1).
      rate: decay per epoch, >= 0.
      steps_per_epoch: steps per epoch (the epoch :math:`e` counts them), a positive integer.

    Returns:
      A schedule of the update count, for ``b1`` of any Adam-family piece or alias.

    Example:
      >>> b1 = adamjax.beta1_decay(0.9, rate=0.1, steps_per_epoch=100)
      >>> tx = adamjax.adam(1e-3, b1=b1)
      >>> state = tx.init(params)
    """
    fn = "beta1_decay"
    v.check_unit_interval(fn, "b1", b1)
    v.check_non_negative(fn, "rate", rate)
    v.check_integer(fn, "steps_per_epoch", steps_per_epoch, minimum=1, array_ok=True)

    def schedule(count: jax.Array) -> jax.Array:
        return b1 / (1 + rate * _epoch(count, steps_per_epoch))

    return schedule


def beta1_cyclic(b1: float, period: float, steps_per_epoch: int = 1) -> optax.Schedule:
    r"""Returns the cyclic momentum b1 * (1 + sin(pi * epoch / period)) / 2.

    Here epoch = count // steps_per_epoch, for the 0-based update count:

    .. math::

        \beta_{1,k} = \beta_1 (1 + \sin(\pi e / \text{period})) / 2, \qquad
        e = \lfloor k / \text{steps\_per\_epoch} \rfloor.

    The momentum oscillates between 0 and :math:`\beta_1` with a period of ``2 * period`` epochs,
    starting at :math:`\beta_1/2`.

    Args:
      b1: the peak :math:`\beta_1`, in [0, 1).
      period: half the cycle length, in epochs, > 0.
      steps_per_epoch: steps per epoch (the epoch :math:`e` counts them), a positive integer.

    Returns:
      A schedule of the update count, for ``b1`` of any Adam-family piece or alias.

    Example:
      >>> b1 = adamjax.beta1_cyclic(0.9, period=10, steps_per_epoch=100)
      >>> tx = adamjax.adamw(1e-3, b1=b1)
      >>> state = tx.init(params)
    """
    fn = "beta1_cyclic"
    v.check_unit_interval(fn, "b1", b1)
    v.check_positive(fn, "period", period)
    v.check_integer(fn, "steps_per_epoch", steps_per_epoch, minimum=1, array_ok=True)

    def schedule(count: jax.Array) -> jax.Array:
        return b1 * (1 + jnp.sin(math.pi * _epoch(count, steps_per_epoch) / period)) / 2

    return schedule
