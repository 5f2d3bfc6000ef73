"""The privacy budget ledger: every DP training on one data set, and the epsilon they spent together.

Differential privacy's guarantee is about the *data*, not about one model. Every model
trained with DP-SGD on the same applicants spends part of their privacy, and the parts
add up: ten retrainings at epsilon 1 each are not epsilon 1. A team that retrains
monthly needs a ledger that records each training and refuses the one that would push
the total past the budget agreed for the data set.

How the parts add up: Renyi differential privacy (Mironov 2017) composes exactly by
addition. Each DP-SGD training with noise multiplier :math:`\\sigma`, sample rate
:math:`q` and :math:`T` steps has an RDP curve :math:`\\varepsilon_\\alpha` over orders
:math:`\\alpha`; the trainings together have the sum of their curves, converted once
to :math:`(\\varepsilon, \\delta)` at the budget's :math:`\\delta`. That is what Opacus's
``RDPAccountant`` does with its ``history`` of ``(noise_multiplier, sample_rate,
steps)``; the ledger hands it the concatenated history of all its entries, so its total
equals :func:`trustml_lab.privacy.epsilon_spent` for one entry and the accountant of a
single ``PrivacyEngine`` that ran all the trainings one after the other. (Adding the
trainings' epsilons instead is valid but loose; RDP composition is tighter.)

Each entry also keeps the training's own report: the delta and accountant (``"rdp"`` or
``"prv"``) it was published with, and the epsilon that gives (:func:`epsilon_spent`).

The ledger is an append-only SQLite table (triggers refuse ``UPDATE`` and ``DELETE``),
in its own file or in the registry's. The budget of a data set is written on first use
and cannot be changed afterwards by opening the ledger with another one: raising a
privacy budget is a decision, not a parameter. :meth:`PrivacyLedger.record` checks and
appends in one write transaction, so two trainings recorded at once cannot both slip
under the budget.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "privacy.db"
>>> ledger = PrivacyLedger(path, dataset="german_credit", epsilon=2.0, delta=1e-5)
>>> entry = ledger.record(noise_multiplier=1.1, sample_rate=0.01, steps=1000, name="v1")
>>> round(ledger.spent(), 3)
1.712
>>> ledger.can_afford(noise_multiplier=1.1, sample_rate=0.01, steps=1000)
False
>>> ledger.record(noise_multiplier=1.1, sample_rate=0.01, steps=1000, name="v2")
Traceback (most recent call last):
...
trustml_lab.serve.ledger.BudgetExceededError: epsilon: the budget of 'german_credit' is epsilon = 2 at delta = 1e-05; \
spent 1.712 so far, and training 'v2' would bring it to 2.381; refusing it (more noise, fewer steps or a smaller \
sample rate spend less)
>>> ledger.close()
"""

from __future__ import annotations

import functools
import math
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .._validation import check_in_range, check_int, check_positive, describe
from ..privacy import epsilon_spent
from ._db import Database, utc_now
from .registry import _check_text

__all__ = ["BudgetExceededError", "LedgerEntry", "PrivacyLedger", "composed_epsilon"]

ACCOUNTANTS = ("rdp", "prv")

SCHEMA = """
CREATE TABLE IF NOT EXISTS privacy_budgets (
    dataset TEXT PRIMARY KEY,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS privacy_ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL REFERENCES privacy_budgets(dataset),
    name TEXT NOT NULL,
    time TEXT NOT NULL,
    noise_multiplier REAL NOT NULL,
    sample_rate REAL NOT NULL,
    steps INTEGER NOT NULL,
    delta REAL NOT NULL,
    accountant TEXT NOT NULL,
    epsilon REAL NOT NULL,
    total_epsilon REAL NOT NULL
);
CREATE TRIGGER IF NOT EXISTS privacy_ledger_append_only_update BEFORE UPDATE ON privacy_ledger
BEGIN SELECT RAISE(ABORT, 'privacy_ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS privacy_ledger_append_only_delete BEFORE DELETE ON privacy_ledger
BEGIN SELECT RAISE(ABORT, 'privacy_ledger is append-only'); END;
"""


