"""Run the decision service: ``python -m trustml_lab.serve --port 8000 [--model-dir DIR] [--db PATH]``.

Listens on 127.0.0.1 only (uvicorn). The registry database (``--db``, default
``trustml_registry.db`` in the current folder) is created when missing. ``--model-dir``
(default: the chapter's shipped credit model, ``data/credit_model_v1/``) is registered as a
version (its files with their sha256) and promoted, unless the registry already has a live version
and no ``--model-dir`` was given: then the live version is served (after its files
are verified). ``--reference`` is a CSV of raw model inputs for the explanations'
background and the monitor (default: UCI Adult's training rows, the shipped model's).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from ..data import sha256_file
from .app import create_app, register_bundle
from .monitor import Monitor
from .registry import NoHealthyVersionError, Registry


def _default_model_dir() -> Path:
    from ..data import data_dir
    from ..report import CREDIT_MODEL

    return data_dir() / CREDIT_MODEL


def default_reference(schema: object) -> pd.DataFrame:
    """The shipped model's training rows: UCI Adult's ``train`` part, rows with a missing field dropped."""
    from ..data import load_adult

    names = [spec.name for spec in schema.fields]
    frame = load_adult()
    frame = frame[frame["split"] == "train"].dropna(subset=names)
    return frame[names].reset_index(drop=True)


def _ensure_version(registry: Registry, directory: Path, version: str | None) -> str:
    """Register ``directory``'s bundle (unless a version with the same weights is) and make it live."""
    if not (directory / "model.safetensors").is_file():
        raise SystemExit(f"--model-dir: no model.safetensors in {str(directory)!r}")
    weights_sha = sha256_file(directory / "model.safetensors")
    version = version or directory.name
    known = {v.version: v for v in registry.versions()}
    if version in known:
        registered = {a.name: a.sha256 for a in known[version].artefacts}
        if registered.get("weights") != weights_sha:
            raise SystemExit(f"--version: {version!r} is registered with other weights; pick a new version id")
    else:
        register_bundle(registry, version, directory, promote=False)
    try:
        live = registry.live().version
    except NoHealthyVersionError:
        live = None
    if live != version:
        registry.promote(version)
    return version


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trustml_lab.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--model-dir", type=Path, help="a saved model bundle (default: the shipped credit model)")
    parser.add_argument("--db", type=Path, default=Path("trustml_registry.db"),
                        help="the registry and decision log (SQLite; default: ./trustml_registry.db)")
    parser.add_argument("--version", help="version id for --model-dir (default: folder name + weights sha256)")
    parser.add_argument("--reference", type=Path, help="CSV of raw model inputs (default: Adult's training rows)")
    parser.add_argument("--immutable", default="age",
                        help="comma-separated fields a counterfactual may not change, besides the protected ones "
                             "(default: age)")
    parser.add_argument("--window", type=int, default=500, help="decisions per monitoring window (default 500)")
    parser.add_argument("--min-window", type=int, default=200, help="decisions before any alert (default 200)")
    parser.add_argument("--min-positives", type=int, default=30,
                        help="known positives of a group before its TPR is judged (default 30)")
    parser.add_argument("--check-every", type=int, help="decisions between two rollback checks (default: the "
                                                            "monitor's window)")
    args = parser.parse_args(argv)
    if not 0 <= args.port < 65536:
        parser.error(f"--port: expected 0-65535, got {args.port}")
    torch.set_num_threads(int(os.environ.get("TRUSTML_THREADS", "1") or 1))

    registry = Registry(args.db)
    try:
        has_live = True
        try:
            registry.live()
        except NoHealthyVersionError:
            has_live = False
        if args.model_dir is not None or not has_live:
            directory = (args.model_dir or _default_model_dir()).resolve()
            _ensure_version(registry, directory, args.version)
        from ..report import load_bundle

        live = registry.verified_live()
        schema = load_bundle(live.directory, sha256={Path(a.path).name: a.sha256 for a in live.artefacts
                                                     if a.name in ("weights", "schema")}).schema
        reference = pd.read_csv(args.reference) if args.reference is not None else default_reference(schema)
        names = {spec.name for spec in schema.fields}
        immutable = [f for f in args.immutable.split(",") if f in names]
        group = next(s.name for s in schema.fields if s.protected and s.kind == "categorical")
        monitor = Monitor(reference[[s.name for s in schema.fields]], group=group, window=args.window,
                          min_window=min(args.min_window, args.window), min_positives=args.min_positives)
        app = create_app(registry, reference=reference, monitor=monitor, check_every=args.check_every,
                         immutable=immutable)

        import uvicorn

        print(f"trustml_lab.serve: version {registry.live().version} on http://127.0.0.1:{args.port} "
              f"(registry {args.db})", flush=True)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    finally:
        registry.close()


if __name__ == "__main__":
    sys.exit(main())
