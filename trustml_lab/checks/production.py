"""Self-checks for chapter 6, Trustworthy ML in production (notebooks 6.1 and 6.2).

Each check computes the reference with the package (:func:`~trustml_lab.fairness.group_confusion`,
:func:`~trustml_lab.report.evaluate_gate`), then runs the learner's function on copies of
seeded inputs (:func:`~._core.call_learner`), on more than one case, and names the case and
the learner's value when they differ.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch

from .. import report as rep
from ._core import CheckFailed, as_number, call_learner, passed, require, require_close

__all__ = ["check_bootstrap_ci", "check_encode_record", "check_eod_interval_rule", "check_tpr_rule"]


def _decisions(seed: int, n: int, tpr: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    group = (torch.rand(n, generator=g) < 0.6).long()
    y = (torch.rand(n, generator=g) < 0.4).long()
    rate = torch.where(group == 1, tpr[1], tpr[0])
    y_pred = torch.where(y == 1, (torch.rand(n, generator=g) < rate).long(),
                         (torch.rand(n, generator=g) < 0.15).long())
    return y, y_pred, group


def check_bootstrap_ci(bootstrap_ci: Callable[..., Any]) -> None:
    """Check ``bootstrap_ci(y_true, y_pred, group, *, n_bootstrap, confidence, generator) -> (low, high)``.

    The percentile-bootstrap interval of the equal-opportunity difference ``TPR_0 - TPR_1``
    (group 1 privileged): draw all resampled indices at once,
    ``torch.randint(n, (n_bootstrap, n), generator=generator)``, compute the difference on
    each resample, and return the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
    quantiles (``torch.quantile``'s linear interpolation). Three cases: sizes, gaps and
    confidence levels differ; the reference draws the same indices from the same seed and
    counts each resample with :func:`trustml_lab.fairness.group_confusion`.
    (:func:`trustml_lab.report.bootstrap_metrics` draws the resamples' cell counts instead:
    the same bootstrap distribution, another draw, so its bounds differ by Monte Carlo error.)
    """
    name = "bootstrap_ci"
    cases = [(0, 400, (0.7, 0.8), 200, 0.95), (1, 1000, (0.5, 0.8), 300, 0.9), (2, 250, (0.75, 0.75), 150, 0.8)]
    for seed, n, tpr, n_bootstrap, confidence in cases:
        y, p, group = _decisions(seed, n, tpr)
        low_ref, high_ref = _index_bootstrap_eod(y, p, group, n_bootstrap, confidence, seed)
        got = call_learner(name, bootstrap_ci, y, p, group, n_bootstrap=n_bootstrap, confidence=confidence,
                           generator=torch.Generator().manual_seed(seed))
        case = f"{n} rows, {n_bootstrap} resamples, confidence {confidence}"
        require(isinstance(got, (tuple, list)) and len(got) == 2, name,
                f"{case}: expected a pair (low, high), got {type(got).__name__}")
        low, high = as_number(got[0], name, "low"), as_number(got[1], name, "high")
        require(low <= high, name, f"{case}: low {low:.4f} is above high {high:.4f}")
        require_close([low, high], [low_ref, high_ref], name, case=case, what="(low, high)", tol=1e-9,
                      hint="draw the indices once with torch.randint(n, (n_bootstrap, n), generator=generator) "
                           "and use torch.quantile on the float64 differences")
    passed(name, f"all {len(cases)} intervals equal the reference's on the same resampled rows")


def _index_bootstrap_eod(y, y_pred, group, n_bootstrap, confidence, seed) -> tuple[float, float]:
    """The reference of :func:`check_bootstrap_ci`: one confusion table per resample of drawn indices."""
    from ..fairness import group_confusion

    index = torch.randint(len(y), (n_bootstrap, len(y)), generator=torch.Generator().manual_seed(seed))
    tables = torch.stack([group_confusion(y[i], y_pred[i], group[i], num_groups=2) for i in index])
    eod = rep._side_metrics(tables)["equal_opportunity_difference"]
    q = torch.tensor([(1 - confidence) / 2, (1 + confidence) / 2], dtype=torch.float64)
    low, high = torch.quantile(eod[torch.isfinite(eod)].double(), q).tolist()
    return low, high


def _report_with(base: rep.TrustReport, ratio: float) -> rep.TrustReport:
    fairness = {a: dict(m) for a, m in base.fairness.items()}
    fairness["sex"]["equal_opportunity_ratio"] = rep.Estimate(ratio, ratio, ratio)
    return dataclasses.replace(base, fairness=fairness)


def check_tpr_rule(tpr_rule: Callable[..., Any]) -> None:
    """Check ``tpr_rule(report, attribute, minimum) -> None or str``: the four-fifths rule on TPR, two-sided.

    Return ``None`` when ``min(r, 1/r) >= minimum`` for ``r =
    report.fairness[attribute]["equal_opportunity_ratio"].value``, else one line that names the
    rule (``tpr_ratio``), the measured ratio (4 decimals) and the threshold. A NaN ratio (a
    group without positives) fails. Cases: ratios 0.9, 0.7, 1.2, 1.3 (a favored group fails
    too), NaN; the reference is :func:`trustml_lab.report.evaluate_gate`.
    """
    name = "tpr_rule"
    base = rep.load_credit_model().report
    if base is None:
        raise CheckFailed(f"{name}: the shipped credit model has no report; restore data/credit_model_v1/")
    policy = rep.parse_policy("[tpr_ratio]\nmin = 0.8\nattributes = ['sex']\n")
    for ratio in (0.9, 0.7, 1.2, 1.3, math.nan):
        report = _report_with(base, ratio)
        fails = not rep.evaluate_gate(report, policy).passed
        got = call_learner(name, tpr_rule, report, "sex", 0.8, allow_none=True)
        case = f"ratio {ratio}"
        if not fails:
            require(got is None, name, f"{case}: the rule holds (min(r, 1/r) = {min(ratio, 1 / ratio):.4f} >= 0.8), "
                                       f"expected None, got {got!r}")
            continue
        require(isinstance(got, str), name, f"{case}: the rule fails, expected a reason (str), got {got!r}")
        require("tpr_ratio" in got, name, f"{case}: the reason should name the rule 'tpr_ratio', got {got!r}")
        shown = "nan" if math.isnan(ratio) else f"{ratio:.4f}"
        require(shown in got and "0.8" in got, name,
                f"{case}: the reason should give the measured ratio ({shown}) and the threshold 0.8, got {got!r}")
    passed(name, "agrees with evaluate_gate on 5 ratios, the two-sided and NaN cases included")


def check_encode_record(encode_record: Callable[..., Any]) -> None:
    """Check ``encode_record(schema, record) -> tensor``: one applicant's feature vector, as the model reads it.

    Walk ``schema.fields`` in order, skip the protected ones, write ``(v - mean) / std`` for a
    numeric field and a one-hot block over ``categories`` for a categorical one: a 1-d
    float32 tensor of ``len(schema.feature_names)`` values. Three records of the Adult test
    split (a young and an old applicant, a rare native country); the reference is
    :meth:`trustml_lab.report.FeatureSchema.encode`.
    """
    name = "encode_record"
    schema = rep.load_credit_model().schema
    records = [
        {"age": 17, "workclass": "Private", "education_num": 7, "marital_status": "Never-married",
         "occupation": "Other-service", "relationship": "Own-child", "capital_gain": 0, "capital_loss": 0,
         "hours_per_week": 20, "native_country": "United-States", "sex": "Female", "race": "White"},
        {"age": 64, "workclass": "Self-emp-inc", "education_num": 16, "marital_status": "Married-civ-spouse",
         "occupation": "Exec-managerial", "relationship": "Husband", "capital_gain": 15024, "capital_loss": 0,
         "hours_per_week": 60, "native_country": "India", "sex": "Male", "race": "Asian-Pac-Islander"},
        {"age": 35, "workclass": "Local-gov", "education_num": 10, "marital_status": "Divorced",
         "occupation": "Protective-serv", "relationship": "Unmarried", "capital_gain": 0, "capital_loss": 1902,
         "hours_per_week": 45, "native_country": "Holand-Netherlands", "sex": "Male", "race": "Black"},
    ]
    for i, record in enumerate(records):
        expected = schema.encode([record])[0]
        got = call_learner(name, encode_record, schema, dict(record))
        case = f"record {i} (age {record['age']}, {record['native_country']})"
        require(isinstance(got, torch.Tensor), name, f"{case}: expected a torch tensor, got {type(got).__name__}")
        require(got.shape == expected.shape, name, f"{case}: expected shape {tuple(expected.shape)} (one value per "
                                                   f"model column), got {tuple(got.shape)}; skip protected fields")
        require_close(got, expected, name, case=case, what="the features", tol=1e-5,
                      hint="standardize with the field's mean and std; one-hot in the order of its categories")
    passed(name, f"all {len(records)} records equal FeatureSchema.encode")


def check_eod_interval_rule(eod_interval_rule: Callable[..., Any]) -> None:
    r"""Check ``eod_interval_rule(report, attribute, max_abs) -> None or str``: \|EOD\| judged on its interval.

    Return ``None`` when the whole confidence interval of
    ``report.fairness[attribute]["equal_opportunity_difference"]`` lies inside
    ``[-max_abs, max_abs]``, else one line naming the rule (``equal_opportunity_difference``)
    and the interval's bounds (4 decimals). Cases: an interval inside, one whose point is
    inside but whose lower end is not, one above, one exactly on the bound (passes); the
    reference is :func:`trustml_lab.report.evaluate_gate`.
    """
    name = "eod_interval_rule"
    base = rep.load_credit_model().report
    policy = rep.parse_policy("[equal_opportunity_difference]\nmax_abs = 0.1\nattributes = ['race']\n")
    for value, low, high in ((0.0, -0.05, 0.06), (-0.07, -0.13, -0.01), (0.15, 0.11, 0.2), (0.05, 0.0, 0.1)):
        fairness = {a: dict(m) for a, m in base.fairness.items()}
        fairness["race"]["equal_opportunity_difference"] = rep.Estimate(value, low, high)
        report = dataclasses.replace(base, fairness=fairness)
        fails = not rep.evaluate_gate(report, policy).passed
        got = call_learner(name, eod_interval_rule, report, "race", 0.1, allow_none=True)
        case = f"EOD {value} with interval [{low}, {high}]"
        if not fails:
            require(got is None, name, f"{case}: the interval is inside [-0.1, 0.1], expected None, got {got!r}")
            continue
        require(isinstance(got, str), name, f"{case}: the rule fails, expected a reason (str), got {got!r}"
                + (" (judge the interval, not the point)" if got is None and abs(value) <= 0.1 else ""))
        require("equal_opportunity_difference" in got, name,
                f"{case}: the reason should name the rule 'equal_opportunity_difference', got {got!r}")
        require(f"{low:.4f}" in got and f"{high:.4f}" in got, name,
                f"{case}: the reason should give the interval ({low:.4f}, {high:.4f}), got {got!r}")
    passed(name, "agrees with evaluate_gate on 4 intervals, the point-inside-interval-outside case included")


# --------------------------------------------------------------------------- notebook 6.3: serving and monitoring

def check_psi(psi: Callable[..., Any]) -> None:
    r"""Check ``psi(reference, current, bins) -> float``: the population stability index of one numeric feature.

    Bins: the reference's quantiles at ``1/bins, ..., (bins-1)/bins`` (``numpy.quantile``), right-closed
    (``numpy.searchsorted(edges, x, side="left")`` is a value's bin); shares :math:`p_b` (reference) and
    :math:`q_b` (current) floored at ``1e-4``; :math:`\sum_b (q_b - p_b) \ln(q_b / p_b)`. Four cases on
    Adult's ages and hours: no shift, a shift of the mean, a changed spread, and a discrete feature with
    tied quantiles (empty bins add nothing); the reference is :func:`trustml_lab.serve.drift.psi`.
    """
    from ..data import load_adult
    from ..serve.drift import psi as reference_psi

    name = "psi"
    frame = load_adult().dropna(subset=["age", "hours_per_week"])
    train = frame[frame["split"] == "train"]
    test = frame[frame["split"] == "test"]
    age, hours = train["age"].to_numpy(float), train["hours_per_week"].to_numpy(float)
    cases = [("the test part's ages", age, test["age"].to_numpy(float)[:500], 10),
             ("ages ten years older", age, test["age"].to_numpy(float)[:500] + 10, 10),
             ("hours spread twice as wide", hours, 40 + 2 * (test["hours_per_week"].to_numpy(float)[:500] - 40), 5),
             ("hours (many ties at 40)", hours, test["hours_per_week"].to_numpy(float)[500:900], 20)]
    for case, ref, cur, bins in cases:
        expected = float(reference_psi(torch.from_numpy(ref), torch.from_numpy(cur), bins=bins))
        got = as_number(call_learner(name, psi, ref.copy(), cur.copy(), bins), name, "the PSI")
        require_close(got, expected, name, case=f"{case}, {bins} bins", what="the PSI", tol=1e-9,
                      hint="edges = np.quantile(reference, np.arange(1, bins) / bins); bins with "
                           "np.searchsorted(edges, x, side='left'); floor both shares at 1e-4")
    passed(name, f"equals trustml_lab.serve.drift.psi on {len(cases)} shifts of Adult's features")


def check_tpr_alert(tpr_alert: Callable[..., Any]) -> None:
    r"""Check ``tpr_alert(tp_a, pos_a, tp_b, pos_b, *, min_ratio, level) -> bool``: a four-fifths alert on evidence.

    Alert (True) only when the evidence excludes the allowed region: the one-sided Clopper-Pearson
    upper bound of group a's TPR (``tp_a`` of ``pos_a`` positives approved) at confidence
    ``1 - level`` is below ``min_ratio`` times group b's one-sided lower bound at the same level
    (:func:`trustml_lab._stats.clopper_pearson` with ``alternative="less"`` / ``"greater"``). This
    is the cautious rule of :mod:`trustml_lab.serve.monitor`'s docstring: valid, less powerful
    than the monitor's MOVER bound. Cases: a clear gap, the same gap on a handful of positives
    (no alert: too little evidence), equal rates, and a gap just past the four-fifths line on a
    large window, two cases where a two-sided interval at the same level would not alert.
    """
    import numpy as np

    from .._stats import clopper_pearson

    name = "tpr_alert"
    cases = [(5, 60, 50, 60), (1, 6, 5, 6), (40, 50, 41, 50), (700, 1000, 900, 1000), (0, 0, 10, 12),
             (52, 100, 90, 100), (66, 100, 90, 100)]  # the last two: one-sided and two-sided bounds disagree
    for tp_a, pos_a, tp_b, pos_b in cases:
        for min_ratio, level in ((0.8, 0.01), (0.9, 0.05)):
            if pos_a == 0:
                expected = False  # no positives: no evidence
            else:
                upper = float(clopper_pearson(torch.tensor(tp_a), torch.tensor(pos_a), confidence=1 - level,
                                              alternative="less").high)
                lower = float(clopper_pearson(torch.tensor(tp_b), torch.tensor(pos_b), confidence=1 - level,
                                              alternative="greater").low)
                expected = upper < min_ratio * lower
            got = call_learner(name, tpr_alert, tp_a, pos_a, tp_b, pos_b, min_ratio=min_ratio, level=level)
            case = f"TPR {tp_a}/{pos_a} against {tp_b}/{pos_b}, min_ratio {min_ratio}, level {level}"
            require(isinstance(got, (bool, np.bool_)), name, f"{case}: expected True or False, got {got!r}")
            hint = (" (a handful of positives is not evidence: use the bounds, not the rates)"
                    if expected is False and pos_a and tp_a / pos_a < min_ratio * tp_b / pos_b else "")
            require(bool(got) == expected, name, f"{case}: expected {expected}, got {got}{hint}")
    passed(name, f"agrees with the Clopper-Pearson rule on {2 * len(cases)} cases, small windows included")


__all__ += ["check_psi", "check_tpr_alert"]  # noqa: PLE0605
