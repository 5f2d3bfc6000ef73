r"""Monitoring a deployed model: fairness and drift over windows of live decisions, alerts on evidence.

A model that passed its release gate can still go wrong after release: the population
of applicants shifts (:mod:`trustml_lab.serve.drift`), and with it the model's selection
rates and error rates per group. A :class:`Monitor` reads a **window** of logged
decisions (the last few hundred, from :meth:`trustml_lab.serve.registry.Registry.decisions`,
with the outcomes that have arrived) and reports, in one :class:`WindowReport`:

- per group: the **selection rate** (share approved) and, over the decisions whose
  outcome is known, the **true positive rate** (share of the creditworthy who were
  approved: equal opportunity) and the error rate, each with an exact Clopper-Pearson
  interval (:func:`trustml_lab._stats.clopper_pearson`);
- per feature: PSI and a two-sample test against the reference sample (KS for numeric
  features, chi-square for categorical ones);
- the **alerts**, each an :class:`Alert` with its evidence.

**Alerts only on evidence.** A monitor that cries wolf is switched off, so every alert
is a statistical test at a stated level. In a window the monitor runs a family of
:math:`m` tests: one drift test per feature, and for each rate (the selection rate over
the groups present, the TPR over the groups with at least ``min_positives`` known
positives) one test per ordered pair of groups and fairness rule. It controls the
chance that *any* of them alerts on traffic that has not changed (the family-wise
error) with **Bonferroni's correction**: each test runs at level :math:`\alpha / m`,
:math:`\alpha = 1 - \text{confidence}`, so by the union bound same-distribution traffic
raises an alert in at most a fraction :math:`\alpha` of the windows. That claim is
tested by simulation over many windows of the German credit data, with group rates on
the boundary of every rule. (Holm's step-down procedure would be a little more
powerful; Bonferroni is simpler to state per test, and the report gives ``level``.)

- A **drift alert** on a feature needs its p-value below :math:`\alpha / m` *and* a PSI
  of at least ``psi_threshold``: a shift both detectable and large enough to matter
  (with a big window, a test alone would flag shifts too small to care about).
- A **fairness alert** tests a rule on an ordered pair of groups ``a``, ``b``: the
  four-fifths rule fails when :math:`p_a < r\,p_b` (``r = min_ratio``), the parity gap
  when :math:`p_b - p_a > d` (``d = max_difference``). Both are a contrast
  :math:`\theta = w\,p_b - p_a` (``w = r`` or 1) that the rule bounds (by 0 or
  :math:`d`); the alert needs the evidence to exclude the allowed region: a lower
  confidence bound of :math:`\theta` above the bound. That lower bound is the MOVER
  construction (method of variance estimates recovery, Zou and Donner 2008, Newcombe's
  method for a difference of proportions) from each group's one-sided Clopper-Pearson
  bounds :math:`l_b` and :math:`u_a` at level :math:`\alpha / m`:
  :math:`L = \hat\theta - \sqrt{w^2 (\hat p_b - l_b)^2 + (u_a - \hat p_a)^2}`. Adding the
  two margins in quadrature instead of checking that the two groups' intervals are
  apart (``u_a < r l_b``, which is valid but far too cautious) is what gives the alert
  its power at a window of a few hundred rows. The per-group intervals in the report are
  two-sided at ``confidence``, for reading, not for alerting.

**Why a minimum window.** No alert is raised on fewer than ``min_window`` decisions:
the chi-square test's p-value is an approximation that needs about 5 expected rows per
category, PSI is biased upward on small windows (about ``(bins - 1) / n`` from noise
alone), and a group's interval over a handful of rows is too wide to show anything. The
figures are still reported, marked ``judged=False``. Likewise a TPR needs
``min_positives`` known positives in the group.

**Outcomes arrive late, and not for everyone.** The TPR and the error rate are computed
over the decisions whose outcome has been recorded
(:meth:`~trustml_lab.serve.registry.Registry.record_label`). In lending the outcome of a
denied application is never observed (the *selective labels* problem): if outcomes only
arrive for approved applicants, every TPR is 1 and means nothing. A service that wants
an equal-opportunity monitor must collect outcomes for a random sample of all decisions.

>>> import pandas as pd
>>> reference = pd.DataFrame({"amount": [float(a) for a in range(400)], "sex": ["f", "m"] * 200})
>>> monitor = Monitor(reference, group="sex", min_window=100, window=200)
>>> fair = [{"inputs": {"amount": 2.0 * i, "sex": "fm"[i % 2]}, "decision": i // 2 % 2, "label": i // 2 % 2}
...         for i in range(200)]
>>> report = monitor.evaluate(fair)
>>> report.judged, [a.kind for a in report.alerts]
(True, [])
>>> shifted = [{"inputs": {"amount": 500.0 + a, "sex": "f" if a < 150 else "m"}, "decision": int(a >= 150)}
...            for a in range(200)]
>>> sorted({a.kind for a in monitor.evaluate(shifted).alerts})
['drift', 'selection_difference', 'selection_ratio']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._stats import clopper_pearson
from .._validation import as_tensor, check_in_range, check_int, check_positive, describe
from ..fairness import group_confusion
from .drift import (
    _bin_counts,
    _chi_square_on_counts,
    _ks_on_sorted,
    _ks_reference,
    _psi_from_counts,
    _psi_on_bins,
    _reference_bins,
)

__all__ = [
    "Alert",
    "FeatureDrift",
    "GroupRates",
    "Monitor",
    "SeriesPoint",
    "WindowReport",
]

#: The category that stands for a missing value (``None`` or NaN) of a categorical feature.
MISSING = "<missing>"

ALERT_KINDS = ("drift", "selection_ratio", "selection_difference", "tpr_ratio", "tpr_difference")


@dataclass(frozen=True)
class GroupRates:
    """One group's figures in a window; rates are ``None`` where undefined (no rows, no positives).

    ``selection_low``/``selection_high`` and ``tpr_low``/``tpr_high``: the two-sided
    Clopper-Pearson interval at the monitor's ``confidence``.
    """

    group: str
    rows: int
    selected: int
    selection_rate: float | None
    selection_low: float | None
    selection_high: float | None
    labeled: int
    positives: int
    true_positives: int
    tpr: float | None
    tpr_low: float | None
    tpr_high: float | None
    error_rate: float | None


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift: PSI and a two-sample test (``"ks"`` or ``"chi2"``) against the reference."""

    feature: str
    kind: str
    psi: float
    test: str
    statistic: float
    pvalue: float


