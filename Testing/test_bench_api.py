"""The benchmarks run from Python with typed options; their reports come from one module."""

from __future__ import annotations

import pytest

from synthetic_data import CLASSES, write_case
from weakseg.bench.reports import scribble_table
from weakseg.bench.scribbles import ScribbleBenchOptions, check_options, run_scribble_bench
from weakseg.errors import WeakSegInputError


def test_the_scribble_bench_runs_from_python(tmp_path):
    pytest.importorskip("slicer", reason="growcut needs slicer-core")
    data = tmp_path / "data"
    data.mkdir()
    for index in range(2):
        write_case(data, f"case{index:02d}", seed=index)
    options = ScribbleBenchOptions(data_dir=str(data), out=str(tmp_path / "out"), methods=("growcut",),
                                   class_names=CLASSES.split(","), overlays=0)
    result = run_scribble_bench(options)
    assert [row["case"] for row in result.rows] == ["case00", "case01"]
    assert result.summary[0]["method"] == "growcut" and result.summary[0]["bright"] > 0.5
    assert result.table == scribble_table(result.summary, ["bright", "dim"], 2)
    assert (tmp_path / "out" / "summary.csv").is_file() and not list((tmp_path / "out").glob("overlay_*"))


def test_the_scribble_bench_checks_its_options_before_any_work(tmp_path):
    with pytest.raises(WeakSegInputError, match="unknown"):
        check_options(ScribbleBenchOptions(data_dir=str(tmp_path), methods=("nothing",)))
    with pytest.raises(WeakSegInputError, match="which --methods does not run"):
        check_options(ScribbleBenchOptions(data_dir=str(tmp_path), methods=("growcut",), models={"mine": "m.pt"}))
    assert check_options(ScribbleBenchOptions(data_dir=str(tmp_path), methods=("mine+scribbles", "weakseg"),
                                              models={"mine": "m.pt"})) == ["mine"]
