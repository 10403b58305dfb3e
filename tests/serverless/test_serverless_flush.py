"""The flush every wrapper shares: budget, one request, pass-through, never raising."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from doow_otel.serverless._core import budget as _budget
from doow_otel.tracker import DoowTracker
from doow_otel_testing import LocalDoow
from helpers import wait_for


@pytest.mark.parametrize(
    ("remaining", "flush_timeout", "margin", "budget"),
    [
        (None, 2.0, 0.1, 2.0),  # no deadline known: the flush timeout
        (30.0, 2.0, 0.1, 2.0),  # plenty of time: the flush timeout
        (1.0, 2.0, 0.1, 0.9),  # little time: what is left minus the margin
        (2.1, 2.0, 0.1, 2.0),
        (0.05, 2.0, 0.1, 0.0),  # less than the margin: no network at all
        (-1.0, 2.0, 0.1, 0.0),  # already late
    ],
)
def test_budget_is_the_flush_timeout_or_the_time_left_minus_the_margin(
    remaining: float | None, flush_timeout: float, margin: float, budget: float
) -> None:
    assert _budget(remaining, flush_timeout, margin) == pytest.approx(budget)


def test_nothing_tracked_makes_no_request(meter: DoowTracker, local_doow: LocalDoow) -> None:
    for _ in range(5):
        with meter.invocation():
            pass
    assert local_doow.requests() == []


def test_an_invocation_costs_one_request_even_past_flush_at(
    meter: DoowTracker, local_doow: LocalDoow
) -> None:
    # flush_at is 20: outside an invocation 60 distinct records would flush early,
    # inside one the wrapper's flush at the end takes them all
    @meter.with_lambda
    def handler(event: Any, context: Any) -> str:
        for user in range(60):
            meter.track(
                metric="api_calls", quantity=1, license_id="lic_a", attribution={"user": user}
            )
        return "done"

    assert handler({}, None) == "done"
    assert local_doow.total("api_calls", "lic_a") == 60
    assert len(local_doow.requests(path="/telemetry/events")) == 1


def test_the_deadline_bounds_the_flush_and_the_rest_is_delivered_once_later(
    meter: DoowTracker, local_doow: LocalDoow, tmp_path: Path
) -> None:
    local_doow.faults.latency(3.0)
    with meter.invocation(deadline=time.monotonic() + 0.6):
        meter.track(metric="api_calls", quantity=4, license_id="lic_late")
    # back before the slow server answered: nothing stored, the batch on disk
    assert local_doow.total("api_calls", "lic_late") == 0
    assert len(list((tmp_path / "spool").glob("*.batch"))) == 1
    local_doow.faults.clear()
    time.sleep(0.3)  # the cut-short flush, in the background, lets go of the batch
    with meter.invocation():
        meter.track(metric="api_calls", quantity=1, license_id="lic_next")
    assert local_doow.total("api_calls", "lic_late") == 4
    assert local_doow.total("api_calls", "lic_next") == 1
    assert len(local_doow.events(license_id="lic_late")) == 1


def test_returns_by_the_budget_while_an_earlier_export_holds_the_exporter(
    meter: DoowTracker, local_doow: LocalDoow, caplog: pytest.LogCaptureFixture
) -> None:
    local_doow.faults.latency(3.0)
    meter.track(metric="api_calls", quantity=1, license_id="lic_a")
    earlier = threading.Thread(target=meter.flush, kwargs={"timeout": 10.0})
    earlier.start()  # a background export with a long timeout, stuck on the slow server
    time.sleep(0.1)
    with caplog.at_level(logging.WARNING, logger="doow_otel"), meter.invocation(flush_timeout=0.3):
        meter.track(metric="api_calls", quantity=1, license_id="lic_b")
    assert earlier.is_alive()  # the invocation did not wait for it
    # its own flush ran beside the stuck one and kept its usage by the budget
    assert "kept in the spool" in caplog.text
    local_doow.faults.clear()
    earlier.join(30)
    meter.flush()
    assert local_doow.total("api_calls", "lic_a") == 1
    # lic_b was collected by the invocation's flush, which goes on in the background
    # and delivers it once the exporter is free (this flush may have run before it).
    end = time.monotonic() + 10
    while local_doow.total("api_calls", "lic_b") == 0 and time.monotonic() < end:
        time.sleep(0.05)
    assert local_doow.total("api_calls", "lic_b") == 1
    # a request abandoned at its deadline may still have reached the server and be sent
    # again: the same ids, counted once (a retry, never a second bill)
    assert local_doow.total("api_calls") == 2 and local_doow.stats()["accepted"] == 2


def test_return_value_and_exception_pass_through_unchanged(
    meter: DoowTracker, local_doow: LocalDoow
) -> None:
    result = object()
    problem = KeyError("missing")

    @meter.invocation()
    def ok() -> object:
        meter.track(metric="api_calls", quantity=1, license_id="lic_a")
        return result

    @meter.invocation()
    def fails() -> None:
        meter.track(metric="api_calls", quantity=1, license_id="lic_a")
        raise problem

    assert ok() is result
    with pytest.raises(KeyError) as caught:
        fails()
    assert caught.value is problem
    assert local_doow.total("api_calls", "lic_a") == 2


def test_an_sdk_failure_never_becomes_the_handlers(
    meter: DoowTracker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(timeout: float | None = None) -> bool:
        raise OSError("disk full")

    monkeypatch.setattr(meter, "flush", broken)

    @meter.with_lambda(flush_timeout=1.0)
    def handler(event: Any, context: Any) -> str:
        meter.track(metric="api_calls", quantity=1, license_id="lic_a")
        return "fine"

    with caplog.at_level(logging.ERROR, logger="doow_otel"):
        assert handler({}, None) == "fine"
    assert "flush failed" in caplog.text


def test_decorators_keep_signature_and_coroutine_ness(
    meter: DoowTracker, local_doow: LocalDoow
) -> None:
    async def work(job_id: str, *, retries: int = 0) -> str:
        meter.track(metric="jobs", quantity=1, license_id="lic_q")
        await asyncio.sleep(0)
        return job_id

    wrapped = meter.invocation()(work)
    assert inspect.iscoroutinefunction(wrapped)
    assert inspect.signature(wrapped) == inspect.signature(work)
    assert asyncio.run(wrapped("j1")) == "j1"
    assert local_doow.total("jobs", "lic_q") == 1


def test_async_with_does_not_block_the_event_loop(
    meter: DoowTracker, local_doow: LocalDoow
) -> None:
    local_doow.faults.latency(0.5)

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        async with meter.invocation():
            meter.track(metric="api_calls", quantity=1, license_id="lic_a")
        task.cancel()
        return ticks

    assert asyncio.run(main()) > 0  # the loop ran while the flush waited on the server
    assert local_doow.total("api_calls", "lic_a") == 1


def test_a_flush_does_not_wait_for_another_invocations_round_trip(
    meter: DoowTracker, local_doow: LocalDoow
) -> None:
    """Two invocations of one process (Lambda managed instances, an ASGI server), Doow
    slow: the second's flush sends while the first's request is still in flight, instead of
    queueing behind it (one flusher thread made 8 concurrent flushes p50 32 ms against 2 ms
    alone). Judged by what the server saw at once, not by a clock."""
    local_doow.faults.latency(5.0)

    def in_flight() -> int:
        return sum(r["status"] is None for r in local_doow.requests(include_in_flight=True))

    def first() -> None:  # its flush waits out the slow answer
        with meter.invocation(flush_timeout=8.0):
            meter.track(metric="api_calls", quantity=1, license_id="lic_first")

    waiting = threading.Thread(target=first)
    waiting.start()
    assert wait_for(lambda: in_flight() == 1, 4)
    with meter.invocation(flush_timeout=0.2):
        meter.track(metric="api_calls", quantity=1, license_id="lic_second")
    assert wait_for(lambda: in_flight() == 2, 4)  # both on the wire at once
    waiting.join(20)
    local_doow.faults.clear()  # the second was kept in the spool past its budget: sent now
    assert meter.flush(timeout=10) and local_doow.total("api_calls") == 2
    assert local_doow.total("api_calls", "lic_first") == local_doow.total("api_calls", "lic_second")
