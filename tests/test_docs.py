"""The API reference covers the public API, and every public name documents itself.

``docs/api.md`` is the API page of the documentation site: Sphinx autodoc renders each
``.. autofunction::``/``.. autoclass::``/``.. automodule::``/``.. data::`` entry from the object's
docstring. These tests read that page's directives (no Sphinx needed), so a name added to
``adamjax.__all__`` without an entry there, or without a docstring of its own, fails here. The
strict build in ``.ci/run`` then checks that every entry renders and every reference resolves.
"""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import adamjax

API_PAGE = Path(__file__).resolve().parent.parent / "docs" / "api.md"
DIRECTIVE = re.compile(r"^\.\. (autofunction|autoclass|automodule|data):: +(\S+)", re.MULTILINE)


def documented_names(page: str) -> set[str]:
    """The top-level names that the page's directives document (``adamjax.`` stripped)."""
    names = set()
    for _, target in DIRECTIVE.findall(page):
        name = target.removeprefix("adamjax.")
        if "." not in name:
            names.add(name)
    return names


def docstring_problem(name: str, obj: Any) -> str | None:
    """Why ``obj`` lacks a docstring of its own, or None when it has one.

    A ``NamedTuple``'s generated docstring (``"State(count, mu)"``) does not count, and each of
    its fields must be named in it. A function must describe each of its parameters under Args.
    """
    doc = obj.__doc__ if isinstance(obj, type | types.FunctionType | types.ModuleType) else None
    if not doc or not doc.strip():
        return f"{name} has no docstring"
    if isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields"):
        generated = re.fullmatch(rf"{obj.__name__}\({', '.join(obj._fields)},?\)", doc.strip())
        if generated:
            return f"{name} has only the generated NamedTuple docstring"
        unnamed = [f for f in obj._fields if not re.search(rf"\b{f}\b", doc)]
        if unnamed:
            return f"{name}'s docstring does not describe the fields {unnamed}"
    if isinstance(obj, types.FunctionType):
        args = doc.split("Args:", 1)[1] if "Args:" in doc else ""
        params = [p for p in inspect.signature(obj).parameters if p not in ("self",)]
        missing = [p for p in params if not re.search(rf"^\s+\**{p}\b", args, re.MULTILINE)]
        if missing:
            return f"{name}'s docstring has no Args entry for {missing}"
    return None


def public_names() -> list[str]:
    return [name for name in adamjax.__all__ if not (name.startswith("__") and name.endswith("__"))]


def test_every_public_name_is_on_the_api_page():
    page = API_PAGE.read_text(encoding="utf-8")
    missing = sorted(set(adamjax.__all__) - documented_names(page))
    assert not missing, f"names in adamjax.__all__ missing from docs/api.md: {missing}"


def test_the_api_page_documents_nothing_that_does_not_exist():
    page = API_PAGE.read_text(encoding="utf-8")
    stale = sorted(name for name in documented_names(page) if not hasattr(adamjax, name))
    assert not stale, f"docs/api.md documents names that adamjax does not have: {stale}"


@pytest.mark.parametrize("name", public_names())
def test_public_name_has_a_docstring_of_its_own(name):
    assert docstring_problem(name, getattr(adamjax, name)) is None


def test_the_checks_catch_what_they_are_for():
    """Controls: a dropped entry, a bare NamedTuple, a half-documented function are reported."""
    page = API_PAGE.read_text(encoding="utf-8")
    without_adamw = re.sub(r"^\.\. autofunction:: adamw\n", "", page, flags=re.MULTILINE)
    assert "adamw" in documented_names(page)
    assert "adamw" not in documented_names(without_adamw)

    class Bare(NamedTuple):
        count: int

    class Partial(NamedTuple):
        """State: the ``count``."""

        count: int
        mu: int

    def half(a, b):
        """Does something.

        Args:
          a: the first.
        """

    def undocumented(a):
        pass

    assert "generated" in docstring_problem("Bare", Bare)
    assert "['mu']" in docstring_problem("Partial", Partial)
    assert "['b']" in docstring_problem("half", half)
    assert "no docstring" in docstring_problem("undocumented", undocumented)
    assert docstring_problem("adam", adamjax.adam) is None
