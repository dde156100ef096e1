"""What XLA makes of the aliases: the compiled step's array kernels, compared with optax's.

A step of an elementwise optimizer is memory-bound, so its time is set by the kernels (fusions)
the compiled program launches over param-sized arrays and what each reads and writes. These tests
compile a donated train step of an adamjax alias and of its optax equivalent and check that the
array-sized fusions read and write the same arrays and do no more elementwise work, which is
what ``benchmarks/step_time.py`` then measures. The scalar fusions
(bias corrections, the recorded ``last_step``) are left out; they cost nanoseconds. Nothing here
times anything.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import optax
import pytest

import adamjax

SHAPES = {"a": (4096,), "b": (64, 48), "c": (3, 5, 7)}
# XLA rewrites ``x / c`` (c a scalar) into ``x * (1 / c)`` in some programs and not in others:
# for optax's Adam it does with one leaf and not with three. Both trees are checked, so that an
# alias that leaves a divide per element to XLA's discretion is caught on either.
TREES = {"three leaves": SHAPES, "one leaf": {"a": (4096,)}}
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%\S+ = (\S+) (\w[\w-]*)\((.*?)\)")


def _compiled_hlo(tx: optax.GradientTransformation, shapes: dict = SHAPES) -> str:
    params = {k: jnp.ones(s, jnp.float32) for k, s in shapes.items()}

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params), params)
    return lowered.compile().as_text()


def array_kernels(hlo: str) -> dict[tuple, list[tuple[int, int]]]:
    """The array-shaped fusions the entry computation launches, grouped by signature.

    A kernel's signature is its output shape with the sorted shapes of its array operands: the
    bytes it reads and writes. For each signature the list holds, per kernel, its count of
    divides and square roots (the slow elementwise operations) and of all other elementwise
    operations, sorted.
    """
    blocks = re.split(r"\n(?=\S)", hlo)
    computations = {}
    for block in blocks:
        head = re.match(r"%([\w.-]+) ", block)
        if head:
            computations[head.group(1)] = block.splitlines()[1:]
    entry = next(b for b in blocks if b.startswith("ENTRY"))
    kernels: dict[tuple, list[tuple[int, int]]] = {}
    for line in entry.splitlines():
        match = _INSTRUCTION.match(line)
        if not match or match.group(2) != "fusion" or match.group(1).endswith("[]"):
            continue
        ops = [_INSTRUCTION.match(inner) for inner in computations[_callee(line)]]
        ops = [(re.sub(r"\{[^}]*\}", "", m.group(1)), m.group(2)) for m in ops if m]
        arrays = sorted(shape for shape, op in ops if op == "parameter" and shape != "f32[]")
        work = [op for shape, op in ops if not shape.endswith("[]") and op not in _FREE]
        slow = sum(op in ("divide", "sqrt", "rsqrt", "power") for op in work)
        signature = (_strip_layout(match.group(1)), tuple(arrays))
        kernels.setdefault(signature, []).append((slow, len(work) - slow))
    return {k: sorted(v) for k, v in kernels.items()}


_FREE = {"parameter", "constant", "broadcast", "bitcast", "reshape", "tuple", "get-tuple-element"}


def _callee(line: str) -> str:
    return re.search(r"calls=%([\w.-]+)", line).group(1)


def _strip_layout(shape: str) -> str:
    return re.sub(r"\{[^}]*\}", "", shape)


def no_more_work(ours: dict, theirs: dict) -> bool:
    """Same kernels over the same arrays, and for each signature no more slow or total
    elementwise work summed over its kernels."""
    if ours.keys() != theirs.keys():
        return False
    for k in ours:
        ours_slow, theirs_slow = (sum(a for a, _ in v) for v in (ours[k], theirs[k]))
        ours_total, theirs_total = (sum(a + b for a, b in v) for v in (ours[k], theirs[k]))
        if len(ours[k]) != len(theirs[k]) or ours_slow > theirs_slow or ours_total > theirs_total:
            return False
    return True


PAIRS = {
    "adam": (adamjax.adam(1e-3), optax.adam(1e-3)),
    "adamw": (adamjax.adamw(1e-3, weight_decay=1e-2), optax.adamw(1e-3, weight_decay=1e-2)),
    "amsgrad(corrected)": (adamjax.amsgrad(1e-3, max_of="corrected"), optax.amsgrad(1e-3)),
    "adam(nesterov)": (adamjax.adam(1e-3, nesterov=True), optax.nadam(1e-3)),
}


@pytest.mark.parametrize("tree", list(TREES))
@pytest.mark.parametrize("name", list(PAIRS))
def test_alias_launches_the_same_array_kernels_as_optax(name: str, tree: str) -> None:
    shapes = TREES[tree]
    ours, theirs = (array_kernels(_compiled_hlo(tx, shapes)) for tx in PAIRS[name])

    # Three kernels per leaf (m, v, then the params) for Adam; AMSGrad adds the maximum.
    assert sum(map(len, theirs.values())) >= 3 * len(shapes)
    assert no_more_work(ours, theirs), (ours, theirs)


def test_no_divide_per_element_for_the_bias_corrections() -> None:
    """m̂ = m · (1/c₁) and v̂ = v · (1/c₂): the params kernel divides once per element (by the
    denominator) and takes one square root, whatever XLA's rewrites do."""
    for tx in (adamjax.adam(1e-3), adamjax.adam(1e-3, nesterov=True), adamjax.nadam(1e-3)):
        for shapes in TREES.values():
            kernels = array_kernels(_compiled_hlo(tx, shapes))
            assert max(slow for v in kernels.values() for slow, _ in v) == 2, kernels


