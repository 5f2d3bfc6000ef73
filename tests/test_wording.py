"""Product text names the course's sources; it never calls them "the seeds".

The course was designed from source texts (AIF360's tutorial, the Opacus example, a
common recipe, a paper). Product text (the package's docstrings and messages, both
notebook editions, README, CONTRIBUTING, data/README.md, benchmarks, scripts) names
them by those names, never as "the seeds", "the seed's" or "the course's seeds".

Files that still say it are listed in ``STILL_TO_FIX`` while their owners reword them;
the list is checked strictly: a listed file that is clean fails, so the list only shrinks.
A phrase broken over two lines (a docstring, a notebook's markdown) is still found.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["trustml_lab", "solutions", "notebooks", "benchmarks", "scripts", "README.md", "CONTRIBUTING.md",
           "data/README.md"]
FORBIDDEN = re.compile(r"\bthe seeds\b|\bseeds'|\bseed's\b|\bcourse's seeds\b", re.IGNORECASE)
TEXT_SUFFIXES = {".py", ".md", ".ipynb", ".txt", ".toml", ".cfg", ".json", ".html", ""}

#: Files that still say it, being reworded by their chapters' owners (issue 9, section 5).
STILL_TO_FIX: set[str] = set()


def tracked_files() -> list[str]:
    """The git-tracked text files under SCANNED (every file there, outside a git checkout)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--", *SCANNED], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = [str(p.relative_to(ROOT)) for name in SCANNED for p in
                  ([ROOT / name] if (ROOT / name).is_file() else (ROOT / name).rglob("*"))
                  if p.is_file() and ".ipynb_checkpoints" not in p.parts and "__pycache__" not in p.parts]
    return sorted(f for f in listed if Path(f).suffix in TEXT_SUFFIXES and (ROOT / f).is_file())


def _strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    if isinstance(node, dict):
        return [s for key, item in node.items() if key not in {"image/png", "image/jpeg"} for s in _strings(item)]
    return []


def product_text(path: Path) -> str:
    """The file's text with every run of whitespace made one space; a notebook's cells and outputs."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return ""
    if path.suffix == ".ipynb":
        text = "\n".join(_strings(json.loads(text).get("cells", [])))
    return " ".join(text.split())


def phrases(text: str) -> list[str]:
    return [text[max(0, m.start() - 30):m.end() + 30] for m in FORBIDDEN.finditer(text)]


FILES = tracked_files()


def test_the_scan_sees_the_product():
    assert "trustml_lab/data.py" in FILES and "README.md" in FILES
    assert any(f.startswith("solutions/") and f.endswith(".ipynb") for f in FILES)
    assert phrases(" ".join("as in the\n    seeds' code".split())), "a phrase over two lines is found"
    assert not phrases("seed=0, the seed of the generator; seeds 0 to 9")


def test_still_to_fix_lists_only_scanned_files():
    assert not STILL_TO_FIX - set(FILES), f"not a scanned file: {sorted(STILL_TO_FIX - set(FILES))}"


@pytest.mark.parametrize("name", FILES)
def test_product_text_names_its_sources(name):
    found = phrases(product_text(ROOT / name))
    if name in STILL_TO_FIX:
        assert found, f"{name} is clean now: remove it from STILL_TO_FIX in tests/test_wording.py"
    else:
        assert not found, (f"{name} calls the course's sources 'the seeds': name them instead (AIF360's "
                           f"tutorial, the Opacus example, a common recipe, the paper): {found[:3]}")
