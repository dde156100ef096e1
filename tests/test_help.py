"""``help()`` in a plain Python REPL renders every public name readably.

The docstrings keep their LaTeX and cross-references for the documentation site (Sphinx), but a
newcomer typing ``help(adamjax.adam)`` reads them as plain text, so for every name in
``adamjax.__all__`` (rendered as ``help()`` renders it, ``pydoc.plaintext``):

* no annotation in a signature is a quoted string (a forward reference such as
  ``-> 'StepScalars'``);
* the first paragraph of the docstring, and of every public method and property the class
  defines, is plain text: no RST role (``:func:``), no LaTeX command (``\\hat``), no double
  backticks;
* the optimizers and the pieces state their update rule in plain text, in a literal block
  introduced by a line ``Update rule::`` (the convention), before any ``.. math::`` block.
"""

import inspect
import pydoc
import re
import types
import typing
from typing import Any

import pytest

import adamjax

PUBLIC = [name for name in adamjax.__all__ if not (name.startswith("__") and name.endswith("__"))]

# The optimizers (aliases) and the pieces that transform updates: each states its update rule.
ALIASES = ["adam", "adamw", "amsgrad", "nadam", "adamax", "radam", "adabound", "adafactor", "swats"]
ALIASES += ["schedule_free_adamw", "schedule_free"]
ALIASES += ["adam_mini", "came"]
ALIASES += ["stable_adamw", "adam_atan2"]
ALIASES += ["laprop", "adopt"]
ALIASES += ["nadamw", "adamaxw", "adan", "ademamix", "simplified_ademamix"]
ALIASES += ["lamb", "adabelief", "yogi"]
PIECES = [name for name in PUBLIC if name.startswith("scale_by_")] + [
    "add_decayed_weights",
    "clip_by_block_rms",
    "stochastic_rounding",
    "cautious",
    "update_clipping",
    "corrected_weight_decay",
]

# A signature line as pydoc writes it, at the top level or inside a class's " |  " margin.
SIGNATURE = re.compile(r"^[ |]*[A-Za-z_]\w*\(.*\)")
# An annotation that is a quoted string ("x: 'T'", "-> 'T'"), or a forward reference inside one.
QUOTED_ANNOTATION = re.compile(
    r"""(?:\w: |-> )(['"])([A-Za-z_][\w.]*)\1|ForwardRef\((['"])([\w.]+)\3"""
)
# The one forward reference allowed: optax's recursive alias ``optax.Updates`` (``optax.Params``,
# ``optax.OptState``; chex's ``ArrayTree``) names itself, as a recursive alias must. The states
# keep optax's spelling of the type, as optax's own states do.
OPTAX_RECURSIVE_ALIAS = "ArrayTree"
# Sphinx markup that help() shows raw: a role, a LaTeX command, double backticks.
MARKUP = re.compile(r":[a-z]+:`|\\[A-Za-z]+|``")
RULE_HEADER = "Update rule::"


def render(obj: Any) -> str:
    """What ``help(obj)`` prints."""
    return pydoc.render_doc(obj, renderer=pydoc.plaintext)


def members(cls: type) -> dict[str, Any]:
    """The public methods and properties a class defines itself (not the ones it inherits)."""
    kinds = (property, classmethod, staticmethod, types.FunctionType)
    return {
        name: getattr(cls, name)
        for name, value in vars(cls).items()
        if not name.startswith("_") and isinstance(value, kinds)
    }


def quoted_names(annotation_text: str) -> list[str]:
    """The names written as strings in a rendered annotation (or signature line)."""
    found = [m[1] or m[3] for m in QUOTED_ANNOTATION.findall(annotation_text)]
    return [name for name in found if name != OPTAX_RECURSIVE_ALIAS]


def quoted_signature_lines(text: str) -> list[str]:
    """The signature lines of a rendered page that show an annotation as a string."""
    lines = [re.sub(r"^[ |]*", "", line) for line in text.splitlines() if SIGNATURE.match(line)]
    return [line for line in lines if quoted_names(line)]


def string_annotations(obj: Any) -> list[str]:
    """The annotations of ``obj`` (a function, or a class's fields and own methods) that are
    strings or hold forward references, found with ``inspect`` rather than in the rendered
    text; as ``"where: name"``."""
    annotations: list[tuple[str, Any]] = []
    functions = {obj.__name__: obj}
    if isinstance(obj, type):
        fields = vars(obj).get("__annotations__", {})
        annotations += [(f"{obj.__name__}.{k}", a) for k, a in fields.items()]
        functions = {f"{obj.__name__}.{k}": m for k, m in members(obj).items() if callable(m)}
    for where, function in functions.items():
        signature = inspect.signature(function)
        annotations += [(where, p.annotation) for p in signature.parameters.values()]
        annotations.append((where, signature.return_annotation))
    found = []
    for where, a in annotations:
        names = [a] if isinstance(a, str) else quoted_names(repr(a))
        found += [f"{where}: {name}" for name in names]
    return found


