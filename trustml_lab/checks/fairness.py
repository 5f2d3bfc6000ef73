"""Self-checks for chapter 1, Fairness.

Each check runs the learner's function on small seeded inputs and compares it with the
package's kernels (:mod:`trustml_lab.fairness`), which are tested against aif360 and
fairlearn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import fairness as fair
from ._core import call_learner, passed, require

__all__ = [
    "check_balanced_weights",
    "check_equal_opportunity",
    "check_fpr_identity",
    "check_parity_penalty",
    "check_release_gate",
    "check_selection_rates",
]


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _close(got: Any, expected: Any, tol: float = 1e-6) -> None:
    try:
        got, expected = _as_numpy(got), _as_numpy(expected)
    except (TypeError, ValueError):
        return False
    return got.shape == expected.shape and bool(np.allclose(got, expected, rtol=tol, atol=tol))


def _toy(seed: int, n: int = 400, num_groups: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    group = torch.randint(0, num_groups, (n,), generator=generator)
    y_true = (torch.rand(n, generator=generator) < 0.3 + 0.2 * group / max(num_groups - 1, 1)).long()
    flip = torch.rand(n, generator=generator) < 0.25
    y_pred = torch.where(flip, 1 - y_true, y_true)
    return y_true, y_pred, group


def check_equal_opportunity(compute_equal_opportunity: Callable[..., dict]) -> None:
    """Check the seed's ``compute_equal_opportunity(y_true, y_pred, sensitive_attr)``.

    It returns ``tpr_privileged``, ``tpr_unprivileged``, ``diff`` (unprivileged minus
    privileged) and ``ratio`` (smaller TPR over larger, the four-fifths ratio), with
    group 1 privileged.
    """
    name = "equal_opportunity"
    for seed in range(3):
        y_true, y_pred, group = _toy(seed)
        got = call_learner(name, compute_equal_opportunity, y_true, y_pred, group)
        require(isinstance(got, dict), name, f"return a dict, got {type(got).__name__}")
        keys = {"tpr_privileged", "tpr_unprivileged", "diff", "ratio"}
        require(keys <= set(got), name, f"the dict needs the keys {sorted(keys)}, got {sorted(got)}")
        table = fair.fairness_report(y_true, y_pred, group, privileged=1).groups
        tpr_u, tpr_p = float(table["tpr"][0]), float(table["tpr"][1])
        require(_close(got["tpr_privileged"], tpr_p) and _close(got["tpr_unprivileged"], tpr_u), name,
                f"the TPRs should be {tpr_p:.4f} (privileged) and {tpr_u:.4f}: the mean of y_pred over the "
                "rows of the group whose y_true is 1")
        require(_close(got["diff"], tpr_u - tpr_p), name,
                f"diff should be {tpr_u - tpr_p:.4f}: unprivileged minus privileged, aif360's sign")
        ratio = min(tpr_u, tpr_p) / max(tpr_u, tpr_p)
        require(_close(got["ratio"], ratio), name,
                f"ratio should be {ratio:.4f}: the smaller TPR over the larger one")
    passed(name, "TPRs, difference and four-fifths ratio match on 3 random tables")


def check_selection_rates(selection_rates: Callable[[torch.Tensor, torch.Tensor], Any]) -> None:
    """Check ``selection_rates(y_pred, group) -> tensor`` (one rate per group code, no loop needed)."""
    name = "selection_rates"
    for seed, num_groups in ((0, 2), (1, 3), (2, 5)):
        _, y_pred, group = _toy(seed, num_groups=num_groups)
        got = call_learner(name, selection_rates, y_pred, group)
        expected = fair.fairness_report(y_pred, y_pred, group, privileged=0).groups["selection_rate"]
        require(_close(got, expected.to_numpy()), name,
                f"with {num_groups} groups expected {np.round(expected.to_numpy(), 4).tolist()}: per group, "
                "the number of predicted 1s over the group's size (torch.bincount does both counts)")
    passed(name, "per-group selection rates match for 2, 3 and 5 groups")


def check_balanced_weights(compute_sample_weights: Callable[[torch.Tensor, torch.Tensor], Any]) -> None:
    """Check the seed's ``compute_sample_weights(y, group)``: ``n / (cells * count(y, group))``."""
    name = "balanced_weights"
    for seed, num_groups in ((0, 2), (1, 3)):
        y, _, group = _toy(seed, num_groups=num_groups)
        cell = (group * 2 + y).numpy()
        counts = np.bincount(cell)
        used = int((counts > 0).sum())
        expected = len(cell) / (used * counts[cell])
        got = call_learner(name, compute_sample_weights, y, group)
        require(_close(got, expected), name,
                "expected total / (number of non-empty (label, group) cells * size of the row's cell); "
                f"for the first rows {np.round(expected[:3], 4).tolist()}")
    require(_close(np.sum(expected), len(expected)), name, "the weights should sum to the number of rows")
    passed(name, "weights by (label, group) counts match and sum to n")


