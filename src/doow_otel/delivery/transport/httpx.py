"""`HttpxTransport`: posts through an `httpx.Client` the application configured (the
`doow-otel[httpx]` extra), for what the default transport (`http`) does not do: SOCKS and
https:// proxies, client certificates (mTLS), a CA bundle or SSL context set in code,
HTTP/2, event hooks, custom transports. Everything the client was configured with
applies (proxies, `trust_env`, `verify`, `cert`, `http2`, `event_hooks`, `auth`,
default headers under Doow's own), except:

- Redirects are never followed, whatever the client's `follow_redirects` (they would
  carry the API key elsewhere): a 3xx is returned as it is.
- A proxy's 407 is a connection failure, as with the default transport (the usage is
  kept): with a forwarding proxy it arrives as an answer.
- Every operation is bounded by `timeout` (connect, each read and write, a wait for a
  pooled connection), and so is the whole answer's body: it is read as it arrives and
  given up (its connection closed) at the deadline or past `max_answer_bytes`. The
  caller's deadline is a hard bound whatever the server does (the client abandons the
  request on its worker thread). What httpx cannot bound is a server that trickles its
  *headers*: that worker then ends with the server (or the proxy) giving up; the default
  transport closes the socket at the deadline.

Errors describe the failure only, never a header (so never the API key). The client is
the application's: `close()` never closes it (a client its factory made is closed, and a
later request makes another: a tracker restored from a snapshot closes its old
`DoowClient`, and the transport goes on with the new one).

Fork safety: httpx's connection pool is not fork-safe (two processes on one socket). Pass
a factory (`HttpxTransport(lambda: httpx.Client(...))`) where the process forks after
setup (gunicorn `--preload`, multiprocessing): it is called once per process, and again
in a forked child.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Literal

import httpx

from doow_otel.delivery.transport.base import Answer, Headers
from doow_otel.errors import ConfigurationError, TransportError

__all__ = ["HttpxTransport"]

MAX_ANSWER_BYTES = 4 * 1024 * 1024
logger = logging.getLogger("doow_otel")


class HttpxTransport:
    """A `doow_otel.delivery.transport.base.Transport` on an application's `httpx.Client`."""

    def __init__(
        self,
        client: httpx.Client | Callable[[], httpx.Client],
        *,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        if isinstance(client, httpx.AsyncClient):
            raise ConfigurationError(
                "http_client: an httpx.AsyncClient cannot be used (delivery runs on its own "
                "threads, never on your event loop); pass an httpx.Client configured alike"
            )
        if not (isinstance(client, httpx.Client) or callable(client)):
            raise ConfigurationError(
                f"http_client: expected an httpx.Client or a function making one, got "
                f"{type(client).__name__}"
            )
        self._given = client if isinstance(client, httpx.Client) else None
        self._factory = None if isinstance(client, httpx.Client) else client
        self._made: httpx.Client | None = None  # the factory's, in this process
        self._pid = os.getpid()
        self._max_answer = max_answer_bytes
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HttpxTransport({'factory' if self._factory else 'httpx.Client'})"

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
        end = time.monotonic() + timeout
        client = self._client()
        try:
            request = client.build_request(
                "POST", url, content=body, headers=dict(headers), timeout=httpx.Timeout(timeout)
            )
            response = client.send(request, stream=True, follow_redirects=False)
        except (httpx.HTTPError, httpx.InvalidURL, RuntimeError) as exc:
            raise _failure(exc) from None
        try:
            content = self._read(response, end)
        finally:
            response.close()  # a body not read to its end closes the connection
        if response.status_code == 407:  # a forwarding proxy's answer, not Doow's
            raise TransportError(
                "connection",
                "the proxy answered 407 (Proxy Authentication Required): check the "
                "credentials in the proxy's URL",
            )
        return Answer(response.status_code, Headers(response.headers.multi_items()), content)

    def close(self) -> None:
        """Close the client the factory made (a later request makes another); the
        application's own client stays open."""
        with self._lock:
            made, self._made = self._made, None
        if made is not None and self._pid == os.getpid():
            made.close()

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._given is not None:
                if self._pid != os.getpid():  # said once per process: a factory is the fix
                    self._pid = os.getpid()
                    logger.warning(
                        "doow: the httpx.Client given as http_client was made before this "
                        "process forked: its pooled connections are the parent's too. Pass a "
                        "function that makes the client (http_client=lambda: httpx.Client(...))"
                    )
                return self._given
            if self._made is None or self._pid != os.getpid():  # first use, or a forked child
                assert self._factory is not None
                self._pid = os.getpid()
                try:
                    made = self._factory()
                except Exception as exc:
                    raise TransportError(
                        "connection", f"http_client: the factory raised {type(exc).__name__}"
                    ) from None
                if not isinstance(made, httpx.Client):
                    raise TransportError(
                        "connection",
                        f"http_client: the factory made a {type(made).__name__}, not an "
                        "httpx.Client",
                    )
                self._made = made
            return self._made

    def _read(self, response: httpx.Response, end: float) -> bytes:
        """The body as it arrives (decoded as its Content-Encoding says), at most
        `max_answer_bytes`, given up at `end`."""
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > self._max_answer:  # the rest is never read: the connection goes
                    return b"".join(chunks)[: self._max_answer]
                if time.monotonic() >= end:
                    raise TransportError(
                        "timeout", "the answer was still arriving when the deadline passed"
                    )
        except (httpx.HTTPError, RuntimeError) as exc:
            raise _failure(exc) from None
        return b"".join(chunks)


def _failure(exc: BaseException) -> TransportError:
    """The failure, described by httpx's error; a protocol error raised while writing the
    request (a header h11 refuses) is named only, since its text would quote the header."""
    kind: Literal["timeout", "connection"] = (
        "timeout" if isinstance(exc, httpx.TimeoutException) else "connection"
    )
    if isinstance(exc, (httpx.LocalProtocolError, httpx.InvalidURL)):
        detail = "a header or URL httpx refuses"
    elif isinstance(exc, RuntimeError):  # the application closed its client
        detail = f"the httpx.Client cannot send ({exc})"
    else:
        detail = str(exc) or "no detail"
    return TransportError(kind, f"{type(exc).__name__}: {detail}"[:300])
