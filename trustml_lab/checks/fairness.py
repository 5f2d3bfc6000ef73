"""Self-checks for chapter 1, Fairness.

Each check computes the reference first, with the package's kernels
(:mod:`trustml_lab.fairness`, tested against aif360 and fairlearn), then runs the
learner's function on copies of small seeded inputs (:func:`~._core.call_learner`), on
more than one case, and names the case and the learner's value when they differ.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import fairness as fair
from ._core import as_array, call_learner, passed, require, require_close

__all__ = [
    "check_balanced_weights",
    "check_equal_opportunity",
    "check_fpr_identity",
    "check_parity_penalty",
    "check_release_gate",
    "check_selection_rates",
]


def _toy(seed: int, n: int = 400, num_groups: int = 2,
         flip: tuple[float, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Labels, predictions and group codes 0 .. num_groups - 1 (each present); ``flip[g]``: group g's error rate."""
    generator = torch.Generator().manual_seed(seed)
    group = torch.randint(0, num_groups, (n,), generator=generator)
    group[:num_groups] = torch.arange(num_groups)
    y_true = (torch.rand(n, generator=generator) < 0.3 + 0.2 * group / max(num_groups - 1, 1)).long()
    error = torch.full((num_groups,), 0.25) if flip is None else torch.tensor(flip)
    wrong = torch.rand(n, generator=generator) < error[group]
    y_pred = torch.where(wrong, 1 - y_true, y_true)
    return y_true, y_pred, group


def check_equal_opportunity(compute_equal_opportunity: Callable[..., Mapping]) -> None:
    """Check ``compute_equal_opportunity(y_true, y_pred, sensitive_attr) -> dict``.

    The audit function of a PaddlePaddle fairness tutorial: it returns
    ``tpr_privileged``, ``tpr_unprivileged``, ``diff`` (unprivileged minus privileged)
    and ``ratio`` (smaller TPR over larger, the four-fifths ratio), with group 1
    privileged. Three random tables of 400 rows: the unprivileged group has the lower
    TPR in the first, the higher in the second (so ``ratio`` is TPR_p / TPR_u there),
    and about the same in the third. Any number type is accepted for the values.
    """
    name = "equal_opportunity"
    keys = ("tpr_privileged", "tpr_unprivileged", "diff", "ratio")
    cases = [((0.4, 0.15), "the unprivileged group has the lower TPR"),
             ((0.15, 0.4), "the unprivileged group has the higher TPR"),
             ((0.25, 0.25), "both groups have about the same TPR")]
    for seed, (flip, text) in enumerate(cases):
        y_true, y_pred, group = _toy(seed, flip=flip)
        tpr = fair.fairness_report(y_true, y_pred, group, privileged=1).groups["tpr"]
        tpr_u, tpr_p = float(tpr[0]), float(tpr[1])
        expected = {"tpr_privileged": tpr_p, "tpr_unprivileged": tpr_u, "diff": tpr_u - tpr_p,
                    "ratio": min(tpr_u, tpr_p) / max(tpr_u, tpr_p)}
        hints = {"tpr_privileged": "the mean of y_pred over the rows of group 1 whose y_true is 1",
                 "tpr_unprivileged": "the mean of y_pred over the rows of group 0 whose y_true is 1",
                 "diff": "unprivileged minus privileged, aif360's sign",
                 "ratio": "the smaller TPR over the larger one, whichever group has it"}
        case = f"table {seed + 1} of 3 ({text})"
        got = call_learner(name, compute_equal_opportunity, y_true, y_pred, group)
        require(isinstance(got, Mapping), name, f"{case}: return a dict with the keys {list(keys)}, "
                                                f"got {type(got).__name__}")
        missing = [key for key in keys if key not in got]
        require(not missing, name, f"{case}: the dict needs the keys {list(keys)}; missing {missing}")
        for key in keys:
            require_close(got[key], expected[key], name, case=case, what=key, hint=hints[key])
    passed(name, "TPRs, difference and four-fifths ratio match on 3 random tables")


def check_selection_rates(selection_rates: Callable[[torch.Tensor, torch.Tensor], Any]) -> None:
    """Check ``selection_rates(y_pred, group) -> tensor``: one rate per group code, for 2, 3 and 5 groups."""
    name = "selection_rates"
    for seed, num_groups in ((0, 2), (1, 3), (2, 5)):
        _, y_pred, group = _toy(seed, num_groups=num_groups)
        conf = fair.group_confusion(y_pred, y_pred, group)  # rows: codes 0 .. G-1, all present
        expected = (conf[:, :, 1].sum(dim=1) / conf.sum(dim=(1, 2))).numpy()
        got = call_learner(name, selection_rates, y_pred, group)
        require_close(got, expected, name, case=f"{num_groups} groups", what="the rates",
                      hint="per group, the number of predicted 1s over the group's size "
                           "(torch.bincount does both counts)")
    passed(name, "per-group selection rates match for 2, 3 and 5 groups")


