"""Learner self-checks, one module per chapter, loaded on first use.

A check takes the learner's answer (a value or a function), compares it with the
reference computed by the package, and prints ``PASS <name>: ...`` or raises
:class:`CheckFailed` with a hint that says what is wrong. Notebooks call them as
``checks.<chapter>.check_<thing>(answer)``.

>>> from trustml_lab import checks
>>> checks.getting_started.check_base_rates({"Female": 0.109, "Male": 0.304})
PASS base_rates: the share of >50K incomes per sex matches
"""

from __future__ import annotations

import importlib
from typing import Any

from ._core import CheckFailed, as_array, as_number, call_learner, passed, require, require_close

__all__ = ["CheckFailed", "as_array", "as_number", "call_learner", "passed", "require", "require_close"]

_CHAPTERS = ("getting_started", "fairness", "robustness", "interpret", "privacy", "audit", "distributed", "production",
             "text")


def __getattr__(name: str) -> Any:
    if name in _CHAPTERS:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
