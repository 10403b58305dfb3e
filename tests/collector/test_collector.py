"""End to end through the real otelcol-doow binary (built from collector/manifest.yaml
with the doow exporter) and the repository's otel-collector-config.yaml, into the local
server: exact totals from apps with no Doow code, from DoowTracker routed through the
collector, from cumulative counters, across a SIGKILL with a persistent queue, and
across a rotated API key; and `validate` on configs with the standard HTTP settings."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from doow_otel_testing import LocalDoow
from helpers import (
    COLLECTOR_CONFIG,
    OTELCOL,
    Collector,
    require_otelcol,
    run_app,
    running_collector,
    wait_for,
)


@pytest.fixture
def collector(local_doow: LocalDoow, tmp_path: Path) -> Iterator[Collector]:
    with running_collector(local_doow, tmp_path) as running:
        yield running


PLAIN_OTEL_APP = """
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": "plain-otel-app"})
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=60_000)
    meters = MeterProvider(metric_readers=[reader], resource=resource)
    tracers = TracerProvider(resource=resource)
    tracers.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    calls = meters.get_meter("app").create_counter("api_calls")
    for i in range(30):
        calls.add(1, {"doow.license_id": f"lic_{i % 3}", "route": "/v1/summarise"})
    calls.add(100, {"route": "/health"})  # ordinary telemetry, not billed
    with tracers.get_tracer("app").start_as_current_span("export") as span:
        span.add_event("doow.usage", {"doow.metric": "exports", "doow.quantity": 4,
                                      "doow.license_id": "lic_0"})
        span.set_attributes({"gen_ai.usage.input_tokens": 812, "gen_ai.request.model": "m",
                             "doow.license_id": "lic_0"})
    meters.shutdown()
    tracers.shutdown()
