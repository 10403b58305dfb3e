"""HttpxTransport: an application's own httpx.Client, with what the default transport does
not do (client certificates, a CA set in code, https:// and SOCKS proxies), and the client's rules
kept whatever the httpx.Client says (redirects never followed, the deadline a hard bound,
no header in an error). The rows both transports share run in test_transport.py and the
fault matrix (tests/faults)."""

from __future__ import annotations

import os
import ssl
import threading
from pathlib import Path

import httpx
import pytest

from doow_otel import DoowClient, DoowTracker, UsageEvent
from doow_otel.delivery.transport.httpx import HttpxTransport
from doow_otel.errors import ConfigurationError, ErrorReport, TransportError
from doow_otel_testing import LocalDoow
from transports import (
    Certificates,
    http_proxy,
    make_certificates,
    relay,
    server_tls,
    socks_proxy,
)


def events(n: int) -> list[UsageEvent]:
    return [UsageEvent(metric="api_calls", quantity=1, license_id="lic_1") for _ in range(n)]


@pytest.fixture(autouse=True)
def no_environment_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    pytest.importorskip("cryptography")
    return make_certificates(tmp_path_factory.mktemp("ca"))


def sender(
    doow: LocalDoow,
    endpoint: str,
    spool: Path,
    http: httpx.Client,
    reports: list[ErrorReport] | None = None,
    timeout: float = 5.0,
) -> DoowClient:
    return DoowClient(
        doow.api_key,
        endpoint=endpoint,
        spool=spool,
        max_retries=0,
        timeout=timeout,
        on_error=reports.append if reports is not None else None,
        transport=HttpxTransport(http),
    )


def trusting(certs: Certificates) -> ssl.SSLContext:
    """A CA set in code (no SSL_CERT_FILE)."""
    return ssl.create_default_context(cafile=str(certs.ca))


def test_client_certificates_mtls_and_a_ca_set_in_code(
    local_doow: LocalDoow, certs: Certificates, tmp_path: Path
) -> None:
    """A server that requires a client certificate: the usage is kept without one, and
    the client configured with one delivers it."""
    reports: list[ErrorReport] = []
    with relay(local_doow, tls=server_tls(certs, client_certificates=True)) as mtls:
        endpoint = f"https://localhost:{mtls.port}"
        without = sender(
            local_doow, endpoint, tmp_path / "s", httpx.Client(verify=trusting(certs)), reports
        )
        result = without.send(events(2))
        without.close()
        assert result.spooled == 2 and local_doow.total("api_calls") == 0
        assert reports and all(local_doow.api_key not in r.message for r in reports)

        context = trusting(certs)
        context.load_cert_chain(certs.client_cert, certs.client_key)
        http = httpx.Client(verify=context)
        with_cert = sender(local_doow, endpoint, tmp_path / "s", http)
        assert with_cert.send(events(3)).replayed == 2  # the kept two first, then the three
        with_cert.close()
        assert not http.is_closed  # the application's client stays the application's
        http.close()
    assert local_doow.total("api_calls") == 5


def test_an_https_proxy(local_doow: LocalDoow, certs: Certificates, tmp_path: Path) -> None:
    """TLS to the proxy itself (an https:// proxy URL, which the default transport refuses),
    set in code with its own trust: through the application's client, the usage goes."""
    with (
        relay(local_doow, tls=server_tls(certs)) as tls,
        http_proxy(tls=server_tls(certs)) as proxy,
    ):
        context = trusting(certs)
        http = httpx.Client(
            verify=context,
            proxy=httpx.Proxy(f"https://localhost:{proxy.port}", ssl_context=context),
        )
        client = sender(local_doow, f"https://localhost:{tls.port}", tmp_path / "s", http)
        assert client.send(events(2)).delivered == 2
        client.close()
        assert [(f.method, f.target) for f in proxy.forwarded] == [
            ("CONNECT", f"localhost:{tls.port}")
        ]
    assert local_doow.total("api_calls") == 2


