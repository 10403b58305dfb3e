"""The shared packing vectors (tests/vectors/packing/, rule P of docs/conversion.md), run
by the Go exporter too: the events of one conversion in, the packed events out, ids
included, compared as parsed JSON (numbers by value).

Python: `doow_otel.model.packing.pack(events: list[tuple[UsageEvent, bool]])`, each event
with whether it is packable."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

VECTORS = sorted((Path(__file__).resolve().parents[1] / "vectors" / "packing").glob("*.json"))


def exact(value: Any) -> Any:
    """Parsed JSON with numbers as exact values: 2 and 2.0 alike, as the Go runner."""
    if isinstance(value, dict):
        return {key: exact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [exact(item) for item in value]
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return value
    return ("number", Fraction(Decimal(str(value))))


def parsed(data: bytes | str) -> Any:
    return exact(json.loads(data, parse_float=Decimal, parse_int=Decimal))


def wire_event(data: dict[str, Any]) -> Any:
    from doow_otel.model.event import UsageEvent

    (measurement,) = data["measurements"]
    return UsageEvent(
        metric=measurement["metric_name"],
        quantity=measurement["quantity"],
        license_id=data["license_id"],
        unit=data.get("unit"),
        kind=data["kind"],
        occurred_at=data["occurred_at"],
        attribution=data["attribution"],
        metadata=data["metadata"],
        event_id=data["event_id"],
        source_system=data["source_system"],
    )


def test_there_are_vectors() -> None:
    assert len(VECTORS) >= 8


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_packing_vector(path: Path) -> None:
    from doow_otel.delivery.wire import encode_event
    from doow_otel.model.packing import pack

    vector = json.loads(path.read_text())
    events = [(wire_event(item["event"]), item["packable"]) for item in vector["input"]]
    got = [parsed(encode_event(event)) for event in pack(events)]
    want = [parsed(json.dumps(event)) for event in vector["expected"]]
    assert got == want, vector["description"]
