"""`DoowTracker`: the seed SDK's `track()` API, recorded on OpenTelemetry.

`track()` validates at the call (a bad event is a programming error: `InvalidEvent`
right there) and adds to an OTel Counter, one cached instrument per metric and
unit. The Doow metric exporter turns the counters' delta data points into events,
so a burst of `track()` calls with the same attributes costs one event per export,
and every path to Doow (in-process, or through a collector) is the OTel one.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import operator
import os
import re
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Literal

from opentelemetry import metrics, trace
from opentelemetry.metrics import Counter, Meter
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from doow_otel._version import __version__
from doow_otel.delivery.client import DEFAULT_SPOOL, DoowClient
from doow_otel.delivery.clients import release_client, shared_client
from doow_otel.delivery.config import Settings
from doow_otel.delivery.lifecycle import at_fork, flush_on_sigterm, forget_on_sigterm
from doow_otel.delivery.wire import MAX_BATCH_EVENTS
from doow_otel.errors import ConfigurationError, InvalidEvent
from doow_otel.model.attribution import AttributionPolicy
from doow_otel.model.fields import (
    MAX_ATTRIBUTES,
    MAX_INT_QUANTITY,
    AttributeValue,
    attributes_problem,
    license_problem,
    metric_problem,
    quantity_problem,
    reserved_key_problem,
    unit_problem,
)
from doow_otel.model.ids import random_id
from doow_otel.model.records import record_event
from doow_otel.model.times import format_time
from doow_otel.otel.baggage import LICENSE_KEY, license_from_baggage
from doow_otel.otel.conversion import TRACKER_SCOPE, USAGE_EVENT_NAME, ConversionOptions
from doow_otel.otel.metrics import (
    DELTA_TEMPORALITY,
    DoowMetricExporter,
    RetainingMetricExporter,
    metric_reader,
)
from doow_otel.otel.traces import add_span_processing
from doow_otel.tracker.strictness import Strictness

__all__ = ["DoowTracker", "configure"]

logger = logging.getLogger("doow_otel")

# OpenTelemetry instrument names are stricter than Doow metric names (they must start
# with a letter and may not contain ':'); other names ride in a doow.metric attribute.
_OTEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/]{0,254}")
_SEED_FIELDS = frozenset(
    {
        "metric", "quantity", "license_id", "unit", "attribution", "kind", "timestamp",
        "metadata", "source_system", "metric_tuple_hint", "idempotency_key", "event_id",
    }
)  # fmt: skip
_CACHE_LIMIT = 4096
_INT64_BOUND = 2.0**63
_INF = math.inf
# (the attribution as given, its value types unless all are str, counter, attributes)
_Route = tuple[
    dict[str, AttributeValue] | None, tuple[type, ...] | None, Counter, dict[str, AttributeValue]
]


class DoowTracker:
    """Record usage for Doow: `meter.track(metric=..., quantity=..., license_id=...)`.

    By default it owns a MeterProvider whose reader exports to Doow every
    `flush_interval` seconds and as soon as `flush_at` records are waiting. Given
    a `meter_provider`, it records on that instead (which then needs a Doow reader,
    `doow_otel.metric_reader()`, or an OTLP route to a collector with the doow exporter).
    """

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
        strict: bool | None = None,
    ) -> None:
        route = route or os.environ.get("DOOW_ROUTE", "doow")  # type: ignore[assignment]
        if route not in ("doow", "collector"):
            raise ConfigurationError(
                f"route: {route!r} must be 'doow' (send to Doow) or 'collector' (send OTLP to "
                "an OpenTelemetry Collector with the doow exporter)"
            )
        self.route = route
        self.collector_endpoint = collector_endpoint  # None: OTEL_EXPORTER_OTLP_*, else localhost
        if route == "collector":
            spool = None  # the collector's persistent queue keeps what is not delivered
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
        }
        if route == "collector" or settings.disabled or self.problem is not None:
            # through a collector, the collector holds the key and talks to Doow
            self._client_args.update(api_key=None, spool=None, disabled=True)
        self._owns_client = client is None
        self.client = client or shared_client(**self._client_args)
        self.timeout = timeout
        self.strictness = Strictness(self.client.report, strict)
        self._tracked = 0
        self.policy = AttributionPolicy()
        self._base: dict[str, AttributeValue] = self.policy.clean(settings.attribution)
        self._default_license = settings.default_license_id
        self._counters: dict[tuple[str, str | None], tuple[Counter, str | None]] = {}
        self._room = MAX_ATTRIBUTES - len(self._base)  # attribution keys left beside the base
        self._kept: set[tuple[str, object]] = set()  # (key, value) pairs checked and kept
        # (metric, unit, license[, attribution items]) -> _Route
        self._routes: dict[tuple[object, ...], _Route] = {}
        self._last: dict[tuple[object, object, object], _Route] = {}  # the latest per license
        self._valid_licenses: set[str] = set()
        self._pending = 0
        # Wrapped serverless invocations running (doow_otel.serverless): each flushes at its
        # end, so `flush_at` waits for a full batch and the invocation costs one request.
        self.invocations = 0
        self._flush_at = settings.flush_at  # MAX_BATCH_EVENTS while invocations run
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._flush_wanted = threading.Event()
        self._closed = False
        self._off = self.disabled  # disabled, or shut down
        self._after_shutdown = 0
        options = ConversionOptions(default_license_id=self._default_license)
        self.options = options

        self._owns_meter_provider = meter_provider is None
        self._exporters: list[Any] = []  # ours, asked after each flush whether usage was lost
        self._reader: Any = None
        if meter_provider is None:
            exporter: MetricExporter = (
                RetainingMetricExporter(
                    _collector_exporter(collector_endpoint, timeout), self.client.report
                )
                if route == "collector"
                else DoowMetricExporter(self.client, options=options, problem=self.problem)
            )
            self._exporters.append(exporter)
            reader = metric_reader(exporter, interval=settings.flush_interval, timeout=timeout)
            self._reader = reader
            meter_provider = MeterProvider(
                metric_readers=[reader],
                resource=Resource.create({"service.instance.id": random_id()}),
                shutdown_on_exit=False,  # our own atexit hook flushes then shuts down
                # Doow events carry no exemplars: sampling them would cost every track()
                exemplar_filter=AlwaysOffExemplarFilter(),
            )
        self.meter_provider = meter_provider
        self._meter: Meter = meter_provider.get_meter(TRACKER_SCOPE, __version__)
        # usage records (their own id, kind, time or metadata) go one by one as log
        # records: through the app's LoggerProvider when given, else one of ours, made
        # at the first record (the logs SDK costs a cold start nothing until then)
        self._owns_logger_provider = logger_provider is None
        self.logger_provider: Any = logger_provider
        self._usage_logger: Any = None
        self.tracer_provider = tracer_provider
        if tracer_provider is not None:
            self._exporters.append(
                add_span_processing(
                    tracer_provider,
                    self.client,
                    options,
                    problem=self.problem,
                    record_unsampled_usage=record_unsampled_usage,
                )
            )
        atexit.register(self._at_exit)
        at_fork(
            self,
            before=DoowTracker._before_fork,
            after_in_parent=DoowTracker._after_fork_in_parent,
            after_in_child=DoowTracker._after_fork_in_child,
        )
        if handle_sigterm:
            flush_on_sigterm(self._at_exit, self._exit_budget)

    def __repr__(self) -> str:
        return f"DoowTracker(client={self.client!r})"

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

        Returns the event id Doow (and the local server's page) will show for a record with
        its own identity, None for plain usage (aggregated: its event id is made at export).
        Zero quantity bills nothing and is not an error; other bad input raises
        `InvalidEvent` in strict mode and is reported and counted otherwise (see
        `doow_otel.tracker.strictness`: strict under pytest, reporting in production).

        Plain usage (metric, quantity, license, unit, attribution) is added to a counter:
        a burst costs one event per export. A record with its own identity (a `kind`
        other than USAGE, a `timestamp`, `metadata`, a `source_system`, a
        `metric_tuple_hint`, an `idempotency_key` or an `event_id`) is sent on its own,
        as a usage record (docs/conversion.md); the same `idempotency_key` (per license
        and metric) from any process bills once."""
        try:
            if event is not None:
                if not isinstance(event, Mapping):
                    raise InvalidEvent("event", f"must be a mapping, got {type(event).__name__}")
                unknown = set(event) - _SEED_FIELDS
                if unknown:
                    name = sorted(map(str, unknown))[0]
                    fields = sorted(_SEED_FIELDS)
                    raise InvalidEvent(name, f"is not a track() field; known: {fields}")
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
                license_id = license_from_baggage() or self._default_license
            # The same fields as the last call for this metric and license (the common case):
            # one lookup and a dict comparison instead of the checks in _route
            try:
                seen, types, counter, attributes = self._last[metric, unit, license_id]
                # equal dicts may list their keys in another order: types key by key, in seen's
                known = seen == attribution and (
                    types is None or types == tuple([type(attribution[k]) for k in seen])  # type: ignore[index,union-attr]
                )
            except (KeyError, TypeError):  # new, or unhashable (named by the checks)
                known = False
            if not known:
                counter, attributes = self._route(metric, quantity, license_id, unit, attribution)
            if type(quantity) is int:
                if not 0 < quantity <= MAX_INT_QUANTITY:
                    quantity = _checked_quantity(quantity)  # raises, naming the field
            elif type(quantity) is not float or not 0.0 < quantity < _INF:
                quantity = _checked_quantity(quantity)  # numeric subclasses pass, the rest raise
            if self._off:
                if self._closed:
                    self._tracked_after_shutdown()
                return None
            counter.add(quantity, attributes)
            self._pending += 1
            self._tracked += 1
            if self._pending >= self._flush_at:
                self._flush_soon()
            return None
        except InvalidEvent as error:  # raised or reported and counted (tracker/strictness.py)
            if event is not None and isinstance(event, Mapping):
                quantity = event.get("quantity")
            self.strictness.refused(error, quantity)
            return None

    def _route(
        self, metric: Any, quantity: Any, license_id: Any, unit: Any, attribution: Any
    ) -> tuple[Counter, dict[str, AttributeValue]]:
        """track()'s checks, in the order of its fields (the first bad one is named): the
        counter and the attributes to record.

        Fields that passed are remembered (bounded) with the attributes made for them,
        unless the policy stripped some attribution. Equal values of other types (1, 1.0
        and True) are equal keys: a remembered route is used only for values of its types.
        """
        try:
            known = self._routes[
                (metric, unit, license_id)
                if attribution is None
                else (metric, unit, license_id, *attribution.items())
            ]
        except (KeyError, TypeError, AttributeError):  # new, unhashable or not a mapping
            known = None
        if known is not None and (
            known[1] is None or known[1] == tuple(map(type, attribution.values()))
        ):
            self._last[metric, unit, license_id] = known
            return known[2], known[3]
        try:
            counter, alias = self._counters[metric, unit]
        except (KeyError, TypeError):  # a new metric and unit, or an unhashable one (named there)
            counter, alias = self._instrument(metric, unit)
        _checked_quantity(quantity)
        if type(license_id) is not str or license_id not in self._valid_licenses:
            self._check_license(license_id)
        cleaned = self._cleaned(attribution) if attribution is not None else {}
        attributes: dict[str, AttributeValue] = {**self._base, **cleaned}
        attributes[LICENSE_KEY] = license_id
        if alias is not None:
            attributes["doow.metric"] = alias
        seen: dict[str, AttributeValue] | None = None
        types: tuple[type, ...] | None = None
        if attribution is None:
            key: tuple[object, ...] = (metric, unit, license_id)
        elif type(attribution) is dict and len(cleaned) == len(attribution):
            key = (metric, unit, license_id, *attribution.items())
            seen = dict(attribution)  # a copy: the caller may change theirs
            types = tuple(map(type, seen.values()))
            if all(kind is str for kind in types):
                types = None  # nothing but a str equals a str: equal is enough
        else:
            return counter, attributes
        if len(self._routes) >= _CACHE_LIMIT:
            self._routes.clear()
            self._last.clear()
        # never changed once made (the SDK copies the attributes it keeps)
        route = (seen, types, counter, attributes)
        self._routes[key] = self._last[metric, unit, license_id] = route
        return counter, attributes

    def _track_record(self, fields: dict[str, Any]) -> str:
        """A usage record: checked here by the rules every path uses (records.py), then
        one log record whose body is the record, with its id fixed now (a random one when
        neither `event_id` nor `idempotency_key` is given), so retries and replays of
        the log record are one event."""
        body = {key: value for key, value in fields.items() if value is not None}
        if "quantity" in body:
            body["quantity"] = _plain_quantity(body["quantity"])
        moment = body.get("timestamp")
        if isinstance(moment, datetime):
            if moment.tzinfo is None:
                raise InvalidEvent(
                    "timestamp", "is a naive datetime; pass a timezone-aware one (UTC)"
                )
            body["timestamp"] = format_time(moment)
        if "license_id" not in body:
            license_id = license_from_baggage() or self._default_license
            if license_id is None:
                self._check_license(None)
            body["license_id"] = license_id
        if "attribution" in body:
            body["attribution"] = dict(self._cleaned(body["attribution"]))
        if self._base:
            body["attribution"] = {**self._base, **body.get("attribution", {})}
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
        event_id = record_event(body, occurred_at=now).event_id  # raises InvalidEvent
        if self._off:
            if self._closed:
                self._tracked_after_shutdown()
            return event_id
        logger = self._records_logger()
        stamp = time.time_ns()
        from opentelemetry._logs import SeverityNumber

        fields = {
            "timestamp": stamp,
            "observed_timestamp": stamp,
            "severity_number": SeverityNumber.INFO,
            "body": body,
            "attributes": {"event.name": USAGE_EVENT_NAME},
        }
        try:  # before opentelemetry-sdk 1.39 the SDK's loggers take the SDK's own record
            from opentelemetry.sdk._logs import LogRecord as SdkLogRecord  # type: ignore[attr-defined]
        except ImportError:
            logger.emit(**fields)
        else:
            from opentelemetry.trace import TraceFlags

            logger.emit(
                SdkLogRecord(
                    resource=getattr(logger, "resource", None),
                    trace_id=0,
                    span_id=0,
                    trace_flags=TraceFlags(0),
                    **fields,
                )
            )
        self._pending += 1
        self._tracked += 1
        if self._pending >= self._flush_at:
            self._flush_soon()
        return event_id

    def _records_logger(self) -> Any:
        if self._usage_logger is None:
            with self._lock:
                if self.logger_provider is None:
                    self.logger_provider = self._own_logger_provider()
                self._usage_logger = self.logger_provider.get_logger(TRACKER_SCOPE, __version__)
        return self._usage_logger

    def _own_logger_provider(self) -> Any:
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        exporter: Any
        if self.route == "collector":
            exporter = _collector_log_exporter(self.collector_endpoint, self.timeout)
        else:
            from doow_otel.otel.logs import DoowLogExporter

            exporter = DoowLogExporter(self.client, options=self.options, problem=self.problem)
            self._exporters.append(exporter)
        provider = LoggerProvider(
            resource=Resource.create({"service.instance.id": random_id()}),
            shutdown_on_exit=False,
        )
        provider.add_log_record_processor(
            BatchLogRecordProcessor(
                exporter,
                schedule_delay_millis=self.settings.flush_interval * 1000,
                max_export_batch_size=MAX_BATCH_EVENTS,
                export_timeout_millis=self.timeout * 1000,
            )
        )
        return provider

    def _tracked_after_shutdown(self) -> None:
        self._after_shutdown += 1
        if self._after_shutdown == 1:
            self.client.report(
                "dropped",
                "usage tracked after the tracker shut down (shutdown(), exit or SIGTERM) is "
                "not recorded; this is reported once, and counted in dropped_after_shutdown",
                count=1,
            )

    def stats(self) -> dict[str, int]:
        """The client's counters (`DoowClient.stats()`) and the tracker's own: tracked
        (calls recorded), zero_quantities (calls with quantity 0: nothing to bill),
        bad_inputs (calls refused and reported, in report mode), stripped_attribution
        (attribution values the secret and payload policy removed), dropped_after_shutdown."""
        stats = self.client.stats()
        stats.update(
            tracked=self._tracked,
            zero_quantities=self.strictness.zero_quantities,
            bad_inputs=self.strictness.bad_inputs,
            stripped_attribution=sum(self.policy.stripped.values()),
            dropped_after_shutdown=self._after_shutdown,
        )
        return stats

    @property
    def dropped_after_shutdown(self) -> int:
        """track() calls after shutdown: not recorded."""
        return self._after_shutdown

    def _instrument(self, metric: object, unit: object) -> tuple[Counter, str | None]:
        problem = metric_problem(metric)
        if problem:
            raise InvalidEvent("metric", problem)
        problem = unit_problem(unit)
        if problem:
            raise InvalidEvent("unit", problem)
        assert isinstance(metric, str)
        # OTel instrument names are case-insensitive (the SDK lowercases them): a name that
        # is not already lowercase, or that OTel refuses, rides exactly in `doow.metric`.
        valid = _OTEL_NAME.fullmatch(metric) is not None
        alias = None if valid and metric == metric.lower() else metric
        name = metric.lower() if valid else "doow.usage"
        counter = self._meter.create_counter(name, unit=str(unit or ""))
        with self._lock:
            found = self._counters.setdefault((metric, unit), (counter, alias))  # type: ignore[arg-type]
        return found

    def _check_license(self, license_id: object) -> None:
        if license_id is None:
            raise InvalidEvent(
                "license_id",
                "is required: pass license_id=, set it in baggage ('doow.license_id'), "
                "or configure default_license_id / DOOW_LICENSE_ID",
            )
        problem = license_problem(license_id)
        if problem:
            raise InvalidEvent("license_id", problem)
        if len(self._valid_licenses) < _CACHE_LIMIT:
            self._valid_licenses.add(license_id)  # type: ignore[arg-type]

    def _cleaned(self, attribution: object) -> Mapping[str, AttributeValue]:
        """The attribution minus what the policy strips. The (key, value) pairs kept are
        remembered, so that `track()` skips the checks for attribution it has seen."""
        if type(attribution) is not dict and not isinstance(attribution, Mapping):
            raise InvalidEvent("attribution", attributes_problem(attribution) or "is invalid")
        if not attribution:
            return attribution
        kept = self._kept
        try:
            if len(attribution) <= self._room and attribution.items() <= kept:
                return attribution
        except TypeError:  # an unhashable value: let the check below name it
            pass
        problem = attributes_problem(attribution) or reserved_key_problem(attribution)
        if problem:
            raise InvalidEvent("attribution", problem)
        cleaned = self.policy.clean(attribution)
        if len(kept) > _CACHE_LIMIT:
            kept.clear()
        for item in cleaned.items():
            # 2.0**63 == 2**63: a float past the int64 range must not vouch for an int
            if type(item[1]) is not float or abs(item[1]) < _INT64_BOUND:
                kept.add(item)
        room = self._room
        return dict(list(cleaned.items())[:room]) if len(cleaned) > room else cleaned

    # --- flushing ---

    def flush(self, timeout: float | None = None) -> bool:
        """Export everything recorded so far (and replay the spool).

        True when all went out or is kept in the spool; False (and `on_error` told why)
        when usage was neither delivered nor kept."""
        timeout_millis = (timeout if timeout is not None else self.timeout) * 1000
        self._pending = 0
        ok = bool(self.meter_provider.force_flush(timeout_millis))
        if self.tracer_provider is not None:
            ok = bool(self.tracer_provider.force_flush(int(timeout_millis))) and ok
        if self.logger_provider is not None:
            ok = bool(self.logger_provider.force_flush(int(timeout_millis))) and ok
        for exporter in self._exporters:  # the SDK's readers ignore export results
            ok = not exporter.take_failures() and ok
        return ok

    @property
    def has_pending(self) -> bool:
        """Anything recorded since the last flush, or waiting in the spool."""
        spool = self.client.spool
        return self._pending > 0 or bool(spool is not None and len(spool))

    # --- doow_otel.serverless.Flushable: what the serverless wrappers use ---

    def needs_flush(self) -> bool:
        """False when an invocation's flush can be skipped. Spans, and log records the app
        emits on its own LoggerProvider, are not counted: either provider means a flush."""
        return (
            self.has_pending
            or self.tracer_provider is not None
            or (self.logger_provider is not None and not self._owns_logger_provider)
        )

    def begin_invocation(self) -> None:
        """A wrapped invocation starts: `flush_at` waits for a full batch until it ends."""
        with self._lock:
            self.invocations += 1
            self._flush_at = MAX_BATCH_EVENTS

    def end_invocation(self) -> None:
        with self._lock:
            self.invocations -= 1
            if not self.invocations:
                self._flush_at = self.settings.flush_at

    def _flush_soon(self) -> None:
        """Ask the background flusher for an export; `track()` never waits for the network."""
        self._flush_wanted.set()
        if self._flusher is None:
            with self._lock:
                if self._flusher is None:
                    self._flusher = threading.Thread(
                        target=self._flush_loop, name="doow-flush", daemon=True
                    )
                    self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._closed:
            self._flush_wanted.wait()
            self._flush_wanted.clear()
            if not self._closed:
                self.flush()

    def shutdown(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        self.flush(timeout)
        self._closed = True
        self._off = True
        self._flush_wanted.set()
        if self._owns_meter_provider:
            self.meter_provider.shutdown()
        if self._owns_logger_provider and self.logger_provider is not None:
            self.logger_provider.shutdown()
        forget_on_sigterm(self._at_exit)
        with contextlib.suppress(Exception):
            atexit.unregister(self._at_exit)
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

    # --- fork safety (gunicorn --preload, multiprocessing) ---

    def _before_fork(self) -> None:
        """Collect what is recorded into our exporter, which holds it for the parent: the
        child starts with nothing of the parent's, so nothing is billed twice (the child's
        data points would carry another pid in the resource, hence other ids)."""
        if self._closed or self._reader is None:
            return
        for exporter in self._exporters:
            exporter.holding = True
        with contextlib.suppress(Exception):
            self._reader.collect(timeout_millis=self.timeout * 1000)

    def _after_fork_in_parent(self) -> None:
        for exporter in self._exporters:
            exporter.holding = False
        if self._exporters and any(exporter.has_retained for exporter in self._exporters):
            self._flush_soon()

    def _after_fork_in_child(self) -> None:
        """New locks, threads and connections: nothing held or open in the parent is used."""
        self._lock = threading.Lock()
        self._flusher = None
        self._flush_wanted = threading.Event()
        self._pending = 0
        if self._owns_client and not self._closed:
            self.client = shared_client(**self._client_args)
        for exporter in self._exporters:
            exporter.after_fork_in_child(self.client)
        if self._reader is not None and hasattr(self._reader, "_export_lock"):
            self._reader._export_lock = threading.Lock()  # a parent thread may have held it

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


def _checked_quantity(quantity: object) -> int | float:
    """A USAGE quantity as an int or float (see `_plain_quantity`), or InvalidEvent."""
    plain = _plain_quantity(quantity)
    if not 0 < plain < math.inf or (type(plain) is int and plain > MAX_INT_QUANTITY):
        raise InvalidEvent("quantity", quantity_problem(plain, "USAGE") or "is invalid")
    return plain


def _plain_quantity(quantity: object) -> int | float:
    """An int or float from a numeric subclass (an IntEnum, numpy's integers and floats);
    anything else is refused with the reason and the fix."""
    if isinstance(quantity, bool) or quantity is None:
        raise InvalidEvent("quantity", quantity_problem(quantity, "USAGE") or "is invalid")
    if isinstance(quantity, int):
        return int(quantity)
    if isinstance(quantity, float):
        return float(quantity)
    if hasattr(type(quantity), "__index__"):  # numpy.int64 and friends
        try:
            return operator.index(quantity)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - numpy.bool_ refuses, for one
            raise InvalidEvent(
                "quantity", f"{type(quantity).__name__} is not usable as an integer ({exc})"
            ) from None
    raise InvalidEvent(
        "quantity",
        f"must be an int or float, got {type(quantity).__name__}; convert it with int() or "
        "float() (Doow quantities are JSON numbers)",
    )


_NEEDS_COLLECTOR_EXTRA = (
    'route="collector" needs OpenTelemetry\'s OTLP/HTTP exporter, an extra of '
    "doow-otel: pip install 'doow-otel[collector]'"
)


def _collector_exporter(endpoint: str | None, timeout: float) -> MetricExporter:
    """OTLP/HTTP with delta temporality to a collector (for example a Lambda extension
    on localhost). The endpoint: the argument, else the standard OTEL_EXPORTER_OTLP_*
    variables (read by the exporter), else http://localhost:4318."""
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    except ImportError:
        raise ConfigurationError(_NEEDS_COLLECTOR_EXTRA) from None

    if endpoint is not None:
        endpoint = endpoint.rstrip("/") + "/v1/metrics"
    return OTLPMetricExporter(
        endpoint=endpoint, timeout=timeout, preferred_temporality=DELTA_TEMPORALITY
    )


def _collector_log_exporter(endpoint: str | None, timeout: float) -> Any:
    """OTLP/HTTP logs to the collector, as `_collector_exporter` for metrics."""
    try:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    except ImportError:
        raise ConfigurationError(_NEEDS_COLLECTOR_EXTRA) from None
    if endpoint is not None:
        endpoint = endpoint.rstrip("/") + "/v1/logs"
    return OTLPLogExporter(endpoint=endpoint, timeout=timeout)


def configure(**kwargs: Any) -> DoowTracker:
    """A tracker wired into the application's existing OpenTelemetry setup.

    A global SDK TracerProvider gets Doow span processing added (not replaced); when no
    global MeterProvider is set, the tracker's becomes the global one, so plain
    `Counter.add(..., {"doow.license_id": ...})` calls from app code reach Doow too.
    """
    provider = trace.get_tracer_provider()
    if "tracer_provider" not in kwargs and isinstance(provider, TracerProvider):
        kwargs["tracer_provider"] = provider
    tracker = DoowTracker(**kwargs)
    if "meter_provider" not in kwargs and type(metrics.get_meter_provider()).__name__ in (
        "ProxyMeterProvider",
        "NoOpMeterProvider",
    ):
        metrics.set_meter_provider(tracker.meter_provider)
    return tracker
