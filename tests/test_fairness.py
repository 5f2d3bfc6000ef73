"""trustml_lab.fairness against aif360 and fairlearn, on random and real data.

Bad input is refused as the table in ``tests/api_tables/fairness.py`` says; the self-checks
are tested in ``tests/test_checks_fairness.py``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from trustml_lab import fairness as fair
from trustml_lab.data import load_adult, load_german_credit
from trustml_lab.fairness import _as_codes

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from aif360.algorithms.preprocessing import Reweighing
    from aif360.datasets import BinaryLabelDataset
    from aif360.metrics import BinaryLabelDatasetMetric, ClassificationMetric
from _limits import time_limit
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equal_opportunity_ratio,
    equalized_odds_difference,
    false_positive_rate,
    mean_prediction,
    selection_rate,
    true_positive_rate,
)
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

TOL = dict(rtol=1e-9, atol=1e-12, equal_nan=True)
SCALARS = {  # our function -> how aif360's ClassificationMetric computes it
    "statistical_parity_difference": lambda m: m.statistical_parity_difference(),
    "disparate_impact": lambda m: m.disparate_impact(),
    "equal_opportunity_difference": lambda m: m.equal_opportunity_difference(),
    "equal_opportunity_ratio": lambda m: m.ratio(m.true_positive_rate),
    "average_odds_difference": lambda m: m.average_odds_difference(),
    "equalized_odds_difference": lambda m: m.equalized_odds_difference(),
    "predictive_parity_difference": lambda m: m.difference(m.positive_predictive_value),
}


# --------------------------------------------------------------------------- helpers

def _aif_dataset(y, group, weights=None):
    frame = pd.DataFrame({"g": np.asarray(group, dtype=np.float64), "y": np.asarray(y, dtype=np.float64)})
    if weights is not None:
        frame["w"] = np.asarray(weights, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BinaryLabelDataset(df=frame, label_names=["y"], protected_attribute_names=["g"],
                                  instance_weights_name="w" if weights is not None else None,
                                  favorable_label=1, unfavorable_label=0)


def _aif_groups(privileged, unprivileged):
    return ([{"g": u} for u in unprivileged], [{"g": p} for p in privileged])


def _aif_metric(y_true, y_pred, group, weights, privileged, unprivileged):
    truth = _aif_dataset(y_true, group, weights)
    predicted = truth.copy(deepcopy=True)
    predicted.labels = np.asarray(y_pred, dtype=np.float64).reshape(-1, 1)
    unpriv, priv = _aif_groups(privileged, unprivileged)
    return ClassificationMetric(truth, predicted, unprivileged_groups=unpriv, privileged_groups=priv)


def _aif_values(metric):
    with np.errstate(all="ignore"):
        return {name: float(compute(metric)) for name, compute in SCALARS.items()}


def _ours(y_true, y_pred, group, weights, privileged, unprivileged=None):
    return {name: float(getattr(fair, name)(y_true, y_pred, group, privileged=privileged,
                                            unprivileged=unprivileged, sample_weight=weights))
            for name in SCALARS}


def _assert_same(ours, reference):
    for name in reference:
        np.testing.assert_allclose(ours[name], reference[name], err_msg=name, **TOL)


@st.composite
def tables(draw, max_groups=4, weighted=None):
    """Random labelled tables: sizes, imbalance, group counts, weights, all drawn."""
    seed = draw(st.integers(0, 2**32 - 1))
    num_groups = draw(st.integers(2, max_groups))
    n = draw(st.integers(max(4, num_groups), 300))  # at least one row per group
    base = draw(st.floats(0.02, 0.98))
    accuracy = draw(st.floats(0.0, 1.0))
    use_weights = draw(st.booleans()) if weighted is None else weighted
    rng = np.random.default_rng(seed)
    group = rng.integers(0, num_groups, n)
    group[:num_groups] = np.arange(num_groups)  # every code present
    y_true = (rng.random(n) < base * (0.5 + group / num_groups)).astype(np.int64)
    y_pred = np.where(rng.random(n) < accuracy, y_true, 1 - y_true)
    weights = rng.uniform(0.1, 3.0, n) if use_weights else None
    return y_true, y_pred, group, weights


# --------------------------------------------------------------------------- metrics vs aif360

@settings(max_examples=40, deadline=None)
@given(tables())
def test_metrics_equal_aif360_on_random_tables(table):
    y_true, y_pred, group, weights = table
    num_groups = int(group.max()) + 1
    privileged, unprivileged = [num_groups - 1], list(range(num_groups - 1))
    reference = _aif_values(_aif_metric(y_true, y_pred, group, weights, privileged, unprivileged))
    _assert_same(_ours(y_true, y_pred, group, weights, privileged), reference)


@settings(max_examples=15, deadline=None)
@given(tables(max_groups=5, weighted=False))
def test_explicit_unprivileged_codes_equal_aif360(table):
    y_true, y_pred, group, _ = table
    privileged, unprivileged = [0], [1]  # codes >= 2 belong to neither side
    reference = _aif_values(_aif_metric(y_true, y_pred, group, None, privileged, unprivileged))
    _assert_same(_ours(y_true, y_pred, group, None, privileged, unprivileged), reference)


def _fairlearn_two_groups(y_true, y_pred, group):
    """fairlearn's two-group metrics, by their names and ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "|SPD|": demographic_parity_difference(y_true, y_pred, sensitive_features=group),
            "min(DI, 1/DI)": demographic_parity_ratio(y_true, y_pred, sensitive_features=group),
            "|EOD|": equal_opportunity_difference(y_true, y_pred, sensitive_features=group),
            "min(r, 1/r)": equal_opportunity_ratio(y_true, y_pred, sensitive_features=group),
            "EqOdds": equalized_odds_difference(y_true, y_pred, sensitive_features=group),
        }