class BudgetExceededError(ValueError):
    """A training would take the data set's total epsilon past its budget."""


@dataclass(frozen=True)
class LedgerEntry:
    """One recorded DP training: its parameters, its own epsilon (at its ``delta``, with its
    ``accountant``) and the data set's total epsilon after it (RDP composition at the budget's delta)."""

    seq: int
    dataset: str
    name: str
    time: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    accountant: str
    epsilon: float
    total_epsilon: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return asdict(self)


def _entry(entry: object) -> tuple:
    if not isinstance(entry, Sequence) or len(entry) != 3:
        raise TypeError(f"history: expected (noise_multiplier, sample_rate, steps) entries, got {describe(entry)}")
    return tuple(entry)


def _check_training(noise_multiplier: float, sample_rate: float, steps: int) -> tuple[float, float, int]:
    noise_multiplier = check_positive(noise_multiplier, "noise_multiplier", strict=False)
    sample_rate = check_in_range(sample_rate, "sample_rate", 0.0, 1.0, low_open=True)
    steps = check_int(steps, "steps")
    return noise_multiplier, sample_rate, steps


def composed_epsilon(history: Sequence[tuple[float, float, int]], *, delta: float) -> float:
    """Epsilon at ``delta`` of the RDP composition of ``history`` (``(noise_multiplier, sample_rate, steps)``).

    Opacus's ``RDPAccountant`` with that history; a training without noise makes it infinite.

    >>> one = composed_epsilon([(1.1, 0.01, 1000)], delta=1e-5)
    >>> round(one, 3), round(composed_epsilon([(1.1, 0.01, 1000)] * 2, delta=1e-5), 3)  # less than twice
    (1.712, 2.381)
    """
    delta = check_in_range(delta, "delta", 0.0, 1.0, low_open=True, high_open=True)
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise TypeError(f"history: expected a sequence of (noise_multiplier, sample_rate, steps), got "
                        f"{describe(history)}")
    history = [_check_training(*_entry(entry)) for entry in history]
    return _composed(tuple((float(s), float(q), int(t)) for s, q, t in history), float(delta))


