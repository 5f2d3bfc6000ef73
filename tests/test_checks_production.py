"""checks.production: a right answer passes, typical wrong ones fail with a useful hint."""

import math

import pytest
import torch

from trustml_lab import checks
from trustml_lab.checks import CheckFailed


def bootstrap_ci(y_true, y_pred, group, *, n_bootstrap, confidence, generator):
    n = len(y_true)
    index = torch.randint(n, (n_bootstrap, n), generator=generator)
    y, p, g = y_true[index], y_pred[index], group[index]
    pos = y == 1
    tpr0 = ((p == 1) & pos & (g == 0)).sum(1).double() / (pos & (g == 0)).sum(1)
    tpr1 = ((p == 1) & pos & (g == 1)).sum(1).double() / (pos & (g == 1)).sum(1)
    q = torch.tensor([(1 - confidence) / 2, (1 + confidence) / 2], dtype=torch.float64)
    low, high = torch.quantile(tpr0 - tpr1, q).tolist()
    return low, high


def tpr_rule(report, attribute, minimum):
    r = report.fairness[attribute]["equal_opportunity_ratio"].value
    two_sided = min(r, 1 / r) if r > 0 else 0.0
    if two_sided >= minimum:
        return None
    return f"tpr_ratio[{attribute}]: equal_opportunity_ratio = {r:.4f} < min {minimum}"


def encode_record(schema, record):
    values = []
    for field in schema.fields:
        if field.protected:
            continue
        if field.kind == "numeric":
            values.append((record[field.name] - field.mean) / field.std)
        else:
            values.extend(1.0 if record[field.name] == c else 0.0 for c in field.categories)
    return torch.tensor(values, dtype=torch.float32)


def eod_interval_rule(report, attribute, max_abs):
    e = report.fairness[attribute]["equal_opportunity_difference"]
    if -max_abs <= e.low and e.high <= max_abs:
        return None
    return f"equal_opportunity_difference[{attribute}]: CI [{e.low:.4f}, {e.high:.4f}] outside +-{max_abs}"


def test_right_answers_pass(capsys):
    checks.production.check_bootstrap_ci(bootstrap_ci)
    checks.production.check_tpr_rule(tpr_rule)
    checks.production.check_encode_record(encode_record)
    checks.production.check_eod_interval_rule(eod_interval_rule)
    assert capsys.readouterr().out.count("PASS") == 4


def test_a_point_rule_fails_the_interval_check():
    def on_the_point(report, attribute, max_abs):
        e = report.fairness[attribute]["equal_opportunity_difference"]
        return None if abs(e.value) <= max_abs else f"equal_opportunity_difference {e.low:.4f} {e.high:.4f}"

    with pytest.raises(CheckFailed, match="judge the interval"):
        checks.production.check_eod_interval_rule(on_the_point)


def test_encoding_the_protected_fields_fails():
    def with_protected(schema, record):
        out = encode_record(schema, record)
        return torch.cat([out, torch.tensor([1.0 if record["sex"] == "Male" else 0.0])])

    with pytest.raises(CheckFailed, match="skip protected fields"):
        checks.production.check_encode_record(with_protected)


def test_a_normal_approximation_interval_fails():
    def normal(y_true, y_pred, group, *, n_bootstrap, confidence, generator):
        low, high = bootstrap_ci(y_true, y_pred, group, n_bootstrap=n_bootstrap, confidence=confidence,
                                 generator=generator)
        mid = (low + high) / 2
        return mid - 1.01 * (mid - low), mid + 1.01 * (high - mid)

    with pytest.raises(CheckFailed, match="bootstrap_ci: not yet"):
        checks.production.check_bootstrap_ci(normal)


def test_a_one_sided_rule_fails_on_a_favored_group():
    def one_sided(report, attribute, minimum):
        r = report.fairness[attribute]["equal_opportunity_ratio"].value
        return None if r >= minimum else f"tpr_ratio: {r:.4f} < {minimum}"

    with pytest.raises(CheckFailed, match="ratio 1.3: the rule fails"):
        checks.production.check_tpr_rule(one_sided)


def test_a_rule_that_lets_nan_through_fails():
    def lenient(report, attribute, minimum):
        r = report.fairness[attribute]["equal_opportunity_ratio"].value
        if math.isnan(r) or min(r, 1 / r) >= minimum:
            return None
        return f"tpr_ratio: {r:.4f} < {minimum}"

    with pytest.raises(CheckFailed, match="ratio nan"):
        checks.production.check_tpr_rule(lenient)


def test_a_stub_gets_a_hint():
    def stub(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match="NotImplementedError"):
        checks.production.check_bootstrap_ci(stub)
