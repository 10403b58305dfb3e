"""The local Doow-compatible server, over raw HTTP: every row of the contract's table,
deduplication, the read API, limits, the admin endpoint and restarts."""

from __future__ import annotations

import gzip
import json
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)

from doow_otel_testing import LocalDoow
from doow_otel_testing.processes import free_port, wait_for


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "license_id": "lic_raw",
        "occurred_at": "2026-11-24T10:15:00.123Z",
        "source_system": "sdk",
        "kind": "USAGE",
        "attribution": {"function": "f"},
        "metadata": {},
        "measurements": [{"metric_name": "api_calls", "quantity": 1}],
    }
    base.update(overrides)
    return base


def post(
    doow: LocalDoow,
    body: Any,
    *,
    path: str = "/telemetry/events",
    key: str | None = None,
    gzipped: bool = False,
    content_type: str = "application/json",
) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key or doow.api_key}", "Content-Type": content_type}
    if gzipped:
        data = gzip.compress(data)
        headers["Content-Encoding"] = "gzip"
    return httpx.post(doow.url + path, content=data, headers=headers, timeout=10)


def get(doow: LocalDoow, path: str, **params: Any) -> Any:
    answer = httpx.get(
        doow.url + path, params=params, headers={"Authorization": f"Bearer {doow.api_key}"}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_202_plain_and_gzip(local_doow: LocalDoow) -> None:
    one = post(local_doow, {"batch_id": "b1", "events": [event()]}).json()
    assert one == {"accepted": 1, "rejected": 0, "batch_id": "b1"}
    answer = post(local_doow, {"batch_id": "b2", "events": [event(), event()]}, gzipped=True)
    assert answer.status_code == 202
    assert answer.json() == {"accepted": 2, "rejected": 0, "batch_id": "b2"}
    assert local_doow.total("api_calls", "lic_raw") == 3


def test_207_names_each_rejected_event_and_keeps_the_rest(local_doow: LocalDoow) -> None:
    bad_quantity = event(measurements=[{"metric_name": "api_calls", "quantity": 0}])
    bad_time = event(occurred_at="yesterday")
    answer = post(local_doow, {"batch_id": "b", "events": [event(), bad_quantity, bad_time]})
    assert answer.status_code == 207
    body = answer.json()
    assert body["accepted"] == 1 and body["rejected"] == 2 and body["batch_id"] == "b"
    reasons = {r["event_id"]: r["reason"] for r in body["rejections"]}
    assert "greater than 0" in reasons[bad_quantity["event_id"]]
    assert reasons[bad_time["event_id"]].startswith("occurred_at:")
    assert local_doow.total("api_calls") == 1
    assert local_doow.stats()["rejected_by_reason"] == {"quantity": 1, "occurred_at": 1}


def test_node_sdk_top_level_fields_are_tolerated(local_doow: LocalDoow) -> None:
    node = event(metric="api_calls", quantity=1, timestamp="2026-11-24T10:15:00.123Z")
    assert post(local_doow, {"batch_id": "n", "events": [node]}).status_code == 202


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"events": []}', "events: must be a non-empty list"),
        (b'{"batch_id": 7, "events": [{}]}', "batch_id"),
    ],
)
def test_400_malformed(local_doow: LocalDoow, body: bytes, needle: str) -> None:
    answer = post(local_doow, body)
    assert answer.status_code == 400
    assert needle in answer.json()["message"]


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer sk_live_123", "Bearer dk_wrong", "Basic x"]
)
def test_401_without_a_valid_key(local_doow: LocalDoow, header: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if header:
        headers["Authorization"] = header
    for path in ("/telemetry/events", "/telemetry/heartbeat", "/admin/faults"):
        answer = httpx.post(local_doow.url + path, content=b"{}", headers=headers)
        assert answer.status_code == 401
    for path in ("/api/events", "/api/usage", "/api/stats"):
        assert httpx.get(local_doow.url + path, headers=headers).status_code == 401


def test_revoked_key_gets_401(local_doow: LocalDoow) -> None:
    local_doow.revoke(local_doow.api_key)
    assert post(local_doow, {"events": [event()]}).status_code == 401


def test_413_for_too_many_events_a_large_body_and_a_gzip_bomb(local_doow: LocalDoow) -> None:
    # the contract's limits: 1,000 events a batch, 10 MB a body
    many = post(local_doow, {"events": [event() for _ in range(1001)]})
    assert many.status_code == 413 and many.json()["error"] == "batch_too_large"
    huge = {"events": [event(metadata={"pad": "x" * 10_000_000})]}
    answer = post(local_doow, huge)
    assert answer.status_code == 413 and answer.json()["error"] == "payload_too_large"
    bomb = b'{"events": [], "pad": "' + b" " * (64 << 20) + b'"}'
    answer = post(local_doow, bomb, gzipped=True)
    assert answer.status_code == 413 and "after decompression" in answer.json()["message"]
    assert answer.json()["error"] == "payload_too_large"
    # under both limits: taken (a 2 MB body; then 999 events, the minute's 1,000 in all)
    large = {"events": [event(metadata={"pad": "x" * 2_000_000})]}
    assert post(local_doow, large).status_code == 202
    assert post(local_doow, {"events": [event() for _ in range(999)]}).status_code == 202


def test_415_and_bad_encoding(local_doow: LocalDoow) -> None:
    assert post(local_doow, {"events": [event()]}, content_type="text/plain").status_code == 415
    answer = httpx.post(
        local_doow.url + "/telemetry/events",
        content=b"\x1f\x8bnope",
        headers={
            "Authorization": f"Bearer {local_doow.api_key}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    assert answer.status_code == 400 and "gzip" in answer.json()["message"]


def test_429_and_5xx_faults_carry_their_headers(local_doow: LocalDoow) -> None:
    limits = {"events": {"limit": 100, "current": 101, "retry_after": 2}}
    local_doow.faults.fail_next(1, 429, retry_after="2", rate_limits=limits)
    answer = post(local_doow, {"events": [event()]})
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "2"
    assert json.loads(answer.headers["X-Doow-Rate-Limits"]) == limits
    local_doow.faults.fail_next(2, 500)
    assert [post(local_doow, {"events": [event()]}).status_code for _ in range(3)] == [
        500,
        500,
        202,
    ]
    assert local_doow.total("api_calls") == 1  # failed requests stored nothing


def test_fraction_of_requests_fail(local_doow: LocalDoow) -> None:
    local_doow.faults.fail_next(status=503, fraction=0.5)
    statuses = {post(local_doow, {"events": [event()]}).status_code for _ in range(40)}
    assert statuses == {202, 503}


def test_dedup_by_event_id_and_batch_id(local_doow: LocalDoow) -> None:
    first = event()
    assert post(local_doow, {"batch_id": "b1", "events": [first]}).json()["accepted"] == 1
    # the same batch again: acknowledged, not counted
    assert post(local_doow, {"batch_id": "b1", "events": [first]}).json()["accepted"] == 1
    # the same event in another batch, and twice within one batch
    second = event()
    assert (
        post(local_doow, {"batch_id": "b2", "events": [first, second, second]}).status_code == 202
    )
    assert local_doow.total("api_calls") == 2
    stats = local_doow.stats()
    assert stats["accepted"] == 2 and stats["duplicates"] == 3 and stats["duplicate_batches"] == 1


def test_drop_connection_after_the_body_stores_then_dedups_the_resend(
    local_doow: LocalDoow,
) -> None:
    local_doow.faults.drop_connection(1, when="after_body")
    batch = {"batch_id": "amb", "events": [event(), event()]}
    with pytest.raises(httpx.TransportError):
        post(local_doow, batch)
    assert local_doow.total("api_calls") == 2  # stored, but the client never heard
    assert post(local_doow, batch).json()["accepted"] == 2
    assert local_doow.total("api_calls") == 2
    local_doow.faults.drop_connection(1, when="before_body")
    with pytest.raises(httpx.TransportError):
        post(local_doow, {"events": [event()]})
    assert local_doow.total("api_calls") == 2
    assert [r["status"] for r in local_doow.requests()] == [0, 202, 0]


def test_heartbeat_records_the_key_use(local_doow: LocalDoow) -> None:
    assert local_doow.stats()["key_last_used_at"] is None
    answer = post(local_doow, b"{}", path="/telemetry/heartbeat")
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    assert local_doow.stats()["key_last_used_at"] is not None


def test_read_api_filters_pages_and_groups(local_doow: LocalDoow) -> None:
    events = [
        event(
            license_id=f"lic_{i % 2}",
            attribution={"region": "eu" if i < 3 else "us"},
            measurements=[{"metric_name": "api_calls", "quantity": i + 1}],
        )
        for i in range(5)
    ]
    post(local_doow, {"batch_id": "r", "events": events})
    post(
        local_doow,
        {
            "batch_id": "t",
            "events": [event(measurements=[{"metric_name": "tokens", "quantity": 10}])],
        },
    )
    newest = get(local_doow, "/api/events", limit=2, metric="api_calls")
    assert [e["quantity"] for e in newest["events"]] == [5, 4]
    rest = get(local_doow, "/api/events", metric="api_calls", before=newest["next_before"])
    assert [e["quantity"] for e in rest["events"]] == [3, 2, 1] and rest["next_before"] is None
    assert get(local_doow, "/api/events", license_id="lic_1")["events"][0]["quantity"] == 4
    future = get(local_doow, "/api/events", since="2999-01-01T00:00:00.000Z")
    assert future["events"] == []
    usage = {
        (u["metric"], u["license_id"]): u["total"] for u in get(local_doow, "/api/usage")["usage"]
    }
    assert usage == {
        ("api_calls", "lic_0"): 9,
        ("api_calls", "lic_1"): 6,
        ("tokens", "lic_raw"): 10,
    }
    by_region = get(local_doow, "/api/usage", metric="api_calls", by="region")["usage"]
    assert {(u["license_id"], u["region"]): u["total"] for u in by_region} == {
        ("lic_0", "eu"): 4,
        ("lic_0", "us"): 5,
        ("lic_1", "eu"): 2,
        ("lic_1", "us"): 4,
    }
    assert get(local_doow, "/api/stats")["accepted"] == 6


def test_read_api_rejects_a_bad_parameter(local_doow: LocalDoow) -> None:
    answer = httpx.get(
        local_doow.url + "/api/events?limit=lots",
        headers={"Authorization": f"Bearer {local_doow.api_key}"},
    )
    assert answer.status_code == 400 and "limit" in answer.json()["message"]


def _otlp(
    temporality: int, value: int = 5, end: int = 1_795_515_300
) -> ExportMetricsServiceRequest:
    point = NumberDataPoint(
        as_int=value,
        start_time_unix_nano=(end - 10) * 10**9,
        time_unix_nano=end * 10**9,
        attributes=[KeyValue(key="license_id", value=AnyValue(string_value="lic_otlp"))],
    )
    metric = Metric(
        name="api_calls",
        unit="{call}",
        sum=Sum(data_points=[point], aggregation_temporality=temporality, is_monotonic=True),
    )
    return ExportMetricsServiceRequest(
        resource_metrics=[ResourceMetrics(scope_metrics=[ScopeMetrics(metrics=[metric])])]
    )


def test_otlp_metrics_protobuf_json_and_gzip(local_doow: LocalDoow) -> None:
    delta = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    answer = post(
        local_doow,
        _otlp(delta).SerializeToString(),
        path="/telemetry/otlp/v1/metrics",
        content_type="application/x-protobuf",
        gzipped=True,
    )
    assert answer.status_code == 200
    assert not ExportMetricsServiceResponse.FromString(answer.content).HasField("partial_success")
    # the same point again (an OTLP retry) has the same deterministic id: not counted twice
    post(
        local_doow,
        _otlp(delta).SerializeToString(),
        path="/telemetry/otlp/v1/metrics",
        content_type="application/x-protobuf",
    )
    from google.protobuf.json_format import MessageToDict

    as_json = MessageToDict(_otlp(delta, value=7, end=1_795_515_310))  # the next interval
    assert post(local_doow, as_json, path="/telemetry/otlp/v1/metrics").status_code == 200
    assert local_doow.total("api_calls", "lic_otlp") == 12


def test_otlp_cumulative_is_rejected_with_the_fix(local_doow: LocalDoow) -> None:
    cumulative = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    answer = post(
        local_doow,
        _otlp(cumulative).SerializeToString(),
        path="/telemetry/otlp/v1/metrics",
        content_type="application/x-protobuf",
    )
    response = ExportMetricsServiceResponse.FromString(answer.content)
    assert response.partial_success.rejected_data_points == 1
    assert "cumulativetodelta" in response.partial_success.error_message
    assert local_doow.total("api_calls") == 0
    assert local_doow.stats()["rejected_by_reason"] == {"cumulative_temporality": 1}


def test_otlp_malformed_is_400(local_doow: LocalDoow) -> None:
    answer = post(
        local_doow,
        b"\xff\xff\xff",
        path="/telemetry/otlp/v1/metrics",
        content_type="application/x-protobuf",
    )
    assert answer.status_code == 400 and "protobuf" in answer.json()["message"]


def test_admin_endpoint_controls_faults(local_doow: LocalDoow) -> None:
    answer = post(local_doow, {"fail_next": {"count": 1, "status": 503}}, path="/admin/faults")
    assert answer.status_code == 200 and answer.json()["fail_next"] == 1
    assert post(local_doow, {"events": [event()]}).status_code == 503
    assert post(local_doow, {"bogus": {}}, path="/admin/faults").status_code == 400
    post(local_doow, {"max_body": 100}, path="/admin/faults")
    assert post(local_doow, {"events": [event()]}).status_code == 413
    post(local_doow, {"clear": True}, path="/admin/faults")
    assert post(local_doow, {"events": [event()]}).status_code == 202


def test_keep_alive_connections_are_reused(local_doow: LocalDoow) -> None:
    with httpx.Client(
        headers={
            "Authorization": f"Bearer {local_doow.api_key}",
            "Content-Type": "application/json",
        }
    ) as client:
        for _ in range(3):
            client.post(
                local_doow.url + "/telemetry/events", content=json.dumps({"events": [event()]})
            )
    assert len({r["peer_port"] for r in local_doow.requests()}) == 1


def test_serve_command_keeps_the_database_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "doow.db"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    key = "dk_restart_test_key"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    one = event()

    def run() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "doow_otel_testing.cli",
                "serve",
                "--port",
                str(port),
                "--db",
                str(db),
                "--key",
                key,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(200):
            try:
                httpx.get(url + "/api/stats", headers=headers)
                return process
            except httpx.TransportError:
                time.sleep(0.05)
        process.kill()
        raise AssertionError("the server did not start")

    server = run()
    assert (
        httpx.post(url + "/telemetry/events", json={"events": [one]}, headers=headers).status_code
        == 202
    )
    server.terminate()
    output, _ = server.communicate(timeout=10)
    assert key not in output  # a given key is never printed
    server = run()
    try:
        httpx.post(url + "/telemetry/events", json={"events": [one]}, headers=headers)
        stats = httpx.get(url + "/api/stats", headers=headers).json()
        assert stats["accepted"] == 1 and stats["duplicates"] == 1
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert db.exists() and not any(
        key in p.read_bytes().decode("latin-1") for p in tmp_path.iterdir()
    )


def test_serve_without_a_key_prints_a_development_key_once(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "doow_otel_testing.cli", "serve", "--port", str(port)]
        + ["--db", ":memory:"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        key = lines[1].split(": ", 1)[1].strip()
        assert key.startswith("dk_dev_")
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/api/stats").status_code == 401
        assert (
            httpx.get(url + "/api/stats", headers={"Authorization": f"Bearer {key}"}).status_code
            == 200
        )
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert key not in output  # printed once, at start


# --- limits: sums past 64 bits, malformed framing, idle and excess connections, the log ---


def test_usage_sums_past_int64_exactly(local_doow: LocalDoow) -> None:
    big = 2**63 - 1
    events = [event(measurements=[{"metric_name": "tokens", "quantity": big}]) for _ in range(3)]
    events.append(event(measurements=[{"metric_name": "tokens", "quantity": 5}]))
    credits = [
        event(
            license_id="lic_neg",
            kind="ADJUSTMENT",
            measurements=[{"metric_name": "tokens", "quantity": q}],
        )
        for q in (-big, -big, -big, 7)
    ]
    assert post(local_doow, {"events": events + credits}).status_code == 202
    usage = {row["license_id"]: row["total"] for row in get(local_doow, "/api/usage")["usage"]}
    assert usage == {"lic_raw": 3 * big + 5, "lic_neg": -3 * big + 7}
    assert local_doow.total("tokens", "lic_raw") == 3 * big + 5
    assert local_doow.total("tokens") == 12
    by = get(local_doow, "/api/usage", by="function", license_id="lic_raw")["usage"]
    assert [row["total"] for row in by] == [3 * big + 5]


def test_real_quantities_still_sum_as_reals(local_doow: LocalDoow) -> None:
    events = [event(measurements=[{"metric_name": "gb", "quantity": q}]) for q in (1.5, 2, 0.25)]
    assert post(local_doow, {"events": events}).status_code == 202
    assert get(local_doow, "/api/usage")["usage"][0]["total"] == 3.75
    assert local_doow.total("gb") == 3.75


@pytest.mark.parametrize(
    "quantity", [2**63, 10**30, 10**400, -(2**63)], ids=["2^63", "1e30", "1e400", "-2^63"]
)
def test_a_quantity_beyond_64_bits_is_rejected_with_the_fix(
    local_doow: LocalDoow, quantity: int
) -> None:
    kind = "USAGE" if quantity > 0 else "ADJUSTMENT"
    bad = event(kind=kind, measurements=[{"metric_name": "api_calls", "quantity": quantity}])
    answer = post(local_doow, {"events": [bad, event()]})
    assert answer.status_code == 207, answer.text
    (rejection,) = answer.json()["rejections"]
    assert rejection["event_id"] == bad["event_id"]
    assert "measurements[0].quantity" in rejection["reason"]
    assert "split" in rejection["reason"]
    assert local_doow.total("api_calls") == 1


def raw_exchange(doow: LocalDoow, request: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes and read until the server closes the connection."""
    host, port = doow.server.server_address[:2]
    with socket.create_connection((str(host), int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("abc", "'abc' is not a number"),
        ("-5", "-5 is negative"),
        ("5_0", "not a number"),
        ("+5", "not a number"),
        ("1e3", "not a number"),
    ],
)
@pytest.mark.parametrize("path", ["/telemetry/events", "/api/stats", "/nowhere"])
def test_malformed_content_length_is_400_and_closes(
    local_doow: LocalDoow, value: str, needle: str, path: str
) -> None:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {local_doow.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {value}\r\n\r\n"
        "GET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n"
    ).encode()
    answer = raw_exchange(local_doow, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert b"Connection: close" in head
    message = json.loads(body)["message"]
    assert message.startswith("Content-Length: ") and needle in message
    assert answer.count(b"HTTP/1.1 ") == 1  # what followed was not taken as a request
    assert local_doow.stats()["batches"] == 0


def test_an_early_error_never_takes_the_body_for_the_next_request(local_doow: LocalDoow) -> None:
    body = b"GET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n"
    request = (
        f"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
        + b"GET /api/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answer = raw_exchange(local_doow, request)
    assert re.findall(rb"HTTP/1.1 (\d+) ", answer) == [b"404", b"401"]


def test_idle_connections_are_closed(local_doow: LocalDoow) -> None:
    assert local_doow.server.idle_timeout == 30
    local_doow.server.idle_timeout = 0.3
    host, port = local_doow.server.server_address[:2]
    with socket.create_connection((str(host), int(port)), timeout=20) as idle:
        assert idle.recv(1024) == b""  # closed by the server, long before our 20 s
    with socket.create_connection((str(host), int(port)), timeout=20) as stalled:
        stalled.sendall(
            f"POST /telemetry/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            f"{local_doow.api_key}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n{".encode()
        )
        assert stalled.recv(1024) == b""  # a body that stops coming is not waited for
    assert wait_for(lambda: local_doow.server.open_connections == 0, seconds=10)
    assert [r["status"] for r in local_doow.requests()] == [0]


def test_connections_beyond_the_limit_get_503_and_threads_stay_bounded() -> None:
    from doow_otel_testing.server import start, stop

    key = "dk_test_limit"
    server, _ = start(keys=[key], max_connections=3)
    host, port = server.server_address[:2]
    threads_before = threading.active_count()
    try:
        idle = [socket.create_connection((str(host), int(port)), timeout=10) for _ in range(3)]
        assert wait_for(lambda: server.open_connections == 3, seconds=10)
        for _ in range(5):
            with socket.create_connection((str(host), int(port)), timeout=10) as extra:
                extra.sendall(b"GET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = b""
                while chunk := extra.recv(4096):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 503 "), answer
            assert b"Retry-After: 1" in answer and b"too many open connections" in answer
        assert server.refused_connections == 5
        assert server.open_connections == 3
        assert threading.active_count() <= threads_before + 3
        idle.pop().close()
        assert wait_for(lambda: server.open_connections == 2, seconds=10)
        answer = httpx.get(server.url + "/api/stats", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200
    finally:
        for sock in idle:
            sock.close()
        stop(server)


def test_the_request_log_is_bounded_in_bytes() -> None:
    from doow_otel_testing.server import start, stop

    key = "dk_test_log"
    # 2,000 events in a few seconds: the log's bound needs more than a minute's budget
    server, _ = start(keys=[key], request_log_bytes=50_000, events_per_minute=0)
    try:
        batch_ids = []
        for _ in range(20):
            batch_id = str(uuid.uuid4())
            batch_ids.append(batch_id)
            body = {"batch_id": batch_id, "events": [event() for _ in range(100)]}
            answer = httpx.post(
                server.url + "/telemetry/events",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
            )
            assert answer.status_code == 202
        kept = server.requests()
        assert 1 <= len(kept) < 20
        assert [r["batch_id"] for r in kept] == batch_ids[-len(kept) :]  # the newest stay
        assert server.request_log.bytes <= 50_000
        assert server.request_log.evicted == 20 - len(kept)
        assert sum(len(json.dumps(r)) for r in kept) <= 50_000
        assert server.store.stats()["accepted"] == 2000  # the log's limit never touches usage
    finally:
        stop(server)