@functools.lru_cache(maxsize=1024)
def _composed(history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    """Opacus's answer, cached: a pure function of the history (each call costs about 0.1 s)."""
    if not history:
        return 0.0
    if any(sigma == 0 for sigma, _, _ in history):
        return math.inf
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = list(history)
    return float(accountant.get_epsilon(delta=delta))


class PrivacyLedger:
    """The DP trainings on ``dataset``, in the SQLite file ``path``, against a budget of
    ``(epsilon, delta)``: the total may never exceed ``epsilon`` at ``delta``.

    The budget is stored on first use; opening the ledger of the same data set with a
    different budget is a ``ValueError``. Thread-safe, like the registry.
    """

    def __init__(self, path: str | os.PathLike, *, dataset: str, epsilon: float, delta: float,
                 busy_timeout_s: float = 30.0) -> None:
        self.dataset = _check_text(dataset, "dataset")
        self.epsilon = check_positive(epsilon, "epsilon")
        self.delta = check_in_range(delta, "delta", 0.0, 1.0, low_open=True, high_open=True)
        self._db = Database(path, SCHEMA, busy_timeout_s=busy_timeout_s)
        self.path = self._db.path
        with self._db.write() as conn:
            row = conn.execute("SELECT epsilon, delta FROM privacy_budgets WHERE dataset = ?",
                               (self.dataset,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO privacy_budgets (dataset, epsilon, delta, created_at) VALUES (?, ?, ?, ?)",
                             (self.dataset, self.epsilon, self.delta, utc_now()))
            elif (row["epsilon"], row["delta"]) != (self.epsilon, self.delta):
                self._db.close()
                raise ValueError(f"epsilon: the ledger of {self.dataset!r} was opened with the budget epsilon = "
                                 f"{row['epsilon']:g} at delta = {row['delta']:g}, got epsilon = {self.epsilon:g} at "
                                 f"delta = {self.delta:g}; a budget cannot be changed once trainings count against it")

    def __enter__(self) -> PrivacyLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connections."""
        self._db.close()

    def __repr__(self) -> str:
        return f"PrivacyLedger({str(self.path)!r}, dataset={self.dataset!r}, epsilon={self.epsilon:g}, " \
               f"delta={self.delta:g})"

    def _history(self, conn: sqlite3.Connection) -> list[tuple[float, float, int]]:
        rows = conn.execute("SELECT noise_multiplier, sample_rate, steps FROM privacy_ledger WHERE dataset = ? "
                            "ORDER BY seq", (self.dataset,)).fetchall()
        return [(float(r[0]), float(r[1]), int(r[2])) for r in rows]

    def entries(self) -> list[LedgerEntry]:
        """The recorded trainings of this data set, oldest first."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT * FROM privacy_ledger WHERE dataset = ? ORDER BY seq",
                                (self.dataset,)).fetchall()
        return [LedgerEntry(int(r["seq"]), r["dataset"], r["name"], r["time"], float(r["noise_multiplier"]),
                            float(r["sample_rate"]), int(r["steps"]), float(r["delta"]), r["accountant"],
                            float(r["epsilon"]), float(r["total_epsilon"])) for r in rows]

    def spent(self) -> float:
        """The total epsilon of the recorded trainings at the budget's delta (0 with none)."""
        with self._db.read() as conn:
            return composed_epsilon(self._history(conn), delta=self.delta)

    def remaining(self) -> float:
        """The budget's epsilon minus :meth:`spent` (RDP does not split exactly: a quote, not a promise)."""
        return self.epsilon - self.spent()

    def epsilon_after(self, *, noise_multiplier: float, sample_rate: float, steps: int) -> float:
        """The total epsilon if one more training with these parameters were recorded."""
        training = _check_training(noise_multiplier, sample_rate, steps)
        with self._db.read() as conn:
            return composed_epsilon([*self._history(conn), training], delta=self.delta)

    def can_afford(self, *, noise_multiplier: float, sample_rate: float, steps: int) -> bool:
        """Whether that training keeps the total within the budget."""
        return self.epsilon_after(noise_multiplier=noise_multiplier, sample_rate=sample_rate,
                                  steps=steps) <= self.epsilon

    def record(self, *, noise_multiplier: float, sample_rate: float, steps: int, delta: float | None = None,
               accountant: str = "rdp", name: str = "training") -> LedgerEntry:
        """Append a training, or raise :class:`BudgetExceededError` (naming the budget) if it does not fit.

        ``delta`` and ``accountant`` are those the training reports its own epsilon with
        (default: the budget's delta, RDP); the total is always RDP composition at the
        budget's delta. Record a training *before* running it: a training refused here
        must not run.
        """
        training = _check_training(noise_multiplier, sample_rate, steps)
        delta = self.delta if delta is None else check_in_range(delta, "delta", 0.0, 1.0, low_open=True,
                                                                high_open=True)
        if accountant not in ACCOUNTANTS:
            raise ValueError(f"accountant: expected one of {ACCOUNTANTS}, got {accountant!r}")
        name = _check_text(name, "name")
        own = epsilon_spent(noise_multiplier=training[0], sample_rate=training[1], steps=training[2], delta=delta,
                            accountant=accountant)
        with self._db.write() as conn:
            history = self._history(conn)
            total = composed_epsilon([*history, training], delta=self.delta)
            if total > self.epsilon:
                before = composed_epsilon(history, delta=self.delta)
                raise BudgetExceededError(
                    f"epsilon: the budget of {self.dataset!r} is epsilon = {self.epsilon:g} at delta = "
                    f"{self.delta:g}; spent {before:.3f} so far, and training {name!r} would bring it to "
                    f"{total:.3f}; refusing it (more noise, fewer steps or a smaller sample rate spend less)")
            now = utc_now()
            cursor = conn.execute(
                "INSERT INTO privacy_ledger (dataset, name, time, noise_multiplier, sample_rate, steps, delta, "
                "accountant, epsilon, total_epsilon) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.dataset, name, now, *training, delta, accountant, own, total))
            seq = int(cursor.lastrowid)
        return LedgerEntry(seq, self.dataset, name, now, *training, delta, accountant, own, total)
