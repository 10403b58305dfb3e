"""Doow's event budget on the local server: 1,000 events a minute per key (configurable,
off with 0), an optional daily cap, 429 with Retry-After and X-Doow-Rate-Limits past
either, 413 for a batch that can never fit; the per-minute counts of what was offered,
stored, deduplicated and refused; a 207 that names an unknown metric."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from doow_otel import DoowClient, UsageEvent
from doow_otel_testing import LocalDoow
from doow_otel_testing.server.budget import DAILY_CAP, EVENT_RATE, Budget


def event(**fields: Any) -> dict[str, Any]:
    wire = {
        "event_id": str(uuid.uuid4()),
        "license_id": "lic_budget",
        "occurred_at": "2026-11-24T10:15:00.123Z",
        "measurements": [{"metric_name": "api_calls", "quantity": 1}],
    }
    wire.update(fields)
    return wire


def post(doow: LocalDoow, events: list[dict[str, Any]], batch_id: str | None = None) -> Any:
    return httpx.post(
        doow.url + "/telemetry/events",
        json={"batch_id": batch_id or str(uuid.uuid4()), "events": events},
        headers={"Authorization": f"Bearer {doow.api_key}"},
        timeout=10,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0  # 2027-01-15T08:00:00Z

    def __call__(self) -> float:
        return self.now


# --- the budget on its own (a clock of our own: no waiting) ---


def test_a_rolling_minute_refuses_the_request_that_would_pass_the_limit_whole() -> None:
    clock = Clock()
    budget = Budget(10, clock=clock)
    assert budget.take("k", 6) is None
    clock.now += 20
    assert budget.take("k", 4) is None
    refusal = budget.take("k", 1)
    assert refusal is not None
    assert refusal.categories == {EVENT_RATE: {"limit": 10, "current": 10, "retry_after": 40}}
    assert budget.current("k") == 10  # a refused request counts nothing
    assert budget.take("other key", 10) is None  # the budget is per key
    clock.now += 40  # the first 6 leave the window: 6 fit, 7 do not
    refusal = budget.take("k", 7)
    assert refusal is not None and refusal.retry_after == 20
    assert budget.take("k", 6) is None


def test_daily_cap_and_both_categories_at_once() -> None:
    clock = Clock()
    budget = Budget(5, daily_cap=8, clock=clock)
    assert budget.take("k", 5) is None
    clock.now += 61
    refusal = budget.take("k", 4)  # 4 fit the minute, not the day (5 + 4 > 8)
    assert refusal is not None and set(refusal.categories) == {DAILY_CAP}
    day = refusal.categories[DAILY_CAP]
    assert day["limit"] == 8 and day["current"] == 5
    assert day["retry_after"] == 16 * 3600 - 61  # to the next UTC midnight
    assert budget.take("k", 3) is None
    refusal = budget.take("k", 1)  # the minute has room (3 + 1), the day does not
    assert refusal is not None and set(refusal.categories) == {DAILY_CAP}
    refusal = budget.take("k", 3)
    assert refusal is not None and set(refusal.categories) == {EVENT_RATE, DAILY_CAP}
    assert refusal.retry_after == day["retry_after"]  # every category must have expired


def test_zero_turns_the_minute_limit_off() -> None:
    budget = Budget(0)
    assert all(budget.take("k", 1000) is None for _ in range(50))


# --- the server answers as Doow does ---


def test_past_the_budget_the_server_answers_429_with_doows_headers() -> None:
    with LocalDoow(events_per_minute=10) as doow:
        assert post(doow, [event() for _ in range(10)]).status_code == 202
        answer = post(doow, [event()])
        assert answer.status_code == 429
        assert answer.json()["error"] == "rate_limited"
        limits = json.loads(answer.headers["X-Doow-Rate-Limits"])
        assert set(limits) == {EVENT_RATE}
        assert limits[EVENT_RATE]["limit"] == 10 and limits[EVENT_RATE]["current"] == 10
        wait = int(answer.headers["Retry-After"])
        assert 1 <= wait <= 60 and limits[EVENT_RATE]["retry_after"] == wait
        # a batch larger than the minute's limit can never fit: 413, not 429
        too_many = post(doow, [event() for _ in range(11)])
        assert too_many.status_code == 413 and too_many.json()["error"] == "batch_too_large"
        assert doow.total("api_calls") == 10
        (refusal, *_) = doow.refusals(status=429)
        assert refusal["events"] == 1 and "event budget" in refusal["reason"]
        assert "--events-per-minute" in refusal["fix"]


def test_the_daily_cap_comes_as_its_own_category() -> None:
    with LocalDoow(events_per_minute=0, daily_cap=5) as doow:
        assert post(doow, [event() for _ in range(5)]).status_code == 202
        answer = post(doow, [event()])
        assert answer.status_code == 429
        limits = json.loads(answer.headers["X-Doow-Rate-Limits"])
        assert limits == {
            DAILY_CAP: {"limit": 5, "current": 5, "retry_after": limits[DAILY_CAP]["retry_after"]}
        }


def test_duplicates_and_rejected_events_count_against_the_budget() -> None:
    """What counts: every event of a request the server takes (server/budget.py)."""
    with LocalDoow(events_per_minute=6) as doow:
        same = event()
        bad = event(measurements=[{"metric_name": "api_calls", "quantity": 0}])
        assert post(doow, [same, same, bad]).status_code == 207  # 1 stored, 1 dup, 1 rejected
        assert post(doow, [same, event(), event()]).status_code == 202  # 1 dup, 2 stored
        assert post(doow, [event()]).status_code == 429  # 6 offered in this minute
        assert doow.offered_events() == 7
        assert doow.stored_events() == 3
        assert sum(m["duplicates"] for m in doow.minutes()) == 2
        assert sum(m["refused"] for m in doow.minutes()) == 1
        assert sum(m["rate_limited_requests"] for m in doow.minutes()) == 1
        assert sum(m["requests"] for m in doow.minutes()) == 3


def test_faults_keep_working_beside_the_budget() -> None:
    with LocalDoow(events_per_minute=3) as doow:
        doow.faults.fail_next(1, 503)
        assert post(doow, [event(), event(), event()]).status_code == 503
        # the injected failure took nothing from the budget
        assert post(doow, [event(), event(), event()]).status_code == 202
        doow.faults.fail_next(1, 429, retry_after="2")
        assert post(doow, [event()]).status_code == 429
        assert [r["status"] for r in doow.refusals()] == [429, 503]


def test_the_read_api_gives_events_per_minute_against_the_limit() -> None:
    with LocalDoow(events_per_minute=4) as doow:
        post(doow, [event(), event(), event()])
        post(doow, [event(), event()])  # would pass 4: refused whole
        answer = httpx.get(
            doow.url + "/api/minutes", headers={"Authorization": f"Bearer {doow.api_key}"}
        )
        body = answer.json()
        assert body["limit"] == 4 and body["daily_cap"] is None
        totals = {
            name: sum(m[name] for m in body["minutes"])
            for name in ("offered", "stored", "refused", "rate_limited_requests", "requests")
        }
        assert totals == {
            "offered": 5,
            "stored": 3,
            "refused": 2,
            "rate_limited_requests": 1,
            "requests": 2,
        }
        assert all(m["minute"].endswith(":00Z") for m in body["minutes"])
        empty = httpx.get(
            doow.url + "/api/minutes",
            params={"until": "2000-01-01T00:00:00Z"},
            headers={"Authorization": f"Bearer {doow.api_key}"},
        )
        assert empty.json()["minutes"] == []


def test_minutes_are_per_key() -> None:
    with LocalDoow(keys=["dk_first_key_aaaa", "dk_second_key_bbbb"]) as doow:
        for key, n in (("dk_first_key_aaaa", 2), ("dk_second_key_bbbb", 3)):
            httpx.post(
                doow.url + "/telemetry/events",
                json={"events": [event() for _ in range(n)]},
                headers={"Authorization": f"Bearer {key}"},
            )
        assert doow.offered_events(key="dk_first_key_aaaa") == 2
        assert doow.offered_events(key="dk_second_key_bbbb") == 3
        assert doow.offered_events() == 5


def test_our_client_waits_out_a_429_and_delivers_everything(tmp_path: Any) -> None:
    with (
        LocalDoow(events_per_minute=5) as doow,
        DoowClient(doow.api_key, endpoint=doow.url, spool=tmp_path) as client,
    ):
        events = [UsageEvent(metric="api_calls", quantity=1, license_id="lic_c") for _ in range(5)]
        assert client.send(events).delivered == 5
        more = [UsageEvent(metric="api_calls", quantity=1, license_id="lic_c")]
        result = client.send(more, timeout=0.5)  # Retry-After is longer: kept, not lost
        assert result.delivered == 0 and result.spooled == 1
        assert doow.total("api_calls") == 5
        assert doow.minutes()[-1]["rate_limited_requests"] >= 1


# --- rule R and rule P on the server ---


def packed(*measurements: tuple[str, int]) -> dict[str, Any]:
    return event(measurements=[{"metric_name": m, "quantity": q} for m, q in measurements])


def test_a_207_names_the_unknown_metric_of_a_packed_event() -> None:
    with LocalDoow(known_metrics={"input_tokens", "output_tokens"}) as doow:
        mixed = packed(("input_tokens", 10), ("made_up", 3), ("output_tokens", 5))
        good = packed(("input_tokens", 7), ("output_tokens", 2))
        answer = post(doow, [mixed, good], batch_id="b-r")
        assert answer.status_code == 207
        body = answer.json()
        assert body["batch_id"] == "b-r" and body["accepted"] == 1 and body["rejected"] == 1
        assert body["rejections"] == [
            {
                "event_id": mixed["event_id"],
                "reason": "unknown_metric: made_up",
                "metric_name": "made_up",
            }
        ]
        # the rejected event is shown with what it measured
        (shown,) = doow.rejections()
        assert shown["license_id"] == "lic_budget" and "made_up" in shown["metric"]
        assert shown["measurements"][1] == {"metric_name": "made_up", "quantity": 3}


def test_every_measurement_of_a_packed_event_is_stored_and_counted() -> None:
    with LocalDoow() as doow:
        one = packed(("input_tokens", 10), ("output_tokens", 5), ("requests", 1))
        assert post(doow, [one, packed(("input_tokens", 1))]).status_code == 202
        assert doow.total("input_tokens", "lic_budget") == 11
        assert doow.total("output_tokens", "lic_budget") == 5
        assert doow.total("requests", "lic_budget") == 1
        assert doow.stored_events() == 2  # the budget counts events, not measurements
        ids = {e["event_id"] for e in doow.events() if e["metric"] != "input_tokens"}
        assert ids == {one["event_id"]}
        # resent: the whole event is a duplicate, no measurement counted twice
        assert post(doow, [one]).status_code == 202
        assert doow.total("input_tokens", "lic_budget") == 11


@pytest.mark.parametrize("limit", [0, 1000])
def test_a_batch_of_1000_fits_an_empty_minute(limit: int) -> None:
    with LocalDoow(events_per_minute=limit) as doow:
        assert post(doow, [event() for _ in range(1000)]).status_code == 202