def first_paragraph(doc: str) -> str:
    return re.split(r"\n\s*\n", inspect.cleandoc(doc).strip(), maxsplit=1)[0]


def plain_text_problems(name: str, obj: Any) -> list[str]:
    """Why the first docstring paragraph of ``obj`` (and of a class's own public methods and
    properties) would not read as plain text in ``help()``; empty when it does."""
    docs = {name: obj.__doc__}
    if isinstance(obj, type):
        docs.update({f"{name}.{m}": value.__doc__ for m, value in members(obj).items()})
    problems = []
    for where, doc in docs.items():
        if not doc or not doc.strip():
            problems.append(f"{where} has no docstring")
            continue
        paragraph = first_paragraph(doc)
        shown = MARKUP.findall(paragraph)
        if shown:
            problems.append(f"{where}'s first paragraph shows {shown}: {paragraph!r}")
    return problems


def update_rule_problem(name: str, obj: Any) -> str | None:
    """Why ``help(obj)`` does not show a plain-text update rule before the LaTeX; None when it
    does: a line ``Update rule::`` followed by a blank line and an indented block of plain-text
    lines, at least one of them an equation."""
    lines = [re.sub(r"^ {4}", "", line) for line in render(obj).splitlines()]
    headers = [i for i, line in enumerate(lines) if line.strip() == RULE_HEADER]
    if not headers:
        return f"{name}: no line {RULE_HEADER!r} in help()"
    start = headers[0]
    indent = len(lines[start]) - len(lines[start].lstrip())
    block = []
    for line in lines[start + 2 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        block.append(line.strip())
    block = [line for line in block if line]
    if lines[start + 1].strip() or not block:
        return f"{name}: {RULE_HEADER!r} is not followed by a blank line and an indented block"
    if not any("=" in line for line in block):
        return f"{name}: the update rule has no equation: {block}"
    if any(MARKUP.search(line) for line in block):
        return f"{name}: the update rule is not plain text: {block}"
    doc = inspect.cleandoc(obj.__doc__)
    if ".. math::" in doc and doc.index(".. math::") < doc.index(RULE_HEADER):
        return f"{name}: the update rule comes after the LaTeX"
    return None


@pytest.mark.parametrize("name", PUBLIC)
def test_help_shows_no_annotation_as_a_string(name):
    obj = getattr(adamjax, name)
    assert quoted_signature_lines(render(obj)) == []
    assert string_annotations(obj) == []


@pytest.mark.parametrize("name", PUBLIC)
def test_first_docstring_paragraph_is_plain_text(name):
    obj = getattr(adamjax, name)
    assert plain_text_problems(name, obj) == []
    # ... and it is what help() shows (pydoc indents it; a class's in a " |  " margin).
    shown = " ".join(re.sub(r"^[ |]*", "", line) for line in render(obj).splitlines())
    assert " ".join(first_paragraph(obj.__doc__).split()) in " ".join(shown.split())


@pytest.mark.parametrize("name", ALIASES + PIECES)
def test_optimizers_and_pieces_state_their_update_rule_in_plain_text(name):
    assert update_rule_problem(name, getattr(adamjax, name)) is None


def test_the_checks_catch_what_they_are_for():
    """Controls: a forward reference, Sphinx markup in the summary and a missing or LaTeX-only
    update rule are all reported."""

    class Forward(typing.NamedTuple):
        """A state.

        Attributes:
          count: a count.
        """

        count: int

        @classmethod
        def make(cls) -> "Forward":
            """Makes one."""
            return cls(0)

    class Backticks:
        """State of ``stochastic_rounding``."""

    def marked(x: int) -> int:
        r"""Returns :math:`\hat x`, see :func:`adam`."""
        return x

    def latex_only(x: int) -> int:
        r"""Scales updates.

        .. math::

            u = -\alpha g
        """
        return x

    def late_rule(x: int) -> int:
        r"""Scales updates.

        .. math::

            u = -\alpha g

        Update rule::

            update = -lr * g
        """
        return x

    assert quoted_signature_lines(render(Forward)) == ["make() -> 'Forward' from builtins.type"]
    assert string_annotations(Forward) == ["Forward.make: Forward"]
    assert quoted_names("mu: Union[jax.Array, Iterable[ForwardRef('ArrayTree')]]") == []
    assert quoted_names("x: Optional[ForwardRef('StepScalars')]") == ["StepScalars"]
    assert len(plain_text_problems("marked", marked)) == 1
    assert "``" in str(plain_text_problems("Backticks", Backticks))
    assert "no line" in update_rule_problem("latex_only", latex_only)
    assert "after the LaTeX" in update_rule_problem("late_rule", late_rule)
    assert update_rule_problem("adam", adamjax.adam) is None
