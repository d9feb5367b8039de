"""The course website as a reader sees it: every page in headless Chromium, served from 127.0.0.1.

The site is built by ``python scripts/build_site.py`` (it executes the notebooks, so it is not built
here); this module tests the folder it wrote, ``build/site`` or ``$CAMVID_SITE_DIR``. Every request
that leaves 127.0.0.1 is aborted and recorded. For every page: no outside request, no page error,
every image loaded, no Python traceback in an output, the page's HTML under ``PAGE_BUDGET``, and every
link inside the site answers 200. On notebooks 01, 05 and 06 the viewers are real widgets (not their
text form), and moving the slider, or pressing ``Play``, changes the picture shown; ``Play`` shows
every frame of the clip. Searching for "focal" finds notebook 03.

Without a built site, Chromium or Playwright the tests are skipped with the command that enables
them; with ``CAMVID_REQUIRE_BROWSER=1`` (set by CI) that is a failure instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

from browser.harness import CHROMIUM_FLAGS

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("CAMVID_SITE_DIR") or REPO / "build" / "site")
REQUIRED = os.environ.get("CAMVID_REQUIRE_BROWSER") == "1"
# The largest page is a notebook whose viewer holds every frame pre-rendered; the widget manager
# (about 2 MB of JavaScript) is one shared file, not counted here.
PAGE_BUDGET = 8_000_000  # bytes of HTML per page
VIEWERS = {  # notebook page: whether its viewer has a Play button
    "notebooks/01_data_exploration/": False,
    "notebooks/05_inspecting_predictions/": False,
    "notebooks/06_video/": True,
    "notebooks/07_your_own_data/": False,
}


def _skip_or_fail(reason: str):
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


def _pages() -> list[str]:
    return sorted(
        str(p.parent.relative_to(SITE)).replace(os.sep, "/") + "/" if p.parent != SITE else ""
        for p in SITE.rglob("index.html")
        if "assets" not in p.relative_to(SITE).parts
    )


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").exists():
        _skip_or_fail(
            f"no built site in {SITE}: run `python scripts/build_site.py` (or set CAMVID_SITE_DIR)."
        )
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(SITE)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


# A plain Chromium without JupyterLab: this module's `browser` replaces the one in conftest.py.
@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        _skip_or_fail("the site test needs Debian's Chromium and playwright: `apt-get install -y chromium`.")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


class Visit:
    """One page opened with every request off 127.0.0.1 aborted and recorded."""

    def __init__(self, browser, url: str):
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(url, wait_until="load")
        self.page.wait_for_load_state("networkidle")

    def _route(self, route) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1" or route.request.url.startswith("data:"):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def close(self) -> None:
        self.context.close()


def test_the_site_has_every_page(server):
    pages = _pages()
    for page in ["", *VIEWERS, "notebooks/03_focal_loss_and_training/", "data/", "cli/", "results/"]:
        assert page in pages, f"{page or 'the home page'} is missing from {SITE}: {pages}"


@pytest.mark.parametrize("page", _pages() if SITE.exists() else [""])
def test_a_page_loads_whole_and_offline(server, browser, page):
    assert (SITE / page / "index.html").stat().st_size < PAGE_BUDGET, f"{page}: over {PAGE_BUDGET} bytes"
    visit = Visit(browser, server + page)
    try:
        visit.page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=30_000)
        broken = visit.page.evaluate(
            "Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.src.slice(0, 120))"
        )
        text = visit.page.inner_text("body")
        links = visit.page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    finally:
        visit.close()
    assert visit.outside == [], f"{page}: requests leaving 127.0.0.1: {visit.outside}"
    assert visit.errors == [], f"{page}: page errors: {visit.errors}"
    assert broken == [], f"{page}: images that did not load: {broken}"
    assert "Traceback (most recent call last)" not in text, f"{page}: an output holds a Python traceback"
    inside = {urljoin(server, urlparse(link)._replace(fragment="").geturl()) for link in links}
    for link in sorted(url for url in inside if url.startswith(server)):
        with urllib.request.urlopen(link) as answer:  # raises on 404
            assert answer.status == 200, f"{page}: {link} answered {answer.status}"


@pytest.mark.parametrize(
    "page", [p for p in (_pages() if SITE.exists() else []) if p.startswith("notebooks/")]
)
def test_a_notebook_page_offers_the_executed_notebook(server, page):
    name = page.strip("/").split("/")[-1]
    html = (SITE / page / "index.html").read_text()
    assert f'href="{name}.ipynb"' in html, f"{page}: no download button for {name}.ipynb"
    with urllib.request.urlopen(f"{server}{page}{name}.ipynb") as answer:
        nb = json.load(answer)
    code = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    assert code and all(cell["execution_count"] for cell in code), (
        f"{name}.ipynb: not every cell was executed"
    )
    assert not any(o["output_type"] == "error" for cell in code for o in cell["outputs"])


# Press Play, then return every caption visible at some animation frame during ``ms`` milliseconds.
PLAY_AND_WATCH = """(el, ms) => new Promise(done => {
    const seen = []; const end = performance.now() + ms;
    const look = () => {
        for (const c of el.querySelectorAll('code'))
            if (c.offsetParent !== null && seen[seen.length - 1] !== c.textContent) seen.push(c.textContent);
        if (performance.now() < end) requestAnimationFrame(look); else done([...new Set(seen)]);
    };
    look();
    el.querySelector('.widget-play button').click();
})"""


def _shown(page, area) -> list[str]:
    """Return the sources of the images visible in ``area`` (the viewer's output)."""
    return area.evaluate(
        "el => Array.from(el.querySelectorAll('img')).filter(i => i.offsetParent !== null)"
        ".map(i => i.src.slice(-200))"
    )


@pytest.mark.parametrize("page", list(VIEWERS))
def test_a_viewer_works_without_a_kernel(server, browser, page):
    visit = Visit(browser, server + page)
    try:
        viewer = visit.page.locator(".jp-OutputArea-output", has=visit.page.locator(".widget-slider")).first
        viewer.wait_for(timeout=30_000)  # the widget manager rendered the saved state
        assert "VBox(children" not in visit.page.inner_text("body"), f"{page}: widgets shown as text"
        assert "Pre-rendered for this page" in viewer.inner_text()
        before = _shown(visit.page, viewer)
        assert before, f"{page}: the viewer shows no picture"
        handle = viewer.locator(".noUi-handle").first
        handle.focus()
        handle.press("ArrowRight")
        visit.page.wait_for_timeout(300)
        after = _shown(visit.page, viewer)
        assert after and after != before, f"{page}: moving the slider did not change the picture"
        if VIEWERS[page]:  # Play shows every frame of the clip, in order, without a kernel
            handle.press("End")
            visit.page.wait_for_timeout(200)
            frames = int(viewer.locator(".widget-readout").first.inner_text()) + 1
            handle.press("Home")
            seen = viewer.evaluate(PLAY_AND_WATCH, 4000 + 2000 * frames / 15)
            assert len(seen) == frames, f"{page}: Play showed {len(seen)} of {frames} frames: {seen}"
    finally:
        visit.close()
    assert visit.outside == [] and visit.errors == [], f"{page}: {visit.outside} {visit.errors}"


def test_search_finds_the_focal_loss_notebook(server, browser):
    visit = Visit(browser, server)
    try:
        visit.page.keyboard.press("/")  # Material's shortcut: opens the search box
        visit.page.locator("input.md-search__input").press_sequentially("focal", delay=30)  # as typed
        results = visit.page.locator(".md-search-result__item a")
        results.first.wait_for(timeout=30_000)
        hrefs = [results.nth(i).get_attribute("href") for i in range(results.count())]
    finally:
        visit.close()
    assert any(re.search(r"notebooks/03_focal_loss_and_training/", h or "") for h in hrefs), hrefs
