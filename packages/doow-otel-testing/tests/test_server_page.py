"""The local server's page, in a real headless browser (Debian's chromium via Playwright):
a sent event shows up live, the chart and the rejections render with data, filters
narrow the tables, paging walks every event once, a wrong key is recoverable in place,
and nothing a client sent is interpreted as HTML."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from doow_otel import DoowClient, UsageEvent
from doow_otel_testing import LocalDoow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
WAIT = 10_000  # ms: how long an expectation polls before failing
FIRST_LINE = (0x25, 0x63, 0xEB)  # the page's first chart colour, #2563eb


@pytest.fixture
def page() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (./dev setup installs it)")
    sync_api.expect.set_options(timeout=WAIT)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1300, "height": 900})
        finally:
            browser.close()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def send(doow: LocalDoow, spool: Path, events: list[UsageEvent]) -> None:
    with DoowClient(doow.api_key, endpoint=doow.url, spool=spool) as client:
        assert client.send(events).delivered == len(events)


def post_raw(doow: LocalDoow, events: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch as a client with no validation of its own would send it."""
    answer = httpx.post(
        f"{doow.url}/telemetry/events",
        json={"batch_id": str(uuid.uuid4()), "events": events},
        headers={"Authorization": f"Bearer {doow.api_key}"},
    )
    assert answer.status_code in (202, 207), answer.text
    result: dict[str, Any] = answer.json()
    return result


def seed(doow: LocalDoow, spool: Path) -> None:
    """Usage for two metrics and two licenses, an adjustment, a resent batch, two rejections."""
    events = [
        UsageEvent(metric="api_calls", quantity=5, license_id="lic_a"),
        UsageEvent(metric="api_calls", quantity=7, license_id="lic_b"),
        UsageEvent(metric="api_calls", quantity=-2, license_id="lic_a", kind="ADJUSTMENT"),
        UsageEvent(metric="tokens", quantity=1024, license_id="lic_a", unit="tokens"),
        UsageEvent(metric="tokens", quantity=512, license_id="lic_b", unit="tokens"),
    ]
    send(doow, spool, events)
    wire = [e.to_wire() for e in events[:2]]
    bad_quantity = UsageEvent(metric="api_calls", quantity=1, license_id="lic_a").to_wire()
    bad_quantity["measurements"][0]["quantity"] = "many"
    no_license = UsageEvent(metric="api_calls", quantity=1, license_id="lic_a").to_wire()
    del no_license["license_id"]
    outcome = post_raw(doow, [*wire, bad_quantity, no_license])  # 2 duplicates, 2 rejected
    assert outcome["rejected"] == 2


def open_page(page: Any, doow: LocalDoow) -> None:
    page.goto(f"{doow.url}/#key={doow.api_key}")
    expect(page.locator("#status")).to_contain_text("updated")


def test_a_sent_event_appears_on_the_page(page: Any, local_doow: LocalDoow, tmp_path: Any) -> None:
    open_page(page, local_doow)
    assert page.locator("#events tbody tr").count() == 0

    hostile = "<img src=x onerror=\"document.body.dataset.pwned='1'\">"
    event = UsageEvent(
        metric="api_calls", quantity=3, license_id="lic_page", attribution={"note": hostile}
    )
    send(local_doow, tmp_path, [event])

    # no reload: the page refreshes itself
    row = page.locator("#events tbody tr", has_text=event.event_id)
    row.wait_for(timeout=WAIT)
    assert "lic_page" in row.inner_text()
    usage = page.locator("#usage tbody tr", has_text="lic_page")
    assert usage.locator("td").nth(3).inner_text() == "3"
    # the attribution is shown as text, never run as HTML
    assert hostile in row.inner_text()
    assert page.locator("#events img").count() == 0
    assert page.evaluate("document.body.dataset.pwned") is None


