"""trustml_lab.serve.registry: sha256-checked versions, the rollback rule, the append-only decision log, concurrency."""

from __future__ import annotations

import ast
import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from trustml_lab.models import MLP, load_weights, save_weights
from trustml_lab.serve import registry as R
from trustml_lab.serve.registry import ArtefactError, NoHealthyVersionError, Registry


def artefacts(folder: Path, version: str) -> dict[str, Path]:
    """A real model version: safetensors weights of an MLP, a schema JSON and a model card."""
    folder = folder / version
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(MLP(3), folder / "weights.safetensors")
    (folder / "schema.json").write_text(json.dumps({"features": ["a", "b", "c"], "version": version}))
    (folder / "model_card.md").write_text(f"# Model {version}\n")
    return {"weights": folder / "weights.safetensors", "schema": folder / "schema.json",
            "model_card": folder / "model_card.md"}


@pytest.fixture
def registry(tmp_path):
    with Registry(tmp_path / "registry.db") as reg:
        yield reg


def registered(registry, tmp_path, *versions, promote=True):
    for v in versions:
        registry.register(v, artefacts(tmp_path, v))
        if promote:
            registry.promote(v)


# --------------------------------------------------------------------------- versions and artefacts

def test_register_stores_the_sha256_of_every_artefact(registry, tmp_path):
    files = artefacts(tmp_path, "v1")
    record = registry.register("v1", files)
    assert {a.name for a in record.artefacts} == set(files)
    for a in record.artefacts:
        assert a.sha256 == __import__("hashlib").sha256(Path(a.path).read_bytes()).hexdigest()
    assert record.status == "healthy" and not record.live and record.live_since is None
    assert record.directory == str(tmp_path / "v1")
    assert dt.datetime.fromisoformat(record.created_at).utcoffset() == dt.timedelta(0)
    json.dumps(record.to_dict())


def test_the_live_model_loads_through_its_registered_sha256(registry, tmp_path):
    registered(registry, tmp_path, "v1")
    live = registry.verified_live()
    weights = live.artefact("weights")
    model = load_weights(MLP(3), weights.path, sha256=weights.sha256)
    assert not model.training


def test_a_tampered_artefact_is_refused_naming_the_file(registry, tmp_path):
    files = artefacts(tmp_path, "v1")
    registry.register("v1", files)
    registry.verify("v1")
    files["schema"].write_text('{"features": ["a", "b", "c", "d"]}')
    with pytest.raises(ArtefactError, match="'schema' of version 'v1'.*refusing to serve"):
        registry.verify("v1")
    with pytest.raises(ArtefactError, match="schema"):
        registry.promote("v1")
    files["schema"].unlink()
    with pytest.raises(ArtefactError, match="'schema' of version 'v1' is missing"):
        registry.verify("v1")


