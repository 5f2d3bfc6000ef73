"""Notebook hygiene for both editions, and the student edition is up to date.

nbval (``make test-notebooks``) runs the notebooks; these tests read them as files.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_student_notebooks as msn  # noqa: E402

SOLUTIONS = sorted(p for p in (ROOT / "solutions").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
STUDENT = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
ALL = SOLUTIONS + STUDENT

FORBIDDEN = {
    "a download": re.compile(r"urlretrieve|urlopen|\bwget\b|\bcurl\b|download\s*=\s*True|"
                             r"torch\.hub|from_pretrained|hf_hub_download|requests\.get"),
    "pickle.load": re.compile(r"pickle\.loads?\s*\(|joblib\.load\s*\("),
}
SECURITY_DEMO = "security-demo"
ALLOWED_NOTEBOOK_METADATA = {"kernelspec", "language_info"}
ALLOWED_CELL_METADATA = {"tags"}


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def code(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def tags(cell):
    return set(cell.get("metadata", {}).get("tags", []))


def ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def test_there_are_notebooks_in_both_editions():
    assert SOLUTIONS, "solutions/ holds no notebook"
    assert [p.relative_to(ROOT / "solutions") for p in SOLUTIONS] == \
        [p.relative_to(ROOT / "notebooks") for p in STUDENT]


def test_student_edition_is_up_to_date():
    stale = msn.stale_files()
    assert not stale, f"notebooks/ is stale, run `make notebooks`: {stale}"


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_executed_in_order_without_unexpected_errors(path):
    cells = [c for c in load(path)["cells"] if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in cells if c["execution_count"] is not None]
    expected_raise = [c for c in cells if "raises-exception" in tags(c)]
    if path in SOLUTIONS:
        assert counts == list(range(1, len(cells) + 1)), "execute top to bottom: `make execute`"
        assert not expected_raise, "solutions must not expect exceptions"
    else:
        assert counts == sorted(counts) and len(set(counts)) == len(counts)
        cleared = [c for c in cells if c["execution_count"] is None]
        assert all("raises-exception" in tags(c) for c in cleared)
    for cell in cells:
        errors = [o for o in cell.get("outputs", []) if o["output_type"] == "error"]
        assert not errors, f"error output in a cell: {code(cell)[:80]!r}"


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_no_volatile_metadata(path):
    notebook = load(path)
    assert set(notebook["metadata"]) <= ALLOWED_NOTEBOOK_METADATA
    assert set(notebook["metadata"].get("language_info", {})) <= {"name"}
    for cell in notebook["cells"]:
        assert set(cell.get("metadata", {})) <= ALLOWED_CELL_METADATA, cell.get("metadata")
        for output in cell.get("outputs", []):
            text = json.dumps(output)
            assert "application/vnd.jupyter.widget" not in text, "widget state is volatile"


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids(SOLUTIONS))
def test_title_setup_exercises_and_checks(path):
    cells = load(path)["cells"]
    title = code(cells[0])
    assert cells[0]["cell_type"] == "markdown" and title.startswith("# "), "first cell: a title"
    assert re.search(r"you will learn", title, re.I), "title cell: list the objectives"
    assert re.search(r"prerequisites", title, re.I), "title cell: prerequisites"
    assert re.search(r"\btime\b", title, re.I), "title cell: time to read and to run"
    sources = [code(c) for c in cells if c["cell_type"] == "code"]
    assert any("trustml_lab.setup(seed=" in s for s in sources[:3]), "setup cell near the top"
    assert any("banner()" in s for s in sources[:3]), "print the version banner"
    assert any(s.startswith("# NBVAL_CHECK_OUTPUT") for s in sources), "print checked key numbers"
    assert any(re.search(r"^assert ", s, re.M) for s in sources), "a check cell asserting the science"
    exercises = [i for i, s in enumerate(sources) if msn.BEGIN in s]
    assert len(exercises) >= 2, "at least two exercises"
    for i in exercises:
        assert i + 1 < len(sources) and "checks." in sources[i + 1], "a self-check after each exercise"


@pytest.mark.parametrize("path", ALL, ids=ids(ALL))
def test_no_network_and_no_unsafe_loading(path):
    for cell in load(path)["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = code(cell)
        for what, pattern in FORBIDDEN.items():
            if what == "pickle.load" and SECURITY_DEMO in tags(cell):
                continue
            assert not pattern.search(source), f"{what} in {source[:80]!r}"
        for call in re.finditer(r"torch\.load\s*\(([^)]*)\)", source):
            assert "weights_only=True" in call.group(1), f"bare torch.load in {source[:80]!r}"


def test_student_exercises_are_stubs():
    for path in STUDENT:
        for cell in load(path)["cells"]:
            source = code(cell)
            assert msn.BEGIN not in source and "### END SOLUTION" not in source
            if "# YOUR CODE HERE" in source:
                assert "raise NotImplementedError()" in source and "raises-exception" in tags(cell)


def test_make_notebooks_check_mode_runs():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_student_notebooks.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_readme_chapter_table_lists_every_notebook_with_its_run_time():
    """README's chapter table is the course's table of contents: one row per notebook of
    solutions/, each with a measured run time, and no row for a notebook that does not exist."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\d\d_[a-z_]+/[a-z0-9_]+\.ipynb)` \|.*\| *(\d+ s) *\|$", readme, re.M))
    notebooks = {str(p.relative_to(ROOT / "solutions")) for p in SOLUTIONS}
    assert not notebooks - set(rows), f"notebooks missing from README's chapter table: {sorted(notebooks - set(rows))}"
    assert not set(rows) - notebooks, f"README lists notebooks that do not exist: {sorted(set(rows) - notebooks)}"


def test_run_time_stated_in_a_notebook_agrees_with_the_readme():
    """One measurement: README's table holds the seconds; a title cell says "under a minute"
    (< 60 s) or "about a minute" (<= 90 s, the ceiling) and never a figure of its own."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    seconds = {name: int(s) for name, s in
               re.findall(r"^\| `(\d\d_[a-z_]+/[a-z0-9_]+\.ipynb)` \|.*\| *(\d+) s *\|$", readme, re.M)}
    for path in SOLUTIONS:
        name = str(path.relative_to(ROOT / "solutions"))
        title = "".join(load(path)["cells"][0]["source"])
        assert not re.search(r"\d+ ?(s|seconds) to run", title), f"{name}: the title states its own run time"
        limit = 60 if "under a minute to run" in title else 90
        assert seconds.get(name, 0) <= limit, \
            f"{name}: README says {seconds.get(name)} s, the title promises <= {limit} s"
