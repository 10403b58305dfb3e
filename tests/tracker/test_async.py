"""DoowTracker in async code, under a real uvicorn: `await meter.aflush()` leaves the
event loop serving other requests while Doow is slow (counted: requests answered while
the flush waits), where a blocking `meter.flush()` in an `async def` stops them all;
`doow_otel.lifespan` flushes as the app shuts down and leaves the tracker usable."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import doow_otel
from doow_otel import DoowTracker
from doow_otel_testing import LocalDoow
from helpers import wait_for

PINGS = 5


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """The app under uvicorn (asyncio, h11) on a thread; stopped as uvicorn stops on a
    signal: the lifespan's shutdown runs."""
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="on", log_level="warning", loop="asyncio", http="h11")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: server.started, seconds=15), "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def tracker(doow: LocalDoow, spool: Path) -> DoowTracker:
    return DoowTracker(
        doow.api_key,
        endpoint=doow.url,
        spool=spool,
        handle_sigterm=False,
        flush_interval=3600,  # only the flushes under test send
        timeout=60.0,
    )


def app_flushing_with(flush: Callable[[DoowTracker], Awaitable[bool]], meter: DoowTracker) -> Any:
    async def track_and_flush(request: Request) -> Response:
        meter.track(metric="api_calls", quantity=3, license_id="lic_1")
        return JSONResponse({"flushed": await flush(meter)})

    async def ping(request: Request) -> Response:
        return PlainTextResponse("pong")

    return Starlette(
        routes=[Route("/flush", track_and_flush, methods=["POST"]), Route("/ping", ping)]
    )


async def awaited(meter: DoowTracker) -> bool:
    return await meter.aflush()


async def blocking(meter: DoowTracker) -> bool:
    return meter.flush()  # what the issue found: the loop waits with it


def pings_answered_while_doow_is_slow(
    doow: LocalDoow, meter: DoowTracker, flush: Callable[[DoowTracker], Awaitable[bool]]
) -> tuple[int, dict[str, Any]]:
    """Ask /flush while Doow holds the request unanswered; once Doow has it, ping PINGS
    times (each may wait 2 s); then let Doow answer. Returns (pings answered, /flush's
    answer)."""
    doow.faults.latency(120, when="before_body")  # held until cleared, nothing stored yet
    flushed: dict[str, Any] = {}
    with served(app_flushing_with(flush, meter)) as url:
        flushing = threading.Thread(
            target=lambda: flushed.update(httpx.post(f"{url}/flush", timeout=90).json()),
            daemon=True,
        )
        flushing.start()
        assert wait_for(
            lambda: bool(doow.requests(path="/telemetry/events", include_in_flight=True)),
            seconds=15,
        ), "the flush never reached Doow"
        answered = 0
        with httpx.Client(timeout=2.0) as http:
            for _ in range(PINGS):
                with contextlib.suppress(httpx.TimeoutException):
                    answered += http.get(f"{url}/ping").text == "pong"
        still_waiting = flushing.is_alive() and not flushed
        doow.faults.clear()  # Doow answers now
        flushing.join(90)
    assert still_waiting, "the flush did not wait on Doow: the test proves nothing"
    return answered, flushed


@pytest.mark.slow
def test_the_loop_answers_other_requests_while_aflush_waits_on_a_slow_doow(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    meter = tracker(local_doow, tmp_path / "s")
    answered, flushed = pings_answered_while_doow_is_slow(local_doow, meter, awaited)
    assert answered == PINGS
    assert flushed == {"flushed": True}
    assert local_doow.total("api_calls", "lic_1") == 3
    meter.shutdown()


@pytest.mark.slow
def test_a_blocking_flush_in_async_code_stops_the_loop(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    """The control: the same app with `meter.flush()` answers no ping while Doow is slow."""
    meter = tracker(local_doow, tmp_path / "s")
    answered, flushed = pings_answered_while_doow_is_slow(local_doow, meter, blocking)
    assert answered == 0
    assert flushed == {"flushed": True}
    meter.shutdown()


@pytest.mark.slow
def test_the_lifespan_flushes_at_shutdown_and_leaves_the_tracker_usable(
    local_doow: LocalDoow, tmp_path: Path
) -> None:
    meter = tracker(local_doow, tmp_path / "s")
    app = FastAPI(lifespan=doow_otel.lifespan(meter))

    @app.get("/work")
    async def work() -> dict[str, str]:
        meter.track(metric="api_calls", quantity=2, license_id="lic_1")  # no flush here
        return {"ok": "yes"}

    with served(app) as url:
        assert httpx.get(f"{url}/work").json() == {"ok": "yes"}
        assert local_doow.total("api_calls") == 0  # a 1-hour window: nothing sent yet
    assert local_doow.total("api_calls", "lic_1") == 2  # the lifespan's shutdown flushed it

    with served(app) as url:  # the app again, in the same process (a test client's way)
        httpx.get(f"{url}/work")
    assert local_doow.total("api_calls", "lic_1") == 4
    meter.shutdown()


@pytest.mark.slow
def test_the_lifespan_nests_in_the_applications_own(local_doow: LocalDoow, tmp_path: Path) -> None:
    meter = tracker(local_doow, tmp_path / "s")
    steps: list[str] = []

    @asynccontextmanager
    async def app_lifespan(app: Starlette) -> Any:
        steps.append("app start")
        async with doow_otel.lifespan(meter):
            yield
        steps.append(f"app end, {local_doow.total('api_calls')} stored")

    async def work(request: Request) -> Response:
        meter.track(metric="api_calls", quantity=5, license_id="lic_1")
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/work", work)], lifespan=app_lifespan)
    with served(app) as url:
        httpx.get(f"{url}/work")
    assert steps == ["app start", "app end, 5 stored"]
    meter.shutdown()


def test_aflush_and_ashutdown_in_plain_asyncio(local_doow: LocalDoow, tmp_path: Path) -> None:
    import asyncio

    async def main() -> bool:
        async with tracker(local_doow, tmp_path / "s") as meter:
            meter.track(metric="api_calls", quantity=1, license_id="lic_1")
            ok = await meter.aflush()
            meter.track(metric="api_calls", quantity=1, license_id="lic_1")
        return ok  # leaving the block shut it down, sending the second

    assert asyncio.run(main()) is True
    assert local_doow.total("api_calls", "lic_1") == 2
