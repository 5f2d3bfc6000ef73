"""Check the built course website: offline, links, and in a real browser (`make book-check`).

Two kinds of checks, each returning a list of problems (empty: all is well):

* :func:`external_loads` and :func:`broken_links` read the HTML files: no script,
  stylesheet, image or font from another host; every internal link and anchor resolves.
* :func:`browse` serves the site on 127.0.0.1 (``http.server`` in a thread) and opens every
  page in headless Chromium through Selenium and the system's chromedriver: no console error,
  no request to another host, every ``<img>`` decoded, math typeset by MathJax (no raw ``$$``
  or ``\\(`` left in the text), every internal link answered, and the search page finds
  "epsilon". With ``screenshots``, it saves the landing page and a chapter page at desktop
  (1280x800) and phone (390x844) sizes.

    python scripts/check_book.py                      # checks _build/html
    python scripts/check_book.py --screenshots _build/screenshots
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = "chromium/chromedriver not installed: apt-get install chromium chromium-driver"
#: Elements that make a browser load something, and the attributes that name it.
LOADING = {"script": ("src",), "link": ("href",), "img": ("src", "srcset"), "source": ("src", "srcset"),
           "iframe": ("src",), "video": ("src", "poster"), "audio": ("src",), "embed": ("src",),
           "object": ("data",), "input": ("src",)}
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
_CSS_URL = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])([^'")\s]+)""")


def is_external(url: str) -> bool:
    """Whether ``url`` names another host (``https://x``, ``//x``) rather than this site.

    >>> [is_external(u) for u in ("https://cdn.example/x.js", "//fonts.example/a", "_static/a.css",
    ...                           "data:image/png;base64,AA", "#top", "mailto:a@b.c")]
    [True, True, False, False, False, False]
    """
    url = url.strip()
    return url.startswith("//") or bool(re.match(r"^(https?|ftp|wss?):", url, re.IGNORECASE))


def pages(html: Path) -> list[Path]:
    """Every HTML page of the site (not the copies of sources or static assets)."""
    return sorted(p for p in html.rglob("*.html") if p.relative_to(html).parts[0] not in ("_static", "_sources"))


