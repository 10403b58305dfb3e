"""Property-based: random and mutated payloads at every endpoint never crash the server,
never get a 5xx, and never corrupt what it already stored."""

from __future__ import annotations

import gzip
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doow_otel_testing import LocalDoow

POSTS = ["/telemetry/events", "/telemetry/heartbeat", "/telemetry/otlp/v1/metrics", "/admin/faults"]
GETS = ["/api/events", "/api/usage", "/api/stats", "/api/rejections"]
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def good_event() -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "license_id": "lic_fuzz",
        "occurred_at": "2026-11-24T10:15:00.000Z",
        "kind": "USAGE",
        "measurements": [{"metric_name": "api_calls", "quantity": 1}],
    }


@st.composite
def mutated_batches(draw: st.DrawFn) -> Any:
    """A valid batch with one field replaced by an arbitrary JSON value."""
    event = good_event()
    field = draw(
        st.sampled_from(
            [
                *event,
                "attribution",
                "metadata",
                "unit",
                "source_system",
                "measurements.0.quantity",
                "measurements.0.metric_name",
            ]
        )
    )
    value = draw(json_values)
    if field.startswith("measurements.0."):
        event["measurements"][0][field.rsplit(".", 1)[1]] = value
    else:
        event[field] = value
    return {"batch_id": draw(st.none() | st.text(min_size=1, max_size=10)), "events": [event]}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[LocalDoow, httpx.Client]]:
    with (
        LocalDoow() as doow,
        httpx.Client(
            base_url=doow.url, headers={"Authorization": f"Bearer {doow.api_key}"}, timeout=10
        ) as client,
    ):
        client.post("/telemetry/events", json={"batch_id": "seed", "events": [good_event()]})
        yield doow, client
        # after everything: the server still answers and the seed event is intact
        assert doow.total("api_calls", "lic_fuzz") >= 1
        assert client.get("/api/stats").status_code == 200


def _post(client: httpx.Client, path: str, body: bytes, content_type: str, gz: bool) -> int:
    headers = {"Content-Type": content_type}
    if gz:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return client.post(path, content=body, headers=headers).status_code


@SETTINGS
@given(
    path=st.sampled_from(POSTS),
    body=st.binary(max_size=2000),
    gz=st.booleans(),
    content_type=st.sampled_from(["application/json", "application/x-protobuf", "text/plain"]),
)
def test_random_bytes(
    server: tuple[LocalDoow, httpx.Client], path: str, body: bytes, gz: bool, content_type: str
) -> None:
    doow, client = server
    doow.faults.clear()
    status = _post(client, path, body, content_type, gz)
    assert status < 500
    doow.faults.clear()  # the admin endpoint may have accepted a random fault


@SETTINGS
@given(body=json_values, path=st.sampled_from(POSTS))
def test_random_json(server: tuple[LocalDoow, httpx.Client], body: Any, path: str) -> None:
    doow, client = server
    status = _post(client, path, json.dumps(body).encode(), "application/json", False)
    doow.faults.clear()
    assert status in (200, 202, 207, 400, 413)


@SETTINGS
@given(batch=mutated_batches())
def test_mutated_batches_are_accepted_or_rejected_with_a_reason(
    server: tuple[LocalDoow, httpx.Client], batch: Any
) -> None:
    doow, client = server
    before = doow.stats()
    answer = client.post(
        "/telemetry/events",
        content=json.dumps(batch).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code in (202, 207, 400), answer.text
    after = doow.stats()
    if answer.status_code == 207:
        (rejection,) = answer.json()["rejections"]
        assert ":" in rejection["reason"]  # names the field
        assert after["accepted"] == before["accepted"]
    if answer.status_code == 202:  # stored, or recognised as a resent event or batch
        counted = ("accepted", "duplicates", "duplicate_batches")
        assert sum(after[k] for k in counted) > sum(before[k] for k in counted)


@SETTINGS
@given(
    path=st.sampled_from(GETS),
    params=st.dictionaries(
        st.sampled_from(["metric", "license_id", "since", "limit", "before", "by", "x"]),
        st.text(max_size=30),
        max_size=4,
    ),
)
def test_random_queries(
    server: tuple[LocalDoow, httpx.Client], path: str, params: dict[str, str]
) -> None:
    _, client = server
    answer = client.get(path, params=params)
    assert answer.status_code in (200, 400)


@settings(SETTINGS, max_examples=60)
@given(
    path=st.sampled_from(POSTS + GETS),
    length=st.text(
        st.characters(blacklist_categories=["Cs", "Cc", "Zl", "Zp"]), min_size=1, max_size=12
    ).filter(lambda v: v.strip() and not v.strip().isdigit()),
)
def test_a_malformed_content_length_is_always_a_400(
    server: tuple[LocalDoow, httpx.Client], path: str, length: str
) -> None:
    doow, _ = server
    host, port = doow.server.server_address[:2]
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {doow.api_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    )
    with socket.create_connection((str(host), int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + length.encode("utf-8") + b"\r\n\r\n{}")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b"Content-Length" in answer.partition(b"\r\n\r\n")[2]
