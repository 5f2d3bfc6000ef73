"""trustml_lab.serve.drift against scipy (ks_2samp, chi2_contingency) and a textbook PSI loop, random and real data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from trustml_lab.data import load_adult, load_german_credit
from trustml_lab.serve import drift

SETTINGS = settings(max_examples=40, deadline=None)


def psi_loop(reference: np.ndarray, current: np.ndarray, *, bins: int = 10, floor: float = 1e-4) -> float:
    """PSI of one numeric feature as a textbook loop: numpy quantile edges, right-closed bins, floored shares."""
    edges = np.quantile(reference, np.arange(1, bins) / bins)
    total = 0.0
    ref_bins = np.searchsorted(edges, reference, side="left")
    cur_bins = np.searchsorted(edges, current, side="left")
    for b in range(bins):
        p = max(np.mean(ref_bins == b), floor)
        q = max(np.mean(cur_bins == b), floor)
        total += (q - p) * math.log(q / p)
    return total


def psi_categorical_loop(reference: np.ndarray, current: np.ndarray, *, floor: float = 1e-4) -> float:
    total = 0.0
    for c in np.union1d(reference, current):
        p = max(np.mean(reference == c), floor)
        q = max(np.mean(current == c), floor)
        total += (q - p) * math.log(q / p)
    return total


def scipy_chi2(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    categories = np.union1d(reference, current)
    table = np.array([[np.sum(reference == c) for c in categories], [np.sum(current == c) for c in categories]])
    if table.shape[1] == 1:
        return 0.0, 1.0
    result = stats.chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


samples = st.lists(st.integers(-20, 20), min_size=1, max_size=60)


# --------------------------------------------------------------------------- KS

@SETTINGS
@given(samples, samples, st.booleans())
def test_ks_equals_scipy_on_random_samples_with_ties(a, b, continuous):
    rng = np.random.default_rng(len(a) * 100 + len(b))
    x = np.array(a, float) + (rng.normal(size=len(a)) if continuous else 0.0)
    y = np.array(b, float) + (rng.normal(size=len(b)) if continuous else 0.0)
    ours = drift.ks_test(torch.from_numpy(x), torch.from_numpy(y))
    theirs = stats.ks_2samp(x, y)
    assert float(ours.statistic) == pytest.approx(theirs.statistic, abs=1e-15)
    assert float(ours.pvalue) == pytest.approx(theirs.pvalue, rel=1e-12, abs=1e-300)


def test_ks_columns_at_once_equal_scipy_column_by_column():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(300, 4))
    current = rng.normal(size=(120, 4)) + np.array([0.0, 0.2, 0.5, 1.0])
    ours = drift.ks_test(reference, current)
    for j in range(4):
        theirs = stats.ks_2samp(reference[:, j], current[:, j])
        assert float(ours.statistic[j]) == pytest.approx(theirs.statistic, abs=1e-15)
        assert float(ours.pvalue[j]) == pytest.approx(theirs.pvalue, rel=1e-12, abs=1e-300)
    assert ours.statistic.shape == (4,) and ours.pvalue.dtype == torch.float64


def test_ks_equals_scipy_on_real_data_exact_and_asymptotic():
    """German credit (exact branch: both samples <= 10,000 rows) and Adult (asymptotic: 32,561 rows)."""
    german = load_german_credit()
    numeric = ["duration_months", "credit_amount", "age", "installment_rate", "existing_credits"]
    female = german["sex"] == "female"
    ours = drift.ks_test(german.loc[~female, numeric].to_numpy(float), german.loc[female, numeric].to_numpy(float))
    adult = load_adult()
    columns = ["age", "education_num", "capital_gain", "hours_per_week"]
    train, test = adult[adult.split == "train"], adult[adult.split == "test"]
    big = drift.ks_test(train[columns].to_numpy(float), test[columns].to_numpy(float))
    for frame_a, frame_b, cols, result in ((german[~female], german[female], numeric, ours),
                                           (train, test, columns, big)):
        for j, col in enumerate(cols):
            theirs = stats.ks_2samp(frame_a[col].to_numpy(float), frame_b[col].to_numpy(float))
            assert float(result.statistic[j]) == pytest.approx(theirs.statistic, abs=1e-15), col
            assert float(result.pvalue[j]) == pytest.approx(theirs.pvalue, rel=1e-10, abs=1e-300), col


def test_ks_one_dimensional_input_gives_scalars():
    test = drift.ks_test(torch.arange(10.0), torch.arange(10.0))
    assert test.statistic.ndim == 0 and float(test.statistic) == 0.0 and float(test.pvalue) == 1.0


# --------------------------------------------------------------------------- chi-square

codes = st.lists(st.integers(0, 4), min_size=1, max_size=80)


@SETTINGS
@given(codes, codes)
def test_chi_square_equals_scipy_chi2_contingency(a, b):
    x, y = np.array(a), np.array(b)
    ours = drift.chi_square_test(torch.from_numpy(x), torch.from_numpy(y), num_categories=6)
    stat, p = scipy_chi2(x, y)
    assert float(ours.statistic) == pytest.approx(stat, rel=1e-12, abs=1e-12)
    assert float(ours.pvalue) == pytest.approx(p, rel=1e-10, abs=1e-300)


def test_chi_square_two_by_two_uses_yates_like_scipy():
    x = np.array([0] * 30 + [1] * 10)
    y = np.array([0] * 12 + [1] * 18)
    ours = drift.chi_square_test(x, y)
    theirs = stats.chi2_contingency([[30, 10], [12, 18]])
    assert theirs.dof == 1
    assert float(ours.statistic) == pytest.approx(theirs.statistic, rel=1e-12)
    uncorrected = stats.chi2_contingency([[30, 10], [12, 18]], correction=False)
    assert float(ours.statistic) != pytest.approx(uncorrected.statistic)


def test_chi_square_equals_scipy_on_real_categorical_features():
    adult = load_adult()
    columns = ["workclass", "education", "marital_status", "race", "sex", "native_country"]
    train, test = adult[adult.split == "train"], adult[adult.split == "test"]
    ref, cur = [], []
    for col in columns:  # codes over both splits' categories, missing values as one more category
        both = adult[col].cat.add_categories("<missing>").fillna("<missing>")
        codes_ = both.cat.codes.to_numpy()
        ref.append(codes_[(adult.split == "train").to_numpy()])
        cur.append(codes_[(adult.split == "test").to_numpy()])
    ours = drift.chi_square_test(np.stack(ref, 1), np.stack(cur, 1))
    for j, col in enumerate(columns):
        stat, p = scipy_chi2(ref[j], cur[j])
        assert float(ours.statistic[j]) == pytest.approx(stat, rel=1e-10), col
        assert float(ours.pvalue[j]) == pytest.approx(p, rel=1e-8, abs=1e-300), col
    assert len(train) == len(ref[0]) and len(test) == len(cur[0])


def test_chi_square_single_category_is_no_evidence():
    test = drift.chi_square_test(np.zeros(5, int), np.zeros(7, int))
    assert float(test.statistic) == 0.0 and float(test.pvalue) == 1.0


# --------------------------------------------------------------------------- PSI

@SETTINGS
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=80), st.lists(st.floats(-1e3, 1e3), min_size=1,
                                                                          max_size=80), st.integers(2, 12))
def test_psi_equals_the_textbook_loop(a, b, bins):
    x, y = np.array(a), np.array(b)
    assert float(drift.psi(x, y, bins=bins)) == pytest.approx(psi_loop(x, y, bins=bins), rel=1e-9, abs=1e-12)


def test_psi_on_real_data_and_the_rules_of_thumb():
    german = load_german_credit()
    age = german["age"].to_numpy(float)
    rng = np.random.default_rng(0)
    same = rng.permutation(age)
    assert float(drift.psi(age[:700], same[700:])) < 0.1  # the same applicants, split at random: stable
    older = age + 10.0  # every applicant ten years older: a major shift
    assert float(drift.psi(age, older)) > 0.25
    columns = ["duration_months", "credit_amount", "age"]
    values = german[columns].to_numpy(float)
    ours = drift.psi(values[:600], values[600:] * np.array([1.0, 1.5, 1.0]), bins=10)
    for j in range(3):
        assert float(ours[j]) == pytest.approx(psi_loop(values[:600, j], values[600:, j] * [1.0, 1.5, 1.0][j]))


def test_psi_categorical_equals_the_loop_and_counts_new_categories():
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 4, size=(500, 3))
    cur = rng.integers(0, 5, size=(200, 3))  # code 4 never appears in the reference
    ours = drift.psi_categorical(ref, cur)
    for j in range(3):
        assert float(ours[j]) == pytest.approx(psi_categorical_loop(ref[:, j], cur[:, j]), rel=1e-12)
    assert float(drift.psi_categorical(ref[:, 0], ref[:, 0])) == 0.0


def test_quantile_edges_equal_numpy():
    x = np.random.default_rng(2).normal(size=(101, 2))
    ours = drift.quantile_edges(x, bins=5)
    np.testing.assert_allclose(ours.numpy(), np.quantile(x, np.arange(1, 5) / 5, axis=0).T, rtol=1e-14)


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, arg", [
    (lambda: drift.psi(np.zeros(0), np.zeros(3)), "reference"),
    (lambda: drift.psi(np.zeros(3), np.zeros(0)), "current"),
    (lambda: drift.psi(np.zeros((3, 2)), np.zeros((3, 3))), "current"),
    (lambda: drift.psi(np.zeros(3), np.array([0.0, np.inf])), "current"),
    (lambda: drift.psi(np.zeros(3), np.zeros(3), bins=1), "bins"),
    (lambda: drift.psi(np.zeros(3), np.zeros(3), floor=0.0), "floor"),
    (lambda: drift.psi(np.zeros((2, 2, 2)), np.zeros((2, 2, 2))), "reference"),
    (lambda: drift.ks_test(["a", "b"], [1.0]), "reference"),
    (lambda: drift.chi_square_test(np.array([0, -1]), np.array([0])), "reference"),
    (lambda: drift.chi_square_test(np.array([0, 1]), np.array([0.5])), "current"),
    (lambda: drift.chi_square_test(np.array([0, 3]), np.array([0]), num_categories=2), "num_categories"),
    (lambda: drift.psi_categorical(np.array([True, False]), np.array([0])), "reference"),
])
def test_bad_input_names_the_argument(call, arg):
    with pytest.raises((ValueError, TypeError), match=arg):
        call()
