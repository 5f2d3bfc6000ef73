"""checks.production, notebook 6.3: a right answer passes, typical wrong ones fail with a useful hint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trustml_lab import checks
from trustml_lab._stats import clopper_pearson
from trustml_lab.checks._core import CheckFailed


def psi(reference, current, bins):
    edges = np.quantile(reference, np.arange(1, bins) / bins)
    p = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=bins) / len(reference)
    q = np.bincount(np.searchsorted(edges, current, side="left"), minlength=bins) / len(current)
    p, q = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    return float(np.sum((q - p) * np.log(q / p)))


def tpr_alert(tp_a, pos_a, tp_b, pos_b, *, min_ratio, level):
    if pos_a == 0 or pos_b == 0:
        return False
    upper = clopper_pearson(torch.tensor(tp_a), torch.tensor(pos_a), confidence=1 - level, alternative="less").high
    lower = clopper_pearson(torch.tensor(tp_b), torch.tensor(pos_b), confidence=1 - level, alternative="greater").low
    return bool(upper < min_ratio * lower)


def test_right_answers_pass():
    checks.production.check_psi(psi)
    checks.production.check_tpr_alert(tpr_alert)


def test_psi_with_its_own_bins_on_the_current_window_fails():
    def own_bins(reference, current, bins):
        return psi(current, current, bins) + psi(reference, reference, bins)  # always 0: compares nothing

    with pytest.raises(CheckFailed, match="psi"):
        checks.production.check_psi(own_bins)


def test_psi_left_closed_bins_fail_on_ties():
    def left_closed(reference, current, bins):
        edges = np.quantile(reference, np.arange(1, bins) / bins)
        p = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=bins) / len(reference)
        q = np.bincount(np.searchsorted(edges, current, side="right"), minlength=bins) / len(current)
        p, q = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
        return float(np.sum((q - p) * np.log(q / p)))

    with pytest.raises(CheckFailed, match="searchsorted"):
        checks.production.check_psi(left_closed)


def test_an_alert_on_the_point_estimates_fails_with_the_evidence_hint():
    def on_rates(tp_a, pos_a, tp_b, pos_b, *, min_ratio, level):
        return pos_a > 0 and tp_a / pos_a < min_ratio * tp_b / pos_b

    with pytest.raises(CheckFailed, match="not evidence"):
        checks.production.check_tpr_alert(on_rates)


def test_a_two_sided_level_is_caught():
    def two_sided(tp_a, pos_a, tp_b, pos_b, *, min_ratio, level):
        if pos_a == 0:
            return False
        a = clopper_pearson(torch.tensor(tp_a), torch.tensor(pos_a), confidence=1 - level)  # two-sided
        b = clopper_pearson(torch.tensor(tp_b), torch.tensor(pos_b), confidence=1 - level)
        return bool(a.high < min_ratio * b.low)

    with pytest.raises(CheckFailed, match="52/100|66/100"):
        checks.production.check_tpr_alert(two_sided)
