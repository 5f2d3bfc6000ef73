"""trustml_lab.serve.ledger against Opacus's accountants: RDP composition of several trainings, budget refusals."""

from __future__ import annotations

import math
import sqlite3
import threading

import pytest

from trustml_lab.privacy import epsilon_spent
from trustml_lab.serve.ledger import BudgetExceededError, PrivacyLedger, composed_epsilon

opacus = pytest.importorskip("opacus")
from opacus.accountants import RDPAccountant  # noqa: E402

DELTA = 1e-5


@pytest.fixture
def ledger(tmp_path):
    with PrivacyLedger(tmp_path / "privacy.db", dataset="adult", epsilon=8.0, delta=DELTA) as book:
        yield book


def test_one_entry_equals_epsilon_spent(ledger):
    entry = ledger.record(noise_multiplier=1.0, sample_rate=0.004, steps=2500, name="v1")
    expected = epsilon_spent(noise_multiplier=1.0, sample_rate=0.004, steps=2500, delta=DELTA)
    assert entry.epsilon == pytest.approx(expected, rel=1e-12)
    assert entry.total_epsilon == pytest.approx(expected, rel=1e-12)
    assert ledger.spent() == pytest.approx(expected, rel=1e-12)


def test_several_trainings_compose_like_one_opacus_accountant_that_ran_them_all(ledger):
    """Opacus's accountant stepped through three trainings one step at a time (as PrivacyEngine does)."""
    trainings = [(1.1, 0.01, 300), (0.8, 0.02, 200), (1.5, 0.005, 400)]
    accountant = RDPAccountant()
    for sigma, q, steps in trainings:
        ledger.record(noise_multiplier=sigma, sample_rate=q, steps=steps)
        for _ in range(steps):
            accountant.step(noise_multiplier=sigma, sample_rate=q)
    assert accountant.history == [(s, q, t) for s, q, t in trainings]
    assert ledger.spent() == pytest.approx(accountant.get_epsilon(delta=DELTA), rel=1e-12)
    separate = sum(epsilon_spent(noise_multiplier=s, sample_rate=q, steps=t, delta=DELTA) for s, q, t in trainings)
    assert ledger.spent() < separate  # RDP composition is tighter than adding the epsilons
    totals = [e.total_epsilon for e in ledger.entries()]
    assert totals == sorted(totals) and totals[-1] == pytest.approx(ledger.spent())


def test_a_training_over_budget_is_refused_naming_the_budget_and_not_recorded(tmp_path):
    with PrivacyLedger(tmp_path / "p.db", dataset="german_credit", epsilon=2.0, delta=DELTA) as book:
        training = {"noise_multiplier": 1.1, "sample_rate": 0.01, "steps": 1000}
        assert book.can_afford(**training)
        book.record(**training, name="v1")
        assert not book.can_afford(**training)
        assert book.epsilon_after(**training) > 2.0
        with pytest.raises(BudgetExceededError, match=r"epsilon: the budget of 'german_credit' is epsilon = 2 at "
                                                      r"delta = 1e-05; spent 1\.712 so far, and training 'v2'"):
            book.record(**training, name="v2")
        assert [e.name for e in book.entries()] == ["v1"]
        assert book.remaining() == pytest.approx(2.0 - book.spent())
        smaller = {"noise_multiplier": 2.0, "sample_rate": 0.01, "steps": 200}
        assert book.can_afford(**smaller)
        book.record(**smaller, name="v2-small")
        assert book.spent() <= 2.0


def test_no_noise_is_infinite_epsilon_and_always_refused(ledger):
    with pytest.raises(BudgetExceededError, match="inf"):
        ledger.record(noise_multiplier=0.0, sample_rate=0.01, steps=10)
    assert composed_epsilon([(0.0, 0.01, 10)], delta=DELTA) == math.inf
    assert composed_epsilon([], delta=DELTA) == 0.0


