"""What the Doow exporters share: a client, conversion options, and usage kept for later.

Each exporter (metrics, traces, logs) converts the SDK's data with
`doow_otel.otel.conversion` (the same rules as the Go collector exporter) and delivers
the events with a `DoowClient`. They sit beside the user's other exporters: an OTLP
exporter to a collector or a vendor keeps receiving everything.

Built with no client (`OTEL_METRICS_EXPORTER=doow` and the like, with
`opentelemetry-instrument`), an exporter configures itself from the environment and
shares one client (and so one spool) per process and configuration.
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import Any, Generic, TypeVar

from doow_otel.delivery.client import DoowClient
from doow_otel.delivery.clients import release_client, shared_client
from doow_otel.delivery.config import Settings
from doow_otel.delivery.deadline import for_export
from doow_otel.delivery.lifecycle import at_fork
from doow_otel.errors import counted
from doow_otel.model.event import UsageEvent
from doow_otel.otel.conversion import Conversion, ConversionOptions
from doow_otel.otel.sigterm import EXIT_BUDGET, built_by_doow, reached, watch

__all__ = ["MAX_RETAINED_EVENTS", "DoowExporterBase", "Retention"]

MAX_RETAINED_EVENTS = 100_000
"""Usage kept in memory for the next export when it could be neither delivered nor spooled."""
DEBUG_EVENTS = 20
"""Events listed one by one per export in the debug log."""
MAX_RETAINED_ATTEMPTS = 5
"""Exports a retained record rides along on before it is dropped (and reported)."""

T = TypeVar("T")
logger = logging.getLogger("doow_otel")


class Retention(Generic[T]):
    """What an exporter keeps in memory for the next export: usage it could neither
    deliver nor spool (retried, bounded), usage held while a fork is under way (it
    belongs to the parent), and how many exports failed since the last check."""

    def _reset_retention(self) -> None:
        self._lock = threading.Lock()
        self._retained: list[tuple[T, int]] = []
        self._failed = 0  # exports since the last check that left usage undelivered and unkept
        self.holding = False  # while a fork is under way, exports are held for the parent

    @property
    def has_retained(self) -> bool:
        return bool(self._retained)

    def take_failures(self) -> int:
        """Exports that left usage neither delivered nor kept, since the last call."""
        with self._lock:
            failed, self._failed = self._failed, 0
        return failed

    def _fail(self) -> None:
        with self._lock:
            self._failed += 1


class DoowExporterBase(Retention[UsageEvent]):
    def __init__(
        self,
        client: DoowClient | None = None,
        *,
        options: ConversionOptions | None = None,
        problem: str | None = None,
        **client_kwargs: Any,
    ) -> None:
        self._shared = client is None
        if client is None:
            # Built with no client (opentelemetry-instrument does): configured from the
            # environment; a missing key is reported at the first export, never raised
            # here, where it would abort the application's whole OpenTelemetry setup.
            settings = Settings.resolve(
                api_key=client_kwargs.get("api_key"),
                endpoint=client_kwargs.get("endpoint"),
                disabled=client_kwargs.get("disabled"),
            )
            problem = problem or settings.problem(
                allow_insecure=bool(client_kwargs.get("allow_insecure"))
            )
            if problem is not None:
                client_kwargs.update(api_key=None, spool=None, disabled=True)
            client = shared_client(**client_kwargs)
            at_fork(self, after_in_child=lambda alive: alive._reopen(client_kwargs))
        self.client = client
        if options is None:
            options = ConversionOptions(default_license_id=Settings.resolve().default_license_id)
        self.options = options
        # Why this configuration cannot send (a missing key): reported at each export.
        self.problem = problem
        self._reset_retention()  # retained: (event, attempts)
        # Made by the application or OpenTelemetry's setup, not by DoowTracker (which
        # flushes its own): flushed on SIGTERM, checked at the first export that the flush
        # reaches it, and the spool replayed at shutdown.
        self._standalone = not built_by_doow()
        self._unchecked = self._standalone
        if self._standalone:
            watch()

    def after_fork_in_child(self, client: DoowClient) -> None:
        """What was held or retained belongs to the parent; the child sends on its own client."""
        self._reset_retention()
        self.client = client

    def _reopen(self, client_kwargs: dict[str, Any]) -> None:
        """In a forked child: a client of its own (the registry was emptied first)."""
        self.after_fork_in_child(shared_client(**client_kwargs))

    def _check_reached(self) -> None:
        self._unchecked = False
        if not reached(self):
            logger.warning(
                "doow: this %s is in an OpenTelemetry provider that is not the global one, "
                "and nothing flushes it on SIGTERM: usage waiting in it when the process is "
                "stopped is lost. Call doow_otel.flush_on_sigterm(provider) once, or flush "
                "the provider in your own SIGTERM handler.",
                type(self).__name__,
            )

    def _debug(self, read: str, conversion: Conversion) -> None:
        """DOOW_TRACK_DEBUG=true: what this export read, and what became of it. Events carry
        attribution the policy has cleaned already; the key is never here."""
        if not logger.isEnabledFor(logging.DEBUG):
            return
        events = conversion.events
        not_billed = dict(conversion.dropped + conversion.suspected)
        logger.debug(
            "doow: %s export: %s read, %d usage events, not billed %s (the rest is other "
            "telemetry: no doow.* attribute, no usage event name)",
            type(self).__name__,
            read,
            len(events),
            not_billed or "none",
        )
        for event in events[:DEBUG_EVENTS]:
            logger.debug(
                "doow:   event %s: %s %s=%s license %s at %s, attribution %s",
                event.event_id,
                event.kind,
                event.metric,
                event.quantity,
                event.license_id,
                event.occurred_at.isoformat(),
                dict(event.attribution),
            )
        if len(events) > DEBUG_EVENTS:
            logger.debug("doow:   ... and %d more events", len(events) - DEBUG_EVENTS)

    def _deliver(self, conversion: Conversion, timeout_seconds: float) -> bool:
        if self._unchecked:
            self._check_reached()
        for code, count in sorted((conversion.dropped + conversion.suspected).items()):
            self.client.report.usage_not_billed(code, count, partial(conversion.describe, code))
        ok = not conversion.dropped
        if self.holding:
            with self._lock:
                self._retained.extend((event, 0) for event in conversion.events)
            return ok
        with self._lock:
            retained, self._retained = self._retained, []
        events = [event for event, _ in retained] + conversion.events
        if self.problem is not None:
            if events:
                self.client.report(
                    "auth",
                    f"{counted(len(events), 'usage record')} not sent: {self.problem}",
                    count=len(events),
                )
                self._fail()
            return False
        if not events and not (self.client.spool and len(self.client.spool)):
            if not ok:
                self._fail()
            return ok
        # With no spool, what Doow did not take stays here for the next export (the same
        # ids: what did arrive is deduplicated by Doow).
        keeps = self.client.spool is None and not self.client.disabled
        try:
            result = self.client.send(
                events, deadline=for_export(timeout_seconds), caller_keeps=keeps
            )
        except Exception as exc:  # a bug below must not lose what was taken out above
            with self._lock:
                self._retained[:0] = retained + [(e, 0) for e in conversion.events]
            self.client.report(
                "network",
                f"{counted(len(events), 'usage record')} kept in memory for the next export: "
                f"the send failed ({type(exc).__name__}: {exc})",
                count=len(events),
            )
            self._fail()
            return False
        if result.returned:
            attempts = [n for _, n in retained] + [0] * len(conversion.events)
            self._retain(events, attempts)
        logger.debug(
            "doow: sent %d events (%d of them kept from earlier exports): delivered %d, "
            "kept in the spool %d, rejected %d, dropped %d",
            len(events),
            len(retained),
            result.delivered,
            result.spooled,
            len(result.rejected),
            result.dropped,
        )
        # Spooled events are ours to deliver later: the export itself succeeded; kept in
        # memory, they are not safe yet.
        ok = ok and not result.dropped and not result.returned
        if not ok:
            self._fail()
        return ok

    def _retain(self, events: list[UsageEvent], attempts: list[int]) -> None:
        keep = [(e, n + 1) for e, n in zip(events, attempts, strict=True)]
        given_up = [e for e, n in keep if n > MAX_RETAINED_ATTEMPTS]
        keep = [(e, n) for e, n in keep if n <= MAX_RETAINED_ATTEMPTS]
        overflow = max(0, len(keep) - MAX_RETAINED_EVENTS)
        if given_up or overflow:
            self.client.drop(
                len(given_up) + overflow,
                f"not delivered after {MAX_RETAINED_ATTEMPTS} exports or past "
                f"{MAX_RETAINED_EVENTS:,} waiting in memory, with no spool to keep them",
            )
        keep = keep[overflow:]
        with self._lock:
            self._retained = keep + self._retained

    def _flush_spool(self, timeout_millis: float) -> bool:
        if self._retained:
            return self._deliver(Conversion(), timeout_millis / 1000)
        if self.client.spool is None or not len(self.client.spool):
            return True
        result = self.client.flush_spool(deadline=for_export(timeout_millis / 1000))
        return result.spooled == 0

    def _shutdown(self) -> None:
        # What an earlier process (or export) kept goes out now: a process whose exit
        # exports nothing new (no usage since its last export) still delivers the spool.
        if self._standalone and self.problem is None and not self.client.disabled:
            try:
                self._flush_spool(min(self.client.timeout, EXIT_BUDGET) * 1000)
            except Exception:  # never break the interpreter's exit
                logger.exception("doow: replaying the spool at shutdown failed")
        with self._lock:
            lost, self._retained = len(self._retained), []
        if lost:  # kept in memory for an export that will not come
            self.client.drop(lost, "not delivered by the last export, and no spool keeps them")
        if self._shared:
            release_client(self.client)
