r"""Data drift: has the traffic stopped looking like the data the model was trained on?

A model is only tested on data like its training data. When the applicants change (a
new marketing channel, a recession, a changed form), its accuracy and its fairness can
change with them, silently. A monitor compares each feature of a window of live traffic
with a **reference sample** (the training or validation data) in two ways.

**Population stability index (PSI)**, the credit industry's drift figure: cut the
feature into bins, let :math:`p_b` be the reference's share in bin :math:`b` and
:math:`q_b` the window's, and sum

.. math:: \mathrm{PSI} = \sum_b (q_b - p_b)\,\ln(q_b / p_b).

It is a symmetrized Kullback-Leibler divergence: 0 when the shares agree, growing with
the shift. Binning, documented because PSI depends on it: numeric features use the
reference's quantiles (``bins`` bins of about equal reference mass, right-closed:
:math:`(e_{b-1}, e_b]`, with the outer bins open to :math:`\pm\infty`; tied quantiles of
a discrete feature leave empty bins, which add nothing); categorical features use one
bin per category (a category never seen in the reference gets its own bin). An empty
bin would make the logarithm infinite, so every share is floored at ``floor``
(default :math:`10^{-4}`) without renormalizing. Rules of thumb from credit scoring:
below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a major one. PSI says *how
much* a feature moved, but not whether the movement is more than sampling noise: a
window of a few hundred rows has a PSI of about :math:`(\text{bins} - 1)/n` from noise
alone.

**A two-sample test** says whether it is noise. For a numeric feature, the
Kolmogorov-Smirnov statistic is the largest gap between the two empirical CDFs,
:math:`D = \max_x |F_\text{ref}(x) - F_\text{win}(x)|`; it needs no binning and its
null distribution (both samples from one distribution) is known exactly, so its p-value
is honest: :func:`ks_test` equals ``scipy.stats.ks_2samp`` (two-sided, ``method="auto"``:
the exact distribution up to 10,000 rows per sample, Smirnov's asymptotic one beyond).
Ties (integer features) only make it conservative. For a categorical feature, Pearson's
chi-square test of the 2 x C table of counts (reference and window by category):
:func:`chi_square_test` equals ``scipy.stats.chi2_contingency`` on that table (with
Yates's correction when the table is 2 x 2, as scipy applies it). Its p-value is an
approximation that needs expected counts of about 5 per cell: one reason a monitor waits
for a minimum window before it judges.

Every kernel takes all the features of one kind at once, as columns of a 2-d array
(``reference`` of shape ``(n_ref, features)``, ``current`` of shape ``(n, features)``;
a 1-d array is one feature), and returns one value per column. Categorical features
come as integer codes ``0 .. num_categories - 1``.

>>> reference = torch.arange(1000.0).reshape(-1, 1)  # one numeric feature
>>> window = reference[:500]                          # only its lower half comes in
>>> psi(reference, window).round(decimals=3)
tensor([3.7970], dtype=torch.float64)
>>> ks_test(reference, window).statistic
tensor([0.5000], dtype=torch.float64)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import as_tensor, check_in_range, check_int, describe

__all__ = [
    "TwoSampleTest",
    "chi_square_test",
    "ks_test",
    "psi",
    "psi_categorical",
    "quantile_edges",
]

#: ``scipy.stats.ks_2samp(method="auto")`` is exact when both samples have at most this many rows.
KS_EXACT_MAX_ROWS = 10_000


@dataclass(frozen=True)
class TwoSampleTest:
    """One test per feature: the statistic and its p-value (float64 tensors of shape ``(features,)``)."""

    statistic: torch.Tensor
    pvalue: torch.Tensor


# --------------------------------------------------------------------------- input edge

def _columns(value: Any, name: str, *, dtype: torch.dtype) -> tuple[torch.Tensor, bool]:
    """A (rows, features) tensor of ``dtype`` and whether the input was 1-d."""
    tensor = as_tensor(value, name)
    if tensor.ndim not in (1, 2):
        raise ValueError(f"{name}: expected a 1-d array (one feature) or a 2-d array (rows, features), "
                         f"got {describe(tensor)}")
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name}: expected real numbers, got {describe(tensor)}")
    if len(tensor) == 0:
        raise ValueError(f"{name}: expected at least one row, got {describe(tensor)}")
    one = tensor.ndim == 1
    return (tensor[:, None] if one else tensor).to(dtype), one


def _pair(reference: Any, current: Any, *, dtype: torch.dtype = torch.float64
          ) -> tuple[torch.Tensor, torch.Tensor, bool]:
    ref, one = _columns(reference, "reference", dtype=dtype)
    cur, one_cur = _columns(current, "current", dtype=dtype)
    cur = cur.to(ref.device)
    if one != one_cur or ref.shape[1] != cur.shape[1]:
        raise ValueError(f"current: expected {ref.shape[1]} feature column(s) like reference, got "
                         f"{describe(current)}")
    return ref, cur, one


def _codes(reference: Any, current: Any, num_categories: int | None) -> tuple[torch.Tensor, torch.Tensor, bool, int]:
    ref, cur, one = _pair(reference, current)
    for tensor, name in ((ref, "reference"), (cur, "current")):
        if bool((tensor != tensor.round()).any()) or bool((tensor < 0).any()):
            raise ValueError(f"{name}: expected category codes (whole numbers >= 0), got other values")
    top = int(max(ref.max(), cur.max())) + 1
    if num_categories is None:
        num_categories = top
    else:
        num_categories = check_int(num_categories, "num_categories")
        if top > num_categories:
            raise ValueError(f"num_categories: expected at least {top} (the largest code plus one), "
                             f"got {num_categories}")
    return ref.long(), cur.long(), one, num_categories


def _out(values: torch.Tensor, one: bool) -> torch.Tensor:
    return values[0] if one else values


# --------------------------------------------------------------------------- PSI

def _bin_counts(index: torch.Tensor, bins: int) -> torch.Tensor:
    """Counts (features, bins) of bin indices (rows, features), one bincount for all features."""
    features = index.shape[1]
    offset = torch.arange(features, device=index.device) * bins
    flat = (index + offset).reshape(-1)
    return torch.bincount(flat, minlength=features * bins).reshape(features, bins).to(torch.float64)


def _psi_from_counts(ref_counts: torch.Tensor, cur_counts: torch.Tensor, floor: float) -> torch.Tensor:
    p = (ref_counts / ref_counts.sum(dim=1, keepdim=True)).clamp_min(floor)
    q = (cur_counts / cur_counts.sum(dim=1, keepdim=True)).clamp_min(floor)
    return ((q - p) * torch.log(q / p)).sum(dim=1)


def _check_floor(floor: float) -> float:
    return check_in_range(floor, "floor", 0.0, 1.0, low_open=True, high_open=True)


def quantile_edges(reference: Any, *, bins: int = 10) -> torch.Tensor:
    """The ``bins - 1`` inner bin edges of each column: its quantiles at ``1/bins, ..., (bins-1)/bins``.

    Computed by ``numpy.quantile`` (its default, linear interpolation); shape
    ``(features, bins - 1)`` (``(bins - 1,)`` for a 1-d input).

    >>> quantile_edges(torch.arange(1.0, 101.0), bins=4)
    tensor([25.7500, 50.5000, 75.2500], dtype=torch.float64)
    """
    bins = check_int(bins, "bins", low=2)
    ref, one = _columns(reference, "reference", dtype=torch.float64)
    return _out(_edges(ref, bins), one)


def _edges(ref: torch.Tensor, bins: int) -> torch.Tensor:
    """numpy's quantiles (not torch's: they round differently in the last bit, and a value on an
    edge would change bins), once per call, on the reference's device."""
    edges = np.quantile(ref.cpu().numpy(), np.arange(1, bins) / bins, axis=0).T
    return torch.from_numpy(np.ascontiguousarray(edges)).to(ref.device)


