"""Chapter 1, fairness: group metrics, reweighing, and in- and post-processing mitigation.

Conventions follow aif360 so that every number can be checked against it:

* ``group`` holds non-negative integer codes (one per row) or a boolean mask in which
  ``True`` marks the privileged group. ``privileged`` names the privileged code(s);
  ``unprivileged`` the unprivileged one(s), by default every other code. Rows of
  several codes on one side are pooled, as aif360 pools ``[{'g': 0}, {'g': 2}]``.
  Codes can be any non-negative integers (a zip code, an id): they are re-indexed
  internally, so memory grows with the number of distinct groups, not with the
  largest code.
* Differences are unprivileged minus privileged, ratios unprivileged over privileged.
* Labels and predictions are binary, 1 the favorable outcome (credit granted).
* ``sample_weight`` weights every count, like aif360's ``instance_weights``.

Undefined rates follow aif360, and differ from fairlearn's there. A rate over an empty
denominator is unknown, not zero: reporting 0 (fairlearn's convention) invents a gap, or
hides one, for a group that has no positives, and a release gate must fail what it cannot
measure (:meth:`FairnessReport.failures` fails ``nan``). Per metric:

* selection rates (SPD, DI): always defined (both sides have rows); DI is ``inf``
  (``nan`` for 0/0) when the privileged side is never selected, as in aif360;
* TPR (EOD, TPR ratio, AOD): ``nan`` for a side with no positives; fairlearn says 0;
* FPR (AOD, equalized odds): ``nan`` for a side with no negatives; fairlearn says 0;
* equalized odds difference: aif360's Python ``max(|dFPR|, |dTPR|)``, hence ``nan``
  when dFPR is undefined and ``|dFPR|`` when only dTPR is; fairlearn takes the larger
  gap with an undefined rate counted as 0;
* PPV (PPD) and accuracy: 0 for a side with no approvals (no rows), in both libraries.

So where every group has positives and negatives, the per-group rates equal fairlearn's
``MetricFrame``, and for two groups ``|SPD|``, ``|EOD|`` and the equalized odds
difference equal fairlearn's ``demographic_parity_difference``,
``equal_opportunity_difference`` and ``equalized_odds_difference``, ``min(DI, 1/DI)``
its ``demographic_parity_ratio`` and ``min(r, 1/r)`` of the TPR ratio its
``equal_opportunity_ratio`` (with more groups fairlearn compares every pair of groups,
we the pooled sides). Where a group has no positives or no negatives they equal
aif360's. ``tests/test_fairness.py`` tests both sides.

Every count comes from one pass over the data, a (weighted) confusion matrix per group
(:func:`group_confusion`); every metric and the whole :class:`FairnessReport` are
functions of those counts. The metrics are batched and run unchanged on a GPU. Scalars
come back as 0-d float64 tensors on the device of ``y_pred`` (``float(...)`` turns them
into numbers).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from tqdm import tqdm

from ._validation import (
    MAX_ELEMENTS,
    as_tensor,
    check_binary,
    check_in_range,
    check_int,
    check_positive,
    check_same_length,
    describe,
    renamed_arguments,
)
from .models import MLP, progress_enabled

__all__ = [
    "AdversarialDebiaser",
    "COUNT_COLUMNS",
    "ConfusionCounts",
    "FairnessReport",
    "METRICS",
    "audit_parquet",
    "audit_sql",
    "average_odds_difference",
    "demographic_parity_penalty",
    "disparate_impact",
    "equal_opportunity_difference",
    "equal_opportunity_ratio",
    "equalized_odds_difference",
    "fairness_report",
    "fairness_report_from_counts",
    "group_confusion",
    "group_confusion_counts",
    "group_thresholds",
    "parquet_confusion_counts",
    "predictive_parity_difference",
    "reweighing_weights",
    "statistical_parity_difference",
]

Codes = int | Sequence[int] | None

#: Codes below this bound index the count tables directly (one ``bincount``); larger
#: codes are re-indexed with a sort (``torch.unique``), so a code such as 50,000,000
#: costs memory for the groups present, not for every code up to it.
_DIRECT_CODES = 1 << 16


# --------------------------------------------------------------------------- input edge

@dataclass(frozen=True)
class _Codes:
    """Checked group codes, re-indexed: ``index[i]`` is row ``i``'s group in ``0 .. count - 1``.

    ``codes[j]`` is the group code of index ``j``; ``None`` means the identity (small
    codes index the tables directly, and ``count`` is the largest code plus one).
    ``largest`` is the largest code in the data (-1 when empty).
    """

    index: torch.Tensor
    count: int
    codes: torch.Tensor | None
    largest: int
    is_mask: bool

    def code_list(self) -> list[int]:
        """The group code of every index, as Python ints (one host transfer)."""
        return list(range(self.count)) if self.codes is None else self.codes.tolist()


def _value_range(tensor: torch.Tensor) -> tuple[Any, Any]:
    """Minimum and maximum in one pass and one host transfer ((0, -1) when empty)."""
    if len(tensor) == 0:
        return 0, -1
    low, high = torch.aminmax(tensor)
    return tuple(torch.stack([low, high]).tolist())


def _as_codes(group: Any, device: torch.device | None = None) -> _Codes:
    """``group`` as re-indexed non-negative integer codes on ``device`` (a boolean mask gives 0 and 1)."""
    tensor = as_tensor(group, "group", ndim=1, device=device)
    is_mask = tensor.dtype == torch.bool
    if is_mask:
        tensor = tensor.to(torch.uint8)
    elif tensor.is_floating_point():
        if bool((tensor != tensor.round()).any()):
            raise ValueError(f"group: expected integer group codes or a boolean mask, got {describe(tensor)} "
                             "with fractional values")
    elif tensor.is_complex():
        raise TypeError(f"group: expected integer group codes or a boolean mask, got {describe(tensor)}")
    low, high = _value_range(tensor)
    if low < 0:
        raise ValueError(f"group: expected non-negative integer codes, got a minimum of {low}")
    if high >= 2**62:
        raise ValueError(f"group: expected integer codes below 2**62, got a maximum of {high}")
    largest = int(high)
    if tensor.dtype not in (torch.uint8, torch.int64):  # whole floats, narrower ints
        tensor = tensor.long()
    if is_mask or largest < _DIRECT_CODES:
        return _Codes(tensor, max(largest + 1, 2 if is_mask else 1), None, largest, is_mask)
    codes, index = torch.unique(tensor, sorted=True, return_inverse=True)
    return _Codes(index, len(codes), codes, largest, is_mask)


def _check_num_groups(num_groups: Any, codes: _Codes) -> int:
    """``num_groups`` (an int above the largest code) or, for ``None``, the largest code plus one."""
    if num_groups is None:
        return codes.count if codes.codes is None else codes.largest + 1
    number = check_int(num_groups, "num_groups", low=1)
    if codes.largest >= number:
        raise ValueError(f"num_groups: expected more than the largest group code {codes.largest}, got {number}")
    return number


def _as_labels(values: Any, name: str, device: torch.device | None) -> torch.Tensor:
    """Binary labels as an integer tensor on ``device`` (checked with one min/max pass)."""
    if values is None:
        raise TypeError(f"{name}: expected binary labels (an array or tensor), got None")
    tensor = as_tensor(values, name, ndim=1, device=device)
    if tensor.dtype == torch.bool:
        return tensor.to(torch.uint8)
    if not (tensor.is_floating_point() or tensor.is_complex()) and len(tensor):
        low, high = _value_range(tensor)
        if low >= 0 and high <= 1:
            return tensor
    if tensor.is_complex():
        raise TypeError(f"{name}: expected binary labels in {{0, 1}}, got {describe(tensor)}")
    return check_binary(tensor, name)  # converts 0./1. floats, or names what is wrong


def _as_weights(sample_weight: Any, device: torch.device) -> torch.Tensor | None:
    if sample_weight is None:
        return None
    weights = as_tensor(sample_weight, "sample_weight", device=device, ndim=1)
    if weights.dtype == torch.bool or weights.is_complex():
        raise TypeError(f"sample_weight: expected real non-negative weights, got {describe(weights)}")
    weights = weights.to(torch.float64)
    low, _ = _value_range(weights)
    if low < 0:
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
    elif isinstance(value, (list, tuple, set, frozenset, range, np.ndarray, torch.Tensor)):
        values = value.tolist() if isinstance(value, (np.ndarray, torch.Tensor)) else list(value)
        if not isinstance(values, list):  # a 0-d array
            values = [values]
    else:
        raise TypeError(f"{name}: expected a group code or a sequence of codes, got {describe(value)}")
    if not values or not all(isinstance(v, (int, np.integer)) and v >= 0 for v in values):
        raise ValueError(f"{name}: expected a non-negative group code or a non-empty list of them, "
                         f"got {describe(value)}")
    return {int(v) for v in values}


def _side_masks(codes: _Codes, privileged: Codes, unprivileged: Codes, device: torch.device) -> torch.Tensor:
    """A (2, count) boolean matrix over the group indices: row 0 the unprivileged side, row 1 the privileged.

    Codes absent from the data select no rows; an empty side is reported by the
    caller, naming ``group``.
    """
    if privileged is None:
        if not codes.is_mask:
            raise ValueError("privileged: expected the code(s) of the privileged group, got None "
                             "(None is allowed only when group is a boolean privileged mask)")
        privileged = 1
    priv = _code_set(privileged, "privileged")
    unpriv = None if unprivileged is None else _code_set(unprivileged, "unprivileged")
    if unpriv is not None and priv & unpriv:
        raise ValueError(f"unprivileged: expected codes disjoint from privileged {sorted(priv)}, "
                         f"got {sorted(unpriv)}")
    sides = torch.zeros(2, codes.count, dtype=torch.bool, device=device)
    for row, chosen in ((1, priv), (0, unpriv)):
        if chosen is None:
            continue
        present = sorted(c for c in chosen if c <= codes.largest)  # larger codes select no rows
        if codes.codes is None:
            sides[row, present] = True
        elif present:
            sides[row] = torch.isin(codes.codes, torch.tensor(present, device=codes.codes.device))
    if unpriv is None:
        sides[0] = ~sides[1]
    return sides


def _pool(conf: torch.Tensor, sides: torch.Tensor, where: str = "") -> torch.Tensor:
    """The (2, 2, 2) confusion matrices of the unprivileged and privileged sides.

    ``where`` names the data in the message (`` of column 'sex'``).
    """
    pooled = torch.einsum("sg,gij->sij", sides.to(conf.dtype), conf)
    empty = (pooled.sum(dim=(1, 2)) == 0).tolist()
    if any(empty):
        which = "unprivileged" if empty[0] else "privileged"
        raise ValueError(f"group: expected rows (with positive weight) in both the privileged and the "
                         f"unprivileged group{where}, got none in the {which} one")
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
    no loop over groups. ``C[g, 1, 1]`` are the true positives of group code ``g``,
    ``C[g, 0, 1]`` its false positives; a code absent from the data has a zero matrix.
    The table has a row for every code ``0 .. num_groups - 1``; ``num_groups`` defaults
    to the largest code plus one (a boolean mask gives codes 0 and 1), and must be given
    explicitly for codes of 65,536 or more, where the table would be mostly empty rows
    (the metrics and :func:`fairness_report` take such codes as they are). Equals
    aif360's ``ClassificationMetric.binary_confusion_matrix`` for each group, with weights.

    >>> group_confusion([1, 0, 1, 1], [1, 1, 0, 1], [0, 0, 1, 1])
    tensor([[[0., 1.],
             [0., 1.]],
    <BLANKLINE>
            [[0., 0.],
             [1., 1.]]], dtype=torch.float64)
    """
    if y_true is None:
        raise TypeError("y_true: expected binary labels, got None")
    conf, codes, _ = _confusion(y_true, y_pred, group, sample_weight)
    if num_groups is None and codes.codes is not None:
        raise ValueError(f"group: codes up to {codes.largest} for {codes.count} distinct groups; a table indexed "
                         f"by code would have {codes.largest + 1} rows, mostly empty: pass num_groups to ask for "
                         "it, or re-index the codes (torch.unique(group, return_inverse=True))")
    size = _check_num_groups(num_groups, codes)
    if size * 4 > MAX_ELEMENTS:
        raise ValueError(f"num_groups: expected at most {MAX_ELEMENTS // 4} groups (a table of at most "
                         f"{MAX_ELEMENTS} counts), got {size}")
    if codes.codes is None and size == codes.count:
        return conf
    table = torch.zeros(size, 2, 2, dtype=conf.dtype, device=conf.device)
    rows = torch.arange(codes.count, device=conf.device) if codes.codes is None else codes.codes
    return table.index_copy_(0, rows, conf)


