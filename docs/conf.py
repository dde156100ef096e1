"""Sphinx configuration of the adamjax documentation (Sphinx + MyST-NB).

Build it strictly, as CI does (warnings are errors, every cross-reference must resolve)::

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -n -b html docs docs/_build/html

``docs/README.md`` has the details. Pages are MyST Markdown; those with ``{code-cell}`` blocks
and the example notebooks are executed during the build, so every output shown is from that run.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

from docutils import nodes, utils  # noqa: E402
from sphinx.util.nodes import split_explicit_title  # noqa: E402

import adamjax  # noqa: E402

project = "adamjax"
author = "The adamjax authors"
copyright = "2026, The adamjax authors"
release = adamjax.__version__
version = release
REPOSITORY = "https://github.com/adamjax/adamjax"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

# The notebooks live in examples/notebooks/ (where Colab opens them); the build renders copies.
NOTEBOOKS = ("quickstart", "flax_mlp_rnn", "colab_gpu_tpu")
(DOCS / "notebooks").mkdir(exist_ok=True)
for _name in NOTEBOOKS:
    _source = ROOT / "examples" / "notebooks" / f"{_name}.ipynb"
    _copy = DOCS / "notebooks" / f"{_name}.ipynb"
    if not _copy.exists() or _copy.read_bytes() != _source.read_bytes():
        shutil.copyfile(_source, _copy)

# _generated/ holds files that scripts write and pages include ({include}), not pages.
exclude_patterns = [
    "_build",
    "README.md",
    "**/.ipynb_checkpoints",
    "jupyter_execute",
    "_generated",
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"

# Strictness: `-n` (nitpicky) makes every unresolved reference a warning and `-W` an error.
# Nothing outside this repository can be fetched at build time (no intersphinx), so references
# into jax, optax, chex, flax, numpy and the standard library render as plain text; every
# reference to adamjax itself must resolve.
nitpicky = True
_EXTERNAL = r"(jax|jaxlib|optax|chex|flax|numpy|np|jnp|typing|collections|builtins|enum)(\..*)?"
nitpick_ignore_regex = [
    (r"py:.*", _EXTERNAL),
    (r"py:.*", r"(int|float|str|bool|complex|bytes|object|tuple|list|dict|None|Any|Callable)"),
    (r"py:.*", r"(Sequence|Mapping|Iterable|Iterator|NamedTuple|Literal|Optional|Union)(\[.*)?"),
    # optax's own alias inside optax.Updates / optax.Params, shown as written there.
    (r"py:.*", r"ArrayTree"),
]

# autodoc: Google-style docstrings (napoleon); type hints in the parameter descriptions.
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
# Shown by name (optax's alias of the same meaning), not as the private module's ``Any``.
autodoc_type_aliases = {
    "ScalarOrSchedule": "optax.ScalarOrSchedule",
    "_piece.ScalarOrSchedule": "optax.ScalarOrSchedule",
}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
add_module_names = False

# MyST: $...$ and $$...$$ maths, ::: fences, anchors for headings (checked like any reference).
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "attrs_inline"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# Execution: every code cell runs at build time; an exception fails the build.
# While writing a page, `ADAMJAX_DOCS_EXECUTE=cache` re-runs only what changed, and
# `ADAMJAX_DOCS_SKIP_EXECUTION="notebooks/*"` (comma-separated globs) leaves those unexecuted.
nb_execution_mode = os.environ.get("ADAMJAX_DOCS_EXECUTE", "force")
nb_execution_excludepatterns = [
    p for p in os.environ.get("ADAMJAX_DOCS_SKIP_EXECUTION", "").split(",") if p
]
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")

html_theme = "sphinx_book_theme"
html_title = f"adamjax {release}"
# No source or launch buttons: the rendered notebooks are copies made at build time, so those
# buttons would point at files that are not in the repository. Each notebook carries its own
# Colab badge, which opens the file in examples/notebooks/.
html_theme_options = {
    "repository_url": REPOSITORY,
    "use_repository_button": True,
    "show_toc_level": 2,
    # sphinx-book-theme 1.4 puts a search field in the primary sidebar; pydata-sphinx-theme
    # 0.20's default navbar_persistent adds a second one to the header. One is enough.
    "navbar_persistent": [],
}


def _skip_member(app, what, name, obj, skip, options):
    """Documents each object once.

    The fields of a ``NamedTuple`` are described by its docstring's Attributes section, so their
    generated "Alias for field number" entries are skipped; a module's member that is
    re-exported at the top level is documented there (``adamjax.adam``), not twice.
    """
    doc = getattr(obj, "__doc__", None) or ""
    if what == "class" and doc.startswith("Alias for field number"):
        return True
    if what == "module" and name in adamjax.__all__ and getattr(adamjax, name) is obj:
        return True
    return None


def _repository_link(base: str, check_name: bool):
    """A role linking to a file of the repository, which must exist when the docs are built.

    ``{test}`test_golden.py::test_matches_golden_trajectory[torch_adam]``` links to
    ``tests/test_golden.py`` and checks that the file defines that test and mentions each
    ``-``-separated part of the case id (a ``Class::`` prefix is allowed), so a renamed or
    deleted test fails the strict build instead of leaving the page's claim unbacked.
    ``{src}`examples/mlp_digits.py``` links to any file.

    Written ``{test}`torch_adam <test_golden.py::test_matches_golden_trajectory[torch_adam]>```,
    the link shows the short title (as plain text, so that it wraps in a table cell), with the
    full test id as its tooltip; the test is checked the same way.
    """

    def role(name, rawtext, text, lineno, inliner, options=None, content=None):
        has_title, title, target = split_explicit_title(utils.unescape(text))
        path, _, test = target.partition("::")
        file = ROOT / base / path
        problem = None
        if not file.is_file():
            problem = f"{{{name}}} role: {base}/{path} does not exist"
        elif check_name and test:
            function, _, case = test.split("::")[-1].partition("[")
            source = file.read_text(encoding="utf-8")
            pattern = rf"^\s*(async\s+)?(def|class)\s+{re.escape(function)}\b"
            missing = [part for part in case.rstrip("]").split("-") if part not in source]
            if not re.search(pattern, source, re.MULTILINE):
                problem = f"{{{name}}} role: {base}/{path} defines no {function}"
            elif case and missing:
                problem = f"{{{name}}} role: {base}/{path} never mentions {missing}"
        if problem:
            message = inliner.reporter.warning(problem, line=lineno)
            return [inliner.problematic(rawtext, rawtext, message)], [message]
        url = f"{REPOSITORY}/blob/main/{base + '/' if base else ''}{path}"
        shown = f"{base}/{target}" if base else target
        if has_title:
            return [nodes.reference(rawtext, title, refuri=url, reftitle=shown)], []
        return [nodes.reference(rawtext, "", nodes.literal(shown, shown), refuri=url)], []

    return role


def _private_module_of(name: str) -> str | None:
    """The private adamjax module (``adamjax._formats``) that defines ``name``, or None."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(adamjax.__path__):
        if info.name.startswith("_"):
            module = importlib.import_module(f"adamjax.{info.name}")
            if hasattr(module, name):
                return module.__name__
    return None


