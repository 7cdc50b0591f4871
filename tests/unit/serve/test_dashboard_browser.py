"""The dashboard in headless Chromium (Debian's, driven by playwright; no browser download): every page
loads with no console error and no request leaving the server, at 1280 px and at phone width, with
readable contrast and a keyboard path; the trace table filters; a run in progress updates on an open
page; a promotion (from the page's button, or from another process) appears on the timeline."""

import datetime as dt
import os
from pathlib import Path

import pytest

from adaptloop.serve import dashboard
from adaptloop.serve.app import create_ui_app, in_background
from adaptloop.store import registry
from adaptloop.store.db import Node, Run
from tests.unit.serve.conftest import ADMIN_TOKEN

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 15_000

# WCAG contrast of every visible HTML text element against the first opaque background behind it
CONTRAST_JS = """() => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = c => { const v = c.slice(0, 3).map(x => { x /= 255; return x <= 0.03928 ? x / 12.92
                     : Math.pow((x + 0.055) / 1.055, 2.4); }); return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  const bg = el => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor);
                     if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c; } return [255, 255, 255]; };
  const bad = [];
  for (const el of document.querySelectorAll("body *:not(svg):not(svg *):not(script):not(style)")) {
    const text = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
    const r = el.getBoundingClientRect();
    if (!text || !r.width || !r.height || getComputedStyle(el).visibility === "hidden") continue;
    if (r.right < 0 || r.bottom < 0) continue;  // parked off screen (the skip link until focused)
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(getComputedStyle(el).fontSize), bold = +getComputedStyle(el).fontWeight >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < need) bad.push(el.tagName + " '" + el.textContent.trim().slice(0, 30) + "' " + ratio.toFixed(2));
  }
  return bad;
}"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        if os.environ.get("ADAPTLOOP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is not installed (scripts/setup installs Debian's chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def site(dash_ws, monkeypatch):
    monkeypatch.setattr(dashboard, "POLL_MS", 250)  # pages poll fast, so live updates show within a second
    with in_background(create_ui_app(dash_ws)) as url:
        yield dash_ws, url


def watched(browser, url: str, width: int = 1280):
    """A page whose console errors, page errors, failed requests and requests off the server are collected."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("requestfailed", lambda r: None if "ERR_ABORTED" in (r.failure or "")  # a poll cut off by navigating
            else problems.append(f"requestfailed: {r.url} {r.failure}"))
    page.on("request", lambda r: None if r.url.startswith(url + "/") or r.url.startswith("data:")
            else problems.append(f"left the server: {r.url}"))
    return page, problems


def test_every_page_loads_clean_readable_and_fits_a_phone(browser, site):
    ws, url = site
    paths = ["/", "/models", "/traffic", "/task"] + [f"/runs/{r.id}" for r in ws.store.runs()]
    for width in (1280, 390):
        page, problems = watched(browser, url, width)
        for path in paths:
            page.goto(url + path, wait_until="load")
            page.wait_for_timeout(100)  # a poll: the live script runs too
            assert page.evaluate("window.__pwned") is None
            assert page.locator("nav a[aria-current=page]").count() == 1, path
            assert page.evaluate(CONTRAST_JS) == [], f"{path} at {width}px: text below WCAG AA contrast"
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{path} is {overflow}px wider than a {width}px window"
        page.close()
        assert problems == [], problems


def test_keyboard_reaches_every_page(browser, site):
    _, url = site
    page, problems = watched(browser, url)
    page.goto(url + "/", wait_until="load")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    visited = []
    for name in ("Models", "Traffic", "Task"):
        page.goto(url + "/", wait_until="load")
        for _ in range(12):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent.trim()") == name:
                break
        with page.expect_navigation():
            page.keyboard.press("Enter")
        visited.append(page.url.removeprefix(url))
    assert visited == ["/models", "/traffic", "/task"]
    page.close()
    assert problems == []


def test_trace_table_filters_as_you_type(browser, site):
    ws, url = site
    page, problems = watched(browser, url)
    page.goto(url + "/traffic", wait_until="load")
    before = page.locator("#trace-count").inner_text()
    page.fill("#trace-filter input[name=q]", "pwned")
    page.wait_for_function("document.querySelector('#trace-count').textContent.startsWith('1 trace')",
                           timeout=WAIT_MS)
    assert page.locator("tr.trace").count() == 1 and "pwned" in page.url
    page.fill("#trace-filter input[name=q]", "")
    page.select_option("#trace-filter select[name=verdict]", "poison")
    page.wait_for_function("[...document.querySelectorAll('tr.trace')].every(r => r.dataset.verdict === 'poison')"
                           " && document.querySelectorAll('tr.trace').length > 0", timeout=WAIT_MS)
    assert page.locator("#trace-count").inner_text() != before
    page.close()
    assert problems == []


def test_a_run_in_progress_updates_on_an_open_page(browser, site):
    ws, url = site
    task_id = ws.store.runs()[0].task_id
    run = ws.store.add(Run(task_id=task_id, kind="coldstart", status="running", budget_s=60.0))
    first = ws.store.add(Node(run_id=run.id, name="baseline", intervention="start", reason="the best known recipe",
                              pipeline={"strategy": "frozen"}, status="running", proposer="doctrine"))
    page, problems = watched(browser, url)
    page.goto(url + f"/runs/{run.id}", wait_until="load")
    assert page.locator("svg.graph g.node").count() == 1 and page.locator("#run-live.is-live").count() == 1
    ws.store.update(Node, first.id, status="done", dev_metrics={"accuracy": 0.8}, finished_at=dt.datetime.now())
    ws.store.add(Node(run_id=run.id, parent_id=first.id, name="contrastive", intervention="contrastive pairs",
                      reason="two classes are confused", pipeline={"strategy": "finetune"}, status="running",
                      proposer="llm"))
    page.wait_for_function("document.querySelectorAll('svg.graph g.node').length === 2", timeout=WAIT_MS)
    assert page.locator('g.node[data-name="baseline"]').get_attribute("data-status") == "done"
    assert page.locator('tr.move[data-node] td:nth-child(3)').all_inner_texts() == ["doctrine", "llm"]
    ws.store.update(Run, run.id, status="done")
    ws.store.update(Node, first.id + 1, status="failed")
    page.wait_for_function("!document.querySelector('#run-live').classList.contains('is-live')", timeout=WAIT_MS)
    page.close()
    assert problems == []


def test_a_promotion_appears_on_the_timeline(browser, site):
    ws, url = site
    page, problems = watched(browser, url)
    page.goto(url + "/models", wait_until="load")
    production = registry.alias_target(ws.store, "production")
    other = next(v.id for v in registry.versions(ws.store) if v.id != production)
    button = page.locator(f'button.promote[data-version="v{other}"]')
    assert button.is_disabled()  # read-only until the token is given
    page.fill("#admin-token", ADMIN_TOKEN)
    button.click()
    page.wait_for_selector(f'li.event[data-event="forced"][data-version="v{other}"]', timeout=WAIT_MS)
    page.wait_for_function(f"document.querySelector('#production').textContent === 'v{other}'", timeout=WAIT_MS)
    assert registry.alias_target(ws.store, "production") == other
    registry.rollback(ws.store, reason="rolled back from another process", who="test")  # not from the page
    page.wait_for_selector(f'li.event[data-event="rolled_back"][data-version="v{production}"]', timeout=WAIT_MS)
    assert page.locator("#admin-token").input_value() == ADMIN_TOKEN  # kept across live updates
    page.close()
    assert problems == []
