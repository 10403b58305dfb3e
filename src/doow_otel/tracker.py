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
import math
import os
import re
import signal
import threading
import uuid
from collections.abc import Mapping
from types import FrameType
from typing import Any, Literal

from opentelemetry import metrics, trace
from opentelemetry.metrics import Counter, Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from doow_otel._version import __version__
from doow_otel.baggage import LICENSE_KEY, LicenseFromBaggage, license_from_baggage
from doow_otel.client import DEFAULT_SPOOL, DoowClient
from doow_otel.config import Settings
from doow_otel.conversion import TRACKER_SCOPE, ConversionOptions
from doow_otel.errors import ConfigurationError
from doow_otel.events import (
    DEFAULT_POLICY,
    MAX_ATTRIBUTES,
    AttributeValue,
    InvalidEvent,
    attributes_problem,
    license_problem,
    metric_problem,
    quantity_problem,
    unit_problem,
)
from doow_otel.exporters import (
    DELTA_TEMPORALITY,
    DoowMetricExporter,
    DoowSpanExporter,
    metric_reader,
)
from doow_otel.wire import MAX_BATCH_EVENTS

__all__ = ["DoowTracker", "configure"]

# OpenTelemetry instrument names are stricter than Doow metric names (they must start
# with a letter and may not contain ':'); other names ride in a doow.metric attribute.
_OTEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/]{0,254}")
_SEED_FIELDS = frozenset({"metric", "quantity", "license_id", "unit", "attribution"})
_CACHE_LIMIT = 4096


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
    ) -> None:
        route = route or os.environ.get("DOOW_ROUTE", "doow")  # type: ignore[assignment]
        if route not in ("doow", "collector"):
            raise ConfigurationError(
                f"route: {route!r} must be 'doow' (send to Doow) or 'collector' (send OTLP to "
                "an OpenTelemetry Collector with the doow exporter)"
            )
        self.route = route
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
        self.client = client or DoowClient(
            settings.api_key,
            endpoint=settings.endpoint,
            timeout=timeout,
            spool=spool,
            on_error=on_error,
            # through a collector, the collector holds the key and talks to Doow
            disabled=settings.disabled or route == "collector",
        )
        self.timeout = timeout
        self._base: dict[str, AttributeValue] = DEFAULT_POLICY.clean(settings.attribution)
        self._default_license = settings.default_license_id
        self._counters: dict[tuple[str, str | None], tuple[Counter, str | None]] = {}
        self._clean: dict[tuple[str, object], bool] = {}
        self._valid_licenses: set[str] = set()
        self._pending = 0
        # Wrapped serverless invocations running (doow_otel.serverless): each flushes at its
        # end, so `flush_at` waits for a full batch and the invocation costs one request.
        self.invocations = 0
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._flush_wanted = threading.Event()
        self._closed = False
        options = ConversionOptions(default_license_id=self._default_license)
        self.options = options

        self._owns_meter_provider = meter_provider is None
        if meter_provider is None:
            exporter: MetricExporter = (
                _collector_exporter(collector_endpoint, timeout)
                if route == "collector"
                else DoowMetricExporter(self.client, options=options)
            )
            reader = metric_reader(exporter, interval=settings.flush_interval, timeout=timeout)
            meter_provider = MeterProvider(
                metric_readers=[reader],
                resource=Resource.create({"service.instance.id": str(uuid.uuid4())}),
                shutdown_on_exit=False,  # our own atexit hook flushes then shuts down
            )
        self.meter_provider = meter_provider
        self._meter: Meter = meter_provider.get_meter(TRACKER_SCOPE, __version__)
        self.tracer_provider = tracer_provider
        if tracer_provider is not None:
            add_span_processing(tracer_provider, self.client, options)
        atexit.register(self._at_exit)
        if handle_sigterm:
            _install_sigterm_flush(self)

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
    ) -> None:
        """Record usage. Takes keywords, or one mapping with the seed's field names."""
        if event is not None:
            unknown = set(event) - _SEED_FIELDS
            if unknown:
                name = sorted(unknown)[0]
                raise InvalidEvent(name, f"is not a track() field; known: {sorted(_SEED_FIELDS)}")
            metric = event.get("metric")
            quantity = event.get("quantity")
            license_id = event.get("license_id")
            unit = event.get("unit")
            attribution = event.get("attribution")
        found = self._counters.get((metric, unit))  # type: ignore[arg-type]
        if found is None:
            found = self._instrument(metric, unit)
        counter, alias = found
        kind = type(quantity)
        if (kind is not int and kind is not float) or not 0 < quantity < math.inf:  # type: ignore[operator]
            raise InvalidEvent("quantity", quantity_problem(quantity, "USAGE") or "is invalid")
        if license_id is None:
            license_id = license_from_baggage() or self._default_license
        if license_id not in self._valid_licenses:
            self._check_license(license_id)
        attributes = dict(self._base)
        if attribution:
            attributes.update(self._cleaned(attribution))
        attributes[LICENSE_KEY] = license_id  # type: ignore[assignment]
        if alias is not None:
            attributes["doow.metric"] = alias
        if self.disabled:
            return
        counter.add(quantity, attributes)  # type: ignore[arg-type]
        self._pending += 1
        if self._pending >= (MAX_BATCH_EVENTS if self.invocations else self.settings.flush_at):
            self._flush_soon()

    def _instrument(self, metric: object, unit: object) -> tuple[Counter, str | None]:
        problem = metric_problem(metric)
        if problem:
            raise InvalidEvent("metric", problem)
        problem = unit_problem(unit)
        if problem:
            raise InvalidEvent("unit", problem)
        assert isinstance(metric, str)
        alias = None if _OTEL_NAME.fullmatch(metric) else metric
        name = "doow.usage" if alias else metric
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

    def _cleaned(self, attribution: Mapping[str, AttributeValue]) -> Mapping[str, AttributeValue]:
        """The attribution minus what the policy strips; per (key, value) verdicts are cached."""
        verdicts = self._clean
        try:
            fits = len(attribution) + len(self._base) <= MAX_ATTRIBUTES
            if fits and all(verdicts.get(item) for item in attribution.items()):
                return attribution
        except TypeError:  # an unhashable value: let the check below name it
            pass
        problem = attributes_problem(attribution)
        if problem:
            raise InvalidEvent("attribution", problem)
        cleaned = DEFAULT_POLICY.clean(attribution)
        if len(verdicts) > _CACHE_LIMIT:
            verdicts.clear()
        for item in attribution.items():
            verdicts[item] = item[0] in cleaned
        room = MAX_ATTRIBUTES - len(self._base)
        return dict(list(cleaned.items())[:room]) if len(cleaned) > room else cleaned

    # --- flushing ---

    def flush(self, timeout: float | None = None) -> bool:
        """Export everything recorded so far (and replay the spool); True when all went out."""
        timeout_millis = (timeout if timeout is not None else self.timeout) * 1000
        self._pending = 0
        ok = bool(self.meter_provider.force_flush(timeout_millis))
        if self.tracer_provider is not None:
            ok = bool(self.tracer_provider.force_flush(int(timeout_millis))) and ok
        return ok

    @property
    def has_pending(self) -> bool:
        """Anything recorded since the last flush, or waiting in the spool."""
        spool = self.client.spool
        return self._pending > 0 or bool(spool is not None and len(spool))

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
        self._flush_wanted.set()
        if self._owns_meter_provider:
            self.meter_provider.shutdown()
        self.client.close()

    def _at_exit(self) -> None:
        with contextlib.suppress(Exception):  # never break interpreter exit
            self.shutdown(timeout=min(self.timeout, 5.0))

    def __enter__(self) -> DoowTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # --- serverless wrappers (doow_otel.serverless) ---

    # Options (flush_timeout, safety_margin) as in doow_otel.serverless; usable as decorators
    # with or without them: `@meter.with_lambda` or `@meter.with_lambda(flush_timeout=1.0)`.

    def with_lambda(self, handler: Any = None, **options: Any) -> Any:
        from doow_otel import serverless

        return serverless.with_lambda(handler, tracker=self, **options)

    def with_vercel(self, handler: Any = None, **options: Any) -> Any:
        from doow_otel import serverless

        return serverless.with_vercel(handler, tracker=self, **options)

    def with_azure_function(self, function: Any = None, **options: Any) -> Any:
        from doow_otel import serverless

        return serverless.with_azure_function(function, tracker=self, **options)

    def invocation(self, deadline: float | None = None, **options: Any) -> Any:
        from doow_otel import serverless

        return serverless.invocation(deadline, tracker=self, **options)


