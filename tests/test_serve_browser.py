"""The service's /dashboard (and HTML model card) opened in headless Chromium: no console error, no
request to another host, every plot decoded.

Reuses the book's browser helper (``scripts/check_book.py``: Debian's chromium through the system
chromedriver, the flags, a fresh profile, every host but 127.0.0.1 unresolvable). Locally without
Chromium the test skips and says why; under ``CI=true`` a missing browser fails.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests import _serve_bundles as bundles
from trustml_lab.serve import Monitor
from trustml_lab.serve.app import create_app

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import check_book  # noqa: E402

CI = os.environ.get("CI") == "true"
START_TIMEOUT_S = 30.0

# Runs in the page: decode every image, then report what was decoded.
_IMAGES = r"""
const done = arguments[arguments.length - 1];
(async () => {
  const images = [...document.images];
  await Promise.allSettled(images.map(img => img.decode()));
  return {images: images.length,
          decoded: images.filter(img => img.complete && img.naturalWidth > 0).length,
          widths: images.map(img => img.naturalWidth),
          title: document.title};
})().then(done, error => done({failed: String(error)}));
"""


@pytest.fixture(scope="module")
def service_url(tmp_path_factory):
    """The service in a uvicorn thread on a free port, with v2 rolled back to v1 by 400 real decisions."""
    missing = check_book.browser_missing()
    if missing:
        if CI:
            pytest.fail(f"{missing} (CI=true: the dashboard's browser test must run)")
        pytest.skip(missing)
    import uvicorn

    root = tmp_path_factory.mktemp("browser-service")
    registry = bundles.build_registry(root)
    reference = bundles.reference(5000)
    monitor = Monitor(reference, group="sex", window=150, min_window=150, min_positives=4)
    app = create_app(registry, reference=reference, monitor=monitor, check_every=50)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the service did not start within 30 s")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    try:
        served = []
        with httpx.Client(base_url=url, timeout=30) as client:  # decisions and their outcomes: TPR and error rates
            for body, label in zip(bundles.test_records(0, 400), bundles.test_labels(0, 400)):
                answer = client.post("/predict", json=body).json()
                client.post("/outcome", json={"request_id": answer["request_id"], "label": label})
                served.append(answer["version"])
        assert served[0] == "v2" and served[-1] == "v1"  # the dashboard has a rollback to show
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        registry.close()


@pytest.mark.parametrize(("path", "plots"), [("/dashboard", 2), ("/model-card", None)])
def test_page_loads_offline_without_console_errors_and_every_plot_decodes(service_url, path, plots):
    """Chromium asks for text/html first, so /model-card comes back as HTML."""
    with check_book.chromium() as driver:
        driver.get(service_url + path)
        seen = driver.execute_async_script(_IMAGES)
        console = check_book._console(driver)
        stray = check_book._requests(driver, service_url)
    assert "failed" not in seen, seen
    assert console == [], console
    assert stray == [], stray
    assert seen["images"] == (plots or seen["images"]) and seen["images"] >= 1, seen  # the card: the report's plots
    assert seen["decoded"] == seen["images"] and all(width > 100 for width in seen["widths"]), seen
    assert seen["title"] == "Fairness dashboard" if plots else seen["title"].startswith("Model card"), seen


# Runs in the page: wait (bounded) until Swagger UI has rendered the schema's operations.
_OPERATIONS = r"""
const done = arguments[arguments.length - 1];
const start = Date.now();
(function poll() {
  const paths = [...document.querySelectorAll('.opblock-summary-path')].map(e => e.textContent.trim());
  if (paths.length >= 5 || Date.now() - start > 20000) { done({paths: paths, title: document.title}); }
  else { setTimeout(poll, 100); }
})();
"""


def test_the_api_docs_render_offline(service_url):
    """/docs (Swagger UI) renders every operation from files the service serves itself: no CDN."""
    with check_book.chromium() as driver:
        driver.get(service_url + "/docs")
        seen = driver.execute_async_script(_OPERATIONS)
        console = check_book._console(driver)
        stray = check_book._requests(driver, service_url)
    assert {"/predict", "/explain", "/outcome", "/model-card", "/metrics"} <= set(seen["paths"]), seen
    assert seen["title"].endswith("Swagger UI"), seen
    assert console == [], console
    assert stray == [], stray
