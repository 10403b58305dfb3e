"""The local server's log of ingest requests, bounded in entries and in bytes.

Entries are filled in as a request goes on (its events, then its status), so each update
re-counts the entry's size. When the log is over either bound the oldest entries go; how
many went is kept in `evicted`. Sizes are an estimate of the memory held (strings and
lists), cheap enough to compute on every request.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

MAX_ENTRIES = 10_000
MAX_BYTES = 16 << 20
_ENTRY_OVERHEAD = 400  # the dict and its small fields
_STR_OVERHEAD = 50
_POINTER = 8


class LogEntry:
    """One request's fields; `live` turns False when the log lets it go."""

    __slots__ = ("fields", "size", "live")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.size = 0
        self.live = True


def _size(fields: dict[str, Any]) -> int:
    size = _ENTRY_OVERHEAD
    for value in fields.values():
        if isinstance(value, str):
            size += _STR_OVERHEAD + len(value)
        elif isinstance(value, list):
            size += _STR_OVERHEAD + _POINTER * len(value)
            size += sum(_STR_OVERHEAD + len(v) for v in value if isinstance(v, str))
    return size


class RequestLog:
    def __init__(self, *, max_bytes: int = MAX_BYTES, max_entries: int = MAX_ENTRIES) -> None:
        if max_bytes <= 0 or max_entries <= 0:
            raise ValueError("request log: max_bytes and max_entries must be positive")
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.evicted = 0
        self._bytes = 0
        self._entries: deque[LogEntry] = deque()
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        """The estimated memory the retained entries hold."""
        with self._lock:
            return self._bytes

    def add(self, fields: dict[str, Any]) -> LogEntry:
        entry = LogEntry(fields)
        with self._lock:
            self._entries.append(entry)
            self._resize(entry)
        return entry

    def update(self, entry: LogEntry, **fields: Any) -> None:
        with self._lock:
            entry.fields.update(fields)
            if entry.live:
                self._resize(entry)

    def snapshot(self, *, include_in_flight: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(e.fields)
                for e in self._entries
                if include_in_flight or e.fields["status"] is not None
            ]

    def _resize(self, entry: LogEntry) -> None:
        size = _size(entry.fields)
        self._bytes += size - entry.size
        entry.size = size
        while self._entries and (
            self._bytes > self.max_bytes or len(self._entries) > self.max_entries
        ):
            old = self._entries.popleft()
            old.live = False
            self._bytes -= old.size
            self.evicted += 1
