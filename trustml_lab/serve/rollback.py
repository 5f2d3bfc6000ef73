"""From alert to rollback: the rule that connects the monitor to the registry.

One call, :func:`check_live`, is the whole policy, so the service (and a cron job, and a
notebook) apply the same one:

1. take the live version and its decisions *since it went live* (the last
   ``monitor.window`` of them, with the outcomes that have arrived);
2. evaluate them with the :class:`~trustml_lab.serve.monitor.Monitor`;
3. if the report has an alert of a kind in ``rollback_on`` (``"fairness"``: a
   selection-rate or TPR rule failed; ``"drift"``: a feature drifted), mark the version
   unhealthy with the alerts as the reason; the registry's rollback rule then serves the
   healthy version that was live before it
   (:meth:`~trustml_lab.serve.registry.Registry.mark_unhealthy`).

A version is judged only on its own traffic, so the version rolled back to starts with
an empty window and is not blamed for what its successor did. If the traffic itself has
drifted, the older version will see the same drift and be rolled back in turn once its
window fills; with nothing healthy left the registry raises
:class:`~trustml_lab.serve.registry.NoHealthyVersionError` and the service stops
deciding: a person must look. That is the intended end state of a drift the models
were never trained for.

>>> import tempfile, pathlib, pandas as pd
>>> from trustml_lab.serve.monitor import Monitor
>>> from trustml_lab.serve.registry import Registry
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> registry = Registry(folder / "registry.db")
>>> for v in ("v1", "v2"):
...     _ = (folder / f"{v}.safetensors").write_bytes(v.encode())
...     _ = registry.register(v, {"weights": folder / f"{v}.safetensors"})
...     _ = registry.promote(v)
>>> monitor = Monitor(pd.DataFrame({"sex": ["f", "m"] * 100}), group="sex", window=100, min_window=100)
>>> _ = registry.log_decisions([{"version": "v2", "inputs": {"sex": "fm"[i % 2]}, "score": 0.5,
...                              "decision": i % 2} for i in range(100)])  # approves men only
>>> result = check_live(registry, monitor)
>>> result.rolled_back, result.version, result.live
(True, 'v2', 'v1')
>>> registry.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .._validation import describe
from .monitor import Monitor, WindowReport
from .registry import Registry

__all__ = ["CheckResult", "check_live"]

TRIGGERS = ("fairness", "drift")


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check_live` saw and did: the version checked, its report, whether it was rolled
    back, the reason recorded, and the version live afterwards (``None`` when none is)."""

    version: str
    report: WindowReport
    rolled_back: bool
    reason: str | None
    live: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        data = asdict(self)
        data["report"] = self.report.to_dict()
        return data


def _check_triggers(rollback_on: Any) -> tuple[str, ...]:
    if isinstance(rollback_on, str) or not isinstance(rollback_on, Sequence):
        raise TypeError(f"rollback_on: expected a sequence drawn from {TRIGGERS}, got {describe(rollback_on)}")
    unknown = [t for t in rollback_on if t not in TRIGGERS]
    if unknown:
        raise ValueError(f"rollback_on: expected kinds drawn from {TRIGGERS}, got {unknown[0]!r}")
    return tuple(rollback_on)


def check_live(registry: Registry, monitor: Monitor, *, rollback_on: Sequence[str] = TRIGGERS) -> CheckResult:
    """Evaluate the live version's recent traffic and roll it back on an alert of a kind in ``rollback_on``.

    Raises :class:`~trustml_lab.serve.registry.NoHealthyVersionError` when nothing is
    live, or when the rollback leaves nothing to serve (the version is marked all the same).
    """
    if not isinstance(registry, Registry):
        raise TypeError(f"registry: expected a trustml_lab.serve.Registry, got {describe(registry)}")
    if not isinstance(monitor, Monitor):
        raise TypeError(f"monitor: expected a trustml_lab.serve.Monitor, got {describe(monitor)}")
    triggers = _check_triggers(rollback_on)
    live = registry.live()
    rows = registry.decisions(version=live.version, after=live.live_since, last=monitor.window)
    report = monitor.evaluate(rows, version=live.version)
    firing = [a for a in report.alerts if ("fairness" if a.is_fairness else "drift") in triggers]
    if not firing:
        return CheckResult(live.version, report, False, None, live.version)
    reason = "monitor alerts: " + "; ".join(f"{a.kind} {a.feature_or_group} ({a.evidence})" for a in firing)
    registry.mark_unhealthy(live.version, reason)
    return CheckResult(live.version, report, True, reason, registry.live().version)
