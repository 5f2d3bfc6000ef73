"""trustml_lab.serve.monitor: figures against the kernels they reuse, alerts at their stated false-alarm rate, power.

The false-alarm claim is tested by simulation on the German credit data: each window and
its reference are a random split of the 1,000 real applicants (so both are samples of one
population: the two-sample null holds exactly), and the decisions are drawn with known
group rates *on the boundary* of every fairness rule (selection rates 0.5 and 0.4: ratio
0.8, gap 0.1; decisions independent of the label, so TPRs are the same). The monitor must
raise an alert in at most ``1 - confidence`` of the windows, within the binomial error.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from trustml_lab._stats import clopper_pearson
from trustml_lab.data import load_german_credit
from trustml_lab.fairness import group_confusion
from trustml_lab.serve import drift
from trustml_lab.serve.monitor import MISSING, Monitor, WindowReport

ALPHA = 0.05


@pytest.fixture(scope="module")
def german():
    frame = load_german_credit()
    features = [c for c in frame.columns if c != "good_credit"]
    return frame, features, frame[features].to_dict("records"), frame["good_credit"].to_numpy(), \
        (frame["sex"] == "male").to_numpy()


def window_rows(records, index, decisions, labels=None):
    return [{"inputs": records[i], "decision": int(d), "label": None if labels is None else int(labels[i])}
            for i, d in zip(index, decisions)]


# --------------------------------------------------------------------------- figures

def test_group_figures_equal_the_fairness_kernel_and_clopper_pearson(german):
    frame, features, records, labels, male = german
    rng = np.random.default_rng(0)
    monitor = Monitor(frame[features].iloc[:600], group="sex", min_window=100, window=400)
    index = np.arange(600, 1000)
    decisions = rng.random(400) < 0.6
    known = rng.random(400) < 0.7  # outcomes arrived for 70% of the decisions
    rows = window_rows(records, index, decisions, labels)
    for row, k in zip(rows, known):
        if not k:
            row["label"] = None
    report = monitor.evaluate(rows)
    group = np.where(male[index], 1, 0)  # codes in the monitor's order: "female", "male"
    assert [g.group for g in report.groups] == ["female", "male"]
    conf = group_confusion(labels[index][known], decisions[known].astype(int), group[known], num_groups=2)
    # the family: one drift test per feature, 2 rules x 2 ordered pairs for each of the two rates
    assert report.tests == len(features) + 4 + 4 and report.level == pytest.approx(ALPHA / report.tests)
    for g, rates in enumerate(report.groups):
        n, s = int((group == g).sum()), int(decisions[group == g].sum())
        assert (rates.rows, rates.selected) == (n, s)
        assert rates.selection_rate == pytest.approx(s / n)
        ci = stats.binomtest(s, n).proportion_ci(1 - ALPHA, method="exact")  # for reading: at confidence
        assert (rates.selection_low, rates.selection_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
        tp, positives = float(conf[g, 1, 1]), float(conf[g, 1].sum())
        assert (rates.true_positives, rates.positives, rates.labeled) == (tp, positives, float(conf[g].sum()))
        assert rates.tpr == pytest.approx(tp / positives)
        cp = clopper_pearson(tp, positives, confidence=1 - ALPHA)
        assert (rates.tpr_low, rates.tpr_high) == pytest.approx((float(cp.low), float(cp.high)))
        assert rates.error_rate == pytest.approx(float(conf[g, 0, 1] + conf[g, 1, 0]) / float(conf[g].sum()))
    sel = [r.selection_rate for r in report.groups]
    assert report.selection_ratio == pytest.approx(min(sel) / max(sel))
    assert report.selection_difference == pytest.approx(max(sel) - min(sel))
    assert report.labeled == int(known.sum())


def test_drift_figures_equal_scipy_feature_by_feature(german):
    frame, features, records, labels, male = german
    monitor = Monitor(frame[features].iloc[:700], group="sex", min_window=100, window=300)
    report = monitor.evaluate(window_rows(records, range(700, 1000), np.ones(300)))
    ref, cur = frame.iloc[:700], frame.iloc[700:]
    by_name = {d.feature: d for d in report.drift}
    assert set(by_name) == set(features)
    for name in monitor.numeric:
        theirs = stats.ks_2samp(ref[name].to_numpy(float), cur[name].to_numpy(float))
        assert by_name[name].test == "ks" and by_name[name].statistic == pytest.approx(theirs.statistic)
        assert by_name[name].pvalue == pytest.approx(theirs.pvalue, rel=1e-10)
        assert by_name[name].psi == pytest.approx(float(drift.psi(ref[name].to_numpy(float),
                                                                  cur[name].to_numpy(float))))
    for name in monitor.categorical:
        table = pd.crosstab(np.r_[np.zeros(700), np.ones(300)], np.r_[ref[name].astype(str), cur[name].astype(str)])
        theirs = stats.chi2_contingency(table.to_numpy())
        assert by_name[name].test == "chi2" and by_name[name].statistic == pytest.approx(theirs.statistic)
        assert by_name[name].pvalue == pytest.approx(theirs.pvalue, rel=1e-9)
    assert set(monitor.numeric) == {"duration_months", "credit_amount", "installment_rate", "residence_since", "age",
                                    "existing_credits", "num_dependents"}


def test_the_report_is_json_for_the_metrics_endpoint(german):
    frame, features, records, labels, male = german
    monitor = Monitor(frame[features], group="sex", min_window=10, window=50)
    report = monitor.evaluate(window_rows(records, range(50), np.zeros(50)))  # nothing selected, no labels
    text = json.dumps(report.to_dict(), allow_nan=False)
    back = json.loads(text)
    assert back["rows"] == 50 and back["groups"][0]["tpr"] is None and back["selection_ratio"] is None
    assert isinstance(report, WindowReport) and not report.alerted


def test_new_categories_missing_values_and_unseen_groups_are_counted():
    reference = pd.DataFrame({"job": ["a", "b", None, "a"] * 50, "g": ["x", "y"] * 100, "n": np.arange(200.0)})
    monitor = Monitor(reference, group="g", min_window=10, window=100)
    assert monitor.categories["job"] == (MISSING, "a", "b")
    rows = [{"inputs": {"job": "c" if i % 2 else None, "g": "z" if i < 10 else "x", "n": float(i)},
             "decision": 1} for i in range(40)]
    report = monitor.evaluate(rows)
    job = next(d for d in report.drift if d.feature == "job")
    ref_codes = np.array([{MISSING: 0, "a": 1, "b": 2}[MISSING if pd.isna(v) else v] for v in reference["job"]])
    cur_codes = np.array([3 if i % 2 else 0 for i in range(40)])
    assert job.psi == pytest.approx(float(drift.psi_categorical(ref_codes, cur_codes)))
    chi = drift.chi_square_test(ref_codes, cur_codes)  # the monitor keeps the reference's counts: the same test
    assert (job.statistic, job.pvalue) == (float(chi.statistic), float(chi.pvalue))
    ks = drift.ks_test(reference["n"].to_numpy(), np.arange(40.0))
    n = next(d for d in report.drift if d.feature == "n")
    assert (n.statistic, n.pvalue, n.psi) == (float(ks.statistic), float(ks.pvalue),
                                              float(drift.psi(reference["n"].to_numpy(), np.arange(40.0))))
    assert [(g.group, g.rows) for g in report.groups] == [("x", 30), ("y", 0), ("z", 10)]
    assert report.groups[1].selection_rate is None


def test_no_alert_before_the_minimum_window():
    reference = pd.DataFrame({"x": np.arange(1000.0), "g": ["a", "b"] * 500})
    monitor = Monitor(reference, group="g", min_window=200, window=500)
    blatant = [{"inputs": {"x": 1e6 + i, "g": "a" if i % 2 else "b"}, "decision": int(i % 2)} for i in range(199)]
    early = monitor.evaluate(blatant)
    assert not early.judged and early.alerts == ()
    assert early.drift[0].pvalue < 1e-30  # the evidence is there, but the window is too small to judge
    assert {a.kind for a in monitor.evaluate(blatant + blatant[:1]).alerts} >= {"drift", "selection_ratio"}


def test_tpr_alerts_need_known_positives_in_each_group(german):
    frame, features, records, labels, male = german
    rng = np.random.default_rng(3)
    monitor = Monitor(frame[features], group="sex", min_window=200, min_positives=30, window=1000)
    approve = np.where(labels == 1, np.where(male, 0.9, 0.45), 0.3) > rng.random(1000)  # TPR 0.9 vs 0.45
    report = monitor.evaluate(window_rows(records, range(1000), approve, labels))
    kinds = {a.kind for a in report.alerts}
    assert {"tpr_ratio", "tpr_difference"} <= kinds
    alert = next(a for a in report.alerts if a.kind == "tpr_ratio")
    assert alert.feature_or_group == "female vs male" and alert.threshold == 0.8
    female, male_rates = report.groups
    assert alert.statistic == pytest.approx(female.tpr / male_rates.tpr)
    # the evidence: MOVER's lower bound of 0.8 TPR_m - TPR_f from one-sided Clopper-Pearson bounds
    k = torch.tensor([female.true_positives, male_rates.true_positives])
    n = torch.tensor([female.positives, male_rates.positives])
    upper = clopper_pearson(k, n, confidence=1 - report.level, alternative="less").high
    lower = clopper_pearson(k, n, confidence=1 - report.level, alternative="greater").low
    bound = 0.8 * male_rates.tpr - female.tpr - math.hypot(0.8 * (male_rates.tpr - float(lower[1])),
                                                           float(upper[0]) - female.tpr)
    assert bound > 0 and f"is {bound:.3f} > 0" in alert.evidence
    unlabeled = monitor.evaluate(window_rows(records, range(1000), approve))
    assert not {a.kind for a in unlabeled.alerts} & {"tpr_ratio", "tpr_difference"}
    assert unlabeled.tests == report.tests - 4


def test_rules_can_be_switched_off():
    reference = pd.DataFrame({"g": ["a", "b"] * 100})
    rows = [{"inputs": {"g": "a" if i % 2 else "b"}, "decision": int(i % 2)} for i in range(200)]
    assert Monitor(reference, group="g", min_ratio=None, max_difference=None, window=200).evaluate(rows).alerts == ()
    only_gap = Monitor(reference, group="g", min_ratio=None, window=200).evaluate(rows)
    assert [a.kind for a in only_gap.alerts] == ["selection_difference"]


def test_series_gives_per_window_and_group_approval_and_error_rates():
    reference = pd.DataFrame({"g": ["a", "b"] * 10})
    monitor = Monitor(reference, group="g", window=4, min_window=2)
    rows = [{"inputs": {"g": "ab"[i % 2]}, "decision": int(i < 6), "label": 1 if i % 4 else None,
             "time": f"2025-01-01T00:00:{i:02d}+00:00"} for i in range(10)]
    points = monitor.series(rows)
    assert [(p.window, p.group, p.rows) for p in points] == [(0, "a", 2), (0, "b", 2), (1, "a", 2), (1, "b", 2),
                                                             (2, "a", 1), (2, "b", 1)]
    assert [p.approval_rate for p in points] == [1.0, 1.0, 0.5, 0.5, 0.0, 0.0]
    assert [p.labeled for p in points] == [1, 2, 1, 2, 0, 1]
    assert [p.error_rate for p in points] == [0.0, 0.0, 1.0, 0.5, None, 1.0]
    assert points[2].first_time == "2025-01-01T00:00:04+00:00"
    json.dumps([p.to_dict() for p in points], allow_nan=False)


# --------------------------------------------------------------------------- alerts on evidence

@pytest.mark.slow
def test_same_distribution_traffic_alerts_at_most_at_the_stated_rate(german):
    """400 windows of unchanged traffic at every fairness rule's boundary: Bonferroni keeps any-alert <= alpha."""
    frame, features, records, labels, male = german
    rng = np.random.default_rng(2025)
    windows, alerted, uncorrected = 400, 0, 0
    for _ in range(windows):
        perm = rng.permutation(len(frame))
        reference, window = perm[:500], perm[500:]
        monitor = Monitor(frame.iloc[reference][features], group="sex", window=500, min_window=200,
                          confidence=1 - ALPHA, min_ratio=0.8, max_difference=0.1, psi_threshold=0.0)
        decisions = rng.random(500) < np.where(male[window], 0.5, 0.4)  # ratio 0.8, gap 0.1: on the boundary
        report = monitor.evaluate(window_rows(records, window, decisions, labels))
        assert report.judged and report.tests == len(features) + 8
        alerted += report.alerted
        uncorrected += any(d.pvalue < ALPHA for d in report.drift)
    rate, se = alerted / windows, math.sqrt(ALPHA * (1 - ALPHA) / windows)
    assert rate <= ALPHA + 3 * se, f"{alerted} of {windows} unchanged windows raised an alert"
    assert uncorrected / windows > 5 * ALPHA  # without the correction, most windows would alert somewhere


