"""Every ```python block of README.md runs as written, in a fresh namespace, and prints."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", README.read_text(), flags=re.S | re.M)


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs_as_written(index: int) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(BLOCKS[index], f"README.md python block {index}", "exec"), {})
    assert out.getvalue().strip(), "each block prints its result"


def test_quick_start_trains_and_q8_stores_eight_bits() -> None:
    printed = []
    for block in (BLOCKS[0], BLOCKS[2]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, "README.md", "exec"), {})
        printed.append(out.getvalue())
    first, last = (float(x) for x in re.findall(r"loss (\S+) -> (\S+)", printed[0])[0])
    assert last < 0.1 * first
    assert printed[1].split() == ["QuantizedArray", "uint8", "float32"]


def test_the_readme_links_to_files_that_exist() -> None:
    """Every relative link of the README (docs pages, examples, the license) names a file or
    folder of the repository; ``docs/api.md`` became ``docs/api/index.md`` once, silently."""
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    relative = [t for t in targets if not t.startswith(("http://", "https://", "mailto:"))]
    assert len(relative) > 10
    missing = [t for t in relative if not (README.parent / t).exists()]
    assert not missing, missing
