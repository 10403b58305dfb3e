"""The recorder: usage summed per window, on disk from the moment it is recorded, sealed
into one event per stream when the budget has room for it.

`add()` is the hot path of `track()`: under one lock it adds the amount to the open
window's sums and appends it to the journal (`doow_otel.delivery.journal`), so a process
killed at any instant loses nothing that was recorded. `seal()` closes the open window,
makes its events (`doow_otel.delivery.windows`: one per stream, every metric in it) and
hands them to a sink: Doow's spool and client, or a collector. A window's file goes only
once the sink has them; a sealed window the sink could not take stays on disk and goes
first with the next seal.

Windows grow rather than overrun Doow's budget: the open window is sealed only when the
sink says the budget has room for its events (`WindowSink.may_seal`); otherwise it stays
open, and the usage of the next minutes joins it (never anything sealed: those ids are
fixed). `recover()` seals and delivers the windows of dead processes' journals on the
same spool (a SIGKILL, an OOM kill, a Lambda timeout), under the dead journal's ids, so a
window delivered before the crash is not billed again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from doow_otel.delivery.client import DoowClient
from doow_otel.delivery.journal import Journal, Route, WindowContent, dead_journals, read_window
from doow_otel.delivery.reports import Reporter
from doow_otel.delivery.windows import stream_count, window_events
from doow_otel.errors import counted

__all__ = ["DoowSink", "Recorder", "WindowSink"]

logger = logging.getLogger("doow_otel")

MAX_RECORDS_PER_WINDOW = 10_000
"""Usage records (their own ids) one open window holds; more seal it whatever the budget."""
MAX_UNDELIVERED_WINDOWS = 1_000
"""Sealed windows kept in memory for the sink when there is no disk (the oldest go first,
counted and reported)."""


class WindowSink(Protocol):
    """Where sealed windows go: Doow (through the spool), or a collector."""

    def may_seal(self, events: int, deadline: float) -> bool:
        """Whether the budget has room for `events` by `deadline` (time.monotonic()): if
        not, the window stays open."""
        ...

    def budget(self) -> str:
        """The budget as this sink knows it, for the report that a window grows ("" when
        it has none)."""
        ...

    def deliver(self, journal_id: str, window: WindowContent, deadline: float) -> bool:
        """Take a sealed window (of the journal `journal_id`): True once its usage is
        delivered or safe elsewhere (its file may go), False when it is neither (the window
        is kept for a later try)."""
        ...

    def drain(self, deadline: float) -> bool:
        """Send what waits, at the budget's pace; True when nothing is left unsafe."""
        ...


@dataclass
class _Sealed:
    journal_id: str
    content: WindowContent
    path: Path | None  # its file (None: in memory, or a dead journal's handled apart)
    since_ns: int | None = None  # Unix ns of its first usage