@pytest.mark.parametrize("rates, rule", [
    ((0.4, 0.5), {"min_ratio": 0.8, "max_difference": None}),  # on the four-fifths boundary
    ((0.08, 0.1), {"min_ratio": 0.8, "max_difference": None}),  # rare approvals: Clopper-Pearson is skewed
    ((0.4, 0.5), {"min_ratio": None, "max_difference": 0.1}),  # on the parity-gap boundary
])
@pytest.mark.slow
def test_each_fairness_rule_holds_its_level_on_the_boundary(rates, rule):
    """A monitor with no drift features, only one rule: 2 tests (the ordered pairs) at level alpha / 2 each;
    with the true rates on the boundary the rule fails in at most that share of the windows (MOVER's bound
    is approximate, so this is the claim to check; a large alpha makes the check sharp with few windows)."""
    confidence, windows, n = 0.8, 800, 300
    monitor = Monitor(pd.DataFrame({"g": ["a", "b"]}), group="g", features=[], window=n, min_window=n,
                      confidence=confidence, **rule)
    rng = np.random.default_rng(11)
    alerted, inputs = 0, {True: {"g": "a"}, False: {"g": "b"}}
    for _ in range(windows):
        group = rng.random(n) < 0.35  # a minority group "a" of about 35%
        decision = rng.random(n) < np.where(group, *rates)
        report = monitor.evaluate([{"inputs": inputs[g], "decision": d} for g, d in zip(group.tolist(),
                                                                                        decision.tolist())])
        assert report.tests == 2
        alerted += report.alerted
    level = (1 - confidence) / 2
    assert alerted / windows <= level + 3 * math.sqrt(level * (1 - level) / windows), alerted