def _as_fairlearn_names(ours):
    def two_sided(r):
        return math.nan if math.isnan(r) else min(r, 1 / r) if r > 0 else 0.0

    return {"|SPD|": abs(ours["statistical_parity_difference"]), "min(DI, 1/DI)": two_sided(ours["disparate_impact"]),
            "|EOD|": abs(ours["equal_opportunity_difference"]),
            "min(r, 1/r)": two_sided(ours["equal_opportunity_ratio"]), "EqOdds": ours["equalized_odds_difference"]}


# The two undefined cases of the module's table of conventions. Group 0 is unprivileged.
NO_POSITIVES = dict(  # group 0 has no positives: its TPR is undefined
    y_true=np.array([0, 0, 0, 0, 1, 1, 0, 0]), y_pred=np.array([0, 0, 0, 1, 1, 1, 0, 1]),
    group=np.array([0, 0, 0, 0, 1, 1, 1, 1]))
NO_NEGATIVES = dict(  # group 0 has no negatives: its FPR is undefined
    y_true=np.array([1, 1, 1, 1, 1, 1, 0, 0]), y_pred=np.array([1, 1, 0, 1, 1, 0, 0, 1]),
    group=np.array([0, 0, 0, 0, 1, 1, 1, 1]))


def test_a_group_without_positives_follows_aif360_not_fairlearn():
    case = NO_POSITIVES
    ours = _ours(case["y_true"], case["y_pred"], case["group"], None, 1)
    _assert_same(ours, _aif_values(_aif_metric(case["y_true"], case["y_pred"], case["group"], None, [1], [0])))
    for name in ("equal_opportunity_difference", "equal_opportunity_ratio", "average_odds_difference"):
        assert math.isnan(ours[name]), name  # the TPR of group 0 is unknown
    assert ours["equalized_odds_difference"] == 0.25  # aif360's max(|dFPR|, nan) = |dFPR| = |0.25 - 0.5|
    report = fair.fairness_report(case["y_true"], case["y_pred"], case["group"], privileged=1)
    assert math.isnan(report.groups["tpr"][0]) and not report.passes()
    # fairlearn counts the undefined TPR as 0: |EOD| = |0 - 1| = 1, and equalized odds 1 instead of 0.25
    fairlearn = _fairlearn_two_groups(**case)
    assert fairlearn["|EOD|"] == 1.0 and fairlearn["EqOdds"] == 1.0 and fairlearn["min(r, 1/r)"] == 0.0
    frame = MetricFrame(metrics=true_positive_rate, y_true=case["y_true"], y_pred=case["y_pred"],
                        sensitive_features=case["group"]).by_group
    assert frame[0] == 0.0
    # where both are defined they agree
    mine = _as_fairlearn_names(ours)
    np.testing.assert_allclose([mine["|SPD|"], mine["min(DI, 1/DI)"]],
                               [fairlearn["|SPD|"], fairlearn["min(DI, 1/DI)"]], **TOL)


def test_a_group_without_negatives_follows_aif360_not_fairlearn():
    case = NO_NEGATIVES
    ours = _ours(case["y_true"], case["y_pred"], case["group"], None, 1)
    _assert_same(ours, _aif_values(_aif_metric(case["y_true"], case["y_pred"], case["group"], None, [1], [0])))
    assert math.isnan(ours["average_odds_difference"])  # the FPR of group 0 is unknown
    assert math.isnan(ours["equalized_odds_difference"])  # aif360's max(nan, |dTPR|) = nan
    report = fair.fairness_report(case["y_true"], case["y_pred"], case["group"], privileged=1)
    assert math.isnan(report.groups["fpr"][0]) and not report.passes(max_eq_odds=1.0, max_abs_spd=None,
                                                                     min_di=None, max_abs_eod=None)
    # fairlearn counts the undefined FPR as 0: equalized odds max(|0.75 - 0.5|, |0 - 0.5|) = 0.5
    fairlearn = _fairlearn_two_groups(**case)
    assert fairlearn["EqOdds"] == 0.5
    # the TPRs are defined: the equal-opportunity metrics agree with fairlearn's
    mine = _as_fairlearn_names(ours)
    for name in ("|SPD|", "min(DI, 1/DI)", "|EOD|", "min(r, 1/r)"):
        np.testing.assert_allclose(mine[name], fairlearn[name], err_msg=name, **TOL)


