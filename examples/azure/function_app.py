"""An Azure Functions app (Python v2 programming model) that meters its usage with doow-otel.

`with_azure_function` goes below the `FunctionApp` decorators, next to the `def`: it
keeps the function's signature (the host binds parameters by name) and flushes the
invocation's usage, in one request, before the function returns.
"""

from __future__ import annotations

import json

import azure.functions as func

from doow_otel import DoowTracker

# DOOW_TRACK_API_KEY and DOOW_TRACK_ENDPOINT come from the app settings (local.settings.json).
meter = DoowTracker(attribution={"function": "summarize", "runtime": "azure"})
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="summarize", methods=["POST"])
@meter.with_azure_function
def summarize(req: func.HttpRequest) -> func.HttpResponse:
    body = req.get_json()
    license_id = body["license_id"]
    words = len(str(body.get("text", "")).split())
    meter.track(metric="api_calls", quantity=1, license_id=license_id)
    if words:
        meter.track(metric="words", quantity=words, license_id=license_id, unit="words")
    return func.HttpResponse(json.dumps({"words": words}), mimetype="application/json")
