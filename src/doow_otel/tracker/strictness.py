"""What `track()` does with input Doow would not take: raise, or report and count.

A metering call must never fail the request it meters: Doow's own SDKs never throw, and a
billing SDK that turns a bad field into an HTTP 500 costs its user more than the usage is
worth. Yet a programming error should surface where it is made, in the tests. So:

- zero quantity (a completion with no tokens, a job that did nothing): bills nothing and
  is no error at all. Counted (`zero_quantities`), never raised, never reported.
- other bad input (a missing license, a non-numeric or negative quantity, a bad metric
  name, secret-looking attribution keys refused...): in strict mode `InvalidEvent` is
  raised at the call, naming the field and the fix; in report mode the call records
  nothing and returns, the problem is reported once per field and reason (`on_error`
  and the `doow_otel` logger, kind "validation") and every one is counted
  (`bad_inputs`).

The mode: `DoowTracker(strict=True | False)`; else `DOOW_TRACK_STRICT` (true/false); else
strict while pytest runs a test (`PYTEST_CURRENT_TEST` is set), report otherwise. Tests see
their mistakes as exceptions with no setting; production never fails a request on them.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from doow_otel.delivery.reports import Reporter
from doow_otel.errors import InvalidEvent

__all__ = ["Strictness", "is_zero_quantity"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def is_zero_quantity(quantity: Any) -> bool:
    """A quantity of exactly zero (0, 0.0, -0.0; not False, not "0")."""
    return type(quantity) in (int, float) and quantity == 0


class Strictness:
    """The policy and its counts; `track()` hands it what it could not take."""

    def __init__(self, report: Reporter, strict: bool | None = None) -> None:
        self.report = report
        self.strict = strict  # None: from the environment, decided at each bad input
        self.zero_quantities = 0
        self.bad_inputs = 0
        self._reported: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def is_strict(self) -> bool:
        if self.strict is not None:
            return self.strict
        setting = os.environ.get("DOOW_TRACK_STRICT", "").strip().lower()
        if setting in _TRUE:
            return True
        if setting in _FALSE:
            return False
        return "PYTEST_CURRENT_TEST" in os.environ

    def zero(self) -> None:
        """A call with quantity 0 whose other fields were good: nothing to bill."""
        with self._lock:
            self.zero_quantities += 1

    def refused(self, error: InvalidEvent, quantity: Any = None) -> None:
        """`track()` could not take a call: count it, and raise or report as the mode says.
        A zero quantity is counted and let go in every mode."""
        if error.field == "quantity" and is_zero_quantity(quantity):
            self.zero()
            return
        if self.is_strict():
            raise error
        shape = (error.field, str(getattr(error, "problem", error))[:80])
        with self._lock:
            self.bad_inputs += 1
            first = shape not in self._reported and len(self._reported) < 1024
            if first:
                self._reported.add(shape)
        if first:
            self.report(
                "validation",
                f"track() recorded nothing: {error}. Nothing is billed for such calls; each is "
                "counted in stats()['bad_inputs'] and this one is reported once. "
                "(DOOW_TRACK_STRICT=true, or strict=True, raises it instead, as under pytest.)",
                count=1,
            )
