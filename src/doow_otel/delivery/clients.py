"""One `DoowClient` per process and configuration, shared by whoever sends with it.

The exporters built with no client (as `opentelemetry-instrument` builds them),
`configure()` and `DoowTracker` all take their client from here: one connection pool
and one spool per configuration (the zero-code path's three exporters once ran three
clients on one spool). Each user gives it back with `release_client()`; the last one
out closes it. A forked child starts with none of the parent's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from doow_otel.delivery.client import DEFAULT_SPOOL, DoowClient
from doow_otel.delivery.config import Settings, spool_directory
from doow_otel.errors import ErrorReport

__all__ = ["release_client", "shared_client"]

_ClientKey = tuple[Any, ...]
_clients: dict[_ClientKey, tuple[DoowClient, int]] = {}
_clients_lock = threading.Lock()


def shared_client(
    *,
    api_key: str | None = None,
    endpoint: str | None = None,
    timeout: float = 10.0,
    spool: Any = DEFAULT_SPOOL,
    on_error: Callable[[ErrorReport], None] | None = None,
    disabled: bool | None = None,
    **client_options: Any,
) -> DoowClient:
    """The process's client for this configuration, created on first use.

    The exporters built with no client, `configure()` and `DoowTracker` all take it from
    here: one connection pool and one spool per configuration (the zero-code path's
    three exporters used to run three clients on one spool). Give it back with
    `release_client()`; the last one out closes it.
    """
    settings = Settings.resolve(api_key=api_key, endpoint=endpoint, disabled=disabled)
    if spool is DEFAULT_SPOOL:
        spool = spool_directory()
    spool_key = str(spool) if isinstance(spool, (str, os.PathLike)) else id(spool)
    key = (
        settings.api_key,
        settings.endpoint,
        settings.disabled,
        timeout,
        spool_key,
        on_error,
        tuple(sorted(client_options.items())),
    )
    with _clients_lock:
        found = _clients.get(key)
        if found is None:
            client = DoowClient(
                settings.api_key,
                endpoint=settings.endpoint,
                timeout=timeout,
                spool=Path(spool) if isinstance(spool, os.PathLike) else spool,
                on_error=on_error,
                disabled=settings.disabled,
                **client_options,
            )
            found = (client, 0)
        _clients[key] = (found[0], found[1] + 1)
        return found[0]


def release_client(client: DoowClient) -> None:
    """One user of a shared client is done with it; the last closes it."""
    with _clients_lock:
        for key, (each, users) in list(_clients.items()):
            if each is client:
                if users > 1:
                    _clients[key] = (each, users - 1)
                    return
                del _clients[key]
                break
    client.close()


def _forget_clients_after_fork() -> None:
    # The child must not use the parent's connections (nor locks a parent thread held):
    # whoever needs a client in the child builds a new one (DoowTracker does).
    global _clients_lock
    _clients.clear()
    _clients_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_clients_after_fork)
