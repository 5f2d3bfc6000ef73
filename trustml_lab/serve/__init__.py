"""Chapter 6, trustworthy ML in production: the machinery of a service that can be trusted.

Each piece is plain Python over one SQLite file (stdlib ``sqlite3``), usable without
the web service, so that no trust logic lives only in the service:

- :mod:`trustml_lab.serve.registry`: model versions with the sha256 of every artefact
  (refuse to serve a tampered file), the live version and the rollback rule, and the
  append-only decision log with outcomes attached later;
- :mod:`trustml_lab.serve.drift`: PSI, Kolmogorov-Smirnov and chi-square drift kernels,
  equal to scipy's tests;
- :mod:`trustml_lab.serve.monitor`: windowed per-group selection rates and TPRs with
  Clopper-Pearson intervals, per-feature drift, and alerts that hold a stated
  family-wise false-alarm rate (Bonferroni);
- :mod:`trustml_lab.serve.rollback`: :func:`check_live`, from an alert to a rollback;
- :mod:`trustml_lab.serve.ledger`: the privacy budget ledger of DP trainings on one data
  set (RDP composition with Opacus's accountant; refuses a training over budget).

The names most used are importable from here: ``from trustml_lab.serve import Registry,
Monitor, PrivacyLedger, check_live``. The HTTP layer (FastAPI) is built on these and
imports them; nothing here imports FastAPI.
"""

from __future__ import annotations

from .drift import TwoSampleTest, chi_square_test, ks_test, psi, psi_categorical
from .ledger import BudgetExceededError, LedgerEntry, PrivacyLedger
from .monitor import Alert, FeatureDrift, GroupRates, Monitor, SeriesPoint, WindowReport
from .registry import (
    Artefact,
    ArtefactError,
    DecisionRecord,
    NoHealthyVersionError,
    Registry,
    RegistryEvent,
    VersionRecord,
)
from .rollback import CheckResult, check_live

__all__ = [
    "Alert",
    "Artefact",
    "ArtefactError",
    "BudgetExceededError",
    "CheckResult",
    "DecisionRecord",
    "FeatureDrift",
    "GroupRates",
    "LedgerEntry",
    "Monitor",
    "NoHealthyVersionError",
    "PrivacyLedger",
    "Registry",
    "RegistryEvent",
    "SeriesPoint",
    "TwoSampleTest",
    "VersionRecord",
    "WindowReport",
    "check_live",
    "chi_square_test",
    "ks_test",
    "psi",
    "psi_categorical",
]
