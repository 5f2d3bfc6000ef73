"""Execute solution notebooks in place, top to bottom, and strip volatile metadata.

For maintainers (``make execute [NB=path ...]``): runs each notebook in a fresh kernel
from its own folder, with the environment of the caller (``make`` sets one torch thread
and no progress bars, and leaves matplotlib's inline backend on so that the committed
notebooks show their plots), keeps only stable metadata, and prints each notebook's run time,
the number that goes into README's chapter table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def clean_metadata(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Keep what is stable: kernelspec, language name, cell tags; drop timings and the rest.

    >>> nb = nbformat.v4.new_notebook(metadata={"widgets": {}, "language_info": {"name": "python", "version": "3"}})
    >>> nb.cells = [nbformat.v4.new_code_cell("1", metadata={"tags": ["x"], "scrolled": True})]
    >>> cleaned = clean_metadata(nb)
    >>> sorted(cleaned.metadata), dict(cleaned.metadata.language_info), dict(cleaned.cells[0].metadata)
    (['kernelspec', 'language_info'], {'name': 'python'}, {'tags': ['x']})
    """
    notebook.metadata = nbformat.from_dict(
        {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    )
    for cell in notebook.cells:
        tags = cell.get("metadata", {}).get("tags")
        cell.metadata = nbformat.from_dict({"tags": tags} if tags else {})
    return notebook


def execute(path: Path, *, timeout: int = 600) -> float:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}}, record_timing=False,
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    nbformat.write(clean_metadata(notebook), path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: all in solutions/)")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "solutions").rglob("*.ipynb"))
    paths = [p for p in paths if ".ipynb_checkpoints" not in p.parts]
    for path in paths:
        elapsed = execute(path.resolve())
        print(f"{elapsed:6.1f} s  {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