@dataclass(frozen=True)
class Alert:
    """An alert: its kind (one of ``ALERT_KINDS``), the feature or the pair of groups (``"f vs m"``),
    the observed statistic (PSI, or the pair's ratio or difference of rates), the threshold of the
    rule, and the evidence that decided it, in words."""

    kind: str
    feature_or_group: str
    statistic: float
    threshold: float
    evidence: str

    @property
    def is_fairness(self) -> bool:
        """A fairness rule failed (selection rate or TPR), rather than a drift test."""
        return self.kind != "drift"


@dataclass(frozen=True)
class WindowReport:
    """A window's figures and alerts; :meth:`to_dict` is JSON-serializable (the service's ``/metrics``).

    ``tests`` is the family size :math:`m`, ``level`` the per-test level
    :math:`(1 - \\text{confidence}) / m`; ``judged`` says the window had ``min_window`` rows
    (no alert otherwise). ``selection_ratio`` is the smallest group selection rate over
    the largest and ``selection_difference`` their gap; ``tpr_ratio`` and
    ``tpr_difference`` the same over the groups with ``min_positives`` known positives
    (``None`` with fewer than two such groups).
    """

    version: str | None
    rows: int
    labeled: int
    first_seq: int | None
    last_seq: int | None
    first_time: str | None
    last_time: str | None
    judged: bool
    confidence: float
    tests: int
    level: float
    selection_ratio: float | None
    selection_difference: float | None
    tpr_ratio: float | None
    tpr_difference: float | None
    groups: tuple[GroupRates, ...]
    drift: tuple[FeatureDrift, ...]
    alerts: tuple[Alert, ...]

    @property
    def alerted(self) -> bool:
        """Any alert in this window."""
        return bool(self.alerts)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values (``json.dumps(report.to_dict(), allow_nan=False)`` works)."""
        return _json_safe(asdict(self))


@dataclass(frozen=True)
class SeriesPoint:
    """One group in one window of the dashboard's time series: approval and error rates."""

    window: int
    first_time: str | None
    last_time: str | None
    group: str
    rows: int
    approval_rate: float
    labeled: int
    error_rate: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return asdict(self)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# --------------------------------------------------------------------------- rows of traffic