def test_undefined_ratios_follow_aif360():
    y_true, group = np.array([0, 1, 1, 0, 1]), np.array([0, 0, 1, 1, 1])
    never = _ours(y_true, np.array([1, 0, 0, 0, 0]), group, None, 1)  # the privileged side is never approved
    reference = _aif_values(_aif_metric(y_true, np.array([1, 0, 0, 0, 0]), group, None, [1], [0]))
    _assert_same(never, reference)
    assert never["disparate_impact"] == np.inf and math.isnan(never["equal_opportunity_ratio"])  # TPRs 0 / 0
    nobody = _ours(y_true, np.zeros(5, dtype=np.int64), group, None, 1)  # nobody approved: 0 / 0
    assert math.isnan(nobody["disparate_impact"]) and nobody["predictive_parity_difference"] == 0.0


def test_dataset_metric_on_labels_equals_binary_label_dataset_metric():
    rng = np.random.default_rng(3)
    y, group, weights = rng.integers(0, 2, 500), rng.integers(0, 2, 500), rng.uniform(0.5, 2, 500)
    metric = BinaryLabelDatasetMetric(_aif_dataset(y, group, weights), *_aif_groups([1], [0]))
    spd = fair.statistical_parity_difference(None, y, group, privileged=1, sample_weight=weights)
    di = fair.disparate_impact(None, y, group == 1, sample_weight=weights)  # boolean mask
    np.testing.assert_allclose([float(spd), float(di)],
                               [metric.statistical_parity_difference(), metric.disparate_impact()], **TOL)


def test_group_confusion_equals_aif360_per_group():
    rng = np.random.default_rng(4)
    y_true, y_pred, group = rng.integers(0, 2, 400), rng.integers(0, 2, 400), rng.integers(0, 3, 400)
    weights = rng.uniform(0.1, 2.0, 400)
    conf = fair.group_confusion(torch.from_numpy(y_true), y_pred, pd.Series(group), sample_weight=weights)
    assert conf.shape == (3, 2, 2) and conf.dtype == torch.float64
    for code in range(3):
        single = _aif_metric(y_true, y_pred, group, weights, [code], [c for c in range(3) if c != code])
        aif = single.binary_confusion_matrix(privileged=True)
        np.testing.assert_allclose(conf[code].numpy(), [[aif["TN"], aif["FP"]], [aif["FN"], aif["TP"]]], **TOL)
    wide = fair.group_confusion(y_true, y_pred, group, num_groups=5)
    assert wide.shape == (5, 2, 2) and float(wide[3:].sum()) == 0.0


# --------------------------------------------------------------------------- fairlearn

