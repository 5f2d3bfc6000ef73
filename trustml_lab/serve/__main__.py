"""Run the decision service: ``python -m trustml_lab.serve --port 8000 [--model-dir DIR] [--db PATH]``.

Listens on 127.0.0.1 only (uvicorn). The registry database (``--db``, default
``trustml_registry.db`` in the current folder) is created when missing. ``--model-dir``
(default: the chapter's shipped credit model bundle) is registered as a version (its
files with their sha256) and promoted, unless the registry already has a live version
and no ``--model-dir`` was given: then the live version is served (after its files
are verified). ``--reference`` is a CSV of raw model inputs for the explanations'
background and the monitor (default: the German credit data the model was trained on).
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
from .app import create_app
from .registry import NoHealthyVersionError, Registry


def _bundle_files(directory: Path) -> dict[str, Path]:
    """The files of a saved bundle: ``weights`` for the safetensors file, the others by their stem."""
    files = {}
    for path in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")):
        name = "weights" if path.suffix == ".safetensors" else path.stem
        files[name if name not in files else path.name] = path
    if "weights" not in files:
        raise SystemExit(f"--model-dir: no .safetensors weights in {str(directory)!r}")
    return files


def _default_model_dir() -> Path:
    from ..report import load_credit_model

    bundle = load_credit_model()
    return Path(bundle.directory) if hasattr(bundle, "directory") else Path(__file__).resolve().parents[2] / \
        "data" / "credit_model"


def _ensure_version(registry: Registry, directory: Path, version: str | None) -> str:
    files = _bundle_files(directory)
    weights_sha = sha256_file(files["weights"])
    version = version or f"{directory.name}-{weights_sha[:12]}"
    known = {v.version: v for v in registry.versions()}
    if version in known:
        registered = {a.name: a.sha256 for a in known[version].artefacts}
        if registered.get("weights") != weights_sha:
            raise SystemExit(f"--version: {version!r} is registered with other weights; pick a new version id")
    else:
        registry.register(version, files)
    live = None
    try:
        live = registry.live().version
    except NoHealthyVersionError:
        pass
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
    parser.add_argument("--reference", type=Path, help="CSV of raw model inputs (default: German credit data)")
    parser.add_argument("--check-every", type=int, default=50, help="decisions between two rollback checks")
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
        if args.reference is not None:
            reference = pd.read_csv(args.reference)
        else:
            from ..data import load_german_credit

            reference = load_german_credit()
        app = create_app(registry, reference=reference, check_every=args.check_every)

        import uvicorn

        print(f"trustml_lab.serve: version {registry.live().version} on http://127.0.0.1:{args.port} "
              f"(registry {args.db})", flush=True)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    finally:
        registry.close()


if __name__ == "__main__":
    sys.exit(main())
