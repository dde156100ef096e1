r"""How optimizer moments are stored: a dtype, bfloat16 with stochastic rounding, or 8 bits.

Every Adam-family piece takes ``mu_dtype`` and ``nu_dtype``. Each accepts:

* ``None``: store the moment in the params' dtype (the real part's, for a real moment);
* a floating dtype such as ``jnp.bfloat16`` or ``jnp.float16``: store it in that dtype, rounding
  to nearest;
* :func:`stochastic_bf16`: store it in bfloat16, rounding stochastically;
* :func:`q8`: store it in 8 bits per entry, quantized block-wise (Dettmers et al. 2022);
* :func:`step_from_stored` of any of these: store it so, and take the step from the moment as
  stored.

Whatever the storage, a piece loads its moments into float32 (or wider), computes the step there
and stores the new moments back, all inside the one jitted update.

8-bit block-wise quantization
-----------------------------

A leaf of at least ``min_size`` entries is stored as a :class:`QuantizedArray`: an 8-bit code
per entry, in an array of the param's own shape, and a float32 scale per block. Blocks run along
the last axis: a row of ``L`` entries is split into ``ceil(L / block_size)`` blocks of
``ceil(L / blocks)`` entries (the last one shorter), so a row whose length is a multiple of
``block_size`` has blocks of exactly ``block_size``, and a shorter row is one block. A block's
scale is the largest magnitude in it, so the entries divided by it lie in [-1, 1], and each is
replaced by the code of a value of a 256-entry map:

* ``"dynamic"`` (the default): the dynamic tree map of Dettmers et al. A magnitude
  :math:`a \in [10^{-7}, 1)` is written as :math:`10^{-e} q` with the decade :math:`e \in \{0,
  \dots, 6\}` and :math:`q \in [0.1, 1)`; decade :math:`e` splits [0.1, 1) into
  :math:`2^{6-e}` equal bins (signed map, which also keeps a sign) or :math:`2^{7-e}` bins
  (unsigned map, for second moments, which are never negative), and the map's values are the
  bins' midpoints, plus 0 and 1. Each entry is rounded to the nearest value. So the relative
  precision is finest for the largest entries of a block, and entries six decades below the
  block's largest still keep a nonzero value.
* ``"linear"``: 255 evenly spaced values in [-1, 1] (signed) or 256 in [0, 1] (unsigned), each
  entry rounded to the nearest.

A block holding a NaN or an infinity decodes to NaN throughout, on every backend, and every
finite block decodes to within its bound (:func:`quantize`).

First moments use the signed map and second moments (and AMSGrad's running maximum) the unsigned
one. Leaves smaller than ``min_size`` keep float32 moments, where 8 bits would save little and
the scales would cost more.

The layout keeps every code in its param's position, so a param sharded with
``jax.sharding.NamedSharding`` along its leading axes has its codes and scales sharded the same
way, and each shard is quantized on its own: the update needs no collectives. Along the last
axis the same holds when each shard's length is a multiple of ``block_size``.

Stochastic rounding
-------------------

Rounding to nearest loses every increment smaller than half a unit in the last place, and a
moving average with :math:`\beta_2 = 0.999` adds increments of :math:`10^{-3}` of its value, below
bfloat16's resolution of :math:`2^{-8}`. Stochastic rounding rounds up with probability equal to
the distance to the value below, so the stored value is right on average. The random bits come
from ``jax.random.key(seed)`` folded with the step count, the leaf's index and the moment, so a
run is deterministic and a restart from a checkpoint continues it exactly.
"""

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from adamjax import _moments
from adamjax import _validation as v

MAPPINGS: tuple[str, ...] = ("dynamic", "linear")

# Decades of the dynamic map: magnitudes down to 10**-DECADES of the block's largest are kept.
_DECADES = 7


# ---- the 256-entry maps ---------------------------------------------------------------------


def _dynamic_magnitudes(signed: bool) -> np.ndarray:
    """The map's nonzero magnitudes below 1, ascending: per decade e (0 = the largest), the
    midpoints of 2**(6-e) (signed) or 2**(7-e) (unsigned) equal bins of [0.1, 1), times 10**-e."""
    values = []
    for e in range(_DECADES):
        bins = 2 ** (_DECADES - 1 - e + (0 if signed else 1))
        values.append(10.0**-e * (0.1 + 0.9 * (np.arange(bins) + 0.5) / bins))
    return np.sort(np.concatenate(values))


def code_table(mapping: str, signed: bool) -> np.ndarray:
    """The float32 value of each of the 256 codes, ascending (the last entry is 1).

    Signed dynamic: 127 negative values, 0 (code 127), 127 positive values, 1 (code 255).
    Unsigned dynamic: 0 (code 0), 254 positive values, 1. Linear signed: ``(c - 127) / 127``
    for codes 0..254 (code 255 repeats 1); linear unsigned: ``c / 255``.
    """
    if mapping == "dynamic":
        pos = _dynamic_magnitudes(signed)
        parts = [-pos[::-1], [0.0], pos, [1.0]] if signed else [[0.0], pos, [1.0]]
        table = np.concatenate(parts)
    elif signed:
        c = np.arange(256, dtype=np.float32)
        table = np.minimum((c - np.float32(127)) * np.float32(1 / 127), np.float32(1))
    else:
        table = np.arange(256, dtype=np.float32) * np.float32(1 / 255)
    assert table.shape == (256,)
    return table.astype(np.float32)