def test_a_socks5_proxy_with_credentials(
    local_doow: LocalDoow, certs: Certificates, tmp_path: Path
) -> None:
    """The default transport names a socks5:// proxy as unsupported (test_transport.py);
    through the application's client, the usage goes, TLS end to end inside the tunnel."""
    with (
        relay(local_doow, tls=server_tls(certs)) as tls,
        socks_proxy(credentials=("user", "pw-secret")) as proxy,
    ):
        http = httpx.Client(
            verify=trusting(certs), proxy=f"socks5://user:pw-secret@127.0.0.1:{proxy.port}"
        )
        client = sender(local_doow, f"https://localhost:{tls.port}", tmp_path / "s", http)
        assert client.send(events(2)).delivered == 2
        client.close()
        assert proxy.tunnels == [("localhost", tls.port, "user")]
        reports: list[ErrorReport] = []
        wrong = httpx.Client(
            verify=trusting(certs), proxy=f"socks5://user:wrong-pw@127.0.0.1:{proxy.port}"
        )
        refused = sender(
            local_doow, f"https://localhost:{tls.port}", tmp_path / "t", wrong, reports
        )
        assert refused.send(events(1)).spooled == 1  # refused credentials: kept
        refused.close()
    assert local_doow.total("api_calls") == 2
    assert reports and all("wrong-pw" not in r.message for r in reports)


def test_redirects_are_never_followed_whatever_the_client_says(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    with relay(local_doow) as elsewhere:
        location = f"http://127.0.0.1:{elsewhere.port}/telemetry/events"
        local_doow.faults.answer_next(1, 307, body="", headers={"Location": location})
        reports: list[ErrorReport] = []
        client = sender(
            local_doow,
            local_doow.url,
            tmp_path / "s",
            httpx.Client(follow_redirects=True),
            reports,
        )
        result = client.send(events(2))
        client.close()
    assert result.spooled == 2 and elsewhere.connections == 0
    assert [r.kind for r in reports] == ["configuration"] and "307" in reports[0].message


def test_a_trickled_answer_holds_the_caller_no_longer_than_its_deadline(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """The server stores the batch, then answers one byte every 0.2 s: the send returns
    at its deadline with the usage kept; it is billed once after the fault clears."""
    http = httpx.Client()
    client = sender(local_doow, local_doow.url, tmp_path / "s", http, timeout=1.0)
    local_doow.faults.trickle(0.2)
    done = threading.Event()
    outcome: list[int] = []

    def send() -> None:
        outcome.append(client.send(events(2)).spooled)
        done.set()

    threading.Thread(target=send, daemon=True).start()
    # the send returns while the answer still trickles (cleared only afterwards)
    assert done.wait(30)
    assert outcome == [2] and client.stats()["abandoned"] == 1
    local_doow.faults.clear()
    assert client.send([]).replayed == 2
    client.close()
    assert local_doow.total("api_calls") == 2  # stored by the trickled request: not twice


def test_an_answer_past_the_size_cap_is_cut(local_doow: LocalDoow) -> None:
    local_doow.faults.answer_next(1, 200, body="x" * 2000)
    http = httpx.Client()
    transport = HttpxTransport(http, max_answer_bytes=1000)
    headers = {"Authorization": f"Bearer {local_doow.api_key}"}
    answer = transport.post(f"{local_doow.url}/telemetry/events", b"[]", headers, 5.0)
    assert answer.status == 200 and answer.body == b"x" * 1000  # the size cap


def test_a_header_httpx_refuses_is_never_quoted_in_the_error(local_doow: LocalDoow) -> None:
    transport = HttpxTransport(httpx.Client())
    with pytest.raises(TransportError) as failed:
        headers = {"Authorization": "Bearer dk_test_secret\r\nX-Injected: 1"}
        transport.post(f"{local_doow.url}/telemetry/events", b"[]", headers, 2.0)
    assert "dk_test" not in failed.value.message and "dk_test" not in repr(failed.value)


def test_an_unreachable_endpoint_and_a_closed_client_are_connection_failures() -> None:
    http = httpx.Client()
    transport = HttpxTransport(http)
    with pytest.raises(TransportError) as failed:
        transport.post("http://127.0.0.1:1/telemetry/events", b"[]", {}, 2.0)
    assert failed.value.kind == "connection"
    http.close()
    with pytest.raises(TransportError) as closed:
        transport.post("http://127.0.0.1:1/telemetry/events", b"[]", {}, 2.0)
    assert closed.value.kind == "connection" and "httpx.Client" in closed.value.message


def test_what_is_not_a_sync_httpx_client_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigurationError, match="AsyncClient"):
        HttpxTransport(httpx.AsyncClient())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="httpx.Client"):
        HttpxTransport("https://proxy.example")  # type: ignore[arg-type]


