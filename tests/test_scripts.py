"""The maintainer scripts: student-notebook generation and reproducible data files."""

import contextlib
import gzip
import importlib.util
import io
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import build_data  # noqa: E402
import make_student_notebooks as msn  # noqa: E402


def notebook(*cells):
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def code_cell(source, count=1):
    return {"cell_type": "code", "source": source, "metadata": {}, "execution_count": count,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "x\n"}]}


def test_solution_blocks_become_stubs_and_checks_expect_raise():
    nb = notebook(
        code_cell("import trustml_lab", 1),
        code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n", 2),
        {"cell_type": "markdown", "source": "Now check:", "metadata": {}},
        code_cell("checks.getting_started.check_f(f)", 3),
        code_cell("print(1)", 4),
    )
    out = msn.student_version(nb)["cells"]
    assert out[0] == nb["cells"][0]
    assert out[1]["source"] == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    for cell in (out[1], out[3]):
        assert cell["outputs"] == [] and cell["execution_count"] is None
        assert cell["metadata"]["tags"] == ["raises-exception"]
    assert out[4] == nb["cells"][4]
    assert "return 2 * x" in nb["cells"][1]["source"], "the source notebook is left alone"


def test_unbalanced_markers_are_refused():
    with pytest.raises(ValueError, match="unbalanced"):
        msn.strip_solutions("### BEGIN SOLUTION\nx = 1\n")


def test_gzip_output_is_byte_reproducible():
    payload = b"1,2,3\n" * 1000
    first, second = build_data.deterministic_gzip(payload), build_data.deterministic_gzip(payload)
    assert first == second and gzip.decompress(first) == payload
    assert first[4:8] == b"\0\0\0\0", "no timestamp in the gzip header"


def test_rows_and_columns_are_counted_like_the_manifest():
    assert build_data.count_rows_columns("german.data", b"A11 6 A34\nA12 48 A32\n") == (2, 3)
    assert build_data.count_rows_columns("adult.test", b"|1x3 Cross validator\n1, a\n2, b\n\n") == (2, 2)


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "scripts").glob("*.py")))
def test_importing_a_script_does_nothing(script, monkeypatch):
    """`make test-package` collects the scripts' doctests, so importing one must not act:
    no output, no change to sys.path or to data/, nothing run."""
    monkeypatch.syspath_prepend(str(ROOT))  # as under `make`, which sets PYTHONPATH to the checkout
    path_before = list(sys.path)
    data_before = {p.name: p.stat().st_mtime_ns for p in (ROOT / "data").iterdir()}
    spec = importlib.util.spec_from_file_location(f"_imported_{Path(script).stem}", ROOT / "scripts" / script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # as an import does (dataclasses look it up)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        spec.loader.exec_module(module)
    assert out.getvalue() == ""
    assert sys.path == path_before
    assert {p.name: p.stat().st_mtime_ns for p in (ROOT / "data").iterdir()} == data_before
    assert callable(getattr(module, "main", None)), "a script acts in main(), called under __main__ only"
