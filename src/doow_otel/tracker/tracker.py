"""`DoowTracker`: the seed SDK's `track()` API, durable from the call, sent per window.

`track()` validates at the call (a bad event is a programming error: `InvalidEvent`
right there; a zero quantity bills nothing and raises nothing) and hands the amount to
the recorder (`doow_otel.delivery.recorder`): summed per route in the open window and
appended to the journal before `track()` returns, so a process killed at any instant
loses nothing. Windows are sealed on clock-aligned boundaries (`flush_interval`, 60 s by
default) and by every flush (a serverless invocation's end), into one event per stream
with every metric in it, as Doow's event budget allows: over budget a window stays open
and grows, and the usage goes when the budget has room. Usage records with their own
identity (an idempotency key, an event id, a timestamp, ADJUSTMENT, metadata) go one by
one, in the window's batch.

Route "doow" (default) sends to Doow through the spool and the client; route "collector"
pushes each sealed window as OTLP to an OpenTelemetry Collector with the doow exporter
(the Lambda extension, a gateway). Given a `meter_provider`, the usage is also recorded
on it (scope `doow_otel.mirror`, never billed) for the application's own dashboards, and
so is the delivery's health (`doow_otel.otel.self_metrics`, never billed either).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import random
import time
import weakref
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from doow_otel._version import __version__
from doow_otel.delivery.client import DEFAULT_SPOOL, DoowClient
from doow_otel.delivery.clients import release_client, shared_client
from doow_otel.delivery.clock import WindowClock
from doow_otel.delivery.config import Settings, spool_directory
from doow_otel.delivery.deadline import for_export, within
from doow_otel.delivery.lifecycle import at_fork, at_snapshot, flush_on_sigterm, forget_on_sigterm
from doow_otel.delivery.recorder import DoowSink, Recorder, WindowSink
from doow_otel.delivery.spool import Spool
from doow_otel.errors import ConfigurationError, InvalidEvent, counted
from doow_otel.model.attribution import AttributionPolicy
from doow_otel.model.fields import MAX_INT_QUANTITY, AttributeValue, reserved_key_problem
from doow_otel.model.ids import random_id
from doow_otel.model.records import record_event
from doow_otel.model.times import format_time
from doow_otel.otel.baggage import license_in_context
from doow_otel.otel.conversion import MIRROR_SCOPE, ConversionOptions
from doow_otel.otel.otlp_push import CollectorSink
from doow_otel.tracker.routes import Routes, checked_quantity, plain_quantity
from doow_otel.tracker.strictness import Strictness

if TYPE_CHECKING:  # the SDK's metrics and traces load only where they are used
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["MIRROR_SCOPE", "DoowTracker", "configure"]

logger = logging.getLogger("doow_otel")

DEFAULT_MAX_ROUTES = 100_000
"""Distinct (metric, unit, license, attribution) per window before attribution folds."""
_SEED_FIELDS = frozenset(
    {
        "metric", "quantity", "license_id", "unit", "attribution", "kind", "timestamp",
        "metadata", "source_system", "metric_tuple_hint", "idempotency_key", "event_id",
    }
)  # fmt: skip
_INF = float("inf")


class DoowTracker:
    """Record usage for Doow: `meter.track(metric=..., quantity=..., license_id=...)`."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        endpoint: str | None = None,
        default_license_id: str | None = None,
        attribution: Mapping[str, AttributeValue] | None = None,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
        logger_provider: Any = None,
        flush_at: int | None = None,
        flush_interval: float | None = None,
        timeout: float = 10.0,
        spool: Any = DEFAULT_SPOOL,
        on_error: Any = None,
        disabled: bool | None = None,
        client: DoowClient | None = None,
        handle_sigterm: bool = True,
        route: Literal["doow", "collector"] | None = None,
        collector_endpoint: str | None = None,
        record_unsampled_usage: bool = True,
        events_per_minute: int | None = None,
        max_routes: int = DEFAULT_MAX_ROUTES,
        durable: bool = False,
        strict: bool | None = None,
        http_client: Any = None,
    ) -> None:
        """`flush_interval`: the window, in seconds (`DOOW_TRACK_FLUSH_INTERVAL` in ms;
        60 s by default): at most one event per stream per window. `flush_at` is accepted
        for Doow's SDKs' sake and ignored: a count of calls never sends aggregated usage.
        `events_per_minute`: Doow's event budget, when known (else learned from Doow's
        answers). `max_routes`: distinct attribution sets per window before attribution
        folds. `durable=True`: fsync each window's journal as it is sealed (survives a
        power loss, at a cost per window). `strict`: raise `InvalidEvent` at a bad call
        (True), or report and count it (False); by default strict under pytest only
        (tracker/strictness.py). `http_client`: an `httpx.Client` (or a function
        making one, where the process forks after setup) to send through instead of the
        default transport (`doow-otel[httpx]`; `doow_otel.delivery.transport.httpx`)."""
        route = route or os.environ.get("DOOW_ROUTE", "doow")  # type: ignore[assignment]
        if route not in ("doow", "collector"):
            raise ConfigurationError(
                f"route: {route!r} must be 'doow' (send to Doow) or 'collector' (send OTLP to "
                "an OpenTelemetry Collector with the doow exporter)"
            )
        if max_routes < 1:
            raise ConfigurationError("max_routes: must be at least 1 (default 100,000)")
        self.route = route
        self.collector_endpoint = collector_endpoint  # None: OTEL_EXPORTER_OTLP_*, else localhost
        settings = Settings.resolve(
            api_key=api_key,
            endpoint=endpoint,
            disabled=disabled,
            flush_at=flush_at,
            flush_interval=flush_interval,
            attribution=dict(attribution) if attribution is not None else None,
            default_license_id=default_license_id,
        )
        self.settings = settings
        self.disabled = settings.disabled
        reserved = reserved_key_problem(settings.attribution)
        if reserved:
            raise ConfigurationError(f"attribution: {reserved}")
        # A missing or malformed key is reported when sending would start, not raised
        # here: a module-level tracker must never crash an import.
        self.problem = None if route == "collector" or client is not None else settings.problem()
        self._client_args: dict[str, Any] = {
            "api_key": settings.api_key,
            "endpoint": settings.endpoint,
            "timeout": timeout,
            "spool": spool,
            "on_error": on_error,
            "disabled": settings.disabled,
            "events_per_minute": events_per_minute,
            "durable": durable,
        }
        if http_client is not None:
            from doow_otel.delivery.transport.httpx import HttpxTransport  # the extra, if used

            self._client_args["transport"] = HttpxTransport(http_client)
        if route == "collector" or settings.disabled or self.problem is not None:
            # through a collector, the collector holds the key and talks to Doow
            self._client_args.update(api_key=None, spool=None, disabled=True)
        self._owns_client = client is None
        self.client = client or shared_client(**self._client_args)
        self.timeout = timeout
        self.window = settings.flush_interval
        self._default_license = settings.default_license_id
        self.options = ConversionOptions(default_license_id=self._default_license)
        self.policy = policy = AttributionPolicy()
        self.meter_provider = meter_provider
        mirror = meter_provider.get_meter(MIRROR_SCOPE, __version__) if meter_provider else None
        self._routes = Routes(base=policy.clean(settings.attribution), policy=policy, mirror=mirror)
        self._spool_directory = self._journal_directory(spool, client)
        self._durable = durable
        self._max_routes = max_routes
        self._sink = self._make_sink()
        self._recorder = self._make_recorder()
        if meter_provider is not None:  # delivery health on the application's dashboards
            from doow_otel.otel.self_metrics import publish_tracker_metrics

            me = weakref.ref(self)  # the metrics never keep a tracker alive
            publish_tracker_metrics(
                meter_provider,
                client=lambda: None if (held := me()) is None else held.client,
                recorder=lambda: None if (held := me()) is None else held._recorder,
            )
        self._exporters: list[Any] = []  # asked after each flush whether usage was lost
        if isinstance(self._sink, (_Unsendable, DoowSink)):
            self._exporters.append(self._sink)
        self._recovered = False
        self._closed = False
        self._off = self.disabled  # disabled, or shut down
        self.counts = {"tracked": 0, "records": 0, "after_shutdown": 0}
        self.strictness = Strictness(self.client.report, strict)
        self.logger_provider: Any = logger_provider
        self.tracer_provider = tracer_provider
        if tracer_provider is not None:
            from doow_otel.otel.traces import add_span_processing

            self._exporters.append(
                add_span_processing(
                    tracer_provider,
                    self.client,
                    self.options,
                    problem=self.problem,
                    record_unsampled_usage=record_unsampled_usage,
                )
            )
        self._clock = WindowClock(self._on_window, self.window)
        if not self._off:
            self._clock.start()
        atexit.register(self._at_exit)
        at_fork(self, after_in_child=DoowTracker._after_fork_in_child)
        at_snapshot(
            self, before=DoowTracker._before_snapshot, after_restore=DoowTracker._after_restore
        )
        if handle_sigterm:
            flush_on_sigterm(self._at_exit, self._exit_budget)

    def __repr__(self) -> str:
        return f"DoowTracker(route={self.route!r}, client={self.client!r})"

    def _journal_directory(self, spool: Any, client: DoowClient | None) -> Path | None:
        """Where the journal lives: beside the spool (the collector route's own spool
        directory keeps only the journal)."""
        if self.disabled:
            return None
        if client is not None or self.route == "doow":
            held = (client or self.client).spool
            return held.directory if held is not None else None
        if spool is None:
            return None
        if spool is DEFAULT_SPOOL:
            return spool_directory()
        return spool.directory if isinstance(spool, Spool) else Path(spool)

    def _make_sink(self) -> WindowSink:
        if self.route == "collector":
            return CollectorSink(
                self.collector_endpoint,
                timeout=self.timeout,
                report=self.client.report,
                on_disk=self._spool_directory is not None,
            )
        if self.problem is not None:
            return _Unsendable(self.problem, self.client)
        return DoowSink(self.client)

    def _make_recorder(self) -> Recorder:
        owner = "journal"
        if self._spool_directory is not None:
            spool = self.client.spool
            if spool is None or spool.directory != self._spool_directory:  # the collector's
                spool = Spool(self._spool_directory, report=self.client.report)
                spool.bind(self.collector_endpoint or "collector", "")
            owner = spool.owner
            spool.write_label()  # whose the journal's windows are (doow-otel spool lists them)
        resource: dict[str, str] = {}
        if self.route == "collector":  # the collector copies some into attribution
            from opentelemetry.sdk.resources import Resource

            resource = {
                key: str(value)
                for key, value in Resource.create().attributes.items()
                if not key.startswith("telemetry.sdk.")
            }
        return Recorder(
            self._sink,
            directory=self._spool_directory,
            owner=owner,
            report=self.client.report,
            durable=self._durable,
            max_routes=self._max_routes,
            resource=resource,
        )

    # --- recording ---

    def track(
        self,
        event: Mapping[str, Any] | None = None,
        /,
        *,
        metric: str | None = None,
        quantity: int | float | None = None,
        license_id: str | None = None,
        unit: str | None = None,
        attribution: Mapping[str, AttributeValue] | None = None,
        kind: str | None = None,
        timestamp: datetime | str | None = None,
        metadata: Mapping[str, AttributeValue] | None = None,
        source_system: str | None = None,
        metric_tuple_hint: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        event_id: str | None = None,
    ) -> str | None:
        """Record usage. Takes keywords, or one mapping with the seed's field names.

        Plain usage (metric, quantity, license, unit, attribution) is summed per window:
        one event per stream and window. A record with its own identity (a `kind` other
        than USAGE, a `timestamp`, `metadata`, a `source_system`, a `metric_tuple_hint`,
        an `idempotency_key` or an `event_id`) is sent on its own, as a usage record
        (docs/conversion.md), and its event id is returned (the id Doow and the local
        server's page show); the same `idempotency_key` (per license and metric) from any
        process bills once. Either way the usage is on disk when this returns."""
        try:  # free in CPython 3.11+ when nothing is raised
            if event is not None:
                if not isinstance(event, Mapping):
                    raise InvalidEvent("event", f"must be a mapping, got {type(event).__name__}")
                unknown = set(event) - _SEED_FIELDS
                if unknown:
                    name = sorted(map(str, unknown))[0]
                    known = sorted(_SEED_FIELDS)
                    raise InvalidEvent(name, f"is not a track() field; known: {known}")
                metric = event.get("metric")
                quantity = event.get("quantity")
                license_id = event.get("license_id")
                unit = event.get("unit")
                attribution = event.get("attribution")
                kind = event.get("kind")
                timestamp = event.get("timestamp")
                metadata = event.get("metadata")
                source_system = event.get("source_system")
                metric_tuple_hint = event.get("metric_tuple_hint")
                idempotency_key = event.get("idempotency_key")
                event_id = event.get("event_id")
            if not (  # plain usage: chained tests, as cheap as track() can be (no generator)
                (kind is None or kind == "USAGE")
                and timestamp is None
                and metadata is None
                and source_system is None
                and metric_tuple_hint is None
                and idempotency_key is None
                and event_id is None
            ):
                return self._track_record(
                    {
                        "metric": metric,
                        "quantity": quantity,
                        "license_id": license_id,
                        "unit": unit,
                        "attribution": attribution,
                        "kind": kind,
                        "timestamp": timestamp,
                        "metadata": metadata,
                        "source_system": source_system,
                        "metric_tuple_hint": metric_tuple_hint,
                        "idempotency_key": idempotency_key,
                        "event_id": event_id,
                    }
                )
            if license_id is None:
                license_id = license_in_context() or self._default_license
            if quantity == 0 and type(quantity) in (int, float):
                self._zero(metric, license_id, unit, attribution)
                return None
            route, mirror = self._routes.find(metric, quantity, license_id, unit, attribution)
            if type(quantity) is int:
                if not 0 < quantity <= MAX_INT_QUANTITY:
                    quantity = checked_quantity(quantity)  # raises, naming the field
            elif type(quantity) is not float or not 0.0 < quantity < _INF:
                quantity = checked_quantity(quantity)  # numeric subclasses pass, the rest raise
            if self._off:
                if self._closed:
                    self._tracked_after_shutdown()
                return None
            self._recorder.add(route, quantity)
            self.counts["tracked"] += 1
            if mirror is not None:
                mirror[0].add(quantity, mirror[1])
            return None
        except InvalidEvent as error:  # raised in strict mode, else reported and counted
            self.strictness.refused(error, quantity)
            return None

    def _zero(self, metric: Any, license_id: Any, unit: Any, attribution: Any) -> None:
        """A zero quantity bills nothing and is no programming error (a completion of zero
        tokens): the other fields are still checked, and the call counted."""
        self._routes.find(metric, 1, license_id, unit, attribution)
        self.strictness.zero()

    def _track_record(self, fields: dict[str, Any]) -> str | None:
        """A usage record: checked once, here, by the rules every path uses (records.py),
        its id fixed now (a random one when neither `event_id` nor `idempotency_key` is
        given), so a replay of the window is the same event."""
        body = {key: value for key, value in fields.items() if value is not None}
        if "quantity" in body:
            body["quantity"] = plain_quantity(body["quantity"])
        moment = body.get("timestamp")
        if isinstance(moment, datetime):
            if moment.tzinfo is None:
                raise InvalidEvent(
                    "timestamp", "is a naive datetime; pass a timezone-aware one (UTC)"
                )
            body["timestamp"] = format_time(moment)
        if "license_id" not in body:
            license_id = license_in_context() or self._default_license
            if license_id is None:
                self._routes.check_license(None)
            body["license_id"] = license_id
        if "attribution" in body:
            body["attribution"] = dict(self._routes.cleaned(body["attribution"]))
        if self._routes.base:
            body["attribution"] = {**self._routes.base, **body.get("attribution", {})}
        if "metadata" in body and not isinstance(body["metadata"], Mapping):
            raise InvalidEvent("metadata", "must be a mapping of str to str, int, float or bool")
        if "metadata" in body:
            body["metadata"] = dict(body["metadata"])
        if "metric_tuple_hint" in body and isinstance(body["metric_tuple_hint"], Mapping):
            body["metric_tuple_hint"] = dict(body["metric_tuple_hint"])
        now = datetime.now(timezone.utc)
        if "timestamp" not in body:
            body["timestamp"] = format_time(now)
        if "event_id" not in body and "idempotency_key" not in body:
            body["event_id"] = random_id()
        event = record_event(body, occurred_at=now)  # raises InvalidEvent naming the field
        if self._off:
            if self._closed:
                self._tracked_after_shutdown()
            return event.event_id
        self._recorder.add_record(body)
        self.counts["records"] += 1
        return event.event_id

    def _tracked_after_shutdown(self) -> None:
        self.counts["after_shutdown"] += 1
        if self.counts["after_shutdown"] == 1:
            self.client.report(
                "dropped",
                "usage tracked after the tracker shut down (shutdown(), exit or SIGTERM) is "
                "not recorded; this is reported once, and counted in dropped_after_shutdown",
                count=1,
            )

    @property
    def dropped_after_shutdown(self) -> int:
        """track() calls after shutdown: not recorded."""
        return self.counts["after_shutdown"]

    def stats(self) -> dict[str, int]:
        """The client's counters (`DoowClient.stats`), the windows' (recorded,
        windows_sealed, events_sealed, windows_extended, windows_recovered,
        events_recovered, folded) and the tracker's own: tracked (plain calls recorded),
        records, zero_quantities (quantity 0: nothing to bill), bad_inputs (calls refused
        and reported, in report mode), stripped_attribution (values the secret and payload
        policy removed), dropped_after_shutdown. `dropped` counts the client's drops and
        the windows' together."""
        client = self.client.stats()
        return {
            **client,
            **self._recorder.stats,
            "dropped": client["dropped"] + self._recorder.stats["dropped"],
            "tracked": self.counts["tracked"],
            "records": self.counts["records"],
            "zero_quantities": self.strictness.zero_quantities,
            "bad_inputs": self.strictness.bad_inputs,
            "stripped_attribution": sum(self.policy.stripped.values()),
            "dropped_after_shutdown": self.counts["after_shutdown"],
        }

    # --- flushing ---

    def flush(self, timeout: float | None = None) -> bool:
        """Seal and send what is recorded (as the budget allows), replay the spool, and
        flush the span and log usage of the providers given.

        True when everything went out or is kept on disk (the spool, or the journal of a
        window the budget holds); False (and `on_error` told why) when usage was neither
        delivered nor kept."""
        seconds = timeout if timeout is not None else self.timeout
        deadline = for_export(seconds)  # an enclosing deadline (a serverless flush's) bounds it
        with within(deadline):
            ok = self._seal(deadline)
            millis = int(max(0.0, deadline - time.monotonic()) * 1000)
            for provider in (self.meter_provider, self.tracer_provider, self.logger_provider):
                if provider is not None:
                    ok = bool(provider.force_flush(millis)) and ok
        for exporter in self._exporters:  # the SDK's processors ignore export results
            ok = not exporter.take_failures() and ok
        return ok

    def _seal(self, deadline: float, *, force: bool = False) -> bool:
        if self.disabled:
            return True
        if not self._recovered:  # dead processes' journals on this spool, once
            self._recovered = True
            self._recorder.recover(deadline)
        return self._recorder.seal(deadline=deadline, force=force)

    def _on_window(self) -> None:
        """A window boundary: seal and send (the backlog too, even with nothing new), and
        look again for dead processes' journals."""
        if self._closed:
            return
        self._recovered = False
        with contextlib.suppress(Exception):  # the clock thread must go on
            self._seal(time.monotonic() + min(self.timeout, self.window / 2))

    @property
    def has_pending(self) -> bool:
        """Anything recorded and not yet sealed, or waiting in the spool."""
        return self._recorder.pending or bool(self.client.pending_events())

    # --- doow_otel.serverless.Flushable: what the serverless wrappers use ---

    def needs_flush(self) -> bool:
        """False when an invocation's flush can be skipped. Spans, and log records the app
        emits on its own LoggerProvider, are not counted: either provider means a flush."""
        return (
            self.has_pending
            or self.tracer_provider is not None
            or self.logger_provider is not None
            or self.meter_provider is not None
        )

    def begin_invocation(self) -> None:
        """A wrapped invocation starts (nothing to hold: only windows send usage)."""

    def end_invocation(self) -> None:
        """A wrapped invocation ends; its wrapper flushes."""

    def shutdown(self, timeout: float | None = None) -> None:
        """Seal what is open whatever the budget (a window left open would wait for a
        successor process), send what the budget and the deadline allow, and close; what
        is not sent stays in the spool for the next process on it."""
        if self._closed:
            return
        seconds = timeout if timeout is not None else self.timeout
        deadline = time.monotonic() + seconds
        with contextlib.suppress(Exception), within(deadline):
            self._seal(deadline, force=True)
            for provider in (self.meter_provider, self.tracer_provider, self.logger_provider):
                if provider is not None:
                    provider.force_flush(int(max(0.0, deadline - time.monotonic()) * 1000))
        self._closed = True
        self._off = True
        self._clock.stop()
        # A window the sink did not take was reported as kept (in the journal, or in
        # memory for the next flush); with no journal on disk it is lost now, and said so.
        unsent = "the collector" if self.route == "collector" else "Doow"
        self._recorder.close(unsent=f"{unsent} did not take them")
        forget_on_sigterm(self._at_exit)
        with contextlib.suppress(Exception):
            atexit.unregister(self._at_exit)
        if isinstance(self._sink, CollectorSink):
            self._sink.close()
        if self._owns_client:
            release_client(self.client)

    @property
    def _exit_budget(self) -> float:
        """Seconds the flush at exit (or on SIGTERM) may take."""
        return min(self.timeout, 5.0)

    def _at_exit(self) -> None:
        with contextlib.suppress(Exception):  # never break interpreter exit
            self.shutdown(timeout=self._exit_budget)

    def __enter__(self) -> DoowTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # --- async code (ASGI apps: FastAPI, Starlette; doow_otel.lifespan) ---

    async def aflush(self, timeout: float | None = None) -> bool:
        """`flush()` for `async def` code: it runs on Doow's flush thread while the event
        loop serves other requests, and returns by `timeout` (what is late goes on in the
        background; nothing is lost). Flushes asked for at once go out together."""
        from doow_otel.serverless import flush_async

        return await flush_async(timeout if timeout is not None else self.timeout, tracker=self)

    async def ashutdown(self, timeout: float | None = None) -> None:
        """`shutdown()` for `async def` code, off the event loop."""
        import asyncio
        import threading
        from concurrent.futures import Future

        done: Future[None] = Future()

        def run() -> None:
            try:
                self.shutdown(timeout)
            finally:
                done.set_result(None)

        threading.Thread(target=run, name="doow-shutdown", daemon=True).start()
        await asyncio.wrap_future(done)

    async def __aenter__(self) -> DoowTracker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ashutdown()

    # --- fork safety (gunicorn --preload, multiprocessing) and Lambda SnapStart ---

    def _after_fork_in_child(self) -> None:
        """The child records on its own: a new journal, client, connections and clock;
        the parent's recorded usage stays the parent's (billed once, by it)."""
        if self._owns_client and not self._closed:
            self.client = shared_client(**self._client_args)
        for exporter in self._exporters:  # the sink among them
            exporter.after_fork_in_child(self.client)
        self._recorder.after_fork_in_child()
        self._clock = WindowClock(self._on_window, self.window)
        if not self._off:
            self._clock.start()

    def _before_snapshot(self) -> None:
        """Seal what init recorded before the snapshot: every restored copy of this
        process would otherwise seal its own copy of the open window."""
        self.shutdown_window(force=True)

    def shutdown_window(self, *, force: bool) -> bool:
        """Seal now (whatever the budget when `force`) and send within the timeout."""
        deadline = time.monotonic() + self.timeout
        with within(deadline):
            return self._seal(deadline, force=force)

    def _after_restore(self) -> None:
        """Each restored environment is a copy of the snapshot's process: it names its
        windows apart (a new journal), draws its own randomness (backoff jitter), opens
        its own connections and learns its key's state afresh."""
        random.seed()
        self._recorder.restart_journal()
        if self._owns_client and not self._closed:
            stale, self.client = self.client, DoowClient(**{
                k: v for k, v in self._client_args.items()
            })  # fmt: skip
            if isinstance(self._sink, DoowSink):
                self._sink.use_client(self.client)
            stale.close()
        if isinstance(self._sink, CollectorSink):
            self._sink.close()  # its next push opens a new connection

    # --- serverless wrappers (doow_otel.serverless) ---

    # Options (flush_timeout, safety_margin) as in doow_otel.serverless; usable as decorators
    # with or without them: `@meter.with_lambda` or `@meter.with_lambda(flush_timeout=1.0)`.

    def with_lambda(self, handler: Any = None, **options: Any) -> Any:
        import doow_otel.serverless as serverless

        return serverless.with_lambda(handler, tracker=self, **options)

    def with_vercel(self, handler: Any = None, **options: Any) -> Any:
        import doow_otel.serverless as serverless

        return serverless.with_vercel(handler, tracker=self, **options)

    def with_azure_function(self, function: Any = None, **options: Any) -> Any:
        import doow_otel.serverless as serverless

        return serverless.with_azure_function(function, tracker=self, **options)

    def invocation(self, **options: Any) -> Any:
        """`with meter.invocation(timeout=seconds_left):` (or `deadline=`, a time.monotonic())."""
        import doow_otel.serverless as serverless

        return serverless.invocation(tracker=self, **options)


