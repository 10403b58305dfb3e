"""The HTTP side of the local server: Doow's ingest contract, the read API and the page.

The standard library's threading HTTP server (HTTP/1.1, keep-alive): no dependency, and
it gives the socket-level control the fault injection needs (closing a connection before
or after the body is read), which an ASGI framework hides.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import socket
import threading
import zlib
from collections.abc import Callable, Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from doow_otel._version import __version__
from doow_otel.delivery.reports import key_hint
from doow_otel.model.fields import KINDS
from doow_otel.model.times import format_time, parse_time
from doow_otel_testing import otlp_json
from doow_otel_testing.otlp_views import convert_metrics_request
from doow_otel_testing.server.budget import Budget, Refusal
from doow_otel_testing.server.faults import Faults
from doow_otel_testing.server.fixes import fix_for, fix_for_rejection
from doow_otel_testing.server.page import PAGE
from doow_otel_testing.server.request_log import MAX_BYTES, LogEntry, RequestLog
from doow_otel_testing.server.store import MAX_QUANTITY, MIN_QUANTITY, Outcome, Store
from doow_otel_testing.server.validation import check_wire_event

MAX_EVENTS = 1000  # the contract: a batch over 1,000 events can never fit the budget
MAX_BUCKET = 100 * 366 * 86400  # a century, in seconds: the read API's widest time bucket
IDLE_TIMEOUT = 30.0  # seconds a connection may sit idle (or stall mid-request)
MAX_CONNECTIONS = 128  # open connections, each served by one thread
MAX_BATCH_BYTES = 10_000_000  # "10 MB", read strictly; Doow's SDKs stay under ~450 KB
MAX_OTLP_BYTES = 10_000_000
INGEST_PATHS = ("/telemetry/events", "/telemetry/otlp/v1/metrics")
JSON_TYPES = ("application/json",)
OTLP_TYPES = ("application/x-protobuf", "application/json")


class HTTPError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        close: bool = False,
        headers: Mapping[str, str] | None = None,
        body: tuple[bytes, str] | None = None,
        error: str | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close
        self.headers = dict(headers or {})
        self.body = body  # (bytes, content type) to send as is, instead of Doow's JSON error
        self.error = error  # Doow's error code, e.g. "batch_too_large"
        self.fix = fix  # what to do about it, for the page (None: by status)


class _Dropped(Exception):
    """The fault injection closed the connection: send nothing."""


class DoowServer(ThreadingHTTPServer):
    """A Doow-compatible ingest server over a `Store`.

    One thread per open connection, at most `max_connections` of them: a connection
    beyond that is answered 503 (Retry-After: 1) and closed at once. A connection idle
    for `idle_timeout` seconds, before or inside a request, is closed.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        store: Store,
        keys: list[str],
        faults: Faults | None = None,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        request_log_bytes: int = MAX_BYTES,
        budget: Budget | None = None,
        known_metrics: frozenset[str] | None = None,
    ) -> None:
        if idle_timeout <= 0:
            raise ValueError("idle_timeout: must be a positive number of seconds")
        if max_connections < 1:
            raise ValueError("max_connections: must be at least 1")
        self.store = store
        self.faults = faults or Faults()
        self.budget = budget or Budget()
        self.known_metrics = known_metrics  # None: every metric is known
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.refused_connections = 0
        self._slots = threading.BoundedSemaphore(max_connections)
        self._open = 0
        self._open_lock = threading.Lock()
        # Batches are parsed, checked and stored one at a time: with the GIL they could
        # not run in parallel anyway, and threads taking turns by a lock waste no CPU
        # fighting over it.
        self.processing = threading.Lock()
        self._keys = list(keys)
        self._revoked: set[str] = set()
        self.request_log = RequestLog(max_bytes=request_log_bytes)
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def authorized(self, header: str | None) -> str | None:
        """The key a valid `Authorization: Bearer dk_...` header carries, else None."""
        if not header or not header.startswith("Bearer "):
            return None
        given = header[7:].strip()
        if not given.startswith("dk_"):
            return None
        for key in self._keys:
            if hmac.compare_digest(given.encode(), key.encode()):
                return None if key in self._revoked else key
        return None

    def revoke(self, key: str) -> None:
        self._revoked.add(key)

    def requests(self, *, include_in_flight: bool = False) -> list[dict[str, Any]]:
        return self.request_log.snapshot(include_in_flight=include_in_flight)

    @property
    def open_connections(self) -> int:
        with self._open_lock:
            return self._open

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        with self._open_lock:
            self._open += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._open_lock:
            self._open -= 1
        self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        """Answer 503 without a thread: this runs on the accepting thread, so it never
        waits on the client (a short send timeout, then the socket is closed)."""
        self.refused_connections += 1
        body = json.dumps(
            {
                "message": f"too many open connections (at most {self.max_connections}); "
                "retry in a second",
                "errorClass": "ServerError",
            }
        ).encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            request.settimeout(0.5)
            request.sendall(head.encode() + body)
            # Closing with unread bytes would send a reset that can overtake the answer:
            # read what the client already sent (without waiting for more).
            request.setblocking(False)
            for _ in range(16):
                if not request.recv(65536):
                    break
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is not the server's error; stay quiet."""


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise HTTPError(415, f"Content-Encoding {encoding!r} is not supported; use gzip or none")
    inflater = zlib.decompressobj(wbits=31)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise HTTPError(400, f"body: not valid gzip ({error})") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise HTTPError(
            413, f"body: larger than {limit} bytes after decompression", error="payload_too_large"
        )
    if not inflater.eof:
        raise HTTPError(400, "body: truncated gzip stream")
    return data


