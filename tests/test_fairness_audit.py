"""trustml_lab.fairness, audits at scale: per-group confusion counts, shard-and-merge, the report
from counts, the portable SQL of ``audit_sql`` and the Parquet audits on DuckDB and Polars.

The in-memory :func:`fairness_report` (tested against aif360 and fairlearn in
``tests/test_fairness.py``) is the reference: every path here must give its report, to
1e-12 from counts (hypothesis-drawn weighted tables, shards in any order) and to the
rounding of float64 sums from the engines. Bad input to the new names is also in the
table of ``tests/api_tables/fairness.py``; the cases here cover both engines.
"""

from __future__ import annotations

import math
import sqlite3

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trustml_lab import fairness as fair
from trustml_lab.data import load_adult

TOL = dict(rtol=1e-12, atol=1e-12)
ENGINES = ("duckdb", "polars")


# --------------------------------------------------------------------------- helpers

@st.composite
def tables(draw, weighted=None):
    """Random labelled tables with their privileged codes.

    Group codes are drawn from small codes (indexed directly), sparse large codes
    (re-indexed) or a boolean mask; some codes may have only zero-weight rows; both
    sides of the report have rows of positive weight.
    """
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["small", "sparse", "mask"]))
    num_groups = 2 if kind == "mask" else draw(st.integers(2, 6))
    n = draw(st.integers(max(6, 2 * num_groups), 400))
    use_weights = draw(st.booleans()) if weighted is None else weighted
    rng = np.random.default_rng(seed)
    index = rng.integers(0, num_groups, n)
    index[:num_groups] = np.arange(num_groups)
    if kind == "small":
        values = np.sort(rng.choice(40, num_groups, replace=False))
    elif kind == "sparse":
        values = np.sort(rng.choice(2**40, num_groups, replace=False))
    else:
        values = np.array([False, True])
    group = values[index]
    base = rng.uniform(0.05, 0.95, num_groups)
    y_true = (rng.random(n) < base[index]).astype(np.int64)
    y_pred = np.where(rng.random(n) < draw(st.floats(0.0, 1.0)), y_true, 1 - y_true)
    weights = None
    if use_weights:
        weights = rng.uniform(0.1, 3.0, n)
        weights[rng.random(n) < 0.1] = 0.0  # zero weights: the row still makes its group occur
        weights[:num_groups] = 1.0  # every code has weight somewhere
    if kind == "mask":
        privileged = None
    else:
        chosen = rng.random(num_groups) < 0.5
        chosen[rng.integers(num_groups)] = True
        chosen[(np.flatnonzero(chosen)[0] + 1) % num_groups] = False  # both sides occupied
        privileged = [int(v) for v in values[chosen]]
    return y_true, y_pred, group, weights, privileged


def assert_same_report(ours: fair.FairnessReport, reference: fair.FairnessReport, **tol) -> None:
    tol = {**TOL, **tol}
    np.testing.assert_allclose(ours.metrics().to_numpy(), reference.metrics().to_numpy(), equal_nan=True, **tol)
    assert list(ours.groups.index) == list(reference.groups.index)
    assert list(ours.groups.columns) == list(reference.groups.columns)
    np.testing.assert_allclose(ours.groups.to_numpy(), reference.groups.to_numpy(), equal_nan=True, **tol)
    assert ours.privileged == reference.privileged and ours.unprivileged == reference.unprivileged


