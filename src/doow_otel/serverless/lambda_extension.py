"""The otelcol-doow Lambda extension layer, seen from the function.

With the layer (`collector/build-lambda-layer.sh`), Lambda runs otelcol-doow next to
the function as an external extension. `DoowTracker(route="collector")` (or
`DOOW_ROUTE=collector`) then makes `with_lambda`'s flush a push to it on localhost;
the extension delivers to Doow after the response, before the environment freezes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["EXTENSION_PATH", "await_collector", "hint_route", "layer_present"]

logger = logging.getLogger("doow_otel")

EXTENSION_PATH = Path("/opt/extensions/otelcol-doow")
"""Where Lambda finds the layer's extension."""
READY_WAIT = 2.0
"""Seconds the first push waits at most for the extension's OTLP port."""
DEFAULT_COLLECTOR = "http://localhost:4318"

_lock = threading.Lock()
_hinted = False
_ready: set[tuple[str, int]] = set()


def layer_present() -> bool:
    return EXTENSION_PATH.exists()


def hint_route(route: str | None) -> None:
    """One log line, once per process, when the layer is there but usage goes to Doow
    directly (`route`: the tracker's, None without one)."""
    global _hinted
    if _hinted or route == "collector" or os.environ.get("DOOW_ROUTE") or not layer_present():
        return
    _hinted = True
    # a warning: Lambda's Python runtime shows nothing below WARNING by default
    logger.warning(
        "doow: the otelcol-doow extension layer is present but usage goes to Doow from the "
        "handler; set DOOW_ROUTE=collector (or DoowTracker(route='collector')) to push it "
        "to the extension and keep Doow's round trip out of the response "
        "(DOOW_ROUTE=doow keeps the direct route and silences this)"
    )


def collector_address(endpoint: str | None) -> tuple[str, int]:
    """host and port of the collector the tracker pushes to (as its OTLP exporter resolves it)."""
    url = (
        endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or DEFAULT_COLLECTOR
    )
    parts = urlsplit(url if "//" in url else f"http://{url}")
    return parts.hostname or "localhost", parts.port or (443 if parts.scheme == "https" else 80)


def await_collector(endpoint: str | None, limit: float = READY_WAIT) -> bool:
    """Wait (once per process, at most `limit` seconds) until the collector accepts
    connections, so that a cold start's first push cannot race the extension's start.
    True when it does; never raises."""
    address = collector_address(endpoint)
    if address in _ready:
        return True
    with _lock:
        if address in _ready:
            return True
        end = time.monotonic() + limit
        while True:
            try:
                with socket.create_connection(address, timeout=max(0.01, end - time.monotonic())):
                    _ready.add(address)
                    return True
            except OSError:
                if time.monotonic() >= end:
                    logger.warning(
                        "doow: the collector at %s:%d is not accepting connections after %.1f s; "
                        "the push goes ahead and its failure is reported",
                        *address,
                        limit,
                    )
                    _ready.add(address)  # waited once; later pushes report for themselves
                    return False
                time.sleep(0.01)