def _encode_dynamic(a: jax.Array, negative: jax.Array | None, signed: bool) -> jax.Array:
    """Codes of magnitudes ``a`` in [0, 1] (``negative``: their signs, for the signed map), each
    the code of the nearest value of the map.

    No table is searched: the decade comes from seven comparisons and the bin from arithmetic.
    In decade e, with n = 2**(6-e) bins (2**(7-e) unsigned), the magnitudes of the decades below
    come first in the ascending table, n - 1 of them (n - 2 unsigned). The bin's midpoint is the
    nearest value except just above a decade's lower edge, where the top value of the decade
    below (or 0, below the last decade) can be nearer; that case steps one code down.
    """
    thresholds = [10.0**-j for j in range(1, _DECADES + 1)]
    e = sum((a < t).astype(jnp.int32) for t in thresholds)  # 0..7; 7 means below 1e-7: zero
    top = _DECADES - 1 + (0 if signed else 1)
    bins = jnp.left_shift(jnp.int32(1), jnp.maximum(top - e, 0))
    n = bins.astype(a.dtype)
    # 10**e, exactly (products of 10 up to 1e7 are exact in float32), without a gather.
    scale = math.prod(jnp.where(a < t, np.float32(10), np.float32(1)) for t in thresholds)
    q = a * scale  # in [0.1, 1) within the decade
    k = jnp.clip(jnp.floor((q - 0.1) * (n / 0.9)).astype(jnp.int32), 0, bins - 1)
    middle = 0.1 + 0.9 * (k.astype(a.dtype) + 0.5) / n
    # The top value of the decade below (it has n / 2 bins), in this decade's units.
    below = jnp.where(e < _DECADES - 1, (1 - 0.9 / n) / 10, 0)
    down = (k == 0) & (q - below < middle - q)
    position = bins - (1 if signed else 2) + k - down.astype(jnp.int32)
    # Round to 1 when closer to it than to the top bin's midpoint.
    top_mid = 1 - 0.45 / 2**top
    one = a >= (1 + top_mid) / 2
    if signed:
        code = jnp.where(negative, 126 - position, 128 + position)
        code = jnp.where(one & ~negative, 255, code)
        code = jnp.where(e == _DECADES, 127, code)
    else:
        code = jnp.where(one, 255, 1 + position)
        code = jnp.where((e == _DECADES) & (a == 0), 0, jnp.maximum(code, 1))  # _keep_nonzero
    return code.astype(jnp.uint8)


# _keep_nonzero: a second moment that is not zero is never stored as zero, but as the map's
# smallest positive value. Adam divides by its square root, and a zero under a nonzero first
# moment would make the step m / eps: the linear map rounds every entry below 1/510 of its
# block's largest to zero, which diverges on the digits MLP within an epoch.


def _encode_linear(x: jax.Array, signed: bool) -> jax.Array:
    """Codes of ``x`` in [-1, 1] (signed) or [0, 1], rounded to the nearest value, as ``int8``:
    ``c`` stands for ``c / 127`` (signed) or ``(c + 128) / 255`` (unsigned). The dtype tells
    the linear map from the dynamic one (``uint8``) when a state has lost its Python types."""
    if signed:
        return jnp.round(jnp.clip(x, -1, 1) * 127).astype(jnp.int8)
    code = jnp.round(jnp.clip(x, 0, 1) * 255)
    code = jnp.where(x > 0, jnp.maximum(code, 1), code)  # see _keep_nonzero
    return (code - 128).astype(jnp.int8)


# ---- blocks ---------------------------------------------------------------------------------


def block_layout(last: int, blocks: int) -> int:
    """Entries per block for a last axis of ``last`` entries split into ``blocks`` blocks: the
    blocks are as even as possible, ``ceil(last / blocks)`` each (the last one shorter)."""
    return max(1, -(-last // max(blocks, 1)))


def num_blocks(shape: tuple[int, ...], block_size: int) -> int:
    """Blocks per row for a leaf of ``shape``: ``ceil(last / block_size)``, the last axis of
    ``last`` entries (1 for a scalar)."""
    last = shape[-1] if shape else 1
    return -(-last // block_size)


def _to_blocks(x: jax.Array, blocks: int) -> jax.Array:
    """``(..., L)`` -> ``(..., blocks, block)``, zero-padding the last block of each row."""
    x = x.reshape(x.shape or (1,))
    block = block_layout(x.shape[-1], blocks)
    pad = blocks * block - x.shape[-1]
    if pad:
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)])
    return x.reshape((*x.shape[:-1], blocks, block))