def add_span_processing(
    tracer_provider: TracerProvider, client: DoowClient, options: ConversionOptions
) -> None:
    """Add Doow's span processing to an existing TracerProvider, beside what it has."""
    tracer_provider.add_span_processor(LicenseFromBaggage())
    tracer_provider.add_span_processor(
        BatchSpanProcessor(DoowSpanExporter(client, options=options))
    )


def _collector_exporter(endpoint: str | None, timeout: float) -> MetricExporter:
    """OTLP/HTTP with delta temporality to a collector (for example a Lambda extension
    on localhost). The endpoint: the argument, else the standard OTEL_EXPORTER_OTLP_*
    variables (read by the exporter), else http://localhost:4318."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    if endpoint is not None:
        endpoint = endpoint.rstrip("/") + "/v1/metrics"
    return OTLPMetricExporter(
        endpoint=endpoint, timeout=timeout, preferred_temporality=DELTA_TEMPORALITY
    )


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


_sigterm_trackers: list[DoowTracker] = []


def _install_sigterm_flush(tracker: DoowTracker) -> None:
    """Flush on SIGTERM (container stop), then die as SIGTERM would have made us."""
    _sigterm_trackers.append(tracker)
    if len(_sigterm_trackers) > 1 or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # the application (or its server) handles SIGTERM itself

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            for each in list(_sigterm_trackers):
                each._at_exit()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        pass
