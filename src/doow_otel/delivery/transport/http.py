"""`HTTPTransport`, the default transport: the standard library's `http.client` (importing
it costs some 8 ms of a cold start; an HTTP library with its dependencies cost some 30 ms
more):

- Keep-alive: idle connections are pooled per scheme, host and port (at most
  `MAX_IDLE_PER_HOST`, reused for `IDLE_SECONDS`); a warm serverless invocation pays no
  new handshake. Thread-safe: each request has a connection of its own.
- TLS (https:// only, set up on first use): `ssl.create_default_context()`, the system's
  trust store through OpenSSL, which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`. On an
  image without any trust store, certifi's bundle is used when certifi is installed.
- Redirects are never followed (they would carry the API key elsewhere): a 3xx is
  returned as it is.
- Proxies from the environment: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` (lowercase forms
  win) and `NO_PROXY` (`*`, hosts, `domain` with its subdomains, `.domain` and `*.domain`
  for its subdomains only, IPs, CIDR ranges, `host:port`), matched as Go's net/http (so
  the collector exporter) matches them: one deployment's variables route both alike.
  https:// goes through a CONNECT tunnel, http:// as an absolute-form request;
  credentials in the proxy URL are sent as `Proxy-Authorization: Basic` (the proxy's 407
  is a connection failure, as a refused tunnel is: the usage is kept). Not supported:
  socks and https:// proxy URLs (a connection failure naming the variable, the usage is
  kept): hand in an `httpx.Client` for those (`HttpxTransport`, `doow-otel[httpx]`).
  Why not the standard library's `urllib.request.getproxies_environment` and
  `proxy_bypass_environment`: they match `NO_PROXY` otherwise (`.corp` also takes `corp`;
  no CIDR ranges, no `*.domain`), which tests/delivery/test_transport.py shows row by
  row against Go's rules, and importing urllib.request costs some 5 ms of a cold start.
- An answer's body is read up to `MAX_ANSWER_BYTES` (Doow answers in a few KB); past
  that the rest is not read, the connection is closed, and the answer is judged on what
  was read (a cut acknowledgement is not valid JSON: the batch is kept, never counted).
- Every socket operation (connect, each send and receive) is bounded by `timeout`. The
  whole request is bounded by the caller's deadline (the client runs it on a worker and
  `close()`s the transport to abandon it).
- Errors describe the socket's failure only: no header, so never the API key.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import ssl

from doow_otel.delivery.transport.base import Answer, Headers
from doow_otel.errors import TransportError

__all__ = ["HTTPTransport"]

MAX_ANSWER_BYTES = 4 * 1024 * 1024
MAX_IDLE_PER_HOST = 10
IDLE_SECONDS = 60.0
PROXY_SCHEMES = ("http",)


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str  # origin-form: path and query

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise TransportError("connection", f"not an http(s) URL: {scheme or '?'}://...")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise TransportError("connection", "the URL's port is not a number") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(scheme, parts.hostname.lower(), port, path)

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


@dataclass(frozen=True)
class _Proxy:
    variable: str  # the environment variable it came from, for error messages
    scheme: str
    host: str
    port: int
    authorization: str | None = field(repr=False)  # "Basic ..." from the URL's credentials

    @property
    def headers(self) -> dict[str, str]:
        return {"Proxy-Authorization": self.authorization} if self.authorization else {}


class HTTPTransport:
    """The default transport: `http.client` with keep-alive, TLS and environment proxies."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self._proxies, self._no_proxy = _proxy_settings(os.environ if environ is None else environ)
        self._max_answer = max_answer_bytes
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, int], list[tuple[http.client.HTTPConnection, float]]] = {}
        self._busy: set[http.client.HTTPConnection] = set()
        self._context: ssl.SSLContext | None = None
        self._closed = False
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"HTTPTransport(proxies={sorted(self._proxies)!r})"

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
        return self.request("POST", url, body, headers, timeout)

    def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> Answer:
        target = _Target.parse(url)
        proxy = self._proxy_for(target)
        if proxy is not None and proxy.scheme not in PROXY_SCHEMES:
            raise TransportError(
                "connection",
                f"{proxy.variable} names a {proxy.scheme}:// proxy; doow-otel supports http:// "
                "proxies only. Use an http:// proxy or add the Doow host to NO_PROXY.",
            )
        headers = dict(headers)
        request_target = target.path
        if proxy is not None and target.scheme == "http":  # absolute-form, to the proxy
            request_target = f"http://{target.netloc}{target.path}"
            headers.update(proxy.headers)
        for attempt in (1, 2):
            conn, reused = self._checkout(target, proxy, timeout)
            try:
                conn.request(method, request_target, body, headers)
                response = conn.getresponse()
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self._discard(conn)
                # An idle connection the server closed meanwhile (its keep-alive timeout, a
                # NAT's) fails as it is used, before any answer: once, the request goes on
                # a fresh one. Resending is safe even if the server had read the batch:
                # Doow deduplicates by event_id. A timeout is not retried here (the server
                # may be slow, and the caller's deadline is the bound).
                if reused and attempt == 1 and _before_answer(exc):
                    continue
                raise _failure(exc) from None
            answer = self._read(target, conn, response)
            if proxy is not None and answer.status == 407:
                # the proxy's answer, not Doow's (as a CONNECT tunnel's 407 fails to connect)
                raise TransportError(
                    "connection",
                    f"the proxy from {proxy.variable} answered 407 (Proxy Authentication "
                    "Required): check the credentials in its URL",
                )
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close every connection; requests in flight fail at once (a closed socket).
        In a forked child, the parent's connections are left to the parent."""
        with self._lock:
            self._forget_parents_connections()
            self._closed = True
            idle = [conn for conns in self._idle.values() for conn, _ in conns]
            busy = list(self._busy)
            self._idle.clear()
            self._busy.clear()
        for conn in idle:
            conn.close()
        for conn in busy:  # in use by another thread: that thread closes it as it fails
            _shutdown(conn)

    # --- connections ---

    def _checkout(
        self, target: _Target, proxy: _Proxy | None, timeout: float
    ) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection to `target` (True) or a new, connected one (False); either is
        in `_busy` from the moment it is taken, so `close()` always reaches it."""
        now = time.monotonic()
        stale: list[http.client.HTTPConnection] = []
        conn: http.client.HTTPConnection | None = None
        with self._lock:
            self._forget_parents_connections()
            if self._closed:
                raise TransportError("connection", "the transport is closed")
            idle = self._idle.get(target.key, [])
            while idle and conn is None:
                candidate, since = idle.pop()
                if now - since < IDLE_SECONDS and _still_open(candidate):
                    conn = candidate
                    self._busy.add(conn)
                else:
                    stale.append(candidate)
        for old in stale:
            old.close()
        if conn is not None and conn.sock is not None:
            conn.sock.settimeout(timeout)
            return conn, True
        conn = self._new(target, proxy, timeout)
        with self._lock:
            self._busy.add(conn)
        try:
            conn.connect()  # proxy tunnel and TLS handshake included
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._discard(conn)
            raise _failure(exc) from None
        conn.auto_open = 0  # never reconnect behind our back (a closed transport stays closed)
        with self._lock:
            closed = self._closed  # closed while connecting (close() saw no socket yet)
        if closed or conn.sock is None:
            self._discard(conn)
            raise TransportError("connection", "the transport was closed while connecting")
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, False

    def _new(
        self, target: _Target, proxy: _Proxy | None, timeout: float
    ) -> http.client.HTTPConnection:
        host, port = (proxy.host, proxy.port) if proxy else (target.host, target.port)
        if target.scheme == "http":
            return http.client.HTTPConnection(host, port, timeout=timeout)
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls())
        if proxy is not None:
            conn.set_tunnel(target.host, target.port, headers=proxy.headers)
        return conn

    def _read(
        self, target: _Target, conn: http.client.HTTPConnection, response: http.client.HTTPResponse
    ) -> Answer:
        try:
            body = response.read(self._max_answer + 1)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._discard(conn)
            raise _failure(exc) from None
        answer = Answer(response.status, Headers(response.getheaders()), body)
        if len(body) > self._max_answer:  # the rest is never read: the connection goes
            self._discard(conn)
            return answer._replace(body=body[: self._max_answer])
        if response.length:  # fewer bytes than Content-Length said, then the end
            self._discard(conn)
            raise TransportError(
                "connection", "the connection closed before the whole answer arrived"
            )
        reusable = response.isclosed() and not response.will_close and conn.sock is not None
        self._release(target, conn, reusable)
        return answer

    def _release(self, target: _Target, conn: http.client.HTTPConnection, reusable: bool) -> None:
        with self._lock:
            self._busy.discard(conn)
            idle = self._idle.setdefault(target.key, [])
            keep = reusable and not self._closed and self._pid == os.getpid()
            if keep and len(idle) < MAX_IDLE_PER_HOST:
                idle.append((conn, time.monotonic()))
                return
        conn.close()

    def _discard(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._busy.discard(conn)
        conn.close()

    def _forget_parents_connections(self) -> None:
        """In a forked child: the pooled sockets are the parent's too; never use or shut them."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._idle.clear()
            self._busy.clear()

    def _tls(self) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                self._context = _tls_context()
            return self._context

    # --- proxies ---

    def _proxy_for(self, target: _Target) -> _Proxy | None:
        if _bypassed(target, self._no_proxy):
            return None
        return self._proxies.get(target.scheme) or self._proxies.get("all")


