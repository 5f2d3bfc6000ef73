"""trustml_lab.serve.rollback: a fairness or drift alert on the live version's own traffic rolls it back."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from trustml_lab.data import load_german_credit
from trustml_lab.models import MLP, save_weights
from trustml_lab.serve import Monitor, NoHealthyVersionError, Registry, check_live


@pytest.fixture(scope="module")
def german():
    frame = load_german_credit()
    features = [c for c in frame.columns if c != "good_credit"]
    return frame, features


@pytest.fixture
def service(tmp_path, german):
    """A registry with v1 then v2 promoted, and a monitor on the first 700 German applicants."""
    frame, features = german
    registry = Registry(tmp_path / "registry.db")
    for v in ("v1", "v2"):
        save_weights(MLP(3), tmp_path / f"{v}.safetensors")
        registry.register(v, {"weights": tmp_path / f"{v}.safetensors"})
        registry.promote(v)
    monitor = Monitor(frame[features].iloc[:700], group="sex", window=300, min_window=200)
    yield registry, monitor
    registry.close()


def traffic(frame, features, index, approve):
    records = frame[features].to_dict("records")
    return [{"version": None, "inputs": records[i], "score": float(a), "decision": int(a)}
            for i, a in zip(index, approve)]


def log(registry, rows, version):
    registry.log_decisions([{**row, "version": version} for row in rows])


def test_unchanged_fair_traffic_keeps_the_version_live(service, german):
    registry, monitor = service
    frame, features = german
    index = np.arange(700, 1000)
    log(registry, traffic(frame, features, index, np.arange(300) % 2 == 0), "v2")
    result = check_live(registry, monitor)
    assert (result.version, result.rolled_back, result.live, result.reason) == ("v2", False, "v2", None)
    assert result.report.rows == 300 and result.report.judged and not result.report.alerted
    json.dumps(result.to_dict(), allow_nan=False)


def test_a_fairness_alert_rolls_back_to_the_previous_version(service, german):
    registry, monitor = service
    frame, features = german
    index = np.arange(700, 1000)
    male = (frame["sex"] == "male").to_numpy()[index]
    log(registry, traffic(frame, features, index, male), "v2")  # approves men only
    result = check_live(registry, monitor)
    assert result.rolled_back and (result.version, result.live) == ("v2", "v1")
    assert "selection_ratio female vs male" in result.reason
    v2 = registry.get("v2")
    assert v2.status == "unhealthy" and v2.reason == result.reason
    again = check_live(registry, monitor)  # v1 is judged on its own traffic, and has none yet
    assert not again.rolled_back and again.report.rows == 0 and again.live == "v1"


def test_drift_rolls_back_only_when_asked(service, german):
    registry, monitor = service
    frame, features = german
    shifted = frame.copy()
    shifted["age"] = shifted["age"] + 15  # fifteen years older: a covariate shift
    shifted["credit_amount"] = shifted["credit_amount"] * 2
    index = np.arange(700, 1000)
    log(registry, traffic(shifted, features, index, np.arange(300) % 2 == 0), "v2")
    kept = check_live(registry, monitor, rollback_on=("fairness",))
    assert not kept.rolled_back and {a.feature_or_group for a in kept.report.alerts} >= {"age", "credit_amount"}
    rolled = check_live(registry, monitor)
    assert rolled.rolled_back and rolled.live == "v1" and "drift age" in rolled.reason


def test_persistent_drift_ends_with_nothing_served(service, german):
    registry, monitor = service
    frame, features = german
    shifted = frame.assign(age=frame["age"] + 15)
    index = np.arange(700, 1000)
    log(registry, traffic(shifted, features, index, np.arange(300) % 2 == 0), "v2")
    assert check_live(registry, monitor).live == "v1"
    log(registry, traffic(shifted, features, index, np.arange(300) % 2 == 0), "v1")
    with pytest.raises(NoHealthyVersionError, match="no version is live"):
        check_live(registry, monitor)
    assert [v.status for v in registry.versions()] == ["unhealthy", "unhealthy"]


def test_only_traffic_since_the_version_went_live_is_judged(service, german):
    registry, monitor = service
    frame, features = german
    index = np.arange(700, 1000)
    male = (frame["sex"] == "male").to_numpy()[index]
    registry.promote("v1")
    log(registry, traffic(frame, features, index, male), "v1")  # v1 misbehaves, is rolled back to v2
    assert check_live(registry, monitor).live == "v2"
    registry.mark_healthy("v1", "retrained thresholds")
    registry.promote("v1")  # its unfair decisions from before are not in its new window
    assert check_live(registry, monitor).report.rows == 0


@pytest.mark.parametrize("kwargs, arg", [
    ({"rollback_on": "fairness"}, "rollback_on"), ({"rollback_on": ("latency",)}, "rollback_on"),
    ({"registry": "registry.db"}, "registry"), ({"monitor": pd.DataFrame()}, "monitor"),
])
def test_bad_arguments_are_refused(service, kwargs, arg):
    registry, monitor = service
    call = {"registry": registry, "monitor": monitor, **kwargs}
    with pytest.raises((TypeError, ValueError), match=arg):
        check_live(call.pop("registry"), call.pop("monitor"), **call)
