"""Doow's event budget on the client side: packed events and a 207 that names one of their
metrics (rule R), the pacer (learned, shared by the processes of one spool), and no
duplicate offers from processes sharing a spool."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from doow_otel import DoowClient, UsageEvent
from doow_otel.delivery.pacing import Pacer
from doow_otel.delivery.recorder import DoowSink
from doow_otel.delivery.status import RateLimit
from doow_otel.errors import ErrorReport
from doow_otel.model.packing import pack
from doow_otel_testing import LocalDoow
from transports import Request, answer, forwarding

NS_REPACKED = uuid.UUID("8e2d4a17-5c3b-4f96-a0d8-1b7e6c9f2a54")


def _packed() -> UsageEvent:
    moment = datetime(2026, 12, 1, tzinfo=timezone.utc)
    (event,) = pack(
        [
            (UsageEvent(metric=m, quantity=q, license_id="lic_p", occurred_at=moment), True)
            for m, q in (("tokens", 50), ("api_calls", 2))
        ]
    )
    assert len(event.measurements) == 2
    return event


def test_a_207_naming_one_metric_sends_the_others_again_under_a_derived_id(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    event = _packed()
    answered: list[str] = []

    def rule(request: Request) -> object:
        if answered:
            return None  # the local server from here on
        answered.append(request.path)
        return answer(
            207,
            json={
                "accepted": 0,
                "rejected": 1,
                "rejections": [{"event_id": event.event_id, "reason": "unknown_metric: tokens"}],
            },
        )

    reports: list[ErrorReport] = []
    client = DoowClient(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path / "spool",
        transport=forwarding(local_doow, rule),  # type: ignore[arg-type]
        on_error=reports.append,
    )
    result = client.send([event])
    again = str(uuid.uuid5(NS_REPACKED, f"s36:{event.event_id}s6:tokens"))
    assert [(r.event_id, r.metric) for r in result.rejected] == [(event.event_id, "tokens")]
    assert local_doow.total("api_calls", "lic_p") == 2 and local_doow.total("tokens") == 0
    assert [e["event_id"] for e in local_doow.events(license_id="lic_p")] == [again]
    assert client.stats()["resent_measurements"] == 1
    (report,) = [r for r in reports if r.kind == "partial_accept"]
    assert "its tokens (50)" in report.message and again in report.message
    client.close()


def test_a_207_naming_no_metric_rejects_the_whole_event(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    event = _packed()
    transport = forwarding(
        local_doow,
        lambda request: answer(
            207, json={"accepted": 0, "rejections": [{"event_id": event.event_id, "reason": "no"}]}
        ),
    )
    client = DoowClient(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path / "s",
        transport=transport,  # type: ignore[arg-type]
    )
    result = client.send([event])
    assert len(result.rejected) == 1 and len(transport.requests) == 1  # never resent
    client.close()


def test_the_pacer_learns_the_budget_and_shares_it_with_the_spools_processes(
    tmp_path: Path,
) -> None:
    shared = tmp_path / ".budgets" / "owner"
    one, other = Pacer(state_file=shared), Pacer(state_file=shared)  # two processes' view
    assert one.events_per_minute == 1000  # Doow's documented budget until told otherwise
    assert one.acquire(600) == 0
    assert other.available() < 401  # the other sees what the first took
    assert other.acquire(600) > 0  # and waits for the budget to refill
    one.throttled(30.0, RateLimit(limit=500, current=520, retry_after=30))
    assert other.events_per_minute == 250  # the limit Doow named, this sender's share halved
    assert other.wait(1) >= 29  # every send waits for the 429's wait
    given = Pacer(120, state_file=tmp_path / "x")
    given.throttled(None, RateLimit(limit=500))
    assert given.events_per_minute == 120  # a budget given is kept


def test_each_key_has_its_own_budget_in_a_shared_spool_directory(tmp_path: Path) -> None:
    """The default spool is the user's cache, shared by every key on the machine: a test
    key's 429s from a local server must not slow a production key (nor share its bucket)."""
    spool = tmp_path / "spool"
    test = DoowClient("dk_test_0123456789", endpoint="http://127.0.0.1:9", spool=spool)
    live = DoowClient("dk_live_0123456789", endpoint="https://api.doow.co", spool=spool)
    same = DoowClient("dk_live_0123456789", endpoint="https://api.doow.co", spool=spool)
    test.pacer.throttled(30.0, RateLimit(limit=500, current=520, retry_after=30))
    assert test.pacer.wait(1) >= 29
    assert live.pacer.wait(1) == 0 and live.pacer.events_per_minute == 1000
    live.pacer.acquire(600)
    assert same.pacer.available() < 401  # one key's processes share one bucket
    for client in (test, live, same):
        client.close()


