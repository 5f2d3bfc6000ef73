"""Train the course's reference models once and ship their weights in ``data/``.

For maintainers. Each chapter keeps its recipes in ``scripts/reference_models/<chapter>.py``
as a function ``train() -> dict[filename, (model, source description)]``; this script
runs them, saves each model as safetensors in ``data/`` and records its sha256 in
``data/MANIFEST``. Notebooks show the training code and load the result with
``trustml_lab.models.load_reference``.

Usage: ``python scripts/train_reference_models.py [chapter ...]`` (default: all).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script; importing it (doctests) changes nothing
    sys.path.insert(0, str(ROOT))

import trustml_lab  # noqa: E402
from trustml_lab.data import ManifestEntry, data_dir, update_manifest  # noqa: E402
from trustml_lab.models import save_weights  # noqa: E402

RECIPES = Path(__file__).with_name("reference_models")
LICENSE = "MIT (trained by this repository)"


def chapters() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.py") if not p.stem.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help=f"any of {chapters()}")
    args = parser.parse_args(argv)
    for chapter in args.chapters or chapters():
        trustml_lab.setup(seed=0)
        module = importlib.import_module(f"reference_models.{chapter}")
        entries = []
        for filename, (model, source) in module.train().items():
            digest = save_weights(model, data_dir() / filename)
            state = model.state_dict()
            n_params = sum(t.numel() for t in state.values())
            entries.append(ManifestEntry(filename, digest, n_params, len(state), source, LICENSE))
            print(f"{filename}: {n_params} parameters in {len(state)} tensors, sha256 {digest}")
        update_manifest(entries, data_dir=data_dir())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main())