def _confusion(y_true: Any, y_pred: Any, group: Any,
               sample_weight: Any) -> tuple[torch.Tensor, _Codes, torch.Tensor | None]:
    """Confusion matrices of every group index (count, 2, 2), the codes, and the weights.

    The kernel behind every metric of the chapter. ``y_true=None`` counts the
    predictions as the labels (only selection rates are then meaningful).
    """
    y_pred = _as_labels(y_pred, "y_pred", None)
    device = y_pred.device
    y_true = y_pred if y_true is None else _as_labels(y_true, "y_true", device)
    codes = _as_codes(group, device)
    weights = _as_weights(sample_weight, device)
    n = check_same_length(y_true=y_true, y_pred=y_pred, group=codes.index, sample_weight=weights)
    if n == 0:
        raise ValueError("y_pred: expected at least one row, got an empty array")
    index, cells = _cell_index(codes.index, (y_true, y_pred), codes.count)
    return _cell_counts(index, cells, weights).reshape(codes.count, 2, 2), codes, weights


def _present(conf: torch.Tensor, codes: _Codes, weights: torch.Tensor | None) -> torch.Tensor:
    """Which group indices occur in the data (rows of zero weight count as occurring)."""
    if codes.codes is not None:  # re-indexed: every index occurs
        return torch.ones(codes.count, dtype=torch.bool, device=conf.device)
    if weights is None:
        return conf.sum(dim=(1, 2)) > 0
    return torch.bincount(codes.index, minlength=codes.count) > 0


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
        "tpr": tp / positives,  # nan without positives, as aif360 (fairlearn: 0)
        "fpr": fp / negatives,  # nan without negatives, as aif360 (fairlearn: 0)
        "ppv": torch.where(selected > 0, tp / selected, zero),  # aif360 and fairlearn: 0 when nothing selected
        "accuracy": torch.where(size > 0, (tp + tn) / size, zero),
    }


def _side_rates(y_true: Any, y_pred: Any, group: Any, privileged: Codes, unprivileged: Codes,
                sample_weight: Any, *, labels_optional: bool = False) -> dict[str, torch.Tensor]:
    """Rates of the unprivileged (index 0) and privileged (index 1) sides.

    With ``labels_optional`` (selection-rate metrics) ``y_true`` may be ``None``.
    """
    if y_true is None and not labels_optional:
        raise TypeError("y_true: expected binary labels, got None (only statistical_parity_difference and "
                        "disparate_impact can be computed from the predictions alone)")
    conf, codes, _ = _confusion(y_true, y_pred, group, sample_weight)
    sides = _side_masks(codes, privileged, unprivileged, conf.device)
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
    rates = _side_rates(y_true, y_pred, group, privileged, unprivileged, sample_weight, labels_optional=True)
    return _difference(rates["selection_rate"])


def disparate_impact(y_true: Any, y_pred: Any, group: Any, *, privileged: Codes = None,
                     unprivileged: Codes = None, sample_weight: Any = None) -> torch.Tensor:
    r"""Selection rate of the unprivileged group over that of the privileged group.

    :math:`DI = P(\hat Y=1 \mid D=u) / P(\hat Y=1 \mid D=p)`. The four-fifths rule
    compares the lower selection rate with the higher one, whichever group has it:
    ``min(DI, 1/DI) >= 0.8`` (:meth:`FairnessReport.failures`). ``inf`` (or ``nan``)
    when the privileged group is never selected. ``y_true`` may be ``None``. Equals
    aif360's ``disparate_impact``; for two groups ``min(DI, 1/DI)`` equals fairlearn's
    ``demographic_parity_ratio``.

    >>> disparate_impact(None, [1, 0, 1, 1], [0, 0, 1, 1], privileged=1)
    tensor(0.5000, dtype=torch.float64)
    """
    rates = _side_rates(y_true, y_pred, group, privileged, unprivileged, sample_weight, labels_optional=True)
    return rates["selection_rate"][0] / rates["selection_rate"][1]


def equal_opportunity_difference(y_true: Any, y_pred: Any, group: Any, *, privileged: Codes = None,
                                 unprivileged: Codes = None, sample_weight: Any = None) -> torch.Tensor:
    r"""True positive rate of the unprivileged group minus that of the privileged group.

    :math:`EOD = TPR_u - TPR_p` with :math:`TPR = P(\hat Y=1 \mid Y=1)`: among people
    who would repay, how much less often the unprivileged are approved. ``nan`` when a
    side has no positives (fairlearn would count its TPR as 0). Equals aif360's
    ``equal_opportunity_difference``; for two groups with positives each, its absolute
    value equals fairlearn's ``equal_opportunity_difference``.

    >>> equal_opportunity_difference([1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 1], privileged=1)
    tensor(-0.5000, dtype=torch.float64)
    """
    rates = _side_rates(y_true, y_pred, group, privileged, unprivileged, sample_weight)
    return _difference(rates["tpr"])


