"""Fork safety (issue 9, item 13): gunicorn --preload and multiprocessing fork a process
that has a tracker. Usage tracked before the fork is billed once, the child uses its
own connections, and flush_at and the periodic export work in the child. Judged by
what the local server stored (the children report through their exit status)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from doow_otel.tracker import DoowTracker
from doow_otel_testing import LocalDoow
from helpers import wait_for

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture
def tracker(local_doow: LocalDoow, tmp_path: Path) -> Iterator[DoowTracker]:
    meter = DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path / "spool",
        flush_at=1000,
        flush_interval=3600,
        handle_sigterm=False,
    )
    yield meter
    meter.shutdown()


def _in_child(work: Callable[[], bool]) -> int:
    """Run `work` in a forked child; its exit status: 0 when it returned True."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            code = 0 if work() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_usage_tracked_before_a_fork_is_billed_once(
    local_doow: LocalDoow, tracker: DoowTracker
) -> None:
    tracker.track(metric="api_calls", quantity=3, license_id="lic_parent")
    parent_client = tracker.client

    def child() -> bool:
        tracker.track(metric="api_calls", quantity=2, license_id="lic_child")
        return tracker.client is not parent_client and tracker.flush(timeout=10)

    assert _in_child(child) == 0
    assert tracker.flush()
    assert local_doow.total("api_calls", "lic_parent") == 3
    assert local_doow.total("api_calls", "lic_child") == 2


def test_billed_once_with_a_multiprocessing_fork_context(
    local_doow: LocalDoow, tracker: DoowTracker
) -> None:
    tracker.track(metric="api_calls", quantity=5, license_id="lic_parent")
    workers = [
        multiprocessing.get_context("fork").Process(target=_worker, args=(tracker, n))
        for n in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert tracker.flush()
    assert local_doow.total("api_calls", "lic_parent") == 5
    assert local_doow.total("api_calls", "lic_worker") == 0 + 1 + 2


def _worker(tracker: DoowTracker, n: int) -> None:
    if n:
        tracker.track(metric="api_calls", quantity=n, license_id="lic_worker")
    if not tracker.flush(timeout=10):
        raise SystemExit(1)


def test_a_flush_works_in_the_child_and_sends_only_its_usage(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    meter = DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path / "spool",
        flush_interval=3600,
        handle_sigterm=False,
    )
    try:
        meter.track(metric="api_calls", quantity=1, license_id="lic_parent")
        meter.track(metric="api_calls", quantity=1, license_id="lic_parent")
        assert meter.flush()
        assert local_doow.total("api_calls", "lic_parent") == 2

        def child() -> bool:
            meter.track(metric="api_calls", quantity=1, license_id="lic_child")
            meter.track(metric="api_calls", quantity=1, license_id="lic_child")
            return meter.flush(timeout=20)

        assert _in_child(child) == 0
        assert local_doow.total("api_calls", "lic_child") == 2
    finally:
        meter.shutdown()


def test_the_periodic_export_works_in_the_child(local_doow: LocalDoow, tmp_path: Path) -> None:
    meter = DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path / "spool",
        flush_interval=0.2,
        handle_sigterm=False,
    )
    try:

        def child() -> bool:
            meter.track(metric="api_calls", quantity=4, license_id="lic_child")
            return wait_for(lambda: meter.client.stats()["delivered"] >= 1, seconds=20)

        assert _in_child(child) == 0
        assert local_doow.total("api_calls", "lic_child") == 4
    finally:
        meter.shutdown()


def test_the_zero_code_reader_bills_pre_fork_usage_once(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider

    from doow_otel.otel.metrics import DoowMetricExporter, DoowMetricReader

    exporter = DoowMetricExporter(
        api_key=local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "spool"
    )
    provider = MeterProvider(metric_readers=[DoowMetricReader(exporter)])
    calls = provider.get_meter("app").create_counter("api_calls")
    calls.add(3, {"doow.license_id": "lic_parent"})
    parent_client = exporter.client
    try:

        def child() -> bool:
            calls.add(2, {"doow.license_id": "lic_child"})
            return exporter.client is not parent_client and bool(provider.force_flush(10_000))

        assert _in_child(child) == 0
        provider.force_flush(10_000)
        assert local_doow.total("api_calls", "lic_parent") == 3
        assert local_doow.total("api_calls", "lic_child") == 2
    finally:
        provider.shutdown()
