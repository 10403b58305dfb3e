"""The SDK's exceptions, and the report every delivery problem becomes.

Exceptions are raised only where the caller can fix something at once: bad
configuration when a client or tracker is made, bad input at `track()` or `send`.
Everything that goes wrong while delivering is never raised into the application: it
becomes an `ErrorReport`, handed to the `on_error` callback and logged on the
`doow_otel` logger (the one way to hear of delivery problems), and counted in `stats()`.

    DoowError
     ├── ConfigurationError   a setting is wrong (a ValueError): the message names it and the fix
     ├── InvalidEvent         usage Doow would not accept (a ValueError): the field and the fix
     │    └── BadRecord       a usage record (a JSON line, a log record's body), with its code
     └── TransportError       no answer from the server ("timeout" or "connection")

No message ever holds the API key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "BadRecord",
    "ConfigurationError",
    "DoowError",
    "ErrorKind",
    "ErrorReport",
    "InvalidEvent",
    "TransportError",
    "counted",
]

ErrorKind = Literal[
    "auth",
    "configuration",  # the endpoint is not Doow's ingest API (redirect, 404, not Doow's answer)
    "rate_limited",
    "partial_accept",
    "validation",
    "network",
    "timeout",
    "dropped",
    "folded",  # past a cardinality limit: attribution folded, the usage kept and billed
]


class DoowError(Exception):
    """Base class of the SDK's own exceptions."""


class ConfigurationError(DoowError, ValueError):
    """Bad configuration; the message names the setting and the fix."""


class InvalidEvent(DoowError, ValueError):
    """A usage event that Doow would not accept; the message names the field and the fix."""

    def __init__(self, field_name: str, problem: str) -> None:
        self.field = field_name
        self.problem = problem
        super().__init__(f"{field_name}: {problem}")


class BadRecord(InvalidEvent):
    """A record that is not a usage event; `code` is its reason code (docs/conversion.md)."""

    def __init__(self, code: str, field_name: str, problem: str) -> None:
        self.code = code
        super().__init__(field_name, problem)


class TransportError(DoowError):
    """No answer: `kind` is "timeout" or "connection"; the message never holds the API key."""

    def __init__(self, kind: Literal["timeout", "connection"], message: str) -> None:
        super().__init__(message)
        self.kind: Literal["timeout", "connection"] = kind
        self.message = message


@dataclass(frozen=True)
class ErrorReport:
    """A delivery problem, as handed to `on_error`.

    `count` is the number of events concerned; `rejections` pairs event ids with
    Doow's reasons (for `partial_accept` and `validation`).
    """

    kind: ErrorKind
    message: str
    count: int = 0
    status: int | None = None
    rejections: tuple[tuple[str, str], ...] = field(default=())


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, singular or plural as `n` asks: "1 event", "3 events",
    "1 usage record". Every message that counts something says it this way."""
    if n == 1:
        return f"1 {noun}"
    if plural is None:
        plural = noun + ("es" if noun.endswith(("ch", "sh", "s", "x")) else "s")
    return f"{n} {plural}"