def test_each_entry_keeps_its_own_report_with_its_accountant(ledger):
    entry = ledger.record(noise_multiplier=1.0, sample_rate=0.01, steps=500, delta=1e-6, accountant="prv")
    assert entry.epsilon == pytest.approx(epsilon_spent(noise_multiplier=1.0, sample_rate=0.01, steps=500,
                                                        delta=1e-6, accountant="prv"))
    assert entry.total_epsilon == pytest.approx(epsilon_spent(noise_multiplier=1.0, sample_rate=0.01, steps=500,
                                                              delta=DELTA))  # the total: RDP at the budget's delta


def test_the_budget_is_fixed_once_trainings_count_against_it(tmp_path):
    path = tmp_path / "p.db"
    with PrivacyLedger(path, dataset="adult", epsilon=3.0, delta=DELTA) as book:
        book.record(noise_multiplier=1.0, sample_rate=0.01, steps=100)
    with pytest.raises(ValueError, match="epsilon: the ledger of 'adult' was opened with the budget epsilon = 3"):
        PrivacyLedger(path, dataset="adult", epsilon=30.0, delta=DELTA)
    with PrivacyLedger(path, dataset="adult", epsilon=3.0, delta=DELTA) as again:
        assert len(again.entries()) == 1
    with PrivacyLedger(path, dataset="german_credit", epsilon=1.0, delta=DELTA) as other:
        assert other.entries() == [] and other.spent() == 0.0  # budgets are per data set


def test_the_ledger_is_append_only(ledger):
    ledger.record(noise_multiplier=1.0, sample_rate=0.01, steps=100)
    conn = sqlite3.connect(ledger.path)
    try:
        for statement in ("UPDATE privacy_ledger SET steps = 1", "DELETE FROM privacy_ledger"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(statement)
    finally:
        conn.close()


def test_concurrent_recordings_cannot_both_slip_under_the_budget(tmp_path):
    """Four threads on two ledger objects try to record the same training; only those that fit get in."""
    path = tmp_path / "p.db"
    training = {"noise_multiplier": 1.1, "sample_rate": 0.01, "steps": 1000}
    budget = composed_epsilon([tuple(training.values())] * 2, delta=DELTA) * 1.01  # 2 trainings fit, 3 do not
    books = [PrivacyLedger(path, dataset="adult", epsilon=budget, delta=DELTA) for _ in range(2)]
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def worker(i: int) -> None:
        start.wait()
        try:
            books[i % 2].record(**training, name=f"t{i}")
            outcomes.append("recorded")
        except BudgetExceededError:
            outcomes.append("refused")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    fits = sum(composed_epsilon([tuple(training.values())] * k, delta=DELTA) <= budget for k in range(1, 5))
    assert outcomes.count("recorded") == fits == 2 and outcomes.count("refused") == 2
    assert books[0].spent() <= budget
    for book in books:
        book.close()


@pytest.mark.parametrize("kwargs, arg", [
    ({"noise_multiplier": float("nan")}, "noise_multiplier"),
    ({"noise_multiplier": -1.0}, "noise_multiplier"),
    ({"sample_rate": 0.0}, "sample_rate"),
    ({"sample_rate": 1.5}, "sample_rate"),
    ({"steps": 0}, "steps"),
    ({"steps": 10.0}, "steps"),
    ({"delta": 1.0}, "delta"),
    ({"accountant": "gdp"}, "accountant"),
    ({"name": ""}, "name"),
])
def test_bad_trainings_are_refused_naming_the_argument(ledger, kwargs, arg):
    training = {"noise_multiplier": 1.0, "sample_rate": 0.01, "steps": 100, **kwargs}
    with pytest.raises((ValueError, TypeError), match=arg):
        ledger.record(**training)
    assert ledger.entries() == []


@pytest.mark.parametrize("kwargs, arg", [
    ({"epsilon": 0.0}, "epsilon"), ({"epsilon": float("inf")}, "epsilon"), ({"delta": 0.0}, "delta"),
    ({"dataset": ""}, "dataset"), ({"dataset": 3}, "dataset"),
])
def test_bad_budgets_are_refused(tmp_path, kwargs, arg):
    with pytest.raises((ValueError, TypeError), match=arg):
        PrivacyLedger(tmp_path / "p.db", **{"dataset": "adult", "epsilon": 1.0, "delta": DELTA, **kwargs})
