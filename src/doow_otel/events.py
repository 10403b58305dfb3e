"""Usage events: the validated unit of billing, and the attribution policy.

Validation happens once, at construction, with an error that names the field and
the fix. The same rules check events arriving over the wire (`check_wire_event`),
so the client and the local server can never disagree about what is valid.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import threading
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, NoReturn

__all__ = [
    "AttributionPolicy",
    "InvalidEvent",
    "Kind",
    "UsageEvent",
    "check_wire_event",
    "format_time",
]

logger = logging.getLogger("doow_otel")

Kind = Literal["USAGE", "ADJUSTMENT"]
AttributeValue = str | int | float | bool

KINDS: tuple[str, ...] = ("USAGE", "ADJUSTMENT")
MAX_METRIC_LEN = 128
MAX_LICENSE_LEN = 128
MAX_UNIT_LEN = 64
MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_VALUE_LEN = 256
METRIC_RE = re.compile(r"[A-Za-z0-9_.:\-]+")
MAX_INT_QUANTITY = 2**63 - 1
"""The largest integer quantity: OTLP encodes integer data points as int64."""
RESERVED_PREFIXES = ("doow.", "otel.")


class InvalidEvent(ValueError):
    """A usage event that Doow would not accept; the message names the field and the fix."""

    def __init__(self, field_name: str, problem: str) -> None:
        self.field = field_name
        self.problem = problem
        super().__init__(f"{field_name}: {problem}")


@functools.lru_cache(maxsize=256)  # the events of one export share their time
def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with millisecond precision (truncated), the form Doow's SDKs send."""
    # isoformat truncates to the millisecond, at half the cost of strftime
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_time(value: str) -> datetime:
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("no timezone")
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # year 1 east of UTC, year 9999 west of it
        raise ValueError("out of range in UTC") from None


# --- field checks: each returns the problem in words, or None when the value is fine ---


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
        return f"{metric!r} may contain only letters, digits and _ . : -"
    return None


