"""The `doow-otel` command: send, test-event, spool.

Every line it prints is said once, in plain words, with the fix; never the API key (its
first characters at most).

The local Doow-compatible server and the demo are the testing package's own command,
`doow-local` (doow-otel-testing, never deployed with the runtime).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from doow_otel.delivery.client import DoowClient, SendResult
from doow_otel.delivery.config import Settings
from doow_otel.delivery.journal import adopt_journals, set_aside_journals
from doow_otel.delivery.reports import key_hint
from doow_otel.delivery.spool import Owner, Spool, default_spool_dir
from doow_otel.delivery.wire import MAX_BATCH_EVENTS
from doow_otel.errors import ConfigurationError, ErrorReport, InvalidEvent, counted
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

    test = commands.add_parser(
        "test-event",
        help="send one event and confirm it arrived",
        description="Sends one usage event (attribution source=doow-otel test-event) and says "
        "whether it arrived, or the one reason it did not and the fix. A test event is never "
        "kept in the spool. Exit status 0: it arrived; 1: it did not; 2: configuration error.",
    )
    _connection_options(test)
    test.add_argument("--metric", required=True)
    test.add_argument("--license-id", required=True)
    test.add_argument("--quantity", type=float, default=1)

    spool = commands.add_parser(
        "spool",
        help="what waits in the spool, and adopt or set aside another endpoint's or key's usage",
        description=SPOOL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    spool.add_argument("action", nargs="?", default="list", choices=("list", "adopt", "set-aside"))
    _connection_options(spool)
    spool.add_argument("--dir", default=None, help="default: $DOOW_SPOOL_DIR or the user cache")
    spool.add_argument(
        "--from",
        dest="owners",
        action="append",
        default=[],
        metavar="ID",
        help="the entries of this owner (the id `doow-otel spool` shows; repeat)",
    )
    spool.add_argument("--all", action="store_true", help="every other owner's entries")

    args = parser.parse_args(argv)
    try:
        if args.command == "send":
            return _send(args, sys.stdin.buffer, sys.stderr)
        if args.command == "spool":
            return _spool(args, sys.stdout)
        return _test_event(args, sys.stdout)
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


SPOOL_HELP = """What waits in the spool, for which endpoint and key (its first characters),
how old and why; and what to do with usage written with another endpoint or key:

  doow-otel spool                       list
  doow-otel spool adopt --from ID       send that owner's usage with the current key and
                                        endpoint (--all: every other owner's)
  doow-otel spool set-aside --from ID   move it out of the queue, into <spool>/set-aside/

The current key and endpoint: --api-key and --endpoint, else DOOW_TRACK_API_KEY and
DOOW_TRACK_ENDPOINT. Usage is never sent with another key or endpoint on its own: usage
recorded against a test server must never reach production."""


class _Reports:
    """The library's reports, printed once each: a report that repeats (the same words,
    other numbers) is counted, and the count said at the end. The note about usage of
    another endpoint or key waiting in the spool comes last, after what happened to this
    run's usage."""

    def __init__(self, out: TextIO, *, skip: tuple[str, ...] = ()) -> None:
        self.out = out
        self.skip = skip
        self.seen: dict[tuple[str, str], int] = {}
        self.reports: list[ErrorReport] = []
        self.later: list[str] = []

    def __call__(self, report: ErrorReport) -> None:
        self.reports.append(report)
        if report.kind in self.skip:
            return
        shape = (report.kind, re.sub(r"\d+(\.\d+)?", "N", report.message))
        self.seen[shape] = self.seen.get(shape, 0) + 1
        if self.seen[shape] > 1:
            return
        if report.kind == "configuration" and "doow-otel spool" in report.message:
            self.later.append(report.message)
        else:
            print(f"doow-otel: {report.message}", file=self.out)

    def close(self) -> None:
        for message in self.later:
            print(f"doow-otel: {message}", file=self.out)
        self.later.clear()
        for (_, shape), n in self.seen.items():
            if n > 1:
                print(
                    f"doow-otel: (the message above starting {shape[:40]!r} came "
                    f"{counted(n - 1, 'more time')})",
                    file=self.out,
                )


