"""trustml_lab.serve.ledger: the privacy budget ledger."""

from api_tables import Bad
from api_tables.serve import folder, ledger
from trustml_lab.serve import ledger as L

MODULE = L

_training = {"noise_multiplier": 1.1, "sample_rate": 0.01, "steps": 100}


def _spent():
    book = ledger(epsilon=1.75)  # 1,000 steps spend 1.71; 100 more do not fit
    book.record(noise_multiplier=1.1, sample_rate=0.01, steps=1000)
    return book


VALID = {
    "PrivacyLedger": lambda: ((folder() / "p.db",), {"dataset": "adult", "epsilon": 3.0, "delta": 1e-5,
                                                     "busy_timeout_s": 5.0}),
    "PrivacyLedger.record": lambda: ((ledger(),), {**_training, "delta": 1e-6, "accountant": "rdp", "name": "v1"}),
    "PrivacyLedger.can_afford": lambda: ((ledger(),), dict(_training)),
    "PrivacyLedger.epsilon_after": lambda: ((ledger(),), dict(_training)),
    "PrivacyLedger.spent": lambda: ((ledger(),), {}),
    "PrivacyLedger.remaining": lambda: ((ledger(),), {}),
    "PrivacyLedger.entries": lambda: ((ledger(),), {}),
    "composed_epsilon": lambda: (([(1.1, 0.01, 100), (2.0, 0.02, 50)],), {"delta": 1e-5}),
}

BAD = [
    Bad("PrivacyLedger.record", lambda: ((_spent(),), dict(_training)), "epsilon", "a training over the budget",
        errors=(L.BudgetExceededError,), match="refusing it"),
    Bad("PrivacyLedger.record", lambda: ((ledger(),), {**_training, "noise_multiplier": 0.0}), "epsilon",
        "no noise: infinite epsilon", errors=(L.BudgetExceededError,)),
    Bad("PrivacyLedger.record", lambda: ((ledger(),), {**_training, "sample_rate": 0.0}), "sample_rate",
        "a sample rate of 0"),
    Bad("PrivacyLedger.record", lambda: ((ledger(),), {**_training, "sample_rate": 1.5}), "sample_rate",
        "a sample rate above 1"),
    Bad("PrivacyLedger.record", lambda: ((ledger(),), {**_training, "steps": 0}), "steps", "no steps"),
    Bad("PrivacyLedger.record", lambda: ((ledger(),), {**_training, "steps": 100.0}), "steps", "float steps"),
    Bad("PrivacyLedger.record", lambda: ((ledger(),), {**_training, "accountant": "gdp"}), "accountant",
        "an unknown accountant"),
    Bad("PrivacyLedger.record", lambda: ((ledger(),), {**_training, "delta": 1.0}), "delta", "delta 1"),
    Bad("PrivacyLedger.can_afford", lambda: ((ledger(),), {**_training, "noise_multiplier": -1.0}),
        "noise_multiplier", "a negative noise multiplier"),
    Bad("PrivacyLedger", lambda: ((folder() / "p.db",), {"dataset": "adult", "epsilon": 0.0, "delta": 1e-5}),
        "epsilon", "a budget of 0"),
    Bad("PrivacyLedger", lambda: ((folder() / "p.db",), {"dataset": "", "epsilon": 1.0, "delta": 1e-5}),
        "dataset", "no data set name"),
    Bad("composed_epsilon", lambda: (([(1.1, 0.01)],), {"delta": 1e-5}), "history", "an entry without steps"),
    Bad("composed_epsilon", lambda: (("rdp",), {"delta": 1e-5}), "history", "a text instead of a history"),
]

EXEMPT = {
    "BudgetExceededError": "an exception class",
    "LedgerEntry": "a frozen record, returned by PrivacyLedger.record and entries",
}

KNOWN_FAILURES = set()
