"""What `track()` does with input Doow would not take (issue 26): zero quantity bills
nothing and raises nothing; other bad input raises under pytest or DOOW_TRACK_STRICT, and
is reported once and counted in production. A record with its own identity returns the
event id the server shows; the tracker's `stats()` counts what it did."""

from __future__ import annotations

import math
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import pytest

from doow_otel import InvalidEvent
from doow_otel.delivery.reports import Reporter
from doow_otel.errors import ErrorReport
from doow_otel.tracker import DoowTracker
from doow_otel.tracker.strictness import Strictness, is_zero_quantity
from doow_otel_testing import LocalDoow


def tracker(doow: LocalDoow, tmp_path: Path, **options: Any) -> DoowTracker:
    return DoowTracker(
        doow.api_key,
        endpoint=doow.url,
        spool=tmp_path / "spool",
        flush_interval=3600,
        handle_sigterm=False,
        **options,
    )


@pytest.fixture
def reports() -> list[ErrorReport]:
    return []


@pytest.fixture
def lenient(
    local_doow: LocalDoow, tmp_path: Path, reports: list[ErrorReport]
) -> Iterator[DoowTracker]:
    """Production's mode, set explicitly (under pytest the default is strict)."""
    meter = tracker(local_doow, tmp_path, strict=False, on_error=reports.append)
    yield meter
    meter.shutdown()


# --- the policy on its own ---


@pytest.mark.parametrize(
    ("quantity", "zero"), [(0, True), (0.0, True), (-0.0, True), (False, False), ("0", False)]
)
def test_what_counts_as_zero(quantity: object, zero: bool) -> None:
    assert is_zero_quantity(quantity) is zero


def test_the_mode_comes_from_the_argument_then_the_environment_then_pytest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = Strictness(Reporter(None))
    assert policy.is_strict()  # PYTEST_CURRENT_TEST is set while this test runs
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    assert not policy.is_strict()  # production: report, never raise
    monkeypatch.setenv("DOOW_TRACK_STRICT", "true")
    assert policy.is_strict()
    monkeypatch.setenv("DOOW_TRACK_STRICT", "false")
    assert not policy.is_strict()
    assert Strictness(Reporter(None), strict=True).is_strict()


def test_report_mode_reports_each_problem_once_and_counts_every_one() -> None:
    seen: list[ErrorReport] = []
    policy = Strictness(Reporter(seen.append), strict=False)
    for _ in range(3):
        policy.refused(InvalidEvent("quantity", "must be a number"), "many")
    policy.refused(InvalidEvent("license_id", "is required"))
    assert policy.bad_inputs == 4
    assert [r.message.split(".")[0] for r in seen] == [
        "track() recorded nothing: quantity: must be a number",
        "track() recorded nothing: license_id: is required",
    ]
    assert all(r.kind == "validation" for r in seen)


def test_strict_mode_raises_and_zero_is_never_an_error() -> None:
    policy = Strictness(Reporter(None), strict=True)
    with pytest.raises(InvalidEvent):
        policy.refused(InvalidEvent("quantity", "must be greater than 0"), -1)
    policy.refused(InvalidEvent("quantity", "must be greater than 0"), 0)
    assert policy.zero_quantities == 1 and policy.bad_inputs == 0


# --- in track() ---


@pytest.mark.parametrize("strict", [True, False])
def test_zero_quantity_bills_nothing_and_raises_nothing(
    local_doow: LocalDoow, tmp_path: Path, strict: bool
) -> None:
    seen: list[ErrorReport] = []
    meter = tracker(local_doow, tmp_path, strict=strict, on_error=seen.append)
    try:
        assert meter.track(metric="output_tokens", quantity=0, license_id="lic_z") is None
        assert meter.track({"metric": "output_tokens", "quantity": 0.0, "license_id": "z"}) is None
        # a record with its own identity and nothing to bill: nothing either
        assert meter.track(metric="t", quantity=0, license_id="lic_z", idempotency_key="k") is None
        meter.track(metric="output_tokens", quantity=5, license_id="lic_z")
        assert meter.flush()
        assert local_doow.total("output_tokens", "lic_z") == 5
        stats = meter.stats()
        assert stats["zero_quantities"] == 3 and stats["tracked"] == 1
        assert stats["bad_inputs"] == 0 and seen == []
    finally:
        meter.shutdown()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"metric": "m", "quantity": "three", "license_id": "l"}, "quantity"),
        ({"metric": "m", "quantity": -1, "license_id": "l"}, "quantity"),
        ({"metric": "m", "quantity": math.nan, "license_id": "l"}, "quantity"),
        ({"metric": "m", "quantity": 1}, "license_id"),
        ({"metric": "bad name", "quantity": 1, "license_id": "l"}, "metric"),
        ({"metric": "m", "quantity": 1, "license_id": "l", "kind": "REFUND"}, "kind"),
    ],
)
def test_in_production_bad_input_is_reported_and_counted_never_raised(
    lenient: DoowTracker, reports: list[ErrorReport], fields: dict[str, Any], field: str
) -> None:
    assert lenient.track(**fields) is None
    assert lenient.track(**fields) is None
    assert lenient.stats()["bad_inputs"] == 2
    (report,) = reports  # said once
    assert report.kind == "validation" and f"recorded nothing: {field}:" in report.message


