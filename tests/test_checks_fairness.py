"""trustml_lab.checks.fairness: right answers pass; wrong, mutating, None and stub answers are explained.

Each check gets a right answer (passes), a wrong one (the message names the case and
what to fix), an answer that changes its input in place, one that returns ``None`` and
one that returns NumPy scalars or arrays where the notebook's solution returns tensors
or floats (accepted).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trustml_lab import checks
from trustml_lab import fairness as fair

fc = checks.fairness


# --------------------------------------------------------------------------- right answers

def equal_opportunity(y_true, y_pred, sensitive_attr):
    tpr_p = y_pred[(sensitive_attr == 1) & (y_true == 1)].double().mean().item()
    tpr_u = y_pred[(sensitive_attr == 0) & (y_true == 1)].double().mean().item()
    return {"tpr_privileged": tpr_p, "tpr_unprivileged": tpr_u, "diff": tpr_u - tpr_p,
            "ratio": min(tpr_u, tpr_p) / max(tpr_u, tpr_p)}


def selection_rates(y_pred, group):
    return torch.bincount(group, weights=y_pred.double()) / torch.bincount(group)


def sample_weights(y, group):
    cell = 2 * group + y
    counts = torch.bincount(cell)
    return len(y) / ((counts > 0).sum() * counts[cell])


def parity_penalty(scores, group):
    return (scores[group == 0].mean() - scores[group == 1].mean()).abs()


def release_gate(report):
    failures = []
    for name in ("disparate_impact", "equal_opportunity_ratio"):
        ratio = getattr(report, name)
        if not min(ratio, 1 / ratio) >= 0.8:
            failures.append(f"{name} = {ratio:.3f} breaks the four-fifths rule")
    if not abs(report.statistical_parity_difference) <= 0.1:
        failures.append("SPD")
    return failures


def fpr_from(p, ppv, fnr):
    return p / (1 - p) * (1 - ppv) / ppv * (1 - fnr)


RIGHT = [
    (fc.check_equal_opportunity, equal_opportunity),
    (fc.check_selection_rates, selection_rates),
    (fc.check_balanced_weights, sample_weights),
    (fc.check_parity_penalty, parity_penalty),
    (fc.check_release_gate, release_gate),
    (fc.check_fpr_identity, fpr_from),
]
IDS = [check.__name__ for check, _ in RIGHT]


@pytest.mark.parametrize("check, answer", RIGHT, ids=IDS)
def test_a_right_answer_passes(check, answer, capsys):
    check(answer)
    assert capsys.readouterr().out.startswith("PASS ")


# --------------------------------------------------------------------------- wrong answers

def one_sided_gate(report):  # the four-fifths rule one way only: DI = 4 passes
    failures = [name for name in ("disparate_impact", "equal_opportunity_ratio")
                if not getattr(report, name) >= 0.8]
    if not abs(report.statistical_parity_difference) <= 0.1:
        failures.append("SPD")
    return failures


def collide_cells(y, group):  # 2 * y + group: label 0 of group 2 and label 1 of group 0 share a cell
    cell = 2 * y + group
    counts = torch.bincount(cell)
    return len(y) / ((counts > 0).sum() * counts[cell])


def all_cells(y, group):  # counts every possible cell, also the empty ones
    cell = 2 * group + y
    counts = torch.bincount(cell)
    return len(y) / (2 * (int(group.max()) + 1) * counts[cell])


WRONG = [
    (fc.check_equal_opportunity, lambda *a: {**equal_opportunity(*a), "diff": 0.0}, r"table 1 of 3.*diff"),
    (fc.check_equal_opportunity, lambda *a: {**equal_opportunity(*a),
                                            "ratio": equal_opportunity(*a)["tpr_unprivileged"]
                                            / equal_opportunity(*a)["tpr_privileged"]},
     r"table 2 of 3 \(the unprivileged group has the higher TPR\).*ratio"),
    (fc.check_equal_opportunity, lambda *a: [1, 2, 3, 4], "return a dict"),
    (fc.check_equal_opportunity, lambda *a: {"diff": 0.0}, "missing"),
    (fc.check_selection_rates, lambda y_pred, group: torch.bincount(group) / len(group), "2 groups"),
    (fc.check_selection_rates, lambda y_pred, group: selection_rates(y_pred, group)[:2], r"3 groups.*shape"),
    (fc.check_balanced_weights, lambda y, g: torch.ones(len(y)) * 2, "sum to"),
    (fc.check_balanced_weights, collide_cells, r"three groups \(codes 0, 1, 2\).*2 \* y \+ group is not"),
    (fc.check_balanced_weights, all_cells, r"5 non-empty cells.*here 5, not 6"),
    (fc.check_balanced_weights, lambda y, g: sample_weights(y, g) * torch.nan, "NaN"),
    (fc.check_parity_penalty, lambda s, g: parity_penalty(s, g).detach(), "lost its gradient"),
    (fc.check_parity_penalty, lambda s, g: parity_penalty(s, g).item(), "return a 0-d tensor"),
    (fc.check_parity_penalty, lambda s, g: parity_penalty(s, g) * 2, r"batch 1 of 2.*penalty"),
    (fc.check_parity_penalty, lambda s, g: parity_penalty(s, g).detach() + 0 * s.sum() + s[0] - s[0].detach(),
     "gradient"),
    (fc.check_release_gate, lambda report: [], "DI 0.7"),
    (fc.check_release_gate, one_sided_gate, "DI 1.3"),
    (fc.check_release_gate, lambda report: release_gate(report) + ["extra"], "perfectly fair"),
    (fc.check_release_gate, lambda report: [1] * len(release_gate(report)), "a str"),
    (fc.check_fpr_identity, lambda p, ppv, fnr: p * ppv, "5 random triples"),
    (fc.check_fpr_identity, lambda p, ppv, fnr: fpr_from(p, ppv, fnr).reshape(-1)[:1], r"0-d|shape|one number"),
]


@pytest.mark.parametrize("check, answer, hint", WRONG, ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(WRONG)])
def test_a_wrong_answer_is_explained(check, answer, hint):
    with pytest.raises(checks.CheckFailed, match=hint):
        check(answer)


def test_the_gate_check_refuses_the_one_sided_rule_at_di_4():
    """The case the issue names: a one-sided gate lets DI = 4 through, the check does not."""
    def passes_above(report):
        return one_sided_gate(report) if report.disparate_impact != 1.3 else release_gate(report)

    with pytest.raises(checks.CheckFailed, match="DI 4"):
        fc.check_release_gate(passes_above)


def test_the_gate_check_expects_what_the_package_gate_says():
    """Its verdicts come from FairnessReport.failures; these are the numbers it must give."""
    verdicts = {0.7: 1, 0.8: 0, 1.25: 0, 1.3: 1, 4.0: 1}
    for di, expected in verdicts.items():
        report = fc._report(disparate_impact=di)
        assert len(report.failures(**fc._GATE)) == expected, di


# --------------------------------------------------------------------------- stubs, None, mutation

def _stub(*args):
    raise NotImplementedError()


@pytest.mark.parametrize("check, answer", RIGHT, ids=IDS)
def test_a_stub_and_a_none_answer_are_explained(check, answer):
    with pytest.raises(checks.CheckFailed, match="NotImplementedError"):
        check(_stub)
    with pytest.raises(checks.CheckFailed, match="None"):
        check(lambda *args: None)


def _mutating(answer):
    def changed(first, *rest):
        result = answer(first, *rest)
        if isinstance(first, torch.Tensor) and not first.requires_grad:
            first.zero_()
        return result
    return changed


@pytest.mark.parametrize("check, answer", [r for r in RIGHT if r[0] not in (fc.check_release_gate,
                                                                             fc.check_parity_penalty)],
                         ids=[i for i, r in zip(IDS, RIGHT) if r[0] not in (fc.check_release_gate,
                                                                            fc.check_parity_penalty)])
def test_an_answer_that_changes_its_input_fails(check, answer):
    with pytest.raises(checks.CheckFailed, match="in place"):
        check(_mutating(answer))


def test_the_penalty_check_refuses_a_change_of_the_group_codes():
    def changes_group(scores, group):
        result = parity_penalty(scores, group)
        group.fill_(0)
        return result

    with pytest.raises(checks.CheckFailed, match="in place"):
        fc.check_parity_penalty(changes_group)


# --------------------------------------------------------------------------- NumPy answers

def test_numpy_scalars_and_arrays_are_accepted(capsys):
    def numpy_equal_opportunity(*args):
        return {key: np.float64(value) for key, value in equal_opportunity(*args).items()}

    def zero_d_equal_opportunity(*args):
        return {key: np.array(value) for key, value in equal_opportunity(*args).items()}

    fc.check_equal_opportunity(numpy_equal_opportunity)
    fc.check_equal_opportunity(zero_d_equal_opportunity)
    fc.check_selection_rates(lambda y_pred, group: selection_rates(y_pred, group).numpy())
    fc.check_balanced_weights(lambda y, g: sample_weights(y, g).numpy().astype(np.float32))
    fc.check_release_gate(lambda report: tuple(release_gate(report)))
    fc.check_fpr_identity(lambda p, ppv, fnr: fpr_from(p, ppv, fnr).numpy())
    assert capsys.readouterr().out.count("PASS") == 6


def test_a_nan_ratio_in_a_report_is_judged_like_the_package():
    report = fc._report(equal_opportunity_ratio=math.nan)
    assert report.failures(**fc._GATE) and release_gate(report)
    assert fair.FairnessReport.passes(fc._report(), **fc._GATE)
