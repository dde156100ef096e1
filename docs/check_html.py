"""Checks a built HTML site: every internal link lands, and each page has one search field.

Sphinx's ``-n`` checks the references it resolves, but not the ``href``s that extensions and
themes write directly: viewcode's ``[source]`` and ``[docs]`` links between the API pages and
the highlighted modules, the theme's navigation, the links of the rendered notebooks. Run it on
the output of the strict build, as CI does (``.ci/run``)::

    sphinx-build -W --keep-going -n -q -b html docs "$html"
    python docs/check_html.py "$html"

It exits 1 and lists each problem (``page.html: ...``):

- a link to a page of the site that does not exist, or to an ``#anchor`` that no element of its
  page has as ``id`` (or an ``<a>`` as ``name``). Links out of the site (``https:``,
  ``mailto:``), to files that are not HTML (images, ``_sources``) and the bare ``href="#"`` the
  theme uses for scripts are not checked;
- a page with more than one search field (``search-button-field``): pydata-sphinx-theme's
  header adds one next to sphinx-book-theme's sidebar field unless ``navbar_persistent`` is
  emptied (``docs/conf.py``).

``tests/test_docs.py`` runs these checks on small hand-written sites, so they are tested
without a build.
"""

from __future__ import annotations

import argparse
import sys
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit


class _Page(HTMLParser):
    """The ids (and ``name``s of ``<a>``) a page defines, and the ``href``s it links to."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.search_fields = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])  # type: ignore[arg-type]
        if tag == "a" and values.get("name"):
            self.ids.add(values["name"])  # type: ignore[arg-type]
        if tag in ("a", "link", "area") and values.get("href") is not None:
            self.hrefs.append(values["href"])  # type: ignore[arg-type]
        if "search-button-field" in (values.get("class") or "").split():
            self.search_fields += 1


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def parse_site(root: Path) -> dict[str, _Page]:
    """Every HTML page under ``root``, by its path relative to ``root`` (``"api/index.html"``)."""
    root = root.resolve()
    return {p.relative_to(root).as_posix(): parse(p) for p in sorted(root.rglob("*.html"))}


def duplicate_search_fields(parsed: dict[str, _Page]) -> list[str]:
    """``"page.html: N search fields"`` for each page with more than one."""
    return [
        f"{name}: {page.search_fields} search fields (one expected)"
        for name, page in parsed.items()
        if page.search_fields > 1
    ]


def broken_links(parsed: dict[str, _Page]) -> list[str]:
    """``"page.html: href (why)"`` for each internal link of the site that points at a
    missing HTML page or a missing anchor."""
    problems = []
    for name, page in parsed.items():
        for href in page.hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href in ("", "#"):
                continue
            if parts.path:
                target = PurePosixPath(name).parent / unquote(parts.path)
                # Normalise "a/../b" without touching the filesystem.
                resolved: list[str] = []
                for part in target.parts:
                    if part == "..":
                        if resolved:
                            resolved.pop()
                    elif part != ".":
                        resolved.append(part)
                target_name = "/".join(resolved)
                if target_name.endswith("/") or not PurePosixPath(target_name).suffix:
                    target_name = f"{target_name.rstrip('/')}/index.html".lstrip("/")
            else:
                target_name = name
            if not target_name.endswith(".html"):
                continue
            if target_name not in parsed:
                problems.append(f"{name}: {href} (no page {target_name})")
                continue
            anchor = unquote(parts.fragment)
            if anchor and anchor not in parsed[target_name].ids:
                problems.append(f"{name}: {href} (no id {anchor!r} in {target_name})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="the output directory of sphinx-build -b html")
    args = parser.parse_args(argv)
    if not (args.html / "index.html").is_file():
        print(f"{args.html} holds no index.html: not a built HTML site", file=sys.stderr)
        return 2
    parsed = parse_site(args.html)
    links, search = broken_links(parsed), duplicate_search_fields(parsed)
    for problem in links + search:
        print(problem)
    checked = sum(len(page.hrefs) for page in parsed.values())
    print(
        f"{len(parsed)} pages, {checked} links: {len(links)} broken, "
        f"{len(search)} page(s) with more than one search field",
        file=sys.stderr,
    )
    return 1 if links or search else 0


if __name__ == "__main__":
    sys.exit(main())
