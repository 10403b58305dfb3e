"""The transports on real sockets: TLS with a CA from SSL_CERT_FILE, proxies from the
environment, kept-alive connections the server closed, redirects never followed, the
answer's size cap; each through the default transport (http.client) and, where it
applies, through an application's httpx.Client (HttpxTransport): there also mTLS, a CA
set in code and https:// proxies. Delivery is judged by what the local server stored."""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

import pytest

from doow_otel import DoowClient, UsageEvent
from doow_otel.delivery.transport.http import HTTPTransport
from doow_otel.errors import ErrorReport, TransportError
from doow_otel_testing import LocalDoow
from transports import (
    TRANSPORTS,
    Certificates,
    http_proxy,
    make_certificates,
    make_transport,
    relay,
    server_tls,
)


def events(n: int, metric: str = "api_calls") -> list[UsageEvent]:
    return [UsageEvent(metric=metric, quantity=1, license_id="lic_1") for _ in range(n)]


@pytest.fixture(autouse=True)
def no_environment_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests set the proxies they mean; none from the machine running them."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    pytest.importorskip("cryptography")
    return make_certificates(tmp_path_factory.mktemp("ca"))


def client(
    doow: LocalDoow,
    endpoint: str,
    spool: Path,
    reports: list[ErrorReport] | None = None,
    kind: str = "http.client",
    **httpx_options: object,
) -> DoowClient:
    return DoowClient(
        doow.api_key,
        endpoint=endpoint,
        spool=spool,
        max_retries=0,
        timeout=5.0,
        on_error=(reports.append if reports is not None else None),
        transport=make_transport(kind, **httpx_options),
    )


def no_key_in(reports: list[ErrorReport], key: str) -> bool:
    return all(key not in f"{r.message} {r!r}" for r in reports)


# --- TLS ---


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_delivered_over_tls_to_a_server_whose_ca_is_in_ssl_cert_file(
    kind: str,
    local_doow: LocalDoow,
    certs: Certificates,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    with relay(local_doow, tls=server_tls(certs)) as tls:
        sender = client(local_doow, f"https://localhost:{tls.port}", tmp_path / "s", kind=kind)
        assert sender.send(events(2)).delivered == 2
        assert sender.send(events(3)).delivered == 3
        sender.close()
    assert local_doow.total("api_calls") == 5
    assert tls.connections == 1  # the second send reused the kept-alive TLS connection


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_an_untrusted_certificate_is_a_connection_failure_and_the_usage_is_kept(
    kind: str,
    local_doow: LocalDoow,
    certs: Certificates,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reports: list[ErrorReport] = []
    with relay(local_doow, tls=server_tls(certs)) as tls:
        endpoint = f"https://localhost:{tls.port}"
        sender = client(local_doow, endpoint, tmp_path / "s", reports, kind=kind)
        result = sender.send(events(2))
        sender.close()
        assert result.delivered == 0 and result.spooled == 2 and result.dropped == 0
        assert any("CERTIFICATE_VERIFY_FAILED" in r.message for r in reports), reports
        assert no_key_in(reports, local_doow.api_key)
        assert local_doow.total("api_calls") == 0
        monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))  # the CA trusted: kept usage goes
        again = client(local_doow, endpoint, tmp_path / "s", kind=kind)
        assert again.send([]).replayed == 2
        again.close()
    assert local_doow.total("api_calls") == 2