class _Unsendable:
    """The sink of a tracker that cannot send (no key, a malformed one): each window's
    usage is reported as not sent, with the reason and the fix."""

    def __init__(self, problem: str, client: DoowClient) -> None:
        self.problem = problem
        self.client = client
        self._failed = 0

    def may_seal(self, events: int, deadline: float) -> bool:
        return True

    def budget(self) -> str:
        return ""

    def deliver(self, journal_id: str, window: Any, deadline: float) -> bool:
        count = len(window.sums) + len(window.records)
        self.client.report(
            "auth", f"{counted(count, 'usage record')} not sent: {self.problem}", count=count
        )
        self._failed += 1
        return True  # reported as lost: nothing keeps a window no key can ever send

    def drain(self, deadline: float) -> bool:
        return True

    def take_failures(self) -> int:
        """Windows not sent since the last call (the tracker's flush says False)."""
        failed, self._failed = self._failed, 0
        return failed


def configure(**kwargs: Any) -> DoowTracker:
    """A tracker wired into the application's existing OpenTelemetry setup.

    A global SDK TracerProvider gets Doow span processing added (not replaced); when no
    global MeterProvider is set, the tracker sets one (with Doow's reader, so that plain
    `Counter.add(..., {"doow.license_id": ...})` calls from app code reach Doow too).
    """
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if "tracer_provider" not in kwargs and isinstance(provider, TracerProvider):
        kwargs["tracer_provider"] = provider
    tracker = DoowTracker(**kwargs)
    if "meter_provider" not in kwargs and type(metrics.get_meter_provider()).__name__ in (
        "ProxyMeterProvider",
        "NoOpMeterProvider",
    ):
        from doow_otel.otel.metrics import DoowMetricExporter, metric_reader

        reader = metric_reader(
            DoowMetricExporter(tracker.client, options=tracker.options),
            interval=tracker.window,
        )
        meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=True)
        tracker.meter_provider = meter_provider
        metrics.set_meter_provider(meter_provider)
    return tracker
