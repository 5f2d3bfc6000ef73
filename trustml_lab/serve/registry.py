"""The model registry and the decision log: what is served, why, and every decision it made.

A trustworthy service answers three questions at any time: *which model* made this
decision, *are its files the ones we tested*, and *what did it decide for whom*. One
SQLite file (stdlib ``sqlite3``, no server to run) holds the answers:

``versions``
    one row per model version: when it was registered, its artefact files (weights as
    safetensors, the schema/encoder JSON, the trust report, the model card) with the
    sha256 of each, and its status, ``healthy`` or ``unhealthy`` (with the reason and
    the time). One version at most is **live**.
``events``
    the audit trail: registered, promoted, marked unhealthy or healthy, rolled back.
``decisions``
    append-only (triggers refuse ``UPDATE`` and ``DELETE``): request id, model version,
    the inputs as JSON, the score, the decision, the UTC time.
``labels``
    outcomes that arrive later (the loan was repaid or not), one per request id, kept
    apart so the decision rows never change.

The trust rules it enforces:

- **refuse to serve a tampered artefact**: :meth:`Registry.verify` recomputes every
  sha256 and raises :class:`ArtefactError` naming the file that differs;
  :meth:`Registry.promote` verifies first; :meth:`Registry.verified_live` verifies the
  live version and, if a file was altered, marks it unhealthy and falls back;
- **rollback**: :meth:`Registry.mark_unhealthy` on the live version makes the healthy
  version that was live most recently before it live again (a version never promoted is
  never served by a rollback, and a candidate whose files fail verification is skipped
  and marked unhealthy). When none is left, nothing is live and
  :class:`NoHealthyVersionError` is raised, by this call and by every later
  :meth:`Registry.live`: the service stops deciding instead of serving an unhealthy
  model silently;
- **no pickle**: artefacts with a pickle-based suffix (``.pt``, ``.pth``, ``.pkl``,
  ``.pickle``, ``.ckpt``, ``.joblib``, ``.bin``) are refused at registration; structured
  columns are JSON.

Concurrency: one :class:`Registry` object may be shared by all the threads of a service
(see ``trustml_lab/serve/_db.py``: WAL mode, a busy timeout, a pool of connections,
serialized writers). Several processes may open the same file.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "weights.safetensors").write_bytes(b"v1 weights")
>>> registry = Registry(folder / "registry.db")
>>> registry.register("v1", {"weights": folder / "weights.safetensors"}).status
'healthy'
>>> registry.promote("v1").live
True
>>> record = registry.log_decision(version="v1", inputs={"age": 35}, score=0.82, decision=1,
...                                request_id="r-1")
>>> registry.record_label("r-1", 1).label
1
>>> _ = (folder / "weights.safetensors").write_bytes(b"tampered")
>>> registry.verify("v1")
Traceback (most recent call last):
...
trustml_lab.serve.registry.ArtefactError: files: 'weights' of version 'v1' (weights.safetensors) has sha256 \
d121be31..., registered ffc160aa...; refusing to serve it
>>> registry.close()
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import check_int, describe
from ..data import sha256_file
from ._db import Database, utc_now

__all__ = [
    "Artefact",
    "ArtefactError",
    "DecisionRecord",
    "NoHealthyVersionError",
    "Registry",
    "RegistryEvent",
    "VersionRecord",
]

VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".bin")
STATUSES = ("healthy", "unhealthy")

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    version TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    directory TEXT NOT NULL,
    artefacts TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('healthy', 'unhealthy')),
    reason TEXT,
    status_changed_at TEXT
);
CREATE TABLE IF NOT EXISTS live (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version TEXT REFERENCES versions(version),
    since_decision INTEGER NOT NULL,
    changed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    version TEXT NOT NULL REFERENCES versions(version),
    event TEXT NOT NULL,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    version TEXT NOT NULL REFERENCES versions(version),
    time TEXT NOT NULL,
    inputs TEXT NOT NULL,
    score REAL NOT NULL,
    decision INTEGER NOT NULL CHECK (decision IN (0, 1))
);
CREATE INDEX IF NOT EXISTS decisions_by_version ON decisions (version, seq);
CREATE TABLE IF NOT EXISTS labels (
    request_id TEXT PRIMARY KEY REFERENCES decisions(request_id),
    label INTEGER NOT NULL CHECK (label IN (0, 1)),
    time TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS decisions_append_only_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions is append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_append_only_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions is append-only'); END;
"""


