"""What every piece shares: its checks of the moment options, its zero moments and scalars, and
the registry through which diagnostics find each state's view."""

import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adamjax import _formats, _moments
from adamjax import _validation as v

#: A learning rate or a decay, given as a number, an array, or an optax schedule of the step.
ScalarOrSchedule = optax.ScalarOrSchedule


def check_moment_options(
    fn: str, *, b1: Any, b2: Any, eps: Any, eps_root: Any, mu_dtype: Any, nu_dtype: Any
) -> None:
    """Checks the options the Adam-family moment pieces share, naming ``fn`` in every error."""
    v.check_unit_interval(fn, "b1", b1, schedule_ok=True)
    v.check_unit_interval(fn, "b2", b2, schedule_ok=True)
    v.check_non_negative(fn, "eps", eps)
    v.check_non_negative(fn, "eps_root", eps_root)
    _formats.check_format(fn, "mu_dtype", mu_dtype)
    _formats.check_format(fn, "nu_dtype", nu_dtype, real=True)


def check_params(fn: str, params: Any, mu_dtype: Any, **decays: Any) -> None:
    """Checks the params at ``init`` (floating or complex leaves, see
    :func:`~adamjax._validation.check_params`), that a complex ``mu_dtype`` meets complex
    params only (a complex first moment of a real param would make its updates complex) and,
    with x64 on, the ``decays`` (``b1=..., b2=...``) in the params' scalar dtype."""
    v.check_params(fn, params)
    v.check_decays_at_init(fn, scalar_dtype(params), **decays)
    mu_dtype = _formats.stored_format(mu_dtype)
    if isinstance(mu_dtype, _formats.MomentFormat) or mu_dtype is None:
        return
    if not jnp.issubdtype(mu_dtype, jnp.complexfloating):
        return
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        dtype = jnp.dtype(leaf.dtype if hasattr(leaf, "dtype") else jnp.result_type(leaf))
        if not jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(
                f"{fn}: mu_dtype {jnp.dtype(mu_dtype)} is complex, but the param at "
                f"{jax.tree_util.keystr(path) or '<root>'} is real ({dtype}); a complex first "
                "moment would make its updates complex. Use a real mu_dtype (complex params "
                "keep a complex first moment with any real mu_dtype)."
            )


def zeros_moment(params: Any, requested: Any | None, *, real: bool) -> Any:
    """A zero moment per parameter leaf, stored as ``requested`` says (``None``, a dtype or a
    :class:`~adamjax._formats.MomentFormat`); ``real`` marks a second moment.

    Each moment is placed like its param (sharded the same way). Works on concrete arrays and on
    abstract ``jax.ShapeDtypeStruct`` leaves (``jax.eval_shape``).
    """
    fmt = _formats.format_of(requested)

    def zeros(p: Any) -> Any:
        if not _is_flax_variable(p):
            return fmt.init(p, signed=not real)
        value = p.get_value()
        if not jax.tree.leaves(value):
            # optax.masked / multi_transform put a leafless MaskedNode in the Variable of each
            # param the inner transformation does not own; its moment is that same placeholder.
            return p
        moment = fmt.init(value, signed=not real)
        if _formats.is_quantized(moment):
            # Bare, not in a copy of the param's Variable: flax would apply the param's sharding
            # annotation to the scale too, whose block axis cannot take it. The arrays are
            # placed like the param already (codes: its sharding; scale: its leading axes).
            return moment
        return jax.tree.map(lambda _: moment, p)  # the param's Variable type and metadata

    return jax.tree.map(zeros, params, is_leaf=_is_flax_variable)


def _is_flax_variable(x: Any) -> bool:
    """Whether ``x`` is a ``flax.nnx.Variable`` (only possible once flax is imported)."""
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(x, nnx.Variable)


def scalar_dtype(params: Any) -> jnp.dtype:
    """The real dtype of per-step scalars kept in state: the widest compute dtype of the
    parameter leaves (float32, or float64 when x64 is on and a leaf is float64)."""
    leaves = jax.tree.leaves(params)
    dtypes = [p.dtype if hasattr(p, "dtype") else jnp.result_type(p) for p in leaves]
    return _moments.real_dtype(_moments.compute_dtype(*dtypes))


def map_unzip(fn: Callable[..., tuple[Any, ...]], n_out: int, tree: Any, *rest: Any) -> tuple:
    """Maps ``fn`` over the leaves of ``tree`` and ``rest`` (which must have ``tree``'s structure
    down to its leaves) and returns ``n_out`` trees, one per slot of ``fn``'s tuple."""
    leaves, treedef = jax.tree.flatten(tree)
    rest_leaves = [treedef.flatten_up_to(r) for r in rest]
    outs = [fn(*args) for args in zip(leaves, *rest_leaves, strict=True)]
    return tuple(treedef.unflatten([out[i] for out in outs]) for i in range(n_out))


# ---- diagnostics views ----------------------------------------------------------------------