def quantity_problem(quantity: object, kind: str) -> str | None:
    if type(quantity) is int and 0 < quantity <= MAX_INT_QUANTITY:
        return None  # the common case, fine for either kind
    if isinstance(quantity, bool) or not isinstance(quantity, (int, float)):
        return f"must be an int or float, got {type(quantity).__name__}"
    if not math.isfinite(quantity):
        return f"must be a finite number, got {quantity!r}"
    if isinstance(quantity, int) and not -MAX_INT_QUANTITY <= quantity <= MAX_INT_QUANTITY:
        return (
            f"{quantity} is outside the integer range -(2**63-1)..2**63-1 that OTLP and Doow "
            "carry; split it into several records"
        )
    if kind == "USAGE" and quantity <= 0:
        return (
            f"must be greater than 0 for USAGE events, got {quantity!r} "
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
        return f"must be 'USAGE' or 'ADJUSTMENT', got {kind!r}"
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
            return f"keys must be non-empty strings, got {key!r}"
        if not_utf8(key):
            return f"a key {NOT_UTF8}"
        if not isinstance(value, (str, int, float, bool)):
            return f"[{key!r}] must be a str, int, float or bool, got {type(value).__name__}"
        if isinstance(value, str) and not_utf8(value):
            return f"[{key!r}] {NOT_UTF8}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"[{key!r}] must be finite, got {value!r}"
        if type(value) is int and not -MAX_INT_QUANTITY - 1 <= value <= MAX_INT_QUANTITY:
            return f"[{key!r}] {value} is past the int64 range OTLP carries; send it as a string"
    return None


def reserved_key_problem(attributes: Mapping[str, object]) -> str | None:
    """Attribution keys that would change what is billed (metric, unit, license, overflow)."""
    for key in attributes:
        if isinstance(key, str) and key.startswith(RESERVED_PREFIXES):
            return (
                f"key {key!r} is reserved (doow.* and otel.* decide what is billed); "
                "pass metric=, unit= and license_id= as arguments, or rename the key"
            )
    return None


def source_problem(source: object) -> str | None:
    if not isinstance(source, str) or not source.strip() or len(source) > 64:
        return "must be a non-empty string of at most 64 characters (default 'sdk')"
    if not_utf8(source):
        return NOT_UTF8
    return None


HINT_KEYS = ("app_name", "license_name", "metric_name")


def hint_problem(hint: object) -> str | None:
    """Doow's SDKs' metric_tuple_hint: {app_name, license_name, metric_name}, each optional."""
    if hint is None:
        return None
    if not isinstance(hint, Mapping) or not all(
        key in HINT_KEYS and isinstance(text, str) and len(text) <= 128 and not not_utf8(text)
        for key, text in hint.items()
    ):
        return (
            "must be a mapping of strings (at most 128 characters) with the keys "
            "app_name, license_name, metric_name"
        )
    return None


_CANONICAL_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def event_id_problem(event_id: object) -> str | None:
    if not isinstance(event_id, str):
        return "must be a UUID string"
    if _CANONICAL_UUID_RE.fullmatch(event_id):
        return None  # the common form, without building a UUID object
    try:
        uuid.UUID(event_id)
    except ValueError:
        return f"{event_id!r} is not a UUID"
    return None


# --- attribution policy ---

_SECRET_KEY_RE = re.compile(
    r"(authori[sz]ation|passw(or)?d|passwd|passphrase|secret|api[_-]?key|apikey|access[_-]?key|"
    r"private[_-]?key|cookie|session|token|credential|bearer|signature)",
    re.IGNORECASE,
)
# The Go exporter (events.go) holds the same patterns; tests/vectors/ keeps them alike.
_SECRET_VALUE_RE = re.compile(
    r"(\bdk_[A-Za-z0-9_\-]{6,}"  # a Doow key
    r"|\b(Bearer|bearer|BEARER)\s+\S+"  # an Authorization header value
    # Basic credentials: base64 of 8+ characters with a digit, + / = or a lower-upper pair
    # ("Basic 2", "basic plan", "Basic Authentication" stay)
    r"|\b[Bb]asic\s+([A-Za-z0-9+/]{6,}([a-z][A-Z]|[0-9+/=])"
    r"|[A-Za-z0-9+/]*([a-z][A-Z]|[0-9+/=])[A-Za-z0-9+/]{6,})"
    r"|://[^\s/?#@:]*:[^\s/?#@]+@"  # a URL with user:password@
    r"|\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"  # a JWT
    r"|\b(AKIA|ASIA)[A-Z0-9]{16}\b"  # an AWS access key id
    r"|\bsk-[A-Za-z0-9_\-]{16,}"  # OpenAI, Anthropic
    r"|\b[rs]k_(live|test)_[A-Za-z0-9]{8,}"  # Stripe
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|\bxox[abposr]-[A-Za-z0-9\-]{8,}"  # Slack
    r"|\bAIza[A-Za-z0-9_\-]{35}"  # Google API key
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----|-----BEGIN [A-Z ]+-----)",
)
# Usage metrics legitimately carry token *counts*: keys like input_tokens, max_tokens or
# llm.token_count.prompt are not secrets; access_token, api_token, session_token are.
_COUNT_KEY_RE = re.compile(
    r"(^|[._])((((input|output|total|prompt|completion|cached|reasoning)_?)?tokens)"
    r"|(input|output|total|prompt|completion|cached|reasoning)_?token"
    r"|token_?counts?(\.(input|output|total|prompt|completion))?)$",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=1024)
def _key_names_secret(key: str) -> bool:
    """Attribution keys repeat from event to event: decide each once."""
    return bool(_SECRET_KEY_RE.search(key)) and not _COUNT_KEY_RE.search(key)


_CLEAN_VALUES: set[str] = set()
"""Attribution values already found not to look like credentials: values repeat from event
to event (a function name, an environment), and the patterns cost about 1 us per value
(16 us at 200 characters). Bounded; a value that looks like a credential is never kept."""
MAX_CLEAN_VALUES = 4096


def _value_looks_secret(value: str) -> bool:
    if type(value) is not str:  # a subclass may compare as it likes: always searched
        return bool(_SECRET_VALUE_RE.search(value))
    if value in _CLEAN_VALUES:
        return False
    if _SECRET_VALUE_RE.search(value):
        return True
    if len(_CLEAN_VALUES) >= MAX_CLEAN_VALUES:
        _CLEAN_VALUES.clear()
    _CLEAN_VALUES.add(value)
    return False