def _parse_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:
        raise HTTPError(400, f"body: not valid JSON ({error})") from None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Answers go out in two writes (head, body): with Nagle on, each would wait for the
    # client's delayed ACK, some 40 ms per request on keep-alive connections.
    disable_nagle_algorithm = True
    server_version = f"doow-otel-local/{__version__}"
    server: DoowServer
    _entry: LogEntry | None = None
    _key: str = ""
    _status = 0  # the status answered
    _counts: dict[str, int]  # this request's counts for the minute (offered, stored, ...)
    _unread = 0  # body bytes declared and not yet read
    _trickled = False  # an ingest answer after the store: the trickle fault applies

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.idle_timeout)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: request lines are in `requests()`; headers (the key) are never logged."""

    # --- dispatch ---

    def do_GET(self) -> None:
        self._dispatch(
            {
                "/": self._page,
                "/api/events": self._api_events,
                "/api/usage": self._api_usage,
                "/api/stats": self._api_stats,
                "/api/rejections": self._api_rejections,
                "/api/series": self._api_series,
                "/api/minutes": self._api_minutes,
                "/api/refusals": self._api_refusals,
                "/api/problems": self._api_problems,
            }
        )

    def do_POST(self) -> None:
        self._dispatch(
            {
                "/telemetry/events": self._events,
                "/telemetry/heartbeat": self._heartbeat,
                "/telemetry/otlp/v1/metrics": self._otlp_metrics,
                "/admin/faults": self._admin_faults,
            }
        )

    def _dispatch(self, routes: Mapping[str, Callable[[], None]]) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        route = routes.get(path)
        entry: LogEntry | None = None
        self._unread = 0
        self._trickled = False
        self._key = ""
        self._status = 0
        self._counts = {}
        self._minute_due = path in INGEST_PATHS  # counted once, before the answer goes out
        try:
            if path.startswith("/telemetry/") and route is not None:
                entry = self.server.request_log.add(self._log_entry(path))
            self._entry = entry
            self._unread = self._declared_length()
            self._note(bytes=self._unread)
            if route is None:
                raise HTTPError(404, f"no route for {self.command} {path}")
            if path != "/":
                self._key = self._authenticate()
            route()
        except (_Dropped, TimeoutError):  # the fault injection, or a client that stalled
            self.close_connection = True
            if entry is not None:
                self.server.request_log.update(entry, status=0)
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        except HTTPError as error:
            self._skip_body(error)
            if self.command == "POST":  # what a sender sent (not a browser's favicon)
                self._record_refusal(path, error)
            if error.body is not None:
                self._send(error.status, *error.body, extra=error.headers, close=error.close)
            else:
                payload = {"message": error.message, "errorClass": _error_class(error.status)}
                if error.error:
                    payload["error"] = error.error
                self._json(error.status, payload, close=error.close, extra=error.headers)
        except Exception as error:  # never let one request take the server down
            self._json(500, {"message": f"internal error: {type(error).__name__}"}, close=True)
        finally:
            self._count_minute()  # a request dropped without an answer

    def _count_minute(self) -> None:
        """This request in its key's minute: what it offered and what became of it. Counted
        before the answer is written, so a sender that reads /api/minutes after its answer
        sees its request there."""
        if not (self._minute_due and self._key):
            return
        self._minute_due = False
        offered = self._counts.get("offered", 0)
        refused = self._status in (413, 429)
        self.server.store.note_minute(
            self._key,
            requests=1,
            offered=offered,
            stored=self._counts.get("stored", 0),
            duplicates=self._counts.get("duplicates", 0),
            refused=offered if refused else 0,
            rate_limited_requests=int(self._status == 429),
        )

    def _record_refusal(self, path: str, error: HTTPError) -> None:
        """A request refused at the door, with its cause and its fix; of the key given,
        only its first characters."""
        header = self.headers.get("Authorization") if self.headers else None
        if not header:
            prefix = None
        elif header.startswith("Bearer "):
            prefix = key_hint(header[7:].strip())
        else:
            prefix = "(not Bearer)"
        limit = self.server.budget.events_per_minute
        self.server.store.refuse(
            status=error.status,
            method=self.command or "",
            path=path,
            key_prefix=prefix,
            reason=error.message,
            fix=error.fix or fix_for(error.status, path, error.error, limit),
            events=self._counts.get("offered"),
        )

    def _log_entry(self, path: str) -> dict[str, Any]:
        return {
            "path": path,
            "status": None,
            "events": None,
            "batch_id": None,
            "content_encoding": self.headers.get("Content-Encoding"),
            "content_type": self.headers.get("Content-Type"),
            "user_agent": self.headers.get("User-Agent"),
            "sdk_version": self.headers.get("X-Doow-SDK-Version"),
            "event_ids": None,
            "peer_port": self.client_address[1],
            "bytes": None,
        }

    def _note(self, **fields: Any) -> None:
        if self._entry is not None:
            self.server.request_log.update(self._entry, **fields)

    def _authenticate(self) -> str:
        header = self.headers.get("Authorization")
        key = self.server.authorized(header)
        if key is None:
            if not header:
                what = "no API key (send Authorization: Bearer dk_...)"
            elif not header.startswith("Bearer ") or not header[7:].strip().startswith("dk_"):
                what = "malformed API key (send Authorization: Bearer dk_...)"
            else:
                what = "API key not accepted (unknown or revoked)"
            raise HTTPError(401, what)
        return key

    # --- body handling ---

    def _declared_length(self) -> int:
        """The body's length from Content-Length (0 without one). A malformed one leaves
        the rest of the stream unreadable, so its 400 closes the connection."""
        if self.headers.get("Transfer-Encoding", "").strip().lower() not in ("", "identity"):
            raise HTTPError(
                411, "Transfer-Encoding: send the body with a Content-Length", close=True
            )
        values = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if not values:
            return 0
        if len(values) > 1:
            raise HTTPError(
                400, "Content-Length: given more than once with different values", close=True
            )
        text = values.pop()
        if text[:1] == "-" and text[1:].isascii() and text[1:].isdigit():
            raise HTTPError(
                400,
                f"Content-Length: {text} is negative; give the body's size in bytes",
                close=True,
            )
        if not (text.isascii() and text.isdigit()):
            raise HTTPError(
                400,
                f"Content-Length: {text[:32]!r} is not a number; give the body's size in bytes "
                "as decimal digits",
                close=True,
            )
        return int(text)

    def _content_length(self, limit: int) -> int:
        length = self._unread
        if length > limit:
            raise HTTPError(
                413,
                f"body: {length} bytes; at most {limit} are accepted",
                close=True,
                error="payload_too_large",
            )
        return length

    def _skip_body(self, error: HTTPError) -> None:
        """Before an early error answer: read the unread body (or close the connection),
        so that the body is never taken for the next request."""
        if self._unread and not error.close:
            if self._unread <= MAX_OTLP_BYTES:
                self.rfile.read(self._unread)
                self._unread = 0
            else:
                error.close = True

    def _read_body(self, limit: int, types: tuple[str, ...]) -> tuple[bytes, str]:
        """The decompressed body and its media type, within `limit` bytes both ways.
        Ingest requests (those in the request log) go through the injected faults."""
        length = self._content_length(limit)
        faults = self.server.faults if self._entry is not None else None
        if faults is not None:
            faults.delay("before_body")
            if faults.take_drop("before_body"):
                raise _Dropped
        raw = self.rfile.read(length)
        self._unread = 0
        if len(raw) < length:
            raise _Dropped  # the client went away
        failure = faults.take_failure() if faults is not None else None
        if failure is not None:
            body = None if failure.body is None else (failure.body, failure.content_type)
            raise HTTPError(
                failure.status,
                failure.message or f"injected answer {failure.status}",
                headers=failure.headers,
                body=body,
                fix="An injected fault (faults.fail_next / answer_next): faults.clear() ends it.",
            )
        media = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media not in types:
            raise HTTPError(
                415, f"Content-Type {media or '(none)'!r} is not accepted; use {' or '.join(types)}"
            )
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        data = _decompress(raw, encoding, limit)  # past the limit: 413 payload_too_large
        cap = faults.max_body_size if faults is not None else None
        if cap is not None and len(data) > cap:
            raise HTTPError(
                413,
                f"batch too large: {len(data)} bytes, this server takes {cap}",
                error="payload_too_large",
                fix="An injected fault (faults.max_body): the client should split the batch.",
            )
        return data, media

    def _after_store(self) -> None:
        faults = self.server.faults
        self._trickled = True
        faults.delay("after_body")
        if faults.take_drop("after_body"):
            raise _Dropped

    # --- ingest ---

    def _events(self) -> None:
        data, _ = self._read_body(MAX_BATCH_BYTES, JSON_TYPES)
        with self.server.processing:
            outcome = self._store_batch(data)
        self._after_store()
        body: dict[str, Any] = {
            "accepted": outcome.accepted,
            "rejected": len(outcome.rejections),
            "batch_id": outcome.batch_id,
        }
        if outcome.rejections:
            # Doow's current SDKs read accepted and rejected as counts, batch_id and the
            # rejections list (see tests/test_server_compat.py)
            body["rejections"] = outcome.rejections
            self._json(207, body)
        else:
            self._json(202, body)

    def _store_batch(self, data: bytes) -> Outcome:
        body = _parse_json(data)
        if not isinstance(body, dict):
            raise HTTPError(400, "body: must be a JSON object with an events list")
        events = body.get("events")
        batch_id = body.get("batch_id")
        if not isinstance(events, list) or not events:
            raise HTTPError(400, "events: must be a non-empty list")
        if batch_id is not None and (not isinstance(batch_id, str) or not batch_id):
            raise HTTPError(400, "batch_id: must be a non-empty string")
        self._note(
            events=len(events),
            batch_id=batch_id,
            event_ids=[_id_or_none(e.get("event_id")) for e in events if isinstance(e, dict)],
        )
        if not self.headers.get("X-Doow-SDK-Version") and isinstance(body.get("sdk_version"), str):
            self._note(sdk_version=body["sdk_version"])
        self._counts["offered"] = len(events)
        self._within_budget(len(events))
        valid: list[dict[str, Any]] = []
        rejections: list[dict[str, Any]] = []
        refused: list[Any] = []
        for event in events:
            reason = _out_of_range(event) or check_wire_event(event)
            unknown = self._unknown_metric(event) if reason is None else None
            if reason is None and unknown is None:
                valid.append(event)
                continue
            event_id = event.get("event_id") if isinstance(event, dict) else None
            rejection = {"event_id": event_id if isinstance(event_id, str) else None}
            if unknown is not None:  # rule R: the metric named, for the client to resend the rest
                rejection.update(reason=f"unknown_metric: {unknown}", metric_name=unknown)
            else:
                rejection["reason"] = reason
            rejections.append(rejection)
            refused.append(event)
        outcome = self.server.store.record(batch_id, valid, rejections, refused)
        self._counts["stored"] = len(valid) - outcome.duplicates
        self._counts["duplicates"] = outcome.duplicates
        self.server.store.touch_key(self._key)
        outcome.batch_id = batch_id
        return outcome

    def _within_budget(self, events: int) -> None:
        """Doow's event budget: a batch that can never fit is 413 batch_too_large; one that
        would take the key past its limit now is 429, refused whole (server/budget.py)."""
        budget = self.server.budget
        limit = budget.events_per_minute
        most = min(MAX_EVENTS, limit) if limit else MAX_EVENTS
        if events > most:
            raise HTTPError(
                413,
                f"events: {events} in one batch; at most {most} (the event budget is "
                f"{limit or 'off'} a minute)",
                error="batch_too_large",
            )
        refusal = budget.take(self._key, events)
        if refusal is not None:
            raise _rate_limited(refusal, events)

    def _unknown_metric(self, event: Mapping[str, Any]) -> str | None:
        """The first measurement's metric the server does not know (known_metrics), else None."""
        known = self.server.known_metrics
        if known is None:
            return None
        for measurement in event["measurements"]:
            if measurement["metric_name"] not in known:
                return str(measurement["metric_name"])
        return None

    def _heartbeat(self) -> None:
        data, _ = self._read_body(MAX_BATCH_BYTES, JSON_TYPES)
        if data.strip():
            _parse_json(data)
        self.server.store.touch_key(self._key)
        self._after_store()
        self._json(200, {"ok": True})

    def _otlp_metrics(self) -> None:
        data, media = self._read_body(MAX_OTLP_BYTES, OTLP_TYPES)
        request = ExportMetricsServiceRequest()
        try:
            if media == "application/json":
                otlp_json.parse(data, request)
            else:
                request.ParseFromString(data)
        except (DecodeError, ValueError, TypeError, KeyError, RecursionError) as error:
            kind = "JSON" if media == "application/json" else "protobuf"
            raise HTTPError(
                400, f"body: not a valid OTLP metrics {kind} message ({error})"
            ) from None
        conversion = convert_metrics_request(request)
        wire = [event.to_wire() for event in conversion.events]
        rejections = [
            {"event_id": None, "reason": f"{code}: {conversion.describe(code, n)}"}
            for code, n in sorted(conversion.dropped.items())
            for _ in range(n)
        ]
        self._note(events=len(wire))
        self._counts["offered"] = len(wire)
        if wire:
            self._within_budget(len(wire))
        outcome = self.server.store.record(None, wire, rejections)
        self._counts["stored"] = len(wire) - outcome.duplicates
        self._counts["duplicates"] = outcome.duplicates
        self.server.store.touch_key(self._key)
        self._after_store()
        response = ExportMetricsServiceResponse()
        dropped = sum(conversion.dropped.values())
        if dropped:
            response.partial_success.CopyFrom(
                ExportMetricsPartialSuccess(
                    rejected_data_points=dropped, error_message="; ".join(conversion.problems)
                )
            )
        if media == "application/json":
            payload = {}
            if dropped:
                payload["partialSuccess"] = {
                    "rejectedDataPoints": str(dropped),
                    "errorMessage": "; ".join(conversion.problems),
                }
            self._send(200, json.dumps(payload).encode(), "application/json")
        else:
            self._send(200, response.SerializeToString(), "application/x-protobuf")

    def _admin_faults(self) -> None:
        data, _ = self._read_body(MAX_BATCH_BYTES, JSON_TYPES)
        try:
            self.server.faults.apply(_parse_json(data))
        except (TypeError, ValueError) as error:
            raise HTTPError(400, str(error)) from None
        self._json(200, self.server.faults.describe())

    # --- read side ---

    def _query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}

    def _int_param(self, query: Mapping[str, str], name: str, default: int | None) -> int | None:
        if name not in query:
            return default
        try:
            value = int(query[name])
        except ValueError:
            raise HTTPError(400, f"{name}: must be an integer") from None
        if not MIN_QUANTITY <= value <= MAX_QUANTITY:  # SQLite's integers are 64-bit
            raise HTTPError(
                400, f"{name}: must be an integer between {MIN_QUANTITY} and {MAX_QUANTITY}"
            )
        return value

    def _time_param(self, query: Mapping[str, str], name: str) -> datetime | None:
        if name not in query:
            return None
        try:
            return parse_time(query[name], bounded=False)
        except ValueError:
            raise HTTPError(
                400, f"{name}: give an RFC 3339 time with a timezone, e.g. 2026-01-31T12:00:00Z"
            ) from None

    def _filters(self, query: Mapping[str, str]) -> dict[str, Any]:
        """The read API's common filters: metric, license_id, kind, since, until."""
        kind = query.get("kind")
        if kind is not None and kind not in KINDS:
            raise HTTPError(400, f"kind: must be one of {', '.join(KINDS)}")
        since = self._time_param(query, "since")
        until = self._time_param(query, "until")
        return {
            "metric": query.get("metric") or None,
            "license_id": query.get("license_id") or None,
            "kind": kind,
            "since": format_time(since) if since else None,
            "until": format_time(until) if until else None,
        }

    def _api_events(self) -> None:
        q = self._query()
        page, cursor = self.server.store.events(
            **self._filters(q),
            before=self._int_param(q, "before", None),
            limit=self._int_param(q, "limit", 100) or 100,
        )
        self._json(200, {"events": page, "next_before": cursor})

    def _api_usage(self) -> None:
        q = self._query()
        usage = self.server.store.usage(
            **self._filters(q), by=q.get("by"), per_kind=q.get("per_kind") == "true"
        )
        self._json(200, {"usage": usage})

    def _api_stats(self) -> None:
        self._json(200, self.server.store.stats())

    def _api_rejections(self) -> None:
        q = self._query()
        filters = self._filters(q)
        page, cursor = self.server.store.rejection_page(
            since=filters["since"],
            until=filters["until"],
            before=self._int_param(q, "before", None),
            limit=self._int_param(q, "limit", 100) or 100,
        )
        for rejection in page:
            rejection["fix"] = fix_for_rejection(rejection["reason"])
        self._json(200, {"rejections": page, "next_before": cursor})

    def _api_minutes(self) -> None:
        """The caller's key's events per minute against its budget."""
        q = self._query()
        filters = self._filters(q)
        minutes = self.server.store.minutes(
            key=self._key, since=filters["since"], until=filters["until"]
        )
        budget = self.server.budget
        self._json(
            200,
            {"minutes": minutes, "limit": budget.events_per_minute, "daily_cap": budget.daily_cap},
        )

    def _api_refusals(self) -> None:
        q = self._query()
        filters = self._filters(q)
        page, cursor = self.server.store.refusal_page(
            status=self._int_param(q, "status", None),
            since=filters["since"],
            until=filters["until"],
            before=self._int_param(q, "before", None),
            limit=self._int_param(q, "limit", 100) or 100,
        )
        self._json(200, {"refusals": page, "next_before": cursor})

    def _api_problems(self) -> None:
        """What went wrong, grouped, newest first, each with its fix: refused requests by
        status, path and key prefix; rejected events by reason. "My usage did not arrive",
        answered in one list."""
        q = self._query()
        filters = self._filters(q)
        store = self.server.store
        span = {"since": filters["since"], "until": filters["until"]}
        groups: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in store.refusal_page(**span, limit=1000)[0]:
            key = ("refused", row["status"], row["path"], row["key_prefix"], row["fix"])
            group = groups.setdefault(
                key,
                {
                    "kind": "refused",
                    "status": row["status"],
                    "path": row["path"],
                    "key_prefix": row["key_prefix"],
                    "reason": row["reason"],
                    "fix": row["fix"],
                    "count": 0,
                    "last": row["received_at"],
                },
            )
            group["count"] += 1
        for row in store.rejection_page(**span, limit=1000)[0]:
            field = row["reason"].split(":", 1)[0]
            fix = fix_for_rejection(row["reason"])
            group = groups.setdefault(
                ("rejected", field, fix),
                {
                    "kind": "rejected",
                    "status": 207,
                    "field": field,
                    "reason": row["reason"],
                    "fix": fix,
                    "count": 0,
                    "last": row["received_at"],
                    "example": {
                        k: row[k] for k in ("event_id", "metric", "license_id", "quantity")
                    },
                },
            )
            group["count"] += 1
        problems = sorted(groups.values(), key=lambda g: g["last"], reverse=True)
        self._json(200, {"problems": problems})

    def _api_series(self) -> None:
        q = self._query()
        filters = self._filters(q)
        bucket = self._int_param(q, "bucket", None)
        if bucket is not None and not 1 <= bucket <= MAX_BUCKET:
            raise HTTPError(400, f"bucket: give a number of seconds from 1 to {MAX_BUCKET}")
        series = self.server.store.series(
            metric=filters["metric"],
            license_id=filters["license_id"],
            kind=filters["kind"],
            since=self._time_param(q, "since"),
            until=self._time_param(q, "until"),
            bucket=bucket,
        )
        self._json(200, series)

    def _page(self) -> None:
        self._send(
            200,
            PAGE.encode(),
            "text/html; charset=utf-8",
            extra={
                "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'",
                "Cache-Control": "no-store",
            },
        )

    # --- answers ---

    def _json(
        self,
        status: int,
        payload: Any,
        *,
        close: bool = False,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        self._send(
            status, json.dumps(payload).encode(), "application/json", extra=extra, close=close
        )

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        extra: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        self._status = status
        if self._entry is not None:  # logged before the client can see the answer
            self.server.request_log.update(self._entry, status=status)
        self._entry = None
        self._count_minute()
        trickle = self.server.faults.trickle_wait() if self._trickled else 0.0
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if close or trickle:
            self.send_header("Connection", "close")
            self.close_connection = True
        if trickle:
            head: list[bytes] = self.__dict__.pop("_headers_buffer", [])  # what end_headers sends
            self._write_trickling(b"".join(head) + b"\r\n" + body, trickle)
            return
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def _write_trickling(self, answer: bytes, seconds_per_byte: float) -> None:
        """The injected trickle: one byte at a time, until written, the client leaves, or
        the faults are cleared (then the rest at once)."""
        try:
            for i in range(len(answer)):
                self.wfile.write(answer[i : i + 1])
                self.wfile.flush()
                if self.server.faults.pause(seconds_per_byte):
                    self.wfile.write(answer[i + 1 :])
                    return
        except OSError:
            pass


def _rate_limited(refusal: Refusal, events: int) -> HTTPError:
    parts = [
        f"{name}: {c['current']} of {c['limit']} used, retry in {c['retry_after']} s"
        for name, c in refusal.categories.items()
    ]
    return HTTPError(
        429,
        f"rate limited: {events} more events would pass the event budget ({'; '.join(parts)})",
        headers={
            "Retry-After": str(refusal.retry_after),
            "X-Doow-Rate-Limits": json.dumps(refusal.categories),
        },
        error="rate_limited",
    )


def _id_or_none(value: Any) -> str | None:
    """What the request log keeps of an event id: a string, else None (its size known)."""
    return value if isinstance(value, str) else None


def _out_of_range(event: Any) -> str | None:
    """An integer quantity the database cannot hold (SQLite integers are 64-bit)."""
    measurements = event.get("measurements") if isinstance(event, dict) else None
    if not isinstance(measurements, list):
        return None
    for i, measurement in enumerate(measurements):
        quantity = measurement.get("quantity") if isinstance(measurement, dict) else None
        if (
            isinstance(quantity, int)
            and not isinstance(quantity, bool)
            and not MIN_QUANTITY <= quantity <= MAX_QUANTITY
        ):
            return (
                f"measurements[{i}].quantity: {len(str(abs(quantity)))} digits is beyond a "
                f"64-bit integer; send at most {MAX_QUANTITY} per event and split larger usage "
                "over several events"
            )
    return None


def _error_class(status: int) -> str:
    return {
        400: "ValidationError",
        401: "AuthenticationError",
        404: "NotFound",
        413: "PayloadTooLarge",
        415: "UnsupportedMediaType",
        429: "RateLimited",
    }.get(status, "ServerError" if status >= 500 else "ClientError")
