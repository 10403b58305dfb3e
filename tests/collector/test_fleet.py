"""The fleet on loopback, through the real otelcol-doow binary and the shipped configs:
one agent (collector/agent.yaml, load_balancing by stream) in front of two gateways
(collector/gateway.yaml, persistent queues), several apps sending cumulative and delta
counters and span usage, one gateway SIGKILLed while it holds usage and restarted:
exact totals at the local server, nothing counted twice."""

from __future__ import annotations

import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from doow_otel_testing import LocalDoow
from doow_otel_testing.gateway_credentials import fleet_credentials
from helpers import ROOT, free_port, require_otelcol, start_otelcol, stop_process, wait_for

AGENT = ROOT / "collector" / "agent.yaml"
GATEWAY = ROOT / "collector" / "gateway.yaml"

LICENSES = 4
ROUNDS = 6  # two before the kill, two while the gateway is down, two after its restart


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status, answer.read().decode()
    except OSError:
        return 0, ""


@dataclass
class Collector:
    """One otelcol-doow process on fixed ports, restartable on the same ports and queue."""

    config: Path
    env: dict[str, str]
    log: Path
    health_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Collector:
        env = {
            **self.env,
            "HEALTH_CHECK_ENDPOINT": f"127.0.0.1:{self.health_port}",
            "OTELCOL_METRICS_PORT": str(self.metrics_port),
        }
        self.process = start_otelcol(self.config, env, self.log)
        return self

    def healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"{self.config.name} exited:\n{self.log.read_text()[-3000:]}")
        return get(f"http://127.0.0.1:{self.health_port}/")[0] == 200

    def counter(self, name: str) -> float:
        """The sum of one of the collector's own counters (all label sets)."""
        _, text = get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        pattern = rf"^{name}(?:_total)?(?:\{{[^}}]*\}})? (\S+)$"
        return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.process, sig)
        self.process = None


class App:
    """An app with its own OTel SDK and OTLP exporters, sending to the agent."""

    def __init__(self, name: str, agent: str, *, delta: bool) -> None:
        self.delta = delta
        resource = Resource.create({"service.name": name})
        temporality = {Counter: AggregationTemporality.DELTA} if delta else {}
        exporter = OTLPMetricExporter(
            endpoint=f"{agent}/v1/metrics", preferred_temporality=temporality
        )
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        self.meters = MeterProvider(metric_readers=[reader], resource=resource)
        self.counter = self.meters.get_meter("app").create_counter(
            "api_calls" if delta else "pages"
        )
        self.tracers = TracerProvider(resource=resource)
        self.tracers.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{agent}/v1/traces"))
        )

    def round(self, r: int) -> None:
        for license in range(LICENSES):
            self.counter.add(r + license + 1, {"doow.license_id": f"lic_{license}"})
        with self.tracers.get_tracer("app").start_as_current_span("export") as span:
            span.add_event(
                "doow.usage",
                {"doow.metric": "exports", "doow.quantity": 2, "doow.license_id": f"lic_{r}"},
            )
        assert self.meters.force_flush(timeout_millis=10_000)

    def shutdown(self) -> None:
        self.meters.shutdown()
        self.tracers.shutdown()


def expected_total(apps: int, license: int) -> int:
    return apps * sum(r + license + 1 for r in range(ROUNDS))


@pytest.fixture
def fleet(local_doow: LocalDoow, tmp_path: Path) -> Iterator[tuple[Collector, list[Collector]]]:
    require_otelcol()
    gateway_credentials, agent_credentials = fleet_credentials(tmp_path)
    gateways = []
    for n in (1, 2):
        queue = tmp_path / f"queue-{n}"
        queue.mkdir()
        env = {
            "DOOW_API_KEY": local_doow.api_key,
            "DOOW_ENDPOINT": local_doow.url,
            "DOOW_QUEUE_DIR": str(queue),
            "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
            "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
            "DOOW_RETRY_INITIAL_INTERVAL": "200ms",
            "DOOW_RETRY_MAX_INTERVAL": "1s",
            "DOOW_AGGREGATION_WINDOW": "1s",
            "DOOW_AGGREGATION_GRACE": "0s",
            **gateway_credentials,
        }
        gateways.append(Collector(GATEWAY, env, tmp_path / f"gateway-{n}.log").start())
    agent_http = free_port()
    hostnames = ", ".join(g.env["OTLP_GRPC_ENDPOINT"] for g in gateways)
    agent_env = {
        "DOOW_GATEWAYS": f"[{hostnames}]",
        "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{agent_http}",
        "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        "DOOW_QUEUE_DIR": str(tmp_path / "agent-queue"),
        **agent_credentials,
    }
    agent = Collector(AGENT, agent_env, tmp_path / "agent.log").start()
    try:
        for c in [agent, *gateways]:
            assert wait_for(c.healthy), c.log.read_text()[-3000:]
        yield agent, gateways
    finally:
        for c in [agent, *gateways]:
            c.stop()


