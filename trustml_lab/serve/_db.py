"""SQLite plumbing shared by the registry and the ledger (stdlib ``sqlite3`` only).

Threading model, the one a web service needs (many requests at once, one database file):

- WAL journal mode (readers never block the writer, nor the writer the readers),
  ``synchronous=NORMAL`` (a commit is durable against a crash of the process; WAL's
  recommended setting) and a busy timeout, so a writer in *another process* is waited
  for instead of failing with "database is locked";
- a small pool of connections: a thread takes one for the length of one operation and
  gives it back, so no connection is ever used by two threads at once and the number of
  open connections is the number of operations in flight, not the number of threads
  that ever ran;
- writers of one :class:`Database` object are serialized by a lock (so they queue in
  Python instead of spinning in SQLite's busy handler) and run in ``BEGIN IMMEDIATE``
  transactions: the write lock is taken up front, so a read-then-write (the ledger's
  budget check, the registry's rollback) can never be interleaved with another writer.

Every statement binds its parameters (``?``); no SQL is built from values.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import queue
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from .._validation import check_positive, describe


def utc_now() -> str:
    """The current time as UTC ISO-8601 with microseconds, e.g. ``2025-01-31T12:00:00.000000+00:00``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def check_path(path: object, name: str = "path") -> Path:
    """A database path (str or os.PathLike) whose folder exists."""
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise TypeError(f"{name}: expected a file path (str or os.PathLike), got {describe(path)}")
    resolved = Path(path)
    if str(path) == "" or resolved.is_dir():
        raise ValueError(f"{name}: expected the path of a database file, got the folder {str(path)!r}")
    if not resolved.parent.exists():
        raise ValueError(f"{name}: the folder {str(resolved.parent)!r} does not exist")
    return resolved


class Database:
    """One SQLite file, a pool of connections, serialized writers. Close it when done."""

    def __init__(self, path: object, schema: str, *, busy_timeout_s: float = 30.0) -> None:
        self.path = check_path(path)
        self.busy_timeout_s = check_positive(busy_timeout_s, "busy_timeout_s")
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._write_lock = threading.Lock()
        self._closed = False
        with self.write() as conn:
            for statement in _statements(schema):
                conn.execute(statement)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            conn.close()
            raise ValueError(f"path: {str(self.path)!r} cannot use SQLite's WAL mode (got {mode!r}); "
                             "use a file on a local disk")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.row_factory = sqlite3.Row
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection of the pool, for one operation of this thread."""
        if self._closed:
            raise ValueError(f"path: the database {str(self.path)!r} is closed")
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._connect()
        try:
            yield conn
        finally:
            if conn.in_transaction:  # an exception left a read transaction open
                conn.rollback()
            if self._closed:
                conn.close()
            else:
                self._idle.put(conn)

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on any exception."""
        with self.connection() as conn, self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every statement inside sees one snapshot of the file."""
        with self.connection() as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def close(self) -> None:
        """Close the idle connections; connections in use close when they are given back."""
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _statements(script: str) -> list[str]:
    """Split a schema script into statements (``sqlite3.complete_statement`` keeps triggers whole)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"schema: incomplete statement {current.strip()[:40]!r}")
    return statements
