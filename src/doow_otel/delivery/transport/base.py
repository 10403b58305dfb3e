"""How `DoowClient` posts a batch: the `Transport` seam.

A transport posts bytes and returns the `Answer` (status, headers, body), or raises
`doow_otel.errors.TransportError` ("timeout" or "connection") when there is no answer.
It judges nothing: what an answer means is `doow_otel.delivery.status`'s business, the
deadline and the retries the client's. One file per implementation: `http`
(`HTTPTransport`, the default, on the standard library). Tests pass their own
(`DoowClient(transport=...)`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple, Protocol

__all__ = ["Answer", "Headers", "Transport"]


class Headers(Mapping[str, str]):
    """An answer's headers; lookups ignore case. Repeated headers are joined with ", "."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in pairs:
            key = name.lower()
            if key in self._items:
                value = f"{self._items[key][1]}, {value}"
            self._items[key] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({[item for item in self._items.values()]!r})"


class Answer(NamedTuple):
    """What the server answered: status, headers (case-insensitive), body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """What `DoowClient` needs from a transport."""

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> Answer:  # pragma: no cover - a protocol
        """POST `body` to `url`; raises `TransportError` when no answer arrives."""
        ...

    def close(self) -> None:  # pragma: no cover - a protocol
        """Close every connection, those of requests in flight included."""
        ...
