"""Which license bills: the one the application sets in context, not one a caller sends.

OpenTelemetry's propagators take W3C baggage from any caller (the stock Flask, FastAPI,
Django, gRPC, requests... instrumentations extract it from every inbound request), and a
context cannot tell inbound baggage from the application's own. A `doow.license_id`
read from baggage is therefore chosen by whoever sends the request: one header,
`baggage: doow.license_id=lic_victim`, and another customer is billed.

So the license in context is the one the application sets where it knows the customer:
`bill_to(license_id)` (or `set_license()`, the OpenTelemetry idiom) puts it under a context
key that no propagator reads or writes; with `propagate=True` it also goes into baggage
for the application's own downstream services. Baggage selects a license only where
the application says it trusts its callers' baggage: `trust_baggage()` or
`DOOW_TRUST_BAGGAGE=true` (services reachable only from your own, which set it), or per
request, in code that has checked the caller: `with bill_to(baggage_license()):`.

Everything that reads the license reads `license_in_context()`: `DoowTracker.track()` at
the call, and the processors that copy it onto spans (`LicenseFromContext`, in
`doow_otel.otel.traces`) and log
records (`LicenseFromContextLogs`, in `doow_otel.otel.logs`) as they start, since
neither context nor baggage reaches OTLP data. docs/security.md has the trust model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.context import Context

from doow_otel.errors import InvalidEvent
from doow_otel.model.fields import license_problem

__all__ = [
    "LICENSE_KEY",
    "baggage_license",
    "bill_to",
    "ignored_baggage",
    "license_in_context",
    "set_license",
    "trust_baggage",
]

logger = logging.getLogger("doow_otel")

LICENSE_KEY = "doow.license_id"
_BILL_TO = otel_context.create_key("doow.bill_to")
_TRUE = {"1", "true", "yes", "on"}

_trusted: bool | None = None  # None: DOOW_TRUST_BAGGAGE decides, read at the first use
_ignored = 0
_lock = threading.Lock()


def set_license(
    license_id: str, context: Context | None = None, *, propagate: bool = False
) -> Context:
    """A context (the current one unless given) in which usage bills `license_id`.

    The OpenTelemetry idiom, as `baggage.set_baggage`: attach it where a request starts
    (`token = context.attach(set_license(...))`, `context.detach(token)` where it ends).
    `propagate=True` also puts it in baggage, for your own downstream services (which
    must trust your baggage to use it: `trust_baggage()`)."""
    problem = license_problem(license_id)
    if problem:
        raise InvalidEvent("license_id", problem)
    made = otel_context.set_value(_BILL_TO, license_id, context)
    if propagate:
        made = baggage.set_baggage(LICENSE_KEY, license_id, made)
    return made


@contextlib.contextmanager
def bill_to(license_id: str, *, propagate: bool = False) -> Iterator[None]:
    """Usage recorded inside the block bills `license_id` (unless a record names its own):
    `DoowTracker.track()`, and every span and log record started inside it.

        with doow_otel.bill_to(customer.license_id):
            handle(request)
    """
    token = otel_context.attach(set_license(license_id, propagate=propagate))
    try:
        yield
    finally:
        otel_context.detach(token)


def trust_baggage(trusted: bool = True) -> None:
    """Let a `doow.license_id` in baggage select the license, in this process.

    Only where every caller that can reach the process is your own (services behind
    your network boundary that set the license after authenticating their caller): an
    inbound request's baggage is whatever its sender wrote. `DOOW_TRUST_BAGGAGE=true`
    says the same from the environment; this call wins over it."""
    global _trusted
    _trusted = trusted


def baggage_trusted() -> bool:
    global _trusted
    if _trusted is None:
        _trusted = os.environ.get("DOOW_TRUST_BAGGAGE", "").strip().lower() in _TRUE
    return _trusted


def baggage_license(context: Context | None = None) -> str | None:
    """The `doow.license_id` in baggage, whoever put it there: for code that has checked
    the caller and decides to bill it (`with bill_to(baggage_license()):`)."""
    value = baggage.get_baggage(LICENSE_KEY, context)
    return value if isinstance(value, str) and value else None


def license_in_context(context: Context | None = None) -> str | None:
    """The license usage recorded in this context bills: the one set with `bill_to()` /
    `set_license()`; else, where baggage is trusted, the one in baggage; else None."""
    value = otel_context.get_value(_BILL_TO, context)
    if isinstance(value, str) and value:
        return value
    found = baggage_license(context)
    if found is None:
        return None
    if baggage_trusted():
        return found
    _note_ignored()
    return None


def ignored_baggage() -> int:
    """How many times a `doow.license_id` in baggage was ignored (baggage not trusted)."""
    return _ignored


def _note_ignored() -> None:
    global _ignored
    with _lock:
        _ignored += 1
        first = _ignored == 1
    if first:  # the value is the caller's text: never logged
        logger.warning(
            "doow: a doow.license_id in OpenTelemetry baggage was ignored: baggage comes from "
            "whoever calls this service, so it never chooses the license unless you say so. "
            "Set the license where you know the customer (with doow_otel.bill_to(license_id): "
            "...), or, where only your own services can reach this one, trust their baggage "
            "(doow_otel.trust_baggage() or DOOW_TRUST_BAGGAGE=true). Counted, not logged again."
        )
