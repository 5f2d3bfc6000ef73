"""The benchmark harness: medians, speedups, value checks, RESULTS.md sections."""

import importlib
import inspect

import pytest

from benchmarks import __main__ as bench_main
from benchmarks._harness import Case, run_case


def test_run_case_reports_speedup_and_checks_values():
    def check(ours, reference):
        if ours != reference:
            raise AssertionError("values differ")

    case = Case("sum", ours=lambda: sum(range(10)), reference=lambda: sum(range(10)),
                reference_name="builtin", check=check, min_speedup=0.0, repeats=3)
    result = run_case(case)
    assert result.same_values and result.meets_target and result.speedup > 0
    assert result.ours_s > 0 and result.reference_s > 0
    bad = Case("sum", ours=lambda: 1, reference=lambda: 2, reference_name="x", check=check)
    with pytest.raises(AssertionError, match="values differ"):
        run_case(bad)


def test_results_sections_are_replaced_not_duplicated(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_main, "RESULTS", tmp_path / "RESULTS.md")
    bench_main.update_results({"demo": "<!-- chapter:demo -->\nold\n<!-- end:demo -->"})
    bench_main.update_results({"demo": "<!-- chapter:demo -->\nnew\n<!-- end:demo -->"})
    text = (tmp_path / "RESULTS.md").read_text()
    assert "new" in text and "old" not in text and text.count("chapter:demo") == 1


@pytest.mark.parametrize("chapter", bench_main.available_chapters())
def test_every_benchmark_case_runs_at_a_tiny_size(chapter):
    """Each chapter's cases, at smoke size, run once and agree with their reference."""
    module = importlib.import_module(f"benchmarks.{chapter}")
    assert "smoke" in inspect.signature(module.cases).parameters, f"benchmarks/{chapter}.py: cases(*, smoke=False)"
    for case in module.cases(smoke=True):
        result = run_case(case, smoke=True)
        assert result.same_values in (True, None) and result.ours_s > 0, case.name