class View(NamedTuple):
    """What diagnostics read from one piece's state, as trees shaped like the params.

    The per-entry step factor is ``scale_of(statistic)``, leaf by leaf: ``statistic`` is the
    second-moment quantity the step divided by (a tree of arrays) and ``scale_of`` a tree of
    functions, one per leaf, each *nonincreasing* in the statistic, so the extremes of the factor
    are the function at the statistic's extremes (two cheap reductions instead of two passes
    through square roots and divisions). The factor is the effective learning rate divided by the
    learning rate, or, when ``lr_included`` (the piece applies its learning rate), the effective
    learning rate itself. ``fractions`` holds per-entry booleans whose pooled mean is reported;
    ``scalars`` holds global values, ``leaf_scalars`` per-leaf ones. A leaf of ``statistic``,
    ``m_hat`` or ``v_hat`` may be a :class:`Scaled` (the raw moment and its correction apart);
    code that needs its per-entry values calls :func:`value`.
    """

    statistic: Any = None
    scale_of: Any = None
    lr_included: bool = False
    m_hat: Any = None
    v_hat: Any = None
    fractions: dict[str, Any] | None = None
    scalars: dict[str, jax.Array] | None = None
    leaf_scalars: dict[str, Any] | None = None


_VIEWS: dict[type, Callable[[Any, Any], View]] = {}


def register_view(state_type: type) -> Callable:
    """Registers the decorated ``view(state, grads) -> View`` for states of ``state_type``."""

    def register(view: Callable[[Any, Any], View]) -> Callable[[Any, Any], View]:
        _VIEWS[state_type] = view
        return view

    return register


def view_of(state: Any) -> Callable[[Any, Any], View] | None:
    """The registered view of ``state``'s type, or ``None``."""
    return _VIEWS.get(type(state))


def decoded(state: Any) -> Any:
    """``state`` with its stored moments (``mu``, ``nu``, ``nu_max``) decoded to arrays, so that a
    view reads plain arrays shaped like the params."""

    def decode_tree(tree: Any, signed: bool) -> Any:
        return jax.tree.map(
            lambda x: _formats.decode(x, signed), tree, is_leaf=_formats.is_quantized
        )

    fields = {
        name: decode_tree(getattr(state, name), signed=name == "mu")
        for name in ("mu", "nu", "nu_max")
        if getattr(state, name, None) is not None
    }
    return state._replace(**fields) if fields else state


def real(x: jax.Array) -> jax.Array:
    """``x`` in its real compute dtype (at least float32)."""
    return x.astype(_moments.real_dtype(_moments.compute_dtype(x.dtype)))


def corrected_tree(tree: Any, correction: jax.Array) -> Any:
    """Every leaf of ``tree``, real, divided by a recorded bias correction."""
    return jax.tree.map(lambda x: real(x) / correction.astype(real(x).dtype), tree)


class Scaled:
    """A view's leaf given as ``entries`` divided by a positive scalar ``divisor`` (a recorded
    bias correction), kept apart: diagnostics divide a sum or an extreme of the entries once,
    rather than every entry before several reductions. XLA's CPU backend writes an elementwise
    result that several reductions read out to memory first (a temporary the size of the leaf);
    the raw stored moment is there already. Not a pytree node: tree functions see one leaf."""

    def __init__(self, entries: jax.Array, divisor: jax.Array) -> None:
        self.entries = entries
        self.divisor = divisor.astype(entries.dtype)

    @property
    def size(self) -> int:
        return self.entries.size

    def value(self) -> jax.Array:
        """The entries divided by the divisor, per entry."""
        return self.entries / self.divisor


def value(x: Any) -> jax.Array:
    """A view leaf's values per entry: :meth:`Scaled.value` of a :class:`Scaled`, else ``x``."""
    return x.value() if isinstance(x, Scaled) else x


def corrected_view(tree: Any, correction: jax.Array) -> Any:
    """:func:`corrected_tree` as a tree of :class:`Scaled` leaves, for a view's ``statistic``,
    ``m_hat`` or ``v_hat``."""
    return jax.tree.map(lambda x: Scaled(real(x), correction), tree)


def first_moment_view(mu: Any, last: _moments.StepScalars) -> Any:
    r""":math:`|\hat m|` from the stored first moment and the recorded correction, as
    :class:`Scaled` leaves."""

    def leaf(m: jax.Array) -> Scaled:
        return Scaled(jnp.abs(m.astype(_moments.compute_dtype(m.dtype))), last.m_correction)

    return jax.tree.map(leaf, mu)


def each(tree: Any, fn: Callable[[jax.Array], jax.Array]) -> Any:
    """The same function for every leaf of ``tree``."""
    return jax.tree.map(lambda _: fn, tree)


def adam_view(state: Any, grads: Any) -> View:
    """The view of a state with Adam's ``mu``, ``nu`` and ``last_step``."""
    del grads
    last = state.last_step
    v_hat = corrected_view(state.nu, last.v_correction)
    scale_of = each(v_hat, lambda x: _moments.inverse_denominator(x, last))
    return View(v_hat, scale_of, False, first_moment_view(state.mu, last), v_hat)
