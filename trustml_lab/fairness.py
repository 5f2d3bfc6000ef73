"""Chapter 1, fairness: group metrics, reweighing, and in- and post-processing mitigation.

Conventions follow aif360 so that every number can be checked against it:

* ``group`` holds non-negative integer codes (one per row) or a boolean mask in which
  ``True`` marks the privileged group. ``privileged`` names the privileged code(s);
  ``unprivileged`` the unprivileged one(s), by default every other code. Rows of
  several codes on one side are pooled, as aif360 pools ``[{'g': 0}, {'g': 2}]``.
* Differences are unprivileged minus privileged, ratios unprivileged over privileged.
* Labels and predictions are binary, 1 the favorable outcome (credit granted).
* ``sample_weight`` weights every count, like aif360's ``instance_weights``.
* Undefined rates follow aif360: a rate over an empty denominator is ``nan`` (TPR of a
  side with no positives, FPR of a side with no negatives, a ratio over 0 is ``inf``
  or ``nan``), except PPV and accuracy, which aif360 sets to 0 there.

Every count comes from one pass over the data (:func:`group_confusion`), so the metrics
are batched and run unchanged on a GPU. Scalars come back as 0-d float64 tensors on the
device of ``y_pred`` (``float(...)`` turns them into numbers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from tqdm import tqdm

from ._validation import (
    as_tensor,
    check_binary,
    check_finite,
    check_in_range,
    check_positive,
    check_same_length,
    describe,
)
from .models import MLP, progress_enabled

__all__ = [
    "AdversarialDebiaser",
    "FairnessReport",
    "METRICS",
    "average_odds_difference",
    "demographic_parity_penalty",
    "disparate_impact",
    "equal_opportunity_difference",
    "equal_opportunity_ratio",
    "equalized_odds_difference",
    "fairness_report",
    "group_confusion",
    "group_thresholds",
    "predictive_parity_difference",
    "reweighing_weights",
    "statistical_parity_difference",
]

Codes = int | Sequence[int] | None


# --------------------------------------------------------------------------- input edge

@dataclass(frozen=True)
class _Codes:
    """Checked group codes: an integer tensor, the number of groups, and the input's kind."""

    values: torch.Tensor
    count: int
    is_mask: bool


def _value_range(tensor: torch.Tensor) -> tuple[Any, Any]:
    """Minimum and maximum in one pass and one host transfer ((0, -1) when empty)."""
    if len(tensor) == 0:
        return 0, -1
    low, high = torch.aminmax(tensor)
    return tuple(torch.stack([low, high]).tolist())


def _as_codes(group: Any, device: torch.device | None = None, *, num_groups: int | None = None) -> _Codes:
    """``group`` as non-negative integer codes on ``device`` (a boolean mask gives 0 and 1)."""
    tensor = as_tensor(group, "group", ndim=1, device=device)
    is_mask = tensor.dtype == torch.bool
    if is_mask:
        tensor = tensor.to(torch.uint8)
    elif tensor.is_floating_point():
        check_finite(tensor, "group")
        if bool((tensor != tensor.round()).any()):
            raise ValueError(f"group: expected integer group codes or a boolean mask, got {describe(tensor)} "
                             "with fractional values")
        tensor = tensor.long()
    elif tensor.is_complex():
        raise TypeError(f"group: expected integer group codes or a boolean mask, got {describe(tensor)}")
    low, high = _value_range(tensor)
    if low < 0:
        raise ValueError(f"group: expected non-negative integer codes, got a minimum of {low}")
    largest = high + 1
    if num_groups is None:
        return _Codes(tensor, max(largest, 2 if is_mask else 1), is_mask)
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
        raise ValueError(f"num_groups: expected a positive int or None, got {describe(num_groups)}")
    if largest > num_groups:
        raise ValueError(f"num_groups: expected more than the largest group code {largest - 1}, got {num_groups}")
    return _Codes(tensor, num_groups, is_mask)


def _as_labels(values: Any, name: str, device: torch.device | None) -> torch.Tensor:
    """Binary labels as an integer tensor on ``device`` (checked with one min/max pass)."""
    tensor = as_tensor(values, name, ndim=1, device=device)
    if tensor.dtype == torch.bool:
        return tensor.to(torch.uint8)
    if not (tensor.is_floating_point() or tensor.is_complex()) and len(tensor):
        low, high = _value_range(tensor)
        if low >= 0 and high <= 1:
            return tensor
    return check_binary(tensor, name)  # converts 0./1. floats, or names what is wrong


def _as_weights(sample_weight: Any, device: torch.device) -> torch.Tensor | None:
    if sample_weight is None:
        return None
    weights = as_tensor(sample_weight, "sample_weight", dtype=torch.float64, device=device, ndim=1)
    low, high = _value_range(weights)
    if not (low >= 0 and math.isfinite(high)):  # NaN fails both comparisons
        check_finite(weights, "sample_weight")
        raise ValueError(f"sample_weight: expected non-negative weights, got a minimum of {low}")
    return weights


