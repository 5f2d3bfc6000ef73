"""trustml_lab.serve (the package): re-exports of its submodules, each covered by its own table.

Also the builders the ``serve_*`` tables share: fresh databases in one temporary folder per session.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pandas as pd

import trustml_lab.serve as serve

ROOT = Path(tempfile.mkdtemp(prefix="trustml-serve-tables-"))
atexit.register(shutil.rmtree, ROOT, ignore_errors=True)


def folder() -> Path:
    return Path(tempfile.mkdtemp(dir=ROOT))


def weights(where: Path, name: str = "weights.safetensors", content: bytes = b"weights") -> Path:
    path = where / name
    path.write_bytes(content)
    return path


def registry(*, live: bool = True, decisions: int = 0):
    """A registry with version v1 (promoted unless ``live=False``) and ``decisions`` logged decisions."""
    from trustml_lab.serve.registry import Registry

    where = folder()
    reg = Registry(where / "registry.db")
    reg.register("v1", {"weights": weights(where)})
    if live:
        reg.promote("v1")
    if decisions:
        reg.log_decisions([{"version": "v1", "inputs": {"age": 30.0 + i, "sex": "fm"[i % 2]}, "score": 0.5,
                            "decision": i // 2 % 2, "request_id": f"r{i}"} for i in range(decisions)])
    return reg


def reference() -> pd.DataFrame:
    return pd.DataFrame({"age": [float(a) for a in range(20, 60)], "sex": ["f", "m"] * 20})


def rows(n: int = 20, **change) -> list[dict]:
    out = [{"inputs": {"age": 25.0 + i, "sex": "fm"[i % 2]}, "decision": i // 2 % 2, "label": 1} for i in range(n)]
    for row in out:
        row.update(change)
    return out


def monitor(**kwargs):
    from trustml_lab.serve.monitor import Monitor

    return Monitor(reference(), **{"group": "sex", "window": 20, "min_window": 10, **kwargs})


def ledger(**kwargs):
    from trustml_lab.serve.ledger import PrivacyLedger

    return PrivacyLedger(folder() / "privacy.db", **{"dataset": "adult", "epsilon": 3.0, "delta": 1e-5, **kwargs})


MODULE = serve

VALID = {}

EXEMPT = {
    name: f"a re-export of {getattr(serve, name).__module__}.{name}; its calls are in "
          f"tests/api_tables/serve_{getattr(serve, name).__module__.rsplit('.', 1)[-1]}.py"
    for name in serve.__all__
}

KNOWN_FAILURES = set()