def _client(
    args: argparse.Namespace, reports: _Reports, *, spool: object = "default"
) -> DoowClient:
    logging_quiet()  # the reports are printed here, once: not by the logger as well
    if spool == "default":
        return DoowClient(
            args.api_key, endpoint=args.endpoint, timeout=args.timeout, on_error=reports
        )
    return DoowClient(
        args.api_key,
        endpoint=args.endpoint,
        timeout=args.timeout,
        on_error=reports,
        spool=spool,  # type: ignore[arg-type]
    )


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
    reports = _Reports(errors, skip=("partial_accept",))  # each rejection is printed below
    client = _client(args, reports)
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
        them = "it" if total.spooled == 1 else "them"
        settings_wrong = any(r.kind in ("auth", "configuration") for r in reports.reports)
        print(
            f"{counted(total.spooled, 'event')} kept in the spool {client.spool.directory}; "
            + (
                f"after the fix, doow-otel spool adopt sends {them} with the new settings"
                if settings_wrong
                else f"the next send with this endpoint and key delivers {them}"
            ),
            file=errors,
        )
    reports.close()  # the repeats, and the note about others' usage in the spool: last
    if not total.ok:
        return 1
    return SKIPPED_LINES if bad else 0


def _test_event(args: argparse.Namespace, out: TextIO) -> int:
    """One event, never spooled (a failed test leaves nothing behind to resend later), and
    one line: where it arrived, or the one reason it did not and the fix."""
    reports = _Reports(sys.stderr, skip=_ALL_KINDS)  # the one reason is printed below
    client = _client(args, reports, spool=None)
    event = UsageEvent(
        metric=args.metric,
        quantity=_number(args.quantity),
        license_id=args.license_id,
        attribution={"source": "doow-otel test-event"},
    )
    what = f"{event.metric} {event.quantity} for {event.license_id}"
    with client:
        result = client.send([event], timeout=args.timeout)
        if result.delivered != 1:
            reason = _why_not(result, reports.reports, client.endpoint, args.timeout)
            print(f"not delivered: {client.report.redact(reason)}", file=out)
            _spool_note(args, out)
            return 1
        host = urlsplit(client.endpoint).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            if not _read_back(client, event):
                print(
                    f"accepted but NOT found in {client.endpoint}'s read API: is this a "
                    f"doow-local server? (event {event.event_id})",
                    file=out,
                )
                return 1
            print(
                f"arrived: {what} (event {event.event_id}) at {client.endpoint}; "
                f"see it on {client.endpoint}/",
                file=out,
            )
            return 0
        if not client.heartbeat():
            print(
                f"accepted (event {event.event_id}), but the heartbeat did not confirm the key",
                file=out,
            )
            return 1
        print(
            f"arrived: {what} (event {event.event_id}) accepted by {client.endpoint}; "
            "Doow shows it on the integration's page",
            file=out,
        )
        return 0


_ALL_KINDS = (
    "auth",
    "configuration",
    "rate_limited",
    "partial_accept",
    "validation",
    "network",
    "timeout",
    "dropped",
)


