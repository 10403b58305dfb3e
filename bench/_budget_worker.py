"""One process of a long-running service in bench_budget.py: tracks usage at a fixed
rate from a given wall-clock moment for a given time, writes what it tracked, then stays
up (its SDK still sending what it holds) until it is stopped (SIGTERM).

    python _budget_worker.py ours|doow-track --start T --seconds S --rate R
                             --licenses N --seed I --out PATH

Each request of the service bills one license picked at random (seeded): `api_calls` 1
and `tokens` 1 to 500, two `track()` calls. `ours` is `DoowTracker()` as a user makes it
(configured by the environment: DOOW_TRACK_API_KEY, DOOW_TRACK_ENDPOINT, DOOW_SPOOL_DIR,
DOOW_ROUTE, OTEL_EXPORTER_OTLP_ENDPOINT); `doow-track` is Doow's Python SDK with its
defaults, pointed at the same server.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

Track = Callable[[str, int, str], None]


def ours() -> Track:
    from doow_otel import DoowTracker

    meter = DoowTracker()

    def track(metric: str, quantity: int, license_id: str) -> None:
        meter.track(metric=metric, quantity=quantity, license_id=license_id)

    return track


def doow_track() -> Track:
    from doow_track import Tracker, TrackerOptions, TrackEvent

    tracker = Tracker(os.environ["DOOW_TRACK_API_KEY"], TrackerOptions())  # endpoint: env

    def track(metric: str, quantity: int, license_id: str) -> None:
        tracker.track(TrackEvent(metric=metric, quantity=quantity, license_id=license_id))

    return track


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sdk", choices=["ours", "doow-track"])
    parser.add_argument("--start", type=float, required=True, help="Unix time the load starts")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--rate", type=float, required=True, help="track() calls a second")
    parser.add_argument("--licenses", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    track = ours() if args.sdk == "ours" else doow_track()
    rng = random.Random(args.seed)
    tracked: dict[str, int] = defaultdict(int)  # "metric license" -> quantity
    calls = 0
    interval = 2 / args.rate  # a request tracks two metrics
    next_at = args.start
    end = args.start + args.seconds
    time.sleep(max(0.0, next_at - time.time()))
    while next_at < end:
        license_id = f"lic_{rng.randrange(args.licenses)}"
        for metric, quantity in (("api_calls", 1), ("tokens", 1 + rng.randrange(500))):
            track(metric, quantity, license_id)
            tracked[f"{metric} {license_id}"] += quantity
            calls += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.time()))
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"tracked": tracked, "calls": calls}))
    os.replace(tmp, args.out)
    threading.Event().wait()  # up until SIGTERM: the SDK sends what it holds meanwhile


if __name__ == "__main__":
    main()
