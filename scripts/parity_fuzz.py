"""Random OTLP through the Python conversion, for the Go exporter to convert alike.

    python scripts/parity_fuzz.py DIR [--seed N] [--cases N]

Writes DIR/NNNN.json: a vector (signal, options, otlp) with what Python made of it,
byte for byte (each event as `wire.encode_event` writes it), the drops by reason, and
the batch ids of the events taken three at a time. `go test -run TestParity` in
exporter/doowexporter (with DOOW_PARITY_DIR=DIR) converts the same OTLP and compares.
The vectors in tests/vectors/ pin the rules; this searches the corners between them:
Unicode in keys and values, credentials, escapes, odd floats, every value type.
The same seed always writes the same cases.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import random
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from doow_otel.delivery.wire import encode_event, make_batches
from doow_otel_testing import otlp_json
from doow_otel_testing.otlp_views import (
    conversion_options,
    convert_logs_request,
    convert_metrics_request,
    convert_traces_request,
)

STRINGS = [
    "", "a", "lic_1", "lic_é", "checkout", "unknown_service:python", "dk_abcdefgh",
    "xdk_abcdefg", "édk_abcdefg", "٣dk_abcdefg", "Bearer\u00a0abc", "Bearer\x0babc",
    "Bearer abc", "Bearer\x1dabc", "Bearer\u3000abc", "Bearer\u200babc", "_dk_abcdefg",
    "AKIA0123456789ABCDEF_", "AKIA0123456789ABCDEF\u0663", "ǅdk_abcdefg",
    "eyJabcdef.ghijkl.mn", "AKIA0123456789ABCDEF", "AKIA0123456789ABCDEFé",
    "-----BEGIN CERTIFICATE-----", "a<b>&\u2028\x7f", 'q"uo\\te\n\t\x01\b\f', "é" * 256,
    "é" * 257, "x" * 257, "  ", "tokens", "api_calls", "bad name", "m" * 129, "ms",
    "u" * 65, "ü" * 64, "ü" * 65, "bearer xyz", "BEARER\u2003x", "the bearer", "Basic dXNlcjpwYXNz",
    "basic plan", "Basic Auth", "Basic\u00a0dTpw", "https://u:p@h", "redis://:pw@h/0", "x://a@b",
    "http://h:80/a@b", "sk-abcdefghijklmnop", "sk-abcdefghijklmno", "ask-abcdefghijklmnop",
    "sk_live_abcd1234", "rk_test_abcd123", "ghp_abcdefghij0123456789",
    "github_pat_abcdefghij0123456789", "ghx_abcdefghij0123456789", "xoxb-12345678", "xoxz-12345678",
    "AIza" + "b" * 35, "éAKIA0123456789ABCDEF", "Basic 5GB", "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
    "Basic abcdefG", "Basic 1abcdef",
]  # fmt: skip
KEYS = [
    "service.name", "deployment.environment", "faas.name", "cloud.region", "host.name",
    "doow.license_id", "license_id", "doow.metric", "doow.unit", "doow.quantity",
    "event.name", "otel.metric.overflow", "api_key", "sessıon", "sessİon", "ſecret",
    "toKen", "input_tokens", "x.tokens\n", "tokens\n\n", "", "k1", "é", "Z", "a.b", "user",
    "gen_ai.request.model", "gen_ai.system", "gen_ai.provider.name",
    "gen_ai.response.finish_reasons", "gen_ai.usage.input_tokens", "access_token",
    "Refresh-Token", "api_token", "session_token", "auth_token", "max_tokens", "output_token",
    "llm.token_count.prompt", "reasonıng_tokens", "tokencount", "x.token_counts.total",
    "passphrase", "cached_token\n", "id_token", "doow.kind", "doow.metadata.k", "doow.metadata.",
    "doow.source_system", "doow.metric_tuple_hint.app_name", "doow.idempotency_key",
]  # fmt: skip
DOUBLES: list[float | str] = [
    0.0, -0.0, 0.1, 1e-5, 1.5e-7, 1e15, 1e16, 1e22, 123456789.125, 5e-324,
    1.7976931348623157e308, "NaN", "Infinity", "-Infinity",
]  # fmt: skip
CONVERT: dict[str, Any] = {
    "metrics": (convert_metrics_request, ExportMetricsServiceRequest),
    "traces": (convert_traces_request, ExportTraceServiceRequest),
    "logs": (convert_logs_request, ExportLogsServiceRequest),
}


def otlp_value(value: Any) -> dict[str, Any]:
    """A JSON value as OTLP/JSON's AnyValue (ints past int64 as doubles, as an SDK would)."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return {"intValue": str(value)}
        return {"doubleValue": float(value)}
    if isinstance(value, float):
        return {
            "doubleValue": value if value == value and abs(value) != float("inf") else "Infinity"
        }
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, dict):
        return otlp_map(value)
    if isinstance(value, list):
        return {"arrayValue": {"values": [otlp_value(v) for v in value]}}
    return {}


