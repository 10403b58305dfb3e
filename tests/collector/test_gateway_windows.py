"""The gateway tier aggregates (issue 21), through the real otelcol-doow binaries and the
shipped configs: 20 senders (one service's processes, each with its own OTel SDK)
through one agent (collector/agent.yaml, load_balancing by license) to two gateways
(collector/gateway.yaml, aggregation in file_storage, 5 s windows here), one gateway
SIGKILLed mid-window and restarted, a third added mid-run (the agent's gateway list in a
file, reloaded on SIGHUP). Exact totals at the local server, and at most one event per
stream and window per gateway; a request a sender sends again after a lost answer is
counted once; a point for a sealed window goes into a later event."""

from __future__ import annotations

import json
import re
import signal
import ssl
import subprocess
import time
import urllib.request
from collections import Counter as Tally
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from doow_otel_testing import LocalDoow
from doow_otel_testing.gateway_credentials import fleet_credentials
from helpers import ROOT, free_port, require_otelcol, start_otelcol, stop_process, wait_for

pytestmark = pytest.mark.slow

AGENT = ROOT / "collector" / "agent.yaml"
GATEWAY = ROOT / "collector" / "gateway.yaml"
WINDOW = 5  # seconds
SENDERS = 20
LICENSES = 4
ROUNDS = 24


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return int(answer.status)
    except OSError:
        return 0


@dataclass
class Collector:
    """One otelcol-doow process on fixed ports, restartable on the same ports and state."""

    config: Path
    env: dict[str, str]
    log: Path
    health_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Collector:
        env = {
            **self.env,
            "HEALTH_CHECK_ENDPOINT": f"127.0.0.1:{self.health_port}",
            "OTELCOL_METRICS_PORT": str(free_port()),
        }
        self.process = start_otelcol(self.config, env, self.log)
        assert wait_for(self.healthy), self.log.read_text()[-3000:]
        return self

    def healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"{self.config.name} exited:\n{self.log.read_text()[-3000:]}")
        return get(f"http://127.0.0.1:{self.health_port}/") == 200

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.process, sig)
        self.process = None


class Sender:
    """One process of the service: its own SDK, delta counters, pushing to the agent."""

    def __init__(self, agent: str) -> None:
        exporter = OTLPMetricExporter(
            endpoint=f"{agent}/v1/metrics",
            preferred_temporality={Counter: AggregationTemporality.DELTA},
        )
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        resource = Resource.create({"service.name": "checkout"})
        self.meters = MeterProvider(metric_readers=[reader], resource=resource)
        meter = self.meters.get_meter("app")
        self.calls = meter.create_counter("api_calls")
        self.tokens = meter.create_counter("tokens")

    def round(self, r: int) -> None:
        for lic in range(LICENSES):
            self.calls.add(1, {"doow.license_id": f"lic_{lic}"})
            self.tokens.add(r + lic, {"doow.license_id": f"lic_{lic}"})
        assert self.meters.force_flush(timeout_millis=10_000)


@pytest.fixture
def fleet(local_doow: LocalDoow, tmp_path: Path) -> Iterator[dict[str, object]]:
    require_otelcol()
    gateway_credentials, agent_credentials = fleet_credentials(tmp_path)

    def gateway(n: int) -> Collector:
        queue = tmp_path / f"gateway-{n}"
        queue.mkdir(exist_ok=True)
        env = {
            "DOOW_API_KEY": local_doow.api_key,
            "DOOW_ENDPOINT": local_doow.url,
            "DOOW_QUEUE_DIR": str(queue),
            "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
            "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
            "DOOW_RETRY_INITIAL_INTERVAL": "200ms",
            "DOOW_RETRY_MAX_INTERVAL": "1s",
            "DOOW_AGGREGATION_WINDOW": f"{WINDOW}s",
            "DOOW_AGGREGATION_GRACE": "1s",
            **gateway_credentials,
        }
        return Collector(GATEWAY, env, tmp_path / f"gateway-{n}.log")

    # the shipped agent config, its gateway list read from a file (reloaded on SIGHUP)
    gateways_file = tmp_path / "gateways.yaml"
    agent_config = tmp_path / "agent.yaml"
    agent_config.write_text(
        AGENT.read_text().replace("${env:DOOW_GATEWAYS}", f"${{file:{gateways_file}}}")
    )
    gateways = [gateway(1).start(), gateway(2).start()]

    def route_to(members: list[Collector]) -> None:
        listed = ", ".join(g.env["OTLP_GRPC_ENDPOINT"] for g in members)
        gateways_file.write_text(f"[{listed}]\n")

    route_to(gateways)
    agent_http = free_port()
    agent_env = {
        "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{agent_http}",
        "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        "DOOW_QUEUE_DIR": str(tmp_path / "agent-queue"),
        **agent_credentials,
    }
    agent = Collector(agent_config, agent_env, tmp_path / "agent.log").start()
    try:
        yield {
            "agent": agent,
            "agent_url": f"http://127.0.0.1:{agent_http}",
            "gateways": gateways,
            "new_gateway": gateway,
            "route_to": route_to,
            "trust": ssl.create_default_context(cafile=agent_credentials["DOOW_GATEWAYS_CA_FILE"]),
            "token": agent_credentials["DOOW_GATEWAY_TOKEN"],
        }
    finally:
        for c in [agent, *gateways]:
            c.stop()


