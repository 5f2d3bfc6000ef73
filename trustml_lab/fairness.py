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

import math
from collections.abc import Mapping, Sequence
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
    sides = _side_masks(codes, privileged, unprivileged, conf.device)
    pooled = _pool(conf, sides)
    present = _present(conf, codes, weights)
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
