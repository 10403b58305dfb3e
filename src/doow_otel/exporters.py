"""OpenTelemetry SDK exporters that deliver usage to Doow.

Each one converts SDK data with `doow_otel.conversion` (the same rules as the Go
collector exporter, read from the SDK's objects as their OTLP encoding would read,
without encoding them), and delivers the events with a `DoowClient`.
They sit beside the user's other exporters: an OTLP exporter to a collector or a
vendor keeps receiving everything.

With `OTEL_METRICS_EXPORTER=doow` (likewise traces, logs) `opentelemetry-instrument`
builds them with no arguments; they then configure themselves from the environment
and share one client (and so one spool) per process and configuration.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult, StaticSampler

from doow_otel._otel_compat import reader_limits
from doow_otel.client import DEFAULT_SPOOL, DoowClient, SendResult
from doow_otel.config import Settings, spool_directory
from doow_otel.conversion import (
    USAGE_EVENT_NAME,
    Conversion,
    ConversionOptions,
    convert_metrics,
    convert_spans,
)
from doow_otel.errors import ErrorReport, Reporter
from doow_otel.events import MAX_INT_QUANTITY, UsageEvent
from doow_otel.lifecycle import at_fork

__all__ = [
    "DELTA_TEMPORALITY",
    "DoowLogExporter",
    "DoowMetricExporter",
    "DoowMetricReader",
    "DoowSpanExporter",
    "RetainingMetricExporter",
    "UsageRecordingSampler",
    "UsageSpanProcessor",
    "export_deadline",
    "metric_reader",
    "shared_client",
]

# Usage counters must be delta: Doow sums what it receives.
DELTA_TEMPORALITY: dict[type, AggregationTemporality] = {
    Counter: AggregationTemporality.DELTA,
    ObservableCounter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
    UpDownCounter: AggregationTemporality.CUMULATIVE,
    ObservableUpDownCounter: AggregationTemporality.CUMULATIVE,
    ObservableGauge: AggregationTemporality.CUMULATIVE,
}

MAX_RETAINED_EVENTS = 100_000
"""Usage kept in memory for the next export when it could be neither delivered nor spooled."""
MAX_RETAINED_ATTEMPTS = 5
"""Exports a retained record rides along on before it is dropped (and reported)."""

# --- the flush deadline: travels with the flushing call, never through a global ---

_deadline_var: ContextVar[float | None] = ContextVar("doow_export_deadline", default=None)


@contextlib.contextmanager
def export_deadline(deadline: float | None) -> Iterator[None]:
    """Bound every Doow export made by this thread (or task) inside the block.

    `deadline` is a `time.monotonic()` value. The SDK's `force_flush` exports on the
    calling thread, so a serverless wrapper's flush bounds the span and log exports
    too, which the processors call without a timeout.
    """
    token = _deadline_var.set(deadline)
    try:
        yield
    finally:
        _deadline_var.reset(token)


def _deadline(timeout_seconds: float) -> float:
    now = time.monotonic()
    own = now + timeout_seconds
    bound = _deadline_var.get()
    # A bound already past: the flush's caller stopped waiting (the export queued behind
    # another one on the SDK's export lock); this export runs on its own timeout.
    return own if bound is None or bound <= now else min(own, bound)


# --- one client per process and configuration ---

_ClientKey = tuple[Any, ...]
_clients: dict[_ClientKey, tuple[DoowClient, int]] = {}
_clients_lock = threading.Lock()


def shared_client(
    *,
    api_key: str | None = None,
    endpoint: str | None = None,
    timeout: float = 10.0,
    spool: Any = DEFAULT_SPOOL,
    on_error: Callable[[ErrorReport], None] | None = None,
    disabled: bool | None = None,
    **client_options: Any,
) -> DoowClient:
    """The process's client for this configuration, created on first use.

    The exporters built with no client, `configure()` and `DoowTracker` all take it from
    here: one connection pool and one spool per configuration (the zero-code path's
    three exporters used to run three clients on one spool). Give it back with
    `release_client()`; the last one out closes it.
    """
    settings = Settings.resolve(api_key=api_key, endpoint=endpoint, disabled=disabled)
    if spool is DEFAULT_SPOOL:
        spool = spool_directory()
    spool_key = str(spool) if isinstance(spool, (str, os.PathLike)) else id(spool)
    key = (
        settings.api_key,
        settings.endpoint,
        settings.disabled,
        timeout,
        spool_key,
        on_error,
        tuple(sorted(client_options.items())),
    )
    with _clients_lock:
        found = _clients.get(key)
        if found is None:
            client = DoowClient(
                settings.api_key,
                endpoint=settings.endpoint,
                timeout=timeout,
                spool=Path(spool) if isinstance(spool, os.PathLike) else spool,
                on_error=on_error,
                disabled=settings.disabled,
                **client_options,
            )
            found = (client, 0)
        _clients[key] = (found[0], found[1] + 1)
        return found[0]


def release_client(client: DoowClient) -> None:
    """One user of a shared client is done with it; the last closes it."""
    with _clients_lock:
        for key, (each, users) in list(_clients.items()):
            if each is client:
                if users > 1:
                    _clients[key] = (each, users - 1)
                    return
                del _clients[key]
                break
    client.close()


def _forget_clients_after_fork() -> None:
    # The child must not use the parent's connections (nor locks a parent thread held):
    # whoever needs a client in the child builds a new one (DoowTracker does).
    global _clients_lock
    _clients.clear()
    _clients_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_clients_after_fork)


# --- exporters ---


T = TypeVar("T")


class _Retention(Generic[T]):
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


class _DoowExporterBase(_Retention[UsageEvent]):
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
        self.last_result: SendResult | None = None
        self._reset_retention()  # retained: (event, attempts)

    def after_fork_in_child(self, client: DoowClient) -> None:
        """What was held or retained belongs to the parent; the child sends on its own client."""
        self._reset_retention()
        self.client = client

    def _reopen(self, client_kwargs: dict[str, Any]) -> None:
        """In a forked child: a client of its own (the registry was emptied first)."""
        self.after_fork_in_child(shared_client(**client_kwargs))

    def _deliver(self, conversion: Conversion, timeout_seconds: float) -> bool:
        for code, count in sorted(conversion.dropped.items()):
            self.client.report("dropped", conversion.describe(code, count), count=count)
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
                    f"{len(events)} usage records not sent: {self.problem}",
                    count=len(events),
                )
                self._fail()
            return False
        if not events and not (self.client.spool and len(self.client.spool)):
            if not ok:
                self._fail()
            return ok
        try:
            result = self.client.send(events, deadline=_deadline(timeout_seconds))
        except Exception as exc:  # a bug below must not lose what was taken out above
            with self._lock:
                self._retained[:0] = retained + [(e, 0) for e in conversion.events]
            self.client.report(
                "network",
                f"{len(events)} usage records kept in memory for the next export: "
                f"the send failed ({type(exc).__name__}: {exc})",
                count=len(events),
            )
            self._fail()
            return False
        self.last_result = result
        if result.dropped and self.client.spool is None and not self.client.disabled:
            # Nothing keeps it on disk: keep it here for the next export (the same ids,
            # so what did arrive is deduplicated by Doow).
            attempts = [n for _, n in retained] + [0] * len(conversion.events)
            self._retain(events, attempts)
        # Spooled events are ours to deliver later: the export itself succeeded.
        ok = ok and not result.dropped
        if not ok:
            self._fail()
        return ok

    def _retain(self, events: list[UsageEvent], attempts: list[int]) -> None:
        keep = [(e, n + 1) for e, n in zip(events, attempts, strict=True)]
        given_up = [e for e, n in keep if n > MAX_RETAINED_ATTEMPTS]
        keep = [(e, n) for e, n in keep if n <= MAX_RETAINED_ATTEMPTS]
        overflow = max(0, len(keep) - MAX_RETAINED_EVENTS)
        if given_up or overflow:
            count = len(given_up) + overflow
            self.client.report(
                "dropped",
                f"{count} usage records dropped after {MAX_RETAINED_ATTEMPTS} failed exports "
                f"or past {MAX_RETAINED_EVENTS:,} waiting, with no spool to keep them",
                count=count,
            )
        keep = keep[overflow:]
        if keep:
            self.client.report(
                "network",
                f"{len(keep)} usage records not delivered; kept in memory for the next export "
                "(configure a spool to keep them across restarts)",
                count=len(keep),
            )
        with self._lock:
            self._retained = keep + self._retained

    def _flush_spool(self, timeout_millis: float) -> bool:
        if self._retained:
            return self._deliver(Conversion(), timeout_millis / 1000)
        if self.client.spool is None or not len(self.client.spool):
            return True
        result = self.client.flush_spool(deadline=_deadline(timeout_millis / 1000))
        return result.spooled == 0

    def _shutdown(self) -> None:
        if self._shared:
            release_client(self.client)


class DoowMetricExporter(_DoowExporterBase, MetricExporter):
    """Delta-temporality metric exporter: each usage data point becomes one Doow event."""

    def __init__(
        self,
        client: DoowClient | None = None,
        *,
        options: ConversionOptions | None = None,
        preferred_aggregation: dict[type, Any] | None = None,
        problem: str | None = None,
        **client_kwargs: Any,
    ) -> None:
        _DoowExporterBase.__init__(self, client, options=options, problem=problem, **client_kwargs)
        MetricExporter.__init__(
            self,
            preferred_temporality=DELTA_TEMPORALITY,
            preferred_aggregation=preferred_aggregation,
        )

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        conversion = convert_metrics(metrics_data, self.options)
        ok = self._deliver(conversion, timeout_millis / 1000)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._flush_spool(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._shutdown()


def _unencodable_usage(span: ReadableSpan) -> list[str]:
    def too_big(value: object) -> bool:
        return isinstance(value, int) and not -(2**63) <= value <= MAX_INT_QUANTITY

    attributes = span.attributes or {}
    found = [
        key
        for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")
        if too_big(attributes.get(key))
    ]
    for event in span.events:
        if event.name == USAGE_EVENT_NAME and too_big(
            (event.attributes or {}).get("doow.quantity")
        ):
            found.append("a doow.usage event's doow.quantity")
    return found


def _span_has_usage(span: ReadableSpan) -> bool:
    attributes = span.attributes or {}
    if "gen_ai.usage.input_tokens" in attributes or "gen_ai.usage.output_tokens" in attributes:
        return True
    return any(event.name == USAGE_EVENT_NAME for event in span.events)


class DoowSpanExporter(_DoowExporterBase, SpanExporter):
    """Bills `doow.usage` span events and GenAI token counts; other spans cost one check."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        usage = [span for span in spans if _span_has_usage(span)]
        if not usage and not self._retained:
            return SpanExportResult.SUCCESS
        conversion = convert_spans(usage, self.options)
        lost = 0
        for span in usage:
            for key in _unencodable_usage(span):
                # Left out, as the OTLP encoder leaves it out (and Doow's ints are int64):
                # say what it costs.
                lost += 1
                self.client.report(
                    "dropped",
                    f"span {span.name!r}: {key} is past the int64 range OTLP carries; that "
                    "usage is not billed (record it in parts, or as a float)",
                    count=1,
                )
        ok = self._deliver(conversion, self.client.timeout)
        if lost:
            self._fail()
            ok = False
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._flush_spool(timeout_millis)

    def shutdown(self) -> None:
        self._shutdown()