def test_the_tracker_shortcut_sends_through_the_application_client(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    seen: list[str] = []
    http = httpx.Client(event_hooks={"request": [lambda request: seen.append(request.url.path)]})
    meter = DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path / "s",
        http_client=http,
        handle_sigterm=False,
        flush_interval=3600,
    )
    meter.track(metric="api_calls", quantity=4, license_id="lic_1")
    assert meter.flush()
    meter.shutdown()
    assert local_doow.total("api_calls", "lic_1") == 4
    assert seen == ["/telemetry/events"]  # the application's hooks ran
    assert not http.is_closed


def test_a_factory_makes_a_client_per_process(local_doow: LocalDoow, tmp_path: Path) -> None:
    """httpx's pool is not fork-safe: a factory gives a forked child a client of its own."""
    made: list[int] = []

    def factory() -> httpx.Client:
        made.append(os.getpid())
        return httpx.Client()

    transport = HttpxTransport(factory)
    headers = {
        "Authorization": f"Bearer {local_doow.api_key}",
        "Content-Type": "application/json",
    }
    url, body = f"{local_doow.url}/telemetry/heartbeat", b"{}"
    assert transport.post(url, body, headers, 5.0).status == 200
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own client, its own connections
        try:
            status = transport.post(url, body, headers, 5.0).status
            os.write(write, f"{status} {len(made)} {made[-1] == os.getpid()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    answer = os.read(read, 100).decode().split()
    os.close(read)
    assert answer == ["200", "2", "True"]
    assert made == [os.getpid()]  # the parent's client made once
    transport.close()  # closes the client it made; a later request makes another
    assert transport.post(url, body, headers, 5.0).status == 200
    assert made == [os.getpid(), os.getpid()]
    transport.close()


def test_a_tracker_restored_from_a_snapshot_goes_on_with_the_application_client(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """A restore replaces the tracker's DoowClient and closes the old one: the transport
    they share (and the application's client) must go on working."""
    http = httpx.Client()
    meter = DoowTracker(
        local_doow.api_key,
        endpoint=local_doow.url,
        spool=tmp_path / "s",
        http_client=http,
        handle_sigterm=False,
        flush_interval=3600,
    )
    meter._after_restore()  # what Lambda's after-restore hook runs
    meter.track(metric="api_calls", quantity=2, license_id="lic_1")
    assert meter.flush()
    meter.shutdown()
    assert local_doow.total("api_calls", "lic_1") == 2 and not http.is_closed


def test_a_client_given_before_a_fork_is_named_in_the_child(local_doow: LocalDoow) -> None:
    transport = HttpxTransport(httpx.Client())
    url, headers = (
        f"{local_doow.url}/telemetry/heartbeat",
        {"Authorization": f"Bearer {local_doow.api_key}"},
    )
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            import logging

            said: list[str] = []
            handler = logging.Handler()
            handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
            logging.getLogger("doow_otel").addHandler(handler)
            transport.post(url, b"{}", headers, 5.0)
            transport.post(url, b"{}", headers, 5.0)
            os.write(write, str(sum("made before this process forked" in m for m in said)).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 10) == b"1"  # once
    os.close(read)