def _why_not(
    result: SendResult, reports: Sequence[ErrorReport], endpoint: str, timeout: float
) -> str:
    """The one reason an event was not delivered, in plain words, with the fix."""
    for rejection in result.rejected:
        return f"the server rejected it: {rejection.reason}. Fix the event's fields and retry."
    kinds = {report.kind: report for report in reports}
    if "auth" in kinds:
        return (
            f"{endpoint} refused the API key (HTTP {kinds['auth'].status or 401}). Fix: "
            "set --api-key or DOOW_TRACK_API_KEY to a valid dk_ key (the local server prints "
            "its key when it starts)."
        )
    if "configuration" in kinds:
        status = re.search(r"answered (HTTP \d+)", kinds["configuration"].message)
        answered = f" (it answered {status[1]})" if status else ""
        return (
            f"{endpoint} is not Doow's ingest API{answered}. Fix: set --endpoint or "
            "DOOW_TRACK_ENDPOINT to the base URL alone, without a path: https://api.doow.co, "
            "or http://127.0.0.1:8787 for the local server."
        )
    if "validation" in kinds:
        return f"the server refused it: {kinds['validation'].message}"
    if "rate_limited" in kinds:
        return (
            f"{endpoint} is rate limiting this key (HTTP 429). Fix: wait a minute and retry; "
            "usage is delivered once the key is back under its event budget."
        )
    if "network" in kinds:
        cause = re.search(r"\(([^)]*)\)", kinds["network"].message)
        detail = f" ({cause[1]})" if cause else ""
        return (
            f"could not reach {endpoint}{detail}. Fix: check the endpoint, and that the server "
            "is running (doow-local serve, for the local one)."
        )
    return (
        f"no answer from {endpoint} within {timeout:g} s. Fix: check the endpoint and the "
        "network, or give more time with --timeout."
    )


def _spool_note(args: argparse.Namespace, out: TextIO) -> None:
    """After a failure: whether usage waits in the spool (say, from the same mistake)."""
    directory = Path(args.dir) if getattr(args, "dir", None) else default_spool_dir()
    if not directory.is_dir():
        return
    owners = _owners(directory, args)
    waiting = sum(len(group.paths) for group in owners)
    if waiting:
        print(
            f"note: {counted(waiting, 'batch')} of usage {'waits' if waiting == 1 else 'wait'} "
            "in the spool; after the fix, doow-otel spool shows whose and how to send it",
            file=out,
        )


def _spool(args: argparse.Namespace, out: TextIO) -> int:
    """`doow-otel spool [list|adopt|set-aside]`: built on Spool's public methods."""
    directory = Path(args.dir) if args.dir else default_spool_dir()
    if not directory.is_dir():
        print(f"The spool {directory} is empty: nothing waits.", file=out)
        return 0
    settings = Settings.resolve(api_key=args.api_key, endpoint=args.endpoint)
    owners = _owners(directory, args)
    if args.action == "list":
        _list_spool(directory, owners, settings, out)
        return 0
    others = [group for group in owners if not group.mine]
    chosen = others if args.all else [g for g in others if _picked(g, args.owners)]
    if not args.owners and len(others) == 1:
        chosen = others  # one other owner: no need to name it
    if not chosen and not others:
        print("Nothing of another endpoint or key waits in the spool.", file=out)
        return 0
    if not chosen:
        _list_spool(directory, owners, settings, out)
        ids = ", ".join(_short(g.owner) for g in others)
        print(f"Say which: --from ID (one of {ids}) or --all.", file=sys.stderr)
        return 2
    reports = _Reports(sys.stderr, skip=("configuration",))  # the others left: listed above
    if args.action == "set-aside":
        spool = Spool(directory)
        moved = windows = 0
        for group in chosen:
            for path in group.paths:
                entry = spool.load(path)
                spool.set_aside(path, len(entry.batch) if entry else 0)
                moved += 1
            if group.owner:
                windows += set_aside_journals(directory, group.owner, directory / "set-aside")
        journals = f" and {counted(windows, 'journal window')}" if windows else ""
        print(
            f"Set aside {counted(moved, 'batch')}{journals} in {directory / 'set-aside'}: "
            "never sent, kept for you to read.",
            file=out,
        )
        return 0
    problem = settings.problem()
    if problem:
        raise ConfigurationError(problem)
    client = _client(args, reports, spool=Spool(directory))
    with client:
        taken = windows = 0
        for group in chosen:
            assert client.spool is not None
            taken += client.spool.adopt_owner(group.owner)
            if group.owner:  # usage recorded, never sealed: the journals of stopped processes
                windows += adopt_journals(directory, group.owner, client.spool.owner)
        if windows:  # a tracker on this spool recovers its owner's dead journals, once
            from doow_otel.tracker import DoowTracker

            recovering = DoowTracker(client=client, flush_interval=3600, handle_sigterm=False)
            recovering.flush(timeout=args.timeout)
            recovering.shutdown(timeout=args.timeout)
        result = client.flush_spool(timeout=args.timeout)
    reports.close()
    journals = f" and {counted(windows, 'journal window')}" if windows else ""
    print(
        f"Adopted {counted(taken, 'batch')}{journals} for {client.endpoint} (key "
        f"{key_hint(settings.api_key)}): {counted(result.delivered, 'event')} delivered"
        + (f", {result.spooled} still waiting (doow-otel spool)" if result.spooled else "")
        + (f", {len(result.rejected)} rejected" if result.rejected else ""),
        file=out,
    )
    return 0 if result.ok else 1


