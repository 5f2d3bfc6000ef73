"""trustml_lab.checks: the package of self-checks (the chapters' checks are tested in test_checks_<chapter>.py)."""

import importlib

import pytest

from trustml_lab import checks


def test_unknown_chapter_is_an_attribute_error():
    with pytest.raises(AttributeError):
        checks.no_such_chapter  # noqa: B018


@pytest.mark.parametrize("chapter", ["getting_started", "fairness", "robustness", "interpret", "privacy"])
def test_every_chapter_loads_on_first_use_and_exports_documented_checks(chapter):
    module = getattr(checks, chapter)
    assert module is importlib.import_module(f"trustml_lab.checks.{chapter}")
    names = [n for n in module.__all__ if n.startswith("check_")]
    assert names, f"checks.{chapter} exports no check"
    for name in names:
        assert (getattr(module, name).__doc__ or "").strip(), f"checks.{chapter}.{name} has no docstring"


def test_check_failed_is_an_assertion_error_so_a_failed_check_stops_a_notebook_cell():
    assert issubclass(checks.CheckFailed, AssertionError)
