"""The course website (`make book`, issue 12): built once per session, then read and browsed.

The build (scripts/build_book.py, Jupyter Book 1.x, about a minute) runs once per test session
and the browser pass (scripts/check_book.py, headless Chromium) once after it; all tests here
share one xdist group, and a file lock shares both results should they run on several workers.
Locally without Chromium the browser tests skip and say why; under ``CI=true`` a missing
browser or a missing book dependency fails.
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import build_book  # noqa: E402
import check_book  # noqa: E402

CI = os.environ.get("CI") == "true"
# One worker runs every test here (make test-package uses --dist loadgroup): the others go on.
pytestmark = pytest.mark.xdist_group("book")
SOLUTIONS = sorted(p.relative_to(ROOT / "solutions").as_posix() for p in (ROOT / "solutions").glob("*/*.ipynb"))


def _modules_on_disk() -> list[str]:
    """Public modules found from the files (independently of build_book.public_modules)."""
    names = []
    for path in sorted((ROOT / "trustml_lab").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if not any(p.startswith("_") for p in parts):
            names.append(".".join(parts))
    return names


MODULES = _modules_on_disk()


class _Text(HTMLParser):
    """A page's visible text (no scripts or styles), whitespace collapsed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def page_text(path: Path) -> str:
    parser = _Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return " ".join("".join(parser.parts).split())


def squash(text: str) -> str:
    return " ".join(text.split())


def _need(reason: str) -> None:
    if CI:
        pytest.fail(f"{reason} (CI=true: the book's checks must run)")
    pytest.skip(reason)


def _shared(tmp_path_factory, worker_id: str) -> Path:
    base = tmp_path_factory.getbasetemp()
    return base.parent if worker_id != "master" else base


@pytest.fixture(scope="session")
def site(tmp_path_factory, worker_id) -> build_book.BuildResult:
    """The book built once for the whole session into a temporary folder."""
    missing = [m for m in ("jupyter_book", build_book.MATHJAX_MODULE) if importlib.util.find_spec(m) is None]
    if missing:
        _need(f"the book's dependencies are not installed ({', '.join(missing)}): make book-deps")
    shared = _shared(tmp_path_factory, worker_id)
    record = shared / "book-build.json"
    with FileLock(str(record) + ".lock"):
        if not record.is_file():
            result = build_book.build(shared / "book")
            record.write_text(json.dumps(dataclasses.asdict(result), default=str))
        data = json.loads(record.read_text())
    data["html"], data["warnings"] = Path(data["html"]), tuple(data["warnings"])
    result = build_book.BuildResult(**data)
    print(f"book built in {result.seconds:.0f} s")
    return result


@pytest.fixture(scope="session")
def html(site) -> Path:
    if site.returncode:
        pytest.fail(f"jb build failed (exit {site.returncode}):\n{site.log[-6000:]}")
    return site.html


@pytest.fixture(scope="session")
def browser(html, tmp_path_factory, worker_id) -> check_book.BrowserReport:
    """Every page opened once in headless Chromium, for the whole session."""
    missing = check_book.browser_missing()
    if missing:
        _need(missing)
    record = _shared(tmp_path_factory, worker_id) / "book-browser.json"
    with FileLock(str(record) + ".lock"):
        if not record.is_file():
            record.write_text(json.dumps(dataclasses.asdict(check_book.browse(html))))
        report = check_book.BrowserReport(**json.loads(record.read_text()))
    print(f"browser pass: {report.pages} pages in {report.seconds:.1f} s")
    return report


# ------------------------------------------------------------------------------ the build


def test_build_has_no_warning_that_nobody_looked_at(site, html):
    assert site.warnings or not build_book.KNOWN_WARNINGS
    assert not site.unexpected, "Sphinx warnings (fix them, or list them with a reason in " \
        "build_book.KNOWN_WARNINGS):\n" + "\n".join(site.unexpected)
    assert not site.stale, f"build_book.KNOWN_WARNINGS lists warnings that no longer occur: remove {site.stale}"


def test_no_page_loads_anything_from_another_host(html):
    assert check_book.pages(html), "no pages built"
    assert check_book.external_loads(html) == []
    assert "mathjax" in (html / "04_privacy" / "1_mechanisms.html").read_text(), "MathJax is served locally"
    assert (html / "_static" / "mathjax" / build_book.MATHJAX_BUNDLE).is_file()