def _from_blocks(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    last = shape[-1] if shape else 1
    x = x.reshape((*x.shape[:-2], -1))[..., :last]
    return x.reshape(shape)


class QuantizedArray(NamedTuple):
    """A moment leaf stored in 8 bits: codes in the param's shape and a scale per block.

    A plain pytree of two arrays, which checkpoints with orbax like any state. The codes' dtype
    names the map (``uint8``: dynamic, ``int8``: linear) and the blocks follow from the shapes
    (:func:`block_layout`); whether the map is signed is the moment's: first moments are,
    second moments are not. So :func:`decode` decodes a leaf without the optimizer that wrote it,
    also after ``flax.nnx`` has turned it into a ``State`` of the two arrays.

    Attributes:
      codes: ``uint8`` (dynamic map) or ``int8`` (linear map), shaped like the param.
      scale: float32, shaped ``param.shape[:-1] + (blocks,)`` (``(1,)`` for a scalar); the
        largest magnitude of each block.
    """

    codes: jax.Array
    scale: jax.Array

    @property
    def mapping(self) -> str:
        """The name of the 256-entry map: "dynamic" (uint8 codes) or "linear" (int8 codes)."""
        return "linear" if self.codes.dtype == jnp.int8 else "dynamic"

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the moment (the param's shape)."""
        return self.codes.shape

    @property
    def dtype(self) -> jnp.dtype:
        """The dtype the moment decodes to."""
        return jnp.dtype(jnp.float32)

    @property
    def size(self) -> int:
        """The number of entries of the moment."""
        return self.codes.size

    @property
    def ndim(self) -> int:
        """The number of axes of the moment."""
        return self.codes.ndim

    @property
    def nbytes(self) -> int:
        """The bytes the moment takes: its codes and its scales."""
        return self.codes.nbytes + self.scale.nbytes


def is_quantized(x: Any) -> bool:
    """Whether ``x`` is a quantized leaf: a :class:`QuantizedArray`, or the mapping of its two
    arrays that ``flax.nnx`` makes of it. Also the ``is_leaf`` of tree functions that must treat
    one as a single leaf."""
    if isinstance(x, QuantizedArray):
        return True
    if not (isinstance(x, Mapping) and set(x.keys()) == {"codes", "scale"}):
        return False
    # 8-bit integer codes: a moment of a (floating) param is never that, so a params subtree
    # that happens to hold leaves named "codes" and "scale" is not mistaken for one.
    dtype = getattr(x["codes"], "dtype", None)
    return dtype is not None and jnp.dtype(dtype) in (jnp.dtype(jnp.uint8), jnp.dtype(jnp.int8))


def as_quantized(x: Any) -> QuantizedArray:
    return x if isinstance(x, QuantizedArray) else QuantizedArray(x["codes"], x["scale"])


# Scales at or below the smallest normal float32, 2**-126, are stored as zeros (see _normalized).
_SMALLEST_NORMAL = np.float32(np.finfo(np.float32).tiny)


def _block_scale(xb: jax.Array) -> jax.Array:
    """Each block's largest magnitude, or NaN where the block holds a NaN or an infinity."""
    # A maximum and a minimum rather than the maximum of |x|: XLA:CPU vectorizes these and
    # fuses them into one pass (the maximum of |x| ran 3x slower on a 1024 x 1024 leaf).
    peak = jnp.maximum(jnp.max(xb, axis=-1), -jnp.min(xb, axis=-1))
    # Whether a maximum keeps a NaN is the backend's choice (XLA:CPU's drops it from leaves of
    # 4096 entries or more); a sum keeps it everywhere. x - x is 0 for a finite x and NaN for
    # an infinity or a NaN, so this sum (of zeros: it cannot overflow) is NaN for exactly the
    # blocks with a non-finite entry, and 0 for the others.
    poison = jnp.sum(xb - xb, axis=-1)
    return peak + poison


def _normalized(xb: jax.Array, scale: jax.Array) -> jax.Array:
    """The entries divided by their block's scale, in [-1, 1] up to rounding; zeros for a block
    whose scale is NaN or at most the smallest normal float32."""
    # Not x * (1 / s): above 2**126, 1 / s is subnormal, which XLA:CPU flushes to zero (and
    # which holds fewer bits where it is kept). 4 / s is normal and finite for every finite s
    # above 2**-126, and scaling by 4 and by 1 / 4 is exact, so every other block gets the bits
    # of x * (1 / s).
    usable = (scale > _SMALLEST_NORMAL)[..., None]  # false for NaN
    inverse = 4 / jnp.where(usable, scale[..., None], 1)
    # Zeros elsewhere: codes that do not depend on how a backend converts NaN to an integer,
    # and a subnormal block is zero to the backends that flush subnormals anyway.
    return jnp.where(usable, xb * inverse * np.float32(0.25), 0)


def quantize(
    x: jax.Array, *, mapping: str = "dynamic", signed: bool = True, block_size: int = 256
) -> QuantizedArray:
    r"""Quantizes a real array block-wise to 8 bits (see the module docstring).

    Every finite block round-trips: :func:`dequantize` gives each entry :math:`x` back within
    :math:`(h + 2^{-23}) s + 2^{-126}`, where :math:`s` is the block's largest magnitude and
    :math:`h` half the widest gap between adjacent values of the map (for an unsigned map, its
    smallest positive value where that is larger: a nonzero entry is never stored as 0), so
    :math:`h` is 0.0070 (dynamic, signed), 0.0035 (dynamic, unsigned), 1/254 (linear, signed) or
    1/255 (linear, unsigned). :math:`2^{-23}` covers float32 rounding and :math:`2^{-126}` a
    backend that flushes subnormal results to zero; a block whose largest magnitude is at most
    :math:`2^{-126}` is stored as zeros.

    A block holding a NaN or an infinity is stored with a NaN scale (and the codes of 0), so
    every entry of it decodes to NaN, the same on every backend: a non-finite moment never
    comes back finite, and the other blocks are stored as without it.
    """
    shape = x.shape
    xb = _to_blocks(x.astype(jnp.float32), num_blocks(shape, block_size))
    scale = _block_scale(xb)
    normalized = _normalized(xb, scale)
    if mapping == "linear":
        codes = _encode_linear(normalized, signed)
    else:
        negative = (normalized < 0) if signed else None
        codes = _encode_dynamic(jnp.abs(normalized), negative, signed)
    return QuantizedArray(_from_blocks(codes, shape), scale)


def _lookup(table: jax.Array, codes: jax.Array) -> jax.Array:
    """``table[codes]`` as a gather whose output has ``codes``' shape (``table[codes]`` gives
    XLA a gather of shape ``[n, 1]``, which its CPU backend then bitcasts to the block shape
    inside every consumer: several times slower)."""
    dims = jax.lax.GatherDimensionNumbers(
        offset_dims=(), collapsed_slice_dims=(0,), start_index_map=(0,)
    )

    def gather(codes: jax.Array) -> jax.Array:
        return jax.lax.gather(
            table,
            codes[..., None].astype(jnp.int32),
            dims,
            slice_sizes=(1,),
            mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS,
        )

    sharding = jax.typeof(codes).sharding
    if any(t == jax.sharding.AxisType.Explicit for t in sharding.mesh.axis_types):
        # With explicit mesh axes JAX will not infer a gather's output sharding; the values
        # are placed exactly like their codes (the table is replicated).
        return jax.sharding.auto_axes(gather, out_sharding=sharding)(codes)
    return gather(codes)


def _decode(codes: jax.Array, signed: bool) -> jax.Array:
    """The map's value of each code: a table lookup for the dynamic map, arithmetic for the
    linear one (the same float32 operations as :func:`code_table`, so the same values)."""
    if codes.dtype != jnp.int8:
        return _lookup(jnp.asarray(code_table("dynamic", signed)), codes)
    c = codes.astype(jnp.float32)
    if signed:
        return c * np.float32(1 / 127)
    return (c + 128) * np.float32(1 / 255)


def dequantize(q: Any, signed: bool = True) -> jax.Array:
    """The float32 values a :class:`QuantizedArray` (or ``nnx``'s mapping of it) stands for;
    ``signed``: whether it holds a first moment."""
    q = as_quantized(q)
    codes = _to_blocks(q.codes, q.scale.shape[-1])
    return _from_blocks(_decode(codes, signed) * q.scale[..., None], q.shape)


def widen_bf16(x: jax.Array) -> jax.Array:
    """bfloat16 -> float32, exactly, as a 16-bit shift of the bits: XLA's CPU backend converts
    bfloat16 about 9x slower than this (1M entries: 1.6 ms against 0.17 ms, measured)."""
    bits = jax.lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32) << 16
    return jax.lax.bitcast_convert_type(bits, jnp.float32)


# ---- stochastic rounding --------------------------------------------------------------------


def stochastic_round_bf16(x: jax.Array, key: jax.Array) -> jax.Array:
    """Rounds float32 ``x`` to bfloat16, up or down with probabilities that make the result
    unbiased: 16 random bits are added below bfloat16's last place and then truncated. NaN stays
    NaN and infinities stay infinite."""
    x = x.astype(jnp.float32)
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    noise = jax.random.bits(key, x.shape, jnp.uint32) & jnp.uint32(0xFFFF)
    rounded = (bits + noise) & jnp.uint32(0xFFFF0000)
    y = jax.lax.bitcast_convert_type(rounded, jnp.float32)
    return jnp.where(jnp.isnan(x), x, y).astype(jnp.bfloat16)


#: The largest seed: jax.random.key keeps 32 bits without x64, so 2**32 would be seed 0.
SEED_MAX = 2**32 - 1


def step_key(seed: int, count: jax.Array, leaf: int, slot: int) -> jax.Array:
    """The key of one leaf's moment at one step: ``seed``, then the step count, the leaf's index
    in the tree and the moment's slot (0 for mu, 1 for nu, 2 for a running maximum)."""
    key = jax.random.fold_in(jax.random.key(seed), count)
    return jax.random.fold_in(key, leaf * 4 + slot)


# ---- formats --------------------------------------------------------------------------------


def _dtype_of(like: Any) -> jnp.dtype:
    return jnp.dtype(like.dtype if hasattr(like, "dtype") else jnp.result_type(like))


def zeros_like_param(like: Any, dtype: Any = None, *, fill: Any = 0) -> Any:
    """An array of the param ``like``'s shape, every entry ``fill`` (the zero state; ``fill``
    says what zero is stored as, e.g. the 8-bit code of 0) in ``dtype`` (``None``: ``like``'s),
    placed like ``like`` eagerly, under ``jax.eval_shape`` and under ``jax.jit`` with explicit or
    auto mesh axes. ``like`` is an array, a tracer or a ``jax.ShapeDtypeStruct``.

    Under ``jax.jit`` with auto axes a tracer carries no sharding, and an array built from its
    shape alone (``jnp.zeros_like``) is a constant that the compiler places on one device. A
    select on the param ties the result to it, so sharding propagation gives it the param's
    sharding; its branches are both ``fill``, so NaN or inf in the param cannot reach the state,
    and XLA folds the select away: the compiled init still just writes the constant.
    """
    if not isinstance(like, jax.core.Tracer):
        return jnp.full_like(like, fill, dtype=dtype)  # keeps a concrete or abstract sharding
    fill = jnp.asarray(fill, _dtype_of(like) if dtype is None else dtype)
    return jnp.where(like == like, fill, fill)


class MomentFormat:
    """How a moment is stored; pass one as ``mu_dtype``/``nu_dtype``. Subclasses: the result of
    :func:`q8`, of :func:`stochastic_bf16` and of :func:`step_from_stored`."""

    needs_key = False

    def init(self, like: Any, *, signed: bool) -> Any:
        """The zero moment of the param ``like`` (an array or a ``jax.ShapeDtypeStruct``).

        Built with :func:`zeros_like_param`, never from the shape alone, so that it is placed
        like the param: sharded the same way, eagerly and under ``jax.jit`` with explicit or
        auto mesh axes (``jnp.zeros(shape)`` would put it on the default device)."""
        raise NotImplementedError

    def store(self, x: jax.Array, like: Any, key: jax.Array | None, signed: bool) -> Any:
        """``x`` stored the way ``like`` (the leaf's previous value) is; ``signed``: whether it
        is a first moment."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Q8(MomentFormat):
    """8-bit block-wise quantized moments; build it with :func:`q8`."""

    block_size: int = 256
    mapping: str = "dynamic"
    min_size: int = 4096

    def init(self, like: Any, *, signed: bool) -> Any:
        shape, param_dtype = jnp.shape(like), _dtype_of(like)
        if jnp.issubdtype(param_dtype, jnp.complexfloating):
            raise TypeError(
                "q8: 8-bit moments are for real params, got a complex leaf; use mu_dtype=None or "
                "a complex-capable dtype for complex params"
            )
        dtype = jnp.result_type(jnp.float32, param_dtype)
        if math.prod(shape) < self.min_size:
            return zeros_like_param(like, dtype)
        zeros = jnp.zeros([], jnp.float32)
        codes = quantize(zeros, mapping=self.mapping, signed=signed).codes  # the code of 0
        # The scale is derived from zeros the way quantize() derives it from a moment, so it
        # is placed as every update will place it (blocks of a sharded axis stay sharded).
        blocked = _to_blocks(zeros_like_param(like, jnp.uint8), num_blocks(shape, self.block_size))
        return QuantizedArray(
            zeros_like_param(like, codes.dtype, fill=codes),
            jnp.sum(blocked, axis=-1, dtype=jnp.uint8).astype(jnp.float32),
        )

    def store(self, x: jax.Array, like: Any, key: jax.Array | None, signed: bool) -> Any:
        del key
        if is_quantized(like):
            return quantize(x, mapping=self.mapping, signed=signed, block_size=self.block_size)
        return x.astype(like.dtype)


@dataclasses.dataclass(frozen=True)
class StochasticBF16(MomentFormat):
    """bfloat16 moments written with stochastic rounding; build it with :func:`stochastic_bf16`."""

    seed: int = 0
    needs_key = True

    def init(self, like: Any, *, signed: bool) -> Any:
        if jnp.issubdtype(_dtype_of(like), jnp.complexfloating):
            raise TypeError(
                "stochastic_bf16: bfloat16 moments are for real params, got a complex leaf"
            )
        return zeros_like_param(like, jnp.bfloat16)

    def store(self, x: jax.Array, like: Any, key: jax.Array | None, signed: bool) -> Any:
        return stochastic_round_bf16(x, key)


@dataclasses.dataclass(frozen=True)
class Cast(MomentFormat):
    """A plain dtype (``None``: the params'), rounded to nearest: what a dtype argument means."""

    dtype: Any = None

    def init(self, like: Any, *, signed: bool) -> Any:
        param_dtype = _dtype_of(like)
        complex_moment = self.dtype is not None and jnp.issubdtype(self.dtype, jnp.complexfloating)
        if complex_moment and not jnp.issubdtype(param_dtype, jnp.complexfloating):
            raise TypeError(
                f"complex moment dtype {jnp.dtype(self.dtype)} for a real param of dtype "
                f"{param_dtype}: a complex first moment would give complex updates; use a "
                "real dtype for real params"
            )
        dtype = _moments.storage_dtype(param_dtype, self.dtype, real=not signed)
        return zeros_like_param(like, dtype)

    def store(self, x: jax.Array, like: Any, key: jax.Array | None, signed: bool) -> Any:
        del key, signed
        y = x.astype(like.dtype)
        if like.dtype == jnp.float16:
            # float16 flushes magnitudes below 2**-25 to zero, and v = (1 - b2) g**2 gets there
            # for |g| below about 5e-3. A zeroed v under a nonzero m would turn the step into
            # m / eps; the smallest subnormal, with x's sign, keeps it bounded instead.
            tiny = jnp.asarray(np.finfo(np.float16).smallest_subnormal, jnp.float16)
            y = jnp.where((y == 0) & (x != 0), jnp.where(x > 0, tiny, -tiny), y)
        return y


@dataclasses.dataclass(frozen=True)
class StepFromStored(MomentFormat):
    """Stores a moment as ``inner`` does, and marks that the step reads it back as stored;
    build it with :func:`step_from_stored`.

    Everything about storage (``init``, ``store``, ``needs_key``, ``seed``) is ``inner``'s;
    ``inner`` is the ``mu_dtype``/``nu_dtype`` value as given (``None``, a dtype or a
    :class:`MomentFormat`), so :func:`stored_format` can hand it to the checks of a dtype.
    """

    inner: Any = None

    @property
    def storage(self) -> MomentFormat:
        """The format that stores the moment: ``inner``'s."""
        return format_of(self.inner)

    @property
    def needs_key(self) -> bool:  # type: ignore[override]
        return self.storage.needs_key

    @property
    def seed(self) -> int:
        """``inner``'s seed (stochastic rounding's); an ``AttributeError`` where it has none."""
        return self.storage.seed  # type: ignore[attr-defined]

    def init(self, like: Any, *, signed: bool) -> Any:
        return self.storage.init(like, signed=signed)

    def store(self, x: jax.Array, like: Any, key: jax.Array | None, signed: bool) -> Any:
        return self.storage.store(x, like, key, signed)


def q8(block_size: int = 256, mapping: str = "dynamic", min_size: int = 4096) -> Q8:
    """8-bit block-wise quantized moments, to pass as mu_dtype or nu_dtype.

    Args:
      block_size: entries per block along the last axis, an integer >= 1 (256 as in Dettmers et
        al.); each block keeps a float32 scale, so the state costs ``1 + 4 / block_size`` bytes
        per entry.
      mapping: ``"dynamic"`` (the dynamic tree map) or ``"linear"``.
      min_size: leaves with fewer entries keep float32 moments, an integer >= 0.

    Example:
      >>> tx = adamjax.adamw(1e-3, mu_dtype=adamjax.q8(), nu_dtype=adamjax.q8())
    """
    v.check_integer("q8", "block_size", block_size, minimum=1, array_ok=False)
    v.check_choice("q8", "mapping", mapping, MAPPINGS)
    v.check_integer("q8", "min_size", min_size, minimum=0, array_ok=False)
    return Q8(int(block_size), mapping, int(min_size))


def stochastic_bf16(seed: int = 0) -> StochasticBF16:
    """bfloat16 moments written with stochastic rounding, to pass as mu_dtype or nu_dtype.

    Args:
      seed: an integer >= 0; the rounding of step ``t`` uses ``jax.random.key(seed)`` folded with
        ``t``, the leaf and the moment, so two runs with one seed are bitwise equal.
    """
    v.check_integer("stochastic_bf16", "seed", seed, minimum=0, maximum=SEED_MAX, array_ok=False)
    return StochasticBF16(int(seed))


def step_from_stored(fmt: Any) -> StepFromStored:
    r"""Stores a moment as fmt does, and takes the step from the moment as stored.

    By default a piece computes its new moments in float32, stores them in their format, and
    takes the step from the float32 values. A moment whose format is wrapped in
    ``step_from_stored`` is stored first, and the step reads it back: for Adam with both
    moments wrapped,

    .. math::

        \tilde m_t = \beta_1 \operatorname{decode}(m_{t-1}) + (1-\beta_1) g_t, \quad
        \tilde v_t = \beta_2 \operatorname{decode}(v_{t-1}) + (1-\beta_2) g_t^2, \quad
        m_t = \operatorname{store}(\tilde m_t), \quad v_t = \operatorname{store}(\tilde v_t),

        u_t = \frac{\operatorname{decode}(m_t) / (1-\beta_1^t)}
              {\sqrt{\operatorname{decode}(v_t) / (1-\beta_2^t) + \epsilon_{root}} + \epsilon},

    where the default takes :math:`u_t` from :math:`\tilde m_t` and :math:`\tilde v_t`. Every
    piece's direction is taken so. The state is bitwise the one ``fmt`` stores given the same
    gradients; only the step differs, by the storage's rounding: bfloat16 rounds each moment by
    at most :math:`2^{-8}` of itself (half a unit in its last place), so Adam's direction moves
    by at most about :math:`2^{-8} + 2^{-9}` (0.6%) of itself, the square root halving
    :math:`v`'s.

    The point is speed. A jitted step that donates its state writes the new moments over the
    old ones; with bfloat16 moments XLA recomputes the step from the old moments and must then
    copy every one of them first. Read back from storage, the step needs no copy: Adam with
    bfloat16 moments on the GPT-2-small tree, on a CPU, went from 2.13 to 0.995 times
    ``optax.adam``'s float32 step. With :func:`q8` the step is slower than with ``q8()`` alone.
    A moment that is not part of the direction (Adan's previous gradient, Schedule-Free's
    :math:`z`) is only stored.

    Args:
      fmt: how the moment is stored, anything ``mu_dtype``/``nu_dtype`` accept: ``None`` (the
        params' dtype), a floating dtype such as ``jnp.bfloat16``, :func:`stochastic_bf16` or
        :func:`q8`. A ``step_from_stored`` value is returned as it is.

    Returns:
      A format to pass as ``mu_dtype`` or ``nu_dtype``.

    Raises:
      ValueError: ``fmt`` is none of these.

    Example:
      >>> stored = adamjax.step_from_stored(jnp.bfloat16)
      >>> tx = adamjax.adamw(1e-3, mu_dtype=stored, nu_dtype=stored)
      >>> updates, state = tx.update(grads, tx.init(params), params)
    """
    if isinstance(fmt, StepFromStored):
        return fmt
    check_format("step_from_stored", "fmt", fmt)
    return StepFromStored(fmt)


def moment_presets() -> dict[str, dict[str, Any]]:
    """Named mu_dtype/nu_dtype pairs, the same storage format for both moments.

    The names are ``float32`` (the params' dtype), ``bfloat16``, ``bfloat16-stored``
    (bfloat16, the step taken from the stored moments: :func:`step_from_stored`),
    ``sr-bfloat16``, ``q8`` and ``q8-linear``. The examples' ``--moments`` flag and the
    benchmarks choose by these names.

    Returns:
      A dict from each name to the keyword arguments to pass (``{}`` for ``float32``), e.g.
      ``adamjax.adamw(1e-3, **adamjax.moment_presets()["q8"])``.
    """
    return {
        "float32": {},
        "bfloat16": {"mu_dtype": jnp.bfloat16, "nu_dtype": jnp.bfloat16},
        "bfloat16-stored": {
            "mu_dtype": step_from_stored(jnp.bfloat16),
            "nu_dtype": step_from_stored(jnp.bfloat16),
        },
        "sr-bfloat16": {"mu_dtype": stochastic_bf16(), "nu_dtype": stochastic_bf16()},
        "q8": {"mu_dtype": q8(), "nu_dtype": q8()},
        "q8-linear": {"mu_dtype": q8(mapping="linear"), "nu_dtype": q8(mapping="linear")},
    }


def format_of(requested: Any) -> MomentFormat:
    """The :class:`MomentFormat` a ``mu_dtype``/``nu_dtype`` argument stands for."""
    return requested if isinstance(requested, MomentFormat) else Cast(requested)


def stored_format(requested: Any) -> Any:
    """A ``mu_dtype``/``nu_dtype`` argument without :func:`step_from_stored`: ``None``, the
    dtype or the :class:`MomentFormat` the moment is stored as, for the checks that tell the
    storage formats apart."""
    return requested.inner if isinstance(requested, StepFromStored) else requested


# ---- the boundary: decode, per-leaf maths, encode --------------------------------------------


def check_format(fn: str, name: str, value: Any, *, real: bool = False) -> None:
    """Checks a ``mu_dtype`` (``real=False``) or ``nu_dtype`` (``real=True``): ``None``, a
    floating dtype (complex too for a first moment, which must then belong to complex params),
    or a :class:`MomentFormat` (``adamjax.q8()``, ``adamjax.stochastic_bf16()``), or one of
    these wrapped in ``adamjax.step_from_stored``."""
    stored = stored_format(value)
    if stored is None or isinstance(stored, MomentFormat):
        return
    if v.storage_dtype_or_none(stored, complex_ok=not real) is None:
        complex_note = "" if real else " (complex64, complex128 for complex params)"
        raise ValueError(
            f"{fn}: {name} must be None, one of bfloat16, float16, float32, float64"
            f"{complex_note}, adamjax.q8(), adamjax.stochastic_bf16() or one of these in "
            f"adamjax.step_from_stored(), got {value!r}"
        )


def decode(x: Any, signed: bool) -> jax.Array:
    """A stored moment leaf as an array: decoded to float32 if quantized (``signed``: whether it
    is a first moment), widened exactly if bfloat16, else unchanged."""
    if is_quantized(x):
        return dequantize(x, signed)
    if getattr(x, "dtype", None) == jnp.bfloat16:
        return widen_bf16(x)
    return x


class Stored(NamedTuple):
    """One moment tree of a state, with how it is stored.

    Attributes:
      tree: the stored moments, one leaf per param (a :class:`QuantizedArray` counts as one).
      format: the ``mu_dtype``/``nu_dtype`` argument it was built from.
      signed: whether it is a first moment (signed 8-bit map) rather than a second moment or a
        maximum of one (real, unsigned map).
    """

    tree: Any
    format: Any
    signed: bool


def adam_stored(state: Any, mu_dtype: Any, nu_dtype: Any) -> list[Stored]:
    """The :class:`Stored` list of a state with Adam's ``mu`` (first) and ``nu`` (second)."""
    return [Stored(state.mu, mu_dtype, signed=True), Stored(state.nu, nu_dtype, signed=False)]


#: The ``settle`` a per-leaf function of :func:`update_leaves` receives: it takes the leaf's new
#: moments, stores them, and returns what the direction is computed from.
Settle = Callable[..., tuple[jax.Array, ...]]


def _shape(x: Any) -> tuple[int, ...]:
    return jnp.shape(as_quantized(x).codes if is_quantized(x) else x)


def update_leaves(
    fn: str, leaf: Any, updates: Any, stored: list[Stored], count: jax.Array
) -> tuple[Any, list[Any]]:
    """Runs a piece's per-leaf maths between decoding and encoding its moments.

    For each leaf, the gradient and the decoded moments are cast to their compute dtype (the
    widest of them, at least float32; second moments stay real), and
    ``leaf(g, *moments, settle=settle)`` returns the update. The leaf computes its new moments
    and passes all of them, in the order of ``stored``, to ``settle`` exactly once, before it
    computes the direction. ``settle`` encodes each the way its previous value is stored
    (stochastic rounding keyed by ``count``, the leaf's index and the moment's position in
    ``stored``) and returns, per moment, what the direction is computed from: the stored value
    decoded back to the moment's compute dtype where its format is :func:`step_from_stored`,
    else the new value as given. The stored values are the new trees (each moment is stored
    once: storing q8 again is not the identity). The updates come back in the gradients'
    dtypes.

    Returns:
      ``(updates, new_trees)``, one new tree per entry of ``stored``.

    Raises:
      RuntimeError: a leaf did not call ``settle`` exactly once, with one value per moment (a
        bug in the piece ``fn``, not in the caller's input).
    """
    v.check_tree_match(fn, updates, stored[0].tree, is_leaf=is_quantized, shape_of=_shape)
    v.check_update_dtypes(fn, updates, stored[0].tree, is_leaf=is_quantized)
    leaves, treedef = jax.tree.flatten(updates)
    formats = [format_of(s.format) for s in stored]
    columns = [treedef.flatten_up_to(s.tree) for s in stored]
    out_updates, out_moments = [], [[] for _ in stored]
    for i, (g, *olds) in enumerate(zip(leaves, *columns, strict=True)):
        moments = [decode(old, s.signed) for old, s in zip(olds, stored, strict=True)]
        dtype = _moments.compute_dtype(g.dtype, *(m.dtype for m in moments))
        real = _moments.real_dtype(dtype)
        moments = [m.astype(dtype if jnp.iscomplexobj(m) else real) for m in moments]
        settled: list[list[Any]] = []

        def settle(*new: jax.Array, i=i, olds=olds, moments=moments, settled=settled) -> tuple:
            if settled or len(new) != len(stored):
                raise RuntimeError(
                    f"{fn}: internal error: a per-leaf function must call settle once with its "
                    f"{len(stored)} new moments, got a call with {len(new)} after "
                    f"{len(settled)} call(s)"
                )
            values, used = [], []
            for slot, (x, old, f, s, m) in enumerate(
                zip(new, olds, formats, stored, moments, strict=True)
            ):
                key = step_key(f.seed, count, i, slot) if f.needs_key else None
                values.append(f.store(x, old, key, signed=s.signed))
                from_store = isinstance(f, StepFromStored)
                used.append(decode(values[-1], s.signed).astype(m.dtype) if from_store else x)
            settled.append(values)
            return tuple(used)

        u = leaf(g.astype(dtype), *moments, settle=settle)
        if len(settled) != 1:
            raise RuntimeError(
                f"{fn}: internal error: the per-leaf function returned without calling settle, "
                "which stores its new moments; it must call it once, before the direction"
            )
        out_updates.append(u.astype(g.dtype))
        for slot, value in enumerate(settled[0]):
            out_moments[slot].append(value)
    return treedef.unflatten(out_updates), [treedef.unflatten(m) for m in out_moments]


# ---- params ---------------------------------------------------------------------------------


class StochasticRoundingState(NamedTuple):
    """State of stochastic_rounding: the int32 step rounding_count that its keys fold in.

    Named so that ``optax.tree_utils.tree_get(state, "count")`` still finds the optimizer's one
    count when this piece ends its chain.
    """

    rounding_count: jax.Array


def stochastic_rounding(seed: int = 0) -> optax.GradientTransformationExtraArgs:
    r"""Makes optax.apply_updates round bfloat16 params stochastically; put it last in a chain.

    Update rule::

        update = float32(SR(p + u)) - p         (bfloat16 p; other leaves: update = u)

    For every bfloat16 param :math:`p` with update :math:`u`, it returns the float32 update
    :math:`\operatorname{SR}(p + u) - p`, where SR rounds the float32 sum to bfloat16 stochastically
    (see :func:`stochastic_round_bf16`). ``optax.apply_updates`` adds it to :math:`p` in float32
    and casts back, which lands exactly on :math:`\operatorname{SR}(p + u)`: an update smaller
    than half of :math:`p`'s last place then moves :math:`p` with the right probability instead
    of never. Leaves of other dtypes pass through unchanged.

    Args:
      seed: an integer >= 0; step ``t`` and leaf ``i`` use ``jax.random.key(seed)`` folded with
        ``t`` and ``i``.

    Example:
      >>> tx = optax.chain(adamjax.adamw(1e-3), adamjax.stochastic_rounding(seed=0))
      >>> updates, state = tx.update(grads, state, params)  # params are required
      >>> params = optax.apply_updates(params, updates)
    """
    fn = "stochastic_rounding"
    v.check_integer(fn, "seed", seed, minimum=0, maximum=SEED_MAX, array_ok=False)

    def init_fn(params: optax.Params) -> StochasticRoundingState:
        del params
        return StochasticRoundingState(jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(f"{fn}: update() needs params, to round p + u; pass params=")
        v.check_tree_match(fn, updates, params, what="params")
        count = optax.safe_increment(state.rounding_count)

        def leaf(u, p, i):
            if u is None or jnp.dtype(p.dtype) != jnp.bfloat16:
                return u
            exact = p.astype(jnp.float32) + u.astype(jnp.float32)
            rounded = stochastic_round_bf16(exact, step_key(seed, count, i, 3))
            return rounded.astype(jnp.float32) - p.astype(jnp.float32)

        leaves, treedef = jax.tree.flatten(updates)
        params_leaves = treedef.flatten_up_to(params)
        out = [leaf(u, p, i) for i, (u, p) in enumerate(zip(leaves, params_leaves, strict=True))]
        return treedef.unflatten(out), StochasticRoundingState(count)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
