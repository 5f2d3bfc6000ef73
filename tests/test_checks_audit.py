"""trustml_lab.checks.audit: right answers pass; wrong, mutating, None and stub answers are explained."""

from __future__ import annotations

import pandas as pd
import pytest

from trustml_lab import checks

ac = checks.audit


def eod_from_counts(counts, privileged):
    side = counts["group_code"].isin(privileged)
    tpr = [counts.loc[rows, "tp"].sum() / (counts.loc[rows, "tp"].sum() + counts.loc[rows, "fn"].sum())
           for rows in (~side, side)]
    return tpr[0] - tpr[1]


def eod_by_averaging_groups(counts, privileged):
    tpr = counts["tp"] / (counts["tp"] + counts["fn"])
    side = counts["group_code"].isin(privileged)
    return tpr[~side].mean() - tpr[side].mean()


def selection_rate_sql(source, prediction, group):
    return (f'SELECT "{group}" AS group_code, 1.0 * SUM(CASE WHEN {prediction} = 1 THEN 1 ELSE 0 END) / COUNT(*) '
            f'AS selection_rate FROM {source} GROUP BY "{group}"')


def test_right_answers_pass(capsys):
    ac.check_eod_from_counts(eod_from_counts)
    ac.check_selection_rate_sql(selection_rate_sql)
    out = capsys.readouterr().out
    assert "PASS eod_from_counts" in out and "PASS selection_rate_sql" in out


def test_averaging_group_rates_is_not_pooling():
    with pytest.raises(checks.CheckFailed, match="four groups.*pool each side first"):
        ac.check_eod_from_counts(eod_by_averaging_groups)


def test_the_wrong_sign_fails_on_the_first_table():
    with pytest.raises(checks.CheckFailed, match="two groups"):
        ac.check_eod_from_counts(lambda counts, privileged: -eod_from_counts(counts, privileged))


def test_an_answer_that_changes_the_table_in_place_fails():
    def mutating(counts, privileged):
        counts["tp"] = 0.0
        return 0.0

    with pytest.raises(checks.CheckFailed, match="in place"):
        ac.check_eod_from_counts(mutating)


def test_none_and_stubs_are_explained():
    with pytest.raises(checks.CheckFailed, match="returned None"):
        ac.check_eod_from_counts(lambda counts, privileged: None)

    def stub(source, prediction, group):
        raise NotImplementedError()

    with pytest.raises(checks.CheckFailed, match="NotImplementedError"):
        ac.check_selection_rate_sql(stub)


def test_integer_division_is_named_on_sqlite():
    def integer_division(source, prediction, group):
        return (f'SELECT "{group}" AS group_code, SUM({prediction}) / COUNT(*) AS selection_rate '
                f'FROM {source} GROUP BY "{group}"')

    with pytest.raises(checks.CheckFailed, match="on sqlite.*divided integers as integers"):
        ac.check_selection_rate_sql(integer_division)


def test_sql_errors_and_missing_columns_are_explained():
    with pytest.raises(checks.CheckFailed, match=r"(?s)could not run your query.*needs quotes"):
        ac.check_selection_rate_sql(lambda s, p, g: f"SELECT {g} AS group_code, AVG({p}) AS selection_rate "
                                                    f"FROM {s} GROUP BY {g}")
    with pytest.raises(checks.CheckFailed, match="name the result's columns"):
        ac.check_selection_rate_sql(lambda s, p, g: f'SELECT "{g}", AVG(1.0 * {p}) FROM {s} GROUP BY "{g}"')
    with pytest.raises(checks.CheckFailed, match="one row per group"):
        ac.check_selection_rate_sql(lambda s, p, g: f"SELECT 0 AS group_code, AVG(1.0 * {p}) AS selection_rate "
                                                    f"FROM {s}")
    with pytest.raises(checks.CheckFailed, match="as a string"):
        ac.check_selection_rate_sql(lambda s, p, g: pd.DataFrame())


def test_numpy_and_tensor_numbers_are_accepted():
    import numpy as np
    import torch

    ac.check_eod_from_counts(lambda c, p: np.float32(eod_from_counts(c, p)))
    ac.check_eod_from_counts(lambda c, p: torch.tensor(eod_from_counts(c, p), dtype=torch.float64))