class AttributionPolicy:
    """Strips attribution that looks like a secret or payload, counts it, logs each reason once.

    Doow's guide: never send request payloads, customer content, secrets or raw logs.
    The event is kept; only the offending attribute goes.
    """

    def __init__(
        self,
        max_keys: int = MAX_ATTRIBUTES,
        max_value_len: int = MAX_ATTRIBUTE_VALUE_LEN,
        max_reported: int = 1024,
    ) -> None:
        self.max_keys = max_keys
        self.max_value_len = max_value_len
        self.stripped: Counter[str] = Counter()
        self.max_reported = max_reported
        self._reported: set[tuple[str, str]] = set()  # the first keys stripped, bounded
        self._logged: set[str] = set()  # reasons already logged
        self._lock = threading.Lock()

    def why_stripped(self, key: str, value: AttributeValue) -> str | None:
        if _key_names_secret(key):
            return "key names a secret"
        if isinstance(value, str):
            if len(value) > self.max_value_len:
                return f"value longer than {self.max_value_len} characters (payload or log?)"
            if _value_looks_secret(value):
                return "value looks like a credential"
        return None

    def clean(self, attributes: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
        if not attributes:
            return {}
        cleaned: dict[str, AttributeValue] = {}
        for key, value in attributes.items():
            reason = self.why_stripped(key, value)
            if reason is None and len(cleaned) >= self.max_keys:
                reason = f"more than {self.max_keys} attribution keys"
            if reason is None:
                cleaned[key] = value
            else:
                self._record(key, reason)
        return cleaned

    def _record(self, key: str, reason: str) -> None:
        with self._lock:
            self.stripped[reason] += 1
            if len(self._reported) < self.max_reported:
                self._reported.add((key, reason))
            first = reason not in self._logged
            self._logged.add(reason)
        if first:
            # One line per reason, however many keys follow (10,000 bad keys are one line,
            # not 10,000); `stripped` counts them all. The value is never logged: it is the
            # very thing that must not leak.
            logger.warning(
                "doow: attribution %r stripped: %s (further keys stripped for this reason "
                "are counted, not logged)",
                key,
                reason,
            )


DEFAULT_POLICY = AttributionPolicy()


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _new_id() -> str:
    """A random (version 4) UUID string; `str(uuid.uuid4())` at a third of the cost."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


class _Empty(dict[str, Any]):
    """The attribution or metadata of a converted event that has none: one shared, read-only
    value (an event's mappings are never changed), so that the conversion makes one object
    per data point, not three."""

    __slots__ = ()

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("a usage event's attribution and metadata are read-only")

    __setitem__ = __delitem__ = __ior__ = _read_only
    update = setdefault = pop = popitem = clear = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (_empty, ())  # unpickled as the shared one


def _empty() -> _Empty:
    return NO_VALUES


NO_VALUES = _Empty()


_CHECKED = (
    "kind",
    "metric",
    "quantity",
    "license_id",
    "unit",
    "attribution",
    "metadata",
    "event_id",
    "source_system",
    "metric_tuple_hint",
)


@dataclass(frozen=True)
class UsageEvent:
    """One usage record for Doow. Invalid input raises `InvalidEvent` naming the field."""

    metric: str
    quantity: int | float
    license_id: str
    unit: str | None = None
    kind: Kind = "USAGE"
    occurred_at: datetime = field(default_factory=_utcnow)
    attribution: Mapping[str, AttributeValue] = field(default_factory=dict)
    metadata: Mapping[str, AttributeValue] = field(default_factory=dict)
    event_id: str = field(default_factory=_new_id)
    source_system: str = "sdk"
    metric_tuple_hint: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        problems = (  # in the order of _CHECKED
            kind_problem(self.kind),
            metric_problem(self.metric),
            quantity_problem(self.quantity, self.kind),
            license_problem(self.license_id),
            unit_problem(self.unit),
            attributes_problem(self.attribution),
            attributes_problem(self.metadata),
            event_id_problem(self.event_id),
            source_problem(self.source_system),
            hint_problem(self.metric_tuple_hint),
        )
        if any(problems):
            name, problem = next((n, p) for n, p in zip(_CHECKED, problems, strict=True) if p)
            raise InvalidEvent(name, problem)
        occurred_at: object = self.occurred_at
        if isinstance(occurred_at, str):
            try:
                occurred_at = parse_time(occurred_at)
            except ValueError as exc:
                raise InvalidEvent(
                    "occurred_at",
                    f"{str(occurred_at)[:40]!r} is not ISO 8601 with a timezone, in range ({exc})",
                ) from None
        if not isinstance(occurred_at, datetime):
            raise InvalidEvent("occurred_at", "must be a datetime (timezone-aware) or ISO string")
        if occurred_at.tzinfo is None:
            raise InvalidEvent(
                "occurred_at",
                "is a naive datetime; pass a timezone-aware one, e.g. datetime.now(timezone.utc)",
            )
        try:
            in_utc = occurred_at.astimezone(timezone.utc)
        except OverflowError:
            raise InvalidEvent("occurred_at", f"{occurred_at} is out of range in UTC") from None
        if in_utc is not occurred_at:
            object.__setattr__(self, "occurred_at", in_utc)
        object.__setattr__(self, "attribution", DEFAULT_POLICY.clean(self.attribution))
        object.__setattr__(self, "metadata", DEFAULT_POLICY.clean(self.metadata))

    @classmethod
    def converted(
        cls,
        metric: str,
        quantity: int | float,
        license_id: str,
        unit: str | None,
        occurred_at: datetime,
        attribution: Mapping[str, AttributeValue],
        event_id: str,
    ) -> UsageEvent:
        """A USAGE event made by the conversion rules (one per data point), equal to what the
        constructor makes of the same values, at a third of its cost.

        The fields whose values the rules do not decide on their own (metric, quantity,
        license_id, attribution) get the constructor's checks, in its order, with its
        errors, and the attribution its policy. The rest is the caller's promise:
        `occurred_at` an aware datetime in UTC, `event_id` a canonical UUID, `unit` None or
        at most 64 characters (tests/test_conversion_sdk.py holds every converted event
        equal to the constructor's). No attribution, and the metadata, are the shared
        read-only `NO_VALUES`: the event is one object, which keeps the garbage collector's
        work per export small.
        """
        if problem := metric_problem(metric):
            raise InvalidEvent("metric", problem)
        if problem := quantity_problem(quantity, "USAGE"):
            raise InvalidEvent("quantity", problem)
        if problem := license_problem(license_id):
            raise InvalidEvent("license_id", problem)
        if attribution and (problem := attributes_problem(attribution)):
            raise InvalidEvent("attribution", problem)
        event = object.__new__(cls)
        # Frozen: each field is set once, here, as __init__ sets it (one by one, so that the
        # values stay inline in the object, with no dict of their own). Fields at their
        # default (kind USAGE, source sdk, no hint, no unit) read the class's default, as
        # a dataclass field's default is a class attribute.
        set_field = object.__setattr__
        set_field(event, "metric", metric)
        set_field(event, "quantity", quantity)
        set_field(event, "license_id", license_id)
        if unit is not None:
            set_field(event, "unit", unit)
        set_field(event, "occurred_at", occurred_at)
        set_field(
            event, "attribution", DEFAULT_POLICY.clean(attribution) if attribution else NO_VALUES
        )
        set_field(event, "metadata", NO_VALUES)
        set_field(event, "event_id", event_id)
        return event

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> UsageEvent:
        """Build from a usage record (the seed's field names; docs/conversion.md)."""
        from doow_otel.records import record_event

        return record_event(data, occurred_at=_utcnow())

    def to_wire(self) -> dict[str, Any]:
        """The event as Doow's ingest API takes it (`POST /telemetry/events`)."""
        wire: dict[str, Any] = {
            "event_id": self.event_id,
            "license_id": self.license_id,
            "occurred_at": format_time(self.occurred_at),
            "source_system": self.source_system,
            "kind": self.kind,
            "attribution": dict(self.attribution),
            "metadata": dict(self.metadata),
            "measurements": [{"metric_name": self.metric, "quantity": self.quantity}],
        }
        if self.unit:
            wire["unit"] = self.unit
        if self.metric_tuple_hint:
            hint = dict(self.metric_tuple_hint)
            wire["measurements"][0]["metric_tuple_hint"] = hint
            wire["metric_tuple_hint"] = hint
        return wire


def check_wire_event(event: object) -> str | None:
    """The reason Doow would reject one event of a batch, or None when it is valid."""
    if not isinstance(event, (dict, Mapping)):
        return "event must be a JSON object"
    kind = event.get("kind", "USAGE")
    checks: list[tuple[str, str | None]] = [
        ("kind", kind_problem(kind)),
        ("event_id", event_id_problem(event.get("event_id"))),
        ("license_id", license_problem(event.get("license_id"))),
        ("unit", unit_problem(event.get("unit"))),
        ("attribution", attributes_problem(event.get("attribution") or {})),
    ]
    if not isinstance(event.get("metadata") or {}, (dict, Mapping)):
        checks.append(("metadata", "must be an object"))
    source = event.get("source_system", "sdk")
    if not isinstance(source, str) or not source:
        checks.append(("source_system", "must be a non-empty string"))
    occurred_at = event.get("occurred_at")
    if not isinstance(occurred_at, str):
        checks.append(("occurred_at", "is required, ISO 8601 in UTC"))
    else:
        try:
            parse_time(occurred_at)
        except ValueError:
            checks.append(("occurred_at", f"{occurred_at[:40]!r} is not ISO 8601 with a timezone"))
    for name, problem in checks:
        if problem:
            return f"{name}: {problem}"
    measurements = event.get("measurements")
    if not isinstance(measurements, list) or not measurements:
        return "measurements: at least one measurement is required"
    for i, measurement in enumerate(measurements):
        if not isinstance(measurement, (dict, Mapping)):
            return f"measurements[{i}]: must be an object"
        problem = metric_problem(measurement.get("metric_name"))
        if problem:
            return f"measurements[{i}].metric_name: {problem}"
        problem = quantity_problem(measurement.get("quantity"), str(kind))
        if problem:
            return f"measurements[{i}].quantity: {problem}"
    return None