def shards_of(arrays, cuts):
    """The rows of ``arrays`` (None passes through) cut at the sorted positions ``cuts``."""
    bounds = [0, *cuts, len(arrays[0])]
    return [[None if a is None else a[lo:hi] for a in arrays] for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


# --------------------------------------------------------------------------- counts in memory

@settings(max_examples=60, deadline=None)
@given(tables())
def test_the_report_from_counts_equals_the_in_memory_report(table):
    y_true, y_pred, group, weights, privileged = table
    counts = fair.group_confusion_counts(y_true, y_pred, group, sample_weight=weights)
    ours = fair.fairness_report_from_counts(counts, privileged=privileged)
    assert_same_report(ours, fair.fairness_report(y_true, y_pred, group, privileged=privileged,
                                                  sample_weight=weights))


@settings(max_examples=60, deadline=None)
@given(tables(), st.data())
def test_shards_add_up_to_the_counts_of_the_whole_table(table, data):
    y_true, y_pred, group, weights, privileged = table
    n = len(y_true)
    cuts = sorted(data.draw(st.lists(st.integers(1, n - 1), max_size=6), label="cuts"))
    order = data.draw(st.permutations(range(len(cuts) + 1)), label="order")
    parts = shards_of([y_true, y_pred, group, weights], cuts)
    shards = [fair.group_confusion_counts(y, p, g, sample_weight=w) for y, p, g, w in parts]
    merged = sum(shards[i] for i in order if i < len(shards))
    whole = fair.group_confusion_counts(y_true, y_pred, group, sample_weight=weights)
    assert torch.equal(merged.codes, whole.codes) and torch.equal(merged.rows, whole.rows)
    assert merged.is_mask == whole.is_mask
    if weights is None:  # whole numbers: exact in any order
        assert torch.equal(merged.counts, whole.counts)
    else:
        torch.testing.assert_close(merged.counts, whole.counts, **TOL)
    assert_same_report(fair.fairness_report_from_counts(merged, privileged=privileged),
                       fair.fairness_report(y_true, y_pred, group, privileged=privileged, sample_weight=weights))


def test_counts_are_the_rows_of_group_confusion_that_occur():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    group = rng.choice([1, 4, 9], 500)
    weights = rng.uniform(0, 2, 500)
    counts = fair.group_confusion_counts(y_true, y_pred, group, sample_weight=weights)
    table = fair.group_confusion(y_true, y_pred, group, sample_weight=weights)
    assert counts.codes.tolist() == [1, 4, 9]
    assert torch.equal(counts.counts, table[[1, 4, 9]])
    assert counts.rows.tolist() == [int((group == c).sum()) for c in (1, 4, 9)]


def test_a_group_of_zero_weight_rows_occurs_as_in_the_report():
    y, p, g = np.array([1, 0, 1, 1, 0]), np.array([1, 1, 0, 1, 0]), np.array([0, 0, 1, 1, 2])
    w = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    counts = fair.group_confusion_counts(y, p, g, sample_weight=w)
    assert counts.codes.tolist() == [0, 1, 2] and counts.rows.tolist() == [2, 2, 1]
    ours = fair.fairness_report_from_counts(counts, privileged=1)
    reference = fair.fairness_report(y, p, g, privileged=1, sample_weight=w)
    assert list(ours.groups.index) == [0, 1, 2] and math.isnan(ours.groups["tpr"][2])
    assert_same_report(ours, reference)


def test_a_boolean_mask_keeps_privileged_none_working_through_a_merge():
    y, p = np.array([1, 0, 1, 1, 0, 1]), np.array([1, 1, 0, 1, 0, 0])
    mask = np.array([True, False, True, False, True, False])
    a = fair.group_confusion_counts(y[:3], p[:3], mask[:3])
    b = fair.group_confusion_counts(y[3:], p[3:], mask[3:])
    assert a.is_mask and (a + b).is_mask
    assert_same_report(fair.fairness_report_from_counts(a + b), fair.fairness_report(y, p, mask))
    integer = fair.group_confusion_counts(y, p, mask.astype(np.int64))
    assert not (integer + a).is_mask  # a mask merged with codes: privileged must be named
    with pytest.raises(ValueError, match="^privileged"):
        fair.fairness_report_from_counts(integer + a)


def test_merging_is_commutative_associative_and_zero_is_neutral():
    rng = np.random.default_rng(1)
    parts = [fair.group_confusion_counts(rng.integers(0, 2, 50), rng.integers(0, 2, 50), rng.integers(k, k + 3, 50),
                                         sample_weight=rng.uniform(0, 1, 50)) for k in range(3)]
    a, b, c = parts
    for left, right in (((a + b) + c, a + (b + c)), (a + b, b + a), (0 + a, a), (a + 0, a)):
        assert torch.equal(left.codes, right.codes) and torch.equal(left.rows, right.rows)
        torch.testing.assert_close(left.counts, right.counts, **TOL)
    nothing = torch.zeros(0, dtype=torch.long)
    empty = fair.ConfusionCounts(nothing, torch.zeros(0, 2, 2), nothing)
    assert torch.equal((empty + a).counts, a.counts)
    with pytest.raises(TypeError):
        a + 1  # noqa: B018 - only 0 (sum's start) is a neutral number
    with pytest.raises(ValueError, match="^counts: expected the counts of at least one row"):
        fair.fairness_report_from_counts(empty, privileged=1)


def test_the_report_from_counts_refuses_what_the_in_memory_report_refuses():
    y, p, g = np.array([1, 0, 1, 1]), np.array([1, 1, 0, 1]), np.array([0, 0, 1, 1])
    counts = fair.group_confusion_counts(y, p, g)
    for kwargs in ({"privileged": 5}, {"privileged": None}, {"privileged": 1, "unprivileged": [1]},
                   {"privileged": 1, "group_names": ["only one"]}):
        with pytest.raises(ValueError) as ours:
            fair.fairness_report_from_counts(counts, **kwargs)
        with pytest.raises(ValueError) as reference:
            fair.fairness_report(y, p, g, **kwargs)
        assert str(ours.value) == str(reference.value)
    named = fair.fairness_report_from_counts(counts, privileged=1, group_names=["female", "male"])
    assert list(named.groups.index) == ["female", "male"]


def test_the_frame_layout_round_trips_through_pandas_polars_and_arrow():
    rng = np.random.default_rng(2)
    counts = fair.group_confusion_counts(rng.integers(0, 2, 300), rng.integers(0, 2, 300), rng.choice([3, 70_000], 300),
                                         sample_weight=rng.uniform(0, 2, 300))
    frame = counts.to_frame()
    assert tuple(frame.columns) == fair.COUNT_COLUMNS
    for table in (frame, pl.from_pandas(frame), pa.Table.from_pandas(frame)):
        back = fair.ConfusionCounts.from_frame(table)
        assert torch.equal(back.codes, counts.codes) and torch.equal(back.rows, counts.rows)
        assert torch.equal(back.counts, counts.counts)
    upper = fair.ConfusionCounts.from_frame(frame.rename(columns=str.upper))  # as Snowflake names them
    assert torch.equal(upper.counts, counts.counts)
    doubled = fair.ConfusionCounts.from_frame(pd.concat([frame, frame]))  # the same code twice: added
    assert torch.equal(doubled.counts, 2 * counts.counts) and torch.equal(doubled.rows, 2 * counts.rows)


@pytest.mark.parametrize("column, value, match", [
    ("invalid_label", 2, "^frame: column 'invalid_label'"),
    ("invalid_prediction", 1, "^frame: column 'invalid_prediction'"),
    ("invalid_weight", 3, "^frame: column 'invalid_weight'"),
    ("group_code", None, "^frame: column 'group_code'.*NULL"),
    ("group_code", -1, "^frame: column 'group_code'.*non-negative"),
    ("group_code", 0.5, "^frame: column 'group_code'.*integer"),
    ("tn", -1.0, "^frame: column 'tn'.*non-negative"),
])
def test_from_frame_refuses_a_result_that_reports_bad_rows(column, value, match):
    frame = pd.DataFrame({"group_code": [0, 1], "n_rows": [2, 2], "tn": [1.0, 1.0], "fp": [0.0, 1.0],
                          "fn": [1.0, 0.0], "tp": [0.0, 0.0], "invalid_label": [0, 0], "invalid_prediction": [0, 0],
                          "invalid_weight": [0, 0]})
    frame[column] = frame[column].astype(object)
    frame.loc[1, column] = value
    with pytest.raises(ValueError, match=match):
        fair.ConfusionCounts.from_frame(frame)


def test_from_frame_names_missing_columns_and_an_empty_result():
    with pytest.raises(ValueError, match=r"^frame: expected the columns .* missing \['tp'\]"):
        fair.ConfusionCounts.from_frame(pd.DataFrame({c: [1] for c in fair.COUNT_COLUMNS[:-1]}))
    with pytest.raises(ValueError, match="^frame: expected at least one group"):
        fair.ConfusionCounts.from_frame(pd.DataFrame({c: pd.Series([], dtype="int64") for c in fair.COUNT_COLUMNS}))
    with pytest.raises(TypeError, match="^frame"):
        fair.ConfusionCounts.from_frame({"group_code": [0]})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_counts_on_a_gpu_merge_with_counts_on_the_cpu():
    rng = np.random.default_rng(5)
    y_true, y_pred = (torch.from_numpy(rng.integers(0, 2, 1000)) for _ in range(2))
    group, weights = torch.from_numpy(rng.integers(0, 3, 1000)), torch.from_numpy(rng.uniform(0, 2, 1000))
    gpu = fair.group_confusion_counts(y_true[:600].cuda(), y_pred[:600].cuda(), group[:600].cuda(),
                                      sample_weight=weights[:600].cuda())
    cpu = fair.group_confusion_counts(y_true[600:], y_pred[600:], group[600:], sample_weight=weights[600:])
    merged = gpu + cpu
    assert merged.counts.is_cuda
    assert_same_report(fair.fairness_report_from_counts(merged, privileged=1),
                       fair.fairness_report(y_true, y_pred, group, privileged=1, sample_weight=weights))


# --------------------------------------------------------------------------- Parquet on DuckDB and Polars

def _generated(n: int, seed: int) -> dict[str, np.ndarray]:
    """A decision log: five groups (one with a large code), group-dependent base rates and errors, weights."""
    rng = np.random.default_rng(seed)
    codes = np.array([0, 1, 2, 3, 5_000_000_000])
    index = rng.integers(0, len(codes), n)
    y_true = (rng.random(n) < np.array([0.2, 0.3, 0.45, 0.5, 0.35])[index]).astype(np.int8)
    wrong = rng.random(n) < np.array([0.25, 0.2, 0.15, 0.1, 0.3])[index]
    y_pred = np.where(wrong, 1 - y_true, y_true).astype(bool)
    weight = rng.gamma(2.0, 1.5, n)
    weight[rng.random(n) < 0.01] = 0.0
    return {"y_true": y_true, "y_pred": y_pred, "group": codes[index], "weight": weight}


@pytest.fixture(scope="module")
def decision_log(tmp_path_factory):
    """300,000 generated rows in six Parquet files (row groups of 20,000), and the same rows in memory."""
    folder = tmp_path_factory.mktemp("log")
    data = _generated(300_000, seed=0)
    for part in range(6):
        rows = slice(part * 50_000, (part + 1) * 50_000)
        pq.write_table(pa.table({k: v[rows] for k, v in data.items()}), folder / f"part-{part}.parquet",
                       row_group_size=20_000)
    return folder, data


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_the_parquet_audit_equals_the_in_memory_report(decision_log, engine, weighted):
    folder, data = decision_log
    weight = data["weight"] if weighted else None
    privileged = [3, 5_000_000_000]
    report = fair.audit_parquet(str(folder / "*.parquet"), label="y_true", prediction="y_pred", group="group",
                                weight="weight" if weighted else None, privileged=privileged, engine=engine)
    reference = fair.fairness_report(data["y_true"], data["y_pred"], data["group"], privileged=privileged,
                                     sample_weight=weight)
    assert_same_report(report, reference, rtol=1e-10)  # 300,000 float64 weights summed in another order


@pytest.mark.parametrize("engine", ENGINES)
def test_unweighted_counts_are_exact_and_files_merge_like_shards(decision_log, engine):
    folder, data = decision_log
    whole = fair.parquet_confusion_counts(str(folder / "*.parquet"), label="y_true", prediction="y_pred",
                                          group="group", engine=engine)
    reference = fair.group_confusion_counts(data["y_true"], data["y_pred"], data["group"])
    assert torch.equal(whole.codes, reference.codes) and torch.equal(whole.rows, reference.rows)
    assert torch.equal(whole.counts, reference.counts)
    files = sorted(folder.glob("*.parquet"))
    per_file = sum(fair.parquet_confusion_counts(path, label="y_true", prediction="y_pred", group="group",
                                                 engine=engine) for path in files)
    listed = fair.parquet_confusion_counts([str(p) for p in files[:2]], label="y_true", prediction="y_pred",
                                           group="group", engine=engine)
    assert torch.equal(per_file.counts, reference.counts)
    assert int(listed.rows.sum()) == 100_000


def test_the_same_query_runs_unchanged_on_duckdb_and_sqlite(decision_log):
    """audit_sql's text, executed as it is by two engines, gives the in-memory counts."""
    _, data = decision_log
    frame = pd.DataFrame({k: v[:20_000] for k, v in data.items()}).astype({"y_pred": "int64", "y_true": "int64"})
    frame = frame.rename(columns={"group": "group", "y_pred": "approved", "weight": "case weight"})
    query = fair.audit_sql("decisions", label="y_true", prediction="approved", group="group", weight="case weight")
    assert '"group"' in query and '"case weight"' in query  # a keyword and a name with a space are quoted
    assert "GROUP BY" in query and "SUM(CASE WHEN" in query
    reference = fair.group_confusion_counts(frame["y_true"], frame["approved"], frame["group"],
                                            sample_weight=frame["case weight"])
    with sqlite3.connect(":memory:") as lite:
        frame.to_sql("decisions", lite, index=False)
        from_sqlite = fair.ConfusionCounts.from_frame(pd.read_sql_query(query, lite))
    con = duckdb.connect()
    con.register("decisions", frame)
    from_duckdb = fair.ConfusionCounts.from_frame(con.sql(query).to_arrow_table())
    con.close()
    for counts in (from_sqlite, from_duckdb):
        assert torch.equal(counts.codes, reference.codes) and torch.equal(counts.rows, reference.rows)
        torch.testing.assert_close(counts.counts, reference.counts, rtol=1e-12, atol=1e-9)


def test_a_connection_of_yours_bounds_duckdb_and_stays_open(decision_log):
    folder, data = decision_log
    con = duckdb.connect(config={"memory_limit": "64MB", "threads": 1})
    counts = fair.parquet_confusion_counts(str(folder / "*.parquet"), label="y_true", prediction="y_pred",
                                           group="group", weight="weight", connection=con)
    assert con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0].startswith("61")  # 64 MB in MiB
    con.close()
    torch.testing.assert_close(counts.counts, fair.group_confusion_counts(
        data["y_true"], data["y_pred"], data["group"], sample_weight=data["weight"]).counts, rtol=1e-10, atol=0)