@dataclass(frozen=True)
class _Rows:
    inputs: list[Mapping[str, Any]]
    decision: torch.Tensor  # int64 (n,)
    label: torch.Tensor  # int64 (n,), -1 where unknown
    seq: list[int | None]
    time: list[str | None]


_NUMBERS = (int, float, np.integer, np.floating)


def _fields(row: Any) -> dict[str, Any]:
    """The fields of one decision: a mapping, or a record with attributes (``DecisionRecord``)."""
    if isinstance(row, dict):
        return row
    if isinstance(row, Mapping):
        return dict(row)
    return {k: getattr(row, k) for k in ("inputs", "decision", "label", "score", "seq", "time") if hasattr(row, k)}


def _binary(value: Any, name: str, *, optional: bool = False) -> int:
    if value is None and optional:
        return -1
    if type(value) is int and (value == 0 or value == 1):  # the common case, without the checks below
        return value
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, _NUMBERS) and value in (0, 1):
        return int(value)
    if isinstance(value, _NUMBERS):
        raise ValueError(f"{name}: expected 0 or 1{' or None' if optional else ''}, got {value}")
    raise TypeError(f"{name}: expected 0 or 1{' or None' if optional else ''}, got {describe(value)}")


def _as_rows(decisions: Any) -> _Rows:
    if isinstance(decisions, (str, bytes, Mapping)) or not isinstance(decisions, Iterable):
        raise TypeError(f"decisions: expected a sequence of decision records or mappings, got {describe(decisions)}")
    inputs, decision, label, seq, time = [], [], [], [], []
    for i, row in enumerate(decisions):
        fields = _fields(row)
        values = fields.get("inputs")
        if not isinstance(values, dict):
            if not isinstance(values, Mapping):
                raise TypeError(f"decisions[{i}].inputs: expected a mapping of feature to value, "
                                f"got {describe(values)}")
            values = dict(values)
        score = fields.get("score")
        if score is not None and type(score) is not float:
            if isinstance(score, (bool, np.bool_)) or not isinstance(score, _NUMBERS):
                raise TypeError(f"decisions[{i}].score: expected a number, got {describe(score)}")
        if score is not None and not math.isfinite(score):
            raise ValueError(f"decisions[{i}].score: expected a finite number, got {score}")
        inputs.append(values)
        decision.append(_binary(fields.get("decision"), f"decisions[{i}].decision"))
        label.append(_binary(fields.get("label"), f"decisions[{i}].label", optional=True))
        seq.append(fields.get("seq"))
        time.append(fields.get("time"))
    return _Rows(inputs, torch.tensor(decision, dtype=torch.int64), torch.tensor(label, dtype=torch.int64),
                 seq, time)


def _column(rows: _Rows, feature: str) -> list[Any]:
    try:
        return [row[feature] for row in rows.inputs]
    except KeyError:
        i = next(i for i, row in enumerate(rows.inputs) if feature not in row)
        raise ValueError(f"{feature}: missing from the traffic: decisions[{i}].inputs has no {feature!r} "
                         f"(it has {sorted(rows.inputs[i])[:8]})") from None


