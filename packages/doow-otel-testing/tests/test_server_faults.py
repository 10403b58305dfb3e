"""The local server's fault injection for odd answers: exactly the answer asked for,
nothing stored; and answers that trickle in one byte at a time."""

from __future__ import annotations

import http.client
import json
import socket
import time

from doow_otel_testing import LocalDoow


def _post(doow: LocalDoow, body: dict[str, object]) -> http.client.HTTPResponse:
    host, port = doow.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(
        "POST",
        "/telemetry/events",
        body=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {doow.api_key}", "Content-Type": "application/json"},
    )
    return conn.getresponse()


def _batch(event_id: str) -> dict[str, object]:
    return {
        "batch_id": f"b-{event_id}",
        "events": [
            {
                "event_id": event_id,
                "license_id": "lic_1",
                "occurred_at": "2026-11-24T10:00:00.000Z",
                "measurements": [{"metric_name": "api_calls", "quantity": 1}],
            }
        ],
    }


def test_answer_next_sends_that_answer_and_stores_nothing(local_doow: LocalDoow) -> None:
    local_doow.faults.answer_next(1, 302, body="", headers={"Location": "https://elsewhere/"})
    response = _post(local_doow, _batch("00000000-0000-4000-8000-000000000001"))
    assert (response.status, response.getheader("Location")) == (302, "https://elsewhere/")
    local_doow.faults.answer_next(1, 200)  # a catch-all host's page
    response = _post(local_doow, _batch("00000000-0000-4000-8000-000000000002"))
    assert response.status == 200 and response.read().startswith(b"<html>")
    assert response.getheader("Content-Type") == "text/html"
    assert local_doow.total("api_calls") == 0
    response = _post(local_doow, _batch("00000000-0000-4000-8000-000000000003"))
    assert response.status == 202  # only the next `count` answers
    assert local_doow.total("api_calls") == 1


def test_trickle_stores_the_batch_then_answers_a_byte_at_a_time(local_doow: LocalDoow) -> None:
    local_doow.faults.trickle(0.05)
    host, port = local_doow.url.removeprefix("http://").split(":")
    body = json.dumps(_batch("00000000-0000-4000-8000-000000000004")).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /telemetry/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {local_doow.api_key}\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        chunks = [sock.recv(4096) for _ in range(3)]
        assert all(len(chunk) == 1 for chunk in chunks), chunks
        deadline = time.monotonic() + 5
        while local_doow.total("api_calls") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert local_doow.total("api_calls") == 1  # stored before the answer began
        local_doow.faults.clear()  # the rest comes at once
        rest = b""
        while not rest.endswith(b"}"):
            data = sock.recv(4096)
            if not data:
                break
            rest += data
        assert (b"".join(chunks) + rest).startswith(b"HTTP/1.1 202")
