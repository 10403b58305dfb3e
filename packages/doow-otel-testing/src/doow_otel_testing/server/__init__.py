"""A local Doow-compatible server: Doow's ingest API over SQLite, for development,
tests and benchmarks, with no Doow account.

`doow-local serve` runs it in the foreground; `doow_otel_testing.LocalDoow` runs it in a
background thread of the current process.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from types import FrameType

from doow_otel_testing.server.budget import EVENTS_PER_MINUTE, Budget
from doow_otel_testing.server.faults import Faults
from doow_otel_testing.server.handler import IDLE_TIMEOUT, MAX_CONNECTIONS, DoowServer
from doow_otel_testing.server.request_log import MAX_BYTES
from doow_otel_testing.server.store import Store

__all__ = ["Budget", "DoowServer", "Faults", "Store", "new_key", "serve", "start"]


POLL_INTERVAL = 0.01
"""How often the serving thread checks for a stop: `stop()` waits up to this long (the
standard library's 0.5 s was half the time of some test files); idle, it costs a
select() call per interval."""


def new_key() -> str:
    """A fresh development key in Doow's format."""
    return "dk_dev_" + secrets.token_urlsafe(18)


def start(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    db: str | Path = ":memory:",
    keys: list[str],
    idle_timeout: float = IDLE_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    request_log_bytes: int = MAX_BYTES,
    poll_interval: float = POLL_INTERVAL,
    events_per_minute: int = EVENTS_PER_MINUTE,
    daily_cap: int | None = None,
    known_metrics: Iterable[str] | None = None,
) -> tuple[DoowServer, threading.Thread]:
    """Start a server in a daemon thread; port 0 picks a free one.

    `events_per_minute` (0: no limit) and `daily_cap` (None: none) are Doow's event budget
    per key; `known_metrics` (None: every metric) the metrics an event may measure."""
    if not keys:
        raise ValueError(
            "keys: give at least one dk_ key; the server never accepts anonymous requests"
        )
    for key in keys:
        if not key.startswith("dk_"):
            raise ValueError("keys: Doow SDK keys start with dk_")
    server = DoowServer(
        (host, port),
        Store(db),
        keys,
        idle_timeout=idle_timeout,
        max_connections=max_connections,
        request_log_bytes=request_log_bytes,
        budget=Budget(events_per_minute, daily_cap),
        known_metrics=None if known_metrics is None else frozenset(known_metrics),
    )
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": poll_interval},
        name="doow-local",
        daemon=True,
    )
    thread.start()
    return server, thread


def stop(server: DoowServer) -> None:
    server.shutdown()
    server.server_close()
    server.faults.clear()
    server.store.close()


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    db: str = "doow-local.db",
    keys: list[str] | None = None,
    events_per_minute: int = EVENTS_PER_MINUTE,
    daily_cap: int | None = None,
) -> int:
    """Run in the foreground until interrupted (the `doow-local serve` command)."""
    generated = not keys
    keys = list(keys or [new_key()])
    server, thread = start(
        host=host,
        port=port,
        db=db,
        keys=keys,
        poll_interval=0.5,
        events_per_minute=events_per_minute,
        daily_cap=daily_cap,
    )
    print(f"Doow-compatible server on {server.url}  (database: {db})", flush=True)
    if generated:
        # Printed once, here, for the developer who started it; never logged or stored.
        print(f"development key: {keys[0]}", flush=True)
        print(f"page: {server.url}/#key={keys[0]}", flush=True)
    else:
        print(f"page: {server.url}/  (the page asks for the key)", flush=True)
    budget = f"{events_per_minute} events a minute per key" if events_per_minute else "off"
    print(f"event budget: {budget}" + (f", {daily_cap} a day" if daily_cap else ""), flush=True)
    done = threading.Event()

    def stop_on(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop_on)
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()
    stop(server)
    thread.join(timeout=5)
    print("stopped", file=sys.stderr)
    return 0
