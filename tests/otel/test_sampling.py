"""Trace sampling never silently drops usage (issue 9, item 16): `doow.usage` span events
and GenAI token counts on spans the sampler drops are billed, while the application's
other exporters still see only sampled spans; opting out warns loudly."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

from doow_otel.tracker import DoowTracker
from doow_otel_testing import LocalDoow


def _spans_with_usage(provider: TracerProvider, count: int) -> None:
    tracer = provider.get_tracer("app")
    for i in range(count):
        with tracer.start_as_current_span("request") as span:
            span.add_event(
                "doow.usage",
                {"doow.metric": "pages", "doow.quantity": 2, "doow.license_id": "lic_a"},
            )
            with tracer.start_as_current_span("llm") as child:  # child of a dropped parent
                child.set_attributes(
                    {"gen_ai.usage.input_tokens": 10 + i, "doow.license_id": "lic_a"}
                )


def test_usage_on_dropped_spans_is_billed_and_other_exporters_see_only_sampled(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.1)))
    others = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(others))
    tracker = DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path,
        tracer_provider=provider,
        flush_interval=3600,
        handle_sigterm=False,
    )
    try:
        _spans_with_usage(provider, 100)
        assert tracker.flush()
    finally:
        tracker.shutdown()
    assert local_doow.total("pages", "lic_a") == 200
    assert local_doow.total("input_tokens", "lic_a") == sum(10 + i for i in range(100))
    seen = others.get_finished_spans()
    assert all(span.context.trace_flags.sampled for span in seen)
    assert len(seen) < 100  # about 10% of 200 spans: the sampler still decides for them


def test_opting_out_warns_loudly(
    local_doow: LocalDoow, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    with caplog.at_level(logging.WARNING, logger="doow_otel"):
        tracker = DoowTracker(
            local_doow.api_key,
            endpoint=local_doow.url,
            spool=tmp_path,
            tracer_provider=provider,
            record_unsampled_usage=False,
            handle_sigterm=False,
        )
    try:
        assert any("NOT billed" in r.getMessage() for r in caplog.records)
        _spans_with_usage(provider, 3)
        tracker.flush()
    finally:
        tracker.shutdown()
    assert local_doow.total("pages") == 0
