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
from helpers import running_gateway, wait_for

pytestmark = pytest.mark.slow

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
    with running_gateway(local_doow, tmp_path, window="1s") as (port, sender):
        yield port, sender


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