def test_versions_are_registered_once_and_unknown_ones_named(registry, tmp_path):
    registered(registry, tmp_path, "v1", promote=False)
    with pytest.raises(ValueError, match="version: 'v1' is already registered"):
        registry.register("v1", artefacts(tmp_path, "v1b"))
    with pytest.raises(ValueError, match=r"version: 'v9' is not registered; registered versions: \['v1'\]"):
        registry.get("v9")
    with pytest.raises(ValueError, match="version"):
        registry.promote("v9")
    with pytest.raises(ValueError, match="version"):
        registry.mark_unhealthy("v9", "why")


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"])
def test_pickle_based_artefacts_are_refused(registry, tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x80\x04K\x01.")  # a pickle of the int 1
    with pytest.raises(ValueError, match="files: 'weights'.*pickle"):
        registry.register("v1", {"weights": path})


@pytest.mark.parametrize("version", ["", "v 1", "../v1", "v1'; DROP TABLE versions; --", "x" * 65, "-v1"])
def test_version_ids_are_plain_names(registry, tmp_path, version):
    with pytest.raises(ValueError, match="version"):
        registry.register(version, artefacts(tmp_path, "ok"))


def test_nothing_live_is_said_loudly(registry, tmp_path):
    with pytest.raises(NoHealthyVersionError, match="no version has been promoted"):
        registry.live()
    registered(registry, tmp_path, "v1", promote=False)
    with pytest.raises(NoHealthyVersionError):
        registry.verified_live()


# --------------------------------------------------------------------------- rollback

def test_rollback_serves_the_previous_healthy_version_then_refuses(registry, tmp_path):
    registered(registry, tmp_path, "v1", "v2", "v3")
    assert registry.live().version == "v3"
    marked = registry.mark_unhealthy("v3", "fairness alert")
    assert marked.status == "unhealthy" and marked.reason == "fairness alert" and not marked.live
    assert registry.live().version == "v2"
    registry.mark_unhealthy("v2", "drift alert")
    assert registry.live().version == "v1"
    with pytest.raises(NoHealthyVersionError, match="no version is live"):
        registry.mark_unhealthy("v1", "drift alert again")
    with pytest.raises(NoHealthyVersionError, match="'v1'.*drift alert again"):
        registry.live()
    assert [v.status for v in registry.versions()] == ["unhealthy"] * 3
    events = [(e.version, e.event) for e in registry.history()]
    assert events[-5:] == [("v3", "unhealthy"), ("v2", "rollback"), ("v2", "unhealthy"), ("v1", "rollback"),
                           ("v1", "unhealthy")]


def test_rollback_goes_to_the_most_recently_live_and_skips_unpromoted_and_tampered(registry, tmp_path):
    files = {v: artefacts(tmp_path, v) for v in ("v1", "v2", "v3", "v4")}
    for v in ("v1", "v2", "v3", "v4"):
        registry.register(v, files[v])
    for v in ("v1", "v2", "v4"):  # v3 is registered but never served
        registry.promote(v)
    registry.promote("v1")  # an operator rolled back by hand; v4 was live before v1 now
    registry.promote("v4")
    files["v1"]["weights"].write_bytes(b"not the tested weights")
    registry.mark_unhealthy("v4", "alert")
    assert registry.live().version == "v2"  # v1 was more recent but its weights changed; v3 never served
    v1 = registry.get("v1")
    assert v1.status == "unhealthy" and "artefact check failed during rollback" in v1.reason


def test_marking_a_version_that_is_not_live_changes_nothing_served(registry, tmp_path):
    registered(registry, tmp_path, "v1", "v2")
    registry.mark_unhealthy("v1", "found a bug")
    assert registry.live().version == "v2"
    with pytest.raises(ValueError, match="version: 'v1' is unhealthy"):
        registry.promote("v1")
    registry.mark_healthy("v1", "bug fixed in the encoder, weights unchanged")
    assert registry.promote("v1").live


def test_verified_live_falls_back_when_the_live_files_were_altered(registry, tmp_path):
    files = {v: artefacts(tmp_path, v) for v in ("v1", "v2")}
    for v in ("v1", "v2"):
        registry.register(v, files[v])
        registry.promote(v)
    files["v2"]["weights"].write_bytes(b"tampered")
    assert registry.verified_live().version == "v1"
    assert "artefact check failed" in registry.get("v2").reason


def test_the_registry_persists_across_processes_of_the_service(tmp_path):
    path = tmp_path / "registry.db"
    with Registry(path) as first:
        registered(first, tmp_path, "v1", "v2")
        first.log_decision(version="v2", inputs={"a": 1}, score=0.5, decision=1, request_id="r1")
    with Registry(path) as second:
        assert second.live().version == "v2"
        assert second.decisions()[0].request_id == "r1"


# --------------------------------------------------------------------------- decisions

def test_decisions_and_labels_round_trip(registry, tmp_path):
    registered(registry, tmp_path, "v1")
    when = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    record = registry.log_decision(version="v1", inputs={"age": np.int64(35), "purpose": "car", "ok": True,
                                                         "amount": np.float32(1200.5)},
                                   score=np.float64(0.81), decision=np.int64(1), request_id="r-1", time=when)
    assert record.time == "2025-03-01T10:00:00.000000+00:00"  # stored in UTC
    assert record.inputs == {"age": 35, "purpose": "car", "ok": True, "amount": 1200.5}
    labeled = registry.record_label("r-1", 0)
    assert (labeled.label, labeled.decision, labeled.score) == (0, 1, 0.81)
    assert registry.decisions() == [labeled]
    with pytest.raises(ValueError, match="request_id: 'r-1' already has a label"):
        registry.record_label("r-1", 1)
    with pytest.raises(ValueError, match="request_id: no decision was logged under 'r-2'"):
        registry.record_label("r-2", 1)
    auto = registry.log_decision(version="v1", inputs={}, score=0.1, decision=0)
    assert len(auto.request_id) == 36 and auto.seq == record.seq + 1


def test_the_decision_log_is_append_only(registry, tmp_path):
    registered(registry, tmp_path, "v1")
    registry.log_decision(version="v1", inputs={"a": 1}, score=0.2, decision=0, request_id="r1")
    conn = sqlite3.connect(registry.path)
    try:
        for statement in ("UPDATE decisions SET decision = 1", "DELETE FROM decisions"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(statement)
    finally:
        conn.close()
    assert registry.decisions()[0].decision == 0


def test_request_ids_are_bound_parameters_not_sql(registry, tmp_path):
    registered(registry, tmp_path, "v1")
    nasty = "r1'); DROP TABLE decisions; --"
    registry.log_decision(version="v1", inputs={"note": "'; DELETE FROM versions; --"}, score=0.5, decision=1,
                          request_id=nasty)
    assert registry.decisions()[0].request_id == nasty and registry.get("v1").version == "v1"


def test_decisions_filter_by_version_since_live_and_last(registry, tmp_path):
    registered(registry, tmp_path, "v1")
    registry.log_decisions([{"version": "v1", "inputs": {"i": i}, "score": 0.5, "decision": i % 2}
                            for i in range(5)])
    registered(registry, tmp_path, "v2")
    live = registry.live()
    assert live.version == "v2" and live.live_since == 5
    registry.log_decisions([{"version": "v2", "inputs": {"i": i}, "score": 0.5, "decision": 1} for i in range(5, 9)])
    registry.mark_unhealthy("v2", "alert")
    back = registry.live()
    assert back.version == "v1" and back.live_since == 9
    assert registry.decisions(version="v1", after=back.live_since) == []  # v1's new window starts empty
    assert [d.inputs["i"] for d in registry.decisions(version="v2", last=2)] == [7, 8]
    assert [d.inputs["i"] for d in registry.decisions(after=3, last=100)] == [3, 4, 5, 6, 7, 8]
    assert registry.count_decisions() == 9 and registry.count_decisions(version="v1") == 5


def test_a_batch_is_all_or_nothing(registry, tmp_path):
    registered(registry, tmp_path, "v1")
    rows = [{"version": "v1", "inputs": {"i": i}, "score": 0.5, "decision": 1} for i in range(3)]
    rows[2]["version"] = "v7"
    with pytest.raises(ValueError, match=r"decisions\[2\]\.version: 'v7' is not registered"):
        registry.log_decisions(rows)
    rows[2]["version"], rows[1]["score"] = "v1", float("nan")
    with pytest.raises(ValueError, match=r"decisions\[1\]\.score"):
        registry.log_decisions(rows)
    assert registry.count_decisions() == 0


@pytest.mark.parametrize("kwargs, arg, error", [
    ({"score": float("nan")}, "score", ValueError),
    ({"score": float("inf")}, "score", ValueError),
    ({"score": "0.5"}, "score", TypeError),
    ({"decision": 2}, "decision", ValueError),
    ({"decision": 0.5}, "decision", ValueError),
    ({"decision": "yes"}, "decision", TypeError),
    ({"inputs": {"age": float("nan")}}, "inputs", ValueError),
    ({"inputs": {"when": dt.date(2025, 1, 1)}}, "inputs", TypeError),
    ({"inputs": [1, 2]}, "inputs", TypeError),
    ({"inputs": {1: "a"}}, "inputs", TypeError),
    ({"request_id": ""}, "request_id", ValueError),
    ({"time": dt.datetime(2025, 1, 1)}, "time", ValueError),
    ({"version": "nope"}, "version", ValueError),
])
def test_bad_decisions_are_refused_naming_the_field(registry, tmp_path, kwargs, arg, error):
    registered(registry, tmp_path, "v1")
    call = {"version": "v1", "inputs": {"age": 30}, "score": 0.5, "decision": 1, **kwargs}
    with pytest.raises(error, match=arg):
        registry.log_decision(**call)
    assert registry.count_decisions() == 0


# --------------------------------------------------------------------------- concurrency

def test_concurrent_appends_lose_nothing_and_never_lock(tmp_path):
    """16 threads on two Registry objects (two connection pools, like two processes), singles and batches."""
    path = tmp_path / "registry.db"
    with Registry(path) as first, Registry(path) as second:
        registered(first, tmp_path, "v1")
        errors: list[BaseException] = []
        start = threading.Barrier(16)

        def worker(t: int) -> None:
            reg = first if t % 2 else second
            try:
                start.wait()
                for i in range(20):
                    reg.log_decision(version="v1", inputs={"t": t, "i": i}, score=0.5, decision=i % 2,
                                     request_id=f"{t}-{i}")
                reg.log_decisions([{"version": "v1", "inputs": {"t": t, "i": i}, "score": 0.5, "decision": 1,
                                    "request_id": f"{t}-b{i}"} for i in range(10)])
                for i in range(0, 20, 4):
                    reg.record_label(f"{t}-{i}", 1)
                reg.decisions(last=50)
            except BaseException as err:  # noqa: BLE001 - collected and re-raised in the main thread
                errors.append(err)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors[:3]
        rows = first.decisions()
        assert len(rows) == 16 * 30 and len({r.request_id for r in rows}) == 16 * 30
        assert [r.seq for r in rows] == list(range(1, 16 * 30 + 1))
        assert sum(r.label is not None for r in rows) == 16 * 5
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_one_registry_serves_many_threads_with_few_connections(tmp_path):
    with Registry(tmp_path / "r.db") as reg:
        registered(reg, tmp_path, "v1")
        threads = [threading.Thread(target=reg.log_decision, kwargs={
            "version": "v1", "inputs": {}, "score": 0.5, "decision": 1}) for _ in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert reg.count_decisions() == 64
        assert reg._db._idle.qsize() <= 64


# --------------------------------------------------------------------------- no pickle

def test_no_serve_module_imports_pickle():
    folder = Path(R.__file__).parent
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & {"pickle", "dill", "joblib", "cloudpickle", "shelve", "fastapi"}, path.name