def test_the_chart_and_the_rejections_render_with_data(
    page: Any, local_doow: LocalDoow, tmp_path: Path
) -> None:
    from PIL import Image

    seed(local_doow, tmp_path / "spool")
    open_page(page, local_doow)

    # counters as the server counted
    for name, value in [("accepted", "5"), ("rejected", "2"), ("duplicates", "2")]:
        expect(page.locator(f".counter[data-name={name}] b")).to_have_text(value)

    # one chart per metric, a line per license; the adjustment is a line of its own
    api_calls = page.locator(".chart[data-metric=api_calls]")
    expect(api_calls.locator("polyline")).to_have_count(3)
    lines = [api_calls.locator("polyline").nth(i).get_attribute("data-line") for i in range(3)]
    assert lines == ["lic_a", "lic_a (adjustment)", "lic_b"]
    expect(page.locator(".chart[data-metric=tokens] polyline")).to_have_count(2)
    expect(page.locator(".chart[data-metric=tokens] h3")).to_have_text("tokens (tokens)")

    # the adjustment is shown apart, not netted into lic_a's total
    adjustment = page.locator("#usage tbody tr.adjustment")
    expect(adjustment).to_have_count(1)
    assert adjustment.locator("td").nth(3).inner_text() == "-2"
    usage_a = page.locator("#usage tbody tr:not(.adjustment)", has_text="api_calls").first
    assert usage_a.locator("td").nth(3).inner_text() == "5"
    expect(page.locator("#events tbody tr.adjustment td").nth(1)).to_have_text("ADJUSTMENT")

    # the rejections with their reasons
    rejections = page.locator("#rejections tbody tr")
    expect(rejections).to_have_count(2)
    reasons = rejections.all_inner_texts()
    assert any("quantity" in r for r in reasons), reasons
    assert any("license_id" in r for r in reasons), reasons
    expect(page.locator("#reasons")).to_contain_text("license_id: 1")

    # what a person sees: the chart's first line is drawn in its colour, the list shows
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    chart = tmp_path / "chart.png"
    api_calls.locator("svg").screenshot(path=str(chart))
    with Image.open(chart) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
        drawn = sum(n for n, colour in colours if colour == FIRST_LINE)
    assert drawn > 100, f"the chart's first line is barely drawn ({drawn} pixels): see {shot}"
    box = page.locator("#rejections").bounding_box()
    assert box is not None and box["height"] > 3 * 20  # a header and two rows
    for reason in reasons:
        assert page.get_by_text(reason.split("\t")[-1]).is_visible()


def test_a_chart_draws_the_largest_lines_and_says_how_many_are_left_out(
    page: Any, local_doow: LocalDoow, tmp_path: Path
) -> None:
    send(
        local_doow,
        tmp_path,
        [UsageEvent(metric="calls", quantity=n, license_id=f"lic_{n:02}") for n in range(1, 11)],
    )
    open_page(page, local_doow)
    chart = page.locator(".chart[data-metric=calls]")
    expect(chart.locator("polyline")).to_have_count(8)
    expect(chart.locator(".legend")).to_contain_text("+2 smaller lines")
    drawn = {chart.locator("polyline").nth(i).get_attribute("data-line") for i in range(8)}
    assert drawn == {f"lic_{n:02}" for n in range(3, 11)}  # the two smallest left out

    page.select_option("#f-license", "lic_01")
    expect(chart.locator("polyline")).to_have_count(1)
    expect(chart.locator(".legend")).not_to_contain_text("smaller lines")


