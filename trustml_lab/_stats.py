"""Statistics shared by the chapters: exact binomial confidence bounds.

One Clopper-Pearson implementation for the whole package: randomized smoothing's
certificates (:mod:`trustml_lab.robustness`), the privacy audit's error rates
(:mod:`trustml_lab.privacy`) and any chapter that bounds a proportion call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._validation import as_tensor, check_in_range, describe

__all__ = ["BinomialInterval", "clopper_pearson"]

ALTERNATIVES = ("two-sided", "greater", "less")


@dataclass(frozen=True)
class BinomialInterval:
    """Lower and upper confidence bounds of binomial proportions (float64 tensors)."""

    low: torch.Tensor
    high: torch.Tensor


def _counts(value: Any, name: str) -> torch.Tensor:
    tensor = as_tensor(value, name)
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name}: expected whole-number counts, got {describe(tensor)}")
    tensor = tensor.to(torch.float64)
    if bool((tensor != tensor.round()).any()):
        raise ValueError(f"{name}: expected whole-number counts, got fractional values in {describe(value)}")
    return tensor


def clopper_pearson(successes: Any, trials: Any, *, confidence: float = 0.95,
                    alternative: str = "two-sided") -> BinomialInterval:
    """Exact (Clopper-Pearson) confidence bounds for ``successes`` out of ``trials``.

    ``alternative`` follows scipy: ``"two-sided"`` gives the central interval
    (``(1 - confidence) / 2`` in each tail); ``"greater"`` a one-sided lower bound (high
    is 1); ``"less"`` a one-sided upper bound (low is 0). The bounds are Beta quantiles,
    ``Beta(k, n - k + 1)`` below and ``Beta(k + 1, n - k)`` above, with 0 at ``k = 0``
    and 1 at ``k = n``: they equal ``scipy.stats.binomtest(k, n, alternative=...)
    .proportion_ci(confidence, method="exact")``. Vectorized: ``successes`` and
    ``trials`` broadcast; results are float64 on ``successes``' device. Counts must be
    whole numbers with ``0 <= k <= n`` and ``n >= 1``.

    >>> ci = clopper_pearson(torch.tensor([0, 5, 10]), 10)
    >>> ci.low, ci.high
    (tensor([0.0000, 0.1871, 0.6915], dtype=torch.float64), tensor([0.3085, 0.8129, 1.0000], dtype=torch.float64))
    >>> clopper_pearson(50, 100, confidence=0.95, alternative="greater").low
    tensor(0.4136, dtype=torch.float64)
    """
    confidence = check_in_range(confidence, "confidence", 0.0, 1.0, low_open=True, high_open=True)
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative: expected one of {ALTERNATIVES}, got {alternative!r}")
    k = _counts(successes, "successes")
    n = _counts(trials, "trials").to(k.device)
    try:
        k, n = torch.broadcast_tensors(k, n)
    except RuntimeError as err:
        raise ValueError(f"trials: expected a shape that broadcasts with successes {tuple(k.shape)}, "
                         f"got {tuple(n.shape)}") from err
    if bool((n < 1).any()):
        raise ValueError(f"trials: expected at least 1 trial, got {describe(trials)}")
    if bool(((k < 0) | (k > n)).any()):
        raise ValueError(f"successes: expected counts in [0, trials], got {describe(successes)}")
    from scipy.special import betaincinv

    tail = 1 - confidence if alternative != "two-sided" else (1 - confidence) / 2
    k_np, n_np = k.cpu().numpy(), n.cpu().numpy()
    with np.errstate(all="ignore"):
        low = np.where(k_np > 0, betaincinv(np.maximum(k_np, 1), n_np - k_np + 1, tail), 0.0)
        high = np.where(k_np < n_np, betaincinv(k_np + 1, np.maximum(n_np - k_np, 1), 1 - tail), 1.0)
    if alternative == "greater":
        high = np.ones_like(high)
    elif alternative == "less":
        low = np.zeros_like(low)

    def back(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(k.device)

    return BinomialInterval(back(low), back(high))
