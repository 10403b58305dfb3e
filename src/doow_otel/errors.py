"""Errors and error reports.

The SDK never raises into the host function for delivery problems: they become
`ErrorReport`s handed to the user's `on_error` and logged on the `doow_otel` logger.
Every message passes through `Redactor` so the API key can never leak.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ConfigurationError", "DoowError", "ErrorKind", "ErrorReport", "Reporter"]

logger = logging.getLogger("doow_otel")

ErrorKind = Literal[
    "auth",
    "configuration",  # the endpoint is not Doow's ingest API (redirect, 404, not Doow's answer)
    "rate_limited",
    "partial_accept",
    "validation",
    "network",
    "timeout",
    "dropped",
]


class DoowError(Exception):
    """Base class of the SDK's own exceptions."""


class ConfigurationError(DoowError, ValueError):
    """Bad configuration; the message names the setting and the fix."""


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


class Redactor:
    """Removes secrets (every key the client has used) from any text before it is logged
    or handed out."""

    def __init__(self, secret: str | None) -> None:
        self._secrets: list[str] = [secret] if secret else []

    def add(self, secret: str) -> None:
        if secret and secret not in self._secrets:
            self._secrets.append(secret)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "dk_***")
        return text


class Reporter:
    """Sends reports to `on_error` and the logger; never raises."""

    def __init__(
        self, on_error: Callable[[ErrorReport], None] | None, redact: Redactor | None = None
    ) -> None:
        self.on_error = on_error
        self.redact = redact or Redactor(None)

    def __call__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        count: int = 0,
        status: int | None = None,
        rejections: tuple[tuple[str, str], ...] = (),
    ) -> None:
        report = ErrorReport(
            kind=kind,
            message=self.redact(message),
            count=count,
            status=status,
            rejections=tuple((eid, self.redact(r)) for eid, r in rejections),
        )
        logger.warning("doow %s: %s", report.kind, report.message)
        if self.on_error is not None:
            try:
                self.on_error(report)
            except Exception:  # a broken callback must not break delivery
                logger.exception("doow: on_error callback raised")
