"""Bad input, refused everywhere: a ValueError or TypeError naming the argument, in time.

Runs the tables of ``tests/api_tables/`` (see its docstring) against every name in
every module's ``__all__``:

- every public name has a valid call (or an exemption with a reason), and it succeeds;
- sweep: each numeric knob of that call set to NaN, +inf and -inf, and each floating
  array argument given one NaN, is refused with an error that names the argument: no
  finite result from non-finite input;
- the table's explicit bad cases (hangs, silent wrong answers, deep tracebacks) are
  refused the same way;

each call under a per-call timeout, so a hang fails the test instead of the suite.
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from _limits import CallTimedOut, time_limit
from api_tables import Bad, Table, resolve, tables

TIMEOUT_S = 20
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
TABLES = tables()





def call(table: Table, name: str, args: tuple, kwargs: dict):
    with time_limit(TIMEOUT_S), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return resolve(table.module, name)(*args, **kwargs)


def bind_names(table: Table, name: str, args: tuple, kwargs: dict) -> dict[str, object]:
    """Argument name -> value for one call, positional ones named from the signature
    (extra positional arguments of a ``*args`` parameter as ``args[0]``, ``args[1]``, ...)."""
    target = resolve(table.module, name)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return dict(kwargs)
    params = [p for p in signature.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    star = next((p for p in signature.parameters.values() if p.kind is p.VAR_POSITIONAL), None)
    named = {}
    for i, value in enumerate(args):
        if i < len(params):
            named[params[i].name] = value
        elif star is not None:
            named[f"{star.name}[{i - len(params)}]"] = value
    named.update(kwargs)
    return named


def is_knob(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def is_float_array(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_floating_point() and value.numel() > 0
    if isinstance(value, np.ndarray):
        return value.dtype.kind == "f" and value.size > 0
    return False


def with_nan(value):
    out = value.clone() if isinstance(value, torch.Tensor) else value.copy()
    out.reshape(-1)[0] = math.nan
    return out


def sweep_cases():
    cases = []
    for table in TABLES:
        mod = table.module.__name__.split(".")[-1]
        for name, build in table.valid.items():
            args, kwargs = build()
            for arg, value in bind_names(table, name, args, kwargs).items():
                if is_knob(value):
                    for label in NON_FINITE:
                        cases.append((table, name, build, arg, label, f"{mod}.{name}[{arg}={label}]"))
                elif is_float_array(value):
                    cases.append((table, name, build, arg, "nan-entry", f"{mod}.{name}[{arg} has NaN]"))
    return cases


SWEEP = sweep_cases()
BAD = [(table, bad, f"{table.module.__name__.split('.')[-1]}.{bad.name}[{bad.id}]")
       for table in TABLES for bad in table.bad]
VALID = [(table, name, f"{table.module.__name__.split('.')[-1]}.{name}")
         for table in TABLES for name in table.valid]


@contextmanager
def unless_known(table: Table, case_id: str):
    """Run the case; a case listed in KNOWN_FAILURES must still fail (strict xfail)."""
    listed = case_id.split(".", 1)[1] in table.known_failures
    try:
        yield
    except (AssertionError, pytest.fail.Exception) as err:
        if listed:
            pytest.xfail(f"listed in KNOWN_FAILURES: {err}")
        raise
    if listed:
        pytest.fail(f"{case_id} passes now: remove it from KNOWN_FAILURES in tests/api_tables/")


@pytest.mark.parametrize("table", TABLES, ids=[t.module.__name__ for t in TABLES])
def test_every_public_name_has_a_valid_call_or_an_exemption(table):
    names = set(table.module.__all__)
    covered = {n.split(".")[0] for n in table.valid} | set(table.exempt)
    assert not names - covered, f"add a VALID call or an EXEMPT reason for {sorted(names - covered)}"
    unknown = covered - names
    assert not unknown, f"the table names things not in __all__: {sorted(unknown)}"
    ids = {c[-1].split(".", 1)[1] for c in SWEEP + BAD if c[0] is table}
    stale = {k for k in table.known_failures - ids if "[convention: " not in k}
    assert not stale, f"KNOWN_FAILURES lists cases that do not exist: {sorted(stale)}"
    stale = set(table.passes_non_finite) - ids
    assert not stale, f"PASSES_NON_FINITE lists cases that do not exist: {sorted(stale)}"


@pytest.mark.parametrize("table, name", [v[:2] for v in VALID], ids=[v[2] for v in VALID])
def test_valid_call_succeeds(table, name):
    args, kwargs = table.valid[name]()
    call(table, name, args, kwargs)


def expect_refusal(table: Table, name: str, args: tuple, kwargs: dict, arg: str,
                   errors=(ValueError, TypeError), match: str | None = None):
    try:
        result = call(table, name, args, kwargs)
    except CallTimedOut as err:
        pytest.fail(f"{name}: {err} (bad {arg!r})")
    except errors as err:
        message = str(err)
        assert arg.split("[")[0] in message, f"the message should name {arg!r}: {message!r}"
        if match is not None:
            import re
            assert re.search(match, message), f"the message should match {match!r}: {message!r}"
        return
    except Exception as err:  # noqa: BLE001 - the point: any other exception is a defect
        pytest.fail(f"{name}: bad {arg!r} raised {type(err).__name__}: {err}, expected {errors}")
    pytest.fail(f"{name}: bad {arg!r} was accepted and returned {type(result).__name__}")


@pytest.mark.parametrize("table, name, build, arg, label",
                         [c[:5] for c in SWEEP], ids=[c[5] for c in SWEEP])
def test_non_finite_input_is_refused(table, name, build, arg, label, request):
    args, kwargs = build()
    named = bind_names(table, name, args, kwargs)
    positional = list(named)[:len(args)]
    bad = NON_FINITE[label] if label in NON_FINITE else with_nan(named[arg])
    if arg in positional:
        args = tuple(bad if n == arg else a for n, a in zip(positional, args))
    else:
        kwargs = {**kwargs, arg: bad}
    short = request.node.callspec.id.split(".", 1)[1]
    if short in table.passes_non_finite:  # moved, not computed with: it must still work
        call(table, name, args, kwargs)
        return
    with unless_known(table, request.node.callspec.id):
        expect_refusal(table, name, args, kwargs, arg)


@pytest.mark.parametrize("table, bad", [b[:2] for b in BAD], ids=[b[2] for b in BAD])
def test_bad_input_is_refused(table, bad: Bad, request):
    args, kwargs = bad.build()
    with unless_known(table, request.node.callspec.id):
        expect_refusal(table, bad.name, args, copy.copy(kwargs), bad.arg, bad.errors, bad.match)


def test_every_public_module_has_a_table_and_no_known_failures():
    """A new public module gets a table (its names are swept like every other), and no table
    carries a known failure: the lists only existed while the hardening of issue 9 landed."""
    import pkgutil

    import trustml_lab
    public = {"trustml_lab"} | {
        info.name for info in pkgutil.walk_packages(trustml_lab.__path__, prefix="trustml_lab.")
        if not any(part.startswith("_") for part in info.name.split(".")) and ".checks" not in info.name
        and not info.name.endswith("__main__")}
    covered = {t.module.__name__ for t in TABLES}
    assert not public - covered, f"add a table in tests/api_tables/ for {sorted(public - covered)}"
    listed = {t.module.__name__: sorted(t.known_failures) for t in TABLES if t.known_failures}
    assert not listed, f"KNOWN_FAILURES must be empty: {listed}"
