"""`DoowClient`: delivers usage events to Doow's ingest API, exactly once, within a deadline.

How the contract's answers are handled (doow-ingest-contract.md):
202 done; 207 rejected events reported, never resent; 400 permanent; 401 stops all
sending with that key; 413 halves the batch; 429 waits as told; 5xx, timeouts and
connection errors retry with exponential backoff and full jitter. Whatever is not
delivered by the deadline stays in the spool (written ahead of the first attempt)
and is replayed, oldest first and with the same ids, by the next send.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from doow_otel._version import __version__
from doow_otel.config import Settings
from doow_otel.errors import ConfigurationError, ErrorReport, Redactor, Reporter
from doow_otel.events import UsageEvent
from doow_otel.spool import Spool
from doow_otel.wire import Batch, compress, make_batches

if TYPE_CHECKING:
    import httpx

__all__ = ["DoowClient", "Rejection", "SendResult"]

USER_AGENT = f"doow-otel-python/{__version__}"
logger = logging.getLogger("doow_otel")
MAX_RETRY_AFTER = 300.0
BACKOFF_BASE = 0.1
BACKOFF_CAP = 5.0
MIN_ATTEMPT_SECONDS = 0.01


class _Default(Enum):
    SPOOL = "default spool directory"


DEFAULT_SPOOL = _Default.SPOOL


@dataclass(frozen=True)
class Rejection:
    event_id: str
    reason: str


@dataclass
class SendResult:
    """What became of the events of one `send` (including replayed spool entries)."""

    delivered: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    spooled: int = 0
    dropped: int = 0
    replayed: int = 0  # of `delivered`, how many came from the spool
    skipped: int = 0  # sending disabled (DOOW_TRACK_DISABLED)

    @property
    def ok(self) -> bool:
        return not (self.rejected or self.spooled or self.dropped)

    def add(self, other: SendResult) -> None:
        self.delivered += other.delivered
        self.rejected.extend(other.rejected)
        self.spooled += other.spooled
        self.dropped += other.dropped
        self.replayed += other.replayed
        self.skipped += other.skipped


class _Outcome(Enum):
    DELIVERED = "delivered"
    PERMANENT = "permanent"  # Doow will never take it: report and drop
    UNDELIVERED = "undelivered"  # not now: keep it in the spool
    TOO_LARGE = "too_large"


@dataclass
class _Attempt:
    outcome: _Outcome
    delivered: int = 0
    rejections: list[Rejection] = field(default_factory=list)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _retry_after(header: str | None) -> float | None:
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(header).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER))


def _rate_limit_wait(header: str | None) -> float | None:
    """The longest `retry_after` in `X-Doow-Rate-Limits` (JSON per category)."""
    if not header:
        return None
    try:
        limits = json.loads(header)
        waits = [float(v["retry_after"]) for v in limits.values() if "retry_after" in v]
    except (ValueError, TypeError, AttributeError, KeyError):
        return None
    return max(0.0, min(max(waits), MAX_RETRY_AFTER)) if waits else None


class DoowClient:
    """Sends usage events to Doow.

    One HTTP connection pool, opened on first use and reused by every later send
    (warm serverless invocations pay no new handshake). Thread-safe; sends are
    serialised so a replay never races a send of the same batch.
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
    ) -> None:
        settings = Settings.resolve(api_key=api_key, endpoint=endpoint, disabled=disabled)
        self.disabled = settings.disabled
        self.endpoint = settings.endpoint
        self.timeout = timeout
        self.max_retries = max_retries
        if max_in_flight < 1:
            raise ConfigurationError("max_in_flight: must be at least 1 (1: one batch at a time)")
        self.max_in_flight = max_in_flight
        key = settings.api_key
        if not self.disabled:
            if not key:
                raise ConfigurationError(
                    "api_key: no Doow API key; pass api_key='dk_...' or set DOOW_TRACK_API_KEY "
                    "(or DOOW_TRACK_DISABLED=true to turn sending off)"
                )
            if not key.startswith("dk_") or any(c.isspace() for c in key):
                raise ConfigurationError(
                    "api_key: a Doow SDK key starts with 'dk_' and has no spaces; "
                    "copy it from Company Settings > Integrations"
                )
            _check_endpoint(self.endpoint, allow_insecure)
        self._key = key or ""
        self.report = Reporter(on_error, Redactor(key))
        if spool is DEFAULT_SPOOL:
            spool = Spool()
        elif isinstance(spool, (str, Path)):
            spool = Spool(spool)
        self.spool: Spool | None = spool
        if self.spool is not None:
            self.spool.report = self.report
        self._http: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.RLock()
        self._stats_lock = threading.Lock()
        self._wake = threading.Event()
        self._auth_failed = False
        self._blocked_until = 0.0
        self._stats: dict[str, int] = {
            "sent": 0, "delivered": 0, "rejected": 0, "spooled": 0, "dropped": 0,
            "replayed": 0, "requests": 0, "retries": 0,
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
    ) -> SendResult:
        """Deliver `events` (after any spooled batches); returns by the deadline whatever happens.

        `deadline` is a `time.monotonic()` value; `timeout` is seconds from now. With
        neither, the client's `timeout` applies. Never raises for delivery problems.
        """
        events = list(events)
        if self.disabled:
            return SendResult(skipped=len(events))
        end = _deadline(deadline, timeout, self.timeout)
        result = SendResult()
        with self._lock:
            self._replay(end, result)
            batches = make_batches(events)
            # Journal every batch before the first request: a process killed mid-send
            # leaves them all in the spool for the next one.
            paths = [self._journal(batch) for batch in batches]
            self._count(sent=len(events))
            work = list(zip(batches, paths, strict=True))
            if len(work) > 1 and self.max_in_flight > 1:
                # Several batches: keep up to max_in_flight requests going at once on
                # the pooled connections (a bulk send is not one round trip per batch).
                parts = self._executor().map(self._deliver_part, batches, paths, [end] * len(work))
                for part in parts:
                    result.add(part)
            else:
                for batch, path in work:
                    self._deliver(batch, end, result, path=path, fresh=True)
        return result

    def _deliver_part(self, batch: Batch, path: Path | None, end: float) -> SendResult:
        part = SendResult()
        self._deliver(batch, end, part, path=path, fresh=True)
        return part

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="doow-send")
        return self._pool

    def flush_spool(
        self, *, deadline: float | None = None, timeout: float | None = None
    ) -> SendResult:
        """Replay spooled batches only."""
        return self.send((), deadline=deadline, timeout=timeout)

    def heartbeat(self, *, timeout: float | None = None) -> bool:
        """`POST /telemetry/heartbeat`: True when Doow accepts the key."""
        if self.disabled:
            return False
        try:
            response = self._client().post(
                f"{self.endpoint}/telemetry/heartbeat",
                content=b"{}",
                headers=self._headers(None),
                timeout=timeout or self.timeout,
            )
        except Exception as exc:
            self.report("network", f"heartbeat failed: {self._describe(exc)}")
            return False
        if response.status_code == 401:
            self._auth_failure()
        return response.status_code == 200

    def stats(self) -> dict[str, int]:
        with self._stats_lock:
            stats = dict(self._stats)
        stats["pending_in_spool"] = len(self.spool) if self.spool else 0
        return stats

    def close(self) -> None:
        self._wake.set()
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None
            if self._http is not None:
                self._http.close()
                self._http = None

    def __enter__(self) -> DoowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- delivery ---

    def _replay(self, end: float, result: SendResult) -> None:
        if self.spool is None:
            return
        for path in self.spool.paths():
            if time.monotonic() >= end or self._auth_failed:
                return
            entry = self.spool.load(path)
            if entry is None:
                continue
            part = SendResult()
            self._deliver(entry.batch, end, part, path=path, fresh=False)
            part.replayed = part.delivered
            result.add(part)
            if part.spooled:  # Doow is not taking data now: keep the order, stop here
                return

    def _journal(self, batch: Batch) -> Path | None:
        """Write the batch ahead of its first attempt; None when there is no usable spool."""
        if self.spool is None:
            return None
        try:
            return self.spool.write(batch, durable=False)
        except OSError as exc:
            logger.warning(
                "doow: spool %s not writable (%s); undelivered events will be dropped, not kept",
                self.spool.directory,
                exc.strerror,
            )
            return None

    def _unjournal(self, path: Path | None) -> None:
        if path is not None and self.spool is not None:
            self.spool.remove(path)

    def _deliver(
        self, batch: Batch, end: float, result: SendResult, path: Path | None, fresh: bool
    ) -> None:
        """Post one batch; then remove its journal entry, or keep it durably for later."""
        count = len(batch)
        attempt = self._post_with_retries(batch, end)
        if attempt.outcome is _Outcome.TOO_LARGE and count > 1:
            halves = batch.halves()
            paths = [self._journal(half) for half in halves]  # before giving up the whole
            for half, half_path in zip(halves, paths, strict=True):
                self._deliver(half, end, result, path=half_path, fresh=fresh)
            self._unjournal(path)
            return
        if attempt.outcome is _Outcome.TOO_LARGE:
            attempt = _Attempt(_Outcome.PERMANENT)
            self.report("dropped", "an event is larger than Doow accepts (413)", count=1)
        if attempt.outcome is _Outcome.DELIVERED:
            result.delivered += attempt.delivered
            result.rejected.extend(attempt.rejections)
            self._count(delivered=attempt.delivered, rejected=len(attempt.rejections))
        elif attempt.outcome is _Outcome.PERMANENT:
            result.dropped += count
            self._count(dropped=count)
        else:
            if path is not None:
                self._make_durable(path)
                result.spooled += count
                self._count(spooled=count if fresh else 0)
            else:
                result.dropped += count
                self._count(dropped=count)
                self.report(
                    "dropped", f"{count} events not delivered and no spool configured", count=count
                )
            return
        self._unjournal(path)

    def _make_durable(self, path: Path) -> None:
        assert self.spool is not None
        try:
            self.spool.make_durable(path)
        except OSError as exc:
            self.report("dropped", f"spool entry not made durable: {exc.strerror}")

    def _post_with_retries(self, batch: Batch, end: float) -> _Attempt:
        if self._auth_failed:
            return _Attempt(_Outcome.UNDELIVERED)
        body, encoding = compress(batch.body())
        headers = self._headers(encoding)
        attempt = 0
        while True:
            now = time.monotonic()
            if now < self._blocked_until:  # still rate limited from an earlier answer
                if self._blocked_until >= end or not self._sleep(self._blocked_until - now):
                    return _Attempt(_Outcome.UNDELIVERED)
                now = time.monotonic()
            remaining = end - now
            if remaining < MIN_ATTEMPT_SECONDS:
                self.report(
                    "timeout",
                    f"deadline reached; {len(batch)} events kept in the spool",
                    count=len(batch),
                )
                return _Attempt(_Outcome.UNDELIVERED)
            wait: float | None = None
            self._count(requests=1)
            try:
                response = self._client().post(
                    f"{self.endpoint}/telemetry/events",
                    content=body,
                    headers=headers,
                    timeout=min(self.timeout, remaining),
                )
            except Exception as exc:  # httpx errors carry the request: describe, never pass on
                kind = "timeout" if "Timeout" in type(exc).__name__ else "network"
                problem = self._describe(exc)
                self._log_retryable(kind, problem, len(batch))
            else:
                decided = self._decide(response, batch)
                if decided is not None:
                    return decided
                wait = _retry_after(response.headers.get("retry-after"))
                if response.status_code == 429:
                    wait = (
                        max(
                            wait or 0.0,
                            _rate_limit_wait(response.headers.get("x-doow-rate-limits")) or 0.0,
                        )
                        or wait
                    )
                    if wait:
                        self._blocked_until = time.monotonic() + wait
                    self.report(
                        "rate_limited",
                        f"rate limited by Doow; retry in {wait or 0:.2f}s",
                        count=len(batch),
                        status=429,
                    )
                else:
                    self._log_retryable("network", f"HTTP {response.status_code}", len(batch))
            attempt += 1
            if attempt > self.max_retries:
                self.report(
                    "network",
                    f"gave up after {attempt} attempts; {len(batch)} events kept in the spool",
                    count=len(batch),
                )
                return _Attempt(_Outcome.UNDELIVERED)
            delay = (
                wait
                if wait is not None
                else random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))
            )
            if time.monotonic() + delay >= end or not self._sleep(delay):
                self.report(
                    "timeout",
                    f"next attempt would pass the deadline; {len(batch)} events kept in the spool",
                    count=len(batch),
                )
                return _Attempt(_Outcome.UNDELIVERED)
            self._count(retries=1)

    def _decide(self, response: httpx.Response, batch: Batch) -> _Attempt | None:
        """The final outcome for this answer, or None to retry."""
        status = response.status_code
        if status in (200, 202):
            return _Attempt(_Outcome.DELIVERED, delivered=len(batch))
        if status == 207:
            return self._partial(response, batch)
        if status == 413:
            return _Attempt(_Outcome.TOO_LARGE)
        if status in (401, 403):
            self._auth_failure()
            return _Attempt(_Outcome.UNDELIVERED)
        if status == 429 or status == 408 or status >= 500:
            return None
        reason = _error_text(response)
        self.report(
            "validation",
            f"Doow refused a batch of {len(batch)} events (HTTP {status}): {reason}",
            count=len(batch),
            status=status,
        )
        return _Attempt(_Outcome.PERMANENT)

    def _partial(self, response: httpx.Response, batch: Batch) -> _Attempt:
        try:
            body = response.json()
        except ValueError:
            body = {}
        reasons: dict[str, str] = {}
        for item in body.get("rejections") or []:
            if isinstance(item, dict) and "event_id" in item:
                reasons[str(item["event_id"])] = str(item.get("reason", "rejected"))
        accepted = body.get("accepted")
        if isinstance(accepted, list):  # older servers: the accepted ids
            taken = {str(a) for a in accepted}
            for event_id in batch.event_ids:
                if event_id not in taken:
                    reasons.setdefault(event_id, "rejected (no reason given)")
        rejections = [Rejection(eid, reason) for eid, reason in reasons.items()]
        self.report(
            "partial_accept",
            f"Doow rejected {len(rejections)} of {len(batch)} events",
            count=len(rejections),
            status=207,
            rejections=tuple((r.event_id, r.reason) for r in rejections),
        )
        return _Attempt(_Outcome.DELIVERED, len(batch) - len(rejections), rejections)

    def _auth_failure(self) -> None:
        if not self._auth_failed:
            self._auth_failed = True
            self.report(
                "auth",
                "Doow answered 401: the API key is missing, malformed or revoked. Sending has "
                "stopped for this key; events are kept in the spool. Set a valid dk_ key.",
                status=401,
            )

    # --- plumbing ---

    def _client(self) -> httpx.Client:
        if self._http is None:
            import httpx  # imported on first use: keeps `import doow_otel` cheap

            self._http = httpx.Client(
                limits=httpx.Limits(max_connections=10, max_keepalive_connections=10),
                timeout=self.timeout,
            )
        return self._http

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

    def _log_retryable(self, kind: str, problem: str, count: int) -> None:
        logger.debug("doow %s (%d events), will retry: %s", kind, count, problem)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the client is closed meanwhile; True when the sleep was not cut short."""
        return not self._wake.wait(max(0.0, seconds))

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                self._stats[name] += delta


def _deadline(deadline: float | None, timeout: float | None, default: float) -> float:
    if deadline is not None:
        return deadline
    return time.monotonic() + (timeout if timeout is not None else default)


def _check_endpoint(endpoint: str, allow_insecure: bool) -> None:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(
            f"endpoint: {endpoint!r} is not an http(s) URL; use e.g. 'https://api.doow.co'"
        )
    if parts.scheme == "http" and not allow_insecure and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"endpoint: {endpoint!r} would send the API key unencrypted; use https, "
            "or pass allow_insecure=True for a trusted network"
        )


def _error_text(response: httpx.Response) -> str:
    try:
        data: Any = response.json()
        text = data.get("error") or data.get("message") or data.get("reason") or data
    except ValueError:
        text = response.text
    return str(text)[:300]
