"""The `doow-otel` command: send, test-event.

The local Doow-compatible server and the demo are the testing package's own command,
`doow-local` (doow-otel-testing, never deployed with the runtime).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import TextIO
from urllib.parse import urlsplit

from doow_otel.delivery.client import DoowClient, SendResult
from doow_otel.delivery.wire import MAX_BATCH_EVENTS
from doow_otel.errors import ConfigurationError, ErrorReport, InvalidEvent
from doow_otel.model.event import UsageEvent
from doow_otel.model.records import parse_line, record_event

PROGRESS_EVERY = 1000
SKIPPED_LINES = 3
"""`send`'s exit status when every good line went out but bad lines were skipped."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="doow-otel",
        description="Usage metering for Doow.",
        epilog="The local Doow-compatible server and the demo: doow-local serve, doow-local "
        "demo (package doow-otel-testing).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    send = commands.add_parser(
        "send", help="send newline-delimited JSON events from stdin", description=SEND_HELP
    )
    _connection_options(send)

    test = commands.add_parser("test-event", help="send one event and confirm it arrived")
    _connection_options(test)
    test.add_argument("--metric", required=True)
    test.add_argument("--license-id", required=True)
    test.add_argument("--quantity", type=float, default=1)

    args = parser.parse_args(argv)
    try:
        if args.command == "send":
            return _send(args, sys.stdin.buffer, sys.stderr)
        return _test_event(args)
    except ConfigurationError as exc:
        print(f"doow-otel: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


SEND_HELP = """Reads one usage record per line from stdin, the seed's format (and the sidecar's):
  {"metric": "api_calls", "quantity": 1, "license_id": "lic_...", "attribution": {...}}
Optional fields: unit, kind (USAGE or ADJUSTMENT), timestamp (RFC 3339), metadata,
source_system, metric_tuple_hint, event_id (UUID) or idempotency_key (give one to make
re-running the same input safe; docs/conversion.md, "Usage records"). Bad lines are
reported with their line number, the field and the reason code, and skipped; the good
lines are sent. Exit status: 0 all
delivered, 1 something was not delivered (kept in the spool, rejected or dropped),
2 configuration error, 3 all good lines delivered but bad lines were skipped."""


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api-key", default=None, help="default: $DOOW_TRACK_API_KEY")
    parser.add_argument("--endpoint", default=None, help="default: $DOOW_TRACK_ENDPOINT or Doow")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per batch")


def _client(args: argparse.Namespace, errors: TextIO) -> DoowClient:
    def on_error(report: ErrorReport) -> None:
        if report.kind != "partial_accept":  # each rejection is printed on its own below
            print(f"doow-otel: {report.kind}: {report.message}", file=errors)

    return DoowClient(args.api_key, endpoint=args.endpoint, timeout=args.timeout, on_error=on_error)


def _read_events(lines: Iterable[bytes], errors: TextIO, bad: list[int]) -> Iterator[UsageEvent]:
    """The good lines' events; each bad line is skipped with its number and the reason."""
    for number, raw in enumerate(lines, 1):
        try:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _BadLine(f"not UTF-8 (byte {exc.start + 1})") from None
            if not line.strip():
                continue
            yield _parse_line(line)
        except _BadLine as exc:
            bad.append(number)
            print(f"line {number}: {exc}", file=errors)


class _BadLine(Exception):
    pass


def _parse_line(line: str) -> UsageEvent:
    """The usage record of one line: the same rules as the sidecar's (records.py)."""
    try:
        return record_event(parse_line(line), occurred_at=datetime.now(timezone.utc))
    except InvalidEvent as exc:
        text = exc.problem if exc.field == "line" else str(exc)
        raise _BadLine(f"{text} ({getattr(exc, 'code', 'invalid')})") from None


def _send(args: argparse.Namespace, lines: Iterable[bytes], errors: TextIO) -> int:
    client = _client(args, errors)
    logging_quiet()
    bad: list[int] = []
    total = SendResult()
    chunk: list[UsageEvent] = []
    progress = errors.isatty()
    read = 0

    def flush() -> None:
        result = client.send(chunk, timeout=args.timeout)
        for rejection in result.rejected:  # Doow's reason, as it came: may echo the key
            reason = client.report.redact(rejection.reason)
            print(f"rejected {rejection.event_id}: {reason}", file=errors)
        total.add(result)
        chunk.clear()

    with client:
        for event in _read_events(lines, errors, bad):
            chunk.append(event)
            read += 1
            if len(chunk) >= MAX_BATCH_EVENTS:
                flush()
            if progress and read % PROGRESS_EVERY == 0:
                print(f"\r{read:,} events read, {total.delivered:,} delivered", end="", file=errors)
        if chunk or not read:
            flush()
    if progress and read >= PROGRESS_EVERY:
        print(file=errors)
    failed = total.spooled + total.dropped + len(bad)
    print(
        f"delivered {total.delivered}, rejected {len(total.rejected)}, failed {failed} "
        f"(bad lines {len(bad)}, kept in spool {total.spooled}, dropped {total.dropped})",
        file=errors,
    )
    if total.spooled and client.spool is not None:
        print(
            f"spooled events are in {client.spool.directory}; the next send delivers them",
            file=errors,
        )
    if not total.ok:
        return 1
    return SKIPPED_LINES if bad else 0


def _test_event(args: argparse.Namespace) -> int:
    client = _client(args, sys.stderr)
    event = UsageEvent(
        metric=args.metric,
        quantity=_number(args.quantity),
        license_id=args.license_id,
        attribution={"source": "doow-otel test-event"},
    )
    with client:
        result = client.send([event], timeout=args.timeout)
        if result.delivered != 1:
            print(f"not delivered: {client.report.redact(str(result))}", file=sys.stderr)
            return 1
        host = urlsplit(client.endpoint).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            arrived = _read_back(client, event)
            verdict = "arrived" if arrived else "NOT found"
            print(f"event {event.event_id} {verdict} at {client.endpoint}")
            return 0 if arrived else 1
        ok = client.heartbeat()
        print(
            f"event {event.event_id} accepted (202); key {'confirmed' if ok else 'NOT confirmed'}"
            " by the heartbeat. Check the integration page in Doow."
        )
        return 0 if ok else 1


def _read_back(client: DoowClient, event: UsageEvent, wait: float = 5.0) -> bool:
    """Ask the local server's read API whether the event was stored."""
    import json
    from urllib.parse import urlencode

    from doow_otel.delivery.transport.http import HTTPTransport
    from doow_otel.errors import TransportError

    query = urlencode({"metric": event.metric, "license_id": event.license_id})
    url = f"{client.endpoint}/api/events?{query}"
    end = time.monotonic() + wait
    with contextlib.closing(HTTPTransport()) as transport:
        while time.monotonic() < end:
            try:
                answer = transport.request("GET", url, b"", client._headers(None), client.timeout)
                rows = json.loads(answer.body).get("events", []) if answer.status == 200 else []
                if any(row.get("event_id") == event.event_id for row in rows):
                    return True
            except (TransportError, ValueError, AttributeError):
                pass  # not there yet, or not the local server's answer: asked again
            time.sleep(0.2)
    return False


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def logging_quiet() -> None:
    """The CLI prints its own report lines; keep the library's warnings off stderr twice."""
    import logging

    if not os.environ.get("DOOW_TRACK_DEBUG"):
        logging.getLogger("doow_otel").setLevel(logging.ERROR)


if __name__ == "__main__":
    raise SystemExit(main())