def _balanced_weights(y: torch.Tensor, group: torch.Tensor) -> np.ndarray:
    """``n / (non-empty cells * size of the row's cell)``, cells (group, label), in NumPy."""
    cell = (group.numpy() * 2 + y.numpy())
    counts = np.bincount(cell)
    return len(cell) / ((counts > 0).sum() * counts[cell])


def check_balanced_weights(compute_sample_weights: Callable[[torch.Tensor, torch.Tensor], Any]) -> None:
    """Check ``compute_sample_weights(y, group) -> tensor``: ``n / (non-empty cells * count(y, group))``.

    The balanced weights of a PaddlePaddle fairness tutorial, on three cases: two
    groups; three groups (codes 0, 1, 2), where a cell index ``2 * y + group`` would
    put label 0 of group 2 and label 1 of group 0 in one cell (``2 * group + y`` does
    not); and three groups of which one has only positive labels, so only 5 of the 6
    (label, group) cells occur and the number of cells is 5.
    """
    name = "balanced_weights"
    y3, _, g3 = _toy(2, num_groups=3)
    y3 = torch.where(g3 == 2, torch.ones_like(y3), y3)  # group 2: positives only
    cases = [(*_toy(0)[::2], "two groups", ""),
             (*_toy(1, num_groups=3)[::2], "three groups (codes 0, 1, 2)",
              "with three groups the cell index must be unique: 2 * group + y is, 2 * y + group is not "
              "(label 0 of group 2 and label 1 of group 0 share cell 2)"),
             (y3, g3, "three groups, group 2 with positive labels only (5 non-empty cells)",
              "count only the (label, group) cells that occur: here 5, not 6")]
    for y, group, case, extra in cases:
        expected = _balanced_weights(y, group)
        got = call_learner(name, compute_sample_weights, y, group)
        weights = as_array(got, name, "the weights")
        require(weights.shape == expected.shape, name,
                f"{case}: return one weight per row, shape {expected.shape}, got shape {weights.shape}")
        require(not np.isnan(weights).any(), name, f"{case}: the weights contain NaN: look for a division by 0")
        total = float(weights.sum())
        require(abs(total - len(expected)) <= 1e-6 * len(expected), name,
                f"{case}: your weights sum to {total:.4f}; balanced weights sum to the number of rows, "
                f"{len(expected)}. " + (extra or "Divide by the number of non-empty (label, group) cells."))
        require_close(weights, expected, name, case=case, what="the weight vector",
                      hint="expected total / (number of non-empty (label, group) cells * size of the row's cell)"
                           + (f"; {extra}" if extra else ""))
    passed(name, "weights by (label, group) counts match, and sum to n, for 2 and 3 groups and an empty cell")