def test_processes_sharing_a_spool_never_offer_a_batch_twice(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """Two senders replaying one spool at the same moment: each batch goes once (the
    issue's 4 workers offered Doow 22,700 events a minute, 61% of them duplicates)."""
    spool = tmp_path / "spool"
    writer = DoowClient(local_doow.api_key, endpoint=local_doow.url, spool=spool, max_retries=0)
    local_doow.faults.fail_next(1000, 503)
    for n in range(6):
        writer.send([UsageEvent(metric="jobs", quantity=1, license_id=f"lic_{n}")], timeout=1)
    writer.close()
    local_doow.faults.clear()
    local_doow.faults.latency(0.3)  # each request in flight long enough to overlap
    senders = [
        DoowClient(local_doow.api_key, endpoint=local_doow.url, spool=spool) for _ in range(2)
    ]
    threads = [threading.Thread(target=s.flush_spool, kwargs={"timeout": 20}) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    local_doow.faults.clear()
    for sender in senders:
        sender.flush_spool(timeout=10)
        sender.close()
    assert local_doow.total("jobs") == 6
    offered = [
        r["batch_id"] for r in local_doow.requests(path="/telemetry/events") if r["status"] == 202
    ]
    assert len(offered) == len(set(offered)) == 6, offered
    assert not list(spool.glob("*.batch"))


class _Clock:
    """time.time() for the pacer, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_one_overload_halves_the_pace_once_and_a_quiet_spell_gives_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches in flight together all meet the same overload: their 429s are one signal,
    not four (four halvings left a sender at 1/16 of the budget, and at 10% a minute it
    took nine minutes to drain a backlog: the over-budget fault row measured 20-30% of the
    budget used after the load stopped)."""
    clock = _Clock()
    monkeypatch.setattr("doow_otel.delivery.pacing.time.time", clock)
    pacer = Pacer(state_file=tmp_path / "b")
    for _ in range(4):  # four batches' 429s, answered within the first one's wait
        pacer.throttled(20.0, RateLimit(limit=1000, current=1040, retry_after=20))
        clock.now += 1
    assert pacer.events_per_minute == 500
    clock.now += 30  # past the wait: a new 429 is a new overload
    pacer.throttled(20.0, RateLimit(limit=1000, current=1010, retry_after=20))
    assert pacer.events_per_minute == 250
    clock.now += 20 + 30  # the wait, then a quiet half minute: recovery starts
    clock.now += 120  # two quiet minutes
    assert pacer.events_per_minute == pytest.approx(750)
    clock.now += 120
    assert pacer.events_per_minute == 1000  # the whole budget again within four minutes


def test_the_pacer_counts_a_rolling_minute_as_doow_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window's 800 events at the same second of every minute: the next burst waits
    until the last one has left Doow's rolling minute. (A token bucket holding a minute of
    budget let it go 59 s later, 1,600 events in one rolling minute: the bench's 4-worker
    service met 429s at window boundaries.)"""
    clock = _Clock()
    monkeypatch.setattr("doow_otel.delivery.pacing.time.time", clock)
    pacer = Pacer(state_file=tmp_path / "b")
    assert pacer.acquire(800) == 0
    clock.now += 59
    assert pacer.available() == 200
    assert pacer.acquire(800) > 2  # not before the first burst has left Doow's minute
    assert pacer.acquire(200) == 0  # what fits beside it goes
    clock.now += 4
    assert pacer.acquire(800) == 0  # the first burst has aged out, with the way there
    pacer.take(-800)  # Doow did not take it: the budget was not spent
    assert pacer.available() == 800  # the 200 of a few seconds ago still count


def test_a_window_is_sealed_when_its_events_fit_by_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a window boundary the last window's events still count for the pacer's extra
    2 s: the window goes once they age out, within the seal's deadline, instead of staying
    open a whole minute more (which halved the windows of a service using most of the
    budget)."""
    clock = _Clock()
    monkeypatch.setattr("doow_otel.delivery.pacing.time.time", clock)
    client = DoowClient("dk_test_0123456789", endpoint="http://127.0.0.1:9", spool=tmp_path)
    sink = DoowSink(client)
    client.pacer.take(800)  # the last window's events, at the last boundary
    clock.now += 60  # the next boundary: still in the pacer's minute for 2 s
    assert client.pacer.available() == 200
    assert sink.budget() == "1,000 events a minute for this sender, 800 sent in the last minute"
    assert sink.may_seal(400, deadline=time.monotonic() + 10)
    assert not sink.may_seal(400, deadline=time.monotonic() + 1)  # not by this deadline
    client.close()
