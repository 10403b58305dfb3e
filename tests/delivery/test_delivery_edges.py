"""The client's edges (issue 9, items 1-7): whose usage the spool replays, an unusable spool,
a batch Doow keeps failing on, wrong endpoints and keys, answers that are not Doow's, any
error body, and a deadline held against a server that trickles its answer.

Delivery is judged by what the local server stored. Answers the local server cannot give
(a redirect, an HTML page, a batch-specific 500) come from a fake transport
(tests/transports.py) that forwards everything else to the local server.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from doow_otel import DoowClient, UsageEvent
from doow_otel.delivery.spool import Spool
from doow_otel.delivery.transport.base import Answer
from doow_otel.delivery.wire import make_batches
from doow_otel.errors import ErrorReport
from doow_otel_testing import LocalDoow
from doow_otel_testing.server import new_key
from transports import FakeTransport, Request, answer, forwarding


def events(n: int, metric: str = "api_calls", license_id: str = "lic_1") -> list[UsageEvent]:
    return [UsageEvent(metric=metric, quantity=1, license_id=license_id) for _ in range(n)]


def entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.batch"))


# --- 1. spooled usage belongs to the endpoint and key that wrote it ---


def test_a_client_never_replays_another_keys_or_endpoints_spool(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    test_key, prod_key = new_key(), new_key()
    with LocalDoow(keys=[test_key, prod_key]) as doow:
        doow.faults.fail_next(100, 503)
        writer = DoowClient(test_key, endpoint=doow.url, spool=spool, max_retries=0)
        assert writer.send(events(3, metric="test_usage")).spooled == 3
        writer.close()
        doow.faults.clear()

        for key, endpoint in [
            (prod_key, doow.url),
            (test_key, doow.url.replace("127.0.0.1", "localhost")),
        ]:
            reports: list[ErrorReport] = []
            other = DoowClient(key, endpoint=endpoint, spool=spool, on_error=reports.append)
            assert other.send(events(1, metric="own")).delivered == 1
            other.send([])
            assert doow.total("test_usage") == 0  # never sent under another key or endpoint
            assert other.stats()["other_owners_in_spool"] == 1
            found = [r for r in reports if "written with another endpoint or API key" in r.message]
            assert len(found) == 1 and found[0].kind == "configuration"  # reported once
            other.close()
        assert len(entries(spool)) == 1  # still there, untouched

        owner = DoowClient(test_key, endpoint=doow.url, spool=spool)
        assert owner.send([]).replayed == 3
        assert doow.total("test_usage") == 3
        owner.close()
    names_and_contents = [p.name for p in spool.rglob("*")] + [
        p.read_bytes().decode(errors="replace") for p in spool.rglob("*") if p.is_file()
    ]
    assert not any(test_key in text or prod_key in text for text in names_and_contents)


def test_entries_without_an_owner_are_reported_and_not_replayed(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    batch = make_batches(events(2, metric="unowned"))[0]
    legacy = spool / f"{time.time_ns():020d}-{batch.batch_id}.batch"  # the layout before owners
    legacy.write_bytes(batch.body())
    reports: list[ErrorReport] = []
    client = DoowClient(
        local_doow.api_key, endpoint=local_doow.url, spool=spool, on_error=reports.append
    )
    client.send(events(1))
    assert local_doow.total("unowned") == 0 and local_doow.total("api_calls") == 1
    assert legacy.exists()
    assert any(r.kind == "configuration" and r.count == 1 for r in reports)
    # the user says they are theirs: sent with this key, exactly once
    assert client.adopt_spooled(unowned=True) == 1
    assert client.send([]).replayed == 2 and local_doow.total("unowned") == 2
    assert client.stats()["other_owners_in_spool"] == 0
    client.close()


# --- 2. a spool directory that cannot be used ---


@contextlib.contextmanager
def read_only_mount(path: Path) -> Iterator[Path]:
    """A real read-only directory (root ignores permission bits: a read-only bind mount)."""
    source = path.parent / f"{path.name}-source"
    source.mkdir()
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o500)
        yield path
        path.chmod(0o700)
        return
    if subprocess.run(
        ["mount", "--bind", "-o", "ro", str(source), str(path)], capture_output=True
    ).returncode:
        pytest.skip("cannot make a read-only bind mount here")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


@pytest.mark.parametrize("how", ["read-only", "a file in its place"])
def test_unusable_spool_never_raises_and_falls_back_to_memory(
    local_doow: LocalDoow, tmp_path: Path, how: str
) -> None:
    with contextlib.ExitStack() as stack:
        if how == "read-only":
            directory = stack.enter_context(read_only_mount(tmp_path / "ro"))
        else:
            directory = tmp_path / "spool"
            directory.write_text("not a directory")
        reports: list[ErrorReport] = []
        client = DoowClient(
            local_doow.api_key, endpoint=local_doow.url, spool=directory,
            on_error=reports.append, max_retries=0,
        )  # fmt: skip
        assert client.send(events(2)).delivered == 2  # what can go out now goes out
        local_doow.faults.fail_next(100, 503)
        kept = client.send(events(3, metric="later"))
        assert kept.spooled == 3 and kept.dropped == 0  # journaled in memory
        assert client.stats()["pending_in_spool"] == 1
        local_doow.faults.clear()
        assert client.send([]).replayed == 3
        assert local_doow.total("api_calls") == 2 and local_doow.total("later") == 3
        problems = [r for r in reports if "spool problem" in r.message]
        assert len(problems) == 1  # reported once
        client.close()


# 1,200 events, replayed at once when the disk is fine again: more than a minute's budget
@pytest.mark.local_doow(events_per_minute=0)
def test_a_full_disk_leaves_no_temporary_files_and_loses_nothing(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    mount = tmp_path / "tiny"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
        ).returncode
    ):
        pytest.skip("needs root and tmpfs to make a tiny full filesystem")
    try:
        reports: list[ErrorReport] = []
        client = DoowClient(
            local_doow.api_key, endpoint=local_doow.url, spool=mount / "spool",
            on_error=reports.append, max_retries=0, events_per_minute=2000,
        )  # fmt: skip
        local_doow.faults.fail_next(1000, 503)
        sent = 0
        for _ in range(40):  # ~5 KB per batch: the 64 KB filesystem fills up on the way
            assert client.send(events(30, metric="full")).dropped == 0
            sent += 30
        assert not list((mount / "spool").glob(".tmp-*"))
        assert any("spool problem" in r.message for r in reports)
        local_doow.faults.clear()
        client.send([], timeout=30)
        assert local_doow.total("full") == sent
        client.close()
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_memory_journal_is_bounded_and_its_overflow_counted(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    (tmp_path / "spool").write_text("a file where the spool directory should be")
    spool = Spool(tmp_path / "spool", max_memory_batches=2)
    client = DoowClient(local_doow.api_key, endpoint=local_doow.url, spool=spool, max_retries=0)
    local_doow.faults.fail_next(100, 503)
    for n in (1, 2, 3):
        client.send(events(n))
    assert client.stats()["dropped_spool_full"] == 1 and client.stats()["pending_in_spool"] == 2
    client.close()


# --- 3. a batch Doow keeps failing on is set aside; the ones behind it flow ---


def test_a_batch_that_keeps_failing_is_set_aside_and_the_queue_flows(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    poisoned = False

    def rule(request: Request) -> Answer | None:
        if poisoned and b'"poison"' in request.body:
            return answer(500, json={"message": "internal"})
        return None

    reports: list[ErrorReport] = []
    client = DoowClient(
        local_doow.api_key, endpoint=local_doow.url, spool=spool, on_error=reports.append,
        transport=forwarding(local_doow, rule), max_retries=1, max_attempts=3,
    )  # fmt: skip
    local_doow.faults.fail_next(100, 503)  # an outage: both batches wait in the spool
    client.send(events(2, metric="poison"))
    client.send(events(4, metric="behind"))
    local_doow.faults.clear()
    poisoned = True
    rounds = 0
    while client.stats()["pending_in_spool"] and rounds < 10:
        client.flush_spool()
        rounds += 1
    assert local_doow.total("behind") == 4 and local_doow.total("poison") == 0
    assert client.stats()["set_aside"] == 2
    set_aside = list((spool / "set-aside").glob("*.batch"))
    assert len(set_aside) == 1 and b'"poison"' in set_aside[0].read_bytes()
    assert any("kept failing" in r.message and "HTTP 500" in r.message for r in reports)
    client.close()


def test_attempts_are_counted_across_processes(local_doow: LocalDoow, tmp_path: Path) -> None:
    spool = tmp_path / "spool"

    def rule(request: Request) -> Answer | None:
        return answer(503) if b'"poison"' in request.body else None

    for _ in range(3):  # each a new client, as after a restart
        client = DoowClient(
            local_doow.api_key, endpoint=local_doow.url, spool=spool, max_retries=0,
            max_attempts=3, transport=forwarding(local_doow, rule),
        )  # fmt: skip
        client.send(events(1, metric="poison") if not entries(spool) else [])
        client.send(events(1))  # Doow is up: takes this one
        client.flush_spool()  # and fails the poisoned batch again: an attempt
        client.close()
    assert not entries(spool) and len(list((spool / "set-aside").glob("*.batch"))) == 1
    assert local_doow.total("api_calls") == 3


def test_an_outage_sets_nothing_aside(local_doow: LocalDoow, tmp_path: Path) -> None:
    client = DoowClient(
        local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "s", max_retries=0,
        max_attempts=2,
    )  # fmt: skip
    local_doow.faults.fail_next(1000, 503)
    for _ in range(6):
        client.send(events(1))
    assert client.stats()["set_aside"] == 0 and client.stats()["pending_in_spool"] == 6
    local_doow.faults.clear()
    client.flush_spool()
    assert local_doow.total("api_calls") == 6
    client.close()


def test_a_batch_past_its_age_is_set_aside_at_its_next_failure(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    local_doow.faults.fail_next(100, 503)
    client = DoowClient(
        local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "s", max_retries=0, max_age=0
    )
    assert client.send(events(2)).set_aside == 2
    client.close()


# --- 4. wrong endpoints, keys, and the counters ---


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_never_followed_and_the_usage_is_kept(
    local_doow: LocalDoow, tmp_path: Path, status: int
) -> None:
    seen: list[str] = []

    def rule(request: Request) -> Answer | None:
        seen.append(request.url)
        if request.host == "127.0.0.1":
            return answer(status, headers={"Location": "https://elsewhere.test/ingest"})
        return answer(202, json={"accepted": 1})

    reports: list[ErrorReport] = []
    client = DoowClient(
        local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "s",
        on_error=reports.append, transport=forwarding(local_doow, rule),
    )  # fmt: skip
    result = client.send(events(2))
    assert result.spooled == 2 and result.dropped == 0
    assert all("elsewhere" not in url for url in seen) and len(seen) == 1
    config = [r for r in reports if r.kind == "configuration"]
    assert (
        len(config) == 1
        and "endpoint" in config[0].message
        and "DOOW_TRACK_ENDPOINT" in config[0].message
    )
    client.close()


def test_404_is_a_wrong_endpoint_kept_and_reported(local_doow: LocalDoow, tmp_path: Path) -> None:
    reports: list[ErrorReport] = []
    client = DoowClient(
        local_doow.api_key, endpoint=f"{local_doow.url}/v1", spool=tmp_path / "s",
        on_error=reports.append,
    )  # fmt: skip
    result = client.send(events(3))
    assert result.spooled == 3 and result.dropped == 0
    assert [r.kind for r in reports] == ["configuration"]
    assert "404" in reports[0].message and "endpoint" in reports[0].message
    client.close()
    # the endpoint fixed: the usage kept under the wrong one is sent once adopted
    fixed = DoowClient(local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "s")
    assert fixed.send([]).replayed == 0
    assert fixed.adopt_spooled(endpoint=f"{local_doow.url}/v1") == 1
    assert fixed.send([]).replayed == 3 and local_doow.total("api_calls") == 3
    fixed.close()


@pytest.mark.parametrize("status", [401, 403])
def test_auth_latch_recovers_on_a_later_good_answer(
    local_doow: LocalDoow, tmp_path: Path, status: int
) -> None:
    revoked = True

    def rule(request: Request) -> Answer | None:
        return answer(status, json={"message": "revoked"}) if revoked else None

    client = DoowClient(
        local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "s",
        transport=forwarding(local_doow, rule), auth_probe_interval=1.0,
    )  # fmt: skip
    assert client.send(events(2)).spooled == 2
    requests = client.stats()["requests"]
    assert client.send(events(1)).spooled == 1
    assert client.stats()["requests"] == requests  # latched: no request before the probe
    revoked = False  # the key works again (re-enabled in Doow)
    time.sleep(1.05)  # the probe interval passes (1 s: two sends under load fit in it)
    result = client.send([])
    assert result.replayed == 3 and local_doow.total("api_calls") == 3
    assert client.stats()["auth_latched"] == 0
    client.close()


def test_spool_overflow_and_replays_are_counted(local_doow: LocalDoow, tmp_path: Path) -> None:
    client = DoowClient(
        local_doow.api_key, endpoint=local_doow.url, spool=Spool(tmp_path / "s", max_batches=2),
        max_retries=0,
    )  # fmt: skip
    local_doow.faults.fail_next(100, 503)
    for n in (1, 2, 3):
        client.send(events(n))
    local_doow.faults.clear()
    client.send([])
    stats = client.stats()
    assert stats["dropped_spool_full"] == 1 and stats["replayed"] == 5
    assert local_doow.total("api_calls") == 5
    client.close()


# --- 5. a 2xx that is not Doow's acknowledgement ---


def test_a_2xx_html_page_is_not_delivery(local_doow: LocalDoow, tmp_path: Path) -> None:
    catch_all = True

    def rule(request: Request) -> Answer | None:
        page = {"Content-Type": "text/html"}
        return answer(200, content=b"<html>Welcome</html>", headers=page) if catch_all else None

    reports: list[ErrorReport] = []
    client = DoowClient(
        local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "s",
        on_error=reports.append, transport=forwarding(local_doow, rule),
    )  # fmt: skip
    result = client.send(events(2))
    assert result.delivered == 0 and result.spooled == 2
    assert [r.kind for r in reports] == ["configuration"]
    catch_all = False
    assert client.send([]).replayed == 2 and local_doow.total("api_calls") == 2
    client.close()


# --- 6. error answers of any JSON shape ---

BODIES = [b"[1, 2]", b'"text"', b"null", b"7", b'{"message": {"x": 1}}', b"{", b"\xff"]


@pytest.mark.parametrize("status", [200, 207, 400, 401, 404, 413, 429, 500])
@pytest.mark.parametrize("body", BODIES)
def test_no_error_body_raises_out_of_send(tmp_path: Path, status: int, body: bytes) -> None:
    transport = FakeTransport(lambda request: answer(status, content=body))
    client = DoowClient(
        "dk_test_123456", endpoint="http://127.0.0.1:9", spool=tmp_path / "s",
        transport=transport, max_retries=0, timeout=1.0, on_error=lambda r: None,
    )  # fmt: skip
    result = client.send(events(2))
    assert result.delivered + result.spooled + result.dropped + result.set_aside == 2
    client.close()


def test_a_207_naming_unknown_ids_never_gives_negative_counts(tmp_path: Path) -> None:
    sample = events(2)
    acknowledgement = {
        "accepted": 0,
        "rejections": [{"event_id": f"other-{i}", "reason": "r"} for i in range(5)]
        + [{"event_id": sample[1].event_id, "reason": "bad"}],
    }
    transport = FakeTransport(lambda request: answer(207, json=acknowledgement))
    client = DoowClient(
        "dk_test_123456", endpoint="http://127.0.0.1:9", spool=tmp_path / "s", transport=transport
    )
    result = client.send(sample)
    assert result.delivered == 1 and [r.event_id for r in result.rejected] == [sample[1].event_id]
    assert client.stats()["delivered"] == 1 and client.stats()["rejected"] == 1
    client.close()


# --- 7. the deadline holds against a server that trickles its answer ---


@contextlib.contextmanager
def trickling_server() -> Iterator[tuple[str, threading.Event]]:
    """A loopback server that answers 202, one byte every 50 ms, for at most 20 s; the
    event is set when the client closes the connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)
    stop, closed = threading.Event(), threading.Event()
    answer = (
        b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
        b'Content-Length: 15\r\n\r\n{"accepted": 1}'
    )

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                for byte in answer * 10:  # longer than any deadline in this test
                    if stop.wait(0.05):
                        return
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        closed.set()
                        return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", closed
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def test_the_deadline_holds_against_a_trickling_server(tmp_path: Path) -> None:
    with trickling_server() as (url, closed):
        client = DoowClient("dk_test_123456", endpoint=url, spool=tmp_path / "s", timeout=5.0)
        started = time.monotonic()
        result = client.send(events(2), timeout=0.5)
        elapsed = time.monotonic() - started
        assert result.spooled == 2 and result.delivered == 0  # kept: nothing lost
        assert elapsed < 2.0, f"send took {elapsed:.1f}s past a 0.5 s deadline"
        assert client.stats()["abandoned"] == 1
        assert len(client.spool or []) == 1
        assert closed.wait(10), "the abandoned request still holds its connection"
        client.close()


# 1,200 events in one send (three batches, one at a time): more than a minute's budget
@pytest.mark.local_doow(events_per_minute=0)
def test_a_send_at_interpreter_exit_works_without_new_threads(
    local_doow: LocalDoow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.12 in an atexit handler: no new thread starts, no future is scheduled."""
    import doow_otel.delivery.client

    class Refusing(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't create new thread at interpreter shutdown")

    class Closed:
        def submit(self, *args: object) -> None:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    client = DoowClient(  # 1,200 events: a budget larger than Doow's, as this is not about it
        local_doow.api_key, endpoint=local_doow.url, spool=tmp_path / "s", events_per_minute=10**5
    )
    shim = types.SimpleNamespace(Thread=Refusing, Event=threading.Event, Lock=threading.Lock)
    monkeypatch.setattr(doow_otel.delivery.client, "threading", shim)
    monkeypatch.setattr(client, "_executor", Closed)
    assert client.send(events(1200)).delivered == 1200
    assert local_doow.total("api_calls") == 1200
    client.close()