def equal_opportunity_ratio(y_true: Any, y_pred: Any, group: Any, *, privileged: Codes = None,
                            unprivileged: Codes = None, sample_weight: Any = None) -> torch.Tensor:
    r"""True positive rate of the unprivileged group over that of the privileged group.

    :math:`r = TPR_u / TPR_p`, the ratio to which the four-fifths rule is applied for
    equal opportunity, both ways: ``min(r, 1/r) >= 0.8``. ``nan`` when a side has no
    positives. Equals aif360's
    ``ClassificationMetric.ratio(ClassificationMetric.true_positive_rate)``; for two
    groups with positives each, ``min(r, 1/r)`` equals fairlearn's
    ``equal_opportunity_ratio``.

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
    aif360's ``equalized_odds_difference``, including its handling of undefined rates
    (Python's ``max``): ``nan`` when the FPR gap is undefined (a side without
    negatives), the FPR gap when only the TPR gap is (a side without positives). For
    two groups that each have positives and negatives it equals fairlearn's
    ``equalized_odds_difference``; otherwise fairlearn counts the undefined rate as 0
    and the two differ (see the module's table of conventions).

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


def _four_fifths_ratio(ratio: float) -> float:
    """``min(r, 1/r)``: the lower of two rates over the higher, whichever group has it.

    0 for a ratio of 0 or ``inf`` (one group never selected), ``nan`` for ``nan``.
    """
    if math.isnan(ratio):
        return math.nan
    if ratio <= 0 or math.isinf(ratio):
        return 0.0
    return min(ratio, 1.0 / ratio)


@dataclass(frozen=True)
class FairnessReport:
    """Per-group table and every scalar metric of one classifier, for a release gate.

    ``groups`` has one row per group code that occurs in the data (the groups
    fairlearn's ``MetricFrame.by_group`` lists), indexed by the code or its name, with
    ``size`` (the total weight, the row count without weights), ``base_rate``,
    ``selection_rate``, ``tpr``, ``fpr``, ``ppv`` and ``accuracy``; ``privileged`` and
    ``unprivileged`` are the codes of each side found in the data. The scalars compare
    the pooled unprivileged and privileged sides, with aif360's values where a rate is
    undefined (see the module's table of conventions).
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
        """One line per violated threshold (``None`` skips a check); ``nan`` always fails.

        The two ratios follow the four-fifths rule both ways: ``min_di`` bounds
        ``min(DI, 1/DI)`` and ``min_eo_ratio`` bounds ``min(r, 1/r)`` of the TPR ratio
        ``r``, so a group favored by more than 1/0.8 = 1.25 fails as one disfavored
        (DI = 4 fails, DI = 1.25 and DI = 0.8 pass at 0.8). The other bounds are on
        absolute values: ``|SPD| <= max_abs_spd`` and so on. Bounds are finite, the
        ratio bounds in [0, 1].

        >>> report = fairness_report([1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 1, 1], privileged=1)
        >>> report.disparate_impact
        2.0
        >>> report.failures(max_abs_spd=None, max_abs_eod=None)
        ['disparate_impact = 2.0000 violates the four-fifths rule min(DI, 1/DI) >= 0.8 (min(DI, 1/DI) = 0.5000)']
        """
        for name, bound in (("max_abs_spd", max_abs_spd), ("max_abs_eod", max_abs_eod),
                            ("max_abs_aod", max_abs_aod), ("max_eq_odds", max_eq_odds),
                            ("max_abs_ppd", max_abs_ppd)):
            if bound is not None:
                check_positive(bound, name, strict=False)
        for name, bound in (("min_di", min_di), ("min_eo_ratio", min_eo_ratio)):
            if bound is not None:
                check_in_range(bound, name, 0.0, 1.0)
        found = []
        for name, limit, text in (
            ("statistical_parity_difference", max_abs_spd, "|SPD| <= "),
            ("equal_opportunity_difference", max_abs_eod, "|EOD| <= "),
            ("average_odds_difference", max_abs_aod, "|AOD| <= "),
            ("equalized_odds_difference", max_eq_odds, "EqOdds <= "),
            ("predictive_parity_difference", max_abs_ppd, "|PPD| <= "),
        ):
            value = getattr(self, name)
            if limit is not None and not abs(value) <= limit:  # False for nan
                found.append(f"{name} = {value:.4f} violates {text}{limit:g}")
        for name, limit, short in (("disparate_impact", min_di, "DI"),
                                   ("equal_opportunity_ratio", min_eo_ratio, "r")):
            value = getattr(self, name)
            two_sided = _four_fifths_ratio(value)
            if limit is not None and not two_sided >= limit:  # False for nan
                rule = f"min({short}, 1/{short})"
                shown = "" if two_sided == value or math.isnan(value) else f" ({rule} = {two_sided:.4f})"
                found.append(f"{name} = {value:.4f} violates the four-fifths rule {rule} >= {limit:g}{shown}")
        order = list(METRICS)
        return sorted(found, key=lambda line: order.index(line.split(" = ")[0]))

    def passes(self, **thresholds: float | None) -> bool:
        """Whether every threshold holds; defaults ``|SPD| <= 0.1``, ``min(DI, 1/DI) >= 0.8``, ``|EOD| <= 0.1``.

        Keywords as in :meth:`failures` (``max_abs_spd``, ``min_di``, ``max_abs_eod``,
        ``min_eo_ratio``, ``max_abs_aod``, ``max_eq_odds``, ``max_abs_ppd``).
        """
        return not self.failures(**thresholds)


def _group_labels(group_names: Any, codes: list[int], largest: int) -> list[Any]:
    """The names of the group codes ``codes``: a sequence indexed by code or a mapping code -> name."""
    if group_names is None:
        return codes
    if isinstance(group_names, Mapping):
        missing = [c for c in codes if c not in group_names]
        if missing:
            raise ValueError(f"group_names: expected a name for every group code in the data, got none for "
                             f"{missing[:5]}")
        return [group_names[c] for c in codes]
    if isinstance(group_names, (str, bytes)) or not isinstance(group_names, (Sequence, np.ndarray, pd.Index)):
        raise TypeError(f"group_names: expected a sequence of names (one per code) or a mapping code -> name, "
                        f"got {describe(group_names)}")
    names = list(group_names)
    if len(names) <= largest:
        raise ValueError(f"group_names: expected a name for every code 0..{largest} (at least {largest + 1} "
                         f"names), got {len(names)}")
    return [names[c] for c in codes]


def fairness_report(
    y_true: Any,
    y_pred: Any,
    group: Any,
    *,
    privileged: Codes = None,
    unprivileged: Codes = None,
    sample_weight: Any = None,
    group_names: Sequence[Any] | Mapping[int, Any] | None = None,
) -> FairnessReport:
    """All the chapter's metrics at once, from one pass over the data.

    Works with any number of groups, e.g. intersectional codes (sex x age band): the
    table has a row per code that occurs (named by ``group_names``: a sequence with a
    name for every code ``0 .. largest``, such as a pandas ``Categorical``'s
    ``categories``, or a mapping code -> name), the scalars compare the pooled
    privileged codes with the pooled unprivileged ones. Each scalar equals the function
    of the same name (so aif360's), each table row equals aif360's
    ``performance_measures`` of that group, and fairlearn's ``MetricFrame.by_group``
    where the rate is defined (fairlearn reports 0 for a TPR without positives or an
    FPR without negatives, we ``nan``, as aif360).

    >>> report = fairness_report([1, 0, 1, 1], [1, 1, 0, 1], [0, 0, 1, 1], privileged=1)
    >>> round(report.equal_opportunity_difference, 4), report.passes()
    (0.5, False)
    >>> report.groups[["selection_rate", "tpr"]]  # doctest: +NORMALIZE_WHITESPACE
           selection_rate  tpr
    group
    0                 1.0  1.0
    1                 0.5  0.5
    """
    if y_true is None:
        raise TypeError("y_true: expected binary labels, got None (pass the labels as y_true and y_pred to "
                        "measure the data itself)")
    conf, codes, weights = _confusion(y_true, y_pred, group, sample_weight)
    return _report(conf, codes, _present(conf, codes, weights), privileged, unprivileged, group_names)


def _report(conf: torch.Tensor, codes: _Codes, present: torch.Tensor, privileged: Codes, unprivileged: Codes,
            group_names: Any, where: str = "") -> FairnessReport:
    """The report of the confusion matrices ``conf`` of the group indices of ``codes``.

    ``present`` marks the indices that occur in the data (the rows of the table). Shared
    by :func:`fairness_report` and :func:`fairness_report_from_counts`, so the two agree.
    """
    sides = _side_masks(codes, privileged, unprivileged, conf.device)
    pooled = _pool(conf, sides, where)
    rows = torch.nonzero(present).flatten()
    per_group = {k: v.index_select(0, rows).cpu().numpy() for k, v in _rates(conf).items()}
    all_codes = codes.code_list()
    chosen = [all_codes[i] for i in rows.tolist()]
    names = _group_labels(group_names, chosen, codes.largest)
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
    mask = (sides & present).cpu()
    return FairnessReport(
        groups=table,
        privileged=tuple(all_codes[i] for i in torch.nonzero(mask[1]).flatten().tolist()),
        unprivileged=tuple(all_codes[i] for i in torch.nonzero(mask[0]).flatten().tolist()),
        **dict(zip(METRICS, scalars)),
    )


# --------------------------------------------------------------------------- counts: shard, merge, audit at scale

#: The columns of the table :func:`audit_sql`'s query returns, one row per group code:
#: the code, its number of rows and its (weighted) confusion counts.
COUNT_COLUMNS = ("group_code", "n_rows", "tn", "fp", "fn", "tp")
#: The query's validation columns (rows of a group with a label, prediction or weight
#: that is not valid) and the argument each one is about.
_INVALID_COLUMNS = {"invalid_label": "label", "invalid_prediction": "prediction", "invalid_weight": "weight"}
_LARGEST_CODE = 2**62


def _check_counts_tensor(value: Any, name: str, ndim: int, integer: bool, device: Any) -> torch.Tensor:
    tensor = as_tensor(value, name, ndim=ndim, device=device)
    wrong = tensor.dtype == torch.bool or tensor.is_complex() or (integer and tensor.is_floating_point())
    if wrong:
        kind = "integers" if integer else "real numbers"
        raise TypeError(f"{name}: expected {kind}, got {describe(tensor)}")
    return tensor.long() if integer else tensor.to(torch.float64)


@dataclass(frozen=True, eq=False)
class ConfusionCounts:
    """Per-group confusion counts, all that :func:`fairness_report` needs; shards add with ``+``.

    Every metric of the chapter is a function of these counts, so a log too large for
    memory is audited by counting it in pieces (files, days, the partitions of a cluster)
    and adding the pieces. One row per group code that occurs:

    * ``codes``: (G,) int64, the group codes, distinct, in increasing order;
    * ``counts``: (G, 2, 2) float64, ``counts[g, true, pred]``, the (weighted) number of
      rows of group ``codes[g]`` with that label and prediction, as :func:`group_confusion`
      (``counts[g, 1, 1]`` the true positives, ``counts[g, 0, 1]`` the false positives);
    * ``rows``: (G,) int64, each group's number of rows, at least 1 (a row of weight 0
      counts: the group occurs, as in :func:`fairness_report`'s table);
    * ``is_mask``: the codes came from a boolean mask (``True`` marks the privileged
      rows), so that ``privileged=None`` means code 1, as in :func:`fairness_report`.

    ``a + b`` takes the union of the codes and adds the counts and rows of a code present
    in both (``b`` is moved to ``a``'s device); ``0 + a`` is ``a``, so ``sum(shards)``
    works. The sum equals the counts of all the rows at once, exactly for unweighted
    counts (whole numbers below 2**53), up to the rounding of float64 sums with
    weights. :meth:`to_frame` and :meth:`from_frame` convert to and from the table of
    :data:`COUNT_COLUMNS` that :func:`audit_sql`'s query returns. Every listed code has
    at least one row; an empty ``ConfusionCounts`` (G = 0) is the neutral element of ``+``.

    >>> a = group_confusion_counts([1, 0, 1], [1, 1, 0], [0, 0, 1])
    >>> b = group_confusion_counts([1, 1], [1, 1], [1, 2])
    >>> total = a + b
    >>> total.codes, total.rows
    (tensor([0, 1, 2]), tensor([2, 2, 1]))
    >>> total.to_frame()
       group_code  n_rows   tn   fp   fn   tp
    0           0       2  0.0  1.0  0.0  1.0
    1           1       2  0.0  0.0  1.0  1.0
    2           2       1  0.0  0.0  0.0  1.0
    """

    codes: torch.Tensor
    counts: torch.Tensor
    rows: torch.Tensor
    is_mask: bool = False

    def __post_init__(self) -> None:
        codes = _check_counts_tensor(self.codes, "codes", 1, True, None)
        counts = _check_counts_tensor(self.counts, "counts", 3, False, codes.device)
        rows = _check_counts_tensor(self.rows, "rows", 1, True, codes.device)
        if tuple(counts.shape) != (len(codes), 2, 2):
            raise ValueError(f"counts: expected shape ({len(codes)}, 2, 2), a 2 x 2 matrix [true, pred] for each "
                             f"of the {len(codes)} codes, got {describe(counts)}")
        if rows.shape != codes.shape:
            raise ValueError(f"rows: expected one row count for each of the {len(codes)} codes, got {describe(rows)}")
        if not isinstance(self.is_mask, (bool, np.bool_)):
            raise TypeError(f"is_mask: expected True or False, got {describe(self.is_mask)}")
        if len(codes):
            low, high = _value_range(codes)
            if low < 0 or high >= _LARGEST_CODE:
                raise ValueError(f"codes: expected non-negative group codes below 2**62, got values from {low} "
                                 f"to {high}")
            if bool((codes[1:] <= codes[:-1]).any()):
                raise ValueError("codes: expected distinct codes in increasing order (one row per group), got "
                                 f"{codes[:8].tolist()}{' ...' if len(codes) > 8 else ''}")
            if float(counts.min()) < 0:
                raise ValueError(f"counts: expected non-negative counts, got a minimum of {float(counts.min())}")
            if int(rows.min()) < 1:
                raise ValueError(f"rows: expected at least one row for every listed code (a code without rows is "
                                 f"left out), got a minimum of {int(rows.min())}")
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "is_mask", bool(self.is_mask))

    def __add__(self, other: Any) -> ConfusionCounts:
        if isinstance(other, int) and not isinstance(other, bool) and other == 0:
            return self
        if not isinstance(other, ConfusionCounts):
            return NotImplemented
        device = self.counts.device
        codes, index = torch.unique(torch.cat([self.codes, other.codes.to(device)]), sorted=True,
                                    return_inverse=True)
        cells = torch.cat([self.counts, other.counts.to(device)]).reshape(-1, 4)
        counts = torch.zeros(len(codes), 4, dtype=torch.float64, device=device)
        counts.scatter_add_(0, index[:, None].expand(-1, 4), cells)  # deterministic, also on CUDA
        rows = torch.zeros(len(codes), dtype=torch.int64, device=device)
        rows.scatter_add_(0, index, torch.cat([self.rows, other.rows.to(device)]))
        return ConfusionCounts(codes, counts.reshape(-1, 2, 2), rows, self.is_mask and other.is_mask)

    def __radd__(self, other: Any) -> ConfusionCounts:
        return self.__add__(other)

    def to_frame(self) -> pd.DataFrame:
        """The counts as a table of :data:`COUNT_COLUMNS`, the layout of :func:`audit_sql`'s result."""
        cells = self.counts.reshape(-1, 4).cpu().numpy()
        frame = {"group_code": self.codes.cpu().numpy(), "n_rows": self.rows.cpu().numpy()}
        frame.update({name: cells[:, i] for i, name in enumerate(COUNT_COLUMNS[2:])})
        return pd.DataFrame(frame)

    @classmethod
    def from_frame(cls, frame: Any, *, is_mask: bool = False) -> ConfusionCounts:
        """Counts from a table of :data:`COUNT_COLUMNS`: :func:`audit_sql`'s result on any engine.

        ``frame`` is a pandas or polars DataFrame or a pyarrow Table (Spark's
        ``spark.sql(query).toPandas()``, a warehouse client's ``fetch_pandas_all()``). Rows
        of the same code are added, so the union of two results is their merge; column
        names are read in any case (Snowflake returns ``GROUP_CODE``, ``N_ROWS``, ...). The
        query's validation columns (``invalid_label``, ``invalid_prediction``,
        ``invalid_weight``), when present, must be 0: a non-zero one raises
        ``ValueError``, naming it. Inverse of :meth:`to_frame`.

        >>> table = pd.DataFrame({"group_code": [0, 1], "n_rows": [3, 2], "tn": [1.0, 0.0],
        ...                       "fp": [1.0, 0.0], "fn": [0.0, 1.0], "tp": [1.0, 1.0]})
        >>> counts = ConfusionCounts.from_frame(table)
        >>> counts.rows, counts.counts[1]
        (tensor([3, 2]), tensor([[0., 0.],
                [1., 1.]], dtype=torch.float64))
        """
        if not isinstance(is_mask, (bool, np.bool_)):
            raise TypeError(f"is_mask: expected True or False, got {describe(is_mask)}")
        return _counts_from_result(_as_arrow(frame), None, is_mask=bool(is_mask))


def group_confusion_counts(y_true: Any, y_pred: Any, group: Any, *, sample_weight: Any = None) -> ConfusionCounts:
    """The per-group confusion counts of one table (or one shard of it), as :class:`ConfusionCounts`.

    The counts :func:`fairness_report` computes, kept: one pass of
    :func:`group_confusion`'s kernel (a ``bincount`` of ``4 * group + 2 * y_true +
    y_pred``, weighted by ``sample_weight``), restricted to the codes that occur, with
    each code's number of rows. Any non-negative integer codes (or a boolean mask), any
    weights :func:`fairness_report` takes. ``fairness_report_from_counts(counts,
    privileged=...)`` then equals ``fairness_report(y_true, y_pred, group,
    privileged=..., sample_weight=...)``, and the counts of the shards of a table add up
    to the counts of the table (``sum(shards)``).

    >>> counts = group_confusion_counts([1, 0, 1, 1], [1, 1, 0, 1], [0, 0, 7, 7])
    >>> counts.codes, counts.counts[1]
    (tensor([0, 7]), tensor([[0., 0.],
            [1., 1.]], dtype=torch.float64))
    """
    if y_true is None:
        raise TypeError("y_true: expected binary labels, got None")
    conf, codes, weights = _confusion(y_true, y_pred, group, sample_weight)
    if weights is None:
        rows = conf.sum(dim=(1, 2)).long()
    else:
        rows = torch.bincount(codes.index, minlength=codes.count)
    keep = torch.nonzero(rows > 0).flatten()
    values = keep if codes.codes is None else codes.codes.index_select(0, keep)
    return ConfusionCounts(values, conf.index_select(0, keep), rows.index_select(0, keep), codes.is_mask)


def fairness_report_from_counts(
    counts: ConfusionCounts,
    *,
    privileged: Codes = None,
    unprivileged: Codes = None,
    group_names: Sequence[Any] | Mapping[int, Any] | None = None,
) -> FairnessReport:
    """The :class:`FairnessReport` of per-group confusion counts: the same report as :func:`fairness_report`.

    ``counts`` from :func:`group_confusion_counts` (a table in memory, or the sum of the
    counts of its shards), :func:`parquet_confusion_counts` (DuckDB or Polars over
    Parquet files) or :meth:`ConfusionCounts.from_frame` (:func:`audit_sql`'s result on
    any SQL engine). ``privileged``, ``unprivileged`` and ``group_names`` as in
    :func:`fairness_report`, which runs the same code on the counts it computes, so that
    ``fairness_report_from_counts(group_confusion_counts(y, p, g, sample_weight=w),
    privileged=1)`` equals ``fairness_report(y, p, g, privileged=1, sample_weight=w)``
    (to the last bits of float64 sums; ``tests/test_fairness_audit.py`` checks 1e-12).

    >>> shards = [group_confusion_counts([1, 0], [1, 1], [0, 0]),
    ...           group_confusion_counts([1, 1], [0, 1], [1, 1])]
    >>> report = fairness_report_from_counts(sum(shards), privileged=1)
    >>> report.equal_opportunity_difference, report.disparate_impact
    (0.5, 2.0)
    """
    return _report_from_counts(counts, privileged, unprivileged, group_names)


def _report_from_counts(counts: Any, privileged: Codes, unprivileged: Codes, group_names: Any,
                        where: str = "") -> FairnessReport:
    if not isinstance(counts, ConfusionCounts):
        raise TypeError(f"counts: expected ConfusionCounts (from group_confusion_counts, parquet_confusion_counts "
                        f"or ConfusionCounts.from_frame), got {describe(counts)}")
    if len(counts.codes) == 0:
        raise ValueError("counts: expected the counts of at least one row, got empty counts (no groups)")
    codes = _Codes(counts.codes[:0], len(counts.codes), counts.codes, int(counts.codes[-1]), counts.is_mask)
    present = torch.ones(len(counts.codes), dtype=torch.bool, device=counts.counts.device)
    return _report(counts.counts, codes, present, privileged, unprivileged, group_names, where)


# SQL keywords that a bare column name must not be (the common reserved words of
# SQL:2016, DuckDB, Spark SQL and SQLite); such a name is quoted.
_SQL_RESERVED = frozenset("""
    all and any array as asc between both by case cast check collate column constraint create cross current
    default desc distinct else end except exists false fetch for foreign from full grant group having in inner
    intersect interval into is join lateral leading left like limit natural not null offset on only or order
    outer primary references right row rows select some table then to trailing true union unique user using
    values when where window with
""".split())
_BARE_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _sql_identifier(name: str) -> str:
    """``name`` as an SQL identifier: bare when it is a plain name, else double-quoted (standard SQL)."""
    if _BARE_IDENTIFIER.fullmatch(name) and name.lower() not in _SQL_RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def _check_column_name(value: Any, name: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected the name of a column (a string), got {describe(value)}")
    if not value or "\x00" in value:
        raise ValueError(f"{name}: expected the name of a column, got {value!r}")
    return value


def audit_sql(source: str, *, label: str, prediction: str, group: str, weight: str | None = None) -> str:
    """The SQL query behind :func:`audit_parquet`: one ``GROUP BY`` over the table ``source``.

    Plain SQL (``COUNT``, ``SUM(CASE ...)``, ``GROUP BY``), the same on every engine: it
    runs unchanged on DuckDB, SQLite, PostgreSQL, Spark SQL or a warehouse (BigQuery,
    Snowflake), which spread the ``GROUP BY`` over their workers; only ``source``, the
    ``FROM`` clause, is the engine's (a table name, DuckDB's ``read_parquet('logs/*.parquet')``,
    Spark's ``parquet.`logs/```). The result has one row per group code: the columns
    :data:`COUNT_COLUMNS` (the rows, and the weighted counts ``tn``, ``fp``, ``fn``, ``tp``
    of each label x prediction cell), then ``invalid_label``, ``invalid_prediction``
    (and ``invalid_weight`` with ``weight``), the numbers of rows whose label or
    prediction is not 0 or 1 (NULL and NaN included) or whose weight is negative, NaN,
    infinite or NULL (``w - w = 0`` holds for finite weights only; a range test such as
    ``w <= 1.7976931348623157e308`` would miss NaN on DuckDB, whose optimizer decides it
    from the Parquet files' min/max statistics, which leave NaN out). Pass
    it to :meth:`ConfusionCounts.from_frame`, then :func:`fairness_report_from_counts`,
    for the report:

    .. code-block:: python

        query = fair.audit_sql("prod.decisions", label="repaid", prediction="approved", group="sex")
        counts = fair.ConfusionCounts.from_frame(spark.sql(query).toPandas())  # a few rows
        report = fair.fairness_report_from_counts(counts, privileged=1)

    Column names that are plain identifiers stay bare; others (spaces, SQL keywords
    such as ``group``) are double-quoted, standard SQL that DuckDB, SQLite, PostgreSQL
    and Snowflake read (Spark SQL reads backticks, or double quotes with
    ``spark.sql.ansi.doubleQuotedIdentifiers``; BigQuery backticks).

    >>> print(audit_sql("decisions", label="y", prediction="approved", group="sex"))
    SELECT
        sex AS group_code,
        COUNT(*) AS n_rows,
        SUM(CASE WHEN y = 0 AND approved = 0 THEN 1 ELSE 0 END) AS tn,
        SUM(CASE WHEN y = 0 AND approved = 1 THEN 1 ELSE 0 END) AS fp,
        SUM(CASE WHEN y = 1 AND approved = 0 THEN 1 ELSE 0 END) AS fn,
        SUM(CASE WHEN y = 1 AND approved = 1 THEN 1 ELSE 0 END) AS tp,
        SUM(CASE WHEN y IN (0, 1) THEN 0 ELSE 1 END) AS invalid_label,
        SUM(CASE WHEN approved IN (0, 1) THEN 0 ELSE 1 END) AS invalid_prediction
    FROM decisions
    GROUP BY sex
    """
    if not isinstance(source, str):
        raise TypeError(f"source: expected the FROM clause as a string (a table name or a table function), "
                        f"got {describe(source)}")
    if not source.strip():
        raise ValueError("source: expected the FROM clause (a table name or a table function), got an empty string")
    y, p, g = (_sql_identifier(_check_column_name(value, name))
               for name, value in (("label", label), ("prediction", prediction), ("group", group)))
    w = None if weight is None else _sql_identifier(_check_column_name(weight, "weight"))
    amount = "1" if w is None else w
    lines = [f"{g} AS group_code", "COUNT(*) AS n_rows"]
    for alias, (true, pred) in zip(COUNT_COLUMNS[2:], ((0, 0), (0, 1), (1, 0), (1, 1))):
        lines.append(f"SUM(CASE WHEN {y} = {true} AND {p} = {pred} THEN {amount} ELSE 0 END) AS {alias}")
    lines.append(f"SUM(CASE WHEN {y} IN (0, 1) THEN 0 ELSE 1 END) AS invalid_label")
    lines.append(f"SUM(CASE WHEN {p} IN (0, 1) THEN 0 ELSE 1 END) AS invalid_prediction")
    if w is not None:
        # not `w <= 1.79e308`: DuckDB folds range comparisons with Parquet's min/max statistics, which leave NaN out
        lines.append(f"SUM(CASE WHEN {w} >= 0 AND {w} - {w} = 0 THEN 0 ELSE 1 END) AS invalid_weight")
    body = ",\n    ".join(lines)
    return f"SELECT\n    {body}\nFROM {source}\nGROUP BY {g}"


def _as_arrow(frame: Any) -> Any:
    """A pandas or polars DataFrame or a pyarrow Table as a pyarrow Table."""
    import pyarrow as pa

    if isinstance(frame, pa.Table):
        return frame
    if isinstance(frame, pd.DataFrame):
        return pa.Table.from_pandas(frame, preserve_index=False)
    if type(frame).__module__.startswith("polars") and hasattr(frame, "to_arrow"):
        return frame.to_arrow()
    raise TypeError(f"frame: expected a pandas or polars DataFrame or a pyarrow Table, got {describe(frame)}")


def _whole_code(value: Any, say: Callable[[str], str]) -> int:
    """A group code of a query's result as an int (booleans 0 and 1; floats and decimals must be whole)."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        code = int(value)
    else:
        try:
            number = float(value)
        except (TypeError, ValueError) as err:
            raise TypeError(say(f"expected integer group codes or booleans, got {describe(value)}")) from err
        if not math.isfinite(number) or number != int(number):
            raise ValueError(say(f"expected integer group codes or booleans, got {value!r}"))
        code = int(value)
    if not 0 <= code < _LARGEST_CODE:
        raise ValueError(say(f"expected non-negative integer group codes below 2**62, got {code}"))
    return code


def _rows(number: int) -> str:
    return f"{number:,} row" + ("" if number == 1 else "s")


def _counts_from_result(table: Any, columns: Mapping[str, str] | None, *, is_mask: bool,
                        source: str = "") -> ConfusionCounts:
    """:class:`ConfusionCounts` from the result of :func:`audit_sql`'s query (a pyarrow Table).

    ``columns`` maps ``label``, ``prediction``, ``group`` (and ``weight``) to the data's
    column names, for messages that name them; ``None``: the result came as ``frame``.
    """
    known = {*COUNT_COLUMNS, *_INVALID_COLUMNS}  # warehouses that upper-case aliases (Snowflake): GROUP_CODE, ...
    table = table.rename_columns([c.lower() if c.lower() in known else c for c in table.column_names])
    missing = [c for c in COUNT_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"frame: expected the columns {list(COUNT_COLUMNS)} of audit_sql's query, missing {missing}")

    def say(arg: str, result_column: str, text: str) -> str:
        if columns is None:
            return f"frame: column {result_column!r}: {text}"
        return f"{arg}: {text} in column {columns[arg]!r}" + (f" of {source}" if source else "")

    data = {c: table.column(c).to_pylist() for c in table.column_names if c in COUNT_COLUMNS or c in _INVALID_COLUMNS}
    for result_column, arg in _INVALID_COLUMNS.items():
        bad = sum(int(v) for v in data.get(result_column, []) if v is not None)
        if bad:
            expected = ("finite non-negative weights" if arg == "weight" else "0 or 1 (the favorable outcome 1)")
            raise ValueError(say(arg, result_column, f"expected {expected}, got {_rows(bad)} with another value "
                                                     "(or NULL)"))
    n_rows = [int(v or 0) for v in data["n_rows"]]
    nulls = sum(n for code, n in zip(data["group_code"], n_rows) if code is None)
    if nulls:
        raise ValueError(say("group", "group_code", f"expected a group code in every row, got {_rows(nulls)} "
                                                    "with NULL"))
    if not n_rows:
        if columns is None:
            raise ValueError("frame: expected at least one group (the result of audit_sql's query on a table with "
                             "rows), got an empty table")
        raise ValueError(f"path_or_glob: expected at least one row, got none in {source} (columns "
                         f"{', '.join(repr(columns[a]) for a in ('label', 'prediction', 'group'))})")
    codes = np.array([_whole_code(v, lambda text: say("group", "group_code", text)) for v in data["group_code"]],
                     dtype=np.int64)
    cells = np.array([[0.0 if v is None else float(v) for v in data[c]] for c in COUNT_COLUMNS[2:]],
                     dtype=np.float64).T
    if not np.isfinite(cells).all() or (cells < 0).any():
        raise ValueError(say("weight", "tn", "expected finite non-negative counts, got "
                                             f"{cells[~np.isfinite(cells) | (cells < 0)][:3].tolist()}"))
    unique, index = np.unique(codes, return_inverse=True)  # rows of the same code add up
    summed = np.zeros((len(unique), 4))
    np.add.at(summed, index, cells)
    rows = np.zeros(len(unique), dtype=np.int64)
    np.add.at(rows, index, np.asarray(n_rows, dtype=np.int64))
    if (rows < 1).any():
        raise ValueError(say("group", "n_rows", f"expected at least one row per group, got {rows.min()}"))
    return ConfusionCounts(torch.from_numpy(unique), torch.from_numpy(summed.reshape(-1, 2, 2)),
                           torch.from_numpy(rows), is_mask)


_ENGINES = ("duckdb", "polars")


def _parquet_paths(path_or_glob: Any) -> list[str]:
    """One path or glob, or a non-empty sequence of them, as strings."""
    if isinstance(path_or_glob, (str, os.PathLike)):
        paths = [path_or_glob]
    elif isinstance(path_or_glob, (list, tuple)):
        paths = list(path_or_glob)
        if not paths:
            raise ValueError("path_or_glob: expected a Parquet file, a glob or a list of them, got an empty list")
    else:
        raise TypeError(f"path_or_glob: expected a path, a glob such as 'logs/*.parquet' or a list of them, "
                        f"got {describe(path_or_glob)}")
    if not all(isinstance(p, (str, os.PathLike)) for p in paths):
        raise TypeError(f"path_or_glob: expected paths (str or os.PathLike), got {describe(path_or_glob)}")
    found = [os.fspath(p) for p in paths]
    if not all(isinstance(p, str) and p for p in found):
        raise ValueError(f"path_or_glob: expected non-empty paths, got {describe(path_or_glob)}")
    return found


def _check_schema(kinds: Mapping[str, tuple[str, str]], columns: Mapping[str, str], source: str) -> None:
    """Every column exists; labels, predictions and groups are numbers or booleans, weights numbers.

    ``kinds`` maps each column of the data to (kind, type name): kind ``"bool"``,
    ``"number"`` or ``"other"``.
    """
    for arg, column in columns.items():
        if column not in kinds:
            shown = ", ".join(repr(c) for c in list(kinds)[:12]) + (" ..." if len(kinds) > 12 else "")
            raise ValueError(f"{arg}: expected a column of {source}, got {column!r}, which is not one; the "
                             f"columns are {shown}")
        kind, type_name = kinds[column]
        allowed = ("number",) if arg == "weight" else ("number", "bool")
        if kind not in allowed:
            what = "numbers" if arg == "weight" else "numbers or booleans"
            hint = (" (encode them as integer codes: CASE WHEN sex = 'Male' THEN 1 ELSE 0 END)"
                    if arg == "group" else "")
            raise TypeError(f"{arg}: expected a column of {what}, got column {column!r} of type {type_name}{hint}")


def _duckdb_kind(type_name: str) -> str:
    name = type_name.upper()
    if name == "BOOLEAN":
        return "bool"
    numbers = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
               "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "REAL")
    return "number" if name in numbers or name.startswith("DECIMAL") else "other"


def _duckdb_result(paths: list[str], columns: Mapping[str, str], connection: Any) -> tuple[Any, str]:
    import duckdb

    if connection is not None and not isinstance(connection, duckdb.DuckDBPyConnection):
        raise TypeError(f"connection: expected a duckdb connection (duckdb.connect(...)) or None, "
                        f"got {describe(connection)}")
    # a connection of ours prints no progress bar (DuckDB's default prints one to stdout after 2 s)
    con = duckdb.connect() if connection is None else connection
    if connection is None:
        with contextlib.suppress(duckdb.Error):  # in Jupyter without ipywidgets DuckDB refuses it (and shows none)
            con.execute("SET enable_progress_bar = false")
    quoted = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    source = f"read_parquet({quoted})" if len(paths) == 1 else f"read_parquet([{quoted}])"
    try:
        try:
            described = con.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()
        except duckdb.Error as err:
            raise ValueError(f"path_or_glob: DuckDB cannot read {paths if len(paths) > 1 else paths[0]!r} as "
                             f"Parquet: {err}") from err
        _check_schema({row[0]: (_duckdb_kind(row[1]), row[1]) for row in described}, columns, source)
        query = audit_sql(source, **columns)
        try:
            return con.sql(query).to_arrow_table(), source
        except duckdb.Error as err:
            raise ValueError(f"path_or_glob: DuckDB failed on {source}: {err}") from err
    finally:
        if connection is None:
            con.close()


def _polars_result(paths: list[str], columns: Mapping[str, str]) -> tuple[Any, str]:
    """The query of :func:`audit_sql`, as a Polars lazy query (streaming) over the files."""
    import polars as pl

    source = f"pl.scan_parquet({paths[0]!r})" if len(paths) == 1 else f"pl.scan_parquet({paths!r})"
    try:
        frame = pl.scan_parquet(paths[0] if len(paths) == 1 else paths)
        schema = frame.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as err:
        raise ValueError(f"path_or_glob: Polars cannot read {paths if len(paths) > 1 else paths[0]!r} as "
                         f"Parquet: {err}") from err
    kinds = {name: ("bool" if dtype == pl.Boolean else "number" if dtype.is_numeric() else "other", str(dtype))
             for name, dtype in schema.items()}
    _check_schema(kinds, columns, source)
    y = pl.col(columns["label"]).cast(pl.Float64)
    p = pl.col(columns["prediction"]).cast(pl.Float64)
    weight = columns.get("weight")
    w = None if weight is None else pl.col(weight).cast(pl.Float64)

    def rows_where(condition: Any) -> Any:
        return condition.fill_null(False).cast(pl.Int64).sum()

    aggregates = [pl.len().cast(pl.Int64).alias("n_rows")]
    for alias, (true, pred) in zip(COUNT_COLUMNS[2:], ((0, 0), (0, 1), (1, 0), (1, 1))):
        cell = (y == true) & (p == pred)
        aggregates.append((rows_where(cell) if w is None else pl.when(cell).then(w).otherwise(0.0).sum()).alias(alias))
    aggregates.append(rows_where(~y.is_in([0.0, 1.0]).fill_null(False)).alias("invalid_label"))
    aggregates.append(rows_where(~p.is_in([0.0, 1.0]).fill_null(False)).alias("invalid_prediction"))
    if w is not None:
        aggregates.append(rows_where(~((w >= 0) & w.is_finite()).fill_null(False)).alias("invalid_weight"))
    query = frame.group_by(pl.col(columns["group"]).alias("group_code")).agg(aggregates)
    try:
        return query.collect(engine="streaming").to_arrow(), source
    except (pl.exceptions.PolarsError, OSError) as err:
        raise ValueError(f"path_or_glob: Polars failed on {source}: {err}") from err


def parquet_confusion_counts(
    path_or_glob: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    label: str,
    prediction: str,
    group: str,
    weight: str | None = None,
    engine: str = "duckdb",
    connection: Any = None,
) -> ConfusionCounts:
    """The per-group confusion counts of Parquet files, counted out of core by DuckDB or Polars.

    ``path_or_glob``: a file, a glob (``"logs/*.parquet"``, ``"logs/**/*.parquet"``) or a
    list of them, all with the same columns; ``label``, ``prediction``, ``group`` and
    ``weight`` name its columns (the data's ``y_true``, ``y_pred``, ``group`` and
    ``sample_weight``): 0/1 or boolean labels and predictions, non-negative integer (or
    boolean) group codes, finite non-negative weights. ``engine="duckdb"`` (embedded, in
    this process) runs :func:`audit_sql`'s query, one ``GROUP BY``, over
    ``read_parquet(...)``; it streams the files, so memory stays bounded however many
    rows there are (``connection``: a ``duckdb.connect(config={"memory_limit": "1GB",
    "threads": 2})`` of yours, to bound it further; default a fresh in-memory one,
    without DuckDB's progress bar).
    ``engine="polars"`` runs the same aggregation as a Polars lazy query on its
    streaming engine. Both return the counts :func:`group_confusion_counts` gives for
    the same rows in memory (to the rounding of float64 sums).

    Bad data raises ``ValueError`` naming the argument and the column: a missing column,
    a label or prediction other than 0 or 1 (NULL, NaN), a NULL, negative or fractional
    group code, a negative, NaN, infinite or NULL weight, no rows at all; a column of
    strings is a ``TypeError``.

    >>> import tempfile, pyarrow as pa, pyarrow.parquet as pq
    >>> folder = tempfile.mkdtemp()
    >>> pq.write_table(pa.table({"y": [1, 0, 1], "p": [1, 1, 0], "g": [0, 0, 1]}), f"{folder}/a.parquet")
    >>> pq.write_table(pa.table({"y": [1, 1], "p": [1, 1], "g": [1, 2]}), f"{folder}/b.parquet")
    >>> parquet_confusion_counts(f"{folder}/*.parquet", label="y", prediction="p", group="g").rows
    tensor([2, 2, 1])
    """
    paths = _parquet_paths(path_or_glob)
    columns = {name: _check_column_name(value, name)
               for name, value in (("label", label), ("prediction", prediction), ("group", group))}
    if weight is not None:
        columns["weight"] = _check_column_name(weight, "weight")
    if not isinstance(engine, str) or engine not in _ENGINES:
        raise ValueError(f"engine: expected one of {list(_ENGINES)}, got {describe(engine)}")
    if engine == "polars":
        if connection is not None:
            raise ValueError(f"connection: a DuckDB connection is for engine='duckdb', got one with engine='polars' "
                             f"({describe(connection)})")
        result, source = _polars_result(paths, columns)
    else:
        result, source = _duckdb_result(paths, columns, connection)
    is_mask = str(result.schema.field("group_code").type) == "bool"  # a column of booleans, as a mask in memory
    return _counts_from_result(result, columns, is_mask=is_mask, source=source)


def audit_parquet(
    path_or_glob: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    label: str,
    prediction: str,
    group: str,
    privileged: Codes,
    unprivileged: Codes = None,
    weight: str | None = None,
    group_names: Sequence[Any] | Mapping[int, Any] | None = None,
    engine: str = "duckdb",
    connection: Any = None,
) -> FairnessReport:
    """The :class:`FairnessReport` of a classifier's decisions stored as Parquet files, out of core.

    :func:`parquet_confusion_counts` (one ``GROUP BY`` in DuckDB, or a Polars lazy
    query), then :func:`fairness_report_from_counts`: the same report as
    :func:`fairness_report` on the same rows in memory, for tables that do not fit
    there. Arguments as in those two functions; ``privileged`` is required (a column of
    booleans still names its privileged value, ``privileged=1`` for ``True``). The
    query is :func:`audit_sql`'s, which runs unchanged on Spark SQL or a warehouse
    when the data live there.

    >>> import tempfile, pyarrow as pa, pyarrow.parquet as pq
    >>> path = f"{tempfile.mkdtemp()}/decisions.parquet"
    >>> pq.write_table(pa.table({"repaid": [1, 0, 1, 1], "approved": [1, 1, 0, 1], "sex": [0, 0, 1, 1]}), path)
    >>> report = audit_parquet(path, label="repaid", prediction="approved", group="sex", privileged=1)
    >>> report.equal_opportunity_difference
    0.5
    """
    counts = parquet_confusion_counts(path_or_glob, label=label, prediction=prediction, group=group,
                                      weight=weight, engine=engine, connection=connection)
    return _report_from_counts(counts, privileged, unprivileged, group_names, where=f" of column {group!r}")


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
    n = check_same_length(y=labels, group=codes.index, sample_weight=weights)
    if n == 0:
        raise ValueError("y: expected at least one row, got an empty array")
    values, count = codes.index, codes.count
    if privileged is not None:  # 1 for the privileged codes, 0 for every other code
        sides = _side_masks(codes, privileged, None, device)
        if not (codes.codes is None and sides[1].tolist() == [False, True]):  # else the codes are that already
            values = sides[1].to(torch.uint8).index_select(0, values.int() if values.dtype == torch.uint8
                                                           else values)
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

    For two groups :math:`|\bar s_0 - \bar s_1|`, the ``fairness_loss`` of a common
    recipe; for more, max minus min of the group means. Groups absent from ``scores``
    (a small batch) are skipped; with fewer than two present the penalty is 0.
    ``num_groups``, when given, checks that every code is below it. Add
    ``lam * penalty`` to a training loss. Equals fairlearn's
    ``MetricFrame(metrics=mean_prediction, ...).difference()`` on the scores.

    >>> scores = torch.tensor([0.9, 0.7, 0.2, 0.4], requires_grad=True)
    >>> penalty = demographic_parity_penalty(scores, torch.tensor([1, 1, 0, 0]))
    >>> penalty
    tensor(0.5000, grad_fn=<WhereBackward0>)
    >>> penalty.backward(); scores.grad
    tensor([ 0.5000,  0.5000, -0.5000, -0.5000])
    """
    scores = as_tensor(scores, "scores", ndim=1)
    if not scores.is_floating_point():
        raise TypeError(f"scores: expected a 1-d floating tensor, got {describe(scores)}")
    if len(scores) == 0:
        raise ValueError("scores: expected at least one score, got an empty tensor")
    groups = _as_codes(group, scores.device)
    if num_groups is not None:
        _check_num_groups(num_groups, groups)
    check_same_length(scores=scores, group=groups.index)
    codes, size = groups.index.long(), groups.count
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


def _check_sizes(value: Any, name: str) -> tuple[int, ...]:
    """Hidden layer sizes: a sequence of positive ints (NumPy ints accepted)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{name}: expected a sequence of layer sizes such as (32,), got {describe(value)}")
    return tuple(check_int(size, f"{name}[{i}]", low=1) for i, size in enumerate(value))


class AdversarialDebiaser:
    """In-processing debiasing: a predictor trained against an adversary (Zhang et al., 2018).

    The predictor (an :class:`~trustml_lab.models.MLP` with one logit) learns the label;
    the adversary (a small MLP) reads the predictor's logit and tries to predict the
    protected group. The predictor minimizes ``main_loss - alpha * adversary_loss``:

    * ``method="reversal"``: a gradient reversal layer between the two (the auxiliary
      head of a PaddlePaddle fairness tutorial, with its ``main - alpha * adv``, done so
      the adversary still learns);
    * ``method="projection"``: Zhang et al.'s update, as aif360's ``AdversarialDebiasing``
      does it: per parameter, the main gradient minus its projection on the adversary's
      gradient, minus ``alpha`` times the adversary's gradient.

    ``alpha`` warms up linearly from 0 over ``warmup_epochs`` (:meth:`alpha_at`), so the
    predictor first learns the task. Seeded by ``seed`` (weights and batch order),
    without touching torch's global generator. sklearn-like: ``fit`` returns ``self``;
    ``history_`` holds per-epoch ``alpha``, ``main_loss`` and ``adversary_loss``,
    ``n_features_in_`` the number of features. Group codes may be any non-negative
    integers: the adversary has one output per distinct group.

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
        self.hidden, self.adversary_hidden = _check_sizes(hidden, "hidden"), _check_sizes(adversary_hidden,
                                                                                        "adversary_hidden")
        self.alpha = check_positive(alpha, "alpha", strict=False)
        self.lr = check_positive(lr, "lr")
        self.warmup_epochs = check_int(warmup_epochs, "warmup_epochs", low=0)
        self.epochs = check_int(epochs, "epochs", low=1)
        self.batch_size = check_int(batch_size, "batch_size", low=1)
        self.seed = check_int(seed, "seed", low=0)
        if method not in ("reversal", "projection"):
            raise ValueError(f"method: expected 'reversal' or 'projection', got {describe(method)}")
        if device is not None:
            try:
                torch.device(device)
            except (RuntimeError, TypeError) as err:
                raise ValueError(f"device: expected a torch.device, a device name such as 'cpu', or None, "
                                 f"got {describe(device)}") from err
        if not isinstance(progress, (bool, np.bool_)):
            raise TypeError(f"progress: expected True or False, got {describe(progress)}")
        self.method, self.device, self.progress = method, device, bool(progress)

    def alpha_at(self, epoch: int) -> float:
        """The adversary's weight in epoch ``epoch`` (0-based): ``alpha * min(1, epoch / warmup_epochs)``."""
        epoch = check_int(epoch, "epoch", low=0)
        if self.warmup_epochs == 0:
            return self.alpha
        return self.alpha * min(1.0, epoch / self.warmup_epochs)

    @staticmethod
    def _features(x: Any, device: torch.device | None) -> torch.Tensor:
        """Features as a non-empty float32 matrix on ``device``."""
        x = as_tensor(x, "x", ndim=2)
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"x: expected real-valued features, got {describe(x)}")
        if len(x) == 0 or x.shape[1] == 0:
            raise ValueError(f"x: expected at least one row and one feature, got {describe(x)}")
        return x.to(dtype=torch.float32, device=device if device is not None else x.device)

    def fit(self, x: Any, y: Any, group: Any) -> AdversarialDebiaser:
        """Train predictor and adversary on features ``x``, labels ``y`` and group codes ``group``."""
        x = self._features(x, torch.device(self.device) if self.device is not None else None)
        y = _as_labels(y, "y", x.device)
        groups = _as_codes(group, x.device)
        n = check_same_length(x=x, y=y, group=groups.index)
        codes, num_groups = groups.index.long(), groups.count
        if int((torch.bincount(codes, minlength=num_groups) > 0).sum()) < 2:
            raise ValueError("group: expected at least two groups to debias against, got one")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.predictor_ = MLP(x.shape[1], hidden=self.hidden, out_features=1).to(x.device)
            self.adversary_ = MLP(1, hidden=self.adversary_hidden, out_features=num_groups).to(x.device)
        self.n_features_in_ = x.shape[1]
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
        x = self._features(x, next(self.predictor_.parameters()).device)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"x: expected {self.n_features_in_} features (as in fit), got {x.shape[1]}")
        p = torch.sigmoid(self.predictor_(x).squeeze(1))
        return torch.stack([1 - p, p], dim=1)

    def predict(self, x: Any) -> torch.Tensor:
        """Predicted labels (probability of class 1 at least 0.5)."""
        return (self.predict_proba(x)[:, 1] >= 0.5).long()


# --------------------------------------------------------------------------- post-processing

def _missing_codes(have: torch.Tensor, size: int, limit: int = 5) -> list[int]:
    """The first ``limit`` codes of ``0 .. size - 1`` not in the sorted codes ``have`` (O(len(have)))."""
    candidates = torch.arange(min(size, len(have) + limit), device=have.device)
    return candidates[~torch.isin(candidates, have)][:limit].tolist()


@renamed_arguments(target="target_rate")
def group_thresholds(
    scores: Any,
    y_true: Any,
    group: Any,
    *,
    criterion: str = "equal_opportunity",
    target_rate: float | None = None,
    num_groups: int | None = None,
) -> torch.Tensor:
    r"""Per-group score thresholds that equalize the TPR (or the selection rate).

    ``criterion="equal_opportunity"``: group ``g``'s threshold is the largest score
    whose rule ``score >= t`` approves at least ``ceil(target_rate * P_g)`` of the
    group's ``P_g`` positives, so every group reaches the TPR ``target_rate`` (ties at
    the threshold can add a few more). ``"demographic_parity"`` does the same over all
    rows of the group (``y_true`` may be ``None``). ``target_rate`` defaults to the
    overall rate of the single threshold 0.5 (scores are probabilities); it was called
    ``target``, which still works (a ``FutureWarning``) but names a class elsewhere in
    the package. Returns one
    threshold per code ``0 .. num_groups - 1`` (default: the largest code plus one;
    every code needs positives, or rows); predict with ``scores >= thresholds[group]``.

    Hardt et al. (2016) without randomization. fairlearn's ``ThresholdOptimizer``
    (``constraints="true_positive_rate_parity"``) differs in two ways: it picks the
    common TPR that maximizes accuracy on the data it is fitted on, where this
    function takes ``target_rate`` as given, and it randomizes between two thresholds per
    group, so that every group's TPR equals the target exactly in expectation (and its
    FPR is the lowest any mix of thresholds reaches there); a deterministic threshold
    reaches a TPR between the target and the target plus ``1 / P_g``.
    ``tests/test_fairness.py`` compares the two on the same data.

    >>> s = torch.tensor([0.9, 0.8, 0.3, 0.6, 0.4, 0.2]); y = torch.tensor([1, 1, 1, 1, 1, 0])
    >>> group_thresholds(s, y, torch.tensor([0, 0, 0, 1, 1, 1]), target_rate=0.5)
    tensor([0.8000, 0.6000])
    """
    scores = as_tensor(scores, "scores", ndim=1)
    if not scores.is_floating_point():
        raise TypeError(f"scores: expected floating scores, got {describe(scores)}")
    if len(scores) == 0:
        raise ValueError("scores: expected at least one score, got an empty array")
    groups = _as_codes(group, scores.device)
    size = _check_num_groups(num_groups, groups)
    check_same_length(scores=scores, group=groups.index)
    if criterion == "equal_opportunity":
        if y_true is None:
            raise TypeError("y_true: expected labels for criterion='equal_opportunity', got None")
        labels = _as_labels(y_true, "y_true", scores.device)
        check_same_length(scores=scores, y_true=labels)
        rows = labels == 1
    elif criterion == "demographic_parity":
        rows = torch.ones(len(scores), dtype=torch.bool, device=scores.device)
    else:
        raise ValueError(f"criterion: expected 'equal_opportunity' or 'demographic_parity', got {describe(criterion)}")
    if target_rate is not None:
        check_in_range(target_rate, "target_rate", 0.0, 1.0)
    index = groups.index[rows].long()
    counts = torch.bincount(index, minlength=groups.count)
    all_codes = torch.arange(groups.count, device=scores.device) if groups.codes is None else groups.codes
    have = all_codes[counts > 0]
    if len(have) < size:
        what = "positives" if criterion == "equal_opportunity" else "rows"
        missing = _missing_codes(have, size)
        more = f" and {size - len(have) - len(missing)} more" if size - len(have) > len(missing) else ""
        raise ValueError(f"group: expected {what} in every group 0..{size - 1}, got none in group(s) "
                         f"{missing}{more}")
    counts = counts[:size]  # every code 0..size-1 occurs, so index j is code j
    target = float((scores[rows] >= 0.5).double().mean()) if target_rate is None else float(target_rate)
    candidates = scores[rows]
    by_score = torch.argsort(candidates, descending=True, stable=True)
    by_group = by_score[torch.argsort(index[by_score], stable=True)]
    ranked = candidates[by_group]  # grouped, each group's scores in descending order
    starts = torch.cumsum(counts, 0) - counts
    needed = torch.ceil(target * counts.double() - 1e-9).long()
    picked = ranked[starts + needed.clamp_min(1) - 1]
    return torch.where(needed > 0, picked, torch.full_like(picked, math.inf))
