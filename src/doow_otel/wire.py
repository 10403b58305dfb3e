"""The wire format of `POST /telemetry/events`: batches, their ids, size limits, gzip.

Each event is JSON-encoded once; batches are assembled from those bytes, so
splitting a batch (for size, or after a 413) never re-encodes anything.
A batch's id is derived from its event ids: the same events always travel under
the same `batch_id`, across retries, spool replays and process restarts.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from doow_otel._version import __version__
from doow_otel.events import UsageEvent

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_EVENTS", "Batch", "encode_event", "make_batches"]

MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 450 * 1024
GZIP_ABOVE_BYTES = 1024
BATCH_NAMESPACE = uuid.UUID("5b1d6f0e-3c52-4c8e-9f0e-6f1c2d7a9b10")

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


def encode_event(event: UsageEvent) -> bytes:
    wire = event.to_wire()
    if _c_encode is None:
        return _dumps(wire).encode()
    return "".join(_c_encode(wire, 0)).encode()


@dataclass(frozen=True)
class Batch:
    """Events ready to send, with the id that identifies them on every attempt."""

    batch_id: str
    event_ids: tuple[str, ...]
    events: tuple[bytes, ...]

    @classmethod
    def of(cls, event_ids: Sequence[str], events: Sequence[bytes]) -> Batch:
        batch_id = str(uuid.uuid5(BATCH_NAMESPACE, ",".join(event_ids)))
        return cls(batch_id, tuple(event_ids), tuple(events))

    def __len__(self) -> int:
        return len(self.events)

    def body(self) -> bytes:
        head = f'{{"batch_id":"{self.batch_id}","sdk_version":"{__version__}","events":['
        return head.encode() + b",".join(self.events) + b"]}"

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
