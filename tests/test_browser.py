"""The demo page in headless Chromium (Debian's ``chromium`` package, driven by Playwright).

Runs are paused at a known event (``pause_after``) so that "mid-run" is certain, not a race.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Request, sync_playwright
from sse_support import LiveServer

from broker.demo.app import create_app

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Playwright's waits are in milliseconds.
WAIT_MS = 30_000


@pytest.fixture
def server() -> Iterator[LiveServer]:
    # A short retry keeps the browser's reconnect quick.
    with LiveServer(create_app(retry_ms=200)) as live:
        yield live


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[BrowserContext]:
    """A fresh headless Chromium profile; its pages are tabs of one browser window."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found; install it with: apt-get install -y chromium")
    with sync_playwright() as playwright:
        # Playwright's own browser download is never used: this drives Debian's Chromium.
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "profile", executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield context
        finally:
            context.close()


def shown_ids(page: Page) -> list[str]:
    """The id column of the page's event log, as rendered."""
    ids: list[str] = page.locator("#log tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    return ids


def assert_whole_run_shown_once(page: Page, events: int) -> None:
    assert page.evaluate("window.received") == list(range(1, events + 1))
    # Every event row in order, then the done row (which has no id).
    assert shown_ids(page) == [str(n) for n in range(1, events + 1)] + [""]
    assert page.locator("#notices").inner_text() == ""


def test_page_shows_every_event_once_after_the_browsers_own_reconnect(
    server: LiveServer, browser: BrowserContext
) -> None:
    page = browser.new_page()
    stream_requests: list[Request] = []
    # Playwright wraps the handler, so it must be a Python function, not a bound builtin.
    page.on("request", lambda request: stream_requests.append(request))
    page.goto(f"{server.url}/?events=150&interval_ms=5&pause_after=40")
    page.click("#start")
    page.wait_for_function("window.received.length === 40", timeout=WAIT_MS)
    run_id = page.evaluate("new URLSearchParams(location.search).get('run')")

    dropped = httpx.post(f"{server.url}/runs/{run_id}/drop")
    assert dropped.json() == {"dropped": 1, "done": False}
    # Resuming at once means events 41.. are emitted while the browser is away, so the reconnect
    # must get them from the replay buffer and then go on live.
    httpx.post(f"{server.url}/runs/{run_id}/resume").raise_for_status()
    page.wait_for_function("window.finished === 'done'", timeout=WAIT_MS)

    assert_whole_run_shown_once(page, 150)
    # One EventSource, reconnected once by the browser itself with the id of the last event seen.
    assert page.evaluate("window.opens") == 2
    last_event_ids = [
        request.all_headers().get("last-event-id")
        for request in stream_requests
        if "/events" in request.url
    ]
    assert last_event_ids == [None, "40"]


def test_refresh_and_second_tab_show_the_whole_run_once(
    server: LiveServer, browser: BrowserContext
) -> None:
    page = browser.new_page()
    page.goto(f"{server.url}/?events=80&interval_ms=5&pause_after=30")
    page.click("#start")
    page.wait_for_function("window.received.length === 30", timeout=WAIT_MS)
    share = page.locator("#share").get_attribute("href")
    assert share is not None
    second_tab = browser.new_page()
    second_tab.goto(server.url + share)
    second_tab.wait_for_function("window.received.length === 30", timeout=WAIT_MS)

    page.reload()
    page.wait_for_function("window.received.length === 30", timeout=WAIT_MS)
    run_id = page.evaluate("new URLSearchParams(location.search).get('run')")
    httpx.post(f"{server.url}/runs/{run_id}/resume").raise_for_status()

    for tab in (page, second_tab):
        tab.wait_for_function("window.finished === 'done'", timeout=WAIT_MS)
        assert_whole_run_shown_once(tab, 80)
