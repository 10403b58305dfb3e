"""flush() tells the truth (issue 9, item 8): False, and on_error told, whenever usage was
neither delivered nor kept; a collector that is not listening is reported and the usage
goes out with the next flush. Judged by what the local server stored."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from doow_otel.errors import ErrorReport
from doow_otel.tracker import DoowTracker
from doow_otel_testing import LocalDoow
from helpers import Collector, free_port, require_otelcol, wait_for


def _without_spool(local_doow: LocalDoow, reports: list[ErrorReport]) -> DoowTracker:
    """A tracker with no spool: what it cannot deliver, its exporter keeps in memory."""
    return DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=None,
        on_error=reports.append,
        flush_interval=3600,
        timeout=1.0,
        handle_sigterm=False,
    )


def test_no_spool_and_a_failing_server_flush_false_then_delivered_next_flush(
    local_doow: LocalDoow,
) -> None:
    reports: list[ErrorReport] = []
    tracker = _without_spool(local_doow, reports)
    try:
        local_doow.faults.fail_next(1000, status=503)
        for _ in range(3):
            tracker.track(metric="api_calls", quantity=1, license_id="lic_a")
        assert tracker.flush() is False
        assert reports, "on_error heard nothing"
        assert local_doow.total("api_calls") == 0
        # kept in memory for the next flush: not a drop, nor said to be one
        assert tracker.stats()["dropped"] == 0
        assert not [r for r in reports if r.kind == "dropped"], reports
        assert any("kept in memory" in r.message for r in reports), reports
        local_doow.faults.clear()
        assert tracker.flush() is True
        assert local_doow.total("api_calls") == 3
        assert tracker.stats()["dropped"] == 0
    finally:
        tracker.shutdown()


def test_no_spool_and_a_failing_server_at_shutdown_is_reported_dropped(
    local_doow: LocalDoow,
) -> None:
    """What the last flush kept in memory ends with the process: counted and reported as
    dropped with its quantity (it was reported only as kept in memory)."""
    reports: list[ErrorReport] = []
    tracker = _without_spool(local_doow, reports)
    local_doow.faults.fail_next(1000, status=503)
    tracker.track(metric="api_calls", quantity=7, license_id="lic_exit")
    tracker.shutdown()
    dropped = [r for r in reports if r.kind == "dropped"]
    assert len(dropped) == 1 and dropped[0].count == 1, reports
    assert "7 api_calls" in dropped[0].message and "Doow did not take" in dropped[0].message
    assert tracker.stats()["dropped"] == 1 and local_doow.total("api_calls") == 0


def test_a_permanent_refusal_makes_flush_false(local_doow: LocalDoow, tmp_path: Path) -> None:
    reports: list[ErrorReport] = []
    tracker = DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path,
        on_error=reports.append,
        flush_interval=3600,
        handle_sigterm=False,
    )
    try:
        local_doow.faults.fail_next(1, status=400)
        tracker.track(metric="api_calls", quantity=1, license_id="lic_a")
        assert tracker.flush() is False
        assert reports
        assert tracker.stats()["dropped"] == 1  # the client's drop, not hidden by the windows'
        tracker.track(metric="api_calls", quantity=2, license_id="lic_a")
        assert tracker.flush() is True
        # refused for good is settled: the refused window is never offered again
        assert local_doow.total("api_calls") == 2
        assert tracker.stats()["dropped"] == 1
    finally:
        tracker.shutdown()


def test_collector_not_listening_is_reported_and_retried(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    require_otelcol()
    collector = Collector(local_doow, tmp_path / "queue", tmp_path / "collector.log")
    (tmp_path / "queue").mkdir()
    collector.http_port = free_port()
    reports: list[ErrorReport] = []
    tracker = DoowTracker(
        route="collector",
        collector_endpoint=f"http://127.0.0.1:{collector.http_port}",
        on_error=reports.append,
        flush_interval=3600,
        timeout=2.0,
        handle_sigterm=False,
    )
    try:
        for i in range(10):
            tracker.track(metric="api_calls", quantity=1, license_id=f"lic_{i % 2}")
        assert tracker.flush() is False
        assert any("collector" in r.message for r in reports), reports
        collector.start()  # on the port the tracker was given
        tracker.track(metric="api_calls", quantity=5, license_id="lic_0")
        assert tracker.flush() is True
        assert wait_for(lambda: local_doow.total("api_calls") == 15)
        assert local_doow.total("api_calls", "lic_0") == 10
    finally:
        tracker.shutdown()
        collector.stop()


def test_a_send_that_raises_keeps_the_usage_for_the_next_flush(
    local_doow: LocalDoow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a spool, the exporter takes the usage it kept out of memory to send it:
    a bug below (send raising) must put it back, not lose it."""
    reports: list[ErrorReport] = []
    tracker = _without_spool(local_doow, reports)
    try:
        tracker.track(metric="api_calls", quantity=2, license_id="lic_a")
        local_doow.faults.fail_next(1000, status=503)  # kept in memory by the exporter
        assert tracker.flush() is False
        local_doow.faults.clear()
        tracker.track(metric="api_calls", quantity=3, license_id="lic_a")

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("a bug in the client")

        monkeypatch.setattr(tracker.client, "send", broken)
        assert tracker.flush() is False
        assert any("kept for the next flush" in r.message for r in reports)
        monkeypatch.undo()
        assert tracker.flush() is True
        assert local_doow.total("api_calls", "lic_a") == 5
    finally:
        tracker.shutdown()