def test_adamw_reads_no_more_arrays_than_adam() -> None:
    """The decay fuses into the params kernel: AdamW launches Adam's kernels, and its params
    kernel has the same array operands."""
    adam = array_kernels(_compiled_hlo(adamjax.adam(1e-3)))
    adamw = array_kernels(_compiled_hlo(adamjax.adamw(1e-3, weight_decay=1e-2)))

    assert adamw.keys() == adam.keys()
    assert [len(v) for v in adamw.values()] == [len(v) for v in adam.values()]


def test_array_kernels_sees_a_difference() -> None:
    # The comparison must be able to fail: raw and corrected AMSGrad compute different things.
    adam = array_kernels(_compiled_hlo(adamjax.adam(1e-3)))
    amsgrad = array_kernels(_compiled_hlo(adamjax.amsgrad(1e-3)))
    adamw = array_kernels(_compiled_hlo(adamjax.adamw(1e-3, weight_decay=1e-2)))
    assert not no_more_work(amsgrad, adam)  # one more array: the running maximum
    assert not no_more_work(adamw, adam)  # the decay's multiply-add
    assert no_more_work(adam, adamw)


@pytest.mark.parametrize(
    "tx",
    [adamjax.adam(1e-3), adamjax.adam(1e-3, eps_mode="hat"), adamjax.amsgrad(1e-3)],
    ids=["adam", "adam(hat)", "amsgrad"],
)
def test_step_scalars_are_traced_once_not_per_leaf(tx: optax.GradientTransformation) -> None:
    """1 − βᵗ and the ε̂ of ``eps_mode="hat"`` are the same for every leaf: the traced program
    computes them once, so a many-leaf tree traces and compiles no more than optax's."""
    params = {f"w{i}": jnp.ones(8) for i in range(40)}

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    text = jax.jit(step).lower(params, tx.init(params), params).as_text()
    assert text.count("stablehlo.power") <= 2  # β₁ᵗ and β₂ᵗ
    # One square root per leaf (of v̂) plus at most one scalar one (of 1 − β₂ᵗ, for ε̂).
    assert text.count("stablehlo.sqrt") <= len(params) + 1