# --- proxies from the environment ---


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_http_goes_through_the_environments_proxy_and_no_proxy_bypasses_it(
    kind: str, local_doow: LocalDoow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    basic = "Basic " + base64.b64encode(b"user:s3cret word").decode()
    reports: list[ErrorReport] = []
    with http_proxy(authorization=basic) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://user:s3cret%20word@127.0.0.1:{proxy.port}")
        sender = client(local_doow, local_doow.url, tmp_path / "s", reports, kind=kind)
        assert sender.send(events(2)).delivered == 2
        sender.close()
        assert [(f.method, f.target) for f in proxy.forwarded] == [
            ("POST", f"{local_doow.url}/telemetry/events")
        ]
        assert proxy.forwarded[0].authorization == basic
        monkeypatch.setenv("NO_PROXY", "example.com, 127.0.0.1")
        direct = client(local_doow, local_doow.url, tmp_path / "s", reports, kind=kind)
        assert direct.send(events(3)).delivered == 3
        direct.close()
        assert len(proxy.forwarded) == 1  # bypassed
    assert local_doow.total("api_calls") == 5
    assert not reports


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_https_goes_through_a_connect_tunnel(
    kind: str,
    local_doow: LocalDoow,
    certs: Certificates,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    with relay(local_doow, tls=server_tls(certs)) as tls, http_proxy() as proxy:
        monkeypatch.setenv("https_proxy", f"127.0.0.1:{proxy.port}")  # no scheme: http://
        sender = client(local_doow, f"https://localhost:{tls.port}", tmp_path / "s", kind=kind)
        assert sender.send(events(2)).delivered == 2
        assert sender.send(events(1)).delivered == 1
        sender.close()
        assert [(f.method, f.target) for f in proxy.forwarded] == [
            ("CONNECT", f"localhost:{tls.port}")
        ]
    assert local_doow.total("api_calls") == 3


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_a_proxy_that_refuses_the_credentials_keeps_the_usage(
    kind: str, local_doow: LocalDoow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports: list[ErrorReport] = []
    with http_proxy(authorization="Basic other") as proxy:
        monkeypatch.setenv("ALL_PROXY", f"http://user:wrong-pw@127.0.0.1:{proxy.port}")
        sender = client(local_doow, local_doow.url, tmp_path / "s", reports, kind=kind)
        result = sender.send(events(2))
        sender.close()
    # the proxy's 407 is an answer that is not Doow's: a configuration problem, usage kept
    assert result.spooled == 2 and local_doow.total("api_calls") == 0
    assert any("407" in r.message for r in reports), reports
    assert all("wrong-pw" not in r.message for r in reports)


def test_a_socks_proxy_is_named_as_unsupported_and_the_usage_kept(
    local_doow: LocalDoow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://user:pw-secret@127.0.0.1:1080")
    reports: list[ErrorReport] = []
    sender = client(local_doow, local_doow.url, tmp_path / "s", reports)
    result = sender.send(events(2))
    sender.close()
    assert result.spooled == 2 and local_doow.total("api_calls") == 0
    assert any("ALL_PROXY" in r.message and "socks5://" in r.message for r in reports)
    assert all("pw-secret" not in r.message for r in reports)
    assert no_key_in(reports, local_doow.api_key)


# --- kept-alive connections the server closed ---


def test_a_kept_alive_connection_the_server_closed_between_sends_is_replaced(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    with relay(local_doow) as front:
        sender = client(local_doow, f"http://127.0.0.1:{front.port}", tmp_path / "s")
        assert sender.send(events(1)).delivered == 1
        front.close_all()  # the server's keep-alive timeout
        assert sender.send(events(2)).delivered == 2
        assert sender.stats()["retries"] == 0  # no failed attempt: a new connection at once
        sender.close()
    assert local_doow.total("api_calls") == 3 and front.connections == 2


def test_a_request_the_server_drops_on_a_reused_connection_is_resent_once_on_a_new_one(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """The race the check for closed connections cannot see: the server closes the
    connection as the request arrives. Resent at once (Doow deduplicates by event_id)."""
    with relay(local_doow, drop_reused=True) as front:
        sender = client(local_doow, f"http://127.0.0.1:{front.port}", tmp_path / "s")
        assert sender.send(events(1)).delivered == 1
        assert sender.send(events(2)).delivered == 2
        assert sender.stats()["retries"] == 0 and sender.stats()["requests"] == 2
        sender.close()
    assert front.dropped == 1 and front.connections == 2
    assert local_doow.total("api_calls") == 3


def test_a_new_connection_that_fails_is_not_resent_by_the_transport(
    local_doow: LocalDoow,
) -> None:
    """Only a reused connection gets a second chance; a new one's failure is the client's
    to retry (with backoff, within its deadline)."""
    with relay(local_doow, drop_all=True) as front:
        transport = HTTPTransport(environ={})
        with pytest.raises(TransportError) as failed:
            transport.post(f"http://127.0.0.1:{front.port}/telemetry/events", b"[]", {}, 5.0)
        transport.close()
    assert failed.value.kind == "connection"
    assert front.connections == 1 and front.dropped == 1


# --- redirects, the size cap, the worker ---


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_a_redirect_through_the_real_transport_is_never_followed(
    kind: str, local_doow: LocalDoow, tmp_path: Path
) -> None:
    with relay(local_doow) as elsewhere:
        location = f"http://127.0.0.1:{elsewhere.port}/telemetry/events"
        local_doow.faults.answer_next(1, 307, body="", headers={"Location": location})
        reports: list[ErrorReport] = []
        sender = client(local_doow, local_doow.url, tmp_path / "s", reports, kind=kind)
        result = sender.send(events(2))
        assert result.spooled == 2 and elsewhere.connections == 0
        assert [r.kind for r in reports] == ["configuration"] and "307" in reports[0].message
        assert sender.send([]).replayed == 2  # the fault cleared: delivered from the spool
        sender.close()
    assert local_doow.total("api_calls") == 2


def test_an_answer_past_the_size_cap_is_cut_and_not_taken_as_delivery(
    local_doow: LocalDoow,
) -> None:
    local_doow.faults.answer_next(1, 200, body="x" * 5000)
    transport = HTTPTransport(environ={}, max_answer_bytes=1000)
    headers = {"Authorization": f"Bearer {local_doow.api_key}"}
    answer = transport.post(f"{local_doow.url}/telemetry/events", b"[]", headers, 5.0)
    assert answer.status == 200 and answer.body == b"x" * 1000
    transport.close()


def test_requests_reuse_one_worker_thread(local_doow: LocalDoow, tmp_path: Path) -> None:
    before = set(threading.enumerate())
    sender = client(local_doow, local_doow.url, tmp_path / "s")
    for _ in range(5):
        assert sender.send(events(1)).delivered == 1
    workers = [t for t in set(threading.enumerate()) - before if t.name == "doow-request"]
    sender.close()
    assert len(workers) == 1


def test_an_unreachable_endpoint_is_a_connection_failure(tmp_path: Path) -> None:
    transport = HTTPTransport(environ={})
    with pytest.raises(TransportError) as failed:
        transport.post("http://127.0.0.1:1/telemetry/events", b"[]", {}, 2.0)
    assert failed.value.kind == "connection"


# NO_PROXY, URL -> True when bypassed, as Go's net/http (the collector exporter) decides each
# row (test_the_rows_are_gos asks it).
NO_PROXY_ROWS = [
    ("internal.example", "https://internal.example", True),
    ("internal.example", "https://a.internal.example", True),
    ("internal.example", "https://notinternal.example", False),
    (".corp", "https://x.corp", True),
    (".corp", "https://corp", False),  # urllib (and curl): True
    ("*.corp", "https://x.corp", True),  # urllib (and curl): False
    ("*.corp", "https://corp", False),
    ("10.0.0.1", "http://10.0.0.1", True),
    ("10.0.0.1", "http://10.0.0.2", False),
    ("10.0.0.0/8", "http://10.1.2.3", True),  # urllib: False
    ("10.0.0.0/8", "http://11.1.2.3", False),
    ("fd00::/8", "http://[fd12::1]", True),  # urllib: False
    ("host:8080", "http://host:8080", True),
    ("host:8080", "http://host:8081", False),
    ("*", "https://api.doow.co", True),
]
# The rows where the standard library's proxy_bypass_environment decides otherwise: why
# the default transport does not use it (besides some 5 ms of import at a cold start).
URLLIB_DIFFERS = {(".corp", "https://corp"), ("*.corp", "https://x.corp"),
                  ("10.0.0.0/8", "http://10.1.2.3"), ("fd00::/8", "http://[fd12::1]")}  # fmt: skip


def test_proxy_settings_follow_the_environment_rules() -> None:
    from doow_otel.delivery.transport.http import _proxy_settings

    proxies, no_proxy = _proxy_settings(
        {
            "HTTPS_PROXY": "http://upper:1",
            "https_proxy": "http://lower:2",
            "HTTP_PROXY": "http://cgi:3",
            "REQUEST_METHOD": "GET",  # a CGI request: HTTP_PROXY is the client's (httpoxy)
            "NO_PROXY": "internal.example, .corp, 10.0.0.1, host:8080",
        }
    )
    assert proxies["https"].host == "lower" and "http" not in proxies
    assert no_proxy == ["internal.example", ".corp", "10.0.0.1", "host:8080"]


@pytest.mark.parametrize(("no_proxy", "url", "bypassed"), NO_PROXY_ROWS)
def test_no_proxy_is_matched_as_go_matches_it(no_proxy: str, url: str, bypassed: bool) -> None:
    from doow_otel.delivery.transport.http import _bypassed, _Target

    assert _bypassed(_Target.parse(url), [no_proxy]) is bypassed


@pytest.mark.parametrize(("no_proxy", "url", "bypassed"), NO_PROXY_ROWS)
def test_the_standard_library_matches_no_proxy_otherwise(
    no_proxy: str, url: str, bypassed: bool
) -> None:
    """Kept as a record of the decision: if urllib comes to agree, this fails, and the
    default transport can use it."""
    from urllib.parse import urlsplit
    from urllib.request import proxy_bypass_environment

    parts = urlsplit(url)
    host = parts.netloc.strip("[]") if parts.port is None else parts.netloc
    differs = bool(proxy_bypass_environment(host, {"no": no_proxy})) != bypassed
    assert differs is ((no_proxy, url) in URLLIB_DIFFERS)


GO_PROBE = """package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	for _, url := range os.Args[1:] {
		req, _ := http.NewRequest("GET", url, nil)
		proxy, _ := http.ProxyFromEnvironment(req)
		fmt.Println(proxy == nil)
	}
}
"""


@pytest.fixture(scope="module")
def go_probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GO_PROBE, built once."""
    import shutil
    import subprocess

    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain")
    where = tmp_path_factory.mktemp("goprobe")
    (where / "main.go").write_text(GO_PROBE)
    (where / "go.mod").write_text("module probe\n\ngo 1.21\n")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    done = subprocess.run(
        [go, "build", "-o", "probe", "."],
        cwd=where, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return where / "probe"


@pytest.mark.slow
@pytest.mark.parametrize("no_proxy", sorted({row[0] for row in NO_PROXY_ROWS}))
def test_the_rows_are_gos(no_proxy: str, go_probe: Path) -> None:
    """Each row, asked of Go's net/http.ProxyFromEnvironment (the collector's transport)."""
    import subprocess

    rows = [row for row in NO_PROXY_ROWS if row[0] == no_proxy]
    env = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "NO_PROXY": no_proxy}  # fmt: skip
    done = subprocess.run(
        [str(go_probe), *(url for _, url, _ in rows)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(bypassed).lower() for _, _, bypassed in rows]


def test_a_header_http_client_refuses_is_never_quoted_in_the_error(
    local_doow: LocalDoow,
) -> None:
    transport = HTTPTransport(environ={})
    with pytest.raises(TransportError) as failed:
        headers = {"Authorization": "Bearer dk_test_secret\r\nX-Injected: 1"}
        transport.post(f"{local_doow.url}/telemetry/events", b"[]", headers, 2.0)
    transport.close()
    assert "dk_test_secret" not in failed.value.message and "dk_test" not in repr(failed.value)


def test_closing_in_a_forked_child_leaves_the_parents_request_alone() -> None:
    """A child inherits the pool's sockets; closing its transport must not shut the one a
    parent thread is waiting on (shutdown acts on the socket both processes share)."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    got_request, child_done = threading.Event(), threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    line
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ).split(b":")[1]
            )
            while len(body) < length:
                body += conn.recv(65536)
            got_request.set()
            child_done.wait(30)
            ack = b'{"accepted": 1}'
            conn.sendall(
                b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(ack), ack)
            )

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    transport = HTTPTransport(environ={})
    answers: list[object] = []

    def post() -> None:
        try:
            answers.append(
                transport.post(f"http://127.0.0.1:{port}/telemetry/events", b"{}", {}, 30).status
            )
        except TransportError as exc:
            answers.append(exc)

    parent_request = threading.Thread(target=post)
    parent_request.start()
    assert got_request.wait(30)
    pid = os.fork()
    if pid == 0:  # the child: close what it inherited, then leave
        try:
            transport.close()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    child_done.set()
    parent_request.join(30)
    listener.close()
    assert answers == [202]


def test_an_empty_ca_directory_falls_back_to_certifi(tmp_path: Path) -> None:
    """An image with the openssl package but no ca-certificates has an empty CA directory:
    certifi's bundle (when installed) is used, as when there is no directory at all."""
    import subprocess
    import sys

    pytest.importorskip("certifi")
    empty = tmp_path / "certs"
    empty.mkdir()
    code = (
        "from doow_otel.delivery.transport.http import _tls_context; "
        "print(_tls_context().cert_store_stats()['x509_ca'])"
    )
    env = {**os.environ, "SSL_CERT_FILE": str(tmp_path / "none.pem"), "SSL_CERT_DIR": str(empty)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0