def check_parity_penalty(parity_penalty: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check a differentiable ``parity_penalty(scores, group) -> 0-d tensor`` for two groups, on two batches."""
    name = "parity_penalty"
    for seed, n in ((0, 64), (1, 37)):
        generator = torch.Generator().manual_seed(seed)
        values = torch.rand(n, generator=generator, dtype=torch.float64)
        group = (torch.rand(n, generator=generator) < 0.3).long()  # unequal group sizes
        reference = values.clone().requires_grad_(True)
        expected = fair.demographic_parity_penalty(reference, group)
        (expected_grad,) = torch.autograd.grad(expected, reference)
        case = f"batch {seed + 1} of 2 ({n} scores)"
        scores = values.clone().requires_grad_(True)
        got = call_learner(name, parity_penalty, scores, group)
        require(isinstance(got, torch.Tensor), name,
                f"{case}: return a 0-d tensor (keep it in torch: .item() or float() lose the gradient), got "
                f"{type(got).__name__}")
        require(got.numel() == 1, name, f"{case}: return one number (a 0-d tensor), got shape {tuple(got.shape)}")
        require_close(got, float(expected.detach()), name, case=case, what="the penalty",
                      hint="the absolute gap between the mean score of group 0 and the mean score of group 1")
        require(got.requires_grad, name,
                f"{case}: the penalty lost its gradient: do not call .item(), .numpy(), float() or .detach()")
        (grad,) = torch.autograd.grad(got.reshape(()), scores)
        require_close(grad, expected_grad, name, case=case, what="the gradient",
                      hint="the value is right but its gradient is not")
    passed(name, "value and gradient match demographic_parity_penalty on 2 batches")


def _report(**metrics: float) -> fair.FairnessReport:
    values = {name: 0.0 for name in fair.METRICS}
    values.update(disparate_impact=1.0, equal_opportunity_ratio=1.0)
    values.update(metrics)
    return fair.FairnessReport(groups=pd.DataFrame(), privileged=(1,), unprivileged=(0,), **values)


#: The gate of notebook 1.3's exercise, in the package's terms.
_GATE = dict(max_abs_spd=0.1, min_di=0.8, min_eo_ratio=0.8, max_abs_eod=None)


def check_release_gate(release_gate: Callable[[fair.FairnessReport], list]) -> None:
    """Check ``release_gate(report) -> list of failure messages`` (empty when it passes).

    The gate: the four-fifths rule both ways on the selection rates
    (``min(DI, 1/DI) >= 0.8``) and on the TPRs (``min(r, 1/r) >= 0.8`` with
    ``r = equal_opportunity_ratio``), and ``|SPD| <= 0.1``; an undefined (nan) metric
    fails. The expected verdicts are ``FairnessReport.failures`` with the same rules.
    """
    name = "release_gate"
    cases = [
        ({}, "a perfectly fair report"),
        ({"disparate_impact": 0.7, "statistical_parity_difference": -0.05}, "DI 0.7 (four-fifths rule)"),
        ({"disparate_impact": 0.8, "statistical_parity_difference": -0.05}, "DI exactly 0.8 (the bound is inclusive)"),
        ({"disparate_impact": 1.25, "statistical_parity_difference": 0.05}, "DI 1.25 (1/1.25 = 0.8 passes)"),
        ({"disparate_impact": 1.3, "statistical_parity_difference": 0.05}, "DI 1.3 (min(DI, 1/DI) = 0.77)"),
        ({"disparate_impact": 4.0, "statistical_parity_difference": 0.08}, "DI 4 (min(DI, 1/DI) = 0.25)"),
        ({"equal_opportunity_ratio": 0.79}, "a TPR ratio of 0.79"),
        ({"equal_opportunity_ratio": 1.2}, "a TPR ratio of 1.2 (1/1.2 = 0.83 passes)"),
        ({"statistical_parity_difference": -0.15, "disparate_impact": 0.85}, "SPD -0.15"),
        ({"equal_opportunity_ratio": math.nan}, "an undefined TPR ratio (nan)"),
        ({"disparate_impact": 0.5, "equal_opportunity_ratio": 0.5, "statistical_parity_difference": -0.3},
         "three violations at once"),
    ]
    for metrics, text in cases:
        report = _report(**metrics)
        expected = len(report.failures(**_GATE))
        got = call_learner(name, release_gate, report)
        require(isinstance(got, (list, tuple)), name,
                f"for {text}: return a list of messages, got {type(got).__name__}")
        require(all(isinstance(line, str) for line in got), name,
                f"for {text}: each failure should be a message (a str), got {list(got)}")
        require(len(got) == expected, name,
                f"for {text} expected {expected} failure message(s), got {len(got)}: {list(got)}")
    passed(name, f"all {len(cases)} reports judged as expected")


def check_fpr_identity(fpr_from: Callable[..., Any]) -> None:
    """Check ``fpr_from(base_rate, ppv, fnr)``, Chouldechova's identity for the FPR, elementwise.

    Two cases: five random triples as 1-d float64 tensors, and one triple of 0-d tensors.
    """
    name = "fpr_identity"
    rng = np.random.default_rng(0)
    cases = [(rng.uniform(0.1, 0.9, 5), rng.uniform(0.2, 0.95, 5), rng.uniform(0.05, 0.6, 5), "5 random triples"),
             (np.array(0.3), np.array(0.6), np.array(0.2), "one triple of 0-d tensors")]
    for p, ppv, fnr, case in cases:
        expected = p / (1 - p) * (1 - ppv) / ppv * (1 - fnr)
        got = call_learner(name, fpr_from, torch.from_numpy(p), torch.from_numpy(ppv), torch.from_numpy(fnr))
        require_close(got, expected, name, case=case, what="the FPR",
                      hint="FPR = p / (1 - p) * (1 - PPV) / PPV * (1 - FNR): write TP, FP in terms of the group "
                           "size, base rate p, PPV and FNR")
    passed(name, "the identity holds on 5 random triples and on 0-d tensors")