def _resolve_in_package(app, env, node, contnode):
    """Resolves a docstring's Python reference that the current module context misses.

    The API page documents the public names only, at the top level (``adamjax.q8``), while the
    docstrings live in private modules: ``:func:`q8``` written in ``adamjax._formats``, or a type
    ``adamjax._moments.StepScalars`` in a signature, resolves to the public name. A reference to a
    private helper or module that exists but is not public (``:func:`radam_rectification```,
    ``:mod:`adamjax._swats```) renders as code without a link. Any other reference stays a
    warning, so the strict build fails on it.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    target = re.sub(r"^adamjax\._\w+\.", "", target).removeprefix("adamjax.")
    domain = env.get_domain("py")
    candidates = domain.find_obj(env, None, None, f"adamjax.{target}", None, 0)
    if candidates:
        name, _ = candidates[0]
        return domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], name, node, contnode
        )
    if node["reftype"] == "mod" and re.fullmatch(r"_\w+", target):
        # A private module: it exists if importable; its docstring is not on the site.
        try:
            __import__(f"adamjax.{target}")
        except ImportError:
            return None
        return contnode
    head = target.split(".", 1)[0]
    if head and not head.startswith("__") and _private_module_of(head) is not None:
        return contnode
    return None


def _alias_in_unions(app, what, name, obj, options, signature, return_annotation):
    """Writes a type alias inside a union by its name.

    autodoc records ``ScalarOrSchedule | None`` as ``TypeAliasForwardRef('...') | None`` (it
    substitutes ``autodoc_type_aliases`` only at the top level). This runs after autodoc has
    recorded the annotations for the parameter descriptions and rewrites them.
    """
    for recorded in app.env.temp_data.get("annotations", {}).values():
        for key, text in recorded.items():
            recorded[key] = re.sub(r"TypeAliasForwardRef\('([\w.]+)'\)", r"\1", text)


def setup(app):
    app.connect("autodoc-process-signature", _alias_in_unions)
    app.add_role("test", _repository_link("tests", check_name=True))
    app.add_role("src", _repository_link("", check_name=False))
    app.connect("autodoc-skip-member", _skip_member)
    app.connect("missing-reference", _resolve_in_package)
