"""The flush core: what the wrappers need of whatever holds the usage, and the flush itself.

The wrappers depend on `Flushable` only: `DoowTracker` implements it, and so does
`GlobalProviders`, the adapter for apps that use plain OpenTelemetry with the Doow
exporters (the global MeterProvider, TracerProvider and LoggerProvider).

A flush runs on one background thread and the caller waits for at most its budget,
so an export still in flight (a periodic export to a slow server, say) cannot hold the
handler past its deadline. Concurrent invocations in one process (Lambda managed
instances, an ASGI server) share flushes: every flush asked for while one runs is served
by the next one, together (one seal, one request), so none waits for another's round
trip after its own. The budget reaches the Doow exporters as a deadline in a
`ContextVar` (`doow_otel.delivery.deadline.within`): the SDK's `force_flush` exports
on the calling thread, which here is the flush thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Protocol

from doow_otel.delivery.deadline import within

__all__ = [
    "DEFAULT_FLUSH_TIMEOUT",
    "DEFAULT_SAFETY_MARGIN",
    "Flushable",
    "GlobalProviders",
    "budget",
    "flush",
    "flush_async",
    "target",
]

logger = logging.getLogger("doow_otel")

DEFAULT_FLUSH_TIMEOUT = 2.0
"""Seconds a flush may take at most, whatever time the invocation has left."""
DEFAULT_SAFETY_MARGIN = 0.1
"""Seconds kept free before the invocation's deadline, for the runtime to post the response."""
LOCAL_WORK_SECONDS = 0.5
"""What collecting and journaling may take even when the budget is spent (no network then)."""
FINISH_SECONDS = 0.05
"""Of the budget, what is kept after the last request to spool what it did not deliver."""


class Flushable(Protocol):
    """What holds an invocation's usage, as the serverless wrappers see it."""

    @property
    def route(self) -> str | None:
        """'collector' when usage is pushed to a collector (the Lambda extension), else
        'doow' (None: not known, as with the global providers)."""
        ...

    @property
    def collector_endpoint(self) -> str | None:
        """The collector's OTLP endpoint with route 'collector' (None: OTEL_EXPORTER_OTLP_*)."""
        ...

    def needs_flush(self) -> bool:
        """False when nothing was recorded since the last flush: the flush is skipped."""
        ...

    def flush(self, timeout: float | None = None) -> bool:
        """Export within `timeout` seconds; True when nothing was lost."""
        ...

    def begin_invocation(self) -> None:
        """A wrapped invocation starts: hold early flushes until it ends."""
        ...

    def end_invocation(self) -> None: ...


class GlobalProviders:
    """`Flushable` for the global MeterProvider, TracerProvider and LoggerProvider."""

    route: str | None = None
    collector_endpoint: str | None = None

    def needs_flush(self) -> bool:
        return True  # what they hold is not known without a flush

    def flush(self, timeout: float | None = None) -> bool:
        from opentelemetry import metrics, trace
        from opentelemetry._logs import get_logger_provider

        ok = True
        millis = int((timeout if timeout is not None else DEFAULT_FLUSH_TIMEOUT) * 1000)
        for provider in (
            metrics.get_meter_provider(),
            trace.get_tracer_provider(),
            get_logger_provider(),
        ):
            force_flush = getattr(provider, "force_flush", None)
            if force_flush is not None:
                ok = bool(force_flush(millis)) and ok
        return ok

    def begin_invocation(self) -> None:
        return None

    def end_invocation(self) -> None:
        return None


_GLOBAL = GlobalProviders()


def target(tracker: Flushable | None) -> Flushable:
    """The tracker given to a wrapper, else the global providers."""
    return _GLOBAL if tracker is None else tracker


def budget(remaining: float | None, flush_timeout: float, safety_margin: float) -> float:
    """Seconds a flush may take: at most `flush_timeout`, and `safety_margin` before the end."""
    if remaining is None:
        return flush_timeout
    return max(0.0, min(flush_timeout, remaining - safety_margin))