def _owners(directory: Path, args: argparse.Namespace) -> list[Owner]:
    settings = Settings.resolve(api_key=args.api_key, endpoint=args.endpoint)
    spool = Spool(directory)
    spool.bind(settings.endpoint, settings.api_key or "")
    return spool.owners()


def _list_spool(directory: Path, owners: list[Owner], settings: Settings, out: TextIO) -> None:
    current = f"{settings.endpoint}, key {key_hint(settings.api_key)}"
    print(f"Spool {directory}", file=out)
    if not any(group.mine for group in owners):
        print(f"  for the current settings ({current}): nothing waits", file=out)
    spool = Spool(directory)
    for group in owners:
        events = 0
        for path in group.paths:
            entry = spool.load(path)
            events += len(entry.batch) if entry else 0
        size = f"{counted(len(group.paths), 'batch')}, {counted(events, 'event')}"
        if group.windows:  # recorded by track(), not yet sealed into events
            size += f", {counted(len(group.windows), 'journal window')}"
        age = _age(group.oldest_ns)
        if group.mine:
            tries = f" ({counted(group.attempts, 'failed attempt')})" if group.attempts else ""
            print(f"  for the current settings ({current}): {size}, oldest {age}", file=out)
            print(f"      not delivered yet{tries}; the next send retries it", file=out)
            if group.windows:
                print(
                    "      journal windows: a running process's, or a stopped one's that the "
                    "next DoowTracker on this spool sends",
                    file=out,
                )
            continue
        if group.endpoint is None:
            whose = (
                "endpoint and key not recorded (its process stopped before sending anything)"
                if not group.paths
                else "endpoint and key unknown (written by an earlier doow-otel)"
            )
            why = "whose it is was not recorded"
        else:
            whose = f"{group.endpoint}, key {group.key_prefix}"
            why = (
                "written with another endpoint"
                if group.endpoint != settings.endpoint
                else "written with another API key"
            )
        print(f"  {_short(group.owner)}  {whose}: {size}, oldest {age}", file=out)
        print(f"      {why}: not sent with the current settings", file=out)
    aside = directory / "set-aside"
    parked = sorted(aside.glob("*.batch")) if aside.is_dir() else []
    if parked:
        print(
            f"  set aside: {counted(len(parked), 'batch')} in {aside} (Doow refused them, "
            "kept failing on them, or you set them aside): never resent",
            file=out,
        )
    others = [group for group in owners if not group.mine]
    if others:
        first = _short(others[0].owner)
        which = "" if len(others) == 1 else f" --from {first} (or --all)"
        print(
            f"If it is yours: doow-otel spool adopt{which} sends it with the current key and "
            f"endpoint. If not: doow-otel spool set-aside{which}.",
            file=out,
        )


def _short(owner: str) -> str:
    return owner[:8] if owner else "unowned"


def _picked(group: Owner, wanted: Sequence[str]) -> bool:
    return any(
        (w == "unowned" and not group.owner) or (w and group.owner.startswith(w)) for w in wanted
    )


def _age(created_ns: int) -> str:
    if not created_ns:
        return "of unknown age"
    seconds = max(0, time.time() - created_ns / 1e9)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            return f"{counted(int(seconds // size), unit)} ago"
    return f"{counted(int(seconds), 'second')} ago"


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
