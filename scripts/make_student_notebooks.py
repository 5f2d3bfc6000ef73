"""Write the student edition ``notebooks/`` from the single source ``solutions/``.

In each notebook, every code cell holding ``### BEGIN SOLUTION`` ... ``### END SOLUTION``
gets its solution replaced by ``# YOUR CODE HERE`` and ``raise NotImplementedError()``
(nbgrader's convention); that cell and the self-check cell right after it (a code cell
calling ``checks.``) lose their outputs and are tagged ``raises-exception`` so that nbval
expects them to fail. Every other cell is copied unchanged, outputs included.

Usage: ``python scripts/make_student_notebooks.py [--check]``; ``--check`` writes
nothing and exits 1 when ``notebooks/`` is stale.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = ROOT / "notebooks"

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = ["# YOUR CODE HERE", "raise NotImplementedError()"]
RAISES = "raises-exception"
_BLOCK = re.compile(r"^([ \t]*)### BEGIN SOLUTION[ \t]*\n.*?^[ \t]*### END SOLUTION[ \t]*$", re.M | re.S)


def source_of(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def is_solution_cell(cell: dict) -> bool:
    return cell["cell_type"] == "code" and BEGIN in source_of(cell)


def is_check_cell(cell: dict) -> bool:
    return cell["cell_type"] == "code" and "checks." in source_of(cell)


def strip_solutions(source: str) -> str:
    """Replace each solution block by the stub, keeping the block's indentation.

    >>> print(strip_solutions("def f():\\n    ### BEGIN SOLUTION\\n    return 1\\n    ### END SOLUTION"))
    def f():
        # YOUR CODE HERE
        raise NotImplementedError()
    """
    if source.count(BEGIN) != source.count(END):
        raise ValueError(f"unbalanced {BEGIN!r} / {END!r} markers in:\n{source}")
    return _BLOCK.sub(lambda m: "\n".join(m.group(1) + line for line in STUB), source)


def _expect_raise(cell: dict) -> None:
    cell["outputs"] = []
    cell["execution_count"] = None
    tags = list(cell.get("metadata", {}).get("tags", []))
    if RAISES not in tags:
        tags.append(RAISES)
    cell.setdefault("metadata", {})["tags"] = tags


def student_version(notebook: dict) -> dict:
    """The student edition of one notebook (as a JSON dict)."""
    out = copy.deepcopy(notebook)
    cells = out["cells"]
    for index, cell in enumerate(cells):
        if not is_solution_cell(cell):
            continue
        cell["source"] = strip_solutions(source_of(cell))
        _expect_raise(cell)
        following = next((c for c in cells[index + 1:] if c["cell_type"] == "code"), None)
        if following is not None and is_check_cell(following) and not is_solution_cell(following):
            _expect_raise(following)
    return out


def dumps(notebook: dict) -> str:
    """Serialize a notebook as Jupyter does (1-space indent, sorted keys, newline at end)."""
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files() -> dict[Path, str]:
    files = {}
    for path in sorted(SOLUTIONS.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        notebook = json.loads(path.read_text(encoding="utf-8"))
        files[NOTEBOOKS / path.relative_to(SOLUTIONS)] = dumps(student_version(notebook))
    return files


def stale_files() -> list[str]:
    """Paths in ``notebooks/`` that are missing, different or left over."""
    expected = expected_files()
    stale = [str(p.relative_to(ROOT)) for p, text in expected.items()
             if not p.exists() or p.read_text(encoding="utf-8") != text]
    existing = {p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts}
    stale += [str(p.relative_to(ROOT)) for p in sorted(existing - set(expected))]
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if notebooks/ is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path} (run `make notebooks`)")
        return 1 if stale else 0
    expected = expected_files()
    for path in NOTEBOOKS.rglob("*.ipynb"):
        if path not in expected and ".ipynb_checkpoints" not in path.parts:
            path.unlink()
    for path, text in expected.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