def _cell_index(codes: torch.Tensor, labels: Sequence[torch.Tensor], count: int) -> tuple[torch.Tensor, int]:
    """``codes * 2**k + binary number of labels`` in the smallest integer dtype that holds it."""
    width = 1 << len(labels)
    cells = count * width
    dtype = torch.uint8 if cells <= 256 else torch.int32 if cells < 2**31 else torch.int64
    index = codes.to(dtype) * width
    for shift, label in enumerate(reversed(labels)):
        index.add_(label.to(dtype), alpha=1 << shift)
    return index, cells


def _cell_counts(index: torch.Tensor, cells: int, weights: torch.Tensor | None) -> torch.Tensor:
    """(Weighted) float64 count of each cell index."""
    if weights is None:
        return torch.bincount(index, minlength=cells).to(torch.float64)
    # scatter_add_ has a deterministic CUDA kernel; bincount with weights has not
    zeros = torch.zeros(cells, dtype=torch.float64, device=index.device)
    return zeros.scatter_add_(0, index.long(), weights)


def _code_set(value: Codes, name: str) -> set[int]:
    """``value`` (a code or a sequence of codes) as a set of non-negative ints."""
    if isinstance(value, (int, np.integer)):  # bool is an int: True is code 1
        values = [value]
    elif isinstance(value, (list, tuple, set, frozenset, range, np.ndarray)):
        values = list(value)
    else:
        raise TypeError(f"{name}: expected a group code or a sequence of codes, got {describe(value)}")
    if not values or not all(isinstance(v, (int, np.integer)) and v >= 0 for v in values):
        raise ValueError(f"{name}: expected a non-negative group code or a non-empty list of them, "
                         f"got {describe(value)}")
    return {int(v) for v in values}


def _side_masks(num_groups: int, privileged: Codes, unprivileged: Codes, is_mask: bool,
                device: torch.device) -> torch.Tensor:
    """A (2, G) boolean matrix: row 0 the unprivileged codes, row 1 the privileged ones.

    Codes absent from the data (>= ``num_groups``) select no rows; an empty side is
    reported by the caller, naming ``group``.
    """
    if privileged is None:
        if not is_mask:
            raise ValueError("privileged: expected the code(s) of the privileged group, got None "
                             "(None is allowed only when group is a boolean privileged mask)")
        privileged = 1
    priv = _code_set(privileged, "privileged")
    unpriv = set(range(num_groups)) - priv if unprivileged is None else _code_set(unprivileged, "unprivileged")
    if priv & unpriv:
        raise ValueError(f"unprivileged: expected codes disjoint from privileged {sorted(priv)}, "
                         f"got {sorted(unpriv)}")
    sides = torch.zeros(2, num_groups, dtype=torch.bool, device=device)
    sides[0, [c for c in unpriv if c < num_groups]] = True
    sides[1, [c for c in priv if c < num_groups]] = True
    return sides


def _pool(conf: torch.Tensor, sides: torch.Tensor) -> torch.Tensor:
    """The (2, 2, 2) confusion matrices of the unprivileged and privileged sides."""
    pooled = torch.einsum("sg,gij->sij", sides.to(conf.dtype), conf)
    empty = (pooled.sum(dim=(1, 2)) == 0).tolist()
    if any(empty):
        which = "unprivileged" if empty[0] else "privileged"
        raise ValueError(f"group: expected rows (with positive weight) in both the privileged and the "
                         f"unprivileged group, got none in the {which} one")
    return pooled


# --------------------------------------------------------------------------- counts and rates

def group_confusion(
    y_true: Any,
    y_pred: Any,
    group: Any,
    *,
    sample_weight: Any = None,
    num_groups: int | None = None,
) -> torch.Tensor:
    """Per-group confusion matrices, ``C[g, true, pred]``, as (weighted) float64 counts.

    One pass over the rows (a ``bincount`` of ``4 * group + 2 * y_true + y_pred``),
    no loop over groups. ``C[g, 1, 1]`` are the true positives of group ``g``,
    ``C[g, 0, 1]`` its false positives. ``num_groups`` defaults to the largest code
    plus one (a boolean mask gives codes 0 and 1). Equals aif360's
    ``ClassificationMetric.binary_confusion_matrix`` for each group, with weights.

    >>> group_confusion([1, 0, 1, 1], [1, 1, 0, 1], [0, 0, 1, 1])
    tensor([[[0., 1.],
             [0., 1.]],
    <BLANKLINE>
            [[0., 0.],
             [1., 1.]]], dtype=torch.float64)
    """
    return _confusion(y_true, y_pred, group, sample_weight, num_groups)[0]