def test_filters_narrow_the_tables(page: Any, local_doow: LocalDoow, tmp_path: Path) -> None:
    seed(local_doow, tmp_path / "spool")
    open_page(page, local_doow)
    events = page.locator("#events tbody tr")
    expect(events).to_have_count(5)

    page.select_option("#f-metric", "tokens")
    expect(events).to_have_count(2)
    assert all("tokens" in text for text in events.all_inner_texts())
    expect(page.locator(".chart")).to_have_count(1)

    page.select_option("#f-license", "lic_b")
    expect(events).to_have_count(1)
    expect(page.locator("#usage tbody tr")).to_have_count(1)
    expect(page.locator("#usage tbody td").nth(3)).to_have_text("512")

    page.select_option("#f-metric", "")
    page.select_option("#f-license", "")
    page.select_option("#f-kind", "ADJUSTMENT")
    expect(events).to_have_count(1)
    expect(events.first).to_contain_text("-2")

    # a time range before anything arrived: nothing in it
    page.select_option("#f-kind", "")
    page.select_option("#f-range", "custom")
    page.fill("#f-since", "2000-01-01T00:00:00")
    page.fill("#f-until", "2000-01-02T00:00:00")
    expect(events).to_have_count(0)
    expect(page.locator("#rejections tbody tr")).to_have_count(0)
    expect(page.locator("#charts")).to_contain_text("No usage in this range")

    page.select_option("#f-range", "3600")  # the last hour: everything again
    expect(events).to_have_count(5)
    expect(page.locator("#rejections tbody tr")).to_have_count(2)


def test_paging_walks_every_event_once(page: Any, local_doow: LocalDoow, tmp_path: Path) -> None:
    sent = [UsageEvent(metric="api_calls", quantity=1, license_id="lic_many") for _ in range(60)]
    send(local_doow, tmp_path, sent)
    open_page(page, local_doow)
    rows = page.locator("#events tbody tr")
    pager = page.locator("#events-pager")

    def ids() -> list[str]:
        return [row.split("\t")[-1] for row in rows.all_inner_texts()]

    seen: list[list[str]] = []
    for expected in (25, 25, 10):
        expect(rows).to_have_count(expected)
        expect(pager.locator(".info")).to_contain_text(f"page {len(seen) + 1}, {expected} shown")
        seen.append(ids())
        if expected == 10:
            expect(pager.locator(".older")).to_be_disabled()
        else:
            pager.locator(".older").click()
    flat = [event_id for page_ids in seen for event_id in page_ids]
    assert sorted(flat) == sorted(e.event_id for e in sent)  # each once, none missing

    pager.locator(".newer").click()
    expect(pager.locator(".info")).to_contain_text("page 2")
    expect(rows.first).to_contain_text(seen[1][0])


def test_a_wrong_key_is_recoverable_without_a_new_tab(
    page: Any, local_doow: LocalDoow, tmp_path: Path
) -> None:
    send(local_doow, tmp_path, [UsageEvent(metric="api_calls", quantity=4, license_id="lic_k")])
    page.goto(f"{local_doow.url}/#key=dk_not_the_key")
    expect(page.locator("#key-form")).to_be_visible()
    expect(page.locator("#status")).to_have_class("error")
    expect(page.locator("#status")).to_contain_text("not accepted")
    page.evaluate("window.sameDocument = true")  # gone if the page were reloaded

    page.fill("#key", "dk_still_wrong")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#status")).to_contain_text("not accepted")
    expect(page.locator("#key-form")).to_be_visible()

    page.fill("#key", local_doow.api_key)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#status")).to_contain_text("updated")
    expect(page.locator("#key-form")).to_be_hidden()
    expect(page.locator("#events tbody tr")).to_have_count(1)
    assert page.evaluate("window.sameDocument") is True
    # the right key is in the fragment now: a reload keeps working
    assert page.evaluate("location.hash") == f"#key={local_doow.api_key}"

    # and a key can be changed at any time
    page.click("#change-key")
    expect(page.locator("#key-form")).to_be_visible()


def test_the_page_asks_for_a_key(page: Any, local_doow: LocalDoow) -> None:
    page.goto(local_doow.url + "/")
    expect(page.locator("#key-form")).to_be_visible()
    page.fill("#key", "dk_not_the_key")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#status.error")).to_contain_text("not accepted")
