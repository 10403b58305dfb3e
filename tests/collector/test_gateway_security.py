"""The shipped gateway (collector/gateway.yaml) takes usage only over TLS and only from
senders that present the fleet's token: anyone else who reaches its port cannot bill a
license under its api_key (docs/security.md)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from doow_otel_testing import LocalDoow
from doow_otel_testing.gateway_credentials import fleet_credentials
from helpers import (
    ROOT,
    free_port,
    listening,
    require_otelcol,
    start_otelcol,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.slow

GATEWAY = ROOT / "collector" / "gateway.yaml"

USAGE = {
    "resourceMetrics": [{"scopeMetrics": [{"metrics": [{
        "name": "api_calls",
        "sum": {"aggregationTemporality": 1, "isMonotonic": True, "dataPoints": [{
            "asInt": "5", "timeUnixNano": "1795515300000000000",
            "attributes": [{"key": "doow.license_id", "value": {"stringValue": "lic_sec"}}],
        }]},
    }]}]}]
}  # fmt: skip


@pytest.fixture
def gateway(local_doow: LocalDoow, tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    require_otelcol()
    gateway_env, sender = fleet_credentials(tmp_path)
    port = free_port()
    env = {
        "DOOW_API_KEY": local_doow.api_key,
        "DOOW_ENDPOINT": local_doow.url,
        "DOOW_QUEUE_DIR": str(tmp_path / "queue"),
        "OTLP_GRPC_ENDPOINT": f"127.0.0.1:{free_port()}",
        "OTLP_HTTP_ENDPOINT": f"127.0.0.1:{port}",
        "HEALTH_CHECK_ENDPOINT": f"127.0.0.1:{free_port()}",
        "OTELCOL_METRICS_PORT": str(free_port()),
        "DOOW_AGGREGATION_WINDOW": "1s",
        "DOOW_AGGREGATION_GRACE": "0s",
        **gateway_env,
    }
    process = start_otelcol(GATEWAY, env, tmp_path / "gateway.log")
    try:
        assert wait_for(lambda: listening(port)), (tmp_path / "gateway.log").read_text()
        yield port, sender
    finally:
        stop_process(process)


def post(url: str, token: str | None, context: ssl.SSLContext | None) -> int:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(USAGE).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError):
        return 0


def test_only_tls_senders_with_the_token_record_usage(
    gateway: tuple[int, dict[str, str]], local_doow: LocalDoow
) -> None:
    port, sender = gateway
    trusted = ssl.create_default_context(cafile=sender["DOOW_GATEWAYS_CA_FILE"])
    url = f"https://127.0.0.1:{port}/v1/metrics"
    assert post(url, None, trusted) == 401
    assert post(url, "not-the-token", trusted) == 401
    assert post(f"http://127.0.0.1:{port}/v1/metrics", sender["DOOW_GATEWAY_TOKEN"], None) != 200
    assert local_doow.total("api_calls") == 0
    assert post(url, sender["DOOW_GATEWAY_TOKEN"], trusted) == 200
    assert wait_for(lambda: local_doow.total("api_calls") == 5)