def _confusion(y_true: Any, y_pred: Any, group: Any, sample_weight: Any,
               num_groups: int | None = None) -> tuple[torch.Tensor, _Codes]:
    y_pred = _as_labels(y_pred, "y_pred", None)
    device = y_pred.device
    y_true = y_pred if y_true is None else _as_labels(y_true, "y_true", device)
    codes = _as_codes(group, device, num_groups=num_groups)
    weights = _as_weights(sample_weight, device)
    n = check_same_length(y_true=y_true, y_pred=y_pred, group=codes.values, sample_weight=weights)
    if n == 0:
        raise ValueError("y_pred: expected at least one row, got an empty array")
    index, cells = _cell_index(codes.values, (y_true, y_pred), codes.count)
    return _cell_counts(index, cells, weights).reshape(codes.count, 2, 2), codes


def _rates(conf: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rates of confusion matrices (..., 2, 2), with aif360's values where undefined."""
    tn, fp, fn, tp = conf[..., 0, 0], conf[..., 0, 1], conf[..., 1, 0], conf[..., 1, 1]
    size = conf.sum(dim=(-1, -2))
    positives, negatives, selected = tp + fn, tn + fp, tp + fp
    zero = torch.zeros((), dtype=conf.dtype, device=conf.device)
    return {
        "size": size,
        "base_rate": positives / size,
        "selection_rate": selected / size,
        "tpr": tp / positives,  # nan without positives, as aif360
        "fpr": fp / negatives,  # nan without negatives, as aif360
        "ppv": torch.where(selected > 0, tp / selected, zero),  # aif360: 0 when nothing selected
        "accuracy": torch.where(size > 0, (tp + tn) / size, zero),
    }


def _side_rates(y_true: Any, y_pred: Any, group: Any, privileged: Codes, unprivileged: Codes,
                sample_weight: Any) -> dict[str, torch.Tensor]:
    """Rates of the unprivileged (index 0) and privileged (index 1) sides.

    Without ``y_true`` the predictions stand in for it (only selection rates are used).
    """
    conf, codes = _confusion(y_true, y_pred, group, sample_weight)
    sides = _side_masks(codes.count, privileged, unprivileged, codes.is_mask, conf.device)
    return _rates(_pool(conf, sides))


def _difference(rate: torch.Tensor) -> torch.Tensor:
    return rate[0] - rate[1]


# --------------------------------------------------------------------------- metrics

def statistical_parity_difference(y_true: Any, y_pred: Any, group: Any, *, privileged: Codes = None,
                                  unprivileged: Codes = None, sample_weight: Any = None) -> torch.Tensor:
    r"""Selection rate of the unprivileged group minus that of the privileged group.

    :math:`SPD = P(\hat Y=1 \mid D=u) - P(\hat Y=1 \mid D=p)`; 0 is parity, negative
    values disfavor the unprivileged group. ``y_true`` may be ``None`` (only the
    predictions matter); pass the labels as ``y_pred`` to measure the data itself.
    Equals aif360's ``ClassificationMetric.statistical_parity_difference`` (and
    ``BinaryLabelDatasetMetric``'s on the labels); for two groups its absolute value
    equals fairlearn's ``demographic_parity_difference``.

    >>> statistical_parity_difference(None, [1, 0, 1, 1], [0, 0, 1, 1], privileged=1)
    tensor(-0.5000, dtype=torch.float64)
    """
    rates = _side_rates(y_true, y_pred, group, privileged, unprivileged, sample_weight)
    return _difference(rates["selection_rate"])


def disparate_impact(y_true: Any, y_pred: Any, group: Any, *, privileged: Codes = None,
                     unprivileged: Codes = None, sample_weight: Any = None) -> torch.Tensor:
    r"""Selection rate of the unprivileged group over that of the privileged group.

    :math:`DI = P(\hat Y=1 \mid D=u) / P(\hat Y=1 \mid D=p)`; the four-fifths rule asks
    for ``DI >= 0.8``. ``inf`` (or ``nan``) when the privileged group is never selected.
    ``y_true`` may be ``None``. Equals aif360's ``disparate_impact``.

    >>> disparate_impact(None, [1, 0, 1, 1], [0, 0, 1, 1], privileged=1)
    tensor(0.5000, dtype=torch.float64)
    """
    rates = _side_rates(y_true, y_pred, group, privileged, unprivileged, sample_weight)
    return rates["selection_rate"][0] / rates["selection_rate"][1]


def equal_opportunity_difference(y_true: Any, y_pred: Any, group: Any, *, privileged: Codes = None,
                                 unprivileged: Codes = None, sample_weight: Any = None) -> torch.Tensor:
    r"""True positive rate of the unprivileged group minus that of the privileged group.

    :math:`EOD = TPR_u - TPR_p` with :math:`TPR = P(\hat Y=1 \mid Y=1)`: among people
    who would repay, how much less often the unprivileged are approved. ``nan`` when a
    side has no positives. Equals aif360's ``equal_opportunity_difference``.

    >>> equal_opportunity_difference([1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 1], privileged=1)
    tensor(-0.5000, dtype=torch.float64)
    """
    rates = _side_rates(y_true, y_pred, group, privileged, unprivileged, sample_weight)
    return _difference(rates["tpr"])


def equal_opportunity_ratio(y_true: Any, y_pred: Any, group: Any, *, privileged: Codes = None,
                            unprivileged: Codes = None, sample_weight: Any = None) -> torch.Tensor:
    r"""True positive rate of the unprivileged group over that of the privileged group.

    :math:`TPR_u / TPR_p`, the ratio to which the four-fifths rule (``>= 0.8``) is
    applied for equal opportunity. Equals aif360's
    ``ClassificationMetric.ratio(ClassificationMetric.true_positive_rate)``.

    >>> equal_opportunity_ratio([1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 1], privileged=1)
    tensor(0.5000, dtype=torch.float64)
    """
    rates = _side_rates(y_true, y_pred, group, privileged, unprivileged, sample_weight)
    return rates["tpr"][0] / rates["tpr"][1]


def average_odds_difference(y_true: Any, y_pred: Any, group: Any, *, privileged: Codes = None,
                            unprivileged: Codes = None, sample_weight: Any = None) -> torch.Tensor:
    r"""Mean of the FPR and TPR differences (unprivileged minus privileged).

    :math:`AOD = \tfrac12[(FPR_u - FPR_p) + (TPR_u - TPR_p)]`. Signed, so a TPR gap and
    an opposite FPR gap can cancel: read it with :func:`equalized_odds_difference`.
    Equals aif360's ``average_odds_difference``.

    >>> average_odds_difference([1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1], privileged=1)
    tensor(1., dtype=torch.float64)
    """
    rates = _side_rates(y_true, y_pred, group, privileged, unprivileged, sample_weight)
    return 0.5 * (_difference(rates["fpr"]) + _difference(rates["tpr"]))


def _max_abs_gap(fpr_gap: torch.Tensor, tpr_gap: torch.Tensor) -> torch.Tensor:
    # aif360 uses Python's max(|dFPR|, |dTPR|): nan when dFPR is nan, |dFPR| when only dTPR is.
    fpr_gap, tpr_gap = fpr_gap.abs(), tpr_gap.abs()
    return torch.where(torch.isnan(tpr_gap) & ~torch.isnan(fpr_gap), fpr_gap, torch.maximum(fpr_gap, tpr_gap))


def equalized_odds_difference(y_true: Any, y_pred: Any, group: Any, *, privileged: Codes = None,
                              unprivileged: Codes = None, sample_weight: Any = None) -> torch.Tensor:
    r"""The larger absolute gap of FPR and TPR between the two sides.

    :math:`\max(|FPR_u - FPR_p|, |TPR_u - TPR_p|)`; 0 means equalized odds. Equals
    aif360's ``equalized_odds_difference`` (including its ``nan`` handling: ``nan``
    when the FPR gap is undefined, the FPR gap when only the TPR gap is) and, for two
    groups, fairlearn's ``equalized_odds_difference``.

    >>> equalized_odds_difference([1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1], privileged=1)
    tensor(1., dtype=torch.float64)
    """
    rates = _side_rates(y_true, y_pred, group, privileged, unprivileged, sample_weight)
    return _max_abs_gap(_difference(rates["fpr"]), _difference(rates["tpr"]))


def predictive_parity_difference(y_true: Any, y_pred: Any, group: Any, *, privileged: Codes = None,
                                 unprivileged: Codes = None, sample_weight: Any = None) -> torch.Tensor:
    r"""Precision (PPV) of the unprivileged group minus that of the privileged group.

    :math:`PPV_u - PPV_p` with :math:`PPV = P(Y=1 \mid \hat Y=1)`: whether an approval
    means the same for both groups. A side with no approvals has PPV 0, as in aif360.
    Equals aif360's ``ClassificationMetric.difference(positive_predictive_value)``.

    >>> predictive_parity_difference([1, 0, 1, 1], [1, 1, 1, 1], [0, 0, 1, 1], privileged=1)
    tensor(-0.5000, dtype=torch.float64)
    """
    rates = _side_rates(y_true, y_pred, group, privileged, unprivileged, sample_weight)
    return _difference(rates["ppv"])


# --------------------------------------------------------------------------- the report

#: The scalar metrics of a :class:`FairnessReport`, with their short names.
METRICS = {
    "statistical_parity_difference": "SPD",
    "disparate_impact": "DI",
    "equal_opportunity_difference": "EOD",
    "equal_opportunity_ratio": "EOR",
    "average_odds_difference": "AOD",
    "equalized_odds_difference": "EqOdds",
    "predictive_parity_difference": "PPD",
}


@dataclass(frozen=True)
class FairnessReport:
    """Per-group table and every scalar metric of one classifier, for a release gate.

    ``groups`` has one row per group code (``size`` is the total weight, the row count
    without weights) with ``base_rate``, ``selection_rate``, ``tpr``, ``fpr``, ``ppv``,
    ``accuracy``; the scalars compare the pooled unprivileged and privileged sides.
    """

    groups: pd.DataFrame = field(repr=False)
    privileged: tuple[int, ...]
    unprivileged: tuple[int, ...]
    statistical_parity_difference: float
    disparate_impact: float
    equal_opportunity_difference: float
    equal_opportunity_ratio: float
    average_odds_difference: float
    equalized_odds_difference: float
    predictive_parity_difference: float

    def metrics(self) -> pd.Series:
        """The scalar metrics as a Series indexed by their full names."""
        return pd.Series({name: getattr(self, name) for name in METRICS}, dtype="float64")

    def failures(self, *, max_abs_spd: float | None = 0.1, min_di: float | None = 0.8,
                 max_abs_eod: float | None = 0.1, min_eo_ratio: float | None = None,
                 max_abs_aod: float | None = None, max_eq_odds: float | None = None,
                 max_abs_ppd: float | None = None) -> list[str]:
        """One line per violated threshold (``None`` skips a check); ``nan`` always fails."""
        rules = (
            ("statistical_parity_difference", max_abs_spd, True, "|SPD| <= "),
            ("disparate_impact", min_di, False, "DI >= "),
            ("equal_opportunity_difference", max_abs_eod, True, "|EOD| <= "),
            ("equal_opportunity_ratio", min_eo_ratio, False, "TPR ratio >= "),
            ("average_odds_difference", max_abs_aod, True, "|AOD| <= "),
            ("equalized_odds_difference", max_eq_odds, True, "EqOdds <= "),
            ("predictive_parity_difference", max_abs_ppd, True, "|PPD| <= "),
        )
        found = []
        for name, limit, is_upper, text in rules:
            if limit is None:
                continue
            value = getattr(self, name)
            ok = abs(value) <= limit if is_upper else value >= limit  # False for nan
            if not ok:
                found.append(f"{name} = {value:.4f} violates {text}{limit}")
        return found

    def passes(self, **thresholds: float | None) -> bool:
        """Whether every threshold holds; defaults |SPD| <= 0.1, DI >= 0.8, |EOD| <= 0.1.

        Keywords as in :meth:`failures` (``max_abs_spd``, ``min_di``, ``max_abs_eod``,
        ``min_eo_ratio``, ``max_abs_aod``, ``max_eq_odds``, ``max_abs_ppd``).
        """
        return not self.failures(**thresholds)


def fairness_report(
    y_true: Any,
    y_pred: Any,
    group: Any,
    *,
    privileged: Codes = None,
    unprivileged: Codes = None,
    sample_weight: Any = None,
    group_names: Sequence[str] | None = None,
) -> FairnessReport:
    """All the chapter's metrics at once, from one :func:`group_confusion` pass.

    Works with any number of groups, e.g. intersectional codes (sex x age band): the
    table has a row per code (named by ``group_names``), the scalars compare the
    pooled privileged codes with the pooled unprivileged ones. Each scalar equals the
    function of the same name (so aif360's), each table row equals aif360's
    ``performance_measures`` of that group and fairlearn's ``MetricFrame.by_group``.

    >>> report = fairness_report([1, 0, 1, 1], [1, 1, 0, 1], [0, 0, 1, 1], privileged=1)
    >>> round(report.equal_opportunity_difference, 4), report.passes()
    (0.5, False)
    >>> report.groups[["selection_rate", "tpr"]]  # doctest: +NORMALIZE_WHITESPACE
           selection_rate  tpr
    group
    0                 1.0  1.0
    1                 0.5  0.5
    """
    conf, codes = _confusion(y_true, y_pred, group, sample_weight)
    sides = _side_masks(codes.count, privileged, unprivileged, codes.is_mask, conf.device)
    pooled = _pool(conf, sides)
    per_group = {k: v.cpu().numpy() for k, v in _rates(conf).items()}
    names = list(range(len(conf))) if group_names is None else list(group_names)
    if len(names) != len(conf):
        raise ValueError(f"group_names: expected {len(conf)} names (one per group code), got {len(names)}")
    table = pd.DataFrame(per_group, index=pd.Index(names, name="group"))
    side = _rates(pooled)
    fpr_gap, tpr_gap = _difference(side["fpr"]), _difference(side["tpr"])
    scalars = torch.stack([
        _difference(side["selection_rate"]),
        side["selection_rate"][0] / side["selection_rate"][1],
        tpr_gap,
        side["tpr"][0] / side["tpr"][1],
        0.5 * (fpr_gap + tpr_gap),
        _max_abs_gap(fpr_gap, tpr_gap),
        _difference(side["ppv"]),
    ]).tolist()  # one host transfer for all scalars
    mask = sides.cpu()
    return FairnessReport(
        groups=table,
        privileged=tuple(int(i) for i in torch.nonzero(mask[1]).flatten()),
        unprivileged=tuple(int(i) for i in torch.nonzero(mask[0]).flatten()),
        **dict(zip(METRICS, scalars)),
    )


# --------------------------------------------------------------------------- pre-processing

def reweighing_weights(y: Any, group: Any, *, privileged: Codes = None,
                       sample_weight: Any = None) -> torch.Tensor:
    r"""Kamiran and Calders' reweighing: a weight per row that makes label and group independent.

    :math:`w(y, g) = \frac{n_y \, n_g}{n \, n_{y,g}}`, the expected over the observed
    count of the cell (label, group), all counts weighted by ``sample_weight`` (which
    then multiplies the result). With ``privileged`` the groups are the pooled
    privileged codes and all the others, exactly aif360's ``Reweighing`` (its
    transformed ``instance_weights``); with ``privileged=None`` every code is its own
    group (for two groups, the same thing). Returns float64 weights on ``y``'s device.

    >>> reweighing_weights([1, 1, 0, 1, 0, 0], [1, 1, 1, 0, 0, 0])
    tensor([0.7500, 0.7500, 1.5000, 1.5000, 0.7500, 0.7500], dtype=torch.float64)
    """
    labels = _as_labels(y, "y", None)
    device = labels.device
    codes = _as_codes(group, device)
    weights = _as_weights(sample_weight, device)
    n = check_same_length(y=labels, group=codes.values, sample_weight=weights)
    if n == 0:
        raise ValueError("y: expected at least one row, got an empty array")
    values, count = codes.values, codes.count
    if privileged is not None:  # 1 for the privileged codes, 0 for every other code
        sides = _side_masks(count, privileged, None, codes.is_mask, device)
        if sides[1].tolist() != [False, True]:  # else the codes are that already
            values = sides[1].to(torch.uint8).index_select(0, values.int())
        count = 2
    index, cells = _cell_index(values, (labels,), count)
    table = _cell_counts(index, cells, weights).reshape(count, 2)
    if int((table.sum(dim=1) > 0).sum()) < 2:
        raise ValueError("group: expected at least two groups (with positive weight) to reweigh, got one")
    n_g, n_y = table.sum(dim=1, keepdim=True), table.sum(dim=0, keepdim=True)
    factor = (n_y * n_g / (table.sum() * table)).flatten()  # aif360's n_y n_g / (n n_yg)
    out = factor.index_select(0, index.int() if index.dtype == torch.uint8 else index)
    return out if weights is None else out * weights


# --------------------------------------------------------------------------- in-processing

def demographic_parity_penalty(scores: torch.Tensor, group: Any, *, num_groups: int | None = None) -> torch.Tensor:
    r"""A differentiable parity penalty: the largest gap between the groups' mean scores.

    For two groups :math:`|\bar s_0 - \bar s_1|`, the seed's ``fairness_loss``; for
    more, max minus min of the group means. Groups absent from ``scores`` (a small
    batch) are skipped; with fewer than two present the penalty is 0. Add
    ``lam * penalty`` to a training loss. Equals fairlearn's
    ``MetricFrame(metrics=mean_prediction, ...).difference()`` on the scores.

    >>> scores = torch.tensor([0.9, 0.7, 0.2, 0.4], requires_grad=True)
    >>> penalty = demographic_parity_penalty(scores, torch.tensor([1, 1, 0, 0]))
    >>> penalty
    tensor(0.5000, grad_fn=<WhereBackward0>)
    >>> penalty.backward(); scores.grad
    tensor([ 0.5000,  0.5000, -0.5000, -0.5000])
    """
    if not isinstance(scores, torch.Tensor):
        scores = as_tensor(scores, "scores")
    if scores.ndim != 1 or not scores.is_floating_point():
        raise ValueError(f"scores: expected a 1-d floating tensor, got {describe(scores)}")
    check_finite(scores, "scores")
    groups = _as_codes(group, scores.device, num_groups=num_groups)
    check_same_length(scores=scores, group=groups.values)
    codes, size = groups.values.long(), groups.count
    sums = torch.zeros(size, dtype=scores.dtype, device=scores.device).index_add(0, codes, scores)
    counts = torch.bincount(codes, minlength=size)
    present = counts > 0
    means = sums / counts.clamp_min(1)
    gap = torch.where(present, means, -math.inf).max() - torch.where(present, means, math.inf).min()
    return torch.where(present.sum() >= 2, gap, torch.zeros_like(gap))


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``-alpha`` backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.alpha * grad, None


class AdversarialDebiaser:
    """In-processing debiasing: a predictor trained against an adversary (Zhang et al., 2018).

    The predictor (an :class:`~trustml_lab.models.MLP` with one logit) learns the label;
    the adversary (a small MLP) reads the predictor's logit and tries to predict the
    protected group. The predictor minimizes ``main_loss - alpha * adversary_loss``:

    * ``method="reversal"``: a gradient reversal layer between the two (the seeds'
      auxiliary head with ``main - alpha * adv``, done so the adversary still learns);
    * ``method="projection"``: Zhang et al.'s update, as aif360's ``AdversarialDebiasing``
      does it: per parameter, the main gradient minus its projection on the adversary's
      gradient, minus ``alpha`` times the adversary's gradient.

    ``alpha`` warms up linearly from 0 over ``warmup_epochs`` (:meth:`alpha_at`), so the
    predictor first learns the task. Seeded by ``seed`` (weights and batch order),
    without touching torch's global generator. sklearn-like: ``fit`` returns ``self``;
    ``history_`` holds per-epoch ``alpha``, ``main_loss`` and ``adversary_loss``.

    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(200, 3); g = (x[:, 0] > 0).long(); y = (x[:, 1] + x[:, 0] > 0).long()
    >>> model = AdversarialDebiaser(epochs=3, progress=False).fit(x, y, g)
    >>> model.predict_proba(x).shape, [round(h["alpha"], 2) for h in model.history_]
    (torch.Size([200, 2]), [0.0, 0.2, 0.4])
    """

    def __init__(self, *, hidden: Sequence[int] = (32,), adversary_hidden: Sequence[int] = (16,),
                 alpha: float = 1.0, warmup_epochs: int = 5, method: str = "reversal", epochs: int = 30,
                 batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
                 device: torch.device | str | None = None, progress: bool = True):
        check_positive(alpha, "alpha", strict=False)
        check_positive(lr, "lr")
        for name, value, low in (("warmup_epochs", warmup_epochs, 0), ("epochs", epochs, 1),
                                 ("batch_size", batch_size, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {describe(value)}")
        if method not in ("reversal", "projection"):
            raise ValueError(f"method: expected 'reversal' or 'projection', got {method!r}")
        self.hidden, self.adversary_hidden = tuple(hidden), tuple(adversary_hidden)
        self.alpha, self.warmup_epochs, self.method = float(alpha), warmup_epochs, method
        self.epochs, self.batch_size, self.lr, self.seed = epochs, batch_size, float(lr), seed
        self.device, self.progress = device, progress

    def alpha_at(self, epoch: int) -> float:
        """The adversary's weight in epoch ``epoch`` (0-based): ``alpha * min(1, epoch / warmup_epochs)``."""
        if self.warmup_epochs == 0:
            return self.alpha
        return self.alpha * min(1.0, epoch / self.warmup_epochs)

    def fit(self, x: Any, y: Any, group: Any) -> AdversarialDebiaser:
        """Train predictor and adversary on features ``x``, labels ``y`` and group codes ``group``."""
        device = torch.device(self.device) if self.device is not None else None
        x = as_tensor(x, "x", dtype=torch.float32, device=device, ndim=2)
        check_finite(x, "x")
        y = _as_labels(y, "y", x.device)
        groups = _as_codes(group, x.device)
        n = check_same_length(x=x, y=y, group=groups.values)
        codes, num_groups = groups.values.long(), groups.count
        if n == 0 or int((torch.bincount(codes) > 0).sum()) < 2:
            raise ValueError("group: expected at least two groups to debias against, got one")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.predictor_ = MLP(x.shape[1], hidden=self.hidden, out_features=1).to(x.device)
            self.adversary_ = MLP(1, hidden=self.adversary_hidden, out_features=num_groups).to(x.device)
        generator = torch.Generator().manual_seed(self.seed)
        opt_pred = torch.optim.Adam(self.predictor_.parameters(), lr=self.lr)
        opt_adv = torch.optim.Adam(self.adversary_.parameters(), lr=self.lr)
        self.history_: list[dict[str, float]] = []
        bar = tqdm(range(self.epochs), desc="epochs", disable=not progress_enabled(self.progress), leave=False)
        for epoch in bar:
            alpha = self.alpha_at(epoch)
            order = torch.randperm(n, generator=generator).to(x.device)
            totals = torch.zeros(2, device=x.device)
            for start in range(0, n, self.batch_size):
                index = order[start:start + self.batch_size]
                losses = self._step(x[index], y[index], codes[index], alpha, opt_pred, opt_adv)
                totals += losses * len(index)
            main, adv = (totals / n).tolist()  # one host sync per epoch
            self.history_.append({"epoch": epoch, "alpha": alpha, "main_loss": main, "adversary_loss": adv})
        self.predictor_.eval()
        self.adversary_.eval()
        return self

    def _step(self, xb: torch.Tensor, yb: torch.Tensor, gb: torch.Tensor, alpha: float,
              opt_pred: torch.optim.Optimizer, opt_adv: torch.optim.Optimizer) -> torch.Tensor:
        logit = self.predictor_(xb)
        main = F.binary_cross_entropy_with_logits(logit.squeeze(1), yb.float())
        opt_pred.zero_grad(set_to_none=True)
        opt_adv.zero_grad(set_to_none=True)
        if self.method == "reversal":
            adv = F.cross_entropy(self.adversary_(_ReverseGradient.apply(logit, alpha)), gb)
            (main + adv).backward()  # predictor: d(main - alpha * adv); adversary: d(adv)
        else:
            adv = F.cross_entropy(self.adversary_(logit), gb)
            params = list(self.predictor_.parameters())
            grads_main = torch.autograd.grad(main, params, retain_graph=True)
            grads_adv = torch.autograd.grad(adv, params, retain_graph=True)
            for param, g_main, g_adv in zip(params, grads_main, grads_adv):
                unit = g_adv / (g_adv.norm() + 1e-12)
                param.grad = g_main - (g_main * unit).sum() * unit - alpha * g_adv
            adv_params = list(self.adversary_.parameters())
            for param, grad in zip(adv_params, torch.autograd.grad(adv, adv_params)):
                param.grad = grad
        opt_pred.step()
        opt_adv.step()
        return torch.stack([main.detach(), adv.detach()])

    @torch.no_grad()
    def predict_proba(self, x: Any) -> torch.Tensor:
        """Probabilities of class 0 and class 1, shape (N, 2)."""
        if not hasattr(self, "predictor_"):
            raise RuntimeError("AdversarialDebiaser: call fit(x, y, group) before predict_proba")
        device = next(self.predictor_.parameters()).device
        x = as_tensor(x, "x", dtype=torch.float32, device=device, ndim=2)
        p = torch.sigmoid(self.predictor_(x).squeeze(1))
        return torch.stack([1 - p, p], dim=1)

    def predict(self, x: Any) -> torch.Tensor:
        """Predicted labels (probability of class 1 at least 0.5)."""
        return (self.predict_proba(x)[:, 1] >= 0.5).long()


# --------------------------------------------------------------------------- post-processing

def group_thresholds(
    scores: Any,
    y_true: Any,
    group: Any,
    *,
    criterion: str = "equal_opportunity",
    target: float | None = None,
    num_groups: int | None = None,
) -> torch.Tensor:
    r"""Per-group score thresholds that equalize the TPR (or the selection rate).

    ``criterion="equal_opportunity"``: group ``g``'s threshold is the largest score
    whose rule ``score >= t`` approves at least ``ceil(target * P_g)`` of the group's
    ``P_g`` positives, so every group reaches the TPR ``target`` (ties at the
    threshold can add a few more). ``"demographic_parity"`` does the same over all
    rows of the group (``y_true`` may be ``None``). ``target`` defaults to the
    overall rate of the single threshold 0.5 (scores are probabilities). Predict with
    ``scores >= thresholds[group]``. Hardt et al. (2016) without randomization; the
    resulting TPRs are checked against fairlearn's ``true_positive_rate``.

    >>> s = torch.tensor([0.9, 0.8, 0.3, 0.6, 0.4, 0.2]); y = torch.tensor([1, 1, 1, 1, 1, 0])
    >>> group_thresholds(s, y, torch.tensor([0, 0, 0, 1, 1, 1]), target=0.5)
    tensor([0.8000, 0.6000])
    """
    scores = as_tensor(scores, "scores", ndim=1)
    if not scores.is_floating_point():
        raise ValueError(f"scores: expected floating scores, got {describe(scores)}")
    check_finite(scores, "scores")
    groups = _as_codes(group, scores.device, num_groups=num_groups)
    codes, size = groups.values, groups.count
    check_same_length(scores=scores, group=codes)
    if criterion == "equal_opportunity":
        if y_true is None:
            raise ValueError("y_true: expected labels for criterion='equal_opportunity', got None")
        labels = _as_labels(y_true, "y_true", scores.device)
        check_same_length(scores=scores, y_true=labels)
        rows = labels == 1
    elif criterion == "demographic_parity":
        rows = torch.ones_like(codes, dtype=torch.bool)
    else:
        raise ValueError(f"criterion: expected 'equal_opportunity' or 'demographic_parity', got {criterion!r}")
    if target is None:
        target = float((scores[rows] >= 0.5).double().mean())
    check_in_range(target, "target", 0.0, 1.0)
    candidates, cand_codes = scores[rows], codes[rows]
    counts = torch.bincount(cand_codes, minlength=size)
    if bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        what = "positives" if criterion == "equal_opportunity" else "rows"
        raise ValueError(f"group: expected {what} in every group, got none in group(s) {missing}")
    by_score = torch.argsort(candidates, descending=True, stable=True)
    by_group = by_score[torch.argsort(cand_codes[by_score], stable=True)]
    ranked = candidates[by_group]  # grouped, each group's scores in descending order
    starts = torch.cumsum(counts, 0) - counts
    needed = torch.ceil(target * counts.double() - 1e-9).long()
    picked = ranked[starts + needed.clamp_min(1) - 1]
    return torch.where(needed > 0, picked, torch.full_like(picked, math.inf))