def otlp_point(license_id: str, value: int, start_ns: int) -> bytes:
    point = {
        "asInt": str(value),
        "startTimeUnixNano": str(start_ns),
        "timeUnixNano": str(start_ns + 1_000_000_000),
        "attributes": [{"key": "doow.license_id", "value": {"stringValue": license_id}}],
    }
    metric = {
        "name": "api_calls",
        "sum": {"aggregationTemporality": 1, "isMonotonic": True, "dataPoints": [point]},
    }
    return json.dumps({"resourceMetrics": [{"scopeMetrics": [{"metrics": [metric]}]}]}).encode()


def post(gateway: Collector, body: bytes, token: str, trust: ssl.SSLContext) -> int:
    port = gateway.env["OTLP_HTTP_ENDPOINT"].rsplit(":", 1)[1]
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}/v1/metrics",
        body,
        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=5, context=trust) as answer:
        return int(answer.status)


def test_a_fleet_aggregates_exactly_through_a_kill_and_a_scale_out(
    fleet: dict[str, object], local_doow: LocalDoow
) -> None:
    agent: Collector = fleet["agent"]  # type: ignore[assignment]
    gateways: list[Collector] = fleet["gateways"]  # type: ignore[assignment]
    doomed = gateways[0]
    senders = [Sender(str(fleet["agent_url"])) for _ in range(SENDERS)]
    token, trust = str(fleet["token"]), fleet["trust"]
    assert isinstance(trust, ssl.SSLContext)
    try:
        with ThreadPoolExecutor(8) as pool:
            for r in range(ROUNDS):
                started = time.monotonic()
                list(pool.map(Sender.round, senders, [r] * SENDERS))
                if r == 6:
                    doomed.stop(signal.SIGKILL)  # mid-window, holding open windows
                if r == 9:
                    doomed.start()  # same ports, same state directory
                if r == 14:  # scale-out: a third gateway, the agent's list reloaded
                    added = fleet["new_gateway"](3).start()  # type: ignore[operator]
                    gateways.append(added)
                    fleet["route_to"](gateways)  # type: ignore[operator]
                    assert agent.process is not None
                    agent.process.send_signal(signal.SIGHUP)
                    time.sleep(1)
                    assert wait_for(agent.healthy)
                time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    finally:
        for sender in senders:
            sender.meters.shutdown()

    # a sender's request sent again after its answer was lost: applied once
    now_ns = time.time_ns()
    again = otlp_point("lic_resend", 7, now_ns)
    assert post(gateways[1], again, token, trust) == 200
    assert post(gateways[1], again, token, trust) == 200
    # a point whose window was sealed long ago goes into a later window's event
    late_start = now_ns - 120 * 1_000_000_000
    assert post(gateways[1], otlp_point("lic_late", 11, late_start), token, trust) == 200

    want = {("api_calls", "lic_resend"): 7, ("api_calls", "lic_late"): 11}
    for lic in range(LICENSES):
        want["api_calls", f"lic_{lic}"] = SENDERS * ROUNDS
        want["tokens", f"lic_{lic}"] = SENDERS * sum(r + lic for r in range(ROUNDS))

    def stored() -> dict[tuple[str, str], int | float]:
        return {key: local_doow.total(*key) for key in want}

    assert wait_for(lambda: stored() == want, seconds=40), f"stored {stored()}, want {want}"
    time.sleep(WINDOW + 2)  # a window more: nothing further arrives
    assert stored() == want

    events = local_doow.events(limit=100_000)
    (late,) = {e["event_id"]: e for e in events if e["license_id"] == "lic_late"}.values()
    assert late["occurred_at"] >= time_text(now_ns - (WINDOW + 2) * 1_000_000_000)
    # one event per stream and window per gateway at most: three gateways at most
    per_window = Tally(
        (e["license_id"], e["occurred_at"])
        for e in {e["event_id"]: e for e in events if e["license_id"].startswith("lic_")}.values()
    )
    assert max(per_window.values()) <= 3, per_window
    # the metrics of a stream travel in one event (rule P; the agent routes by license),
    # but where a window of the stream was split between gateways
    by_id = Tally(e["event_id"] for e in events if re.fullmatch(r"lic_\d", e["license_id"]))
    assert sum(1 for n in by_id.values() if n == 2) >= 0.8 * len(by_id), by_id
    assert local_doow.stats()["rejected"] == 0
    for gateway in gateways:  # every window sealed once: none queued again after a failure
        assert "sealing an aggregation window failed" not in gateway.log.read_text()


def time_text(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9))
