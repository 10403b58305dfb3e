"""What billing usage on sampled-out spans costs, side by side with the plain sampler.

A service samples 1% of its traces (ParentBased(TraceIdRatioBased(0.01))); every 10th
request span carries a `doow.usage` event. Three setups, each timed over the same spans
(span work plus the final flush, CPU of this process; the server runs in its own; the
client's budget pacing lifted, a non-default setting: 2,000 usage events in a few
seconds are the subject's load, not the budget's):
- the plain sampler, no Doow: the baseline cost of tracing;
- the plain sampler with Doow's exporter behind the SDK's batch processor: sampled
  spans only, so about 1% of the usage is billed;
- Doow's setup (`configure()` / `DoowTracker(tracer_provider=...)`): the sampler
  records what it drops and Doow's processor bills all of it.
Usage: python bench/bench_sampling.py [spans] [--quick] [--json PATH]
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from _results import Record, options
from _server import KEY, UNPACED, local_server, table, usage_total

SPANS = 20_000
USAGE_EVERY = 10
RATIO = 0.01


def run(setup: str, url: str, spans: int, metric: str) -> tuple[float, float]:
    """(CPU microseconds per span, usage units the server stored)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from doow_otel import DoowClient
    from doow_otel.otel.traces import DoowSpanExporter
    from doow_otel.tracker import DoowTracker

    class Discard(SpanExporter):  # the application's own exporter, say to a vendor
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(RATIO)))
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    spool = tempfile.mkdtemp(prefix="doow-bench-sampling-")
    tracker = None
    client = None
    if setup == "exporter":
        client = DoowClient(KEY, endpoint=url, spool=spool, events_per_minute=UNPACED)
        provider.add_span_processor(BatchSpanProcessor(DoowSpanExporter(client)))
    elif setup == "doow":
        tracker = DoowTracker(
            KEY, endpoint=url, spool=spool, tracer_provider=provider, handle_sigterm=False,
            events_per_minute=UNPACED,
        )  # fmt: skip
    tracer = provider.get_tracer("app")
    started = time.process_time()
    for i in range(spans):
        with tracer.start_as_current_span("request") as span:
            span.set_attribute("http.route", "/v1/summarise")
            if i % USAGE_EVERY == 0:
                span.add_event(
                    "doow.usage",
                    {"doow.metric": metric, "doow.quantity": 1, "doow.license_id": "lic_1"},
                )
    provider.force_flush()
    cpu = time.process_time() - started
    provider.shutdown()
    if tracker is not None:
        tracker.shutdown()
    if client is not None:
        client.close()
    return cpu * 1e6 / spans, usage_total(url, metric)


def main() -> None:
    args, rec = options(__doc__ or "")
    spans = args.args[0] if args.args else (2_000 if args.quick else SPANS)
    expected = len(range(0, spans, USAGE_EVERY))
    with local_server() as url:
        run("plain", url, min(spans, 1000), "warmup")  # imports and first connections
        plain, _ = run("plain", url, spans, "plain")
        exporter, billed_exporter = run("exporter", url, spans, "exporter")
        doow, billed_doow = run("doow", url, spans, "doow")
    rows = [
        ["plain sampler, no Doow", f"{plain:.1f}", "-", "-"],
        [
            "plain sampler + DoowSpanExporter (sampled spans only)",
            f"{exporter:.1f}",
            f"{billed_exporter:,.0f} of {expected:,}",
            f"{exporter / plain:.2f}x",
        ],
        [
            "Doow: UsageRecordingSampler + UsageSpanProcessor",
            f"{doow:.1f}",
            f"{billed_doow:,.0f} of {expected:,}",
            f"{doow / plain:.2f}x",
        ],
    ]
    table(
        f"{spans:,} spans, {RATIO:.0%} of traces sampled, usage on every {USAGE_EVERY}th span",
        ["setup", "us CPU/span", "usage billed", "vs plain"],
        rows,
    )
    rec.add(
        Record(
            name="tracing CPU per span, billing usage on sampled-out spans",
            unit="us CPU/span",
            better="lower",
            ours=doow,
            ours_label="UsageRecordingSampler + UsageSpanProcessor",
            alternatives={
                "plain sampler + DoowSpanExporter": exporter,
                "plain sampler, no Doow": plain,
            },
            delivered_ok=billed_doow == expected,
            group="sampling",
            params={"spans": spans, "sampled": RATIO, "usage_every": USAGE_EVERY},
            compared=False,
            note=f"usage billed: ours {billed_doow:,.0f} of {expected:,}, "
            f"the plain sampler's {billed_exporter:,.0f} (pacing lifted)",
        )
    )
    rec.write()


if __name__ == "__main__":
    main()