class Recorder:
    """Usage of one tracker: thread-safe; one per process after a fork (`after_fork_in_child`)."""

    def __init__(
        self,
        sink: WindowSink,
        *,
        directory: Path | None,
        owner: str,
        report: Reporter,
        durable: bool = False,
        max_routes: int = 100_000,
        resource: dict[str, str] | None = None,
    ) -> None:
        self.sink = sink
        self.max_routes = max_routes
        self.directory = directory
        self.owner = owner
        self.report = report
        self.durable = durable
        self._lock = threading.Lock()
        self._seal_lock = threading.Lock()  # taking windows to seal; add() never waits for it
        self._recover_lock = threading.Lock()  # one recovery at a time
        self._journal = Journal(directory, owner)
        self.resource = dict(resource or {})
        self._open = self._window(0)
        self._open_since: int | None = None  # Unix ns of the open window's first usage
        self._undelivered: list[_Sealed] = []
        self._disk_trouble = False
        self._extended_reported = -1  # the window whose extension was last reported
        self._folds: dict[tuple[str, str | None], int | float] = {}  # this window's folded usage
        self._fold_count = 0
        self._folded_routes: set[int] = set()  # this window's attribution sets folded
        self.stats: dict[str, int] = {
            "recorded": 0, "records": 0, "windows_sealed": 0, "events_sealed": 0,
            "windows_extended": 0, "windows_recovered": 0, "events_recovered": 0,
            "dropped": 0, "folded": 0,
        }  # fmt: skip

    def __repr__(self) -> str:
        return f"Recorder({self._journal!r})"

    def _window(self, number: int) -> WindowContent:
        return WindowContent(number, time.time_ns(), self.resource)

    # --- recording: the hot path ---

    def add(self, route: Route, quantity: int | float) -> None:
        """Add `quantity` to `route` in the open window, on disk before this returns."""
        with self._lock:
            window = self._open
            sums = window.sums
            total = sums.get(route)
            if total is None and len(sums) >= self.max_routes and route.folded is not None:
                self._fold(route, quantity)
                route = route.folded
                total = sums.get(route)
            sums[route] = quantity if total is None else total + quantity
            self.stats["recorded"] += 1
            if self._open_since is None:
                self._open_since = time.time_ns()
            if self._disk_trouble or self.directory is None:
                return
            try:
                self._journal.add(window, route, quantity)
                self._journal.compact_if_large(window)
            except OSError as exc:
                self._trouble(exc)

    def add_record(self, fields: dict[str, Any]) -> None:
        """A usage record with its own identity (its fields checked, its id fixed)."""
        with self._lock:
            window = self._open
            window.records.append(fields)
            self.stats["records"] += 1
            if self._open_since is None:
                self._open_since = time.time_ns()
            full = len(window.records) >= MAX_RECORDS_PER_WINDOW
            if not (self._disk_trouble or self.directory is None):
                try:
                    self._journal.record(window, fields)
                except OSError as exc:
                    self._trouble(exc)
        if full:
            self.seal(deadline=time.monotonic(), force=True)

    def waiting_since(self) -> int | None:
        """Unix ns of the oldest usage not yet handed to the sink (the open window's, or a
        sealed window's the sink could not take); None when there is none."""
        with self._lock:
            times = [self._open_since] + [sealed.since_ns for sealed in list(self._undelivered)]
        return min((t for t in times if t is not None), default=None)

    @property
    def pending(self) -> bool:
        """Anything recorded and not yet handed to the sink."""
        with self._lock:
            window = self._open
            return bool(window.sums or window.records or self._undelivered)

    # --- sealing ---

    def seal(self, *, deadline: float, force: bool = False) -> bool:
        """Hand what is due to the sink: windows sealed earlier that it could not take, then
        what waits in the sink (the spool's backlog), then the open window (when the budget
        has room for it, or `force`). True when nothing recorded is left unsafe: delivered,
        in the spool, or still open in the journal because of the budget.

        Seals overlap: the lock covers only taking the windows due; the sending runs
        outside it, so a flush that comes while another waits on Doow does not wait for
        that round trip (concurrent invocations of one process)."""
        with self._seal_lock:
            due, self._undelivered = self._undelivered, []
        ok = self._deliver_all(due, deadline)
        ok = self.sink.drain(deadline) and ok  # the backlog first: oldest goes first
        if not ok:
            return False
        with self._seal_lock:
            with self._lock:
                window = self._open
                empty = not (window.sums or window.records)
                events = 0 if empty else stream_count(window)
            if empty:
                return True
            if not (force or self.sink.may_seal(events, deadline)):
                self._extended(window, events)
                return True
            sealed = self._seal_open()
        return self._deliver_all([sealed], deadline, fresh=True)

    def _deliver_all(self, windows: list[_Sealed], deadline: float, fresh: bool = False) -> bool:
        """Hand each window to the sink, oldest first; those it does not take wait for the
        next seal (in order)."""
        for index, sealed in enumerate(windows):
            if fresh:
                self.stats["windows_sealed"] += 1
                self.stats["events_sealed"] += stream_count(sealed.content)
            if not self._handed(sealed.journal_id, sealed.content, deadline):
                with self._seal_lock:
                    self._undelivered[:0] = windows[index:]
                    self._bound_undelivered()
                return False
            if sealed.path is not None:
                self._unlink(sealed.path)
        return True

    def _fold(self, route: Route, quantity: int | float) -> None:
        """Past the route limit: counted here, said once per window when it is sealed."""
        key = (route.metric, route.unit)
        self._folds[key] = self._folds.get(key, 0) + quantity
        self._fold_count += 1
        self._folded_routes.add(route.number)
        self.stats["folded"] += 1

    def _report_folds(
        self, folds: dict[tuple[str, str | None], int | float], count: int, series: int
    ) -> None:
        if not folds:
            return
        amounts = ", ".join(f"{quantity:g} {metric}" + (f" {unit}" if unit else "")
                            for (metric, unit), quantity in sorted(folds.items()))  # fmt: skip
        self.report(
            "folded",
            f"{counted(series, 'attribution set')} ({counted(count, 'usage call')}) in this "
            f"window came past its limit of {self.max_routes:,}; their usage ({amounts}) is "
            "billed to its license, metric and unit with the attribution folded to "
            "doow.folded=true (nothing is lost). Raise max_routes, or record fewer distinct "
            "attribution values",
            count=series,
        )

    def _seal_open(self) -> _Sealed:
        """The open window, closed: a new one takes what comes next (under _seal_lock)."""
        with self._lock:
            folds, self._folds = self._folds, {}
            fold_count, self._fold_count = self._fold_count, 0
            series, self._folded_routes = len(self._folded_routes), set()
            sealed = _Sealed(self._journal.id, self._open, None, self._open_since)
            self._open_since = None
            if self.directory is not None and not self._disk_trouble:
                sealed.path = self._journal.path(sealed.content.window)
                try:
                    self._journal.seal(durable=self.durable)
                except OSError as exc:
                    self._trouble(exc)
            self._open = self._window(sealed.content.window + 1)
        self._report_folds(folds, fold_count, series)
        return sealed

    def _handed(self, journal_id: str, window: WindowContent, deadline: float) -> bool:
        """The sink took the window; a sink that raises (a bug below) took nothing: the
        window is kept for the next seal, and that is said."""
        try:
            return self.sink.deliver(journal_id, window, deadline)
        except Exception as exc:
            self.report(
                "network",
                f"a window of usage was kept for the next flush: handing it on failed "
                f"({type(exc).__name__}: {exc})",
                count=stream_count(window),
            )
            return False

    def _bound_undelivered(self) -> None:
        while len(self._undelivered) > MAX_UNDELIVERED_WINDOWS:
            lost = self._undelivered.pop(0)
            if lost.path is None:  # on disk it waits for a successor: not lost
                self._dropped(stream_count(lost.content), "more undelivered windows than kept")

    def _extended(self, window: WindowContent, events: int) -> None:
        """Said once per window: the budget has no room, so the window grows."""
        self.stats["windows_extended"] += 1
        if self._extended_reported == window.window:
            return
        self._extended_reported = window.window
        budget = self.sink.budget()
        self.report(
            "rate_limited",
            f"this window's usage makes {counted(events, 'event')} and Doow's event budget"
            f"{f' ({budget})' if budget else ''} has no room for it now; the window stays "
            "open and the "
            "next minutes' usage joins it (nothing is lost; it goes as one event per "
            "stream when the budget allows). To send fewer events: a longer window "
            "(flush_interval), fewer attribution keys or licenses per window, or the "
            "collector gateway for a fleet (docs/collector.md)",
            count=events,
        )

    # --- recovery of dead processes' journals ---

    def recover(self, deadline: float) -> bool:
        """Seal and deliver the windows of dead processes' journals on this spool; True
        when none is left."""
        if self.directory is None:
            return True
        with self._recover_lock:
            done = True
            for dead in dead_journals(self.directory, self.owner, self._journal.id):
                try:
                    left = self._recover_one(dead.id, dead.windows, deadline)
                except OSError as exc:
                    logger.warning("doow: could not recover journal %s: %s", dead.id, exc)
                    left = True
                if left:
                    dead.let_go()
                    done = False
                else:
                    dead.release()
            return done

    def _recover_one(self, journal_id: str, windows: list[Path], deadline: float) -> bool:
        """True when some window is left undelivered."""
        routes: dict[int, Route] = {}
        for path in windows:
            content = read_window(path, routes)
            if not content.intact:
                logger.warning("doow: the journal %s ends torn (power loss?): recovered "
                               "what checks", path.name)  # fmt: skip
            if not self._handed(journal_id, content, deadline):
                return True
            self._unlink(path)
            self.stats["windows_recovered"] += 1
            self.stats["events_recovered"] += stream_count(content)
        return False

    # --- process life ---

    def close(self, *, unsent: str) -> None:
        """Close the journal. Sealed windows the sink did not take and that are not on disk
        (no spool directory, or a journal that could not be written) end with this
        process: they are counted and reported as dropped, with their quantities and
        `unsent` (why the sink did not take them)."""
        with self._lock:
            self._journal.close()
        with self._seal_lock:
            lost = [sealed.content for sealed in self._undelivered if sealed.path is None]
        if lost:
            self._dropped(
                sum(stream_count(window) for window in lost),
                f"{unsent}, and with no journal on disk they end with this process "
                f"({_amounts(lost)})",
            )

    def after_fork_in_child(self) -> None:
        """The child records on its own: what the parent recorded is the parent's."""
        self._lock = threading.Lock()
        self._seal_lock = threading.Lock()
        self._recover_lock = threading.Lock()
        self._journal.forget_after_fork()
        self._open = self._window(0)
        self._open_since = None
        self._undelivered = []

    def restart_journal(self) -> None:
        """A new journal identity from here on (a restored snapshot: every copy of the
        process must name its windows apart)."""
        with self._lock:
            self._journal.forget_after_fork()
            self._open = self._window(0)
            self._open_since = None

    # --- troubles ---

    def _trouble(self, exc: OSError) -> None:
        """The journal cannot be written: go on in memory (reported once)."""
        self._disk_trouble = True
        self.report(
            "dropped",
            f"usage journal problem: {exc.strerror or exc}; usage recorded from now on is kept "
            "in memory until it is sealed (it would not survive the process's death)",
        )

    def _unlink(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("doow: could not remove journal file %s: %s", path.name, exc)

    def _dropped(self, count: int, why: str) -> None:
        self.stats["dropped"] += count
        self.report("dropped", f"{count} usage event{'s' if count != 1 else ''} dropped: {why}",
                    count=count)  # fmt: skip


def _amounts(windows: list[WindowContent]) -> str:
    """What the windows hold, in the usage's own units: "7 api_calls, 1,024 tokens tokens"
    (and the usage records, counted)."""
    sums: dict[tuple[str, str | None], int | float] = {}
    records = 0
    for window in windows:
        records += len(window.records)
        for route, total in window.sums.items():
            key = (route.metric, route.unit)
            sums[key] = sums.get(key, 0) + total
    parts = [f"{total:,g} {metric}" + (f" {unit}" if unit else "")
             for (metric, unit), total in sorted(sums.items(), key=str)]  # fmt: skip
    if records:
        parts.append(f"{records} usage record{'s' if records != 1 else ''}")
    return ", ".join(parts)


class DoowSink:
    """Sealed windows to Doow: their events (one per stream) into the spool, then sent at
    the budget's pace. The budget has room for a window when the pacer holds enough for
    its events and Doow is taking batches (during an outage windows grow instead of piling
    up in the spool)."""

    def __init__(self, client: DoowClient) -> None:
        self.client = client
        self._lost = 0  # events dropped since the last take_failures(): the flush says False
        self._lock = threading.Lock()

    def budget(self) -> str:
        pacer = self.client.pacer
        return (
            f"{pacer.events_per_minute:,.0f} events a minute for this sender, "
            f"{pacer.in_window():,} sent in the last minute"
        )

    def may_seal(self, events: int, deadline: float) -> bool:
        """Room by the deadline, not only now: the pacer counts Doow's minute a little longer
        than the window clock's (`pacing.WINDOW_SECONDS`), so at a window boundary the last
        window's events still count for a second or two; the send waits for them to age
        out (a window kept open a whole minute longer for that would halve the windows of
        a service that uses most of the budget)."""
        if self.client.unreachable:
            return False
        return time.monotonic() + self.client.pacer.wait(events) < deadline

    def deliver(self, journal_id: str, window: WindowContent, deadline: float) -> bool:
        events, dropped = window_events(journal_id, window)
        if dropped:
            self.client.report(
                "dropped",
                f"{counted(dropped, 'usage record')} in the journal no longer valid",
                count=dropped,
            )
        if not events or self.client.disabled:
            return True
        # into the spool first, then sent (at the budget's pace) within the deadline; with
        # no spool the window stays (in memory) until all of it is sent. What Doow refused
        # for good (or a full spool dropped) is settled: reported, counted, never resent.
        result = self.client.send(events, deadline=deadline, caller_keeps=True)
        self._count_lost(result.dropped)
        return result.returned == 0

    def drain(self, deadline: float) -> bool:
        if not self.client.disabled and self.client.pending_events():
            self._count_lost(self.client.flush_spool(deadline=deadline).dropped)
        return True

    def _count_lost(self, events: int) -> None:
        with self._lock:
            self._lost += events

    def use_client(self, client: DoowClient) -> None:
        """Send with `client` from now on (a forked child's, a restored snapshot's)."""
        self.client = client
        self._lock = threading.Lock()
        self._lost = 0

    def after_fork_in_child(self, client: DoowClient) -> None:
        self.use_client(client)

    def take_failures(self) -> int:
        """Events dropped since the last call (the tracker's flush then says False)."""
        with self._lock:
            lost, self._lost = self._lost, 0
        return lost