def test_the_adult_data_audited_from_parquet_equals_the_in_memory_report(tmp_path):
    """Real data: Adult's labels against a simple rule, weighted by the census weight fnlwgt."""
    adult = load_adult()
    rule = ((adult["education_num"] >= 13) | (adult["capital_gain"] > 5000)).astype(np.int64)
    frame = pd.DataFrame({"income": adult["income"], "approved": rule, "sex": (adult["sex"] == "Male").astype(int),
                          "fnlwgt": adult["fnlwgt"].astype(np.float64)})
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "adult.parquet")
    reference = fair.fairness_report(frame["income"], frame["approved"], frame["sex"], privileged=1,
                                     sample_weight=frame["fnlwgt"])
    for engine in ENGINES:
        report = fair.audit_parquet(tmp_path / "adult.parquet", label="income", prediction="approved", group="sex",
                                    weight="fnlwgt", privileged=1, engine=engine)
        assert_same_report(report, reference, rtol=1e-11)
    assert reference.statistical_parity_difference < 0  # the rule selects women less often than men


# --------------------------------------------------------------------------- bad data, both engines

GOOD = {"y": [0, 1, 1, 0, 1, 0], "p": [0, 1, 0, 1, 1, 0], "g": [0, 0, 1, 1, 0, 1],
        "w": [1.0, 2.0, 0.5, 1.0, 1.0, 3.0]}
