"""Tables of calls for every public name: one file per module, read by two test modules.

Each ``tests/api_tables/<module>.py`` defines

- ``MODULE``: the module whose ``__all__`` it covers;
- ``VALID``: ``{name: build}``, where ``build()`` returns ``(args, kwargs)`` for a small
  call that must succeed. ``tests/test_bad_inputs.py`` sweeps it (every numeric knob
  set to NaN, +inf and -inf; every floating array given a NaN) and
  ``tests/test_api_conventions.py`` uses it to check the model-mode policy;
- ``BAD``: a list of :class:`Bad` cases, each a call that must raise ``ValueError`` or
  ``TypeError`` naming ``arg``, within the timeout;
- ``EXEMPT``: ``{name: reason}`` for public names that are not called (a result
  record, an exception class, a protocol);
- ``KNOWN_FAILURES``: ids of sweep or bad cases that fail today, run as strict xfails.
  The set shrinks to empty as the causes are fixed; an entry that starts passing fails
  the suite until it is removed.
- ``CONVENTION_EXCEPTIONS``: ``{name: reason}`` for names allowed to break a convention
  of ``tests/test_api_conventions.py`` (a reference library's established name).
- ``PASSES_NON_FINITE``: ``{sweep id: reason}`` for the rare argument that is moved, not
  computed with (a splitter's arrays): the sweep then checks the call still succeeds.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

Build = Callable[[], tuple[tuple, dict]]


@dataclass(frozen=True)
class Bad:
    """One bad call: ``name`` called with ``build()``'s arguments must raise naming ``arg``."""

    name: str
    build: Build
    arg: str
    id: str
    errors: tuple[type[BaseException], ...] = (ValueError, TypeError)
    match: str | None = None  # a further regex the message must contain


@dataclass
class Table:
    module: ModuleType
    valid: dict[str, Build]
    bad: list[Bad]
    exempt: dict[str, str]
    known_failures: set[str] = field(default_factory=set)
    convention_exceptions: dict[str, str] = field(default_factory=dict)
    passes_non_finite: dict[str, str] = field(default_factory=dict)


def tables() -> list[Table]:
    found = []
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        found.append(Table(
            module=mod.MODULE, valid=dict(mod.VALID), bad=list(getattr(mod, "BAD", [])),
            exempt=dict(getattr(mod, "EXEMPT", {})), known_failures=set(getattr(mod, "KNOWN_FAILURES", set())),
            convention_exceptions=dict(getattr(mod, "CONVENTION_EXCEPTIONS", {})),
            passes_non_finite=dict(getattr(mod, "PASSES_NON_FINITE", {})),
        ))
    return found


def resolve(module: ModuleType, name: str) -> Any:
    """The callable ``name``: a function or class of ``module``, or ``"Class.method"``
    (unbound: the table's ``build`` passes the instance as the first argument)."""
    target: Any = module
    for part in name.split("."):
        target = getattr(target, part)
    return target