@pytest.mark.slow
def test_a_known_shift_is_caught_with_high_power(german):
    """Traffic from the same applicants reweighted to a changed group mix (women weighted 3x) and younger
    ages (under 30 weighted 3x), in windows of 500; a model that approves women at 0.2 and men at 0.5
    (a four-fifths ratio of 0.4). At a ratio of 0.5 in windows of 300 the power is only about 0.4: a
    fairness alert on evidence needs a few hundred decisions per group."""
    frame, features, records, labels, male = german
    rng = np.random.default_rng(7)
    monitor = Monitor(frame[features], group="sex", window=500, min_window=200)
    young, female = (frame["age"] < 30).to_numpy(), ~male
    weights = np.where(female, 3.0, 1.0) * np.where(young, 3.0, 1.0)
    caught = {"drift": 0, "fairness": 0}
    trials = 40
    for _ in range(trials):
        index = rng.choice(len(frame), size=500, p=weights / weights.sum())
        report = monitor.evaluate(window_rows(records, index, rng.random(500) < np.where(male[index], 0.5, 0.2)))
        drifted = {a.feature_or_group for a in report.alerts if a.kind == "drift"}
        caught["drift"] += bool(drifted & {"sex", "age", "personal_status"})
        caught["fairness"] += any(a.kind == "selection_ratio" for a in report.alerts)
    assert caught["drift"] >= 0.9 * trials and caught["fairness"] >= 0.9 * trials, caught