def flush(budget: float = DEFAULT_FLUSH_TIMEOUT, *, tracker: Flushable | None = None) -> bool:
    """Flush within `budget` seconds; True when everything went out. Never raises."""
    job = _start(budget, target(tracker))
    if job is None:
        return True
    try:
        return job.future.result(timeout=job.left())
    except FutureTimeout:
        return _late(job)


async def flush_async(
    budget: float = DEFAULT_FLUSH_TIMEOUT, *, tracker: Flushable | None = None
) -> bool:
    """`flush()` for coroutines: the event loop runs on while the flush does."""
    job = _start(budget, target(tracker))
    if job is None:
        return True
    try:
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(job.future)), job.left())
    except asyncio.TimeoutError:
        return _late(job)


@dataclass(frozen=True)
class _Job:
    budget: float
    deadline: float  # time.monotonic()
    future: Future[bool]

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


def _start(budget: float, flushable: Flushable) -> _Job | None:
    if not flushable.needs_flush():
        return None  # nothing tracked this invocation: a check, no I/O
    budget = max(0.0, budget)
    deadline = time.monotonic() + budget
    return _Job(budget, deadline, _flusher.submit(flushable, deadline))


def _flush_now(deadline: float, flushable: Flushable) -> bool:
    # The Doow exporters send nothing past the network deadline, a little before the
    # caller stops waiting: time to keep what was not delivered on disk, and answer.
    # Collecting and journaling may take longer than the budget (then unwaited for),
    # so that what misses the deadline is at least on disk.
    left = max(0.0, deadline - time.monotonic())
    timeout = max(left, LOCAL_WORK_SECONDS)
    try:
        with within(deadline - min(FINISH_SECONDS, left / 4)):
            return flushable.flush(timeout=timeout)
    except Exception:
        logger.exception("doow: flush failed")
        return False


def _late(job: _Job) -> bool:
    logger.warning(
        "doow: flush not done within its %.0f ms budget; it goes on in the background and "
        "what it cannot deliver stays in the spool for a later flush",
        job.budget * 1000,
    )
    return False


class _Flusher:
    """Runs flushes off the caller's thread. A dispatcher takes the flushes asked for and
    starts a round for all of them at once (one seal and one request per holder of the
    usage, to the latest of their deadlines: each caller still waits only for its own
    budget). At most `ROUNDS` rounds run at a time: a flush asked for while one waits on
    Doow starts the next round at once, rather than waiting for that round trip."""

    ROUNDS = 2

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Flushable, float, Future[bool]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(self.ROUNDS)
        self.rounds = 0  # rounds run (fewer than flushes asked for when invocations overlap)

    def submit(self, flushable: Flushable, deadline: float) -> Future[bool]:
        future: Future[bool] = Future()
        self._jobs.put((flushable, deadline, future))
        if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._slots = threading.Semaphore(self.ROUNDS)
                    self._thread = threading.Thread(
                        target=self._dispatch, name="doow-invocation-flush", daemon=True
                    )
                    self._thread.start()
        return future

    def _dispatch(self) -> None:
        while True:
            waiting = [self._jobs.get()]
            self._slots.acquire()  # a round ends: the flushes asked for meanwhile go together
            with contextlib.suppress(queue.Empty):
                while True:
                    waiting.append(self._jobs.get_nowait())
            groups: dict[int, list[tuple[Flushable, float, Future[bool]]]] = {}
            for job in waiting:
                groups.setdefault(id(job[0]), []).append(job)
            self.rounds += 1
            round_ = threading.Thread(
                target=self._round, args=(list(groups.values()),), name="doow-flush-round"
            )
            round_.daemon = True
            round_.start()

    def _round(self, groups: list[list[tuple[Flushable, float, Future[bool]]]]) -> None:
        try:
            for jobs in groups:
                for _, _, future in jobs:
                    future.set_running_or_notify_cancel()
                try:
                    result = _flush_now(max(d for _, d, _ in jobs), jobs[0][0])
                except BaseException as exc:  # _flush_now reports its own errors: a backstop
                    for _, _, future in jobs:
                        future.set_exception(exc)
                    continue
                for _, _, future in jobs:
                    future.set_result(result)
        finally:
            self._slots.release()


_flusher = _Flusher()
