"""benchmarks.gpu_report keeps working on a CPU (tiny trees): the report a GPU run records."""

import json
import math

import pytest

from benchmarks import gpu_report

pytestmark = pytest.mark.slow


def test_quick_report_has_every_row_and_the_copy_bandwidth(tmp_path):
    report = gpu_report.main(["--quick", "--rounds", "1", "--steps", "1", "--out", str(tmp_path)])
    names = {c.name for c in gpu_report.contenders() if c.reference}
    assert set(report["results"]) == {"1x64k", "16x4k"}
    for result in report["results"].values():
        assert set(result["rows"]) == names
        for name, row in result["rows"].items():
            assert row["ms"] > 0 and row["reference_ms"] > 0 and math.isfinite(row["ratio"])
            assert ("of_copy_bandwidth" in row) == (name in ("adamjax.adam", "adamjax.adamw"))
    assert report["copy_bandwidth"]["gb_per_s"] > 0
    [path] = tmp_path.glob("gpu_report_*_quick.json")
    assert json.loads(path.read_text())["results"].keys() == report["results"].keys()
    table = path.with_suffix(".md").read_text().splitlines()
    assert table[0].startswith("Copy bandwidth: ")
    assert len([line for line in table if line.startswith("| 16x4k |")]) == len(names)
