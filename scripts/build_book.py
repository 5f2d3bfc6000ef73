"""Build the course website (`make book`) with Jupyter Book 1.x, offline.

The book's source is assembled from the repository on every build, so it cannot go stale:

* the landing page is README.md (its chapter table linked to the chapter pages);
* a page for every notebook of ``solutions/``, with its committed outputs (never
  re-executed: the outputs are the ones nbval checks), and a note that names the student
  edition in ``notebooks/``;
* an API page for every public module of ``trustml_lab``, found with ``pkgutil``;
* ``_toc.yml`` generated from that tree: a new ``solutions/0N_<chapter>/`` directory or a new
  module appears in the book without editing it;
* MathJax copied from the installed ``django-static-mathjax`` wheel (MathJax 3.2.2), so math
  renders without a CDN.

The committed configuration (``book/_config.yml``) and static files (``book/_static/``) are
copied next to the generated pages in ``<out>/src``; Jupyter Book writes the site to
``<out>/_build/html``, every page afresh (``--all``), so that every warning is reported on
every build.

    python scripts/build_book.py                 # the site in _build/html
    python scripts/build_book.py --out /tmp/b    # the site in /tmp/b/_build/html
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import inspect
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
PACKAGE = "trustml_lab"
#: The MathJax bundle Sphinx loads (relative to ``_static``), and the package that ships it.
MATHJAX_BUNDLE = "tex-mml-chtml.js"
MATHJAX_PACKAGE = "django-static-mathjax"
MATHJAX_MODULE = "mathjax"
CHAPTER_DIR = re.compile(r"^(\d\d)_([a-z0-9_]+)$")


@dataclass(frozen=True)
class Chapter:
    """One directory of ``solutions/``: its number, caption and notebooks (relative paths)."""

    directory: str
    number: int
    caption: str
    notebooks: tuple[str, ...]


def chapters(solutions: Path = ROOT / "solutions") -> list[Chapter]:
    """The chapters of ``solutions/``, in order: every ``0N_<name>/*.ipynb``.

    >>> [c.caption for c in chapters()][:2]
    ['Chapter 0: Getting started', 'Chapter 1: Fairness']
    """
    found = []
    for directory in sorted(p for p in solutions.iterdir() if p.is_dir() and not p.name.startswith(".")):
        match = CHAPTER_DIR.match(directory.name)
        notebooks = sorted(p for p in directory.glob("*.ipynb"))
        if not notebooks:
            continue
        if match is None:
            raise ValueError(f"solutions/{directory.name}: expected a directory named 0N_<chapter> "
                             "(two digits, an underscore, lower-case words)")
        number, name = int(match[1]), match[2].replace("_", " ").capitalize()
        found.append(Chapter(directory.name, number, f"Chapter {number}: {name}",
                             tuple(f"{directory.name}/{p.name}" for p in notebooks)))
    return found


def public_modules(package: str = PACKAGE) -> list[str]:
    """The package and every module or subpackage of it with no private component.

    >>> public_modules()[:2], "trustml_lab.checks.fairness" in public_modules()
    (['trustml_lab', 'trustml_lab.checks'], True)
    """
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def public_members(module_name: str) -> list[tuple[str, str]]:
    """``(name, autodoc directive)`` for each public member: ``__all__``, else what it defines.

    >>> public_members("trustml_lab")
    [('setup', 'autofunction'), ('versions', 'autofunction'), ('banner', 'autofunction')]
    """
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        names = [n for n in module.__all__ if not (n.startswith("__") and n.endswith("__"))]
    else:
        names = [n for n, obj in vars(module).items()
                 if not n.startswith("_") and getattr(obj, "__module__", None) == module_name
                 and (inspect.isfunction(obj) or inspect.isclass(obj))]
    members = []
    for name in names:
        obj = getattr(module, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            kind = "autoexception"
        elif inspect.isclass(obj):
            kind = "autoclass"
        elif inspect.isfunction(obj):
            kind = "autofunction"
        else:
            kind = "autodata"
        members.append((name, kind))
    return members


# ------------------------------------------------------------------------------ pages


def summary(obj) -> str:
    """The first sentence of ``obj``'s docstring (RST), never cut inside a literal or a role.

    Sphinx's autosummary cuts at the first ". ", even inside ``a . b``.

    >>> summary(summary)
    "The first sentence of ``obj``'s docstring (RST), never cut inside a literal or a role."
    """
    doc = inspect.getdoc(obj) or ""
    paragraph = " ".join(doc.split("\n\n", 1)[0].split())
    quote = None  # the delimiter of the literal or role we are in
    i = 0
    while i < len(paragraph):
        if quote is None and paragraph.startswith("``", i):
            quote, i = "``", i + 2
            continue
        if quote is None and paragraph[i] == "`":
            quote, i = "`", i + 1
            continue
        if quote is not None and paragraph.startswith(quote, i):
            i, quote = i + len(quote), None
            continue
        if quote is None and paragraph[i] == "." and (i + 1 == len(paragraph) or paragraph[i + 1] == " "):
            return paragraph[: i + 1]
        i += 1
    return paragraph


def api_page(module_name: str) -> str:
    """A MyST page: the module's docstring, a summary table, then every public member."""
    module = importlib.import_module(module_name)
    members = public_members(module_name)
    lines = [f"# `{module_name}`", "", "```{eval-rst}", f".. automodule:: {module_name}", ""]
    if members:
        lines += [".. rubric:: Summary", "", ".. list-table::", "   :class: api-summary", "   :widths: auto", ""]
        for name, kind in members:
            text = summary(getattr(module, name)) if kind != "autodata" else ""  # data: no docstring of its own
            lines += [f"   * - :py:obj:`{name}`", f"     - {text or ' '}"]
        lines.append("")
    for name, kind in members:
        lines.append(f".. {kind}:: {name}")
        if kind in ("autoclass", "autoexception"):
            lines += ["   :members:", "   :show-inheritance:"]
        lines.append("")
    lines.append("```")
    return "\n".join(lines) + "\n"


def api_index(modules: list[str]) -> str:
    lines = ["# API reference", "",
             f"Every public module of `{PACKAGE}`, generated from its docstrings: what each function "
             "computes, the reference it equals, and a runnable example (the examples run as "
             "doctests in `make test`).", "",
             "| module | summary |", "|---|---|"]
    for name in modules:
        doc = inspect.getdoc(importlib.import_module(name)) or ""
        summary = doc.strip().splitlines()[0] if doc.strip() else ""
        lines.append(f"| [`{name}`]({name}.md) | {summary.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


_NOTEBOOK_IN_TABLE = re.compile(r"`(\d\d_[A-Za-z0-9_]+/[A-Za-z0-9_]+)\.ipynb`")
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def landing_page(readme: str, documents: set[str]) -> str:
    """README.md as the landing page: notebook paths become links to their chapter pages.

    A relative link to a file that is not a page of the book (``CONTRIBUTING.md``) becomes
    its text and path, since the site does not carry the repository's other files.

    >>> landing_page("| `01_fairness/1_x.ipynb` | bias |\\nSee [the guide](CONTRIBUTING.md).",
    ...              {"01_fairness/1_x"})
    '| [`01_fairness/1_x.ipynb`](01_fairness/1_x.ipynb) | bias |\\nSee the guide (`CONTRIBUTING.md`).'
    """
    def notebook_link(match: re.Match) -> str:
        if match[1] in documents:
            return f"[`{match[1]}.ipynb`]({match[1]}.ipynb)"
        return match[0]

    def other_link(match: re.Match) -> str:
        image, text, target = match.groups()
        if image or re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            return match[0]
        if target.removesuffix(".ipynb").removesuffix(".md") in documents:
            return match[0]
        return f"{text} (`{target}`)"

    text = _LINK.sub(other_link, readme)
    return _NOTEBOOK_IN_TABLE.sub(notebook_link, text)


def student_note(path: str) -> dict:
    """The markdown cell placed after a chapter's title: where the editions live."""
    source = (
        ":::{admonition} Run it yourself\n"
        ":class: tip\n"
        f"This page is `solutions/{path}` with the outputs that `make test` checks (nbval compares the "
        "checked cells with a fresh run on every change). The student edition, with the exercises as "
        f"stubs and self-checks, is **`notebooks/{path}`**: clone the repository and open it with "
        "`make lab`.\n"
        ":::"
    )
    return {"cell_type": "markdown", "id": "book-student-edition", "metadata": {}, "source": source}


def api_objects(modules: list[str]) -> dict[str, str]:
    """Every documented name: ``{"trustml_lab.fairness.disparate_impact": "autofunction", ...}``."""
    objects = {}
    for module in modules:
        objects[module] = "module"
        objects.update({f"{module}.{name}": kind for name, kind in public_members(module)})
    return objects


def _dotted(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def api_used(code_cells: list[str], objects: dict[str, str]) -> list[str]:
    """The package's documented functions and classes the code calls, in order of first use.

    Follows the notebook's imports (``from trustml_lab import fairness as fair``,
    ``from trustml_lab.data import load_adult``); IPython's ``%`` and ``!`` lines are skipped.

    >>> objects = api_objects(["trustml_lab.fairness", "trustml_lab.data"])
    >>> api_used(["from trustml_lab import fairness as fair\\nfrom trustml_lab.data import load_adult",
    ...           "fair.disparate_impact(None, load_adult().y, [0])\\nfair.disparate_impact"], objects)
    ['trustml_lab.fairness.disparate_impact', 'trustml_lab.data.load_adult']
    """
    aliases: dict[str, str] = {}
    used: list[str] = []
    for code in code_cells:
        lines = [line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == PACKAGE:
                        aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else PACKAGE
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
                for a in node.names:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        found = []
        for node in ast.walk(tree):
            chain = _dotted(node) if isinstance(node, (ast.Attribute, ast.Name)) else None
            if chain and chain[0] in aliases:
                name = ".".join([aliases[chain[0]], *chain[1:]])
                if objects.get(name, "module") != "module":
                    found.append((node.lineno, node.col_offset, name))
        used += [name for *_, name in sorted(found) if name not in used]
    return list(dict.fromkeys(used))


def api_note(names: list[str]) -> dict:
    """A collapsed list of links to the API pages of what a chapter uses."""
    links = ", ".join(f"{{py:obj}}`{n.removeprefix(PACKAGE + '.')} <{n}>`" for n in names)
    source = (f":::{{admonition}} The `{PACKAGE}` functions on this page\n:class: dropdown\n"
              f"In order of first use (each links to its API page): {links}.\n:::")
    return {"cell_type": "markdown", "id": "book-api-used", "metadata": {}, "source": source}


def chapter_notebook(path: Path, relative: str, objects: dict[str, str]) -> str:
    """The notebook as the book shows it: after its title, where its editions live and what it uses."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb["cells"]
    at = 1 if cells and cells[0]["cell_type"] == "markdown" else 0
    used = api_used(["".join(c["source"]) for c in cells if c["cell_type"] == "code"], objects)
    notes = [student_note(relative)] + ([api_note(used)] if used else [])
    nb["cells"] = cells[:at] + notes + cells[at:]
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def toc(chapter_list: list[Chapter], modules: list[str]) -> str:
    """``_toc.yml``: the landing page, one part per chapter, then the API reference."""
    lines = ["# Generated by scripts/build_book.py from solutions/ and trustml_lab: do not edit.",
             "format: jb-book", "root: index", "parts:"]
    for chapter in chapter_list:
        lines += [f"  - caption: {json.dumps(chapter.caption)}", "    chapters:"]
        lines += [f"      - file: {nb.removesuffix('.ipynb')}" for nb in chapter.notebooks]
    lines += ["  - caption: Reference", "    chapters:", "      - file: api/index", "        sections:"]
    lines += [f"          - file: api/{name}" for name in modules]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ staging


def mathjax_dir() -> Path:
    """The MathJax 3 ``es5`` directory of the installed ``django-static-mathjax``."""
    spec = importlib.util.find_spec(MATHJAX_MODULE)
    es5 = Path(spec.origin).parent / "static" / "mathjax" / "es5" if spec and spec.origin else None
    if es5 is None or not (es5 / MATHJAX_BUNDLE).is_file():
        raise RuntimeError(f"MathJax not found: the book serves it locally from the {MATHJAX_PACKAGE} package "
                           "(install the book's dependencies: make book-deps)")
    return es5


def _write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")


def stage(src: Path) -> list[Chapter]:
    """Assemble the book's source in ``src`` (emptied first) and return its chapters."""
    chapter_list = chapters()
    modules = public_modules()
    objects = api_objects(modules)
    documents = {nb.removesuffix(".ipynb") for c in chapter_list for nb in c.notebooks}
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(BOOK, src, ignore=shutil.ignore_patterns("_build"))
    # MathJax: the one combined bundle Sphinx loads, plus the pieces it loads on demand (TeX
    # extensions, fonts, the menu's accessibility tools); not the other combined bundles.
    es5 = mathjax_dir()
    bundles = {p.name for p in es5.glob("*.js")} - {MATHJAX_BUNDLE}
    shutil.copytree(es5, src / "_extra" / "_static" / "mathjax", ignore=lambda d, names:
                    [n for n in names if Path(d) == es5 and n in bundles])
    _write(src / "index.md", landing_page((ROOT / "README.md").read_text(encoding="utf-8"), documents))
    for chapter in chapter_list:
        for nb in chapter.notebooks:
            _write(src / nb, chapter_notebook(ROOT / "solutions" / nb, nb, objects))
    _write(src / "api" / "index.md", api_index(modules))
    for name in modules:
        _write(src / "api" / f"{name}.md", api_page(name))
    _write(src / "_toc.yml", toc(chapter_list, modules))
    return chapter_list


#: Warnings the build gives today, each with its reason: docstrings that docutils cannot
#: parse (their owners fix them, then the line goes; tests/test_book.py fails on a line that no
#: longer matches, as on any warning not listed here).
KNOWN_WARNINGS: dict[str, str] = {
}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_WARNING = re.compile(r"\b(WARNING|ERROR|SEVERE|CRITICAL):")


@dataclass(frozen=True)
class BuildResult:
    """A finished build: the site, the ``jb build`` exit code and log, and Sphinx's warnings."""

    html: Path
    returncode: int
    log: str
    warnings: tuple[str, ...]
    seconds: float

    @property
    def unexpected(self) -> list[str]:
        """Warnings that no entry of :data:`KNOWN_WARNINGS` explains."""
        return [w for w in self.warnings if not any(re.search(k, w) for k in KNOWN_WARNINGS)]

    @property
    def stale(self) -> list[str]:
        """Entries of :data:`KNOWN_WARNINGS` that no warning matches any more."""
        return [k for k in KNOWN_WARNINGS if not any(re.search(k, w) for w in self.warnings)]


def warnings_in(log: str, *roots: Path) -> tuple[str, ...]:
    """The first line of every warning or error in a Sphinx log, with ``roots`` cut from paths.

    >>> warnings_in("x\\n/o/_build/src/a.md:3: WARNING: odd\\n  detail\\n", Path("/o/_build/src"))
    ('a.md:3: WARNING: odd',)
    """
    found = []
    for line in _ANSI.sub("", log).splitlines():
        if _WARNING.search(line):
            for root in roots:
                line = line.replace(f"{root}{os.sep}", "")
            found.append(line.strip())
    return tuple(found)


def build(out: Path = ROOT) -> BuildResult:
    """Stage the source in ``out/_build/src`` and build the site into ``out/_build/html``."""
    start = time.perf_counter()
    out = Path(out).resolve()
    src, html = out / "_build" / "src", out / "_build" / "html"
    stage(src)
    if html.exists():
        shutil.rmtree(html)  # no page of a notebook that is gone
    command = [str(Path(sys.executable).parent / "jb"), "build", str(src), "--path-output", str(out),
               "--builder", "html", "--all", "-q"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "TRUSTML_PROGRESS": "0"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    log = done.stdout + done.stderr
    return BuildResult(html, done.returncode, log, warnings_in(log, src, ROOT),
                       time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="the site goes to OUT/_build/html (default: .)")
    args = parser.parse_args(argv)
    result = build(args.out)
    if result.returncode:
        sys.stdout.write(result.log)
        print(f"book: jb build failed (exit {result.returncode}) after {result.seconds:.0f} s", file=sys.stderr)
        return result.returncode
    for warning in result.unexpected:
        print(warning, file=sys.stderr)
    known = len(result.warnings) - len(result.unexpected)
    print(f"book: {result.html / 'index.html'} built in {result.seconds:.0f} s; "
          f"{len(result.unexpected)} new warnings, {known} known (scripts/build_book.py KNOWN_WARNINGS)")
    for entry in result.stale:
        print(f"book: KNOWN_WARNINGS lists {entry!r}, which no longer occurs: remove it", file=sys.stderr)
    return 1 if result.unexpected or result.stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
