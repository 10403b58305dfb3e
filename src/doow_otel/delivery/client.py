"""`DoowClient`: delivers usage events to Doow's ingest API, exactly once, within a deadline.

The client only orchestrates: journal each batch to the spool, post it, act on the
answer as `doow_otel.delivery.status` decides (the table shared with the Go exporter), unjournal.

- Delivered (Doow's JSON acknowledgement): done; 207 rejections are reported, never resent.
- Retry (408, 429, 5xx, timeouts, dropped connections): exponential backoff with full
  jitter, or the wait Doow asks for. A batch that keeps getting 5xx answers does not
  block the queue: a replay that finds its head undelivered tries the next entry (two
  undelivered in a row: Doow is not taking data, stop). Each send in which the batch got
  a 5xx while Doow was taking this client's other batches counts as a failed attempt
  (kept with the entry, across processes; an outage counts nothing); after
  `max_attempts`, or at a 5xx once older than `max_age`, it is set aside under
  `<spool>/set-aside/` and reported.
- Split (413): the halves are sent. Reject (400, other 4xx): reported, set aside, never resent.
- Keep, auth (401/403): sending with this key stops (latched) but recovers: one probe
  request per `auth_probe_interval` seconds, and `set_api_key()` clears the latch at once.
- Keep, endpoint (redirects, never followed since they would carry the key elsewhere; 404;
  a 2xx that is not Doow's acknowledgement): reported as a configuration error, kept.

The deadline is a hard bound on wall-clock time: each request runs on a worker thread
(reused from one request to the next) and is abandoned (its connections closed) when the
deadline passes, so a server trickling its answer a byte at a time, or a name lookup that
hangs, cannot hold the caller. Whatever is not delivered by the
deadline stays in the spool (written ahead of the first attempt) and is replayed,
oldest first and with the same ids, by the next send. The spool holds only this
endpoint's and key's entries (see `doow_otel.delivery.spool`).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from doow_otel._version import __version__
from doow_otel.delivery.config import Settings, key_problem
from doow_otel.delivery.deadline import resolve_deadline
from doow_otel.delivery.pacing import Pacer
from doow_otel.delivery.reports import Redactor, Reporter
from doow_otel.delivery.spool import Spool
from doow_otel.delivery.status import Decision, Rejection, decide, transport_failure
from doow_otel.delivery.wire import Batch, compress, make_batches, without_measurement
from doow_otel.errors import ConfigurationError, ErrorKind, ErrorReport, TransportError, counted
from doow_otel.model.event import UsageEvent

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from doow_otel.delivery.transport.base import Answer, Transport

__all__ = ["DoowClient", "Rejection", "SendResult"]

USER_AGENT = f"doow-otel-python/{__version__}"
logger = logging.getLogger("doow_otel")
BACKOFF_BASE = 0.1
BACKOFF_CAP = 5.0
MIN_ATTEMPT_SECONDS = 0.01
UP_EVIDENCE_SECONDS = 300.0  # a delivery this recent shows Doow is up (see _exhausted)


class _Default(Enum):
    SPOOL = "default spool directory"


DEFAULT_SPOOL = _Default.SPOOL


@dataclass
class SendResult:
    """What became of the events of one `send` (including replayed spool entries).

    `dropped`: Doow refused them (a copy is set aside on disk) or there was nowhere to keep
    them. `set_aside`: Doow kept failing on them; on disk under `set-aside/`, not retried.
    `paced`: of `spooled`, the events kept because Doow's event budget had no room for them
    by the deadline (they go at its pace with a later send). `returned`: with no spool and
    `send(..., caller_keeps=True)`, the events not delivered, which the caller keeps.
    """

    delivered: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    spooled: int = 0
    dropped: int = 0
    replayed: int = 0  # of `delivered`, how many came from the spool
    skipped: int = 0  # sending disabled (DOOW_TRACK_DISABLED)
    set_aside: int = 0
    paced: int = 0
    returned: int = 0

    @property
    def ok(self) -> bool:
        return not (
            self.rejected or self.spooled or self.dropped or self.set_aside or self.returned
        )

    def add(self, other: SendResult) -> None:
        self.delivered += other.delivered
        self.rejected.extend(other.rejected)
        self.spooled += other.spooled
        self.dropped += other.dropped
        self.replayed += other.replayed
        self.skipped += other.skipped
        self.set_aside += other.set_aside
        self.paced += other.paced
        self.returned += other.returned


_KEPT_PRECEDENCE = ("network", "rate_limited", "timeout")
"""Of the reasons one send kept batches for, the one its report is filed under."""


@dataclass
class _Round:
    """One send: its deadline, whether the answers so far say to stop sending, and what it
    kept in the spool and why (said once, when the send ends: a flush whose batches all
    miss the deadline is one report, not one per batch)."""

    end: float
    caller_keeps: bool = False  # no spool: what is not delivered is the caller's to keep
    stop: bool = False
    kept: dict[str, tuple[ErrorKind, int]] = field(default_factory=dict)  # why -> kind, events
    rate_limit_said: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def keep(self, kind: ErrorKind, why: str, events: int) -> None:
        with self.lock:
            _, held = self.kept.get(why, (kind, 0))
            self.kept[why] = (kind, held + events)

    def report_kept(self, report: Reporter, spooled: bool) -> None:
        where = (
            "kept in the spool, sent again by a later send"
            if spooled
            else "kept in memory, sent again by the next flush"
            if self.caller_keeps
            else "not delivered"
        )
        with self.lock:
            kept, self.kept = self.kept, {}
        if not kept:
            return
        events = sum(n for _, n in kept.values())
        kinds = {kind for kind, _ in kept.values()}
        kind = next(k for k in (*_KEPT_PRECEDENCE, *sorted(kinds)) if k in kinds)
        report(kind, f"{counted(events, 'event')} {where}: " + "; ".join(kept), count=events)


@dataclass
class _Journaled:
    """A batch and where it waits: its spool entry (None: no spool), age and failed attempts."""

    batch: Batch
    path: Path | None
    created_ns: int | None = None
    attempts: int = 0


class DoowClient:
    """Sends usage events to Doow.

    One HTTP connection pool, opened on first use and reused by every later send
    (warm serverless invocations pay no new handshake). Thread-safe: sends run side by
    side, each batch held by the one sending it (a replay never races a send of it).
    `transport` (any `doow_otel.delivery.transport.base.Transport`) replaces the network;
    `close()` closes it.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        endpoint: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 5,
        max_in_flight: int = 4,
        spool: Spool | str | Path | None | _Default = DEFAULT_SPOOL,
        on_error: Callable[[ErrorReport], None] | None = None,
        allow_insecure: bool = False,
        disabled: bool | None = None,
        transport: Transport | None = None,
        max_attempts: int = 20,
        max_age: float = 24 * 3600.0,
        auth_probe_interval: float = 30.0,
        events_per_minute: int | None = None,
        durable: bool = False,
    ) -> None:
        settings = Settings.resolve(api_key=api_key, endpoint=endpoint, disabled=disabled)
        self.disabled = settings.disabled
        self.endpoint = settings.endpoint
        self.timeout = timeout
        self.max_retries = max_retries
        if max_in_flight < 1:
            raise ConfigurationError("max_in_flight: must be at least 1 (1: one batch at a time)")
        if max_attempts < 1:
            raise ConfigurationError("max_attempts: must be at least 1 (default 20)")
        self.max_in_flight = max_in_flight
        self.durable = durable  # fsync each spool entry before its first request
        self.max_attempts = max_attempts
        self.max_age = max_age
        self.auth_probe_interval = auth_probe_interval
        key = settings.api_key
        problem = settings.problem(allow_insecure=allow_insecure)  # None when disabled
        if problem:
            raise ConfigurationError(problem)
        self._key = key or ""
        self.report = Reporter(on_error, Redactor(key))
        if spool is DEFAULT_SPOOL:
            spool = Spool()
        elif isinstance(spool, (str, Path)):
            spool = Spool(spool)
        self.spool: Spool | None = spool
        if self.spool is not None:
            self.spool.bind(self.endpoint, self._key, report=self.report)
        if events_per_minute is not None and events_per_minute < 1:
            raise ConfigurationError(
                "events_per_minute: must be at least 1 (Doow's budget is 1,000 a minute per "
                "organization; leave it unset to learn it from Doow's answers)"
            )
        # processes sharing a spool directory and a key pace as one sender
        self.pacer = Pacer(
            events_per_minute or settings.events_per_minute,
            state_file=self.spool.budget_file() if self.spool is not None else None,
        )
        self._given = transport  # closed by close() only, never replaced
        self._own: Transport | None = None  # HTTPTransport, made on first use
        self._workers = _Workers()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._wake = threading.Event()
        self._auth_latched = False
        self._next_probe = 0.0
        self._endpoint_reported = False
        self._last_delivery = float("-inf")  # monotonic time of the last delivery
        self._last_failure = float("-inf")  # ... of the last request Doow did not answer usably
        self._stats: dict[str, int] = {
            "sent": 0, "delivered": 0, "rejected": 0, "spooled": 0, "dropped": 0,
            "replayed": 0, "requests": 0, "retries": 0, "set_aside": 0, "abandoned": 0,
            "paced": 0, "rate_limited": 0, "resent_measurements": 0, "refused": 0,
        }  # fmt: skip

    def __repr__(self) -> str:
        return f"DoowClient(endpoint={self.endpoint!r}, spool={self.spool!r})"

    # --- public API ---

    def send(
        self,
        events: Iterable[UsageEvent],
        *,
        deadline: float | None = None,
        timeout: float | None = None,
        caller_keeps: bool = False,
    ) -> SendResult:
        """Deliver `events` (after any spooled batches); returns by the deadline whatever happens.

        `caller_keeps`: with no spool, what is not delivered is returned (`SendResult.returned`)
        for the caller to send again (a tracker's window in memory), not dropped.

        `timeout` is seconds from now; `deadline` the same as a `time.monotonic()` value (one
        that is clearly not, say a `time.time()` timestamp, is a ConfigurationError). With
        neither, the client's `timeout` applies. Never raises for delivery problems.
        """
        end = resolve_deadline(deadline, timeout, self.timeout)
        events = list(events)
        if self.disabled:
            return SendResult(skipped=len(events))
        sending = _Round(end, caller_keeps=caller_keeps)
        try:
            return self._send(events, sending)
        finally:
            sending.report_kept(self.report, spooled=self.spool is not None)

    def _send(self, events: list[UsageEvent], sending: _Round) -> SendResult:
        result = SendResult()
        # Sends run side by side (concurrent invocations, a flush beside the window clock):
        # each batch is held (Spool.claim) while it is sent, so no two sends offer it.
        self._replay(sending, result)
        # Journal every batch before the first request: a process killed mid-send leaves
        # them all in the spool for the next one.
        work = [self._journal(batch) for batch in make_batches(events)]
        self._count(sent=len(events))
        if len(work) > 1 and self.max_in_flight > 1:
            # Several batches: keep up to max_in_flight requests going at once on the
            # pooled connections (a bulk send is not one round trip per batch).
            pool, futures = self._executor(), []
            for item in work:
                try:
                    futures.append(pool.submit(self._deliver_part, item, sending))
                except RuntimeError:  # the interpreter is exiting (an atexit export):
                    result.add(self._deliver_part(item, sending))  # no new threads
            for future in futures:
                result.add(future.result())
        else:
            for item in work:
                self._deliver_fresh(item, sending, result)
        return result

    def flush_spool(
        self, *, deadline: float | None = None, timeout: float | None = None
    ) -> SendResult:
        """Replay spooled batches only."""
        return self.send((), deadline=deadline, timeout=timeout)

    def pending_events(self) -> int:
        """Events waiting in the spool for this endpoint and key."""
        return self.spool.pending_events() if self.spool is not None else 0

    @property
    def unreachable(self) -> bool:
        """Doow is not taking batches: this client's last request got no usable answer (a
        transport failure, a timeout, a 5xx) and nothing was delivered since."""
        return self._last_failure > self._last_delivery

    def set_api_key(self, api_key: str) -> None:
        """Rotate the key: spooled usage moves to the new key and any auth latch clears."""
        problem = key_problem(api_key)
        if problem:
            raise ConfigurationError(problem)
        with self._lock:
            self.report.redact.add(api_key)
            if self.spool is not None:
                self.spool.rebind(self.endpoint, api_key)
            self._key = api_key
            with self._state_lock:
                self._auth_latched = False

    def adopt_spooled(
        self, *, endpoint: str | None = None, api_key: str | None = None, unowned: bool = False
    ) -> int:
        """Send spooled usage of another endpoint or key (say, after fixing a wrong endpoint
        or rotating the key across a restart) with this client's; returns the batches taken.

        The spool never does this on its own: usage written for a test server must never
        reach production. `unowned=True` takes the entries of doow-otel versions that did not
        record an owner. Omitted, `endpoint` and `api_key` default to this client's.
        """
        if self.spool is None:
            return 0
        with self._lock:
            if unowned:
                return self.spool.adopt(None, None)
            return self.spool.adopt(endpoint or self.endpoint, api_key or self._key)

    def heartbeat(self, *, timeout: float | None = None) -> bool:
        """`POST /telemetry/heartbeat`: True when Doow accepts the key."""
        if self.disabled:
            return False
        url = f"{self.endpoint}/telemetry/heartbeat"
        try:
            answer = self._transport().post(
                url, b"{}", self._headers(None), timeout or self.timeout
            )
        except Exception as exc:
            self.report("network", f"heartbeat failed: {self._describe(exc)}")
            return False
        if answer.status in (401, 403):
            self._latch_auth(f"HTTP {answer.status}", 0)
        return answer.status == 200

    def stats(self) -> dict[str, int]:
        """Counters since the client was made (events unless named otherwise).

        sent, delivered, rejected (207), spooled (kept for later), dropped (refused by Doow,
        or no spool), refused (of dropped: in batches Doow refused, 400 or other 4xx),
        replayed (delivered from the spool), set_aside (Doow kept failing on them),
        rate_limited (429 answers), dropped_spool_full (the oldest entries of a full spool
        or memory journal), requests, retries, abandoned (requests cut at the deadline);
        auth_latched (0/1), pending_in_spool and other_owners_in_spool (batches); not_billed
        and not_billed:<reason> (usage records the exporters could not bill, per reason).
        """
        with self._state_lock:
            stats = dict(self._stats)
            stats["auth_latched"] = int(self._auth_latched)
        spool = self.spool
        stats["pending_in_spool"] = len(spool) if spool is not None else 0
        stats["dropped_spool_full"] = spool.dropped_full if spool is not None else 0
        stats["other_owners_in_spool"] = spool.others() if spool is not None else 0
        stats.update(self.report.not_billed_stats())  # usage the exporters could not bill
        return stats

    def close(self) -> None:
        self._wake.set()
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None
            self._workers.close()
            with self._state_lock:
                transports, self._own = [self._own, self._given], None
            for transport in transports:
                if transport is not None:
                    transport.close()

    def __enter__(self) -> DoowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- orchestration: journal, send, unjournal ---

    def _replay(self, sending: _Round, result: SendResult) -> None:
        if self.spool is None:
            return
        kept = 0
        for path in self.spool.oldest():
            if time.monotonic() >= sending.end or sending.stop or self._waiting_for_probe():
                return
            lease = self.spool.claim(path)
            if lease is None:
                continue  # another process sharing the spool is sending it now
            with lease:
                entry = self.spool.load(path)
                if entry is None:
                    continue
                part = SendResult()
                item = _Journaled(entry.batch, path, entry.created_ns, entry.attempts)
                self._deliver(item, sending, part, fresh=False)
            part.replayed = part.delivered
            self._count(replayed=part.delivered)
            result.add(part)
            # One entry kept: try the next (a batch Doow fails on must not block the ones
            # behind it). Two in a row: Doow is not taking data now; keep the order, stop.
            kept = kept + 1 if part.spooled else 0
            if kept >= 2:
                return

    def _journal(
        self, batch: Batch, created_ns: int | None = None, attempts: int = 0
    ) -> _Journaled:
        """Write the batch ahead of its first attempt (path None: no spool configured)."""
        if self.spool is None:
            return _Journaled(batch, None)
        created_ns = created_ns or time.time_ns()
        path = self.spool.write(
            batch, durable=self.durable, created_ns=created_ns, attempts=attempts
        )
        return _Journaled(batch, path, created_ns, attempts)

    def _unjournal(self, item: _Journaled) -> None:
        if item.path is not None and self.spool is not None:
            self.spool.remove(item.path)

    def _deliver_part(self, item: _Journaled, sending: _Round) -> SendResult:
        part = SendResult()
        self._deliver_fresh(item, sending, part)
        return part

    def _deliver_fresh(
        self, item: _Journaled, sending: _Round, result: SendResult, fresh: bool = True
    ) -> None:
        """A batch journaled by this send: held while sent (see `Spool.claim`)."""
        if item.path is None or self.spool is None:
            self._deliver(item, sending, result, fresh=fresh)
            return
        lease = self.spool.claim(item.path)
        if lease is None:  # another process's replay took it first: it sends it
            result.spooled += len(item.batch)
            return
        with lease:
            self._deliver(item, sending, result, fresh=fresh)

    def _deliver(self, item: _Journaled, sending: _Round, result: SendResult, fresh: bool) -> None:
        """Post one batch and act on the decision."""
        batch, count = item.batch, len(item.batch)
        decision, refused, paced = self._post_with_retries(batch, sending)
        action = decision.action if decision else "retry"
        if decision is not None and action == "split":
            halves = [self._journal(h, item.created_ns, item.attempts) for h in batch.halves()]
            self._unjournal(item)  # the halves hold it now
            for half in halves:
                self._deliver_fresh(half, sending, result, fresh)
        elif decision is not None and action == "delivered":
            self._last_delivery = time.monotonic()
            result.delivered += decision.accepted
            # Doow's reasons as received may echo the request (a proxy reflecting headers)
            rejected = tuple(
                Rejection(r.event_id, self.report.redact(r.reason), r.metric)
                for r in decision.rejected
            )
            result.rejected.extend(rejected)
            self._count(delivered=decision.accepted, rejected=len(rejected))
            again = self._rejected(batch, rejected)
            self._unjournal(item)
            if again is not None:  # journaled before the whole was given up
                self._deliver_fresh(again, sending, result, fresh)
        elif decision is not None and action == "reject":
            where = self._set_aside(item)
            self.report(
                "validation",
                f"Doow refused a batch of {counted(count, 'event')} ({decision.reason}); it is "
                f"never resent{where}",
                count=count,
                status=_status_of(decision.reason),
            )
            result.dropped += count
            self._count(dropped=count, refused=count)
        elif refused and self._exhausted(item):
            where = self._set_aside(item)
            self.report(
                "dropped",
                f"Doow kept failing on a batch of {counted(count, 'event')} ({refused}, "
                f"{counted(item.attempts, 'attempt')}); the batches behind it go on{where}",
                count=count,
            )
            result.set_aside += count
            self._count(set_aside=count)
        else:  # keep: undelivered by the deadline, paced, or an auth or endpoint problem
            if paced:
                result.paced += count
                self._count(paced=count if fresh else 0)
            self._keep(item, result, fresh, sending.caller_keeps)

    def _rejected(self, batch: Batch, rejections: tuple[Rejection, ...]) -> _Journaled | None:
        """Report Doow's rejections; where one names a metric of a packed event, its other
        measurements go again as a new event (rule R), journaled as a batch of their own."""
        if not rejections:
            return None
        events = dict(zip(batch.event_ids, batch.events, strict=True))
        again: list[tuple[str, bytes]] = []
        lines = []
        for rejection in rejections:
            rest = None
            if rejection.metric is not None and rejection.event_id in events:
                rest = without_measurement(events[rejection.event_id], rejection.metric)
            if rest is None:
                lines.append(f"event {rejection.event_id}: {rejection.reason}")
                continue
            body, event_id, quantity = rest
            again.append((event_id, body))
            lines.append(
                f"event {rejection.event_id}: its {rejection.metric} ({quantity}) "
                f"({rejection.reason}); its other measurements go again as event {event_id}"
            )
        count = len(rejections)
        self.report(
            "partial_accept",
            f"Doow rejected {count} of {counted(len(batch), 'event')}: "
            + "; ".join(lines[:5])
            + (f"; and {len(lines) - 5} more" if len(lines) > 5 else ""),
            count=count,
            status=207,
            rejections=tuple((r.event_id, r.reason) for r in rejections),
        )
        if not again:
            return None
        self._count(resent_measurements=len(again))
        return self._journal(Batch.of([i for i, _ in again], [b for _, b in again]))

    def _keep(self, item: _Journaled, result: SendResult, fresh: bool, caller_keeps: bool) -> None:
        count = len(item.batch)
        if (item.path is None or self.spool is None) and caller_keeps:
            result.returned += count
            return
        if item.path is None or self.spool is None:
            result.dropped += count
            self._count(dropped=count)
            self.report(
                "dropped",
                f"{counted(count, 'event')} not delivered and no spool configured",
                count=count,
            )
            return
        self.spool.make_durable(item.path)
        result.spooled += count
        self._count(spooled=count if fresh else 0)

    def _set_aside(self, item: _Journaled) -> str:
        if item.path is None or self.spool is None:
            return ""
        return "; " + self.spool.set_aside(item.path, len(item.batch))

    def _exhausted(self, item: _Journaled) -> bool:
        """After a send in which Doow answered 5xx to the batch: True when it should be set aside.

        The failure counts against the batch only while Doow is taking other batches from
        this client (one delivered within `UP_EVIDENCE_SECONDS`): an outage sets nothing
        aside. Past `max_age`, the batch is set aside at its next 5xx whatever the reason.
        """
        if item.path is None or self.spool is None:
            return False
        if time.monotonic() - self._last_delivery <= UP_EVIDENCE_SECONDS:
            item.path = self.spool.record_attempt(item.path)
            item.attempts += 1
        age = (time.time_ns() - (item.created_ns or time.time_ns())) / 1e9
        return item.attempts >= self.max_attempts or age >= self.max_age

    def _post_with_retries(
        self, batch: Batch, sending: _Round
    ) -> tuple[Decision | None, str, bool]:
        """The final decision for the batch, or None when it stays undelivered for now.

        The second value names the server's 5xx answer when that is why it stays undelivered
        (an answer about the batch; transport failures and 429 say nothing about it); the
        third is True when Doow's event budget has no room for the batch by the deadline
        (`doow_otel.delivery.pacing`).
        """
        body, encoding = compress(batch.body())
        attempt = 0
        refused = ""
        while True:
            if sending.stop or not self._may_send():
                return None, "", False
            wait = self.pacer.acquire(len(batch))
            if wait > 0:  # the budget's pace (or a 429's wait) holds it
                if time.monotonic() + wait >= sending.end - MIN_ATTEMPT_SECONDS:
                    logger.debug("doow (%d events): paced, kept for a later send", len(batch))
                    return None, refused, True
                if not self._sleep(wait):
                    return None, refused, True
                continue  # acquire again: another sender may have taken the room
            if sending.end - time.monotonic() < MIN_ATTEMPT_SECONDS:
                self.pacer.take(-len(batch))
                sending.keep("timeout", "the send's deadline came", len(batch))
                return None, refused, False
            decision = self._exchange(batch, body, self._headers(encoding), sending.end)
            if decision.action != "delivered":  # Doow took none of it: the budget is not spent
                self.pacer.take(-len(batch))
            if decision.action == "retry" and decision.reason != "HTTP 429":
                self._last_failure = time.monotonic()
            if decision.action != "retry":
                return self._settle(decision, len(batch), sending), "", False
            if decision.reason.startswith("HTTP 5"):
                refused = decision.reason
            retry_after = decision.retry_after
            if decision.reason == "HTTP 429":
                self.pacer.throttled(retry_after, decision.budget)
                self._count(rate_limited=1)
                budget = decision.budget
                named = (
                    f" (limit {budget.limit:.0f}, current {budget.current:.0f})"
                    if (
                        budget is not None
                        and budget.limit is not None
                        and budget.current is not None
                    )
                    else ""
                )
                with sending.lock:
                    said, sending.rate_limit_said = sending.rate_limit_said, True
                if not said:  # once per send: its other batches wait the same way
                    self.report(
                        "rate_limited",
                        f"Doow's event budget is spent{named}; this send's events wait "
                        f"{retry_after or 0:.0f}s and then go at the budget's pace "
                        f"({self.pacer.events_per_minute:.0f} events a minute for this sender)",
                        count=len(batch),
                        status=429,
                    )
                continue  # the pacer holds the next attempt for the wait
            logger.debug("doow (%d events), will retry: %s", len(batch), decision.reason)
            attempt += 1
            if attempt > self.max_retries:
                why = f"{counted(attempt, 'attempt')} failed ({decision.reason})"
                sending.keep("network", why, len(batch))
                return None, refused, False
            delay = (
                retry_after
                if retry_after is not None
                else random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))
            )
            if time.monotonic() + delay >= sending.end or not self._sleep(delay):
                why = f"{decision.reason}, and a retry would pass the send's deadline"
                sending.keep("timeout", why, len(batch))
                return None, refused, False
            self._count(retries=1)

    def _settle(self, decision: Decision, count: int, sending: _Round) -> Decision | None:
        """Record what a final answer says about the key and the endpoint."""
        if decision.problem == "auth":
            sending.stop = True
            self._latch_auth(decision.reason, count)
            return None
        if decision.problem == "endpoint":
            sending.stop = True
            if not self._endpoint_reported:
                self._endpoint_reported = True
                self.report(
                    "configuration",
                    f"endpoint: {self.endpoint} answered {decision.reason}: it is not Doow's "
                    "ingest API. Fix: set DOOW_TRACK_ENDPOINT (or endpoint=) to the API's base "
                    "URL alone, without a path, e.g. https://api.doow.co (redirects are never "
                    "followed: they would carry the API key elsewhere). "
                    f"{counted(count, 'event').capitalize()} kept in the spool.",
                    count=count,
                )
            return None
        with self._state_lock:
            self._auth_latched = False  # Doow took or judged the batch: the key works
        self._endpoint_reported = False
        return decision

    def _waiting_for_probe(self) -> bool:
        with self._state_lock:
            return self._auth_latched and time.monotonic() < self._next_probe

    def _may_send(self) -> bool:
        """False while the key is latched after 401/403, except for one probe per interval."""
        with self._state_lock:
            if not self._auth_latched:
                return True
            now = time.monotonic()
            if now < self._next_probe:
                return False
            self._next_probe = now + self.auth_probe_interval
            return True

    def _latch_auth(self, reason: str, count: int) -> None:
        with self._state_lock:
            first = not self._auth_latched
            self._auth_latched = True
            self._next_probe = time.monotonic() + self.auth_probe_interval
        if first:
            self.report(
                "auth",
                f"Doow refused the API key ({reason}). Nothing more is sent with it (one try "
                f"every {self.auth_probe_interval:g} s, so a fixed key resumes on its own); "
                "usage waits in the spool. Fix: set DOOW_TRACK_API_KEY (or api_key=, or "
                "set_api_key()) to a valid dk_ key.",
                count=count,
                status=_status_of(reason),
            )

    # --- transport ---

    def _exchange(self, batch: Batch, body: bytes, headers: dict[str, str], end: float) -> Decision:
        """One request, abandoned at `end` whatever the server does; the decision for it."""
        transport = self._transport()
        url = f"{self.endpoint}/telemetry/events"
        timeout = min(self.timeout, max(MIN_ATTEMPT_SECONDS, end - time.monotonic()))
        call = _Call(lambda: transport.post(url, body, headers, timeout))
        self._count(requests=1)
        logger.debug(
            "doow: POST %s batch %s: %d events, %d bytes",
            url,
            batch.batch_id,
            len(batch),
            len(body),
        )
        try:
            self._workers.run(call)
        except RuntimeError:  # the interpreter is exiting (an atexit export): no new threads,
            call.run()  # so on this one, bounded by the per-operation timeout only
        if not call.done.wait(max(0.0, end - time.monotonic())):
            self._abandon(transport)
            return transport_failure("timeout", "the deadline passed during the request")
        if isinstance(call.error, TransportError):
            return transport_failure(call.error.kind, self.report.redact(call.error.message))
        if call.error is not None:  # a transport's bug: described, never passed on
            return transport_failure("connection", self._describe(call.error))
        answer: Answer = call.value  # type: ignore[assignment]
        decision = decide(batch.event_ids, answer.status, answer.headers, answer.body, time.time())
        logger.debug(
            "doow: batch %s answered %d: %s%s",
            batch.batch_id,
            answer.status,
            decision.action,
            f" ({self.report.redact(decision.reason)})" if decision.reason else "",
        )
        return decision

    def drop(self, count: int, why: str) -> None:
        """Events a caller kept for a later send (`send(caller_keeps=True)`) end here:
        counted in `stats()["dropped"]` and reported with why."""
        self._count(dropped=count)
        self.report("dropped", f"{counted(count, 'event')} dropped: {why}", count=count)

    def after_restore(self) -> None:
        """In an environment restored from a snapshot (Lambda SnapStart): the pooled
        connections are the snapshot's copies, shared with every other restored copy, and
        the key's state may have changed since; open new ones and learn it afresh. A
        transport passed in is the caller's to renew."""
        with self._state_lock:
            stale, self._own = self._own, None
            self._auth_latched = False
        if stale is not None:
            stale.close()

    def _abandon(self, transport: Transport) -> None:
        """Close the connections of a request past its deadline (the caller does not wait);
        the next request opens new ones. A transport passed in is closed by close() only."""
        self._count(abandoned=1)
        with self._state_lock:
            if self._own is not transport:
                return
            self._own = None
        transport.close()

    def _transport(self) -> Transport:
        if self._given is not None:
            return self._given
        with self._state_lock:
            if self._own is None:
                from doow_otel.delivery.transport.http import (
                    HTTPTransport,  # first use: keeps imports cheap
                )

                self._own = HTTPTransport()
            return self._own

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor  # only bulk sends use it

                self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="doow-send")
            return self._pool

    def _headers(self, encoding: str | None) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self._key}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Doow-SDK-Version": __version__,
        }
        if encoding:
            headers["Content-Encoding"] = encoding
        return headers

    def _describe(self, exc: BaseException) -> str:
        return self.report.redact(f"{type(exc).__name__}: {exc}")[:300]

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the client is closed meanwhile; True when the sleep was not cut short."""
        return not self._wake.wait(max(0.0, seconds))

    def _count(self, **deltas: int) -> None:
        with self._state_lock:
            for name, delta in deltas.items():
                self._stats[name] += delta


class _Call:
    """One request handed to a worker: what it returned or raised, and when it is done."""

    __slots__ = ("done", "error", "fn", "value")

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.value: object = None
        self.error: BaseException | None = None

    def run(self) -> None:
        self.execute()
        self.done.set()

    def execute(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as exc:  # kept for the caller, which maps it to a decision
            self.error = exc


class _Workers:
    """Threads that run requests, each reused once its request ends (an abandoned one
    too, once its closed connection has failed it). As many as requests ever ran at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[_Call | None]] = []
        self._pid = os.getpid()
        self._generation = 0  # close() starts a new one: busy workers then end, not idle

    def run(self, call: _Call) -> None:
        """Start `call` on an idle worker or a new one; RuntimeError when no thread can start."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's workers are not here
                self._pid, self._idle = os.getpid(), []
            jobs = self._idle.pop() if self._idle else None
        if jobs is None:
            jobs = queue.SimpleQueue()
            worker = threading.Thread(
                target=self._serve,
                args=(jobs, self._generation),
                name="doow-request",
                daemon=True,
            )
            worker.start()
        jobs.put(call)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for jobs in idle:
            jobs.put(None)

    def _serve(self, jobs: queue.SimpleQueue[_Call | None], generation: int) -> None:
        while (call := jobs.get()) is not None:
            call.execute()
            with self._lock:  # idle again before the caller hears: its next request reuses it
                current = generation == self._generation
                if current:
                    self._idle.append(jobs)
            call.done.set()
            del call
            if not current:
                return


def _status_of(reason: str) -> int | None:
    """The status in a decision's reason ("HTTP 400: ...")."""
    parts = reason.split()
    if len(parts) > 1 and parts[0] == "HTTP" and parts[1].rstrip(":").isdigit():
        return int(parts[1].rstrip(":"))
    return None
