"""OTLP/JSON to protobuf messages.

OTLP/JSON differs from the generic protobuf JSON mapping in one way that matters:
trace and span ids are hex, not base64. `google.protobuf.json_format` alone would
misread them, so ids are re-encoded before parsing.
"""

from __future__ import annotations

import base64
import json
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

__all__ = ["parse"]

M = TypeVar("M", bound=Message)
_HEX_ID_KEYS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}


def _hex_ids_to_base64(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _HEX_ID_KEYS and isinstance(value, str):
                try:
                    value = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise ValueError(f"{key}: {value[:40]!r} is not a hex id") from None
            out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def parse(data: bytes | str | dict[str, Any], message: M) -> M:
    """Fill `message` from OTLP/JSON; raises ValueError with the reason when malformed."""
    tree = json.loads(data) if isinstance(data, (bytes, str)) else data
    if not isinstance(tree, dict):
        raise ValueError("OTLP/JSON body must be a JSON object")
    try:
        json_format.ParseDict(_hex_ids_to_base64(tree), message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ValueError(str(exc)) from None
    return message
