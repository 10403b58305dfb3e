"""Fault injection for chaos tests and demos: the failures a real Doow (or the network
in front of it) can produce, on demand, on the real server.

Faults apply to the ingest endpoints (`/telemetry/...`), never to the read side.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

When = Literal["before_body", "after_body"]
WHENS: tuple[str, ...] = ("before_body", "after_body")


@dataclass
class Failure:
    """An answer the server gives instead of processing the request: Doow's JSON error
    (`message`), or, when `body` is set, exactly that body (a catch-all host's page, a
    redirect, an odd error shape)."""

    status: int
    headers: dict[str, str]
    message: str
    body: bytes | None = None
    content_type: str = "application/json"


class Faults:
    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._cleared = threading.Event()
        self._random = random.Random(seed)
        self._reset()

    def _reset(self) -> None:
        self._fail_count = 0
        self._fail_fraction = 0.0
        self._failure: Failure | None = None
        self._latency = 0.0
        self._latency_when: When = "before_body"
        self._drops = 0
        self._drop_when: When = "before_body"
        self._trickle = 0.0
        self.max_body_size: int | None = None

    # --- controls ---

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        retry_after: str | float | None = None,
        rate_limits: Mapping[str, Any] | None = None,
        fraction: float | None = None,
    ) -> None:
        """Answer `status` to the next `count` requests (or to a random `fraction` of all
        requests until cleared). 429 carries `Retry-After` and `X-Doow-Rate-Limits`."""
        if not 400 <= status <= 599:
            raise ValueError(f"status: {status} is not an error status (400-599)")
        if fraction is not None and not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction: {fraction} must be in (0, 1]")
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if rate_limits is not None:
            headers["X-Doow-Rate-Limits"] = json.dumps(rate_limits)
        message = {429: "rate limited", 413: "batch too large"}.get(status, "injected failure")
        with self._lock:
            self._failure = Failure(status, headers, message)
            self._fail_count = 0 if fraction is not None else count
            self._fail_fraction = fraction or 0.0

    def answer_next(
        self,
        count: int = 1,
        status: int = 200,
        *,
        body: str = "<html><body>Welcome</body></html>",
        content_type: str = "text/html",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next `count` requests with exactly this status, body and headers,
        storing nothing: a catch-all host's 200 page, a redirect (`headers={"Location":
        ...}`), an error body of an unexpected shape."""
        if not 100 <= status <= 599:
            raise ValueError(f"status: {status} is not an HTTP status (100-599)")
        with self._lock:
            self._failure = Failure(status, dict(headers or {}), "", body.encode(), content_type)
            self._fail_count = count
            self._fail_fraction = 0.0

    def trickle(self, seconds_per_byte: float) -> None:
        """Write every ingest answer one byte at a time, `seconds_per_byte` apart, after
        the batch is stored: a server (or proxy) that defeats per-read timeouts."""
        if seconds_per_byte < 0:
            raise ValueError(f"seconds_per_byte: {seconds_per_byte} must not be negative")
        with self._lock:
            self._trickle = seconds_per_byte
            self._cleared.clear()

    def latency(self, seconds: float, *, when: When = "before_body") -> None:
        """Delay every request: before the body is read (nothing stored yet) or after the
        batch is stored and before the answer (the ambiguous case)."""
        if when not in WHENS:
            raise ValueError(f"when: {when!r} must be one of {WHENS}")
        with self._lock:
            self._latency, self._latency_when = seconds, when
            self._cleared.clear()

    def drop_connection(self, count: int = 1, *, when: When = "before_body") -> None:
        """Close the next `count` connections without an answer, before the body is read
        (nothing stored) or after the batch is stored."""
        if when not in WHENS:
            raise ValueError(f"when: {when!r} must be one of {WHENS}")
        with self._lock:
            self._drops, self._drop_when = count, when

    def max_body(self, size: int | None) -> None:
        """Answer 413 to batches whose decompressed body is larger than `size` bytes."""
        with self._lock:
            self.max_body_size = size

    def clear(self) -> None:
        """Remove every fault and cut short requests waiting on injected latency."""
        with self._lock:
            self._reset()
            self._cleared.set()

    def apply(self, command: Mapping[str, Any]) -> None:
        """The admin endpoint's form: `{"fail_next": {"count": 2, "status": 503}}`,
        `{"latency": {"seconds": 1}}`, `{"drop_connection": {...}}`, `{"max_body": n}`,
        `{"answer_next": {"status": 302, "headers": {"Location": "/"}}}`,
        `{"trickle": {"seconds_per_byte": 0.5}}`, `{"clear": true}`."""
        if not isinstance(command, Mapping) or len(command) != 1:
            raise ValueError(
                "body: send one of fail_next, latency, drop_connection, max_body, clear"
            )
        ((name, args),) = command.items()
        if name == "clear":
            self.clear()
        elif name == "max_body":
            self.max_body(None if args is None else int(args))
        elif name in (
            "fail_next",
            "answer_next",
            "latency",
            "drop_connection",
            "trickle",
        ) and isinstance(args, Mapping):
            getattr(self, name)(**args)
        else:
            raise ValueError(f"{name}: unknown fault or arguments not an object")

    # --- used by the request handler ---

    def delay(self, when: When) -> None:
        with self._lock:
            seconds = self._latency if self._latency_when == when else 0.0
        if seconds > 0:
            self._cleared.wait(seconds)

    def trickle_wait(self) -> float:
        """Seconds between the bytes of an answer (0: write it whole)."""
        with self._lock:
            return self._trickle

    def pause(self, seconds: float) -> bool:
        """Sleep `seconds` unless the faults are cleared meanwhile; True when cleared."""
        return self._cleared.wait(seconds)

    def take_drop(self, when: When) -> bool:
        with self._lock:
            if self._drops > 0 and self._drop_when == when:
                self._drops -= 1
                return True
            return False

    def take_failure(self) -> Failure | None:
        with self._lock:
            if self._failure is None:
                return None
            if self._fail_count > 0:
                self._fail_count -= 1
                return self._failure
            if self._fail_fraction and self._random.random() < self._fail_fraction:
                return self._failure
            return None

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "fail_next": self._fail_count,
                "fail_fraction": self._fail_fraction,
                "status": self._failure.status if self._failure else None,
                "latency": self._latency,
                "latency_when": self._latency_when,
                "drops": self._drops,
                "drop_when": self._drop_when,
                "trickle": self._trickle,
                "max_body": self.max_body_size,
            }