def otlp_map(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "kvlistValue": {"values": [{"key": k, "value": otlp_value(v)} for k, v in record.items()]}
    }


class Cases:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def string(self) -> str:
        if self.r.random() < 0.8:
            return self.r.choice(STRINGS)
        chars = [chr(self.r.choice([self.r.randint(32, 126), self.r.randint(0xA0, 0x10FFFF)]))]
        chars += [chr(self.r.randint(32, 0x2FFF)) for _ in range(self.r.randint(0, 5))]
        return "".join(c for c in chars if not 0xD800 <= ord(c) <= 0xDFFF)

    def double(self) -> float | str:
        if self.r.random() < 0.4:
            return self.r.choice(DOUBLES)
        return self.r.uniform(-10, 1e6) * 10.0 ** self.r.randint(-8, 8)

    def value(self, depth: int = 0) -> dict[str, Any]:
        c = self.r.random()
        if c < 0.4:
            return {"stringValue": self.string()}
        if c < 0.5:
            return {"boolValue": self.r.random() < 0.5}
        if c < 0.65:
            n = self.r.choice([0, 1, -1, 7, 2**63 - 1, -(2**63), self.r.randint(-1000, 10**12)])
            return {"intValue": str(n)}
        if c < 0.78:
            return {"doubleValue": self.double()}
        if c < 0.88 and depth < 2:
            items = [self.value(depth + 1) for _ in range(self.r.randint(0, 3))]
            return {"arrayValue": {"values": items}}
        if c < 0.92 and depth < 2:
            return {"kvlistValue": {"values": self.attributes(depth + 1, 2)}}
        if c < 0.96:
            raw = bytes(self.r.randint(0, 255) for _ in range(self.r.randint(0, 4)))
            return {"bytesValue": base64.b64encode(raw).decode()}
        return {}

    def attributes(
        self, depth: int = 0, most: int = 6, given: list[tuple[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Unique keys, as OTLP requires: the given ones win."""
        pairs = dict(given or [])
        for _ in range(self.r.randint(0, most)):
            key = self.r.choice(KEYS) if self.r.random() < 0.8 else self.string()
            pairs.setdefault(key, self.value(depth))
        out = [{"key": k, "value": v} for k, v in pairs.items()]
        self.r.shuffle(out)
        return out

    def license(self) -> tuple[str, Any]:
        odd = self.r.choice(["lic_a", "", "l" * 129, " \x1f", "lic_é"])
        return self.r.choice(
            [
                ("doow.license_id", {"stringValue": odd}),
                ("license_id", {"stringValue": "lic_plain"}),
                ("doow.license_id", {"intValue": "5"}),
            ]
        )

    def maybe_license(self, chance: float) -> list[tuple[str, Any]]:
        return [self.license()] if self.r.random() < chance else []

    def time(self) -> str:
        choices = [0, 1, 1795515300123456789, 1795515300999999999, self.r.randint(1, 2**63)]
        return str(self.r.choice(choices))

    def hex_id(self, length: int) -> str:
        # No all-zero ids: Go's pdata cannot tell them from absent ones (which encode as
        # ""), while Python hex-encodes the zero bytes; docs/conversion.md is silent.
        digits = "".join(self.r.choice("0123456789abcdef") for _ in range(length))
        return self.r.choice(["", digits])

    def resource(self) -> dict[str, Any]:
        given = self.maybe_license(0.3)
        if self.r.random() < 0.7:
            names = ["checkout", "unknown_service:py", "unknown_service", "x"]
            given.append(("service.name", {"stringValue": self.r.choice(names)}))
        return {"attributes": self.attributes(0, 4, given)}

    def number_point(self) -> dict[str, Any]:
        given = self.maybe_license(0.7)
        if self.r.random() < 0.05:
            given.append(("otel.metric.overflow", {"boolValue": True}))
        point: dict[str, Any] = {
            "attributes": self.attributes(0, 8, given),
            "startTimeUnixNano": self.time(),
            "timeUnixNano": self.time(),
        }
        c = self.r.random()
        if c < 0.45:
            point["asInt"] = str(self.r.choice([0, 1, 5, -3, self.r.randint(1, 10**15)]))
        elif c < 0.95:
            point["asDouble"] = self.double()
        return point

    def histogram_point(self) -> dict[str, Any]:
        point: dict[str, Any] = {
            "attributes": self.attributes(0, 6, self.maybe_license(0.7)),
            "startTimeUnixNano": self.time(),
            "timeUnixNano": self.time(),
            "count": str(self.r.choice([0, 1, 17])),
        }
        if self.r.random() < 0.8:
            point["sum"] = self.double()
        return point

    def metric(self) -> dict[str, Any]:
        names = ["api_calls", "tokens", "seats", "bad name", "m" * 129, "http.server.duration", ""]
        metric: dict[str, Any] = {
            "name": self.r.choice(names),
            "unit": self.r.choice(["", "1", "ms", "u" * 65, "ü" * 64]),
        }
        kind = self.r.choice(["sum", "sum", "sum", "histogram", "exponentialHistogram", "gauge"])
        temporality = self.r.choice([1, 1, 1, 2, 0])
        if kind == "sum":
            metric["sum"] = {
                "dataPoints": [self.number_point() for _ in range(self.r.randint(0, 4))],
                "aggregationTemporality": temporality,
                "isMonotonic": self.r.random() < 0.85,
            }
        elif kind == "gauge":
            metric["gauge"] = {"dataPoints": [self.number_point() for _ in range(2)]}
        else:
            metric[kind] = {
                "dataPoints": [self.histogram_point() for _ in range(self.r.randint(0, 3))],
                "aggregationTemporality": temporality,
            }
        return metric

    def usage_attributes(self) -> list[dict[str, Any]]:
        given = self.maybe_license(0.5)
        if self.r.random() < 0.9:
            name = self.r.choice(["api_calls", "bad name", "", "pages"])
            given.append(("doow.metric", self.r.choice([{"stringValue": name}, {"intValue": "3"}])))
        if self.r.random() < 0.9:
            quantities = [
                {"intValue": str(self.r.choice([0, 1, 5, -2]))},
                {"doubleValue": self.double()},
                {"stringValue": "5"},
            ]
            given.append(("doow.quantity", self.r.choice(quantities)))
        if self.r.random() < 0.4:
            given.append(("doow.unit", {"stringValue": self.r.choice(["ms", "u" * 65, ""])}))
        return self.attributes(0, 6, given)

    def span(self) -> dict[str, Any]:
        given = self.maybe_license(0.4)
        if self.r.random() < 0.5:
            for side in ("input_tokens", "output_tokens"):
                if self.r.random() < 0.7:
                    count = {"intValue": str(self.r.choice([0, 10, 250]))}
                    given.append((f"gen_ai.usage.{side}", count))
            for key in ("gen_ai.request.model", "gen_ai.system", "gen_ai.provider.name"):
                if self.r.random() < 0.6:
                    given.append((key, {"stringValue": self.string()}))
            if self.r.random() < 0.5:
                reasons = {"values": [{"stringValue": "stop"}, {"stringValue": "length"}]}
                given.append(("gen_ai.response.finish_reasons", {"arrayValue": reasons}))
        events = [
            {
                "name": self.r.choice(["doow.usage", "doow.usage", "exception"]),
                "timeUnixNano": self.time(),
                "attributes": self.usage_attributes(),
            }
            for _ in range(self.r.randint(0, 3))
        ]
        return {
            "traceId": self.hex_id(32),
            "spanId": self.hex_id(16),
            "name": "s",
            "startTimeUnixNano": self.time(),
            "endTimeUnixNano": self.time(),
            "attributes": self.attributes(0, 5, given),
            "events": events,
        }

    def log_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "timeUnixNano": self.time(),
            "observedTimeUnixNano": self.time(),
            "attributes": self.usage_attributes(),
            "traceId": self.hex_id(32),
            "spanId": self.hex_id(16),
        }
        if self.r.random() < 0.4:  # a usage record in the body (docs: "Usage records")
            record["attributes"] = [a for a in record["attributes"] if a["key"] != "doow.metric"]
            record["body"] = self.record_body()
            if self.r.random() < 0.5:
                record["attributes"] += [
                    {"key": "log.file.path", "value": {"stringValue": self.r.choice(["/f", "é"])}},
                    {
                        "key": "log.file.record_offset",
                        "value": {"intValue": str(self.r.randint(0, 9))},
                    },
                ]
            # the doowfilelog receiver's file id (with or without an offset)
            if self.r.random() < 0.3:
                file_id = self.r.choice(["1:2:3:0", "1:2:3:1", "", "é"])
                record["attributes"].append(
                    {"key": "doow.file.id", "value": {"stringValue": file_id}}
                )
        c = self.r.random()
        if c < 0.5:
            record["eventName"] = self.r.choice(["doow.usage", "other"])
        elif c < 0.8:
            named = [a for a in record["attributes"] if a["key"] != "event.name"]
            record["attributes"] = [
                *named,
                {"key": "event.name", "value": {"stringValue": "doow.usage"}},
            ]
        return record

    def record_field(self, name: str) -> Any:
        r = self.r
        pick = r.random()
        if name == "metric" and pick < 0.8:
            return r.choice(["api_calls", "Tokens", "a:b.c-d"])
        if name == "license_id" and pick < 0.8:
            return r.choice(["lic_1", "lic_é", " lic "])
        if name == "quantity" and pick < 0.5:
            return r.choice([1, 2.5, 1e16, 0.1, 5e-324, 7])
        if name == "quantity" and pick < 0.8:
            return r.choice(
                [
                    1,
                    2.5,
                    -3,
                    0,
                    -0.0,
                    9223372036854775807,
                    -9223372036854775807,
                    -9223372036854775808,
                    9223372036854775808,
                    1e400,
                    True,
                    "3",
                ]
            )
        if name == "kind" and pick < 0.7:
            return r.choice(["USAGE", "ADJUSTMENT", "usage", "", None])
        if name in ("timestamp", "occurred_at") and pick < 0.4:
            return "2026-11-24T10:15:00.5-03:30"
        if name in ("timestamp", "occurred_at") and pick < 0.8:
            return r.choice(
                [
                    "2026-11-24T10:15:00Z",
                    "2026-11-24T10:15:00.123456789+05:30",
                    "2026-02-30T10:00:00Z",
                    "2026-11-24T24:00:00Z",
                    "2026-11-24T10:15:00+24:00",
                    "2026-11-24T10:15:00+23:99",
                    "1999-12-31T23:59:59.999Z",
                    "2100-01-01T00:00:00Z",
                    "2099-12-31T23:59:59.9999999Z",
                    "2026-11-24T10:15:00",
                    "2026-11-24 10:15:00Z",
                    "0000-01-01T00:00:00Z",
                    "2000-01-01T00:30:00+01:00",
                    1795515300,
                ]
            )
        if name in ("attribution", "metadata") and pick < 0.8:
            return {
                r.choice(KEYS): r.choice(
                    [
                        r.choice(STRINGS),
                        1,
                        2.5,
                        True,
                        None,
                        {"a": 1},
                        [1],
                        9223372036854775808,
                        -9223372036854775808,
                        1e400,
                    ]
                )
                for _ in range(r.randint(0, 4))
            }
        if name == "metric_tuple_hint" and pick < 0.7:
            return {
                r.choice(["app_name", "license_name", "metric_name", "x"]): r.choice(STRINGS)
                for _ in range(r.randint(0, 3))
            }
        if name == "event_id" and pick < 0.7:
            return r.choice(
                [
                    "5B1D6F0E-3C52-4C8E-9F0E-6F1C2D7A9B10",
                    "not-a-uuid",
                    "5b1d6f0e3c524c8e9f0e6f1c2d7a9b10",
                ]
            )
        if name == "source_system" and pick < 0.5:
            return r.choice(["", "  ", "\x1c", "batch", "s" * 65, "é" * 64, 3])
        return r.choice([r.choice(STRINGS), None, 1, [1]])

    def record_body(self) -> dict[str, Any]:
        names = ["metric", "quantity", "license_id", "unit", "kind", "timestamp", "occurred_at",
                 "attribution", "metadata", "source_system", "metric_tuple_hint", "event_id",
                 "idempotency_key"]  # fmt: skip
        record = {
            name: self.record_field(name)
            for name in names
            if self.r.random() < (0.95 if name in ("metric", "quantity", "license_id") else 0.3)
        }
        if self.r.random() < 0.05:
            record["unknown"] = 1
        c = self.r.random()
        if c < 0.1:
            return {"stringValue": self.r.choice(["not json", "[1]", "{} x", '{"a": NaN}', ""])}
        if c < 0.7:
            return {"stringValue": json.dumps(record, ensure_ascii=self.r.random() < 0.5)}
        return otlp_map(record)

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.r.random() < 0.5:
            options["default_license_id"] = self.r.choice(["lic_default", "l" * 129])
        if self.r.random() < 0.3:
            options["usage_metrics"] = ["seats", "http.server.duration"]
        if self.r.random() < 0.2:
            options["resource_attributes"] = ["host.name", "service.name", "é"]
        if self.r.random() < 0.2:
            options["histogram_quantity"] = "count"
        if self.r.random() < 0.3:
            options["genai_without_license"] = True
        return options

    def request(self, signal: str) -> dict[str, Any]:
        n = self.r.randint
        if signal == "metrics":
            scopes = [
                {
                    "scope": {"name": self.r.choice(["app", "doow_otel", ""]), "version": "1.0"},
                    "metrics": [self.metric() for _ in range(n(1, 4))],
                }
                for _ in range(n(1, 2))
            ]
            return {"resourceMetrics": [{"resource": self.resource(), "scopeMetrics": scopes}]}
        if signal == "traces":
            scope = {"scope": {"name": "s"}, "spans": [self.span() for _ in range(n(1, 3))]}
            return {"resourceSpans": [{"resource": self.resource(), "scopeSpans": [scope]}]}
        records = [self.log_record() for _ in range(n(1, 4))]
        scope = {"scope": {"name": self.r.choice(["", "app"])}, "logRecords": records}
        return {"resourceLogs": [{"resource": self.resource(), "scopeLogs": [scope]}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", type=int, default=1000)
    args = parser.parse_args()
    # the policy's warnings about stripped attribution are expected here by the hundred
    logging.getLogger("doow_otel").addHandler(logging.NullHandler())
    args.directory.mkdir(parents=True, exist_ok=True)
    cases = Cases(args.seed)
    for i in range(args.cases):
        signal = cases.r.choice(list(CONVERT))
        otlp, options = cases.request(signal), cases.options()
        convert, message_type = CONVERT[signal]
        result = convert(otlp_json.parse(otlp, message_type()), conversion_options(options))
        case = {
            "signal": signal,
            "options": options,
            "otlp": otlp,
            "wire": [encode_event(e).decode() for e in result.events],
            "dropped": dict(result.dropped),
            "batch_ids_of_3": [b.batch_id for b in make_batches(result.events, max_events=3)],
        }
        path = args.directory / f"{i:04d}.json"
        path.write_text(json.dumps(case, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