def test_internal_links_and_anchors_resolve(html):
    assert check_book.broken_links(html) == []


def test_every_notebook_is_a_page_with_its_committed_outputs(html):
    assert SOLUTIONS, "no notebooks found"
    for nb_path in SOLUTIONS:
        page = html / nb_path.replace(".ipynb", ".html")
        assert page.is_file(), f"solutions/{nb_path} has no page in the book"
        nb = json.loads((ROOT / "solutions" / nb_path).read_text(encoding="utf-8"))
        source = page.read_text(encoding="utf-8")
        text = page_text(page)
        plots = sum("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))
        shown = len(re.findall(r'<img[^>]+src="\.\./_images/', source))
        assert shown == plots, f"{nb_path}: {plots} plots in the notebook, {shown} images on its page"
        for cell in nb["cells"]:
            code = "".join(cell["source"])
            if cell["cell_type"] == "code" and code.startswith("# NBVAL_CHECK_OUTPUT"):
                printed = "".join("".join(o.get("text", "")) for o in cell["outputs"] if o["output_type"] == "stream")
                assert squash(printed) in text, f"{nb_path}: a checked output is not on its page:\n{printed}"
        assert f"notebooks/{nb_path}" in text, f"{nb_path}: the page does not name the student edition"
        api_links = set(re.findall(r'href="\.\./api/(trustml_lab[\w.]*\.html#[\w.]+)"', source))
        assert len(api_links) >= 3, f"{nb_path}: links to the API pages of what it uses: {sorted(api_links)}"
        assert (ROOT / "notebooks" / nb_path).is_file(), f"notebooks/{nb_path} (the student edition) is missing"


def test_every_notebook_is_in_the_table_of_contents(site, html):
    toc = (site.html.parent / "src" / "_toc.yml").read_text()
    navigation = html / "index.html"
    for nb_path in SOLUTIONS:
        assert f"file: {nb_path.removesuffix('.ipynb')}\n" in toc, f"{nb_path} is missing from _toc.yml"
        assert f'href="{nb_path.replace(".ipynb", ".html")}"' in navigation.read_text(), \
            f"{nb_path}: no link in the landing page's navigation"


def test_every_module_has_an_api_page_with_its_examples(html):
    assert {"trustml_lab", "trustml_lab.fairness", "trustml_lab.checks.privacy"} <= set(MODULES)
    for name in MODULES:
        page = html / "api" / f"{name}.html"
        assert page.is_file(), f"{name} has no API page"
        ids = check_book._parse(page).ids
        text = page_text(page)
        module = importlib.import_module(name)
        public = getattr(module, "__all__", None) or [
            n for n, o in vars(module).items() if not n.startswith("_") and getattr(o, "__module__", None) == name]
        for member in public:
            if member.startswith("__"):
                continue
            assert f"{name}.{member}" in ids, f"{name}.{member} is not documented on {page.name}"
            doc = inspect.getdoc(getattr(module, member)) if callable(getattr(module, member)) else None
            example = next((line.strip() for line in (doc or "").splitlines() if line.strip().startswith(">>>")), None)
            if example:
                example = re.sub(r"\s*# doctest:.*$", "", example)  # Sphinx hides doctest flags
                assert squash(example) in text, f"{name}.{member}: its example {example!r} is not rendered"
        assert 'class="doctest' in page.read_text() or ">>>" not in (inspect.getsource(module)), \
            f"{name}: no doctest block rendered"


def test_landing_page_is_the_readme_with_linked_chapters(html):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_paragraph = readme.split("\n\n")[1]
    plain = squash(re.sub(r"[*`]", "", first_paragraph))
    index = html / "index.html"
    assert plain in page_text(index)
    source = index.read_text(encoding="utf-8")
    for listed in re.findall(r"`(\d\d_[a-z_]+/[a-z0-9_]+)\.ipynb`", readme):
        assert f'<a class="reference internal" href="{listed}.html">' in source, \
            f"the README's chapter table entry {listed} is not a link to its page"


def test_a_new_chapter_directory_appears_in_the_table_of_contents(tmp_path):
    for rel in ("00_getting_started/getting_started.ipynb", "05_transformers/1_toxicity.ipynb",
                "05_transformers/2_attacks.ipynb"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    (tmp_path / "scratch").mkdir()  # no notebooks: not a chapter
    found = build_book.chapters(tmp_path)
    assert [c.caption for c in found] == ["Chapter 0: Getting started", "Chapter 5: Transformers"]
    toc = build_book.toc(found, ["trustml_lab", "trustml_lab.text"])
    assert "    chapters:\n      - file: 05_transformers/1_toxicity\n      - file: 05_transformers/2_attacks\n" in toc
    assert "          - file: api/trustml_lab.text\n" in toc
    (tmp_path / "Extras").mkdir()
    (tmp_path / "Extras" / "a.ipynb").write_text("{}")
    with pytest.raises(ValueError, match="0N_<chapter>"):
        build_book.chapters(tmp_path)


def test_build_and_check_scripts_doctests():
    for module in (build_book, check_book):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# ------------------------------------------------------------------------------ the checks can fail


def test_the_static_checks_find_what_they_look_for(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "theme.css").write_text("@import 'https://fonts.example/css'; a{}")
    (tmp_path / "index.html").write_text(
        '<html><head><script src="https://cdn.example/x.js"></script>'
        '<link rel="stylesheet" href="//cdn.example/y.css"><link rel="stylesheet" href="_static/theme.css">'
        '</head><body id="top"><img src="_images/missing.png"><a href="gone.html">x</a>'
        '<a href="index.html#top">ok</a><a href="#nowhere">bad anchor</a>'
        '<a href="https://example.org/">a plain link to read elsewhere is fine</a></body></html>')
    loads = check_book.external_loads(tmp_path)
    assert sorted(loads) == ["_static/theme.css: loads https://fonts.example/css",
                             "index.html: <link> loads //cdn.example/y.css",
                             "index.html: <script> loads https://cdn.example/x.js"]
    broken = check_book.broken_links(tmp_path)
    assert sorted(broken) == ["index.html: #nowhere: no id 'nowhere' in index.html",
                              "index.html: _images/missing.png: no such file",
                              "index.html: gone.html: no such file"]


def test_the_browser_check_finds_what_it_looks_for(tmp_path):
    if check_book.browser_missing():
        _need(check_book.browser_missing())
    (tmp_path / "index.html").write_text(
        '<html><body><img src="missing.png"><img src="data:image/gif;base64,'
        'R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==">'
        '<span class="math">\\(x^2\\)</span><a href="gone.html">gone</a>'
        '<script>console.error("boom")</script><script src="https://cdn.example/x.js"></script></body></html>')
    report = check_book.browse(tmp_path, search=False)
    problems = report.problems
    assert report.pages == 1 and report.images == 2
    assert problems["images"] == ["index.html: not decoded: missing.png"]
    assert any("boom" in p for p in problems["console"]), problems["console"]
    assert problems["requests"] == ["index.html: requested https://cdn.example/x.js"]
    assert problems["math"] == ["index.html: 1 math elements, none typeset by MathJax",
                                "index.html: raw '\\\\(' left in the text", "index.html: raw '\\\\)' left in the text"]
    assert problems["links"] == ["gone.html: HTTP 404"]


# ------------------------------------------------------------------------------ in the browser


def test_pages_load_without_console_errors_or_foreign_requests(browser, html):
    assert browser.pages == len(check_book.pages(html))
    assert browser.problems["console"] == []
    assert browser.problems["requests"] == []


def test_every_image_is_decoded(browser):
    assert browser.images >= sum(1 for _ in SOLUTIONS), "fewer images than notebooks: plots are missing"
    assert browser.problems["images"] == []


def test_math_is_typeset(browser):
    assert browser.math_pages >= 5, "MathJax ran on fewer pages than expected"
    assert browser.problems["math"] == []


def test_every_internal_link_answers(browser):
    assert browser.links > len(SOLUTIONS) + len(MODULES)
    assert browser.problems["links"] == []


def test_search_finds_epsilon_in_the_privacy_chapter(browser):
    assert browser.problems["search"] == []
    assert any(r.startswith("04_privacy/") for r in browser.search_results), browser.search_results
