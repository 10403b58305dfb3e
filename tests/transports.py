"""What the transport tests share: a fake `Transport` for answers the local server cannot
give, real network parts in front of the local server (a TLS terminator with a
throwaway CA, an HTTP proxy, a relay that closes kept-alive connections), and the real
transports the tests run through (`TRANSPORTS`, `make_transport`).

The fake lives here, not in doow-otel-testing: users test against `LocalDoow`, whose
fault injection gives every answer Doow can give over a real socket; only our own edge
tests need answers no server would send (a 500 for one batch, a 2xx page forwarding the
rest).
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import http.client
import ipaddress
import json as jsonlib
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from doow_otel.delivery.transport.base import Answer, Headers, Transport
from doow_otel.delivery.transport.http import HTTPTransport
from doow_otel_testing import LocalDoow

# --- the real transports ---

TRANSPORTS = ["http.client", "httpx"]
"""The default transport, and an application's httpx.Client (HttpxTransport)."""


def make_transport(kind: str, **httpx_options: Any) -> Transport | None:
    """None for the default (the client makes its own), else an HttpxTransport on a new
    httpx.Client with `httpx_options`; made after the test set its environment (httpx
    reads proxies and SSL_CERT_FILE as the client is made)."""
    if kind == "http.client":
        return None
    import httpx

    from doow_otel.delivery.transport.httpx import HttpxTransport

    return HttpxTransport(httpx.Client(**httpx_options))


# --- a fake transport ---


@dataclass
class Request:
    url: str
    content: bytes
    headers: Mapping[str, str]

    @property
    def body(self) -> bytes:
        """The content, gunzipped when it was sent compressed."""
        gz = Headers(self.headers.items()).get("content-encoding") == "gzip"
        return gzip.decompress(self.content) if gz else self.content

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


