"""A Vercel Python function (FastAPI) that meters its usage with doow-otel.

`with_vercel` flushes once the response is sent. On Vercel it hands the flush to
`vercel.functions.wait_until`, so the response is not delayed by it at all.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

from doow_otel import DoowTracker

# DOOW_TRACK_API_KEY and DOOW_TRACK_ENDPOINT come from the project's environment variables.
meter = DoowTracker(attribution={"function": "summarize", "runtime": "vercel"})
api = FastAPI()


class Summarize(BaseModel):
    license_id: str
    text: str


@api.post("/api/summarize")
async def summarize(request: Summarize) -> dict[str, int]:
    words = len(request.text.split())
    meter.track(metric="api_calls", quantity=1, license_id=request.license_id)
    if words:
        meter.track(metric="words", quantity=words, license_id=request.license_id, unit="words")
    return {"words": words}


app = meter.with_vercel(api)  # Vercel serves the module's `app`