class _Page(HTMLParser):
    """The loads, links and ids of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.loads: list[tuple[str, str]] = []  # (element, url)
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.markers: set[str] = set()  # links of docutils' error markers (the build warns of each)
        self._open_link: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v for k, v in attrs if v is not None}
        for key in ("id", "name") if tag == "a" else ("id",):
            if key in values:
                self.ids.add(values[key])
        for attribute in LOADING.get(tag, ()):
            if attribute in values:
                urls = [part.strip().split(" ")[0] for part in values[attribute].split(",")] \
                    if attribute == "srcset" else [values[attribute]]
                self.loads += [(tag, url) for url in urls if url]
        if tag == "a" and values.get("href"):
            self.links.append(values["href"])
            self._open_link = values["href"]
        if tag == "span" and "problematic" in values.get("class", "").split() and self._open_link:
            self.markers.add(self._open_link)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._open_link = None


@functools.cache
def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def external_loads(html: Path) -> list[str]:
    """Every script, stylesheet, image, frame or font that a page or a stylesheet loads from elsewhere."""
    html = Path(html).resolve()
    problems = []
    for path in pages(html):
        for tag, url in _parse(path).loads:
            if is_external(url):
                problems.append(f"{path.relative_to(html)}: <{tag}> loads {url}")
    for css in sorted(html.rglob("*.css")):
        for url in _CSS_URL.findall(css.read_text(encoding="utf-8", errors="replace")):
            if is_external(url):
                problems.append(f"{css.relative_to(html)}: loads {url}")
    return problems


def broken_links(html: Path) -> list[str]:
    """Internal links, loads and anchors that do not resolve to a built file or an id in it.

    Not the links of docutils' error markers (``|SPD|`` read as a substitution links to an
    error message that the HTML leaves out): the build reports each of them as a warning.
    """
    html = Path(html).resolve()
    problems = []
    for path in pages(html):
        page = _parse(path)
        for url in [u for _, u in page.loads] + [u for u in page.links if u not in page.markers]:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme or parts.netloc or url.startswith("data:"):
                continue
            target = (path.parent / urllib.parse.unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            where = f"{path.relative_to(html)}: {url}"
            if not target.is_file() or not target.is_relative_to(html):
                problems.append(f"{where}: no such file")
            elif parts.fragment and target.suffix == ".html" \
                    and urllib.parse.unquote(parts.fragment) not in _parse(target).ids:
                problems.append(f"{where}: no id {parts.fragment!r} in {target.relative_to(html)}")
    return problems


# ------------------------------------------------------------------------------ the browser


def browser_missing() -> str | None:
    """Why the browser checks cannot run here, or None."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        return INSTALL_HINT
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: make book-deps"
    return None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A browser that navigates on cancels the downloads it no longer needs: not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def chromium() -> Iterator:
    """Headless Chromium through the system chromedriver (never Selenium Manager's download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="trustml-book-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--disable-extensions", "--hide-scrollbars",
                 f"--user-data-dir={profile}", "--window-size=1280,800",
                 # Any host but this machine fails at once, so a stray load shows as an error.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# Runs in the page: typeset math if there is any, decode every image, then report.
_INSPECT = r"""
const done = arguments[arguments.length - 1];
(async () => {
  const math = document.querySelectorAll('.math').length;
  if (math && window.MathJax && MathJax.startup) { await MathJax.startup.promise; }
  const images = [...document.images];
  images.forEach(img => { img.loading = 'eager'; });
  await Promise.allSettled(images.map(img => img.decode()));
  const undecoded = images.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.getAttribute('src'));
  const clone = document.body.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, mjx-container, mjx-assistive-mml, .highlight, textarea')
       .forEach(node => node.remove());
  const text = clone.textContent;
  return {math: math, mathjax: !!window.MathJax, typeset: document.querySelectorAll('mjx-container').length,
          errors: [...document.querySelectorAll('mjx-merror')].map(node => node.textContent),
          raw: ['$$', '\\(', '\\)', '\\[', '\\]', '\\begin{'].filter(delimiter => text.includes(delimiter)),
          images: images.length, undecoded: undecoded,
          links: [...document.links].map(a => a.href)};
})().then(done, error => done({failed: String(error)}));
"""


@dataclass
class BrowserReport:
    """What the browser saw: problems by kind, and what it counted."""

    problems: dict[str, list[str]] = field(default_factory=lambda: {
        "console": [], "requests": [], "images": [], "math": [], "links": [], "search": []})
    pages: int = 0
    images: int = 0
    math_pages: int = 0
    links: int = 0
    search_results: list[str] = field(default_factory=list)
    seconds: float = 0.0
    screenshots: list[str] = field(default_factory=list)

    def all_problems(self) -> list[str]:
        return [f"{kind}: {p}" for kind, items in self.problems.items() for p in items]


def _requests(driver, base: str) -> list[str]:
    """URLs the page requested that are not this site (from Chrome's performance log)."""
    import json

    stray = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            # chrome:// and the like are the browser's own pages, not the network.
            if is_external(url) and not url.startswith(base):
                stray.append(url)
    return stray


def _console(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def screenshot_pages(html: Path) -> list[str]:
    """The landing page and the first page of chapter 1 (else of the first chapter)."""
    chapters = sorted(p.relative_to(html).as_posix() for p in html.glob("[0-9][0-9]_*/*.html"))
    first = next((c for c in chapters if c.startswith("01_")), chapters[0] if chapters else None)
    return ["index.html"] + ([first] if first else [])


def browse(html: Path, *, screenshots: Path | None = None, search: bool = True,
           query: str = "epsilon") -> BrowserReport:
    """Open every page of the site in headless Chromium and report what is wrong.

    ``search``: also run the search page for ``query``; ``screenshots``: a folder for them.
    """
    start = time.perf_counter()
    report = BrowserReport()
    html = Path(html).resolve()
    with serve(html) as base, chromium() as driver:
        internal: set[str] = set()
        for path in pages(html):
            name = path.relative_to(html).as_posix()
            driver.get(base + name)
            seen = driver.execute_async_script(_INSPECT)
            report.pages += 1
            if "failed" in seen:
                report.problems["console"].append(f"{name}: the page's check script failed: {seen['failed']}")
                continue
            report.problems["console"] += [f"{name}: {m}" for m in _console(driver)]
            report.problems["requests"] += [f"{name}: requested {u}" for u in _requests(driver, base)]
            report.images += seen["images"]
            report.problems["images"] += [f"{name}: not decoded: {src}" for src in seen["undecoded"]]
            if seen["math"]:
                report.math_pages += 1
                if not seen["mathjax"] or not seen["typeset"]:
                    report.problems["math"].append(f"{name}: {seen['math']} math elements, none typeset by MathJax")
                report.problems["math"] += [f"{name}: MathJax error {e!r}" for e in seen["errors"]]
            # On every page: math that the parser missed shows as raw delimiters too.
            report.problems["math"] += [f"{name}: raw {d!r} left in the text" for d in seen["raw"]]
            internal.update(u.split("#")[0] for u in seen["links"] if u.startswith(base))
        report.links = len(internal)
        for url in sorted(internal):
            try:
                with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our 127.0.0.1 server
                    status = response.status
            except urllib.error.HTTPError as error:
                status = error.code
            if status != 200:
                report.problems["links"].append(f"{url.removeprefix(base)}: HTTP {status}")
        if search:
            _search(driver, base, query, report)
        if screenshots is not None:
            _screenshots(driver, base, html, Path(screenshots), report)
    report.seconds = time.perf_counter() - start
    return report


def _search(driver, base: str, query: str, report: BrowserReport) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}search.html?q={urllib.parse.quote(query)}")
    try:
        # Sphinx's searchtools fills the (empty) summary when the search has finished.
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "const s = document.querySelector('#search-results .search-summary');"
            "return s !== null && s.textContent.trim() !== ''"))
    except Exception:  # noqa: BLE001 - a timeout is the finding
        report.problems["search"].append(f"search.html?q={query}: not finished after 30 s")
        return
    report.search_results = driver.execute_script(
        "return [...document.querySelectorAll('#search-results li a')].map(a => a.getAttribute('href'))")
    if not report.search_results:
        report.problems["search"].append(f"search.html?q={query}: no results")
    report.problems["console"] += [f"search.html: {m}" for m in _console(driver)]
    report.problems["requests"] += [f"search.html: requested {u}" for u in _requests(driver, base)]


