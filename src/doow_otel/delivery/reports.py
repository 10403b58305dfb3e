"""Reporting a delivery problem: once, redacted, to `on_error` and the `doow_otel` logger.

Every problem becomes an `ErrorReport` (doow_otel.errors) handed to the user's
`on_error` callback and logged; every message passes through `Redactor` first, so the
API key can never leak. A broken callback never breaks delivery.

Usage that cannot be billed (no license, a quantity that is not a positive finite
number, an unknown kind...) is counted per reason (`Reporter.not_billed`) and reported
once per reason per interval (`not_billed_interval`), however many records follow: a
service emitting thousands a second gets one line a minute per reason, with the count.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable

from doow_otel.errors import ErrorKind, ErrorReport

__all__ = ["Redactor", "Reporter", "key_hint"]

logger = logging.getLogger("doow_otel")


def key_hint(key: str | None) -> str:
    """What may be shown of a key so a person can tell keys apart: its first characters
    (at most 10, and never more than a third of it), then an ellipsis. Never the key."""
    if not key:
        return "(none)"
    return key[: min(10, len(key) // 3)] + "…"


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
        self,
        on_error: Callable[[ErrorReport], None] | None,
        redact: Redactor | None = None,
        *,
        not_billed_interval: float = 60.0,
    ) -> None:
        self.on_error = on_error
        self.redact = redact or Redactor(None)
        self.not_billed: Counter[str] = Counter()
        """Usage records that could not be billed, per reason code, since the start."""
        self.not_billed_interval = not_billed_interval
        self._unsaid: Counter[str] = Counter()  # counted since the reason was last reported
        self._said_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def usage_not_billed(self, code: str, count: int, message: Callable[[int], str]) -> None:
        """`count` usage records that cannot be billed for `code`: counted, and reported
        (`message(n)`, n the records since the last report of this reason) at the first
        one and then at most once per interval."""
        now = time.monotonic()
        with self._lock:
            self.not_billed[code] += count
            self._unsaid[code] += count
            if now - self._said_at.get(code, -math.inf) < self.not_billed_interval:
                return
            self._said_at[code] = now
            unsaid = self._unsaid.pop(code)
        self("dropped", message(unsaid), count=unsaid)

    def not_billed_stats(self) -> dict[str, int]:
        """`not_billed` (all reasons) and `not_billed:<reason>`, for `stats()`."""
        with self._lock:
            counts = dict(self.not_billed)
        stats = {f"not_billed:{code}": count for code, count in sorted(counts.items())}
        stats["not_billed"] = sum(counts.values())
        return stats

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
