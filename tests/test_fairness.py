"""trustml_lab.fairness against aif360 and fairlearn, on random and real data, plus bad input."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from trustml_lab import fairness as fair
from trustml_lab.data import load_adult, load_german_credit

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from aif360.algorithms.preprocessing import Reweighing
    from aif360.datasets import BinaryLabelDataset
    from aif360.metrics import BinaryLabelDatasetMetric, ClassificationMetric
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    mean_prediction,
    selection_rate,
    true_positive_rate,
)

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
    n = draw(st.integers(4, 300))
    num_groups = draw(st.integers(2, max_groups))
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


def test_undefined_rates_follow_aif360():
    # the unprivileged side (code 0) has no positives and no approvals: TPR nan, PPV 0
    y_true = np.array([0, 0, 1, 1, 0])
    y_pred = np.array([0, 0, 1, 0, 1])
    group = np.array([0, 0, 1, 1, 1])
    reference = _aif_values(_aif_metric(y_true, y_pred, group, None, [1], [0]))
    ours = _ours(y_true, y_pred, group, None, 1)
    assert np.isnan(ours["equal_opportunity_difference"])
    assert ours["equalized_odds_difference"] == 1.0  # aif360: max(|dFPR|, nan) = |dFPR|
    _assert_same(ours, reference)
    # the privileged side is never approved: DI is inf
    never = _ours(y_true, np.array([1, 0, 0, 0, 0]), group, None, 1)
    assert never["disparate_impact"] == np.inf


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


@settings(max_examples=25, deadline=None)
@given(tables(max_groups=2))
def test_two_group_metrics_equal_fairlearn(table):
    y_true, y_pred, group, weights = table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dpd = demographic_parity_difference(y_true, y_pred, sensitive_features=group, sample_weight=weights)
        eod = equalized_odds_difference(y_true, y_pred, sensitive_features=group, sample_weight=weights)
    spd = fair.statistical_parity_difference(y_true, y_pred, group, privileged=1, sample_weight=weights)
    ours_eod = fair.equalized_odds_difference(y_true, y_pred, group, privileged=1, sample_weight=weights)
    np.testing.assert_allclose(abs(float(spd)), dpd, **TOL)
    defined = all(np.any((group == g) & (y_true == v)) for g in (0, 1) for v in (0, 1))
    if defined:  # fairlearn counts an undefined rate as 0
        np.testing.assert_allclose(float(ours_eod), eod, **TOL)


# --------------------------------------------------------------------------- report

def test_report_scalars_equal_the_functions_and_the_gate():
    rng = np.random.default_rng(5)
    y_true, y_pred, group = rng.integers(0, 2, 300), rng.integers(0, 2, 300), rng.integers(0, 4, 300)
    report = fair.fairness_report(y_true, y_pred, group, privileged=[2, 3],
                                  group_names=["a", "b", "c", "d"])
    assert report.privileged == (2, 3) and report.unprivileged == (0, 1)
    assert list(report.groups.index) == ["a", "b", "c", "d"]
    _assert_same(report.metrics().to_dict(), _ours(y_true, y_pred, group, None, [2, 3]))
    reference = _aif_values(_aif_metric(y_true, y_pred, group, None, [2, 3], [0, 1]))
    _assert_same(report.metrics().to_dict(), reference)
    fair_report = fair.fairness_report(y_true, y_true, group, privileged=[2, 3])
    assert fair_report.passes(max_abs_spd=1.0, min_di=0.0)
    assert report.passes(max_abs_spd=None, min_di=None, max_abs_eod=None)
    lines = report.failures(max_abs_spd=-1.0, min_di=None, max_abs_eod=None)
    assert len(lines) == 1 and lines[0].startswith("statistical_parity_difference")
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.disparate_impact = 1.0


def test_report_nan_metric_fails_the_gate():
    report = fair.fairness_report([0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], privileged=1)
    assert np.isnan(report.equal_opportunity_difference)
    assert not report.passes()


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


def test_parity_penalty_is_the_seed_loss_and_differentiable():
    rng = np.random.default_rng(6)
    scores = torch.tensor(rng.random(50), requires_grad=True)
    group = torch.from_numpy(rng.integers(0, 2, 50))
    seed_loss = (scores[group == 0].mean() - scores[group == 1].mean()).abs()  # the seed's fairness_loss
    assert torch.allclose(fair.demographic_parity_penalty(scores, group), seed_loss)
    assert torch.autograd.gradcheck(lambda s: fair.demographic_parity_penalty(s, group), (scores,))
    one_group = fair.demographic_parity_penalty(scores[:3], torch.zeros(3, dtype=torch.long), num_groups=2)
    assert float(one_group.detach()) == 0.0


# --------------------------------------------------------------------------- thresholds

@settings(max_examples=30, deadline=None)
@given(tables(max_groups=3, weighted=False), st.floats(0.05, 1.0))
def test_group_thresholds_reach_the_target_tpr_per_fairlearn(table, target):
    y_true, _, group, _ = table
    num_groups = int(group.max()) + 1
    positives = np.bincount(group[y_true == 1], minlength=num_groups)
    if (positives == 0).any():
        with pytest.raises(ValueError, match="group"):
            fair.group_thresholds(np.random.default_rng(0).random(len(y_true)), y_true, group, target=target)
        return
    scores = np.random.default_rng(len(y_true)).random(len(y_true))  # distinct scores
    thresholds = fair.group_thresholds(torch.from_numpy(scores), y_true, group, target=target)
    y_pred = (scores >= thresholds.numpy()[group]).astype(np.int64)
    tpr = MetricFrame(metrics=true_positive_rate, y_true=y_true, y_pred=y_pred,
                      sensitive_features=group).by_group.sort_index().to_numpy()
    needed = np.ceil(target * positives - 1e-9)
    np.testing.assert_allclose(tpr * positives, needed, atol=1e-9)  # the smallest count that reaches it


def test_group_thresholds_demographic_parity_equalizes_selection():
    rng = np.random.default_rng(7)
    scores, group = rng.random(1000), rng.integers(0, 2, 1000)
    scores[group == 1] += 0.3
    thresholds = fair.group_thresholds(scores, None, group, criterion="demographic_parity", target=0.4)
    y_pred = (scores >= thresholds.numpy()[group]).astype(np.int64)
    rates = MetricFrame(metrics=selection_rate, y_true=np.zeros(1000), y_pred=y_pred,
                        sensitive_features=group).by_group.to_numpy()
    np.testing.assert_allclose(rates, 0.4, atol=2e-3)
    nothing = fair.group_thresholds(scores, None, group, criterion="demographic_parity", target=0.0)
    assert torch.isinf(nothing).all()


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


def test_adversarial_debiaser_bad_input():
    x, y, group = _biased_table(n=40)
    with pytest.raises(ValueError, match="method"):
        fair.AdversarialDebiaser(method="magic")
    with pytest.raises(ValueError, match="alpha"):
        fair.AdversarialDebiaser(alpha=-1.0)
    with pytest.raises(ValueError, match="group"):
        fair.AdversarialDebiaser(epochs=1, progress=False).fit(x, y, torch.zeros(40, dtype=torch.long))
    with pytest.raises(ValueError, match="y"):
        fair.AdversarialDebiaser(epochs=1, progress=False).fit(x, y + 1, group)
    with pytest.raises(RuntimeError, match="fit"):
        fair.AdversarialDebiaser().predict(x)


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("name", sorted(SCALARS))
def test_metrics_reject_bad_input_naming_the_argument(name):
    metric = getattr(fair, name)
    y, g = [1, 0, 1, 0], [0, 0, 1, 1]
    cases = [
        (dict(y_true=y, y_pred=[1, 0, 1], group=g, privileged=1), ValueError, "y_pred"),
        (dict(y_true=[2, 0, 1, 0], y_pred=y, group=g, privileged=1), ValueError, "y_true"),
        (dict(y_true=y, y_pred=[0.5, 0, 1, 0], group=g, privileged=1), ValueError, "y_pred"),
        (dict(y_true=y, y_pred=y, group=[1, 1, 1, 1], privileged=1), ValueError, "group"),
        (dict(y_true=y, y_pred=y, group=[0, -1, 1, 1], privileged=1), ValueError, "group"),
        (dict(y_true=y, y_pred=y, group=[0, 0.5, 1, 1], privileged=1), ValueError, "group"),
        (dict(y_true=y, y_pred=y, group=g), ValueError, "privileged"),
        (dict(y_true=y, y_pred=y, group=g, privileged=1.0), TypeError, "privileged"),
        (dict(y_true=y, y_pred=y, group=g, privileged=[-1]), ValueError, "privileged"),
        (dict(y_true=y, y_pred=y, group=g, privileged=1, unprivileged=[1]), ValueError, "unprivileged"),
        (dict(y_true=y, y_pred=y, group=g, privileged=1, sample_weight=[1, -1, 1, 1]), ValueError,
         "sample_weight"),
        (dict(y_true=y, y_pred=y, group=g, privileged=1, sample_weight=[1, np.nan, 1, 1]), ValueError,
         "sample_weight"),
        (dict(y_true=y, y_pred=y, group=None, privileged=1), TypeError, "group"),
        (dict(y_true=y, y_pred=np.array(["a", "b", "a", "b"], dtype=object), group=g, privileged=1),
         TypeError, "y_pred"),
    ]
    for kwargs, error, argument in cases:
        with pytest.raises(error, match=argument):
            metric(**kwargs)


def test_other_kernels_reject_bad_input():
    with pytest.raises(ValueError, match="group"):
        fair.reweighing_weights([1, 0, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="y"):
        fair.reweighing_weights([1, 0, 3], [0, 1, 1])
    with pytest.raises(ValueError, match="scores"):
        fair.demographic_parity_penalty(torch.tensor([0.1, float("nan")]), [0, 1])
    with pytest.raises(ValueError, match="group"):
        fair.demographic_parity_penalty(torch.tensor([0.1, 0.2]), [0, 1, 1])
    with pytest.raises(ValueError, match="scores"):
        fair.group_thresholds([0.1, float("nan")], [1, 1], [0, 1])
    with pytest.raises(ValueError, match="criterion"):
        fair.group_thresholds([0.1, 0.2], [1, 1], [0, 1], criterion="calibration")
    with pytest.raises(ValueError, match="target"):
        fair.group_thresholds([0.1, 0.2], [1, 1], [0, 1], target=1.5)
    with pytest.raises(ValueError, match="group_names"):
        fair.fairness_report([1, 0], [1, 0], [0, 1], privileged=1, group_names=["only one"])
    with pytest.raises(ValueError, match="num_groups"):
        fair.group_confusion([1, 0], [1, 0], [0, 3], num_groups=2)
    with pytest.raises(ValueError, match="y_pred"):
        fair.group_confusion([], [], [])


# --------------------------------------------------------------------------- self-checks

def _equal_opportunity(y_true, y_pred, sensitive_attr):
    tpr_p = y_pred[(sensitive_attr == 1) & (y_true == 1)].float().mean().item()
    tpr_u = y_pred[(sensitive_attr == 0) & (y_true == 1)].float().mean().item()
    return {"tpr_privileged": tpr_p, "tpr_unprivileged": tpr_u, "diff": tpr_u - tpr_p,
            "ratio": min(tpr_u, tpr_p) / max(tpr_u, tpr_p)}


def _gate(report):
    fails = []
    for value in (report.disparate_impact, report.equal_opportunity_ratio):
        if not min(value, 1 / value) >= 0.8:
            fails.append(f"four-fifths rule: {value}")
    if not abs(report.statistical_parity_difference) <= 0.1:
        fails.append("SPD")
    return fails


def test_self_checks_pass_right_answers_and_explain_wrong_ones(capsys):
    from trustml_lab import checks

    fc = checks.fairness
    fc.check_equal_opportunity(_equal_opportunity)
    fc.check_selection_rates(lambda y_pred, group: torch.bincount(group, weights=y_pred.double())
                                    / torch.bincount(group))
    fc.check_balanced_weights(lambda y, g: len(y) / ((torch.bincount(2 * g + y) > 0).sum()
                                                            * torch.bincount(2 * g + y)[2 * g + y]))
    fc.check_parity_penalty(lambda s, g: (s[g == 0].mean() - s[g == 1].mean()).abs())
    fc.check_release_gate(_gate)
    fc.check_fpr_identity(lambda p, ppv, fnr: p / (1 - p) * (1 - ppv) / ppv * (1 - fnr))
    assert capsys.readouterr().out.count("PASS") == 6
    wrong = [
        (fc.check_equal_opportunity, lambda *a: {**_equal_opportunity(*a), "diff": 0.0}, "diff"),
        (fc.check_selection_rates, lambda y_pred, group: torch.bincount(group) / len(group), "groups"),
        (fc.check_balanced_weights, lambda y, g: torch.ones(len(y)), "cells"),
        (fc.check_parity_penalty, lambda s, g: (s[g == 0].mean() - s[g == 1].mean()).abs().detach(), "gradient"),
        (fc.check_release_gate, lambda report: [], "DI 0.7"),
        (fc.check_fpr_identity, lambda p, ppv, fnr: p * ppv, "FPR"),
        (fc.check_selection_rates, lambda y_pred, group: (_ for _ in ()).throw(NotImplementedError()),
         "NotImplementedError"),
    ]
    for check, answer, hint in wrong:
        with pytest.raises(checks.CheckFailed, match=hint):
            check(answer)


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
    thresholds = fair.group_thresholds(on["w"] / 2, on["y_true"], on["group"], target=0.5)
    assert {t.device.type for t in (conf, spd, w, thresholds)} == {torch.device(device).type}
    metric = _aif_metric(y_true, y_pred, group, weights, [2], [0, 1])
    np.testing.assert_allclose(float(spd), metric.statistical_parity_difference(), **TOL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = Reweighing(*_aif_groups([2], [0, 1])).fit_transform(_aif_dataset(y_true, group, weights))
    np.testing.assert_allclose(w.cpu().numpy(), expected.instance_weights, **TOL)