def test_a_gateway_killed_while_holding_usage_loses_and_doubles_nothing(
    fleet: tuple[Collector, list[Collector]], local_doow: LocalDoow
) -> None:
    agent, (doomed, survivor) = fleet
    agent_url = f"http://127.0.0.1:{agent.env['OTLP_HTTP_ENDPOINT'].rsplit(':', 1)[1]}"
    apps = [App(f"app-{i}", agent_url, delta=i % 2 == 0) for i in range(4)]
    rounds = iter(range(ROUNDS))

    def send(count: int) -> None:
        for r in [next(rounds) for _ in range(count)]:
            with ThreadPoolExecutor(len(apps)) as pool:
                list(pool.map(App.round, apps, [r] * len(apps)))

    try:
        local_doow.faults.fail_next(1_000_000, 503)  # Doow is down: the gateways hold usage
        send(2)
        # both gateways took a share of the streams (and hold it: nothing is delivered)
        for gateway in (doomed, survivor):
            assert wait_for(
                lambda g=gateway: g.counter("otelcol_receiver_accepted_metric_points") > 0
            ), gateway.log.read_text()[-3000:]
        assert local_doow.total("pages") == 0
        doomed.stop(signal.SIGKILL)  # its share is on disk, in its queue
        send(2)  # the agent keeps the doomed gateway's share, retrying
        local_doow.faults.clear()
        assert wait_for(lambda: local_doow.total("api_calls") > 0)
        doomed.start()  # same ports, same queue directory
        assert wait_for(doomed.healthy), doomed.log.read_text()[-3000:]
        send(2)
    finally:
        for app in apps:
            app.shutdown()

    delta_apps = cumulative_apps = 2

    def delivered() -> bool:
        return all(
            local_doow.total("api_calls", f"lic_{lic}") == expected_total(delta_apps, lic)
            and local_doow.total("pages", f"lic_{lic}") == expected_total(cumulative_apps, lic)
            for lic in range(LICENSES)
        ) and local_doow.total("exports") == 2 * ROUNDS * len(apps)

    logs = "\n".join(c.log.read_text()[-2000:] for c in (agent, doomed, survivor))
    assert wait_for(delivered, seconds=45), logs
    time.sleep(2.5)  # a batch interval and a retry more: nothing further arrives
    assert delivered()
    # the gateways aggregate: at most one stored event per stream and flush (a flush's
    # window), fewer where flushes shared a window; the resends were counted once (totals)
    assert 0 < len(local_doow.events(metric="pages")) <= cumulative_apps * LICENSES * ROUNDS
    assert 0 < len(local_doow.events(metric="api_calls")) <= delta_apps * LICENSES * ROUNDS
    assert local_doow.stats()["rejected"] == 0


def test_a_single_collector_killed_right_after_accepting_usage_loses_nothing(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """The shipped single-collector pipeline holds nothing accepted only in memory: an
    app's export that succeeded is on disk, whatever happens to the collector next."""
    require_otelcol()
    queue = tmp_path / "queue"
    queue.mkdir()
    http_port = free_port()
    env = {
        "DOOW_API_KEY": local_doow.api_key,
        "DOOW_ENDPOINT": local_doow.url,
        "DOOW_QUEUE_DIR": str(queue),
        "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http_port}",
        "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        "DOOW_AGGREGATION_WINDOW": "1s",
        "DOOW_AGGREGATION_GRACE": "0s",
    }
    collector = Collector(ROOT / "otel-collector-config.yaml", env, tmp_path / "collector.log")
    collector.start()
    try:
        assert wait_for(collector.healthy), collector.log.read_text()[-3000:]
        local_doow.faults.fail_next(1_000_000, 503)  # nothing leaves before the kill
        app = App("app", f"http://127.0.0.1:{http_port}", delta=True)
        try:
            app.round(0)  # accepted: the export returned success
        finally:
            app.shutdown()
        collector.stop(signal.SIGKILL)
        local_doow.faults.clear()
        collector.start()  # same queue directory
        assert wait_for(
            lambda: all(
                local_doow.total("api_calls", f"lic_{lic}") == lic + 1 for lic in range(LICENSES)
            ),
            seconds=30,
        ), collector.log.read_text()[-3000:]
        assert wait_for(lambda: local_doow.total("exports") == 2)
    finally:
        collector.stop()
