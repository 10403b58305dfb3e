"""The local server's page, in a real headless browser (Debian's chromium via Playwright):
a sent event shows up live, and nothing a client sent is interpreted as HTML."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from doow_otel import DoowClient, UsageEvent
from doow_otel.testing import LocalDoow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def page() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (./dev setup installs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_a_sent_event_appears_on_the_page(page: Any, local_doow: LocalDoow, tmp_path: Any) -> None:
    page.goto(f"{local_doow.url}/#key={local_doow.api_key}")
    page.wait_for_selector("#status:has-text('updated')")
    assert page.locator("#events tbody tr").count() == 0

    hostile = "<img src=x onerror=\"document.body.dataset.pwned='1'\">"
    event = UsageEvent(
        metric="api_calls", quantity=3, license_id="lic_page", attribution={"note": hostile}
    )
    with DoowClient(local_doow.api_key, endpoint=local_doow.url, spool=tmp_path) as client:
        assert client.send([event]).delivered == 1

    # no reload: the page refreshes itself
    row = page.locator("#events tbody tr", has_text=event.event_id)
    row.wait_for(timeout=10_000)
    assert "lic_page" in row.inner_text()
    usage = page.locator("#usage tbody tr", has_text="lic_page")
    assert usage.locator("td").nth(2).inner_text() == "3"
    # the attribution is shown as text, never run as HTML
    assert hostile in row.inner_text()
    assert page.locator("#events img").count() == 0
    assert page.evaluate("document.body.dataset.pwned") is None


def test_the_page_asks_for_a_key_and_rejects_a_wrong_one(page: Any, local_doow: LocalDoow) -> None:
    page.goto(local_doow.url + "/")
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#key", "dk_not_the_key")
    page.click("button[type=submit]")
    page.wait_for_selector("#status.error:has-text('not accepted')")
