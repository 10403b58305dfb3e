"""The neutral view the conversion rules read: attributes as plain Python values, metrics,
spans and log records as small tuples. Adapters make it: `sdk` from the OpenTelemetry
SDK's objects (the exporters), and the testing package's from OTLP protobuf messages
(the local server, the shared vectors); both give the same events with the same ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, NamedTuple, TypeAlias, Union

from doow_otel.model.ids import Pairs

__all__ = [
    "NO_ATTRIBUTES",
    "Attributes",
    "LogView",
    "MetricView",
    "ResourceView",
    "ScopeView",
    "SpanView",
    "Value",
    "mapping",
]

Value: TypeAlias = Union[  # noqa: UP007 - a recursive alias needs the string forward references
    None, bool, int, float, str, bytes, list["Value"], Mapping[str, "Value"]
]
"""An attribute value as OTLP's AnyValue holds it: None (an empty value), bool, int (int64),
float, str, bytes, list (an array) or a mapping (a key-value list)."""
Attributes: TypeAlias = Mapping[str, Value]
NO_ATTRIBUTES: Attributes = {}


def mapping(pairs: list[tuple[str, Value]]) -> Attributes:
    """The attributes of a key-value list (a repeated key kept for ids: `Pairs`)."""
    plain = dict(pairs)
    return plain if len(plain) == len(pairs) else Pairs(pairs)


class SpanView(NamedTuple):
    trace_hex: str
    span_hex: str
    attributes: Attributes
    events: Sequence[tuple[str, Attributes, int]]
    """Each event: name, attributes, time (unix nanos)."""
    end: int


class LogView(NamedTuple):
    event_name: str
    attributes: Attributes
    time: int
    observed_time: int
    trace_hex: str
    span_hex: str
    body: Value
    """None: no body."""


class MetricView(NamedTuple):
    name: str
    unit: str
    kind: Literal["sum", "histogram"] | None
    """A histogram is a histogram or an exponential histogram; None: neither a sum (gauge,
    summary), not usage."""
    monotonic: bool
    delta: bool
    points: Iterable[tuple[Attributes, int, int, int | float | None, int]]
    """Each point: attributes, start and time (unix nanos), value (a sum's value, a
    histogram's sum; None when it has none), a histogram's count (0 for a sum)."""


class ScopeView(NamedTuple):
    name: str
    version: str
    metrics: Iterable[MetricView]


class ResourceView(NamedTuple):
    attributes: Attributes
    scopes: Iterable[ScopeView]