class UsageRecordingSampler(Sampler):
    """Wraps the application's sampler: a span it drops is recorded instead (not
    sampled), so Doow's processor still bills the usage on it (`doow.usage` events,
    GenAI token counts), while exporters of sampled spans, which skip spans that are
    not sampled, receive exactly what they did before. The cost: dropped spans are
    built in memory (bench/bench_sampling.py measures it)."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: Any = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        result = self.sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is Decision.DROP:
            return SamplingResult(Decision.RECORD_ONLY, result.attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"UsageRecording{{{self.sampler.get_description()}}}"


def samples_everything(sampler: Sampler) -> bool:
    """Whether no span is ever dropped (ParentBased drops under unsampled parents)."""
    return isinstance(sampler, UsageRecordingSampler) or (
        isinstance(sampler, StaticSampler) and sampler._decision is Decision.RECORD_AND_SAMPLE
    )


class UsageSpanProcessor(SpanProcessor):
    """Hands the spans that carry usage to a `DoowSpanExporter`, sampled or not.

    The SDK's batch processor skips spans that are not sampled; with
    `UsageRecordingSampler` those still carry billable usage. Other spans cost one
    check here and are never queued. Exports in batches from a daemon thread, and on
    `force_flush` on the calling thread (so a serverless flush's deadline applies).
    """

    def __init__(
        self,
        exporter: DoowSpanExporter,
        *,
        interval: float = 5.0,
        max_batch: int = 512,
        max_queue: int = MAX_RETAINED_EVENTS,
    ) -> None:
        self.exporter = exporter
        self.interval = interval
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._spans: list[ReadableSpan] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self._reinit()
        at_fork(self, after_in_child=UsageSpanProcessor._reinit)

    def _reinit(self) -> None:
        self._spans = []  # a child leaves the parent's spans to the parent
        self._thread = None
        self._lock = threading.Lock()
        self._export_lock = threading.Lock()
        self._wake = threading.Event()

    def on_end(self, span: ReadableSpan) -> None:
        if self._closed or not _span_has_usage(span):
            return
        with self._lock:
            if len(self._spans) >= self.max_queue:
                full = None
            else:
                self._spans.append(span)
                full = len(self._spans) >= self.max_batch
        if full is None:
            self.exporter.client.report(
                "dropped", f"a usage span dropped: more than {self.max_queue:,} waiting", count=1
            )
            return
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="doow-usage-spans", daemon=True
                    )
                    self._thread.start()
        if full:
            self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            self._export()

    def _export(self) -> bool:
        with self._export_lock:
            ok = True
            while True:
                with self._lock:
                    spans = self._spans[: self.max_batch]
                    del self._spans[: self.max_batch]
                if not spans and not self.exporter.has_retained:
                    return ok
                ok = self.exporter.export(spans) is SpanExportResult.SUCCESS and ok
                if not spans:
                    return ok

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        exported = self._export()
        return self.exporter.force_flush(timeout_millis) and exported

    def shutdown(self) -> None:
        if self._closed:
            return
        self._export()
        self._closed = True
        self._wake.set()
        self.exporter.shutdown()


class RetainingMetricExporter(_Retention[MetricsData], MetricExporter):
    """Wraps a metric exporter that drops what it fails to export (OTLP to a collector
    that is not listening): the failed data is reported and goes out again with the
    next export, bounded by `max_points` (past that the oldest is dropped, reported).

    Delta data points keep their start and end times, so the collector's doow exporter
    derives the same event ids on the retry: whatever did arrive is not billed twice.
    """

    def __init__(
        self, exporter: MetricExporter, report: Reporter, *, max_points: int = MAX_RETAINED_EVENTS
    ) -> None:
        super().__init__(
            preferred_temporality=exporter._preferred_temporality,
            preferred_aggregation=exporter._preferred_aggregation,
        )
        self.exporter = exporter
        self.report = report
        self.max_points = max_points
        self._reset_retention()  # retained: (data, its point count)

    def after_fork_in_child(self, client: DoowClient) -> None:
        self._reset_retention()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self.holding:
            with self._lock:
                self._retained.append((metrics_data, _points(metrics_data)))
            return MetricExportResult.SUCCESS
        with self._lock:
            waiting, self._retained = self._retained, []
        still: list[tuple[MetricsData, int]] = []
        end = time.monotonic() + timeout_millis / 1000
        for data, points in [*waiting, (metrics_data, _points(metrics_data))]:
            if not points:
                continue
            left = max(0.0, end - time.monotonic()) * 1000
            if still or not self._export_one(data, left):
                still.append((data, points))
        if not still:
            return MetricExportResult.SUCCESS
        kept = sum(points for _, points in still)
        while kept > self.max_points and still:
            _, points = still.pop(0)
            kept -= points
            self.report("dropped", f"{points} usage data points dropped: more than "
                        f"{self.max_points:,} waiting for the collector", count=points)  # fmt: skip
        self.report(
            "network",
            f"the collector did not take {kept} usage data points; they are kept in memory "
            "and sent again with the next export",
            count=kept,
        )
        with self._lock:
            self._retained = still + self._retained
            self._failed += 1
        return MetricExportResult.FAILURE

    def _export_one(self, data: MetricsData, timeout_millis: float) -> bool:
        try:
            return self.exporter.export(data, timeout_millis=timeout_millis) is (
                MetricExportResult.SUCCESS
            )
        except Exception:  # OTLP/HTTP 1.34-1.39 raises when refused
            return False

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        if self._retained:
            empty = MetricsData(resource_metrics=[])
            return self.export(empty, timeout_millis) is MetricExportResult.SUCCESS
        return bool(self.exporter.force_flush(timeout_millis))

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.exporter.shutdown(timeout_millis=timeout_millis)


def _points(metrics_data: MetricsData) -> int:
    return sum(
        len(getattr(metric.data, "data_points", ()))
        for rm in metrics_data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    )


DEFAULT_CARDINALITY_LIMIT = 100_000
"""Attribute sets (licenses x attribution) per usage instrument per export. The SDK's
default, 2000, would fold the 2001st license of an interval into an overflow point
without a license: usage that cannot be billed."""


def metric_reader(
    exporter: MetricExporter | None = None,
    *,
    interval: float | None = None,
    timeout: float = 10.0,
    cardinality_limit: int = DEFAULT_CARDINALITY_LIMIT,
    **exporter_kwargs: Any,
) -> PeriodicExportingMetricReader:
    """A reader to add to your own MeterProvider: `MeterProvider(metric_readers=[..., this])`."""
    return PeriodicExportingMetricReader(
        exporter or DoowMetricExporter(**exporter_kwargs),
        export_interval_millis=(interval or Settings.resolve().flush_interval) * 1000,
        export_timeout_millis=timeout * 1000,
        **reader_limits(usage_cardinality_limits(cardinality_limit)),
    )


class DoowMetricReader(PeriodicExportingMetricReader):
    """The reader `opentelemetry-instrument` builds for `OTEL_METRICS_EXPORTER=doow`: the
    same interval (`DOOW_TRACK_FLUSH_INTERVAL`) and cardinality limits as DoowTracker's,
    where the SDK's default reader would fold the 2001st license into an overflow point."""

    def __init__(self, exporter: MetricExporter | None = None, **kwargs: Any) -> None:
        timeout = float(kwargs.pop("timeout", 10.0))
        super().__init__(
            exporter or DoowMetricExporter(),
            export_interval_millis=Settings.resolve().flush_interval * 1000,
            export_timeout_millis=timeout * 1000,
            **reader_limits(usage_cardinality_limits()),
        )
        # Like DoowTracker: what is recorded before a fork is collected and held for the
        # parent, so the child (another pid in the resource, other ids) never bills it too.
        at_fork(self, before=DoowMetricReader._hold, after_in_parent=DoowMetricReader._release)

    def _hold(self) -> None:
        exporter = self._exporter
        if isinstance(exporter, (_DoowExporterBase, RetainingMetricExporter)):
            exporter.holding = True
            self.collect(timeout_millis=self._export_timeout_millis)

    def _release(self) -> None:
        exporter = self._exporter
        if isinstance(exporter, (_DoowExporterBase, RetainingMetricExporter)):
            exporter.holding = False


def usage_cardinality_limits(limit: int = DEFAULT_CARDINALITY_LIMIT) -> dict[type, int]:
    return {Counter: limit, Histogram: limit, ObservableCounter: limit}


if TYPE_CHECKING:
    from doow_otel.logs import DoowLogExporter


def __getattr__(name: str) -> Any:
    if name == "DoowLogExporter":  # in doow_otel.logs: the logs SDK loads on use
        from doow_otel import logs

        return logs.DoowLogExporter
    raise AttributeError(f"module 'doow_otel.exporters' has no attribute {name!r}")