def test_usage_the_collector_refused_at_exit_stays_on_disk_for_the_next_process(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """route="collector", the collector down when the process shuts down: the usage is
    not lost and not reported as kept in memory: it stays in the journal on disk, and the
    next process on the same spool delivers it once the collector is back."""
    require_otelcol()
    collector = Collector(local_doow, tmp_path / "queue", tmp_path / "collector.log")
    (tmp_path / "queue").mkdir()
    collector.http_port = free_port()

    def tracker(reports: list[ErrorReport]) -> DoowTracker:
        return DoowTracker(
            route="collector",
            collector_endpoint=f"http://127.0.0.1:{collector.http_port}",
            spool=tmp_path / "spool",
            on_error=reports.append,
            flush_interval=3600,
            timeout=1.0,
            handle_sigterm=False,
        )

    first_reports: list[ErrorReport] = []
    first = tracker(first_reports)
    first.track(metric="api_calls", quantity=7, license_id="lic_exit")
    first.shutdown()
    assert any("stays in the journal on disk" in r.message for r in first_reports)
    assert not any("kept in memory" in r.message for r in first_reports)
    assert list((tmp_path / "spool" / "journal").glob("*.wal"))
    collector.start()
    try:
        second = tracker([])
        assert second.flush() is True
        second.shutdown()
        assert wait_for(lambda: local_doow.total("api_calls", "lic_exit") == 7)
        time.sleep(0.5)
        assert local_doow.total("api_calls", "lic_exit") == 7
    finally:
        collector.stop()


@contextlib.contextmanager
def _collector_answering(status: int) -> Iterator[str]:
    """A collector that answers every push with `status` (a 503: its queue is full, or it
    is restarting); its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_usage_the_collector_refused_at_exit_with_no_spool_is_reported_dropped() -> None:
    """route="collector" with no spool directory (no journal on disk), the collector
    answering 503 when the process shuts down: the usage ends with the process, so it is
    counted and reported as dropped, with its quantity, and never said to be kept on disk
    (issue 25, point 2)."""
    reports: list[ErrorReport] = []
    with _collector_answering(503) as url:
        tracker = DoowTracker(
            route="collector",
            collector_endpoint=url,
            spool=None,
            on_error=reports.append,
            flush_interval=3600,
            timeout=1.0,
            handle_sigterm=False,
        )
        tracker.track(metric="api_calls", quantity=7, license_id="lic_exit")
        tracker.track(metric="tokens", quantity=1024, unit="tokens", license_id="lic_exit")
        tracker.shutdown()
    dropped = [r for r in reports if r.kind == "dropped"]
    assert len(dropped) == 1 and dropped[0].count == 2, reports
    assert "7 api_calls" in dropped[0].message and "1,024 tokens tokens" in dropped[0].message
    assert not any("stays in the journal on disk" in r.message for r in reports), reports
    assert tracker.stats()["dropped"] == 2
