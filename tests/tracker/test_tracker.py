"""DoowTracker: the seed's track() on OpenTelemetry, checked by what the local server stored."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import baggage, context

from doow_otel import InvalidEvent
from doow_otel.tracker import DoowTracker
from doow_otel_testing import LocalDoow


@pytest.fixture
def meter(local_doow: LocalDoow, tmp_path: Path) -> Iterator[DoowTracker]:
    tracker = DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path / "spool",
        attribution={"environment": "test"},
        flush_interval=3600,
        handle_sigterm=False,
    )
    yield tracker
    tracker.shutdown()


def test_track_and_flush_delivers_exact_totals(local_doow: LocalDoow, meter: DoowTracker) -> None:
    for _ in range(10):
        meter.track(metric="api_calls", quantity=1, license_id="lic_a")
    meter.track(
        metric="tokens",
        quantity=1024,
        license_id="lic_a",
        unit="tokens",
        attribution={"function": "generate-summary"},
    )
    meter.track({"metric": "tokens", "quantity": 6, "license_id": "lic_b"})
    assert meter.flush()
    assert local_doow.total("api_calls", "lic_a") == 10
    assert local_doow.total("tokens", "lic_a") == 1024
    assert local_doow.total("tokens", "lic_b") == 6
    (summary,) = local_doow.events(metric="tokens", license_id="lic_a")
    assert summary["unit"] == "tokens"
    assert summary["attribution"]["function"] == "generate-summary"
    assert summary["attribution"]["environment"] == "test"
    assert "doow.license_id" not in summary["attribution"]
    # one request for the whole flush
    assert len([r for r in local_doow.requests() if r["path"] == "/telemetry/events"]) == 1


def test_a_second_flush_sends_nothing_new(local_doow: LocalDoow, meter: DoowTracker) -> None:
    meter.track(metric="api_calls", quantity=2, license_id="lic_a")
    meter.flush()
    meter.flush()
    assert local_doow.total("api_calls") == 2
    assert len(local_doow.requests()) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"metric": "", "quantity": 1, "license_id": "l"}, "metric"),
        ({"metric": "bad name", "quantity": 1, "license_id": "l"}, "metric"),
        ({"metric": "m", "quantity": -1, "license_id": "l"}, "quantity"),
        ({"metric": "m", "quantity": math.nan, "license_id": "l"}, "quantity"),
        ({"metric": "m", "quantity": True, "license_id": "l"}, "quantity"),
        ({"metric": "m", "quantity": "1", "license_id": "l"}, "quantity"),
        ({"metric": "m", "quantity": 1}, "license_id"),
        ({"metric": "m", "quantity": 1, "license_id": ""}, "license_id"),
        (
            {"metric": "m", "quantity": 1, "license_id": "l", "attribution": {"a": [1]}},
            "attribution",
        ),
    ],
)
def test_bad_input_raises_at_the_call_naming_the_field(
    meter: DoowTracker, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        meter.track(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_unknown_seed_field_is_named(meter: DoowTracker) -> None:
    with pytest.raises(InvalidEvent, match="^quantty: "):
        meter.track({"metric": "m", "quantty": 1, "license_id": "l"})


def test_license_from_baggage_unless_the_call_names_one(
    local_doow: LocalDoow, meter: DoowTracker
) -> None:
    token = context.attach(baggage.set_baggage("doow.license_id", "lic_from_baggage"))
    try:
        meter.track(metric="api_calls", quantity=3)
        meter.track(metric="api_calls", quantity=4, license_id="lic_explicit")
    finally:
        context.detach(token)
    meter.flush()
    assert local_doow.total("api_calls", "lic_from_baggage") == 3
    assert local_doow.total("api_calls", "lic_explicit") == 4


def test_default_license_and_names_otel_would_refuse(local_doow: LocalDoow, tmp_path: Path) -> None:
    with DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path,
        default_license_id="lic_default",
        handle_sigterm=False,
    ) as tracker:
        tracker.track(metric="9lives:calls", quantity=1)  # fine for Doow, not an OTel name
        tracker.track(metric="api_calls", quantity=2)
    assert local_doow.total("9lives:calls", "lic_default") == 1
    assert local_doow.total("api_calls", "lic_default") == 2


def test_secret_attribution_is_stripped_and_the_event_kept(
    local_doow: LocalDoow, meter: DoowTracker
) -> None:
    meter.track(
        metric="api_calls",
        quantity=1,
        license_id="lic_a",
        attribution={"password": "hunter2", "route": "/x"},
    )
    meter.flush()
    (event,) = local_doow.events(metric="api_calls")
    assert event["attribution"] == {"environment": "test", "route": "/x"}


def test_flush_at_exports_in_the_background(local_doow: LocalDoow, tmp_path: Path) -> None:
    tracker = DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path,
        flush_at=5,
        flush_interval=3600,
        handle_sigterm=False,
    )
    for i in range(5):
        tracker.track(metric="api_calls", quantity=1, license_id=f"lic_{i}")
    deadline = time.monotonic() + 10
    while local_doow.total("api_calls") < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert local_doow.total("api_calls") == 5
    tracker.shutdown()


def test_disabled_tracker_validates_but_sends_nothing(
    local_doow: LocalDoow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOOW_TRACK_DISABLED", "true")
    tracker = DoowTracker(handle_sigterm=False)
    tracker.track(metric="api_calls", quantity=1, license_id="lic")
    with pytest.raises(InvalidEvent):
        tracker.track(metric="api_calls", quantity=-1, license_id="lic")
    tracker.shutdown()
    assert local_doow.requests() == []