def _category(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return str(value)


def _window_codes(values: list[Any], known: dict[str, int]) -> torch.Tensor:
    """Codes of a window's values (a few hundred: a dict lookup each beats pandas' overhead)."""
    names = [v if type(v) is str else _category(v) for v in values]
    for name in dict.fromkeys(names):  # the distinct names, in order of appearance
        if name not in known:
            known[name] = len(known)
    return torch.tensor([known[n] for n in names], dtype=torch.int64)


def _reference_codes(values: Any) -> tuple[tuple[str, ...], torch.Tensor]:
    """A reference column's sorted category names (missing ones as :data:`MISSING`) and its codes."""
    array = np.asarray(values, dtype=object)
    names = np.where(pd.isna(array), MISSING, array.astype(str))  # np.where widens the string dtype
    categories, codes = np.unique(names, return_inverse=True)
    return tuple(categories.tolist()), torch.from_numpy(codes.astype(np.int64).reshape(-1))


def _is_numeric(series: pd.Series) -> bool:
    return (pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
            and not isinstance(series.dtype, pd.CategoricalDtype))


# --------------------------------------------------------------------------- the monitor

class Monitor:
    """Windowed fairness and drift figures of live decisions against a reference sample.

    ``reference``: a DataFrame of model inputs (the training or validation data, raw
    values as the service logs them); ``features``: the columns to watch (default: all);
    numeric columns (numeric dtype, not bool or categorical) get KS and quantile-bin PSI,
    the others chi-square and per-category PSI. ``group``: the input field holding the
    protected attribute (a column of ``reference``, e.g. ``"sex"``).

    Knobs: ``window`` (rows per window of :meth:`series`, and the number of recent
    decisions a service should evaluate), ``min_window`` (rows before any alert),
    ``min_positives`` (known positives before a group's TPR is judged), ``confidence``
    (``1 - confidence`` is the family-wise false-alarm rate), ``min_ratio`` (the
    four-fifths rule; ``None`` turns it off), ``max_difference`` (the largest allowed gap
    of rates; ``None`` off), ``bins``, ``floor`` (PSI binning), ``psi_threshold`` (the
    smallest PSI that may raise a drift alert).
    """

    def __init__(self, reference: pd.DataFrame, *, group: str, features: Sequence[str] | None = None,
                 window: int = 500, min_window: int = 200, min_positives: int = 30, confidence: float = 0.95,
                 min_ratio: float | None = 0.8, max_difference: float | None = 0.1, bins: int = 10,
                 floor: float = 1e-4, psi_threshold: float = 0.1) -> None:
        self.window = check_int(window, "window")
        self.min_window = check_int(min_window, "min_window", high=self.window)
        self.min_positives = check_int(min_positives, "min_positives")
        self.confidence = check_in_range(confidence, "confidence", 0.0, 1.0, low_open=True, high_open=True)
        self.min_ratio = None if min_ratio is None else check_in_range(min_ratio, "min_ratio", 0.0, 1.0,
                                                                       low_open=True)
        self.max_difference = None if max_difference is None else check_in_range(
            max_difference, "max_difference", 0.0, 1.0, high_open=True)
        self.bins = check_int(bins, "bins", low=2)
        self.floor = check_in_range(floor, "floor", 0.0, 1.0, low_open=True, high_open=True)
        self.psi_threshold = check_positive(psi_threshold, "psi_threshold", strict=False)
        frame = self._check_reference(reference)
        if not isinstance(group, str):
            raise TypeError(f"group: expected a column name (str), got {describe(group)}")
        if group not in frame.columns:
            raise ValueError(f"group: expected a column of reference, got {group!r}; columns: {list(frame.columns)}")
        self.group = group
        self.group_names = _reference_codes(frame[group])[0]
        if features is None:
            features = list(frame.columns)
        if isinstance(features, str) or not isinstance(features, Sequence):
            raise TypeError(f"features: expected a sequence of column names, got {describe(features)}")
        missing = [f for f in features if f not in frame.columns]
        if missing:
            raise ValueError(f"features: {missing[0]!r} is not a column of reference; columns: {list(frame.columns)}")
        if len(set(features)) != len(features):
            raise ValueError("features: expected distinct column names, got repeats")
        self.numeric = tuple(f for f in features if _is_numeric(frame[f]))
        self.categorical = tuple(f for f in features if not _is_numeric(frame[f]))
        encoded = {f: _reference_codes(frame[f]) for f in self.categorical}
        self.categories = {f: encoded[f][0] for f in self.categorical}
        # what the drift tests need of the reference, computed once (a check then only sorts and bins its window)
        if self.numeric:
            numeric = torch.stack([as_tensor(frame[f].to_numpy(dtype=np.float64), f"reference[{f!r}]")
                                   for f in self.numeric], dim=1)
            self._reference_bins = _reference_bins(numeric, self.bins)
            self._reference_sorted = _ks_reference(numeric)
        self._reference_counts = [torch.bincount(encoded[f][1], minlength=len(encoded[f][0])).to(torch.float64)
                                  for f in self.categorical]

    @staticmethod
    def _check_reference(reference: Any) -> pd.DataFrame:
        if isinstance(reference, Mapping):
            reference = pd.DataFrame(dict(reference))
        if not isinstance(reference, pd.DataFrame):
            raise TypeError(f"reference: expected a pandas DataFrame of model inputs, got {describe(reference)}")
        if len(reference) == 0 or len(reference.columns) == 0:
            raise ValueError(f"reference: expected a non-empty sample, got shape {reference.shape}")
        return reference

    def __repr__(self) -> str:
        return (f"Monitor(group={self.group!r}, {len(self.numeric)} numeric and {len(self.categorical)} categorical "
                f"features, window={self.window}, min_window={self.min_window}, confidence={self.confidence})")

    # ------------------------------------------------------------------ one window

    def evaluate(self, decisions: Iterable[Any], *, version: str | None = None) -> WindowReport:
        """The report of one window: ``decisions`` are :class:`~trustml_lab.serve.registry.DecisionRecord`
        objects or mappings with ``inputs``, ``decision`` and optionally ``label``, ``score``,
        ``seq``, ``time``. Every input must carry the watched features and the group."""
        rows = _as_rows(decisions)
        n = len(rows.inputs)
        drift = self._drift(rows) if n else []
        groups, sel_counts, tpr_counts = self._group_counts(rows)
        rates = self._group_rates(groups, sel_counts, tpr_counts, self.confidence)
        present = [g for g, r in enumerate(rates) if r.rows > 0]
        with_tpr = [g for g, r in enumerate(rates) if r.positives >= self.min_positives]
        tests = len(drift) + self._fairness_tests(len(present)) + self._fairness_tests(len(with_tpr))
        level = (1 - self.confidence) / max(tests, 1)
        judged = n >= self.min_window
        alerts: list[Alert] = []
        if judged:  # selection: (selected, rows) per group; TPR: (true positives, positives) per group
            alerts += [self._drift_alert(d, level, tests) for d in drift
                       if d.pvalue < level and d.psi >= self.psi_threshold]
            alerts += self._pair_alerts("selection", [groups[g] for g in present], sel_counts[1, present],
                                        sel_counts[0, present], level, tests)
            alerts += self._pair_alerts("tpr", [groups[g] for g in with_tpr], tpr_counts[1, with_tpr],
                                        tpr_counts[0, with_tpr], level, tests)
        sel_ratio, sel_diff = _spread([rates[g].selection_rate for g in present])
        tpr_ratio, tpr_diff = _spread([rates[g].tpr for g in with_tpr])
        seqs = [s for s in rows.seq if s is not None]
        times = [t for t in rows.time if t is not None]
        return WindowReport(
            version=version, rows=n, labeled=int((rows.label >= 0).sum()),
            first_seq=min(seqs) if seqs else None, last_seq=max(seqs) if seqs else None,
            first_time=min(times) if times else None, last_time=max(times) if times else None,
            judged=judged, confidence=self.confidence, tests=tests, level=level,
            selection_ratio=sel_ratio, selection_difference=sel_diff, tpr_ratio=tpr_ratio, tpr_difference=tpr_diff,
            groups=tuple(rates), drift=tuple(drift), alerts=tuple(alerts),
        )

    def _fairness_tests(self, groups: int) -> int:
        """The fairness tests of one rate: each active rule on each ordered pair of groups."""
        rules = (self.min_ratio is not None) + (self.max_difference is not None)
        return rules * groups * (groups - 1)

    def _drift(self, rows: _Rows) -> list[FeatureDrift]:
        found = []
        if self.numeric:
            current = torch.stack([self._numeric_column(rows, f) for f in self.numeric], dim=1)
            values = _psi_on_bins(*self._reference_bins, current.to(torch.float64), self.floor).tolist()
            statistic, pvalue = _ks_on_sorted(*self._reference_sorted, current.to(torch.float64))
            found += [FeatureDrift(f, "numeric", v, "ks", s, p) for f, v, s, p in
                      zip(self.numeric, values, statistic.tolist(), pvalue.tolist())]
        if self.categorical:
            columns, top = [], 0
            for f in self.categorical:
                known = {c: i for i, c in enumerate(self.categories[f])}
                columns.append(_window_codes(_column(rows, f), known))
                top = max(top, len(known))
            # the window's unseen categories got codes past the reference's: their reference count is 0
            ref_counts = torch.stack([torch.nn.functional.pad(c, (0, top - len(c))) for c in self._reference_counts])
            cur_counts = _bin_counts(torch.stack(columns, dim=1), top)
            values = _psi_from_counts(ref_counts, cur_counts, self.floor).tolist()
            statistic, pvalue = _chi_square_on_counts(ref_counts, cur_counts)
            found += [FeatureDrift(f, "categorical", v, "chi2", s, p) for f, v, s, p in
                      zip(self.categorical, values, statistic.tolist(), pvalue.tolist())]
        return found

    @staticmethod
    def _numeric_column(rows: _Rows, feature: str) -> torch.Tensor:
        values = _column(rows, feature)
        if not {type(v) for v in values} <= {int, float}:  # NumPy scalars and other types: check each
            for i, v in enumerate(values):
                if isinstance(v, (bool, np.bool_)) or not isinstance(v, _NUMBERS):
                    raise TypeError(f"{feature}: expected a number in decisions[{i}].inputs, got {describe(v)}")
        return as_tensor(np.asarray(values, dtype=np.float64), feature)

    def _group_counts(self, rows: _Rows) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """Group names, (rows, selected) and (labeled positives, true positives, labeled, errors) per group."""
        index = {g: i for i, g in enumerate(self.group_names)}
        code = _window_codes(_column(rows, self.group), index)
        names = list(index)
        k = len(names)
        sizes = torch.bincount(code, minlength=k)
        selected = torch.bincount(code, weights=rows.decision.double(), minlength=k).long()
        known = rows.label >= 0
        if bool(known.any()):
            conf = group_confusion(rows.label[known], rows.decision[known], code[known], num_groups=k)
            positives, true_pos = conf[:, 1].sum(dim=1).long(), conf[:, 1, 1].long()
            labeled = conf.sum(dim=(1, 2)).long()
            errors = (conf[:, 0, 1] + conf[:, 1, 0]).long()
        else:
            positives = true_pos = labeled = errors = torch.zeros(k, dtype=torch.int64)
        return names, torch.stack([sizes, selected]), torch.stack([positives, true_pos, labeled, errors])

    @staticmethod
    def _group_rates(names: list[str], sel: torch.Tensor, tpr: torch.Tensor, confidence: float) -> list[GroupRates]:
        sizes, selected = sel
        positives, true_pos, labeled, errors = tpr
        sel_ci = clopper_pearson(selected, sizes.clamp_min(1), confidence=confidence)
        tpr_ci = clopper_pearson(true_pos, positives.clamp_min(1), confidence=confidence)
        rates = []
        for g, name in enumerate(names):
            n, s, p, tp, lab, err = (int(t[g]) for t in (sizes, selected, positives, true_pos, labeled, errors))
            rates.append(GroupRates(
                group=name, rows=n, selected=s,
                selection_rate=s / n if n else None,
                selection_low=float(sel_ci.low[g]) if n else None,
                selection_high=float(sel_ci.high[g]) if n else None,
                labeled=lab, positives=p, true_positives=tp,
                tpr=tp / p if p else None,
                tpr_low=float(tpr_ci.low[g]) if p else None,
                tpr_high=float(tpr_ci.high[g]) if p else None,
                error_rate=err / lab if lab else None,
            ))
        return rates

    def _drift_alert(self, d: FeatureDrift, level: float, tests: int) -> Alert:
        name = "KS" if d.test == "ks" else "chi-square"
        return Alert("drift", d.feature, d.psi, self.psi_threshold,
                     f"{name} p-value {d.pvalue:.3g} < {level:.3g} (level {1 - self.confidence:g} over {tests} "
                     f"tests, Bonferroni) and PSI {d.psi:.3f} >= {self.psi_threshold:g}")

    def _pair_alerts(self, rate: str, names: list[str], successes: torch.Tensor, trials: torch.Tensor,
                     level: float, tests: int) -> list[Alert]:
        """The worst failing ordered pair of each rule for one rate (MOVER bounds, see the module docstring)."""
        if len(names) < 2:
            return []
        label = "selection rate" if rate == "selection" else "TPR"
        p = (successes.double() / trials.double()).tolist()
        upper = clopper_pearson(successes, trials, confidence=1 - level, alternative="less").high.tolist()
        lower = clopper_pearson(successes, trials, confidence=1 - level, alternative="greater").low.tolist()
        rules = []
        if self.min_ratio is not None:
            rules.append(("ratio", self.min_ratio, 0.0))  # contrast min_ratio * p_b - p_a > 0
        if self.max_difference is not None:
            rules.append(("difference", 1.0, self.max_difference))  # contrast p_b - p_a > max_difference
        alerts = []
        for rule, weight, allowed in rules:
            worst = None
            for a in range(len(names)):
                for b in range(len(names)):
                    if a == b:
                        continue
                    estimate = weight * p[b] - p[a]
                    bound = estimate - math.hypot(weight * (p[b] - lower[b]), upper[a] - p[a])
                    if bound > allowed and (worst is None or bound - allowed > worst[0]):
                        worst = (bound - allowed, a, b, bound)
            if worst is None:
                continue
            _, a, b, bound = worst
            where = f"at level {level:.2g} ({1 - self.confidence:g} over {tests} tests, Bonferroni)"
            if rule == "ratio":
                alerts.append(Alert(f"{rate}_ratio", f"{names[a]} vs {names[b]}",
                                    p[a] / p[b] if p[b] > 0 else math.inf, self.min_ratio,
                                    f"{label} {p[a]:.3f} of {names[a]} against {p[b]:.3f} of {names[b]}: the "
                                    f"lower bound of {self.min_ratio:g} x {p[b]:.3f} - {p[a]:.3f} is {bound:.3f} > 0 "
                                    f"{where}"))
            else:
                alerts.append(Alert(f"{rate}_difference", f"{names[a]} vs {names[b]}", p[b] - p[a],
                                    self.max_difference,
                                    f"{label} {p[b]:.3f} of {names[b]} exceeds {p[a]:.3f} of {names[a]}: the lower "
                                    f"bound of the gap is {bound:.3f} > {self.max_difference:g} {where}"))
        return alerts

    # ------------------------------------------------------------------ over time

    def series(self, decisions: Iterable[Any]) -> tuple[SeriesPoint, ...]:
        """The dashboard's time series: consecutive windows of ``window`` decisions (the last may be
        shorter), per window and group the approval rate and, over known outcomes, the error rate."""
        rows = _as_rows(decisions)
        points = []
        for w, start in enumerate(range(0, len(rows.inputs), self.window)):
            part = slice(start, start + self.window)
            chunk = _Rows(rows.inputs[part], rows.decision[part], rows.label[part], rows.seq[part], rows.time[part])
            names, sel, tpr = self._group_counts(chunk)
            times = [t for t in chunk.time if t is not None]
            for g, name in enumerate(names):
                n, labeled, errors = int(sel[0, g]), int(tpr[2, g]), int(tpr[3, g])
                if n:
                    points.append(SeriesPoint(w, min(times) if times else None, max(times) if times else None,
                                              name, n, int(sel[1, g]) / n, labeled,
                                              errors / labeled if labeled else None))
        return tuple(points)


def _spread(rates: list[float | None]) -> tuple[float | None, float | None]:
    """Smallest over largest and largest minus smallest of at least two rates; ``(None, None)`` otherwise."""
    values = [r for r in rates if r is not None and not math.isnan(r)]
    if len(values) < 2:
        return None, None
    low, high = min(values), max(values)
    return (low / high if high > 0 else None), high - low