NAN, INF = math.nan, math.inf

BAD_DATA = [  # (id, column changes, call changes, argument named, error, the column the message names)
    ("a missing label column", {}, {"label": "income"}, "label", ValueError, "income"),
    ("a missing prediction column", {}, {"prediction": "approved"}, "prediction", ValueError, "approved"),
    ("a missing group column", {}, {"group": "sex"}, "group", ValueError, "sex"),
    ("a missing weight column", {}, {"weight": "fnlwgt"}, "weight", ValueError, "fnlwgt"),
    ("a label of 2", {"y": [0, 2, 1, 0, 1, 0]}, {}, "label", ValueError, "'y'"),
    ("a NULL label", {"y": pa.array([0, None, 1, 0, 1, 0], pa.int8())}, {}, "label", ValueError, "'y'"),
    ("a NaN label beside constant labels", {"y": [1.0, NAN, 1.0, 1.0, 1.0, 1.0]}, {}, "label", ValueError, "'y'"),
    ("a prediction of -1", {"p": [0, 1, 0, -1, 1, 0]}, {}, "prediction", ValueError, "'p'"),
    ("a fractional prediction", {"p": [0.0, 0.5, 0.0, 1.0, 1.0, 0.0]}, {}, "prediction", ValueError, "'p'"),
    ("a NULL group", {"g": pa.array([0, None, 1, 1, 0, 1])}, {}, "group", ValueError, "'g'"),
    ("a negative group code", {"g": [0, -1, 1, 1, 0, 1]}, {}, "group", ValueError, "'g'"),
    ("a fractional group code", {"g": [0.0, 0.5, 1.0, 1.0, 0.0, 1.0]}, {}, "group", ValueError, "'g'"),
    ("a group of strings", {"g": ["f", "m", "f", "m", "f", "m"]}, {}, "group", TypeError, "'g'"),
    ("labels as strings", {"y": ["0", "1", "1", "0", "1", "0"]}, {}, "label", TypeError, "'y'"),
    ("a privileged group with no rows", {}, {"privileged": 7}, "group", ValueError, "'g'"),
    ("an unprivileged side with no rows", {"g": [1, 1, 1, 1, 1, 1]}, {}, "group", ValueError, "'g'"),
    ("a negative weight", {"w": [1.0, -2.0, 0.5, 1.0, 1.0, 3.0]}, {"weight": "w"}, "weight", ValueError, "'w'"),
    ("a NaN weight (Parquet statistics leave NaN out)", {"w": [1.0, NAN, 1.0, 1.0, 1.0, 1.0]}, {"weight": "w"},
     "weight", ValueError, "'w'"),
    ("an infinite weight", {"w": [1.0, INF, 0.5, 1.0, 1.0, 3.0]}, {"weight": "w"}, "weight", ValueError, "'w'"),
    ("a NULL weight", {"w": pa.array([1.0, None, 0.5, 1.0, 1.0, 3.0])}, {"weight": "w"}, "weight", ValueError, "'w'"),
    ("boolean weights", {"w": [True, False, True, True, True, True]}, {"weight": "w"}, "weight", TypeError, "'w'"),
    ("an empty table", {"y": pa.array([], pa.int8()), "p": pa.array([], pa.int8()), "g": pa.array([], pa.int64()),
                        "w": pa.array([], pa.float64())}, {}, "path_or_glob", ValueError, "'g'"),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("changes, call, arg, error, column", [c[1:] for c in BAD_DATA], ids=[c[0] for c in BAD_DATA])
def test_bad_data_is_refused_naming_the_argument_and_the_column(tmp_path, engine, changes, call, arg, error, column):
    path = tmp_path / "decisions.parquet"
    pq.write_table(pa.table({**GOOD, **changes}), path)
    kwargs = {"label": "y", "prediction": "p", "group": "g", "privileged": 1, "engine": engine, **call}
    with pytest.raises(error) as raised:
        fair.audit_parquet(str(path), **kwargs)
    message = str(raised.value)
    assert message.startswith(f"{arg}:"), message
    assert column in message, message


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_paths_and_knobs_are_refused(tmp_path, engine):
    names = {"label": "y", "prediction": "p", "group": "g", "privileged": 1, "engine": engine}
    with pytest.raises(ValueError, match="^path_or_glob: .*cannot read"):
        fair.audit_parquet(str(tmp_path / "nothing-*.parquet"), **names)
    (tmp_path / "notes.parquet").write_text("not a Parquet file")
    with pytest.raises(ValueError, match="^path_or_glob: .*cannot read"):
        fair.audit_parquet(str(tmp_path / "notes.parquet"), **names)
    with pytest.raises(ValueError, match="^path_or_glob: .*empty list"):
        fair.audit_parquet([], **names)
    with pytest.raises(TypeError, match="^path_or_glob"):
        fair.audit_parquet(42, **names)
    with pytest.raises(TypeError, match="^label"):
        fair.audit_parquet("x.parquet", **{**names, "label": 0})
    with pytest.raises(ValueError, match="^engine"):
        fair.audit_parquet("x.parquet", **{**names, "engine": "spark"})


def test_a_connection_is_a_duckdb_connection_and_only_for_duckdb():
    names = {"label": "y", "prediction": "p", "group": "g", "privileged": 1}
    with pytest.raises(TypeError, match="^connection"):
        fair.audit_parquet("x.parquet", connection=sqlite3.connect(":memory:"), **names)
    con = duckdb.connect()
    with pytest.raises(ValueError, match="^connection"):
        fair.audit_parquet("x.parquet", engine="polars", connection=con, **names)
    con.close()


def test_audit_sql_refuses_what_is_not_a_column_name_or_a_source():
    with pytest.raises(TypeError, match="^source"):
        fair.audit_sql(None, label="y", prediction="p", group="g")
    with pytest.raises(ValueError, match="^source"):
        fair.audit_sql("  ", label="y", prediction="p", group="g")
    with pytest.raises(ValueError, match="^prediction"):
        fair.audit_sql("t", label="y", prediction="", group="g")
    with pytest.raises(TypeError, match="^weight"):
        fair.audit_sql("t", label="y", prediction="p", group="g", weight=1.0)
    quoted = fair.audit_sql("t", label='odd "name"', prediction="select", group="g")
    assert '"odd ""name"""' in quoted and '"select"' in quoted