class ArtefactError(ValueError):
    """An artefact file is missing or differs from the sha256 recorded at registration."""


class NoHealthyVersionError(RuntimeError):
    """No version may be served: none was promoted, or every candidate is unhealthy."""


@dataclass(frozen=True)
class Artefact:
    """One registered file of a version: its role (``"weights"``), absolute path and sha256."""

    name: str
    path: str
    sha256: str


@dataclass(frozen=True)
class VersionRecord:
    """A row of ``versions``: a model version, its artefacts, its status and whether it is live.

    ``live_since`` is the decision sequence number at which it last went live (its
    traffic since then is ``registry.decisions(version=..., after=live_since)``), ``None``
    when it is not live.
    """

    version: str
    created_at: str
    directory: str
    artefacts: tuple[Artefact, ...]
    status: str
    reason: str | None
    status_changed_at: str | None
    live: bool
    live_since: int | None

    def artefact(self, name: str) -> Artefact:
        """The artefact called ``name`` (``ValueError`` listing the names when there is none)."""
        for artefact in self.artefacts:
            if artefact.name == name:
                return artefact
        raise ValueError(f"name: version {self.version!r} has no artefact {name!r}; it has "
                         f"{[a.name for a in self.artefacts]}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (for the service's responses)."""
        return asdict(self)


@dataclass(frozen=True)
class RegistryEvent:
    """A row of the audit trail: ``registered``, ``promoted``, ``unhealthy``, ``healthy``, ``rollback``."""

    seq: int
    time: str
    version: str
    event: str
    reason: str | None


@dataclass(frozen=True)
class DecisionRecord:
    """One logged decision and, once it arrived, its outcome (``label``, ``label_time``)."""

    seq: int
    request_id: str
    version: str
    time: str
    inputs: dict[str, Any]
    score: float
    decision: int
    label: int | None = None
    label_time: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return asdict(self)


# --------------------------------------------------------------------------- argument checks

def _check_version(version: Any, name: str = "version") -> str:
    if not isinstance(version, str):
        raise TypeError(f"{name}: expected a version id (str), got {describe(version)}")
    if not VERSION_PATTERN.fullmatch(version):
        raise ValueError(f"{name}: expected 1-64 letters, digits, '.', '_' or '-' starting with a letter or "
                         f"digit, got {version!r}")
    return version


def _check_text(value: Any, name: str, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a str, got {describe(value)}")
    if not empty and not value.strip():
        raise ValueError(f"{name}: expected a non-empty text, got {value!r}")
    return value


def _check_binary_value(value: Any, name: str) -> int:
    """0 or 1 (an int, a NumPy int, a bool or a whole float 0.0/1.0); anything else refused."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"{name}: expected 0 or 1, got {value}")
        if value not in (0.0, 1.0):
            raise ValueError(f"{name}: expected 0 or 1, got {value}")
        return int(value)
    number = check_int(value, name, low=None)
    if number not in (0, 1):
        raise ValueError(f"{name}: expected 0 or 1, got {number}")
    return number


def _check_score(value: Any, name: str = "score") -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {describe(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite number, got {number}")
    return number


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serializable: {describe(value)}")


def _as_json(value: Any, name: str) -> str:
    """``value`` as canonical JSON (sorted keys, no NaN/infinity, NumPy scalars as numbers)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name}: expected a mapping of field name to value, got {describe(value)}")
    bad_keys = [k for k in value if not isinstance(k, str)]
    if bad_keys:
        raise TypeError(f"{name}: expected str field names, got {describe(bad_keys[0])}")
    try:
        return json.dumps(dict(value), sort_keys=True, allow_nan=False, separators=(",", ":"),
                          default=_json_default)
    except ValueError as err:
        raise ValueError(f"{name}: expected finite numbers, got NaN or infinity ({err})") from err
    except TypeError as err:
        raise TypeError(f"{name}: expected JSON values (str, number, bool, None, lists, mappings): {err}") from err


def _check_time(value: Any, name: str = "time") -> str:
    if value is None:
        return utc_now()
    if not isinstance(value, _dt.datetime):
        raise TypeError(f"{name}: expected a timezone-aware datetime or None, got {describe(value)}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}: expected a timezone-aware datetime (e.g. datetime.now(timezone.utc)), "
                         f"got the naive {value.isoformat()}")
    return value.astimezone(_dt.timezone.utc).isoformat(timespec="microseconds")


def _check_files(files: Any) -> dict[str, Path]:
    if not isinstance(files, Mapping):
        raise TypeError(f"files: expected a mapping of artefact name to file path, got {describe(files)}")
    if not files:
        raise ValueError("files: expected at least one artefact (the weights), got an empty mapping")
    checked = {}
    for name, path in files.items():
        _check_text(name, "files")
        if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
            raise TypeError(f"files: {name!r}: expected a file path, got {describe(path)}")
        resolved = Path(path).resolve()
        if resolved.suffix.lower() in PICKLE_SUFFIXES:
            raise ValueError(f"files: {name!r} ({resolved.name}) is a pickle-based format, which can run code "
                             "when loaded; save weights as safetensors (trustml_lab.models.save_weights)")
        if not resolved.is_file():
            raise ValueError(f"files: {name!r}: no file at {str(resolved)!r}")
        checked[name] = resolved
    return checked


# --------------------------------------------------------------------------- rows

def _version_record(row: sqlite3.Row, live: sqlite3.Row | None) -> VersionRecord:
    artefacts = tuple(Artefact(a["name"], a["path"], a["sha256"]) for a in json.loads(row["artefacts"]))
    is_live = live is not None and live["version"] == row["version"]
    return VersionRecord(row["version"], row["created_at"], row["directory"], artefacts, row["status"],
                         row["reason"], row["status_changed_at"], is_live,
                         int(live["since_decision"]) if is_live else None)


def _decision_record(row: sqlite3.Row) -> DecisionRecord:
    label = row["label"]
    return DecisionRecord(int(row["seq"]), row["request_id"], row["version"], row["time"],
                          json.loads(row["inputs"]), float(row["score"]), int(row["decision"]),
                          None if label is None else int(label), row["label_time"])


DECISION_COLUMNS = ("SELECT d.seq, d.request_id, d.version, d.time, d.inputs, d.score, d.decision, "
                    "l.label, l.time AS label_time FROM decisions d LEFT JOIN labels l USING (request_id)")


class Registry:
    """Model versions, the live one, and the decision log, in one SQLite file at ``path``.

    Thread-safe: share one object between the threads of a service. ``busy_timeout_s``
    is how long a write waits for another process holding the file's write lock.
    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike, *, busy_timeout_s: float = 30.0) -> None:
        self._db = Database(path, SCHEMA, busy_timeout_s=busy_timeout_s)
        self.path = self._db.path

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connections."""
        self._db.close()

    def __repr__(self) -> str:
        return f"Registry({str(self.path)!r})"

    # ------------------------------------------------------------------ versions

    def register(self, version: str, files: Mapping[str, str | os.PathLike]) -> VersionRecord:
        """Record ``version`` with the sha256 of each artefact file (``{name: path}``); healthy, not live.

        A version id is registered once (a second registration is a ``ValueError``):
        a changed model is a new version.
        """
        version = _check_version(version)
        paths = _check_files(files)
        artefacts = [{"name": name, "path": str(path), "sha256": sha256_file(path)} for name, path in paths.items()]
        directory = os.path.commonpath([str(p.parent) for p in paths.values()])
        now = utc_now()
        with self._db.write() as conn:
            if conn.execute("SELECT 1 FROM versions WHERE version = ?", (version,)).fetchone():
                raise ValueError(f"version: {version!r} is already registered; register a changed model "
                                 "under a new version id")
            conn.execute("INSERT INTO versions (version, created_at, directory, artefacts, status) "
                         "VALUES (?, ?, ?, ?, 'healthy')", (version, now, directory, json.dumps(artefacts)))
            conn.execute("INSERT INTO events (time, version, event) VALUES (?, ?, 'registered')", (now, version))
        return self.get(version)

    def get(self, version: str) -> VersionRecord:
        """The record of ``version`` (``ValueError`` naming the registered ones if unknown)."""
        version = _check_version(version)
        with self._db.read() as conn:
            return self._get(conn, version)

    def _get(self, conn: sqlite3.Connection, version: str) -> VersionRecord:
        row = conn.execute("SELECT * FROM versions WHERE version = ?", (version,)).fetchone()
        if row is None:
            known = [r[0] for r in conn.execute("SELECT version FROM versions ORDER BY seq")]
            raise ValueError(f"version: {version!r} is not registered; registered versions: {known}")
        return _version_record(row, conn.execute("SELECT * FROM live").fetchone())

    def versions(self) -> list[VersionRecord]:
        """Every registered version, oldest first."""
        with self._db.read() as conn:
            live = conn.execute("SELECT * FROM live").fetchone()
            return [_version_record(row, live) for row in conn.execute("SELECT * FROM versions ORDER BY seq")]

    def verify(self, version: str) -> VersionRecord:
        """Recompute every artefact's sha256; raise :class:`ArtefactError` naming the first that differs."""
        record = self.get(version)
        _verify(record)
        return record

    def live(self) -> VersionRecord:
        """The live version; :class:`NoHealthyVersionError` when nothing may be served."""
        with self._db.read() as conn:
            return self._live(conn)

    def _live(self, conn: sqlite3.Connection) -> VersionRecord:
        live = conn.execute("SELECT * FROM live").fetchone()
        if live is None or live["version"] is None:
            last = None if live is None else conn.execute(
                "SELECT version, reason FROM events WHERE event = 'unhealthy' ORDER BY seq DESC LIMIT 1").fetchone()
            why = (f"the last version marked unhealthy was {last['version']!r} ({last['reason']}) and no "
                   "previously live version is healthy") if last else "no version has been promoted"
            raise NoHealthyVersionError(f"no version is live: {why}; promote a healthy version")
        return self._get(conn, live["version"])

    def verified_live(self) -> VersionRecord:
        """The live version after :meth:`verify`; a live version whose files fail is marked unhealthy
        (reason: the failed check) and the rollback rule picks the next, until one verifies or
        :class:`NoHealthyVersionError` says none is left. Call it before loading the model."""
        while True:
            record = self.live()
            try:
                _verify(record)
                return record
            except ArtefactError as err:
                self.mark_unhealthy(record.version, f"artefact check failed: {err}")

    def promote(self, version: str) -> VersionRecord:
        """Make a healthy ``version`` live after verifying its artefacts (``ArtefactError`` if they differ)."""
        _verify(self.get(version))
        with self._db.write() as conn:
            record = self._get(conn, version)  # read again under the write lock: it may have been marked since
            if record.status != "healthy":
                raise ValueError(f"version: {version!r} is unhealthy ({record.reason}); mark it healthy after "
                                 "fixing the cause, or promote another version")
            self._set_live(conn, version, "promoted", None)
            return self._get(conn, version)

    def _set_live(self, conn: sqlite3.Connection, version: str | None, event: str, reason: str | None) -> None:
        now = utc_now()
        since = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM decisions").fetchone()[0]
        conn.execute("INSERT INTO live (id, version, since_decision, changed_at) VALUES (1, ?, ?, ?) "
                     "ON CONFLICT (id) DO UPDATE SET version = excluded.version, "
                     "since_decision = excluded.since_decision, changed_at = excluded.changed_at",
                     (version, since, now))
        if version is not None:
            conn.execute("INSERT INTO events (time, version, event, reason) VALUES (?, ?, ?, ?)",
                         (now, version, event, reason))

    def mark_unhealthy(self, version: str, reason: str) -> VersionRecord:
        """Mark ``version`` unhealthy (with ``reason``); if it was live, roll back; return its record.

        The rollback rule: the healthy version that was live most recently before it (by
        its last promotion or rollback), whose artefacts verify, becomes live; candidates
        that fail verification are marked unhealthy too. :meth:`live` then names the
        version served. With no candidate left nothing is live, and this call raises
        :class:`NoHealthyVersionError` (the marks are kept).
        """
        version = _check_version(version)
        reason = _check_text(reason, "reason")
        with self._db.write() as conn:
            was_live = self._get(conn, version).live
            self._mark(conn, version, "unhealthy", reason)
            if was_live:
                self._roll_back(conn, version)
            record = self._get(conn, version)
        if was_live:
            self.live()  # raises NoHealthyVersionError when the rollback found nothing to serve
        return record

    def _mark(self, conn: sqlite3.Connection, version: str, status: str, reason: str) -> None:
        now = utc_now()
        conn.execute("UPDATE versions SET status = ?, reason = ?, status_changed_at = ? WHERE version = ?",
                     (status, reason, now, version))
        conn.execute("INSERT INTO events (time, version, event, reason) VALUES (?, ?, ?, ?)",
                     (now, version, status, reason))

    def _roll_back(self, conn: sqlite3.Connection, failed: str) -> None:
        candidates = conn.execute(
            "SELECT e.version FROM events e JOIN versions v USING (version) "
            "WHERE e.event IN ('promoted', 'rollback') AND v.status = 'healthy' AND e.version != ? "
            "GROUP BY e.version ORDER BY MAX(e.seq) DESC", (failed,)).fetchall()
        for (candidate,) in candidates:
            try:
                _verify(self._get(conn, candidate))
            except ArtefactError as err:
                self._mark(conn, candidate, "unhealthy", f"artefact check failed during rollback: {err}")
                continue
            self._set_live(conn, candidate, "rollback", f"{failed!r} was marked unhealthy")
            return
        self._set_live(conn, None, "rollback", None)

    def mark_healthy(self, version: str, reason: str) -> VersionRecord:
        """Clear an unhealthy mark (after the cause was fixed); it does not make the version live."""
        version = _check_version(version)
        reason = _check_text(reason, "reason")
        with self._db.write() as conn:
            self._get(conn, version)
            self._mark(conn, version, "healthy", reason)
            return self._get(conn, version)

    def history(self) -> list[RegistryEvent]:
        """The audit trail, oldest first."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT seq, time, version, event, reason FROM events ORDER BY seq").fetchall()
        return [RegistryEvent(int(r["seq"]), r["time"], r["version"], r["event"], r["reason"]) for r in rows]

    # ------------------------------------------------------------------ decisions

    def log_decision(self, *, version: str, inputs: Mapping[str, Any], score: float, decision: int,
                     request_id: str | None = None, time: _dt.datetime | None = None) -> DecisionRecord:
        """Append one decision (``request_id`` defaults to a new UUID; ``time`` to now, UTC)."""
        return self.log_decisions([{"version": version, "inputs": inputs, "score": score, "decision": decision,
                                    "request_id": request_id, "time": time}])[0]

    def log_decisions(self, decisions: Sequence[Mapping[str, Any]]) -> list[DecisionRecord]:
        """Append a batch of decisions in one transaction (all or none); return their records.

        Each item is a mapping with ``version``, ``inputs``, ``score``, ``decision`` and
        optionally ``request_id`` and ``time``, checked as in :meth:`log_decision`
        (the message names the item: ``decisions[3].score: ...``).
        """
        if isinstance(decisions, (str, bytes, Mapping)) or not isinstance(decisions, Sequence):
            raise TypeError(f"decisions: expected a sequence of mappings, got {describe(decisions)}")
        rows = [_decision_row(item, f"decisions[{i}]" if len(decisions) > 1 else "") for i, item in
                enumerate(decisions)]
        ids = [row[0] for row in rows]
        if len(set(ids)) != len(ids):
            raise ValueError("request_id: the batch repeats a request id")
        if not rows:
            return []
        with self._db.write() as conn:
            known = {r[0] for r in conn.execute("SELECT version FROM versions")}
            for i, row in enumerate(rows):
                if row[1] not in known:
                    prefix = f"decisions[{i}]." if len(rows) > 1 else ""
                    raise ValueError(f"{prefix}version: {row[1]!r} is not registered")
            try:
                conn.executemany("INSERT INTO decisions (request_id, version, time, inputs, score, decision) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", rows)
            except sqlite3.IntegrityError as err:
                taken = [i for (i,) in conn.execute(
                    f"SELECT request_id FROM decisions WHERE request_id IN ({','.join('?' * len(ids))})", ids)]
                raise ValueError(f"request_id: already logged: {taken[:3]} ({err})") from err
            last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        first = last - len(rows) + 1
        return [DecisionRecord(first + i, r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for i, r in enumerate(rows)]

    def record_label(self, request_id: str, y_true: int, *, time: _dt.datetime | None = None) -> DecisionRecord:
        """Attach the observed outcome ``y_true`` (0 or 1; 1 the favorable one, e.g. the loan was repaid)
        to a logged decision, as its ``label``; once per request id."""
        request_id = _check_text(request_id, "request_id")
        label = _check_binary_value(y_true, "y_true")
        when = _check_time(time)
        with self._db.write() as conn:
            if conn.execute("SELECT 1 FROM decisions WHERE request_id = ?", (request_id,)).fetchone() is None:
                raise ValueError(f"request_id: no decision was logged under {request_id!r}")
            if conn.execute("SELECT 1 FROM labels WHERE request_id = ?", (request_id,)).fetchone():
                raise ValueError(f"request_id: {request_id!r} already has a label; outcomes are recorded once")
            conn.execute("INSERT INTO labels (request_id, label, time) VALUES (?, ?, ?)", (request_id, label, when))
            row = conn.execute(f"{DECISION_COLUMNS} WHERE d.request_id = ?", (request_id,)).fetchone()
        return _decision_record(row)

    def decisions(self, *, version: str | None = None, after: int = 0, last: int | None = None
                  ) -> list[DecisionRecord]:
        """Logged decisions with their labels, oldest first.

        ``version`` keeps one version's; ``after`` keeps those with a sequence number
        above it (``VersionRecord.live_since`` gives a version's traffic since it went
        live); ``last`` keeps the most recent ``last`` of those (a monitoring window).
        """
        after = check_int(after, "after", low=0)
        if last is not None:
            last = check_int(last, "last", low=1)
        clauses, params = ["d.seq > ?"], [after]
        if version is not None:
            clauses.append("d.version = ?")
            params.append(_check_version(version))
        query = f"{DECISION_COLUMNS} WHERE {' AND '.join(clauses)} ORDER BY d.seq DESC"
        if last is not None:
            query += " LIMIT ?"
            params.append(last)
        with self._db.read() as conn:
            rows = conn.execute(query, params).fetchall()
        return [_decision_record(row) for row in reversed(rows)]

    def count_decisions(self, *, version: str | None = None) -> int:
        """How many decisions are logged (for ``version``, or in all)."""
        with self._db.read() as conn:
            if version is None:
                return int(conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])
            return int(conn.execute("SELECT COUNT(*) FROM decisions WHERE version = ?",
                                    (_check_version(version),)).fetchone()[0])


def _decision_row(item: Any, where: str) -> tuple[str, str, str, str, float, int]:
    prefix = f"{where}." if where else ""
    if not isinstance(item, Mapping):
        raise TypeError(f"{where or 'decisions'}: expected a mapping with version, inputs, score, decision, "
                        f"got {describe(item)}")
    allowed = {"version", "inputs", "score", "decision", "request_id", "time"}
    missing = [k for k in ("version", "inputs", "score", "decision") if k not in item]
    if missing:
        raise ValueError(f"{prefix}{missing[0]}: missing")
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise ValueError(f"{prefix}{unknown[0]}: not a decision field; expected {sorted(allowed)}")
    version = _check_version(item["version"], f"{prefix}version")
    inputs = _as_json(item["inputs"], f"{prefix}inputs")
    score = _check_score(item["score"], f"{prefix}score")
    decision = _check_binary_value(item["decision"], f"{prefix}decision")
    request_id = item.get("request_id")
    request_id = str(uuid.uuid4()) if request_id is None else _check_text(request_id, f"{prefix}request_id")
    return request_id, version, _check_time(item.get("time"), f"{prefix}time"), inputs, score, decision


def _verify(record: VersionRecord) -> None:
    for artefact in record.artefacts:
        path = Path(artefact.path)
        if not path.is_file():
            raise ArtefactError(f"files: {artefact.name!r} of version {record.version!r} is missing "
                                f"({artefact.path}); refusing to serve it")
        actual = sha256_file(path)
        if actual != artefact.sha256:
            raise ArtefactError(f"files: {artefact.name!r} of version {record.version!r} ({path.name}) has sha256 "
                                f"{actual[:8]}..., registered {artefact.sha256[:8]}...; refusing to serve it")