"""


def test_an_app_with_only_the_otel_sdk_and_its_otlp_exporter(
    collector: Collector, local_doow: LocalDoow, tmp_path: Path
) -> None:
    run_app(
        PLAIN_OTEL_APP,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http,
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta",
        },
        tmp_path,
    )
    assert wait_for(lambda: local_doow.total("input_tokens") == 812)
    assert wait_for(lambda: local_doow.total("api_calls") == 30)
    assert [local_doow.total("api_calls", f"lic_{i}") for i in range(3)] == [10, 10, 10]
    assert local_doow.total("exports", "lic_0") == 4
    (event,) = local_doow.events(metric="exports")
    assert event["attribution"]["service.name"] == "plain-otel-app"
    # gzip by default (confighttp's compression); the distribution and its version,
    # then the exporter
    assert all(r["content_encoding"] == "gzip" for r in local_doow.requests())
    user_agent = local_doow.requests()[0]["user_agent"]
    assert user_agent.startswith("otelcol-doow/0.1.0 "), user_agent
    assert " doowexporter/" in user_agent


def test_cumulative_counters_are_converted_by_the_pipeline(
    collector: Collector, local_doow: LocalDoow, tmp_path: Path
) -> None:
    app = """
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=60_000)
        provider = MeterProvider(metric_readers=[reader])
        pages = provider.get_meter("app").create_counter("pages")
        pages.add(5, {"doow.license_id": "lic_cumulative"})
        provider.force_flush()   # cumulative 5
        pages.add(3, {"doow.license_id": "lic_cumulative"})
        provider.force_flush()   # cumulative 8
        pages.add(2, {"doow.license_id": "lic_cumulative"})
        provider.shutdown()      # cumulative 10
    """
    run_app(app, {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http}, tmp_path)
    assert wait_for(lambda: local_doow.total("pages", "lic_cumulative") >= 10)
    time.sleep(2.5)  # one more batch interval: nothing further arrives
    assert local_doow.total("pages", "lic_cumulative") == 10
    assert local_doow.stats()["rejected"] == 0


def test_doow_tracker_routed_through_the_collector(
    collector: Collector, local_doow: LocalDoow
) -> None:
    from doow_otel import DoowTracker

    meter = DoowTracker(
        route="collector",
        collector_endpoint=collector.otlp_http,
        flush_interval=3600,
        handle_sigterm=False,
    )
    try:
        with meter.invocation(flush_timeout=5.0):  # the wrappers' flush: pushed before the end
            for i in range(20):
                meter.track(
                    metric="api_calls",
                    quantity=2,
                    license_id=f"lic_{i % 2}",
                    attribution={"function": "f"},
                )
        meter.track(metric="tokens", quantity=1.5, license_id="lic_0")
        meter.flush()
    finally:
        meter.shutdown()
    assert wait_for(lambda: local_doow.total("tokens", "lic_0") == 1.5)
    assert wait_for(lambda: local_doow.total("api_calls") == 40)
    assert local_doow.total("api_calls", "lic_1") == 20


def test_sigkill_with_a_persistent_queue_then_restart_delivers_exactly_once(
    collector: Collector, local_doow: LocalDoow, tmp_path: Path
) -> None:
    local_doow.faults.fail_next(100_000, 503)  # Doow is down
    run_app(
        PLAIN_OTEL_APP,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http,
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta",
        },
        tmp_path,
    )
    assert wait_for(lambda: any(r["status"] == 503 for r in local_doow.requests()))
    collector.stop(signal.SIGKILL)  # the queue is on disk, in file_storage
    assert local_doow.total("api_calls") == 0
    local_doow.faults.clear()
    collector.start()  # same queue directory
    assert wait_for(
        lambda: local_doow.total("api_calls") == 30 and local_doow.total("input_tokens") == 812,
        seconds=60,
    ), collector.log.read_text()[-3000:]
    time.sleep(2.5)
    assert local_doow.total("api_calls") == 30
    assert local_doow.total("exports") == 4
    assert len(local_doow.events(metric="api_calls")) == 3  # one delta point per license


def test_the_pipeline_config_validates_and_names_a_missing_key(tmp_path: Path) -> None:
    require_otelcol()
    env = {**os.environ, "DOOW_QUEUE_DIR": str(tmp_path)}
    env.pop("DOOW_API_KEY", None)
    command = [str(OTELCOL), "validate", "--config", str(COLLECTOR_CONFIG)]
    ok = subprocess.run(
        command,
        env={**env, "DOOW_API_KEY": "dk_validate_0123456789"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0
    assert "api_key: required" in missing.stderr + missing.stdout


def test_a_wrong_key_keeps_usage_in_the_queue_until_the_key_is_rotated(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """A 401 is not the batch's fault: the usage stays in the persistent queue (the
    shipped config retries without a time limit) and a restart with the right key
    delivers all of it, once."""
    require_otelcol()
    queue = tmp_path / "queue"
    queue.mkdir()
    log = tmp_path / "collector.log"
    wrong = Collector(local_doow, queue, log, api_key="dk_revoked_0123456789abcdef").start()
    try:
        run_app(
            PLAIN_OTEL_APP,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": wrong.otlp_http,
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta",
            },
            tmp_path,
        )
        # every pipeline's usage met the 401, and was retried, not dropped
        assert wait_for(
            lambda: sum(r["status"] == 401 for r in local_doow.requests()) >= 6, seconds=60
        ), log.read_text()[-3000:]
        assert "set api_key to a valid Doow SDK key" in log.read_text()
    finally:
        wrong.stop()  # SIGTERM: the queue stays on disk
    assert local_doow.total("api_calls") == 0

    rotated = Collector(local_doow, queue, log).start()  # the server's key, same queue
    try:
        assert wait_for(
            lambda: (
                local_doow.total("api_calls") == 30
                and local_doow.total("input_tokens") == 812
                and local_doow.total("exports") == 4
            ),
            seconds=60,
        ), log.read_text()[-3000:]
        time.sleep(2.5)  # one more batch interval: nothing further arrives
    finally:
        rotated.stop()
    assert local_doow.total("api_calls") == 30
    assert [local_doow.total("api_calls", f"lic_{i}") for i in range(3)] == [10, 10, 10]
    assert local_doow.total("input_tokens") == 812
    assert local_doow.total("exports") == 4
    assert local_doow.stats()["rejected"] == 0


HTTP_SETTINGS_CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:4318
exporters:
  doow:
    endpoint: https://doow.internal.example:8443
    api_key: dk_validate_0123456789
    tls:
      ca_file: {ca_file}
      min_version: "1.3"
    proxy_url: http://proxy.internal:3128
    headers:
      X-Team: billing
    compression: zstd
    keepalive:
      idle_conn_timeout: 30s
      max_idle_conns_per_host: 8
    timeout: 20s
service:
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [doow]
"""


