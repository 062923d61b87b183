"""The web page in a real browser: Debian's Chromium driven by Playwright, against a running
agent on 127.0.0.1, as a technician would use it. Screenshots of every page go to
``tests/artifacts/web/`` (printed at the end of the run; ignored by git).

Skips, saying why, when Chromium (``apt-get install chromium``) or Playwright for Python
(``pip install playwright``; never ``playwright install``: the system Chromium is used) is missing.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import sqlite3
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.webagent import DEVICE, WebAgent, wait_for, web_agent

CHROMIUM = os.environ.get("STICKY_AGENT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts" / "web"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def trap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebAgent]:
    with web_agent(tmp_path_factory.mktemp("browser")) as w:
        yield w


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield pg
    context.close()
    assert not errors, f"the page logged errors: {errors}"


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def queue_rows(trap: WebAgent) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(trap.agent.config.storage.queue_path)
    try:
        return db.execute(
            "SELECT i.id, i.md5, (SELECT count(*) FROM annotations a WHERE a.image_id = i.id) FROM images i"
            " ORDER BY i.datetime"
        ).fetchall()
    finally:
        db.close()


def test_a_capture_made_from_the_page_appears_in_the_gallery_with_its_outlines(
    trap: WebAgent, page: Any
) -> None:
    page.goto(trap.url + "captures")
    assert page.locator("figure.capture").count() == len(queue_rows(trap))
    for n in range(1, 3):
        page.get_by_role("button", name="Capture now").click()
        page.wait_for_selector("#message")
        # the newest figure is the new capture once it has been analysed (its outline SVG)
        page.wait_for_function(
            "n => document.querySelectorAll('figure.capture').length >= n &&"
            " document.querySelector('figure.capture svg.outlines polygon.insect') !== null",
            arg=n,
        )
        rows = queue_rows(trap)
        page.wait_for_function(
            "id => { const f = document.querySelector('figure.capture');"
            " return f && f.dataset.id === String(id) && f.querySelector('polygon.insect'); }",
            arg=rows[-1][0],
        )
    first = page.locator("figure.capture").first
    outlined = int(first.locator("svg.outlines").get_attribute("data-count"))
    assert outlined > 0 and first.locator("polygon.insect").count() == outlined
    assert page.evaluate("document.querySelector('figure.capture img').naturalWidth") > 0
    shot(page, "captures")
    first.locator("a").click()
    page.wait_for_url(re.compile(r"/captures/\d+$"))
    assert page.locator(".full polygon.insect").count() == outlined
    page.wait_for_function("() => document.querySelector('.full img').complete")
    assert page.evaluate("document.querySelector('.full img').naturalWidth") == 1296
    shot(page, "capture-full")
    day = page.locator("time").first  # filter the gallery by the capture's day
    assert day is not None
    page.goto(trap.url + "captures?day=2001-01-01")
    assert page.locator("figure.capture").count() == 0


def test_the_dashboard_shows_the_device_last_capture_and_updates_itself(trap: WebAgent, page: Any) -> None:
    if not queue_rows(trap):
        trap.capture()
    page.goto(trap.url)
    assert page.locator("#device").inner_text() == DEVICE
    page.wait_for_function("() => !document.querySelector('#last-capture').textContent.includes('never')")
    assert "UTC" in page.locator("#last-capture").inner_text()
    assert page.locator("tr.sink[data-sink='stickypi']").count() == 1
    before = len(queue_rows(trap))
    trap.capture()  # a capture the page was not told about: the dashboard's refresh shows it
    page.wait_for_function(
        "n => document.querySelector('#dashboard').textContent.includes(n + ' images')", arg=before + 1
    )
    shot(page, "dashboard")


def test_the_preview_shows_frames_and_a_sharpness_that_falls_when_defocused(
    trap: WebAgent, page: Any
) -> None:
    page.goto(trap.url + "aim")
    page.get_by_role("button", name="Start preview").click()
    page.wait_for_function("() => document.querySelector('#preview-img').naturalWidth > 0")
    page.wait_for_function("() => !isNaN(parseFloat(document.querySelector('#pv-sharpness').textContent))")
    assert page.evaluate("document.querySelector('#preview-img').naturalWidth") == 800
    assert "ms" in page.locator("#pv-exposure").inner_text()
    shot(page, "aim-focused")
    focused = float(page.locator("#pv-sharpness").inner_text())
    frame = trap.agent.web.app.preview.frame.seq  # type: ignore[union-attr]
    page.locator("#lens-input").fill("10")
    page.get_by_role("button", name="move lens").click()
    page.wait_for_function("() => document.querySelector('#pv-lens').textContent === '10'")
    page.wait_for_function(
        "f => parseFloat(document.querySelector('#pv-sharpness').textContent) < f / 1.6", arg=focused
    )
    assert trap.agent.web.app.preview.frame.seq > frame  # type: ignore[union-attr]
    page.get_by_role("button", name="Flash on").click()
    page.wait_for_function("() => document.querySelector('#pv-flash').textContent === 'on'")
    shot(page, "aim-defocused")
    page.get_by_role("button", name="Stop preview").click()
    page.wait_for_function("() => document.querySelector('#pv-state').textContent === 'stopped'")
    page.locator("#lens-input").fill("4")
    page.get_by_role("button", name="move lens").click()
    page.get_by_role("button", name="Flash off").click()


def test_the_counts_plot_and_export_agree_with_the_queue(trap: WebAgent, page: Any) -> None:
    while len(queue_rows(trap)) < 3:
        n = len(queue_rows(trap))
        trap.capture()
        wait_for(lambda n=n: len(queue_rows(trap)) > n)
    wait_for(lambda: all(analysed for _, _, analysed in queue_rows(trap)))  # the detector is done
    page.goto(trap.url + "counts?days=1")
    bars = page.locator("#counts-plot rect.bar")
    per_hour = [(b.get_attribute("data-new"), b.get_attribute("data-images")) for b in bars.all()]
    with urllib.request.urlopen(trap.url + "export.csv", timeout=30) as r:
        rows = list(csv.DictReader(io.StringIO(r.read().decode())))
    queued = queue_rows(trap)
    assert [r["md5"] for r in rows] == [q[1] for q in queued]
    assert sum(int(n) for _, n in per_hour) == len(queued)
    assert sum(int(n) for n, _ in per_hour) == sum(int(r["new_insects"] or 0) for r in rows)
    on_card = [b.get_attribute("data-on-card") for b in bars.all() if b.get_attribute("data-on-card")]
    analysed = [r["insects_on_card"] for r in rows if r["insects_on_card"]]
    assert on_card and on_card[-1] == analysed[-1]
    shot(page, "counts")


def test_screenshots_are_where_ci_prints_them() -> None:
    print(f"\nweb page screenshots: {ARTIFACTS}")
    assert ARTIFACTS.is_dir()
