"""Fairness chapter: our one-pass report and reweighing against aif360 and fairlearn.

Synthetic credit decisions with a biased base rate (30% vs 50% approvals) and an 80%
accurate classifier. aif360 is timed as its users run it: build the
``BinaryLabelDataset`` pair from a DataFrame, then ask the ``ClassificationMetric`` for
the same seven metrics. fairlearn is timed as a ``MetricFrame`` of the same per-group
rates. Reweighing is timed without dataset construction on aif360's side (its
``fit_transform`` on a ready dataset), the comparison least favourable to us.

At 10M rows aif360 still copes (about 30 s and 3 GB per report), so it stays the
reference there, without a target; fairlearn's ``MetricFrame`` is timed at 1M rows
only (about 40 s there, so several minutes per call at 10M). The last case uses the
group codes 0 and 50,000,000: our kernels re-index such codes with a sort instead of
counting by code (no target; it shows what the re-indexing costs).

``cases(smoke=True)`` gives the same cases at 2,000 and 5,000 rows, for the test suite.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from trustml_lab import fairness as fair

from ._harness import Case

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from aif360.algorithms.preprocessing import Reweighing
    from aif360.datasets import BinaryLabelDataset
    from aif360.metrics import ClassificationMetric

from fairlearn.metrics import (
    MetricFrame,
    count,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)

PRIVILEGED, UNPRIVILEGED = [{"g": 1}], [{"g": 0}]
SPARSE_CODE = 50_000_000  # a group code far above the number of groups
RATES = ("selection_rate", "tpr", "fpr")


def _table(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, n, dtype=np.int64)
    y_true = (rng.random(n) < 0.3 + 0.2 * group).astype(np.int64)
    y_pred = np.where(rng.random(n) < 0.8, y_true, 1 - y_true)
    return {"y_true": y_true, "y_pred": y_pred, "group": group}


def _ours_report(t: dict[str, torch.Tensor]) -> fair.FairnessReport:
    return fair.fairness_report(t["y_true"], t["y_pred"], t["group"], privileged=1)


def _aif_dataset(a: dict[str, np.ndarray]) -> BinaryLabelDataset:
    frame = pd.DataFrame({"g": a["group"].astype(np.float64), "y": a["y_true"].astype(np.float64)})
    return BinaryLabelDataset(df=frame, label_names=["y"], protected_attribute_names=["g"],
                              favorable_label=1, unfavorable_label=0)


def _aif_report(a: dict[str, np.ndarray], privileged: int = 1) -> dict[str, float]:
    truth = _aif_dataset(a)
    predicted = truth.copy(deepcopy=True)
    predicted.labels = a["y_pred"].astype(np.float64).reshape(-1, 1)
    m = ClassificationMetric(truth, predicted, unprivileged_groups=UNPRIVILEGED,
                             privileged_groups=[{"g": privileged}])
    return {
        "statistical_parity_difference": m.statistical_parity_difference(),
        "disparate_impact": m.disparate_impact(),
        "equal_opportunity_difference": m.equal_opportunity_difference(),
        "equal_opportunity_ratio": m.ratio(m.true_positive_rate),
        "average_odds_difference": m.average_odds_difference(),
        "equalized_odds_difference": m.equalized_odds_difference(),
        "predictive_parity_difference": m.difference(m.positive_predictive_value),
    }


def _fairlearn_frame(a: dict[str, np.ndarray]) -> pd.DataFrame:
    frame = MetricFrame(
        metrics={"size": count, "selection_rate": selection_rate, "tpr": true_positive_rate,
                 "fpr": false_positive_rate},
        y_true=a["y_true"], y_pred=a["y_pred"], sensitive_features=a["group"],
    )
    return frame.by_group


def _check_scalars(ours: fair.FairnessReport, reference: dict[str, float]) -> None:
    for name, value in reference.items():
        np.testing.assert_allclose(getattr(ours, name), value, rtol=1e-9, err_msg=name)


def _check_table(ours: fair.FairnessReport, reference: pd.DataFrame) -> None:
    for column in ("size", *RATES):
        np.testing.assert_allclose(ours.groups[column].to_numpy(), reference[column].to_numpy(dtype=np.float64),
                                   rtol=1e-9, err_msg=column)


def _check_weights(ours: torch.Tensor, reference: BinaryLabelDataset) -> None:
    np.testing.assert_allclose(ours.cpu().numpy(), reference.instance_weights, rtol=1e-9)


def _reweighing_case(size: str, a: dict[str, np.ndarray], t: dict[str, torch.Tensor]) -> Case:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = _aif_dataset(a)
    reweighing = Reweighing(unprivileged_groups=UNPRIVILEGED, privileged_groups=PRIVILEGED)
    return Case(
        f"reweighing_weights, {size} rows", reference_name="aif360 Reweighing.fit_transform",
        ours=lambda: fair.reweighing_weights(t["y_true"], t["group"], privileged=1),
        reference=lambda: reweighing.fit_transform(dataset),
        check=_check_weights, min_speedup=20.0, target=">= 20x aif360", repeats=3,
    )


def cases(*, smoke: bool = False) -> list[Case]:
    """The cases at their sizes (1M and 10M rows), or at tiny sizes with ``smoke=True``."""
    n_small, n_large = (2_000, 5_000) if smoke else (1_000_000, 10_000_000)
    small = _table(n_small)
    small_t = {k: torch.from_numpy(v) for k, v in small.items()}
    large = _table(n_large, seed=1)
    large_t = {k: torch.from_numpy(v) for k, v in large.items()}
    sparse = {**small, "group": small["group"] * SPARSE_CODE}  # re-indexed with a sort, not a bincount
    sparse_t = {k: torch.from_numpy(v) for k, v in sparse.items()}
    size, big = ("2k", "5k") if smoke else ("1M", "10M")
    return [
        Case(f"fairness_report, {size} rows", reference_name="aif360 dataset + ClassificationMetric",
             ours=lambda: _ours_report(small_t), reference=lambda: _aif_report(small),
             check=_check_scalars, min_speedup=50.0, target=">= 50x aif360", repeats=3),
        Case(f"fairness_report, {size} rows", reference_name="fairlearn MetricFrame",
             ours=lambda: _ours_report(small_t), reference=lambda: _fairlearn_frame(small),
             check=_check_table, min_speedup=100.0, target=">= 100x fairlearn", repeats=1),
        _reweighing_case(size, small, small_t),
        Case(f"fairness_report, {big} rows", reference_name="aif360 dataset + ClassificationMetric",
             ours=lambda: _ours_report(large_t), reference=lambda: _aif_report(large),
             check=_check_scalars, repeats=1),
        _reweighing_case(big, large, large_t),
        Case(f"fairness_report, {size} rows, codes 0 and {SPARSE_CODE:,}",
             reference_name="aif360 dataset + ClassificationMetric",
             ours=lambda: fair.fairness_report(sparse_t["y_true"], sparse_t["y_pred"], sparse_t["group"],
                                               privileged=SPARSE_CODE),
             reference=lambda: _aif_report(sparse, privileged=SPARSE_CODE),
             check=_check_scalars, repeats=1),
    ]
