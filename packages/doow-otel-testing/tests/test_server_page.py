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

    # one chart per metric, a series of bars per license; the adjustment is a series apart
    api_calls = page.locator(".chart[data-metric=api_calls]")
    expect(api_calls.locator("g.series")).to_have_count(3)
    lines = [api_calls.locator("g.series").nth(i).get_attribute("data-line") for i in range(3)]
    assert sorted(lines) == ["lic_a", "lic_a (adjustment)", "lic_b"]
    expect(page.locator(".chart[data-metric=tokens] g.series")).to_have_count(2)
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
    assert drawn > 100, f"the chart's first series is barely drawn ({drawn} pixels): see {shot}"
    box = page.locator("#rejections").bounding_box()
    assert box is not None and box["height"] > 3 * 20  # a header and two rows
    for reason in reasons:
        assert page.locator("#rejections").get_by_text(reason.split("\t")[4]).is_visible()


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
    expect(chart.locator("g.series")).to_have_count(8)
    expect(chart.locator(".legend")).to_contain_text("+2 smaller series")
    drawn = {chart.locator("g.series").nth(i).get_attribute("data-line") for i in range(8)}
    assert drawn == {f"lic_{n:02}" for n in range(3, 11)}  # the two smallest left out

    page.select_option("#f-license", "lic_01")
    expect(chart.locator("g.series")).to_have_count(1)
    expect(chart.locator(".legend")).not_to_contain_text("smaller series")


def test_filters_narrow_the_tables(page: Any, local_doow: LocalDoow, tmp_path: Path) -> None:
    seed(local_doow, tmp_path / "spool")
    open_page(page, local_doow)
    events = page.locator("#events tbody tr")
    expect(events).to_have_count(5)

    page.select_option("#f-metric", "tokens")
    expect(events).to_have_count(2)
    assert all("tokens" in text for text in events.all_inner_texts())
    expect(page.locator("#charts .chart")).to_have_count(1)

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


# --- "my usage did not arrive": the common mistakes, each with its cause and fix ---

WIDTHS = {"desktop": 1300, "phone": 390}
STORED = (0x25, 0x63, 0xEB)  # the budget chart's stored bars, #2563eb
LIMIT = (0xB9, 0x1C, 0x1C)  # its limit line and 429 marks, #b91c1c


