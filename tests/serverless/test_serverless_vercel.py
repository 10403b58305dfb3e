"""Vercel: wrapped apps served by real servers and driven over HTTP.

An invocation is over when the server is done with the request (Vercel's runtime
then reports its end and may freeze the instance): every check reads what the
local server had stored by then. The `wait_until` path runs under a stand-in for
Vercel's runtime that sets the hook per request, as `vercel.functions` documents it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import httpx
import pytest

from doow_otel.tracker import DoowTracker
from doow_otel_testing import LocalDoow


def serve_one(server: Any, call: Callable[[str], httpx.Response]) -> httpx.Response:
    """One invocation: the server handles one request; returns once it is done with it."""
    handling = threading.Thread(target=server.handle_request)
    handling.start()
    host, port = server.server_address[:2]
    try:
        return call(f"http://{host}:{port}")
    finally:
        handling.join(30)
        assert not handling.is_alive()


# --- class handler(BaseHTTPRequestHandler) under http.server ---


def handler_class(meter: DoowTracker) -> type[BaseHTTPRequestHandler]:
    @meter.with_vercel
    class handler(BaseHTTPRequestHandler):  # noqa: N801 - the name Vercel looks for
        def do_GET(self) -> None:  # noqa: N802
            meter.track(metric="api_calls", quantity=1, license_id="lic_class")
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def do_POST(self) -> None:  # noqa: N802
            meter.track(metric="uploads", quantity=1, license_id="lic_class")
            raise RuntimeError("the handler failed")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return handler


def test_handler_class_flushes_after_each_request(
    meter: DoowTracker, local_doow: LocalDoow
) -> None:
    handler = handler_class(meter)
    assert issubclass(handler, BaseHTTPRequestHandler) and handler.__name__ == "handler"
    server = HTTPServer(("127.0.0.1", 0), handler)
    with server:
        for count in (1, 2, 3):
            response = serve_one(server, lambda url: httpx.get(url))
            assert response.status_code == 200 and response.text == "ok"
            assert local_doow.total("api_calls", "lic_class") == count
        assert len(local_doow.requests(path="/telemetry/events")) == 3


def test_handler_class_that_raises_still_flushed(meter: DoowTracker, local_doow: LocalDoow) -> None:
    server = HTTPServer(("127.0.0.1", 0), handler_class(meter))
    server.handle_error = lambda request, address: None  # type: ignore[method-assign]
    with server:
        with contextlib.suppress(httpx.HTTPError):  # no response: the connection just closes
            serve_one(server, lambda url: httpx.post(url, content=b"x"))
        assert local_doow.total("uploads", "lic_class") == 1


def test_handler_class_budget_follows_vercels_deadline(
    meter: DoowTracker, local_doow: LocalDoow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `vercel.functions.get_deadline()` asks the runtime module; this one says 1 s left
    runtime = types.ModuleType("vercel_runtime")
    runtime.get_deadline = lambda: datetime.now(timezone.utc) + timedelta(seconds=1)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vercel_runtime", runtime)
    server = HTTPServer(("127.0.0.1", 0), handler_class(meter))
    with server:
        local_doow.faults.latency(5.0)
        assert serve_one(server, lambda url: httpx.get(url)).status_code == 200
        # the invocation ended within its second: the slow server has nothing yet,
        # the spool has the batch
        assert local_doow.total("api_calls", "lic_class") == 0
        assert len(list((tmp_path / "spool").glob("*.batch"))) == 1
        local_doow.faults.clear()
        assert serve_one(server, lambda url: httpx.get(url)).status_code == 200
        assert local_doow.total("api_calls", "lic_class") == 2
        assert len(local_doow.events(metric="api_calls", license_id="lic_class")) == 2


# --- WSGI under wsgiref: Flask, and a bare WSGI callable ---


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def wsgi_server(app: Any) -> WSGIServer:
    server = WSGIServer(("127.0.0.1", 0), QuietHandler)
    server.set_app(app)
    return server


def test_flask_app_flushes_when_the_response_is_closed(
    meter: DoowTracker, local_doow: LocalDoow
) -> None:
    flask = pytest.importorskip("flask")
    api = flask.Flask(__name__)

    @api.post("/api/summarize")
    def summarize() -> Any:
        body = flask.request.get_json()
        meter.track(metric="words", quantity=len(body["text"].split()), license_id="lic_flask")
        return {"ok": True}

    @api.get("/api/fail")
    def fail() -> Any:
        meter.track(metric="api_calls", quantity=1, license_id="lic_flask")
        raise RuntimeError("broken")

    app = meter.with_vercel(api)
    assert app.url_map is api.url_map  # the app's attributes stay reachable
    with wsgi_server(app) as server:
        response = serve_one(
            server, lambda url: httpx.post(f"{url}/api/summarize", json={"text": "a b c"})
        )
        assert response.json() == {"ok": True}
        assert local_doow.total("words", "lic_flask") == 3
        assert serve_one(server, lambda url: httpx.get(f"{url}/api/fail")).status_code == 500
        assert local_doow.total("api_calls", "lic_flask") == 1


def test_a_bare_wsgi_app_keeps_its_content_length(
    meter: DoowTracker, local_doow: LocalDoow
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        meter.track(metric="api_calls", quantity=1, license_id="lic_wsgi")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    with wsgi_server(meter.with_vercel(app)) as server:
        response = serve_one(server, lambda url: httpx.get(url))
    # wsgiref sets it from len() of a one-block body: a client need not wait for the close
    assert response.headers["content-length"] == "5"
    assert local_doow.total("api_calls", "lic_wsgi") == 1


# --- ASGI under uvicorn: FastAPI, with and without wait_until ---


class StandInRuntime:
    """Stands in for Vercel's runtime around an ASGI app, as its request middleware does.

    It marks each invocation's end, after which Vercel may freeze the instance, and
    reads the local server then. With `wait_until`, it sets the hook that
    `vercel.functions.wait_until` calls: the awaitable starts at once and the
    invocation stays alive until it is done, after the response was sent.
    """

    def __init__(self, app: Any, on_end: Callable[[], object], *, wait_until: bool) -> None:
        self.app = app
        self.on_end = on_end
        self.wait_until = wait_until
        self.ends: list[tuple[float, object]] = []  # (monotonic time, on_end's answer)
        self.ended = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from vercel.cache.context import set_context

        kept_alive: list[asyncio.Future[object]] = []
        if self.wait_until:
            set_context(wait_until=lambda work: kept_alive.append(asyncio.ensure_future(work)))
        await self.app(scope, receive, send)
        await asyncio.gather(*kept_alive)
        seen = await asyncio.to_thread(self.on_end)
        self.ends.append((time.monotonic(), seen))
        self.ended.set()


@contextlib.contextmanager
def uvicorn_serving(app: Any) -> Iterator[str]:
    uvicorn = pytest.importorskip("uvicorn")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def fastapi_app(meter: DoowTracker) -> Any:
    fastapi = pytest.importorskip("fastapi")
    api = fastapi.FastAPI()

    async def generate(body: dict[str, Any], tasks: Any) -> dict[str, Any]:
        meter.track(metric="output_tokens", quantity=body["tokens"], license_id="lic_asgi")
        # usage recorded by a background task belongs to the invocation too
        tasks.add_task(meter.track, metric="api_calls", quantity=1, license_id="lic_asgi")
        return {"ok": True}

    # real classes, not the strings `from __future__ import annotations` leaves behind
    generate.__annotations__.update(body=dict, tasks=fastapi.BackgroundTasks)
    api.post("/api/generate")(generate)
    return api


def test_fastapi_app_under_uvicorn_flushes_before_the_invocation_ends(
    meter: DoowTracker, local_doow: LocalDoow
) -> None:
    api = fastapi_app(meter)
    app = meter.with_vercel(api)
    assert app.routes is api.routes
    runtime = StandInRuntime(
        app,
        lambda: (local_doow.total("output_tokens", "lic_asgi"), local_doow.total("api_calls")),
        wait_until=False,
    )
    with uvicorn_serving(runtime) as url:
        for count in (1, 2):
            runtime.ended.clear()
            response = httpx.post(f"{url}/api/generate", json={"tokens": 100})
            assert response.json() == {"ok": True}
            assert runtime.ended.wait(10)
            assert runtime.ends[-1][1] == (100 * count, count)
    assert len(local_doow.requests(path="/telemetry/events")) == 2


def test_wait_until_sends_the_response_before_the_flush_and_usage_still_arrives(
    meter: DoowTracker, local_doow: LocalDoow
) -> None:
    pytest.importorskip("vercel")
    runtime = StandInRuntime(
        meter.with_vercel(fastapi_app(meter)),
        lambda: local_doow.total("output_tokens", "lic_asgi"),
        wait_until=True,
    )
    with uvicorn_serving(runtime) as url:
        local_doow.faults.latency(1.0)  # a slow Doow: the flush takes a second
        response = httpx.post(f"{url}/api/generate", json={"tokens": 64})
        received = time.monotonic()
        assert response.json() == {"ok": True}
        # the response is here while the flush is still waiting on the server
        assert not runtime.ended.is_set()
        assert local_doow.total("output_tokens", "lic_asgi") == 0
        assert runtime.ended.wait(10)
        ended_at, seen = runtime.ends[-1]
        assert ended_at > received
        assert seen == 64  # delivered before the invocation ended
    assert local_doow.total("api_calls", "lic_asgi") == 1
    assert len(local_doow.requests(path="/telemetry/events")) == 1