@settings(max_examples=25, deadline=None)
@given(tables())
def test_report_table_equals_fairlearn_metric_frame(table):
    y_true, y_pred, group, weights = table
    num_groups = int(group.max()) + 1
    report = fair.fairness_report(y_true, y_pred, group, privileged=0, sample_weight=weights)
    params = None if weights is None else {name: {"sample_weight": weights}
                                          for name in ("selection_rate", "tpr", "fpr")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = MetricFrame(metrics={"selection_rate": selection_rate, "tpr": true_positive_rate,
                                     "fpr": false_positive_rate},
                            y_true=y_true, y_pred=y_pred, sensitive_features=group, sample_params=params)
    by_group = frame.by_group.sort_index()
    ours = report.groups
    assert list(ours.index) == list(range(num_groups))
    np.testing.assert_allclose(ours["selection_rate"], by_group["selection_rate"], **TOL)
    # fairlearn reports 0 where a group has no positives (negatives); aif360 and we report nan
    for rate, denominator in (("tpr", y_true == 1), ("fpr", y_true == 0)):
        defined = np.bincount(group[denominator], minlength=num_groups) > 0
        np.testing.assert_allclose(ours[rate][defined], by_group[rate][defined], **TOL)
        assert ours[rate][~defined].isna().all()


def _with_fairlearns_zeros(report):
    """fairlearn's two-group metrics from our per-group rates, an undefined rate counted as 0."""
    rates = report.groups[["selection_rate", "tpr", "fpr"]].fillna(0.0).to_numpy()
    (sr0, tpr0, fpr0), (sr1, tpr1, fpr1) = rates
    with np.errstate(invalid="ignore"):
        return {"|SPD|": abs(sr0 - sr1), "min(DI, 1/DI)": np.float64(min(sr0, sr1)) / max(sr0, sr1),
                "|EOD|": abs(tpr0 - tpr1), "min(r, 1/r)": np.float64(min(tpr0, tpr1)) / max(tpr0, tpr1),
                "EqOdds": max(abs(tpr0 - tpr1), abs(fpr0 - fpr1))}


@settings(max_examples=20, deadline=None)
@given(tables(max_groups=2))
def test_two_group_metrics_equal_fairlearn_where_defined_and_differ_as_documented(table):
    y_true, y_pred, group, weights = table
    ours = _as_fairlearn_names(_ours(y_true, y_pred, group, weights, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = dict(sensitive_features=group, sample_weight=weights)
        fairlearn = {
            "|SPD|": demographic_parity_difference(y_true, y_pred, **kw),
            "min(DI, 1/DI)": demographic_parity_ratio(y_true, y_pred, **kw),
            "|EOD|": equal_opportunity_difference(y_true, y_pred, **kw),
            "min(r, 1/r)": equal_opportunity_ratio(y_true, y_pred, **kw),
            "EqOdds": equalized_odds_difference(y_true, y_pred, **kw),
        }
    report = fair.fairness_report(y_true, y_pred, group, privileged=1, sample_weight=weights)
    # fairlearn's convention, exactly: our per-group rates with an undefined rate counted as 0
    expected = _with_fairlearns_zeros(report)
    for name, value in fairlearn.items():
        np.testing.assert_allclose(value, expected[name], err_msg=name, **TOL)
    # where no rate is undefined (every group has positives and negatives) the conventions agree
    if all(np.any((group == g) & (y_true == v)) for g in (0, 1) for v in (0, 1)):
        for name, value in fairlearn.items():
            np.testing.assert_allclose(ours[name], value, err_msg=name, **TOL)


# --------------------------------------------------------------------------- report

def test_report_scalars_equal_the_functions_and_aif360():
    rng = np.random.default_rng(5)
    y_true, y_pred, group = rng.integers(0, 2, 300), rng.integers(0, 2, 300), rng.integers(0, 4, 300)
    report = fair.fairness_report(y_true, y_pred, group, privileged=[2, 3],
                                  group_names=["a", "b", "c", "d"])
    assert report.privileged == (2, 3) and report.unprivileged == (0, 1)
    assert list(report.groups.index) == ["a", "b", "c", "d"]
    _assert_same(report.metrics().to_dict(), _ours(y_true, y_pred, group, None, [2, 3]))
    reference = _aif_values(_aif_metric(y_true, y_pred, group, None, [2, 3], [0, 1]))
    _assert_same(report.metrics().to_dict(), reference)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.disparate_impact = 1.0


def _report_with(**metrics):
    values = {name: 0.0 for name in fair.METRICS}
    values.update(disparate_impact=1.0, equal_opportunity_ratio=1.0)
    values.update(metrics)
    return fair.FairnessReport(groups=pd.DataFrame(), privileged=(1,), unprivileged=(0,), **values)


@pytest.mark.parametrize("ratio, passes", [
    (4.0, False),    # favors the unprivileged group fourfold: a one-sided rule would pass it
    (1.25, True),    # 1 / 1.25 = 0.8, on the bound
    (1.2500001, False),
    (0.8, True),     # exactly on the bound
    (0.7999999, False),
    (1.0, True),
    (0.0, False),    # the unprivileged group never selected
    (math.inf, False),  # the privileged group never selected
    (math.nan, False),  # undefined
])
@pytest.mark.parametrize("metric, bound", [("disparate_impact", "min_di"), ("equal_opportunity_ratio", "min_eo_ratio")])
def test_the_gate_applies_the_four_fifths_rule_both_ways(ratio, passes, metric, bound):
    report = _report_with(**{metric: ratio})
    gate = {"max_abs_spd": None, "max_abs_eod": None, "min_di": None, bound: 0.8}
    assert report.passes(**gate) is passes
    lines = report.failures(**gate)
    assert len(lines) == (0 if passes else 1)
    if lines:
        assert lines[0].startswith(metric) and "four-fifths rule" in lines[0]


def test_the_gate_defaults_and_messages():
    report = _report_with(statistical_parity_difference=-0.15, disparate_impact=4.0, equal_opportunity_difference=0.1)
    lines = report.failures()  # defaults: |SPD| <= 0.1, min(DI, 1/DI) >= 0.8, |EOD| <= 0.1
    assert [line.split(" = ")[0] for line in lines] == ["statistical_parity_difference", "disparate_impact"]
    assert "min(DI, 1/DI) = 0.2500" in lines[1]
    assert not _report_with(equal_opportunity_ratio=4.0).failures()  # the TPR ratio is not gated by default
    assert _report_with(equal_opportunity_ratio=4.0).failures(min_eo_ratio=0.8)
    every = dict(max_abs_spd=0.0, min_di=1.0, max_abs_eod=0.0, min_eo_ratio=1.0, max_abs_aod=0.0,
                 max_eq_odds=0.0, max_abs_ppd=0.0)
    assert _report_with().passes(**every)  # a perfectly fair report passes the strictest gate
    assert len(_report_with(**{name: 0.5 for name in fair.METRICS}).failures(**every)) == len(fair.METRICS)


def test_report_nan_metric_fails_the_gate():
    report = fair.fairness_report([0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], privileged=1)
    assert np.isnan(report.equal_opportunity_difference)
    assert not report.passes()


def test_report_rows_are_the_codes_in_the_data():
    y_true, y_pred = np.array([1, 0, 1, 0, 1, 1]), np.array([1, 1, 0, 0, 1, 0])
    group = np.array([0, 0, 3, 3, 5, 5])  # codes 1, 2, 4 do not occur
    report = fair.fairness_report(y_true, y_pred, group, privileged=5)
    assert list(report.groups.index) == [0, 3, 5] and report.unprivileged == (0, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = MetricFrame(metrics=selection_rate, y_true=y_true, y_pred=y_pred, sensitive_features=group)
    assert list(frame.by_group.index) == [0, 3, 5]
    named = fair.fairness_report(y_true, y_pred, group, privileged=5, group_names=list("abcdef"))
    assert list(named.groups.index) == ["a", "d", "f"]
    mapped = fair.fairness_report(y_true, y_pred, group, privileged=5, group_names={0: "x", 3: "y", 5: "z"})
    assert list(mapped.groups.index) == ["x", "y", "z"]
    weighted = fair.fairness_report(y_true, y_pred, group, privileged=5, sample_weight=[1, 1, 0, 0, 1, 1])
    assert list(weighted.groups.index) == [0, 3, 5] and weighted.groups["size"][3] == 0  # zero weight, still a row
    conf = fair.group_confusion(y_true, y_pred, group)
    assert conf.shape == (6, 2, 2) and float(conf[[1, 2, 4]].sum()) == 0  # indexed by code, absent codes empty


# --------------------------------------------------------------------------- reweighing

@settings(max_examples=30, deadline=None)
@given(tables(max_groups=3))
def test_reweighing_equals_aif360(table):
    y_true, _, group, weights = table
    dataset = _aif_dataset(y_true, group, weights)
    unpriv, priv = _aif_groups([0], [c for c in range(int(group.max()) + 1) if c != 0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = Reweighing(unprivileged_groups=unpriv, privileged_groups=priv).fit_transform(dataset)
    ours = fair.reweighing_weights(y_true, group, privileged=0, sample_weight=weights)
    np.testing.assert_allclose(ours.numpy(), expected.instance_weights, **TOL)
    if group.max() == 1:  # two groups: the per-code formula is aif360's too
        np.testing.assert_allclose(fair.reweighing_weights(y_true, group, sample_weight=weights).numpy(),
                                   expected.instance_weights, **TOL)


@settings(max_examples=20, deadline=None)
@given(tables(max_groups=4))
def test_reweighing_per_code_removes_the_label_group_dependence(table):
    y_true, _, group, weights = table
    cells = np.bincount(group * 2 + y_true, minlength=2 * (group.max() + 1))
    assume(cells.min() > 0)  # a group with a single label cannot be balanced by weights
    w = fair.reweighing_weights(y_true, group, sample_weight=weights)
    rates = np.bincount(group, weights=w.numpy() * y_true) / np.bincount(group, weights=w.numpy())
    overall = np.sum(w.numpy() * y_true) / np.sum(w.numpy())
    np.testing.assert_allclose(rates, overall, rtol=1e-9)


# --------------------------------------------------------------------------- real data

def _german():
    frame = load_german_credit()
    y = frame["good_credit"].to_numpy()
    rng = np.random.default_rng(0)
    y_pred = np.where(rng.random(len(y)) < 0.8, y, 1 - y)  # a noisy classifier
    return frame, y, y_pred


@pytest.mark.parametrize("attribute", ["sex", "age"])
def test_german_credit_metrics_and_weights_equal_aif360(attribute):
    frame, y, y_pred = _german()
    privileged = (frame["sex"] == "male") if attribute == "sex" else (frame["age"] > 25)
    group = privileged.to_numpy().astype(np.int64)
    metric = _aif_metric(y, y_pred, group, None, [1], [0])
    _assert_same(_ours(y, y_pred, privileged, None, None), _aif_values(metric))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = Reweighing(*_aif_groups([1], [0])).fit_transform(_aif_dataset(y, group))
    np.testing.assert_allclose(fair.reweighing_weights(y, privileged).numpy(), expected.instance_weights, **TOL)
    reweighed = fair.statistical_parity_difference(
        None, y, privileged, sample_weight=fair.reweighing_weights(y, privileged))
    assert abs(float(reweighed)) < 1e-12  # reweighing drives the label gap to 0


def test_adult_sex_race_intersections_equal_aif360_and_fairlearn():
    frame = load_adult()
    y = frame["income"].to_numpy()
    y_pred = (frame["education_num"] >= 13).to_numpy().astype(np.int64)  # a crude rule
    weights = frame["fnlwgt"].to_numpy(dtype=np.float64)
    for column, privileged_value in (("sex", "Male"), ("race", "White")):
        group = (frame[column] == privileged_value).to_numpy().astype(np.int64)
        metric = _aif_metric(y, y_pred, group, weights, [1], [0])
        _assert_same(_ours(y, y_pred, group, weights, 1), _aif_values(metric))
    cells = pd.Categorical(frame["sex"].astype(str) + " & " + frame["race"].astype(str))
    codes = cells.codes.astype(np.int64)
    white_men = list(cells.categories).index("Male & White")
    report = fair.fairness_report(y, y_pred, codes, privileged=white_men, group_names=list(cells.categories))
    others = [c for c in range(len(cells.categories)) if c != white_men]
    _assert_same(report.metrics().to_dict(), _aif_values(_aif_metric(y, y_pred, codes, None, [white_men], others)))
    frame_fl = MetricFrame(metrics=selection_rate, y_true=y, y_pred=y_pred, sensitive_features=cells.astype(str))
    np.testing.assert_allclose(report.groups["selection_rate"].to_numpy(),
                               frame_fl.by_group.loc[list(cells.categories)].to_numpy(), **TOL)


# --------------------------------------------------------------------------- penalty

@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 200), st.integers(2, 4))
def test_parity_penalty_equals_fairlearn_mean_prediction_gap(seed, n, num_groups):
    rng = np.random.default_rng(seed)
    scores = rng.random(n)
    group = rng.integers(0, num_groups, n)
    expected = MetricFrame(metrics=mean_prediction, y_true=np.zeros(n), y_pred=scores,
                           sensitive_features=group).difference()
    ours = fair.demographic_parity_penalty(torch.from_numpy(scores), group)
    np.testing.assert_allclose(float(ours), expected, **TOL)


def test_parity_penalty_is_the_common_fairness_loss_and_differentiable():
    rng = np.random.default_rng(6)
    scores = torch.tensor(rng.random(50), requires_grad=True)
    group = torch.from_numpy(rng.integers(0, 2, 50))
    fairness_loss = (scores[group == 0].mean() - scores[group == 1].mean()).abs()  # a common recipe's
    assert torch.allclose(fair.demographic_parity_penalty(scores, group), fairness_loss)
    assert torch.autograd.gradcheck(lambda s: fair.demographic_parity_penalty(s, group), (scores,))
    one_group = fair.demographic_parity_penalty(scores[:3], torch.zeros(3, dtype=torch.long), num_groups=2)
    assert float(one_group.detach()) == 0.0


# --------------------------------------------------------------------------- thresholds

@settings(max_examples=30, deadline=None)
@given(tables(max_groups=3, weighted=False), st.floats(0.05, 1.0))
def test_group_thresholds_reach_the_target_tpr_per_fairlearn(table, target_rate):
    y_true, _, group, _ = table
    num_groups = int(group.max()) + 1
    positives = np.bincount(group[y_true == 1], minlength=num_groups)
    if (positives == 0).any():
        with pytest.raises(ValueError, match="group"):
            fair.group_thresholds(np.random.default_rng(0).random(len(y_true)), y_true, group,
                                  target_rate=target_rate)
        return
    scores = np.random.default_rng(len(y_true)).random(len(y_true))  # distinct scores
    thresholds = fair.group_thresholds(torch.from_numpy(scores), y_true, group, target_rate=target_rate)
    y_pred = (scores >= thresholds.numpy()[group]).astype(np.int64)
    tpr = MetricFrame(metrics=true_positive_rate, y_true=y_true, y_pred=y_pred,
                      sensitive_features=group).by_group.sort_index().to_numpy()
    needed = np.ceil(target_rate * positives - 1e-9)
    np.testing.assert_allclose(tpr * positives, needed, atol=1e-9)  # the smallest count that reaches it


def test_group_thresholds_demographic_parity_equalizes_selection():
    rng = np.random.default_rng(7)
    scores, group = rng.random(1000), rng.integers(0, 2, 1000)
    scores[group == 1] += 0.3
    thresholds = fair.group_thresholds(scores, None, group, criterion="demographic_parity", target_rate=0.4)
    y_pred = (scores >= thresholds.numpy()[group]).astype(np.int64)
    rates = MetricFrame(metrics=selection_rate, y_true=np.zeros(1000), y_pred=y_pred,
                        sensitive_features=group).by_group.to_numpy()
    np.testing.assert_allclose(rates, 0.4, atol=2e-3)
    nothing = fair.group_thresholds(scores, None, group, criterion="demographic_parity", target_rate=0.0)
    assert torch.isinf(nothing).all()


def test_group_thresholds_old_keyword_target_still_works_with_a_warning():
    scores, y = torch.tensor([0.9, 0.8, 0.3, 0.6, 0.4]), torch.tensor([1, 1, 1, 1, 1])
    group = torch.tensor([0, 0, 0, 1, 1])
    with pytest.warns(FutureWarning, match="target_rate"):
        old = fair.group_thresholds(scores, y, group, target=0.5)
    assert torch.equal(old, fair.group_thresholds(scores, y, group, target_rate=0.5))
    with pytest.raises(TypeError, match="target_rate"):
        fair.group_thresholds(scores, y, group, target=0.5, target_rate=0.5)


class _Scores(BaseEstimator, ClassifierMixin):
    """A 'model' whose prediction is its one feature: hands fairlearn ready-made scores."""

    def fit(self, x, y):
        self.fitted_ = True
        return self

    def predict(self, x):
        return np.asarray(x)[:, 0]


def _german_scores():
    table = load_german_credit(as_frame=False)
    x, y, sex = table.features.double().numpy(), table.target.numpy(), table.protected["sex"].numpy()
    model = LogisticRegression(max_iter=2000).fit(x, y)
    return model.predict_proba(x)[:, 1], y, sex


def _three_groups():
    rng = np.random.default_rng(1)
    group = rng.integers(0, 3, 3000)
    y = (rng.random(3000) < 0.3 + 0.15 * group).astype(np.int64)
    scores = 1 / (1 + np.exp(-(2 * y - 1 + 0.5 * group + rng.normal(0, 1.2, 3000))))
    return scores, y, group


@pytest.mark.parametrize("data", [_german_scores, _three_groups], ids=["German credit, sex", "three groups"])
def test_group_thresholds_against_fairlearn_threshold_optimizer(data):
    """Same data, same constraint (equal TPRs), two methods; where and why they differ.

    fairlearn's ThresholdOptimizer picks the common TPR that maximizes accuracy and reaches
    it exactly in expectation by randomizing between two thresholds per group (so, at that
    TPR, each group's FPR is the lowest any mix of thresholds gives). group_thresholds takes
    the TPR as given (we give it fairlearn's) and is deterministic: each group's TPR lies
    between the target and the target plus ties / P_g (ties: the group's positives scored
    exactly at its threshold, 1 without ties), and its FPR can only be higher than
    fairlearn's.
    """
    scores, y, group = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer = ThresholdOptimizer(estimator=_Scores().fit(None, None), constraints="true_positive_rate_parity",
                                       objective="accuracy_score", prefit=True, predict_method="predict")
        optimizer.fit(scores[:, None], y, sensitive_features=group)
        expected_positive = optimizer._pmf_predict(scores[:, None], sensitive_features=group)[:, 1]
        draws = [optimizer.predict(scores[:, None], sensitive_features=group, random_state=seed) for seed in (0, 1)]
    common_tpr = float(optimizer._x_best)
    thresholds = fair.group_thresholds(torch.from_numpy(scores), y, group, target_rate=common_tpr).numpy()
    ours = (scores >= thresholds[group]).astype(np.float64)
    for code in np.unique(group):
        pos, neg = (group == code) & (y == 1), (group == code) & (y == 0)
        p_g = int(pos.sum())
        fl_tpr, fl_fpr = expected_positive[pos].mean(), expected_positive[neg].mean()
        our_tpr, our_fpr = ours[pos].mean(), ours[neg].mean()
        ties = int((scores[pos] == thresholds[code]).sum())
        np.testing.assert_allclose(fl_tpr, common_tpr, atol=1e-9)  # exact, in expectation
        assert common_tpr - 1e-9 <= our_tpr <= common_tpr + max(ties, 1) / p_g + 1e-9, (code, our_tpr)
        assert fl_fpr <= our_fpr + 1e-9, (code, fl_fpr, our_fpr)  # its mix lies on the ROC hull
    # the constraint violation: fairlearn's expected TPRs are equal, ours differ by less than one positive
    tprs = [ours[(group == c) & (y == 1)].mean() for c in np.unique(group)]
    assert max(tprs) - min(tprs) < max(1 / ((group == c) & (y == 1)).sum() for c in np.unique(group)) + 1e-9
    # fairlearn's decisions are random for the rows between its two thresholds; ours are not
    assert (draws[0] != draws[1]).any()
    again = fair.group_thresholds(torch.from_numpy(scores), y, group, target_rate=common_tpr).numpy()
    assert np.array_equal(thresholds, again)


# --------------------------------------------------------------------------- adversarial debiasing

def _biased_table(n=600, seed=0):
    generator = torch.Generator().manual_seed(seed)
    group = (torch.rand(n, generator=generator) < 0.5).long()
    x = torch.randn(n, 4, generator=generator)
    x[:, 0] += 1.5 * group  # a proxy of the group
    y = ((x[:, 1] + x[:, 0] + 0.3 * torch.randn(n, generator=generator)) > 0.75).long()
    return x, y, group


@pytest.mark.parametrize("method", ["reversal", "projection"])
def test_adversarial_debiaser_shrinks_the_parity_gap_and_is_deterministic(method):
    x, y, group = _biased_table()
    plain = fair.AdversarialDebiaser(alpha=0.0, epochs=15, lr=3e-3, progress=False).fit(x, y, group)
    debiased = fair.AdversarialDebiaser(alpha=3.0, warmup_epochs=3, epochs=15, lr=3e-3, method=method,
                                        progress=False).fit(x, y, group)
    gap = [abs(float(fair.statistical_parity_difference(None, m.predict(x), group, privileged=1)))
           for m in (plain, debiased)]
    assert gap[1] < gap[0] / 3  # the plain predictor's gap is about 0.37 here
    again = fair.AdversarialDebiaser(alpha=3.0, warmup_epochs=3, epochs=15, lr=3e-3, method=method,
                                     progress=False).fit(x, y, group)
    assert torch.equal(again.predict_proba(x), debiased.predict_proba(x))
    assert [h["alpha"] for h in debiased.history_][:5] == [0.0, 1.0, 2.0, 3.0, 3.0]
    assert torch.allclose(debiased.predict_proba(x).sum(1), torch.ones(len(x)))


# --------------------------------------------------------------------------- large group codes



BIG = 50_000_000


def test_a_code_of_50_million_is_re_indexed_not_allocated():
    """Codes 0 and 50,000,000 give the numbers that codes 0 and 1 give, in time, with tables of 2 groups."""
    frame, y, y_pred = _german()
    sex = (frame["sex"] == "male").to_numpy().astype(np.int64)
    rng = np.random.default_rng(9)
    weights = rng.uniform(0.5, 2.0, len(y))
    scores = rng.random(len(y))
    big = sex * BIG
    assert _as_codes(big).count == 2 and _as_codes(big).codes.tolist() == [0, BIG]  # memory by groups
    with time_limit(20):
        _assert_same(_ours(y, y_pred, big, weights, BIG), _ours(y, y_pred, sex, weights, 1))
        report = fair.fairness_report(y, y_pred, big, privileged=BIG, group_names={0: "female", BIG: "male"})
        small = fair.fairness_report(y, y_pred, sex, privileged=1, group_names=["female", "male"])
        pd.testing.assert_frame_equal(report.groups, small.groups)
        assert report.privileged == (BIG,) and report.unprivileged == (0,)
        np.testing.assert_array_equal(fair.reweighing_weights(y, big, privileged=BIG).numpy(),
                                      fair.reweighing_weights(y, sex, privileged=1).numpy())
        np.testing.assert_array_equal(fair.reweighing_weights(y, big).numpy(), fair.reweighing_weights(y, sex).numpy())
        assert float(fair.demographic_parity_penalty(torch.from_numpy(scores), big)) == \
            float(fair.demographic_parity_penalty(torch.from_numpy(scores), sex))
        x = torch.from_numpy(np.c_[scores, sex]).float()
        debiased = fair.AdversarialDebiaser(epochs=2, batch_size=256, progress=False).fit(x, y, big)
        assert debiased.adversary_[-1].out_features == 2
        three = np.where(rng.random(len(y)) < 0.2, 7 * BIG, big)  # three codes, two on one side
        _assert_same(_ours(y, y_pred, three, None, [BIG, 7 * BIG]), _ours(y, y_pred, np.sign(three), None, 1))
        with pytest.raises(ValueError, match="num_groups"):
            fair.group_confusion(y, y_pred, big)
        with pytest.raises(ValueError, match="and 49999994 more"):
            fair.group_thresholds(scores, y, big)
    large = fair.group_confusion(y, y_pred, sex + 70_000, num_groups=70_002)  # asked for: a table by code
    assert large.shape == (70_002, 2, 2) and torch.equal(large[70_000:], fair.group_confusion(y, y_pred, sex))


# --------------------------------------------------------------------------- devices

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_kernels_stay_on_the_input_device_and_agree_with_aif360(device):
    rng = np.random.default_rng(8)
    y_true, y_pred, group = rng.integers(0, 2, 2000), rng.integers(0, 2, 2000), rng.integers(0, 3, 2000)
    weights = rng.uniform(0.5, 2.0, 2000)
    on = {name: torch.from_numpy(a).to(device) for name, a in
          (("y_true", y_true), ("y_pred", y_pred), ("group", group), ("w", weights))}
    conf = fair.group_confusion(on["y_true"], on["y_pred"], on["group"], sample_weight=on["w"])
    spd = fair.statistical_parity_difference(on["y_true"], on["y_pred"], on["group"], privileged=2,
                                             sample_weight=on["w"])
    w = fair.reweighing_weights(on["y_true"], on["group"], privileged=2, sample_weight=on["w"])
    thresholds = fair.group_thresholds(on["w"] / 2, on["y_true"], on["group"], target_rate=0.5)
    assert {t.device.type for t in (conf, spd, w, thresholds)} == {torch.device(device).type}
    metric = _aif_metric(y_true, y_pred, group, weights, [2], [0, 1])
    np.testing.assert_allclose(float(spd), metric.statistical_parity_difference(), **TOL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = Reweighing(*_aif_groups([2], [0, 1])).fit_transform(_aif_dataset(y_true, group, weights))
    np.testing.assert_allclose(w.cpu().numpy(), expected.instance_weights, **TOL)
