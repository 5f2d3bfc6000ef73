"""Self-checks for chapter 1.4, Audits at scale.

Each check computes the reference with the package (:func:`~trustml_lab.fairness.group_confusion_counts`,
:func:`~trustml_lab.fairness.fairness_report_from_counts`, tested against the in-memory
:func:`~trustml_lab.fairness.fairness_report`), then runs the learner's function on copies of
seeded inputs (:func:`~._core.call_learner`), on more than one case, and names the case and
the learner's value when they differ. The SQL check runs the learner's query on two
engines, DuckDB and SQLite, as it is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .. import fairness as fair
from ._core import CheckFailed, as_array, call_learner, passed, require, require_close

__all__ = ["check_eod_from_counts", "check_selection_rate_sql"]


def _decisions(seed: int, n: int, codes: tuple[int, ...], sizes: tuple[float, ...]) -> pd.DataFrame:
    """A seeded table of decisions: labels, predictions, group codes (each present) with unequal sizes, weights."""
    rng = np.random.default_rng(seed)
    group = rng.choice(np.array(codes), size=n, p=np.array(sizes) / sum(sizes))
    group[:len(codes)] = codes
    index = np.searchsorted(np.array(sorted(codes)), group)
    y_true = (rng.random(n) < np.linspace(0.25, 0.6, len(codes))[index]).astype(np.int64)
    error = np.linspace(0.35, 0.1, len(codes))[index]
    approved = np.where(rng.random(n) < error, 1 - y_true, y_true).astype(np.int64)
    return pd.DataFrame({"y_true": y_true, "approved": approved, "group": group,
                         "weight": rng.uniform(0.2, 3.0, n)})


def check_eod_from_counts(eod_from_counts: Callable[[pd.DataFrame, list], Any]) -> None:
    """Check ``eod_from_counts(counts, privileged) -> number``: the equal opportunity difference of a counts table.

    ``counts`` is the table of :meth:`~trustml_lab.fairness.ConfusionCounts.to_frame`
    (``group_code``, ``n_rows``, ``tn``, ``fp``, ``fn``, ``tp``), ``privileged`` a list of
    codes; the answer is ``TPR_u - TPR_p`` of the pooled sides, as aif360 and
    :func:`~trustml_lab.fairness.fairness_report` compute it. Three tables: two groups;
    four groups with two privileged codes of very different sizes (pooling the counts of
    a side, then dividing, differs from averaging its groups' TPRs); weighted counts.
    """
    name = "eod_from_counts"
    cases = [
        (_decisions(0, 600, (0, 1), (1, 1)), [1], False, "two groups"),
        (_decisions(1, 900, (0, 1, 2, 5), (4, 3, 1, 8)), [2, 5], False,
         "four groups, privileged codes 2 and 5 of very different sizes"),
        (_decisions(2, 700, (0, 1, 3), (2, 1, 1)), [0], True, "three groups, weighted counts"),
    ]
    for table, privileged, weighted, case in cases:
        counts = fair.group_confusion_counts(table["y_true"], table["approved"], table["group"],
                                             sample_weight=table["weight"] if weighted else None)
        expected = fair.fairness_report_from_counts(counts, privileged=privileged).equal_opportunity_difference
        got = call_learner(name, eod_from_counts, counts.to_frame(), list(privileged))
        require_close(got, expected, name, case=case, what="the equal opportunity difference",
                      hint="pool each side first: TPR = sum(tp) / (sum(tp) + sum(fn)) over the side's rows of the "
                           "table (privileged: group_code in the list; unprivileged: every other code), then "
                           "unprivileged minus privileged; the mean of the groups' TPRs is not the side's TPR")
    passed(name, "pooled TPR difference matches fairness_report_from_counts on 3 tables")


def _run(query: str, table: pd.DataFrame, engine: str) -> pd.DataFrame:
    """``query`` on ``table`` (named ``decisions``) with DuckDB or SQLite, its result as a DataFrame."""
    if engine == "duckdb":
        import duckdb

        con = duckdb.connect()
        try:
            con.register("decisions", table)
            return con.sql(query).df()
        finally:
            con.close()
    with sqlite3.connect(":memory:") as lite:
        table.to_sql("decisions", lite, index=False)
        return pd.read_sql_query(query, lite)


def check_selection_rate_sql(selection_rate_sql: Callable[[str, str, str], str]) -> None:
    """Check ``selection_rate_sql(source, prediction, group) -> str``: a portable SQL query of selection rates.

    The query reads the table ``source`` and returns one row per group with the columns
    ``group_code`` and ``selection_rate`` (the share of rows whose ``prediction`` is 1).
    The check runs it, as it is, on DuckDB and on SQLite, over a table named
    ``decisions`` (columns ``y_true``, ``approved``, ``group``, ``weight``; the group
    column is named ``group``, an SQL keyword, so the query must quote it: ``"group"``),
    and compares with :func:`~trustml_lab.fairness.fairness_report`'s selection rates.
    SQLite divides integers as integers: ``SUM(approved) / COUNT(*)`` is 0 there.
    """
    name = "selection_rate_sql"
    table = _decisions(3, 800, (0, 1, 4), (3, 2, 1))
    counts = fair.group_confusion_counts(table["y_true"], table["approved"], table["group"])
    report = fair.fairness_report_from_counts(counts, privileged=[4])
    expected = report.groups["selection_rate"]
    query = call_learner(name, selection_rate_sql, "decisions", "approved", "group")
    require(isinstance(query, str), name, f"return the query as a string, got {type(query).__name__}")
    for engine in ("duckdb", "sqlite"):
        try:
            result = _run(query, table, engine)
        except Exception as err:  # the learner's SQL: any engine error is a hint
            raise CheckFailed(f"{name}: not yet. {engine} could not run your query: {type(err).__name__}: {err}. "
                              "(The column group needs quotes, \"group\": GROUP is an SQL keyword)") from err
        missing = [c for c in ("group_code", "selection_rate") if c not in result.columns]
        require(not missing, name, f"on {engine}: name the result's columns group_code and selection_rate "
                                   f"(AS ...); got the columns {list(result.columns)}")
        require(len(result) == len(expected), name,
                f"on {engine}: expected one row per group ({len(expected)}), got {len(result)}: GROUP BY the group")
        got = result.set_index("group_code")["selection_rate"]
        codes = as_array(got.index, name, "the group codes")
        require(np.array_equal(np.sort(codes), expected.index.to_numpy(dtype=np.float64)), name,
                f"on {engine}: expected the group codes {expected.index.tolist()}, got {np.sort(codes).tolist()}")
        rates = as_array(got.sort_index().to_numpy(), name, "the selection rates")
        integer = engine == "sqlite" and np.all(rates == np.round(rates))
        require_close(rates, expected.to_numpy(), name, case=f"on {engine}", what="the selection rates",
                      hint=("SQLite divided integers as integers: write 1.0 * SUM(...) / COUNT(*), or AVG(CASE "
                            "WHEN ... THEN 1.0 ELSE 0.0 END)") if integer else
                           "the share of rows with prediction 1 in each group: SUM(CASE WHEN approved = 1 THEN 1 "
                           "ELSE 0 END) over COUNT(*)")
    passed(name, "your query gives the selection rates on DuckDB and on SQLite, unchanged")
