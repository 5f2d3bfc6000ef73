"""Train the course's reference models once and ship their weights in ``data/``.

For maintainers. Each chapter keeps its recipes in ``scripts/reference_models/<chapter>.py``
as a function ``train() -> dict[filename, (model, source description)]``; this script
runs them, saves each model as safetensors in ``data/`` and records its sha256 in
``data/MANIFEST``. Notebooks show the training code and load the result with
``trustml_lab.models.load_reference``.

A recipe may also return a Hugging Face model with its tokenizer (any object that unpacks
as ``model, tokenizer``, such as ``trustml_lab.text.TextModel``) under a folder name: it is
saved with ``save_pretrained(..., safe_serialization=True)`` as ``data/<name>/``
(``config.json``, ``model.safetensors``, tokenizer files), every file with its own
``<name>/<file>`` row and sha256 in ``data/MANIFEST`` (``trustml_lab.text.load_text_model``
checks them all).

Usage: ``python scripts/train_reference_models.py [chapter ...]`` (default: all).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import shutil
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


def is_hf_pair(value: object) -> bool:
    """A ``(model, tokenizer)`` pair of Hugging Face objects, saved as a model folder."""
    try:
        model, tokenizer = value  # type: ignore[misc]
    except (TypeError, ValueError):
        return False
    return hasattr(model, "save_pretrained") and hasattr(tokenizer, "save_pretrained")


def drop_manifest_rows(prefix: str, folder: Path) -> None:
    """Remove the MANIFEST rows of a model folder that is about to be rewritten."""
    path = folder / "MANIFEST"
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.startswith(prefix)]
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")


def save_model_folder(name: str, pair: object, source: str) -> list[ManifestEntry]:
    """Save a Hugging Face model and tokenizer as ``data/<name>/``; one MANIFEST entry per file."""
    from safetensors import safe_open

    from trustml_lab.data import sha256_file

    model, tokenizer = pair  # type: ignore[misc]
    folder = data_dir() / name
    if folder.exists():
        shutil.rmtree(folder)
    drop_manifest_rows(f"{name}/", data_dir())
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    entries = []
    for path in sorted(folder.iterdir()):
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:
                keys = list(handle.keys())
                rows = sum(math.prod(handle.get_slice(k).get_shape()) for k in keys)
            columns = len(keys)
            what = f"weights of {source}"
        elif path.name == "tokenizer.json":
            rows, columns = len(tokenizer), 1
            what = f"tokenizer ({rows} tokens) of {source}"
        else:
            rows, columns = 1, len(json.loads(path.read_text(encoding="utf-8")))
            what = f"{path.stem} of {source}"
        digest = sha256_file(path)
        entries.append(ManifestEntry(f"{name}/{path.name}", digest, rows, columns, what, LICENSE))
        print(f"{name}/{path.name}: {rows} x {columns}, sha256 {digest}")
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help=f"any of {chapters()}")
    args = parser.parse_args(argv)
    for chapter in args.chapters or chapters():
        trustml_lab.setup(seed=0)
        module = importlib.import_module(f"reference_models.{chapter}")
        entries = []
        for filename, (model, source) in module.train().items():
            if is_hf_pair(model):
                entries += save_model_folder(filename, model, source)
                continue
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