# --------------------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def small():
    return pd.DataFrame({"age": [30.0, 40.0, 50.0, 60.0], "sex": ["f", "m", "f", "m"]})


@pytest.mark.parametrize("kwargs, arg", [
    ({"window": 0}, "window"), ({"window": 10.0}, "window"),
    ({"min_window": 600}, "min_window"), ({"min_window": 0}, "min_window"),
    ({"min_positives": 0}, "min_positives"),
    ({"confidence": 1.0}, "confidence"), ({"confidence": 0.0}, "confidence"), ({"confidence": math.nan}, "confidence"),
    ({"min_ratio": 0.0}, "min_ratio"), ({"min_ratio": 1.2}, "min_ratio"),
    ({"max_difference": 1.0}, "max_difference"), ({"max_difference": -0.1}, "max_difference"),
    ({"bins": 1}, "bins"), ({"floor": 0.0}, "floor"), ({"psi_threshold": -1.0}, "psi_threshold"),
    ({"psi_threshold": math.inf}, "psi_threshold"),
    ({"group": "race"}, "group"), ({"group": 3}, "group"),
    ({"features": ["age", "income"]}, "features"), ({"features": "age"}, "features"),
    ({"features": ["age", "age"]}, "features"),
])
def test_bad_knobs_are_refused_naming_them(small, kwargs, arg):
    with pytest.raises((ValueError, TypeError), match=arg):
        Monitor(small, **{"group": "sex", **kwargs})