def answer(
    status: int,
    *,
    json: Any = None,
    content: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> Answer:
    if json is not None:
        content = jsonlib.dumps(json).encode()
    return Answer(status, Headers((headers or {}).items()), content)


class FakeTransport:
    """A `doow_otel.delivery.transport.base.Transport` answering with `handle(request)`;
    records requests."""

    def __init__(self, handle: Callable[[Request], Answer]) -> None:
        self.handle = handle
        self.requests: list[Request] = []
        self.closed = False

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
        request = Request(url, body, dict(headers))
        self.requests.append(request)
        return self.handle(request)

    def close(self) -> None:
        self.closed = True


Rule = Callable[[Request], "Answer | None"]


def forwarding(doow: LocalDoow, rule: Rule) -> FakeTransport:
    """Answer with `rule(request)`, or, when it gives None, with the local server's answer."""
    real = HTTPTransport(environ={})

    def handle(request: Request) -> Answer:
        given = rule(request)
        if given is not None:
            return given
        return real.post(f"{doow.url}{request.path}", request.content, request.headers, 10.0)

    return FakeTransport(handle)


# --- a throwaway certificate authority ---


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA's certificate (what SSL_CERT_FILE names)
    cert: Path  # the server's, for localhost and 127.0.0.1
    key: Path
    client_cert: Path  # a client's, for mTLS
    client_key: Path


def make_certificates(directory: Path) -> Certificates:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(
        subject: str, public: Any, ca_key: Any, ca: bool, client: bool = False
    ) -> x509.Certificate:
        """Signed by `ca_key`, with the key identifiers Python 3.13's strict checks want."""
        issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "doow-otel test CA")])
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if ca:
            usage = dict.fromkeys(
                ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement"),
                False,
            )
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False, **usage,
                ),
                critical=True,
            )  # fmt: skip
        elif client:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        else:
            loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
            names = x509.SubjectAlternativeName([x509.DNSName("localhost"), loopback])
            builder = builder.add_extension(names, critical=False).add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return builder.sign(ca_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("doow-otel test CA", ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build("localhost", key.public_key(), ca_key, False)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = build("doow-otel test client", client_key.public_key(), ca_key, False, True)
    pem = serialization.Encoding.PEM
    out = Certificates(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "client.pem",
        directory / "client.key",
    )
    out.ca.write_bytes(ca_cert.public_bytes(pem))
    for path, certificate, private in (
        (out.cert, cert, key),
        (out.client_cert, client_cert, client_key),
    ):
        path.write_bytes(certificate.public_bytes(pem))
        path.with_suffix(".key").write_bytes(
            private.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return out


# --- a relay in front of the local server: TLS, kept-alive connections closed ---


def _pipe(
    client: socket.socket, upstream: socket.socket, on_request: Callable[[bool], bool]
) -> None:
    """Bytes both ways until either side closes. `on_request(first)` is called as each
    request starts (the client sends first, or after an answer); False closes the
    connection instead of forwarding it."""
    first, answered = True, True
    ends = [client, upstream]
    while True:
        pending = isinstance(client, ssl.SSLSocket) and client.pending()
        ready = [client] if pending else select.select(ends, [], [], 30)[0]
        if not ready:
            return
        for source in ready:
            data = source.recv(65536)
            if not data:
                return
            if source is client:
                if answered and not on_request(first):
                    return
                first, answered = False, False
                upstream.sendall(data)
            else:
                answered = True
                client.sendall(data)


@dataclass
class Relay:
    """A listener that pipes each connection to `upstream` (host, port), over TLS when
    `tls` is given. Counts connections; `close_all()` closes the clients' connections (a
    server's keep-alive timeout); with `drop_reused`, a request on a connection that
    already carried an answer is dropped unanswered (the connection closed); with
    `drop_all`, every request."""

    upstream: tuple[str, int]
    tls: ssl.SSLContext | None = None
    drop_reused: bool = False
    drop_all: bool = False
    connections: int = 0
    dropped: int = 0
    _open: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), contextlib.ExitStack() as stack:
            stack.enter_context(conn)
            if self.tls is not None:
                conn = stack.enter_context(self.tls.wrap_socket(conn, server_side=True))
            upstream = stack.enter_context(socket.create_connection(self.upstream))
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            _pipe(conn, upstream, self._on_request)

    def _on_request(self, first: bool) -> bool:
        if not (self.drop_all or (self.drop_reused and not first)):
            return True
        with self._lock:
            self.dropped += 1
        return False

    def close_all(self) -> None:
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        self.close_all()


@contextlib.contextmanager
def relay(doow: LocalDoow, **options: Any) -> Iterator[Relay]:
    parts = urlsplit(doow.url)
    running = Relay((parts.hostname or "127.0.0.1", parts.port or 80), **options)
    try:
        yield running
    finally:
        running.close()


def server_tls(certs: Certificates, *, client_certificates: bool = False) -> ssl.SSLContext:
    """The server's TLS; with `client_certificates`, it requires one signed by the CA (mTLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.cert, certs.key)
    if client_certificates:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certs.ca)
    return context


# --- an HTTP proxy ---


@dataclass
class Forwarded:
    method: str
    target: str
    authorization: str | None


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self) -> bool:
        """Record the request; False (after a 407) when it lacks the proxy's credentials."""
        authorization = self.headers.get("Proxy-Authorization")
        self.server.forwarded.append(Forwarded(self.command, self.path, authorization))
        if self.server.authorization and authorization != self.server.authorization:
            self.send_response(407)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        return True

    def do_CONNECT(self) -> None:
        if not self._record():
            return
        host, _, port = self.path.rpartition(":")
        with socket.create_connection((host.strip("[]"), int(port))) as upstream:
            self.send_response(200, "Connection established")
            self.end_headers()
            with contextlib.suppress(OSError):
                _pipe(self.connection, upstream, lambda first: True)
        self.close_connection = True

    def do_POST(self) -> None:
        self._forward()

    def do_GET(self) -> None:
        self._forward()

    def _forward(self) -> None:
        if not self._record():
            return
        parts = urlsplit(self.path)
        if not parts.hostname:
            self.send_error(400, "a proxy takes absolute-form requests")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        skip = ("proxy-authorization", "connection", "proxy-connection", "keep-alive")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        upstream = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
        try:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            upstream.request(self.command, path, body, headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in (
                "connection",
                "content-length",
                "transfer-encoding",
                "date",
                "server",
            ):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, authorization: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.authorization = authorization
        self.tls = tls
        self.forwarded: list[Forwarded] = []

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        if self.tls is not None:  # an https:// proxy: TLS to the proxy itself
            conn = self.tls.wrap_socket(conn, server_side=True)
        return conn, address

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@contextlib.contextmanager
def http_proxy(
    authorization: str | None = None, tls: ssl.SSLContext | None = None
) -> Iterator[ProxyServer]:
    """An HTTP proxy (forwarding and CONNECT); with `tls`, an https:// one."""
    proxy = ProxyServer(authorization, tls)
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


# --- a SOCKS5 proxy (RFC 1928, with RFC 1929's username and password) ---


@dataclass
class SocksProxy:
    """A SOCKS5 proxy on a thread: CONNECT only; with `credentials`, it requires them.
    Records each tunnel's target (host, port) and the user that opened it."""

    credentials: tuple[str, str] | None = None
    tunnels: list[tuple[str, int, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError), conn:
            user = self._greet(conn)
            if user is False:
                return
            _, command, _, kind = _read(conn, 4)
            if kind == 1:
                host = socket.inet_ntoa(_read(conn, 4))
            elif kind == 3:
                host = _read(conn, _read(conn, 1)[0]).decode()
            else:
                raise ValueError("an address type this proxy does not take")
            port = int.from_bytes(_read(conn, 2), "big")
            if command != 1:  # CONNECT only
                conn.sendall(b"\x05\x07\x00\x01" + bytes(6))
                return
            self.tunnels.append((host, port, user or None))
            with socket.create_connection((host, port)) as upstream:
                conn.sendall(b"\x05\x00\x00\x01" + bytes(6))
                _pipe(conn, upstream, lambda first: True)

    def _greet(self, conn: socket.socket) -> str | bool:
        """The method negotiation; the user's name (or "" with no credentials), or False
        when refused."""
        version, count = _read(conn, 2)
        methods = _read(conn, count)
        if self.credentials is None:
            conn.sendall(b"\x05\x00")
            return ""
        if 2 not in methods:
            conn.sendall(b"\x05\xff")
            return False
        conn.sendall(b"\x05\x02")
        _, size = _read(conn, 2)
        user = _read(conn, size).decode()
        password = _read(conn, _read(conn, 1)[0]).decode()
        accepted = (user, password) == self.credentials
        conn.sendall(b"\x01\x00" if accepted else b"\x01\x01")
        return user if accepted else False

    def close(self) -> None:
        self.listener.close()


def _read(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ValueError("the client closed the connection")
        data += chunk
    return data


@contextlib.contextmanager
def socks_proxy(credentials: tuple[str, str] | None = None) -> Iterator[SocksProxy]:
    proxy = SocksProxy(credentials)
    try:
        yield proxy
    finally:
        proxy.close()
