"""The local server's read API as the page uses it: totals per time bucket, filters by
kind and time range, usage and adjustments apart, rejections paged."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from doow_otel import DoowClient, UsageEvent
from doow_otel_testing import LocalDoow
from doow_otel_testing.server.store import _nice_bucket


def get(doow: LocalDoow, path: str, **params: Any) -> httpx.Response:
    return httpx.get(
        doow.url + path, params=params, headers={"Authorization": f"Bearer {doow.api_key}"}
    )


def send(doow: LocalDoow, spool: Path, events: list[UsageEvent]) -> None:
    with DoowClient(doow.api_key, endpoint=doow.url, spool=spool) as client:
        assert client.send(events).delivered == len(events)


def test_series_sums_exactly_per_bucket_metric_license_and_kind(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    big = 2**62
    send(
        local_doow,
        tmp_path,
        [
            UsageEvent(metric="bytes", quantity=big, license_id="lic_a"),
            UsageEvent(metric="bytes", quantity=big, license_id="lic_a"),
            UsageEvent(metric="bytes", quantity=-5, license_id="lic_a", kind="ADJUSTMENT"),
            UsageEvent(metric="calls", quantity=1, license_id="lic_b"),
        ],
    )
    answer = get(local_doow, "/api/series", bucket=86400)
    assert answer.status_code == 200, answer.text
    series = answer.json()
    assert series["bucket"] == 86400
    totals = {(p["metric"], p["license_id"], p["kind"]): p["total"] for p in series["points"]}
    # exact past 64 bits, and the adjustment kept apart from the usage
    assert totals == {
        ("bytes", "lic_a", "USAGE"): 2 * big,
        ("bytes", "lic_a", "ADJUSTMENT"): -5,
        ("calls", "lic_b", "USAGE"): 1,
    }
    assert all(p["t"] % 86400 == 0 for p in series["points"])
    assert series["since"] <= series["points"][0]["t"] + 86400

    only = get(local_doow, "/api/series", metric="calls").json()["points"]
    assert [(p["metric"], p["total"]) for p in only] == [("calls", 1)]
    adjustments = get(local_doow, "/api/series", kind="ADJUSTMENT").json()["points"]
    assert [p["total"] for p in adjustments] == [-5]


def test_time_range_filters_bound_every_read(local_doow: LocalDoow, tmp_path: Path) -> None:
    send(local_doow, tmp_path, [UsageEvent(metric="calls", quantity=2, license_id="lic_t")])
    past = {"since": "2000-01-01T00:00:00Z", "until": "2000-01-02T00:00:00+00:00"}
    assert get(local_doow, "/api/events", **past).json()["events"] == []
    assert get(local_doow, "/api/usage", **past).json()["usage"] == []
    assert get(local_doow, "/api/series", **past).json()["points"] == []
    assert get(local_doow, "/api/rejections", **past).json()["rejections"] == []

    # "since" inclusive with a time written without milliseconds, "until" in the future
    wide = {"since": "2000-01-01T00:00:00Z", "until": "2999-01-01T00:00:00Z"}
    assert len(get(local_doow, "/api/events", **wide).json()["events"]) == 1
    (row,) = get(local_doow, "/api/usage", per_kind="true", **wide).json()["usage"]
    assert (row["kind"], row["total"]) == ("USAGE", 2)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-01-01T00:00:00"}, "until"),  # no timezone: ambiguous
        ({"kind": "usage"}, "kind"),
        ({"bucket": "0"}, "bucket"),
        ({"bucket": "1m"}, "bucket"),
        ({"bucket": str(10**12)}, "bucket"),
        ({"before": str(2**70)}, "before"),  # past SQLite's 64-bit integers
    ],
)
def test_bad_read_parameters_are_named(
    local_doow: LocalDoow, params: dict[str, str], field: str
) -> None:
    path = "/api/events" if field == "before" else "/api/series"
    answer = get(local_doow, path, **params)
    assert answer.status_code == 400
    assert answer.json()["message"].startswith(f"{field}: ")


def test_rejections_are_paged_newest_first(local_doow: LocalDoow) -> None:
    bad = []
    for n in range(7):
        event = UsageEvent(metric="calls", quantity=1, license_id="lic_r").to_wire()
        event["measurements"][0]["quantity"] = f"not a number {n}"
        bad.append(event)
    answer = httpx.post(
        f"{local_doow.url}/telemetry/events",
        json={"batch_id": str(uuid.uuid4()), "events": bad},
        headers={"Authorization": f"Bearer {local_doow.api_key}"},
    )
    assert answer.status_code == 207
    seen: list[str] = []
    before = None
    for size in (3, 3, 1):
        params: dict[str, Any] = {"limit": 3}
        if before is not None:
            params["before"] = before
        page = get(local_doow, "/api/rejections", **params).json()
        assert len(page["rejections"]) == size
        seen += [r["event_id"] for r in page["rejections"]]
        before = page["next_before"]
    assert before is None
    assert seen == [e["event_id"] for e in reversed(bad)]


def test_automatic_buckets_are_round_and_at_most_about_120() -> None:
    assert _nice_bucket(0) == 1
    assert _nice_bucket(120) == 1
    assert _nice_bucket(3600) == 30
    assert _nice_bucket(7 * 86400) == 7200
    assert _nice_bucket(10 * 365 * 86400) > 2592000
