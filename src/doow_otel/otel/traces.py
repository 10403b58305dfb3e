"""Usage from OpenTelemetry traces: `doow.usage` span events and GenAI token counts.

`DoowSpanExporter` bills them; `UsageSpanProcessor` hands it the spans that carry usage,
sampled or not; `UsageRecordingSampler` keeps a sampler's dropped spans recorded so
their usage is still billed; `add_span_processing` wires the three (and the license in
context) into an existing TracerProvider.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult, StaticSampler

from doow_otel.delivery.client import DoowClient
from doow_otel.delivery.deadline import for_export, within
from doow_otel.delivery.lifecycle import at_fork
from doow_otel.errors import counted
from doow_otel.model.fields import MAX_INT_QUANTITY
from doow_otel.model.secrets import shown
from doow_otel.otel.baggage import LICENSE_KEY, license_in_context
from doow_otel.otel.conversion import USAGE_EVENT_NAME, ConversionOptions, convert_spans
from doow_otel.otel.exporting import MAX_RETAINED_EVENTS, DoowExporterBase

__all__ = [
    "DoowSpanExporter",
    "LicenseFromContext",
    "UsageRecordingSampler",
    "UsageSpanProcessor",
    "add_span_processing",
    "samples_everything",
    "wire_span_processing",
]

logger = logging.getLogger("doow_otel")


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


class DoowSpanExporter(DoowExporterBase, SpanExporter):
    """Bills `doow.usage` span events and GenAI token counts; other spans cost one check."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        usage = [span for span in spans if _span_has_usage(span)]
        if not usage and not self._retained:
            return SpanExportResult.SUCCESS
        conversion = convert_spans(usage, self.options)
        self._debug(f"{len(spans)} spans, {len(usage)} with usage", conversion)
        lost = 0
        for span in usage:
            for key in _unencodable_usage(span):
                # Left out, as the OTLP encoder leaves it out (and Doow's ints are int64):
                # say what it costs.
                lost += 1
                where = f"span {shown(span.name)}: {key}"
                self.client.report.usage_not_billed(
                    "past_int64",
                    1,
                    lambda n, where=where: (  # type: ignore[misc]
                        f"{counted(n, 'usage record')} not billed (past_int64; the latest: "
                        f"{where}): past "
                        "the int64 range OTLP carries (record it in parts, or as a float)"
                    ),
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
        export_timeout: float = 30.0,
    ) -> None:
        self.exporter = exporter
        self.interval = interval
        self.export_timeout = export_timeout  # seconds, as the SDK's batch processor's
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
            with within(for_export(self.export_timeout)):
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
        # the SDK's force_flush timeout bounds the exports it makes (an enclosing flush's
        # deadline, a serverless wrapper's, is shorter still and wins)
        with within(for_export(timeout_millis / 1000)):
            exported = self._export()
            return self.exporter.force_flush(timeout_millis) and exported

    def shutdown(self) -> None:
        if self._closed:
            return
        with within(for_export(self.export_timeout)):
            self._export()
        self._closed = True
        self._wake.set()
        self.exporter.shutdown()


def add_span_processing(
    tracer_provider: TracerProvider,
    client: DoowClient,
    options: ConversionOptions,
    *,
    problem: str | None = None,
    record_unsampled_usage: bool = True,
) -> DoowSpanExporter:
    """Add Doow's span processing to an existing TracerProvider, beside what it has.

    Usage on spans the sampler drops is billed too: the provider's sampler is wrapped so
    that it records what it drops (exporters of sampled spans see no difference). With
    `record_unsampled_usage=False` it is left alone, and a warning says what is lost.
    """
    exporter = DoowSpanExporter(client, options=options, problem=problem)
    wire_span_processing(
        tracer_provider,
        exporter,
        record_unsampled_usage=record_unsampled_usage,
        opt_out="record_unsampled_usage=False",
    )
    return exporter


def wire_span_processing(
    tracer_provider: TracerProvider,
    exporter: DoowSpanExporter,
    *,
    record_unsampled_usage: bool,
    opt_out: str,
) -> UsageSpanProcessor:
    """`add_span_processing` with an exporter made already; `opt_out` names the setting
    that turned `record_unsampled_usage` off, for the warning."""
    sampler = tracer_provider.sampler
    if not samples_everything(sampler):
        if record_unsampled_usage:
            tracer_provider.sampler = UsageRecordingSampler(sampler)
        else:
            logger.warning(
                "doow: the TracerProvider's sampler (%s) drops spans, and %s: doow.usage "
                "span events and GenAI token counts on dropped spans are NOT billed. Record "
                "billable usage with track() or a Counter, or leave the setting on.",
                sampler.get_description(),
                opt_out,
            )
    tracer_provider.add_span_processor(LicenseFromContext())
    processor = UsageSpanProcessor(exporter)
    tracer_provider.add_span_processor(processor)
    return processor


class LicenseFromContext(SpanProcessor):
    """Copies the license in context (`license_in_context`) onto each span that starts
    without one."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        license_id = license_in_context(parent_context)
        if license_id and not (span.attributes or {}).get(LICENSE_KEY):
            span.set_attribute(LICENSE_KEY, license_id)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # the base class returns None (a failed flush) before opentelemetry-sdk 1.42