@pytest.mark.parametrize("reference, arg", [
    (pd.DataFrame({"age": [], "sex": []}), "reference"),
    ([1, 2, 3], "reference"),
    (pd.DataFrame({"age": [30.0, math.nan], "sex": ["f", "m"]}), "age"),
    (pd.DataFrame({"age": [30.0, math.inf], "sex": ["f", "m"]}), "age"),
])
def test_bad_references_are_refused(reference, arg):
    with pytest.raises((ValueError, TypeError), match=arg):
        Monitor(reference, group="sex")


@pytest.mark.parametrize("row, arg, error", [
    ({"inputs": {"sex": "f"}, "decision": 1}, "age", ValueError),  # a feature missing from the traffic
    ({"inputs": {"age": 30.0}, "decision": 1}, "sex", ValueError),
    ({"inputs": {"age": "thirty", "sex": "f"}, "decision": 1}, "age", TypeError),
    ({"inputs": {"age": True, "sex": "f"}, "decision": 1}, "age", TypeError),
    ({"inputs": {"age": math.nan, "sex": "f"}, "decision": 1}, "age", ValueError),
    ({"inputs": {"age": 30.0, "sex": "f"}, "decision": 2}, "decision", ValueError),
    ({"inputs": {"age": 30.0, "sex": "f"}, "decision": "yes"}, "decision", TypeError),
    ({"inputs": {"age": 30.0, "sex": "f"}, "decision": 1, "label": 0.5}, "label", ValueError),
    ({"inputs": {"age": 30.0, "sex": "f"}, "decision": 1, "score": math.nan}, "score", ValueError),
    ({"inputs": {"age": 30.0, "sex": "f"}, "decision": 1, "score": math.inf}, "score", ValueError),
    ({"inputs": [30.0, "f"], "decision": 1}, "inputs", TypeError),
])
def test_bad_traffic_is_refused_naming_the_field(small, row, arg, error):
    monitor = Monitor(small, group="sex", window=4, min_window=1)
    good = {"inputs": {"age": 35.0, "sex": "m"}, "decision": 0}
    with pytest.raises(error, match=arg):
        monitor.evaluate([good, row])


def test_decisions_must_be_a_sequence(small):
    monitor = Monitor(small, group="sex", window=4, min_window=1)
    for bad in ({"inputs": {}}, "rows", 3):
        with pytest.raises(TypeError, match="decisions"):
            monitor.evaluate(bad)
    assert monitor.evaluate([]).rows == 0 and torch.is_tensor(drift.psi(np.ones(2), np.ones(2)))