def test_validate_accepts_the_standard_http_client_settings(tmp_path: Path) -> None:
    require_otelcol()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("")
    config = tmp_path / "config.yaml"
    config.write_text(HTTP_SETTINGS_CONFIG.format(ca_file=ca_file))
    command = [str(OTELCOL), "validate", "--config", str(config)]
    ok = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    # and a bad one names the field and the fix
    config.write_text(
        HTTP_SETTINGS_CONFIG.format(ca_file=ca_file).replace(
            "proxy_url: http://proxy.internal:3128", "proxy_url: proxy:3128"
        )
    )
    bad = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert "proxy_url: not a URL" in bad.stderr + bad.stdout


def test_a_wrong_endpoint_keeps_usage_until_doow_answers(
    collector: Collector, local_doow: LocalDoow, tmp_path: Path
) -> None:
    """A 404 says the endpoint is wrong, not the usage: it is kept and retried (the fix
    is named in the log), and delivered exactly once when the answers are Doow's."""
    local_doow.faults.fail_next(100_000, 404)
    run_app(
        PLAIN_OTEL_APP,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http,
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta",
        },
        tmp_path,
    )
    assert wait_for(
        lambda: sum(r["status"] == 404 for r in local_doow.requests()) >= 6, seconds=60
    ), collector.log.read_text()[-3000:]
    assert "check endpoint" in collector.log.read_text()
    assert local_doow.total("api_calls") == 0
    local_doow.faults.clear()
    assert wait_for(
        lambda: local_doow.total("api_calls") == 30 and local_doow.total("input_tokens") == 812,
        seconds=60,
    ), collector.log.read_text()[-3000:]
    time.sleep(2.5)
    assert local_doow.total("api_calls") == 30
    assert local_doow.total("exports") == 4
    assert "Doow accepts the exporter's configuration again" in collector.log.read_text()


USAGE_SPAN_APP = """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tracers = TracerProvider()
    tracers.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    with tracers.get_tracer("app").start_as_current_span("export") as span:
        span.add_event("doow.usage", {"doow.metric": "exports", "doow.quantity": 4,
                                      "doow.license_id": "lic_0"})
        span.add_event("doow.usage", {"doow.metric": "not_a_doow_metric", "doow.quantity": 1,
                                      "doow.license_id": "lic_1"})
    tracers.shutdown()
"""


def test_the_collectors_own_metrics_carry_the_python_clients_names(tmp_path: Path) -> None:
    """Delivery health on the collector's Prometheus endpoint, as the Python client names
    it (doow_otel.self_metrics): a 429 (with Doow's budget in X-Doow-Rate-Limits), then a
    207 that keeps one event and rejects the other. The Collector's exposition drops the
    `_total` suffix and the units (its default): `doow_exporter_event_exported`."""
    require_otelcol()
    rejected = 'doow_exporter_event_exported{error_type="rejected"}'
    with (
        LocalDoow(known_metrics=["exports"]) as doow,
        running_collector(doow, tmp_path) as collector,
    ):
        budget = {"event_rate": {"limit": 900, "current": 900, "retry_after": 1}}
        doow.faults.fail_next(1, 429, retry_after=1, rate_limits=budget)
        run_app(USAGE_SPAN_APP, {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.otlp_http}, tmp_path)
        # the exporter counts once it has read the 207
        assert wait_for(lambda: rejected in collector.own_metrics(), seconds=30), (
            collector.log.read_text()[-3000:]
        )
        metrics = collector.own_metrics()
        # what the server holds: one event stored, one rejected, one request refused (429)
        assert doow.total("exports") == 4 and len(doow.events()) == 1
        assert [r["metric"] for r in doow.rejections()] == ["not_a_doow_metric"]
        assert len(doow.refusals(status=429)) == 1
    # the exporter's own series, and none under the old otelcol_doow_* names
    own = {
        name: value for name, value in metrics.items() if name.startswith(("doow", "otelcol_doow"))
    }
    assert own == {
        "doow_exporter_event_exported": 1,
        rejected: 1,
        "doow_exporter_rate_limited": 1,
        "doow_exporter_event_budget": 450,  # its share of the 900 Doow named, halved by the 429
    }, own