def _screenshots(driver, base: str, html: Path, folder: Path, report: BrowserReport) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for page in screenshot_pages(html):
        for size, (width, height) in SIZES.items():
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == "phone"})
            driver.get(base + page)
            driver.execute_async_script(_INSPECT)
            stem = "landing" if page == "index.html" else Path(page).with_suffix("").as_posix().replace("/", "-")
            target = folder / f"{stem}-{size}.png"
            driver.save_screenshot(str(target))
            report.screenshots.append(str(target))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", nargs="?", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--screenshots", type=Path, help="write landing and chapter screenshots here")
    args = parser.parse_args(argv)
    if not (args.html / "index.html").is_file():
        print(f"{args.html}: no built site (make book)", file=sys.stderr)
        return 2
    problems = [f"offline: {p}" for p in external_loads(args.html)] + [f"links: {p}" for p in broken_links(args.html)]
    missing = browser_missing()
    if missing:
        print(f"book-check: {missing}", file=sys.stderr)
        return 2
    report = browse(args.html, screenshots=args.screenshots)
    problems += report.all_problems()
    for problem in problems:
        print(problem)
    print(f"book-check: {report.pages} pages, {report.images} images, {report.math_pages} pages with math, "
          f"{report.links} internal links, {len(report.search_results)} results for 'epsilon', "
          f"in {report.seconds:.1f} s; {len(problems)} problems")
    for shot in report.screenshots:
        print(f"screenshot: {shot}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