def check_parity_penalty(parity_penalty: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check a differentiable ``parity_penalty(scores, group)`` for two groups."""
    name = "parity_penalty"
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(64, generator=generator, dtype=torch.float64, requires_grad=True)
    group = torch.randint(0, 2, (64,), generator=generator)
    got = call_learner(name, parity_penalty, scores, group)
    require(isinstance(got, torch.Tensor) and got.ndim == 0, name, "return a 0-d tensor (keep it in torch)")
    expected = fair.demographic_parity_penalty(scores, group)
    require(_close(got, expected), name,
            f"expected {float(expected.detach()):.4f}: the absolute gap between the mean score of group 0 "
            "and the mean score of group 1")
    require(got.requires_grad, name, "the penalty lost its gradient: do not call .item(), .numpy() or float()")
    (grad,) = torch.autograd.grad(got, scores)
    (expected_grad,) = torch.autograd.grad(expected, scores)
    require(_close(grad, expected_grad), name, "the value is right but its gradient is not")
    passed(name, "value and gradient match demographic_parity_penalty")


def _report(**metrics: float) -> fair.FairnessReport:
    values = {name: 0.0 for name in fair.METRICS}
    values.update(disparate_impact=1.0, equal_opportunity_ratio=1.0)
    values.update(metrics)
    return fair.FairnessReport(groups=pd.DataFrame(), privileged=(1,), unprivileged=(0,), **values)


def check_release_gate(release_gate: Callable[[fair.FairnessReport], list]) -> None:
    """Check ``release_gate(report) -> list of failure messages`` (empty when it passes).

    The gate: the four-fifths rule both ways on the selection rates
    (``min(DI, 1/DI) >= 0.8``) and on the TPRs (``min(r, 1/r) >= 0.8`` with
    ``r = equal_opportunity_ratio``), and ``|SPD| <= 0.1``; an undefined (nan) metric fails.
    """
    name = "release_gate"
    cases = [
        ({}, 0, "a perfectly fair report"),
        ({"disparate_impact": 0.7, "statistical_parity_difference": -0.05}, 1, "DI 0.7 (four-fifths rule)"),
        ({"disparate_impact": 1.3, "statistical_parity_difference": 0.05}, 1, "DI 1.3 (min(DI, 1/DI) = 0.77)"),
        ({"equal_opportunity_ratio": 0.79}, 1, "a TPR ratio of 0.79"),
        ({"equal_opportunity_ratio": 1.2}, 0, "a TPR ratio of 1.2 (1/1.2 = 0.83 passes)"),
        ({"statistical_parity_difference": -0.15, "disparate_impact": 0.85}, 1, "SPD -0.15"),
        ({"equal_opportunity_ratio": math.nan}, 1, "an undefined TPR ratio (nan)"),
        ({"disparate_impact": 0.5, "equal_opportunity_ratio": 0.5, "statistical_parity_difference": -0.3}, 3,
         "three violations at once"),
    ]
    for metrics, expected, text in cases:
        got = call_learner(name, release_gate, _report(**metrics))
        require(isinstance(got, (list, tuple)), name, f"return a list of messages, got {type(got).__name__}")
        require(len(got) == expected, name, f"for {text} expected {expected} failure message(s), got {list(got)}")
    passed(name, f"all {len(cases)} reports judged as expected")


def check_fpr_identity(fpr_from: Callable[..., Any]) -> None:
    """Check ``fpr_from(base_rate, ppv, fnr)``, Chouldechova's identity for the FPR."""
    name = "fpr_identity"
    rng = np.random.default_rng(0)
    p, ppv, fnr = rng.uniform(0.1, 0.9, 5), rng.uniform(0.2, 0.95, 5), rng.uniform(0.05, 0.6, 5)
    expected = p / (1 - p) * (1 - ppv) / ppv * (1 - fnr)
    got = call_learner(name, fpr_from, torch.from_numpy(p), torch.from_numpy(ppv), torch.from_numpy(fnr))
    require(_close(got, expected), name,
            "FPR = p / (1 - p) * (1 - PPV) / PPV * (1 - FNR): write TP, FP in terms of the group size, "
            f"base rate p, PPV and FNR; expected {np.round(expected[:2], 4).tolist()} for the first two")
    passed(name, "the identity holds on 5 random (p, PPV, FNR)")
