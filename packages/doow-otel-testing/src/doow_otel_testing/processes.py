"""Small helpers for tests that start processes: a free port, and waiting for a condition."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable

__all__ = ["free_port", "listening", "wait_for"]

_PORTS = random.Random()
_GIVEN: set[int] = set()


def free_port() -> int:
    """A free loopback port for a process the test starts, below the kernel's ephemeral
    range (32768-60999 on Linux): between this check and the process's bind, no outgoing
    connection can take it (one bound to port 0 could), and no port is given twice."""
    for _ in range(1000):
        port = _PORTS.randrange(20000, 32000)
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError("no free port in 20000-31999 on 127.0.0.1")


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    """Poll `condition` until it holds (True) or `seconds` pass (its last answer)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
