"""The fields of a usage event: their limits, and one check per field.

Each check returns the problem in words (what is wrong and how to fix it), or None when
the value is fine. `UsageEvent`, usage records, `track()` and the local server all check
with these, so no two places can disagree about what Doow accepts.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Literal

from doow_otel.model.secrets import shown

__all__ = [
    "HINT_KEYS",
    "KINDS",
    "MAX_ATTRIBUTES",
    "MAX_INT_QUANTITY",
    "AttributeValue",
    "Kind",
    "attributes_problem",
    "event_id_problem",
    "hint_problem",
    "kind_problem",
    "license_problem",
    "metric_problem",
    "not_utf8",
    "quantity_problem",
    "reserved_key_problem",
    "source_problem",
    "unit_problem",
]

Kind = Literal["USAGE", "ADJUSTMENT"]
AttributeValue = str | int | float | bool

KINDS: tuple[str, ...] = ("USAGE", "ADJUSTMENT")
MAX_METRIC_LEN = 128
MAX_LICENSE_LEN = 128
MAX_UNIT_LEN = 64
MAX_ATTRIBUTES = 64
METRIC_RE = re.compile(r"[A-Za-z0-9_.:\-]+")
MAX_INT_QUANTITY = 2**63 - 1
"""The largest integer quantity: OTLP encodes integer data points as int64."""
RESERVED_PREFIXES = ("doow.", "otel.")
MAX_SOURCE_LEN = 64
MAX_HINT_LEN = 128
MAX_IDEMPOTENCY_KEY_LEN = 256
HINT_KEYS = ("app_name", "license_name", "metric_name")


def metric_problem(metric: object) -> str | None:
    if not isinstance(metric, str) or not metric:
        return "must be a non-empty string, for example 'api_calls'"
    return _metric_name_problem(metric)


@functools.lru_cache(maxsize=1024)
def _metric_name_problem(metric: str) -> str | None:
    """Metric names repeat from event to event: check each once."""
    if len(metric) > MAX_METRIC_LEN:
        return f"is {len(metric)} characters; at most {MAX_METRIC_LEN} are allowed"
    if not METRIC_RE.fullmatch(metric):
        return f"{shown(metric)} may contain only letters, digits and _ . : -"
    return None


def quantity_problem(quantity: object, kind: str) -> str | None:
    if type(quantity) is int and 0 < quantity <= MAX_INT_QUANTITY:
        return None  # the common case, fine for either kind
    if isinstance(quantity, bool) or not isinstance(quantity, (int, float)):
        return f"must be an int or float, got {type(quantity).__name__}"
    if not math.isfinite(quantity):
        return f"must be a finite number, got {shown(quantity)}"
    if isinstance(quantity, int) and not -MAX_INT_QUANTITY <= quantity <= MAX_INT_QUANTITY:
        return (
            f"{quantity} is outside the integer range -(2**63-1)..2**63-1 that OTLP and Doow "
            "carry; split it into several records"
        )
    if kind == "USAGE" and quantity <= 0:
        return (
            f"must be greater than 0 for USAGE events, got {shown(quantity)} "
            "(use kind='ADJUSTMENT' for corrections)"
        )
    if kind == "ADJUSTMENT" and quantity == 0:
        return "an ADJUSTMENT of 0 changes nothing; send a non-zero quantity"
    return None


def not_utf8(text: str) -> bool:
    """A lone surrogate ("\\ud800") is a str but no JSON body can carry it."""
    if text.isascii():
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


NOT_UTF8 = "holds a lone surrogate (text that is not UTF-8); decode the source text properly"


def license_problem(license_id: object) -> str | None:
    if not isinstance(license_id, str) or not license_id.strip():
        return "must be a non-empty string, for example 'lic_abc123'"
    if len(license_id) > MAX_LICENSE_LEN:
        return f"is {len(license_id)} characters; at most {MAX_LICENSE_LEN} are allowed"
    if not_utf8(license_id):
        return NOT_UTF8
    return None


def kind_problem(kind: object) -> str | None:
    if kind not in KINDS:
        return f"must be 'USAGE' or 'ADJUSTMENT', got {shown(kind)}"
    return None


def unit_problem(unit: object) -> str | None:
    if unit is None:
        return None
    if not isinstance(unit, str) or len(unit) > MAX_UNIT_LEN:
        return f"must be a string of at most {MAX_UNIT_LEN} characters, or None"
    if not_utf8(unit):
        return NOT_UTF8
    return None


def attributes_problem(attributes: object) -> str | None:
    if type(attributes) is dict and not attributes:
        return None
    if not isinstance(attributes, (dict, Mapping)):
        kind = type(attributes).__name__
        return f"must be a mapping of str to str, int, float or bool, got {kind}"
    for key, value in attributes.items():
        if not isinstance(key, str) or not key:
            return f"keys must be non-empty strings, got {shown(key)}"
        if not_utf8(key):
            return f"a key {NOT_UTF8}"
        if not isinstance(value, (str, int, float, bool)):
            return f"[{shown(key)}] must be a str, int, float or bool, got {type(value).__name__}"
        if isinstance(value, str) and not_utf8(value):
            return f"[{shown(key)}] {NOT_UTF8}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"[{shown(key)}] must be finite, got {value!r}"
        if type(value) is int and not -MAX_INT_QUANTITY - 1 <= value <= MAX_INT_QUANTITY:
            return (
                f"[{shown(key)}] {value} is past the int64 range OTLP carries; send it as a string"
            )
    return None


def reserved_key_problem(attributes: Mapping[str, object]) -> str | None:
    """Attribution keys that would change what is billed (metric, unit, license, overflow)."""
    for key in attributes:
        if isinstance(key, str) and key.startswith(RESERVED_PREFIXES):
            return (
                f"key {shown(key)} is reserved (doow.* and otel.* decide what is billed); "
                "pass metric=, unit= and license_id= as arguments, or rename the key"
            )
    return None


def source_problem(source: object) -> str | None:
    if not isinstance(source, str) or not source.strip() or len(source) > MAX_SOURCE_LEN:
        return f"must be a non-empty string of at most {MAX_SOURCE_LEN} characters (default 'sdk')"
    if not_utf8(source):
        return NOT_UTF8
    return None


def hint_problem(hint: object) -> str | None:
    """Doow's SDKs' metric_tuple_hint: {app_name, license_name, metric_name}, each optional."""
    if hint is None:
        return None
    if not isinstance(hint, Mapping) or not all(
        key in HINT_KEYS
        and isinstance(text, str)
        and len(text) <= MAX_HINT_LEN
        and not not_utf8(text)
        for key, text in hint.items()
    ):
        return (
            "must be a mapping of strings (at most 128 characters) with the keys "
            "app_name, license_name, metric_name"
        )
    return None


UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII
)


def event_id_problem(event_id: object) -> str | None:
    if not isinstance(event_id, str) or not UUID_RE.fullmatch(event_id):
        return f"{shown(event_id)} is not a UUID (8-4-4-4-12 hex digits)"
    return None
