"""The wire format of `POST /telemetry/events`: batches, their ids, size limits, gzip.

Each event is JSON-encoded once; batches are assembled from those bytes, so
splitting a batch (for size, or after a 413) never re-encodes anything.
A batch's id is derived from its event ids: the same events always travel under
the same `batch_id`, across retries, spool replays and process restarts.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from doow_otel._version import __version__
from doow_otel.model import ids
from doow_otel.model.event import NO_VALUES, UsageEvent
from doow_otel.model.times import format_time

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "Batch",
    "encode_event",
    "make_batches",
    "without_measurement",
]

MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 450 * 1024
GZIP_ABOVE_BYTES = 1024

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_dumps = _encoder.encode
# The same C encoder that `_dumps` builds on each call, built once (events hold no cycles,
# so no markers): an event's bytes at half the cost.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)  # None without the C module
_c_encode = (
    _c_make_encoder(
        None, _encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
    if _c_make_encoder is not None
    else None
)


_quote = json.encoder.encode_basestring  # how the encoders above write a string
_SDK_USAGE = '"source_system":"sdk","kind":"USAGE"'


def encode_event(event: UsageEvent) -> bytes:
    """`json.dumps(event.to_wire())`, compact, byte for byte (Go compares the bytes)."""
    # the common values written as they are, the rest by _object, _number and _quote
    attribution = event.attribution
    metadata = event.metadata
    quantity = event.quantity
    attribution_json = "{}" if attribution is NO_VALUES else _object(attribution)
    metadata_json = "{}" if metadata is NO_VALUES else _object(metadata)
    quantity_json = int.__repr__(quantity) if type(quantity) is int else _number(quantity)
    if (
        attribution_json is None
        or metadata_json is None
        or quantity_json is None
        or event.metric_tuple_hint
        or event.further_measurements
    ):
        return _encode(event.to_wire())
    unit = f',"unit":{_quote(event.unit)}' if event.unit else ""
    source_system, kind = event.source_system, event.kind
    origin = (
        _SDK_USAGE
        if source_system == "sdk" and kind == "USAGE"
        else f'"source_system":{_quote(source_system)},"kind":{_quote(kind)}'
    )
    # format_time writes digits, - : . T and Z only: nothing to escape
    return (
        f'{{"event_id":{_quote(event.event_id)},"license_id":{_quote(event.license_id)},'
        f'"occurred_at":"{format_time(event.occurred_at)}",{origin},'
        f'"attribution":{attribution_json},"metadata":{metadata_json},'
        f'"measurements":[{{"metric_name":{_quote(event.metric)},"quantity":{quantity_json}}}]'
        f"{unit}}}"
    ).encode()


def _encode(data: object) -> bytes:
    if _c_encode is None:
        return _dumps(data).encode()
    return "".join(_c_encode(data, 0)).encode()


def _number(value: object) -> str | None:
    """A number as the JSON encoder writes it; None for what it should write itself."""
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)
    return None


def _object(values: Mapping[str, object]) -> str | None:
    """Attribution or metadata as the JSON encoder writes it (str keys; str, bool, int and
    finite float values); None for anything else, which the encoder writes itself."""
    if not values:
        return "{}" if type(values) is dict or values is NO_VALUES else None
    if type(values) is not dict:
        return None
    parts = []
    for key, value in values.items():
        text: str | None
        if type(value) is str:
            text = _quote(value)
        elif value is True:
            text = "true"
        elif value is False:
            text = "false"
        else:
            text = _number(value)
        if text is None or type(key) is not str:
            return None
        parts.append(f"{_quote(key)}:{text}")
    return "{" + ",".join(parts) + "}"


@dataclass(frozen=True)
class Batch:
    """Events ready to send, with the id that identifies them on every attempt."""

    batch_id: str
    event_ids: tuple[str, ...]
    events: tuple[bytes, ...]

    @classmethod
    def of(cls, event_ids: Sequence[str], events: Sequence[bytes]) -> Batch:
        return cls(ids.batch_id(event_ids), tuple(event_ids), tuple(events))

    def __len__(self) -> int:
        return len(self.events)

    def body(self) -> bytes:
        """The request body: made once, so the spool journals the very bytes that are posted."""
        return self._body

    @functools.cached_property
    def _body(self) -> bytes:
        head = f'{{"batch_id":"{self.batch_id}","sdk_version":"{__version__}","events":['
        return b"".join((head.encode(), b",".join(self.events), b"]}"))

    def halves(self) -> tuple[Batch, Batch]:
        middle = len(self.events) // 2
        return (
            Batch.of(self.event_ids[:middle], self.events[:middle]),
            Batch.of(self.event_ids[middle:], self.events[middle:]),
        )

    @classmethod
    def from_body(cls, body: bytes) -> Batch:
        """Read a batch back (from the spool); raises ValueError when it is not one."""
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("events"), list):
            raise ValueError("not a Doow batch")
        events = data["events"]
        ids = [str(e["event_id"]) for e in events]
        return cls(str(data["batch_id"]), tuple(ids), tuple(_dumps(e).encode() for e in events))


def make_batches(
    events: Iterable[UsageEvent],
    *,
    max_events: int = MAX_BATCH_EVENTS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[Batch]:
    """Group events into batches of at most `max_events` and about `max_bytes` each."""
    batches: list[Batch] = []
    ids: list[str] = []
    encoded: list[bytes] = []
    size = 0
    for event in events:
        data = encode_event(event)
        if encoded and (len(encoded) >= max_events or size + len(data) + 1 > max_bytes):
            batches.append(Batch.of(ids, encoded))
            ids, encoded, size = [], [], 0
        ids.append(event.event_id)
        encoded.append(data)
        size += len(data) + 1
    if encoded:
        batches.append(Batch.of(ids, encoded))
    return batches


def compress(body: bytes) -> tuple[bytes, str | None]:
    """Gzip bodies above 1 KB, as Doow's SDKs do; returns the body and its encoding."""
    if len(body) <= GZIP_ABOVE_BYTES:
        return body, None
    # level 1, as the collector's doow exporter: half level 5's CPU, 10% more bytes
    return gzip.compress(body, compresslevel=1, mtime=0), "gzip"


def without_measurement(event: bytes, metric: str) -> tuple[bytes, str, object] | None:
    """Rule R (docs/conversion.md): the event (its JSON, as sent) without its measurement
    of `metric`, under an id derived from the event's, with that id and the quantity taken
    out; None when the event has no other measurement (or none of `metric`)."""
    data = json.loads(event)
    measurements = data.get("measurements") or []
    kept = [m for m in measurements if m.get("metric_name") != metric]
    if not kept or len(kept) == len(measurements):
        return None
    taken = next(m.get("quantity") for m in measurements if m.get("metric_name") == metric)
    data["measurements"] = kept
    data["event_id"] = ids.name_id(
        ids.NS_REPACKED, ids.encode_str(str(data.get("event_id"))), ids.encode_str(metric)
    )
    return _encode(data), data["event_id"], taken