def _tls_context() -> ssl.SSLContext:
    """Certificates and host names verified against the system's trust store (OpenSSL's
    default paths, `SSL_CERT_FILE` and `SSL_CERT_DIR` included), certifi's when none."""
    import ssl

    context = ssl.create_default_context()
    paths = ssl.get_default_verify_paths()
    if not (paths.cafile or _has_certificates(paths.capath)):  # an image without CA certificates
        try:
            import certifi  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            pass
        else:
            context.load_verify_locations(cafile=certifi.where())
    return context


def _has_certificates(directory: str | None) -> bool:
    """A CA directory with anything in it (the openssl package alone leaves it empty)."""
    if not directory:
        return False
    try:
        with os.scandir(directory) as entries:
            return any(True for _ in entries)
    except OSError:
        return False


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """An idle connection is usable when nothing waits to be read on it: an end of
    stream (the server closed it) or stray bytes both mean it is not."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return not poller.poll(0)
        return not select.select([sock], [], [], 0)[0]
    except (OSError, ValueError):
        return False


def _shutdown(conn: http.client.HTTPConnection) -> None:
    """Wake a thread blocked on `conn` (it fails, then closes the connection itself)."""
    sock = conn.sock
    if sock is not None:
        # the plain socket's shutdown: no TLS state touched under the other thread
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _before_answer(exc: BaseException) -> bool:
    """A failure of a reused connection before its answer: sending failed, or the server
    closed or reset the connection instead of answering."""
    return isinstance(exc, (ConnectionError, http.client.NotConnected)) or (
        isinstance(exc, OSError)
        and not isinstance(exc, TimeoutError)
        and type(exc).__name__ in ("SSLEOFError", "SSLZeroReturnError")
    )


def _failure(exc: BaseException) -> TransportError:
    """The failure described by the socket's or the protocol's error; a ValueError (a
    header http.client refuses) is named only, since its text would quote the header."""
    kind: Literal["timeout", "connection"] = (
        "timeout" if isinstance(exc, TimeoutError) else "connection"
    )
    known = isinstance(exc, (OSError, http.client.HTTPException))  # a certificate error is
    detail = exc if known else "a header or URL http.client refuses"  # a ValueError too
    return TransportError(kind, f"{type(exc).__name__}: {detail}"[:300])


# --- proxies from the environment ---


def _proxy_settings(environ: Mapping[str, str]) -> tuple[dict[str, _Proxy], list[str]]:
    """({"http" | "https" | "all": proxy}, NO_PROXY entries), as urllib reads them: any
    `<scheme>_proxy` variable, the lowercase form winning; `HTTP_PROXY` ignored in a CGI
    request (httpoxy)."""
    found: dict[str, tuple[str, str]] = {}  # scheme -> (variable, value)
    for name, value in environ.items():
        if value and name[-6:].lower() == "_proxy" and name != name.lower():
            found[name[:-6].lower()] = (name, value)
    if "REQUEST_METHOD" in environ:
        found.pop("http", None)
    for name, value in environ.items():
        if name[-6:] == "_proxy" and name == name.lower():
            if value:
                found[name[:-6]] = (name, value)
            else:
                found.pop(name[:-6], None)
    no_proxy = [e.strip().lower() for e in found.pop("no", ("", ""))[1].split(",") if e.strip()]
    proxies = {
        scheme: _parse_proxy(variable, value)
        for scheme, (variable, value) in found.items()
        if scheme in ("http", "https", "all")
    }
    return proxies, no_proxy


def _parse_proxy(variable: str, value: str) -> _Proxy:
    parts = urlsplit(value if "://" in value else f"http://{value}")
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme, 1080)
    except ValueError:
        port = 0  # connecting fails, naming the address
    authorization = None
    if parts.username is not None:
        import base64

        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return _Proxy(variable, scheme, parts.hostname or "", port, authorization)


def _bypassed(target: _Target, no_proxy: list[str]) -> bool:
    """True when a NO_PROXY entry names the target's host (and port, when it gives one)."""
    for entry in no_proxy:
        if entry == "*":
            return True
        if "://" in entry:
            entry = entry.split("://", 1)[1]
        host, port = entry, None
        if entry.startswith("["):  # [v6] or [v6]:port
            host, _, rest = entry[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else None
        elif entry.count(":") == 1:
            host, port = entry.split(":")
        if port is not None and port != str(target.port):
            continue
        if "/" in host:  # a CIDR range: IP literals only (no name is resolved)
            if _in_range(target.host, host):
                return True
            continue
        if host.startswith("."):  # subdomains only
            if target.host.endswith(host):
                return True
        elif target.host == host or target.host.endswith("." + host.lstrip("*.")):
            return True
    return False


def _in_range(host: str, cidr: str) -> bool:
    import ipaddress  # only for NO_PROXY ranges: most deployments have none

    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:  # the host is a name, or the entry not a range
        return False