def cli(args: list[str], key: str, endpoint: str, spool: Path, stdin: str = "") -> Any:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "DOOW_TRACK_API_KEY": key,
        "DOOW_TRACK_ENDPOINT": endpoint,
        "DOOW_SPOOL_DIR": str(spool),
    }
    return subprocess.run(
        [sys.executable, "-m", "doow_otel.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def make_the_mistakes(doow: LocalDoow, spool: Path) -> dict[str, Any]:
    """What users got wrong (issue 26), each with a real client where one makes it."""
    record = '{"metric": "api_calls", "quantity": 2, "license_id": "lic_m"}\n'
    # a wrong key and a path in the endpoint: doow-otel send keeps the usage in the spool
    wrong_key = "dk_not_the_right_key_000"
    cli(["send", "--timeout", "3"], wrong_key, doow.url, spool, record)
    cli(["send", "--timeout", "3"], doow.api_key, doow.url + "/v1", spool, record)
    # a client with no checks of its own: no license, zero and text quantities
    good = UsageEvent(metric="api_calls", quantity=1, license_id="lic_m").to_wire()
    no_license = {**UsageEvent(metric="api_calls", quantity=1, license_id="x").to_wire()}
    del no_license["license_id"]
    zero = UsageEvent(metric="tokens", quantity=1, license_id="lic_zero").to_wire()
    zero["measurements"][0]["quantity"] = 0
    text = UsageEvent(metric="tokens", quantity=1, license_id="lic_text").to_wire()
    text["measurements"][0]["quantity"] = "12"
    assert post_raw(doow, [good, no_license, zero, text])["rejected"] == 3
    # past the budget: 2 requests of 30 events where the key may send 50 a minute
    statuses = []
    for _ in range(2):
        burst = [UsageEvent(metric="api_calls", quantity=1, license_id="lic_b") for _ in range(30)]
        answer = httpx.post(
            f"{doow.url}/telemetry/events",
            json={"events": [e.to_wire() for e in burst]},
            headers={"Authorization": f"Bearer {doow.api_key}"},
        )
        statuses.append(answer.status_code)
    assert statuses == [202, 429]
    return {"wrong_key": wrong_key, "zero": zero, "text": text}


@pytest.mark.parametrize("width", WIDTHS)
def test_the_common_mistakes_show_their_cause_and_fix(
    page: Any, tmp_path: Path, width: str
) -> None:
    from PIL import Image

    page.set_viewport_size({"width": WIDTHS[width], "height": 900})
    spool = tmp_path / "spool"
    with LocalDoow(events_per_minute=50) as doow:
        made = make_the_mistakes(doow, spool)
        open_page(page, doow)
        problems = page.locator("#problems .problem")

        def problem(status: int, has_text: str) -> Any:
            found = problems.filter(has_text=has_text).and_(
                page.locator(f".problem[data-status='{status}']")
            )
            expect(found).to_have_count(1)
            return found

        # the wrong key: its first characters only, the cause and the fix (with the spool)
        wrong = problem(401, "API key not accepted")
        expect(wrong).to_contain_text(f"key {made['wrong_key'][:8]}…")
        expect(wrong.locator(".fix")).to_contain_text("Set DOOW_TRACK_API_KEY")
        expect(wrong.locator(".fix")).to_contain_text("doow-otel spool adopt")
        assert made["wrong_key"] not in page.content()
        # the wrong path
        path = problem(404, "/v1/telemetry/events")
        expect(path.locator(".fix")).to_contain_text("extra path (/v1)")
        expect(path.locator(".fix")).to_contain_text("base URL only")
        # the license missing, a zero and a text quantity: what was sent, why, the fix
        license_ = problem(207, "license_id")
        expect(license_.locator(".fix")).to_contain_text("Give every event its license")
        zero = problem(207, "must be greater than 0")
        expect(zero).to_contain_text("tokens 0 for lic_zero")
        expect(zero.locator(".fix")).to_contain_text("Zero or negative usage bills nothing")
        text = problem(207, "must be an int or float")
        expect(text).to_contain_text("tokens 12 for lic_text")
        expect(text.locator(".fix")).to_contain_text("convert it with int() or float()")
        # past the budget: the 429 and why usage is late
        limited = problem(429, "event budget")
        expect(limited.locator(".fix")).to_contain_text("--events-per-minute")
        expect(page.locator("#budget-note")).to_contain_text("refused with 429")
        expect(page.locator("#budget-chart .limit")).to_have_count(1)
        # the rejected events show metric, license and quantity
        rejected = page.locator("#rejections tbody tr", has_text="lic_text")
        expect(rejected).to_contain_text("12")
        # one each: 401 and 404 (the client stops sending at the first), 429
        expect(page.locator("#refusals tbody tr")).to_have_count(3)

        # the stranded spool: listed, adopted, delivered, and shown on the page
        listed = cli(["spool"], doow.api_key, doow.url, spool)
        assert f"{doow.url}/v1, key {doow.api_key[:10]}…: 1 batch, 1 event" in listed.stdout
        assert "written with another API key" in listed.stdout
        adopted = cli(["spool", "adopt", "--all"], doow.api_key, doow.url, spool)
        assert "Adopted 2 batches" in adopted.stdout and "2 events delivered" in adopted.stdout
        expect(page.locator("#usage tbody tr", has_text="lic_m").first).to_contain_text("5")

        # what a person sees at this width: nothing wider than the screen
        assert page.evaluate("document.documentElement.scrollWidth") <= WIDTHS[width]
        for i in range(problems.count()):
            box = problems.nth(i).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WIDTHS[width]
        for counter in page.locator(".counter").all():
            box = counter.bounding_box()
            assert box is not None and box["x"] + box["width"] <= WIDTHS[width]
        shot = tmp_path / f"{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        with Image.open(shot) as image:
            assert image.size[0] == WIDTHS[width], f"the page is wider than the screen: {shot}"
        chart = tmp_path / f"{width}-budget.png"
        page.locator("#budget-chart svg").screenshot(path=str(chart))
        with Image.open(chart) as image:
            assert image.size[0] <= WIDTHS[width]
            colours = image.convert("RGB").getcolors(1 << 24) or []
        assert near(colours, STORED) > 20, f"no stored bar drawn: see {chart}"
        assert near(colours, LIMIT) > 20, f"no limit line drawn: see {chart}"


def near(colours: list[tuple[int, tuple[int, int, int]]], target: tuple[int, int, int]) -> int:
    """Pixels of about this colour (a scaled chart's thin lines are antialiased)."""
    return sum(
        n for n, c in colours if sum(abs(a - b) for a, b in zip(c, target, strict=True)) <= 90
    )
