"""The journal and the recorder: usage on disk from the call, windows sealed into one event
per stream, dead processes' windows recovered under their own ids."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from doow_otel.delivery.journal import (
    COMPACT_BYTES,
    Journal,
    Route,
    WindowContent,
    dead_journals,
    read_window,
)
from doow_otel.delivery.recorder import Recorder
from doow_otel.delivery.reports import Reporter
from doow_otel.delivery.windows import window_events
from doow_otel.errors import ErrorReport

ROUTE = Route("tokens", "tokens", "lic_a", {"model": "small"}, 1)
OTHER = Route("cached_tokens", "tokens", "lic_a", {"model": "small"}, 2)


class Sink:
    """Takes windows (or refuses them while `refusing`), and says what it took."""

    def __init__(self, room: bool = True) -> None:
        self.room = room
        self.refusing = False
        self.windows: list[tuple[str, WindowContent]] = []

    def may_seal(self, events: int, deadline: float) -> bool:
        return self.room

    def budget(self) -> str:
        return "" if self.room else "12 events a minute for this sender, 12 sent in the last minute"

    def deliver(self, journal_id: str, window: WindowContent, deadline: float) -> bool:
        if self.refusing:
            return False
        self.windows.append((journal_id, window))
        return True

    def drain(self, deadline: float) -> bool:
        return True

    def events(self) -> list[dict[str, Any]]:
        return [
            {"id": e.event_id, "license": e.license_id, "measurements": e.measurements}
            for journal_id, window in self.windows
            for e in window_events(journal_id, window)[0]
        ]


def recorder(tmp_path: Path, sink: Sink, reports: list[ErrorReport] | None = None) -> Recorder:
    return Recorder(
        sink,
        directory=tmp_path,
        owner="0123456789abcdef",
        report=Reporter(reports.append if reports is not None else None),
        max_routes=3,
    )


def soon() -> float:
    return time.monotonic() + 5


def test_a_window_is_on_disk_before_add_returns_and_reads_back_whole(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "owner")
    window = WindowContent(4, 1_700_000_000_000_000_000, {"service.name": "x"})
    journal.add(window, ROUTE, 5)
    journal.add(window, ROUTE, 2.5)
    journal.add(window, OTHER, 1)
    journal.record(window, {"metric": "m", "quantity": 1, "license_id": "l", "event_id": "e"})
    content = read_window(journal.path(4))
    assert content.intact and content.window == 4 and content.resource == {"service.name": "x"}
    assert {r.metric: t for r, t in content.sums.items()} == {"tokens": 7.5, "cached_tokens": 1}
    assert content.records == [{"metric": "m", "quantity": 1, "license_id": "l", "event_id": "e"}]


def test_a_torn_tail_is_cut_at_the_first_frame_that_does_not_check(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "owner")
    window = WindowContent(0, 1)
    journal.add(window, ROUTE, 5)
    journal.add(window, ROUTE, 6)
    path = journal.path(0)
    data = path.read_bytes()
    path.write_bytes(data[:-3])  # a power loss mid-write
    content = read_window(path)
    assert not content.intact and list(content.sums.values()) == [5]


def test_a_route_used_in_two_windows_is_described_in_each_file(tmp_path: Path) -> None:
    """Each window's file stands alone: a successor reads it without the earlier ones
    (they are gone once delivered)."""
    journal = Journal(tmp_path, "owner")
    journal.add(WindowContent(0, 1), ROUTE, 5)
    journal.seal(durable=False)
    journal.add(WindowContent(1, 2), ROUTE, 7)
    content = read_window(journal.path(1))
    assert content.intact and {r.metric: t for r, t in content.sums.items()} == {"tokens": 7}


def test_a_large_open_window_is_compacted_to_its_sums(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "owner")
    window = WindowContent(0, 1)
    calls = COMPACT_BYTES // 30 + 10
    for _ in range(calls):
        journal.add(window, ROUTE, 1)
        window.sums[ROUTE] = window.sums.get(ROUTE, 0) + 1
        journal.compact_if_large(window)
    assert journal.path(0).stat().st_size < COMPACT_BYTES
    assert list(read_window(journal.path(0)).sums.values()) == [calls]


def test_sealed_windows_make_one_event_per_stream_with_every_metric(tmp_path: Path) -> None:
    sink = Sink()
    rec = recorder(tmp_path, sink)
    for _ in range(3):
        rec.add(ROUTE, 10)
        rec.add(OTHER, 1)
    assert rec.seal(deadline=soon())
    (event,) = sink.events()  # one stream (license, unit, attribution): both metrics in it
    assert event["measurements"] == (("cached_tokens", 3), ("tokens", 30))
    assert not list((tmp_path / "journal").glob("*.wal"))  # delivered: its file is gone


def test_over_budget_the_window_grows_and_is_said_once(tmp_path: Path) -> None:
    reports: list[ErrorReport] = []
    sink = Sink(room=False)
    rec = recorder(tmp_path, sink, reports)
    rec.add(ROUTE, 1)
    assert rec.seal(deadline=soon())  # kept on disk: nothing unsafe
    rec.add(ROUTE, 2)
    assert rec.seal(deadline=soon())
    assert sink.windows == [] and rec.stats["windows_extended"] == 2
    assert [r.kind for r in reports] == ["rate_limited"]  # once per window
    said = reports[0].message  # with numbers: what it would send, the budget, what to do
    assert "makes 1 event and Doow's event budget (12 events a minute for this sender" in said
    assert "a longer window (flush_interval)" in said
    sink.room = True
    assert rec.seal(deadline=soon())
    assert [e["measurements"] for e in sink.events()] == [(("tokens", 3),)]


def test_a_window_the_sink_refuses_stays_and_goes_first_next_time(tmp_path: Path) -> None:
    sink = Sink()
    rec = recorder(tmp_path, sink)
    rec.add(ROUTE, 1)
    sink.refusing = True
    assert not rec.seal(deadline=soon())
    assert len(list((tmp_path / "journal").glob("*.wal"))) == 1
    rec.add(ROUTE, 2)
    sink.refusing = False
    assert rec.seal(deadline=soon())
    assert [e["measurements"] for e in sink.events()] == [(("tokens", 1),), (("tokens", 2),)]


def test_a_dead_journal_is_recovered_under_its_ids_and_a_live_one_is_not(tmp_path: Path) -> None:
    first, second = Sink(), Sink()
    dead = recorder(tmp_path, first)
    dead.add(ROUTE, 4)
    live = recorder(tmp_path, second)
    assert live.recover(soon())
    assert second.windows == []  # its process lives (its lock is held)
    dead.close(unsent="the test sink did not take them")  # as a death releases the lock
    assert live.recover(soon())
    recovered = second.events()
    assert [e["measurements"] for e in recovered] == [(("tokens", 4),)]
    # the ids are the dead journal's: had it delivered this window before dying, Doow
    # would take the recovered one as the same events
    dead_journal_ids = {journal_id for journal_id, _ in second.windows}
    assert dead_journal_ids == {dead._journal.id}
    assert not dead_journals(tmp_path, "0123456789abcdef", live._journal.id)
    assert live.recover(soon()) and len(second.windows) == 1  # nothing twice


def test_past_the_route_limit_attribution_folds_and_the_usage_stays(tmp_path: Path) -> None:
    reports: list[ErrorReport] = []
    sink = Sink()
    rec = recorder(tmp_path, sink, reports)  # at most 3 routes per window
    folded = Route("api_calls", None, "lic_a", {"doow.folded": True}, 99)
    for n in range(6):
        rec.add(Route("api_calls", None, "lic_a", {"user": n}, 10 + n, folded), 1)
    assert rec.seal(deadline=soon())
    events = sink.events()
    assert sum(q for e in events for _, q in e["measurements"]) == 6
    assert len(events) == 4  # 3 routes kept, the rest in one folded stream
    assert rec.stats["folded"] == 3
    assert any("doow.folded" in r.message and "3 api_calls" in r.message for r in reports)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_journals_apart(tmp_path: Path) -> None:
    sink = Sink()
    rec = recorder(tmp_path, sink)
    rec.add(ROUTE, 1)
    parent_id = rec._journal.id
    pid = os.fork()
    if pid == 0:  # the child: its own journal, nothing of the parent's
        rec.after_fork_in_child()
        ok = rec._journal.id != parent_id and not rec.pending
        rec.add(ROUTE, 5)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert rec.seal(deadline=soon())
    assert [e["measurements"] for e in sink.events()] == [(("tokens", 1),)]
    # the child's window (it ended without sealing) is a dead journal: recovered once
    assert rec.recover(soon())
    assert [e["measurements"] for e in sink.events()][1:] == [(("tokens", 5),)]
