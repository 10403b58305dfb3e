"""An AWS Lambda function that meters its usage with doow-otel.

The tracker is created once per execution environment, outside the handler (no
network I/O at import); `with_lambda` flushes the invocation's usage, in one request,
before the handler's result goes back to Lambda.
"""

from __future__ import annotations

import json
from typing import Any

from doow_otel import DoowTracker

# DOOW_TRACK_API_KEY and DOOW_TRACK_ENDPOINT come from the function's environment.
meter = DoowTracker(attribution={"function": "summarize", "runtime": "lambda"})


@meter.with_lambda
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    license_id = event["license_id"]
    words = len(str(event.get("text", "")).split())
    meter.track(metric="api_calls", quantity=1, license_id=license_id)
    if words:
        meter.track(metric="words", quantity=words, license_id=license_id, unit="words")
    return {"statusCode": 200, "body": json.dumps({"words": words})}