def psi(reference: Any, current: Any, *, bins: int = 10, floor: float = 1e-4) -> torch.Tensor:
    """The population stability index of each numeric column, on the reference's quantile bins.

    :math:`\\sum_b (q_b - p_b) \\ln(q_b / p_b)` with :math:`p_b`, :math:`q_b` the reference's
    and the current window's shares in bin :math:`b` of :func:`quantile_edges`
    (right-closed bins), each share floored at ``floor``. Equals the loop over bins
    written with ``numpy.quantile`` and ``numpy.searchsorted(edges, x, side="left")``
    (tested). Returns float64, one value per column (0-d for a 1-d input).

    >>> reference = torch.arange(100.0)
    >>> float(psi(reference, reference))
    0.0
    >>> round(float(psi(reference, reference + 30.0)), 3)
    2.486
    """
    bins = check_int(bins, "bins", low=2)
    floor = _check_floor(floor)
    ref, cur, one = _pair(reference, current)
    return _out(_psi_on_bins(*_reference_bins(ref, bins), cur, floor), one)


def _reference_bins(ref: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's quantile edges ``(features, bins - 1)`` and its counts per bin ``(features, bins)``:
    what :func:`psi` needs of the reference, computed once by a monitor."""
    edges = _edges(ref, bins)
    return edges, _bin_counts(torch.searchsorted(edges, ref.T.contiguous()).T, bins)  # edges below each value


def _psi_on_bins(edges: torch.Tensor, ref_counts: torch.Tensor, cur: torch.Tensor, floor: float) -> torch.Tensor:
    cur_index = torch.searchsorted(edges, cur.T.contiguous()).T
    return _psi_from_counts(ref_counts, _bin_counts(cur_index, ref_counts.shape[1]), floor)


def psi_categorical(reference: Any, current: Any, *, num_categories: int | None = None,
                    floor: float = 1e-4) -> torch.Tensor:
    """The population stability index of each categorical column (integer codes), one bin per category.

    ``num_categories`` defaults to the largest code plus one; codes absent from both
    samples add nothing.

    >>> reference = torch.tensor([0, 0, 1, 1])
    >>> round(float(psi_categorical(reference, torch.tensor([0, 1, 1, 1]))), 4)
    0.2747
    """
    floor = _check_floor(floor)
    ref, cur, one, k = _codes(reference, current, num_categories)
    return _out(_psi_from_counts(_bin_counts(ref, k), _bin_counts(cur, k), floor), one)


# --------------------------------------------------------------------------- Kolmogorov-Smirnov

@functools.lru_cache(maxsize=8192)
def _ks_exact_pvalue(n1: int, n2: int, h: int) -> float | None:
    """scipy's exact two-sided p-value of ``D = h / lcm(n1, n2)``; ``None`` where scipy falls back."""
    from scipy.stats._stats_py import _attempt_exact_2kssamp  # ks_2samp's own exact routine

    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    success, _, prob = _attempt_exact_2kssamp(n1, n2, g, h / lcm, "two-sided")
    return float(np.clip(prob, 0, 1)) if success else None


def ks_test(reference: Any, current: Any) -> TwoSampleTest:
    """Two-sample Kolmogorov-Smirnov test of each numeric column; equals ``scipy.stats.ks_2samp``.

    The statistic is :math:`\\max_x |F_\\text{ref}(x) - F_\\text{cur}(x)|` over the pooled
    values, for all columns at once (sorted samples, one batched ``searchsorted``).
    The p-value follows ``ks_2samp(..., alternative="two-sided", method="auto")``: the
    exact null distribution when both samples have at most 10,000 rows (scipy's own
    routine, cached by sample sizes and statistic), else ``scipy.stats.kstwo.sf(D,
    round(n1 n2 / (n1 + n2)))``. Where scipy's exact computation fails it also falls
    back to the asymptotic form, as scipy does.

    >>> test = ks_test(torch.arange(10.0), torch.arange(5.0, 15.0))
    >>> float(test.statistic), round(float(test.pvalue), 4)
    (0.5, 0.1678)
    """
    ref, cur, one = _pair(reference, current)
    stat, pvalue = _ks_on_sorted(*_ks_reference(ref), cur)
    return TwoSampleTest(_out(stat, one), _out(pvalue, one))


def _ks_reference(ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's sorted columns ``(features, n1)`` and its empirical CDF at them: what
    :func:`ks_test` needs of the reference, computed once by a monitor."""
    ref_sorted = torch.sort(ref, dim=0).values.T.contiguous()
    return ref_sorted, torch.searchsorted(ref_sorted, ref_sorted, right=True).to(torch.float64) / len(ref)


def _ks_on_sorted(ref_sorted: torch.Tensor, ref_cdf: torch.Tensor,
                  cur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The KS statistic and p-value of each column. The largest CDF gap over the pooled values is
    the larger of the gaps at the reference's values and at the window's (the same numbers, and
    the reference's own CDF is computed once)."""
    n1, n2 = ref_sorted.shape[1], len(cur)
    cur_sorted = torch.sort(cur, dim=0).values.T.contiguous()  # (features, n2)

    def cdf(sorted_columns: torch.Tensor, at: torch.Tensor, rows: int) -> torch.Tensor:
        return torch.searchsorted(sorted_columns, at, right=True).to(torch.float64) / rows  # as scipy: counts / n

    at_ref = (ref_cdf - cdf(cur_sorted, ref_sorted, n2)).abs().amax(dim=1)
    at_cur = (cdf(ref_sorted, cur_sorted, n1) - cdf(cur_sorted, cur_sorted, n2)).abs().amax(dim=1)
    d = torch.maximum(at_ref, at_cur).cpu().numpy()
    pvalue = np.empty_like(d)
    exact = max(n1, n2) <= KS_EXACT_MAX_ROWS
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    asymptotic = np.ones(len(d), dtype=bool)
    if exact:  # scipy reports D on the lattice of multiples of 1 / lcm(n1, n2), also when it falls back
        for j, dj in enumerate(d):
            h = int(np.round(dj * lcm))
            d[j] = h * 1.0 / lcm
            prob = 1.0 if h == 0 else _ks_exact_pvalue(n1, n2, h)
            if prob is not None:
                pvalue[j], asymptotic[j] = prob, False
    if asymptotic.any():
        from scipy.stats import kstwo

        m, n = sorted([float(n1), float(n2)], reverse=True)
        pvalue[asymptotic] = np.clip(kstwo.sf(d[asymptotic], np.round(m * n / (m + n))), 0, 1)
    return torch.from_numpy(d).to(ref_sorted.device), torch.from_numpy(pvalue).to(ref_sorted.device)


# --------------------------------------------------------------------------- chi-square

def chi_square_test(reference: Any, current: Any, *, num_categories: int | None = None) -> TwoSampleTest:
    """Pearson's chi-square test of homogeneity of each categorical column; equals ``scipy.stats.chi2_contingency``.

    For each column, the 2 x C table of counts (row 0 the reference, row 1 the current
    window; categories absent from both dropped) gives
    :math:`\\chi^2 = \\sum (O - E)^2 / E` with :math:`E` the product of the margins over
    the total, on :math:`C - 1` degrees of freedom; with one degree of freedom Yates's
    correction moves each count 0.5 toward its expectation, as scipy does by default. A
    column with one category present has statistic 0 and p-value 1. All columns in one
    pass (padded to ``num_categories``); p-values from ``scipy.stats.chi2.sf``.

    >>> test = chi_square_test(torch.tensor([0] * 60 + [1] * 40), torch.tensor([0] * 40 + [1] * 60))
    >>> round(float(test.statistic), 4), round(float(test.pvalue), 5)
    (7.22, 0.00721)
    """
    ref, cur, one, k = _codes(reference, current, num_categories)
    stat, pvalue = _chi_square_on_counts(_bin_counts(ref, k), _bin_counts(cur, k))
    return TwoSampleTest(_out(stat, one), _out(pvalue, one))


def _chi_square_on_counts(ref_counts: torch.Tensor, cur_counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The chi-square statistic and p-value of each column from the counts ``(features, categories)``."""
    observed = torch.stack([ref_counts, cur_counts], dim=1)  # (features, 2, k)
    column = observed.sum(dim=1, keepdim=True)
    present = column > 0  # (features, 1, k)
    expected = observed.sum(dim=2, keepdim=True) * column / observed.sum(dim=(1, 2), keepdim=True)
    dof = present.sum(dim=(1, 2)) - 1  # (features,)
    yates = (dof == 1)[:, None, None]
    diff = expected - observed
    corrected = observed + torch.minimum(torch.full_like(diff, 0.5), diff.abs()) * torch.sign(diff)
    observed = torch.where(yates, corrected, observed)
    terms = torch.where(present, (observed - expected) ** 2 / torch.where(present, expected, 1.0), 0.0)
    stat = torch.where(dof > 0, terms.sum(dim=(1, 2)), 0.0)
    from scipy.stats import chi2

    stat_np, dof_np = stat.cpu().numpy(), dof.cpu().numpy()
    with np.errstate(invalid="ignore"):
        pvalue = np.where(dof_np > 0, chi2.sf(stat_np, np.maximum(dof_np, 1)), 1.0)
    return stat, torch.from_numpy(pvalue).to(stat.device)