def test_under_pytest_bad_input_raises_at_the_call(local_doow: LocalDoow, tmp_path: Path) -> None:
    meter = tracker(local_doow, tmp_path)  # no setting: strict, since pytest runs this
    try:
        with pytest.raises(InvalidEvent, match="quantity"):
            meter.track(metric="m", quantity="three", license_id="l")
    finally:
        meter.shutdown()


def test_a_request_handler_never_fails_on_a_metering_call(
    lenient: DoowTracker, reports: list[ErrorReport]
) -> None:
    """The issue's FastAPI route: a handler that meters with whatever it was given."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            tokens: Any = {"/zero": 0, "/text": "n/a", "/ok": 12}[self.path]
            lenient.track(metric="output_tokens", quantity=tokens, license_id="lic_h")
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert [httpx.get(base + p).status_code for p in ("/zero", "/text", "/ok")] == [200] * 3
    finally:
        server.shutdown()
        server.server_close()
    stats = lenient.stats()
    assert (stats["zero_quantities"], stats["bad_inputs"], stats["tracked"]) == (1, 1, 1)


# --- the id a record gets, and the tracker's stats ---


def test_a_record_with_its_own_identity_returns_the_id_the_server_shows(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    meter = tracker(local_doow, tmp_path)
    try:
        keyed = meter.track(metric="refunds", quantity=-5, license_id="lic_r",
                            kind="ADJUSTMENT", idempotency_key="refund-42")  # fmt: skip
        given = meter.track(metric="pages", quantity=2, license_id="lic_r",
                            event_id="6F1C2D7A-1B10-4C8E-9F0E-5B1D6F0E3C52")  # fmt: skip
        stamped = meter.track(metric="pages", quantity=1, license_id="lic_r",
                              timestamp="2026-11-24T10:15:00Z")  # fmt: skip
        plain = meter.track(metric="pages", quantity=3, license_id="lic_r")
        assert plain is None  # aggregated: its event is made at export
        assert given == "6f1c2d7a-1b10-4c8e-9f0e-5b1d6f0e3c52"
        assert meter.flush()
        shown = {e["event_id"] for e in local_doow.events(license_id="lic_r")}
        assert {keyed, given, stamped} <= shown
        # the same key again: the same id, billed once
        again = meter.track(metric="refunds", quantity=-5, license_id="lic_r",
                            kind="ADJUSTMENT", idempotency_key="refund-42")  # fmt: skip
        assert again == keyed
        assert meter.flush() and local_doow.total("refunds", "lic_r") == -5
    finally:
        meter.shutdown()


def test_the_trackers_stats_add_its_own_counts_to_the_clients(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    meter = tracker(local_doow, tmp_path)
    try:
        meter.track(metric="calls", quantity=1, license_id="lic_s")
        meter.track(metric="calls", quantity=1, license_id="lic_s",
                    attribution={"password": "hunter2", "route": "/a"})  # fmt: skip
        meter.track(metric="calls", quantity=0, license_id="lic_s")
        assert meter.flush()
        stats = meter.stats()
        assert stats["tracked"] == 2 and stats["zero_quantities"] == 1
        assert stats["stripped_attribution"] == 1
        assert stats["delivered"] >= 1  # the client's counters are there too
        assert local_doow.total("calls", "lic_s") == 2
    finally:
        meter.shutdown()
