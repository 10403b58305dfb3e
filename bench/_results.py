"""Machine-readable benchmark records, shared by every script in bench/.

Each script still prints its tables; given `--json PATH` it also writes its records
there, for `bench/run.py` (`./dev bench`) to collect into bench/results/. A record is
one figure: ours, each alternative, the ratio against each (always "how many times
better ours is", whichever way the unit points), the goal where one is set, and whether
what was measured was delivered (the server's totals), so that a fast run that lost
usage can never look good.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Record:
    name: str  # what is measured, e.g. "track() per call"
    unit: str  # e.g. "us/call"
    better: str  # "lower" or "higher"
    ours: float
    ours_label: str  # which of our paths, e.g. "DoowTracker.track"
    alternatives: dict[str, float]  # the first is the one a user would pick
    delivered_ok: bool
    group: str = ""  # a chart or table this figure belongs to
    params: dict[str, Any] = field(default_factory=dict)
    goal: str | None = None  # e.g. ">= 50000"
    compared: bool = True  # False: the alternatives are a baseline (no metering), no ratio
    note: str = ""
    benchmark: str = ""  # filled in by Recorder
    ratios: dict[str, float | None] = field(default_factory=dict)
    ratio: float | None = None  # against the first alternative
    goal_met: bool | None = None

    def finish(self) -> Record:
        self.ratios = {
            alt: _ratio(self.ours, v, self.better) if self.compared else None
            for alt, v in self.alternatives.items()
        }
        self.ratio = next(iter(self.ratios.values()), None)
        self.goal_met = _goal_met(self.goal, self.ours)
        return self


def _ratio(ours: float, alternative: float, better: str) -> float | None:
    if ours <= 0 or alternative <= 0:
        return None
    return alternative / ours if better == "lower" else ours / alternative


def _goal_met(goal: str | None, value: float) -> bool | None:
    if not goal:
        return None
    op, _, number = goal.partition(" ")
    target = float(number)
    return {">=": value >= target, "<=": value <= target, ">": value > target}.get(op)


def options(usage: str) -> tuple[argparse.Namespace, Recorder]:
    """Parse `[positional...] [--quick] [--json PATH]`; returns the args and a Recorder."""
    parser = argparse.ArgumentParser(description=usage)
    parser.add_argument("args", nargs="*", type=int, help="the script's own counts")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke check")
    parser.add_argument("--json", type=Path, help="also write the records here")
    parsed = parser.parse_args()
    return parsed, Recorder(Path(sys.argv[0]).stem, parsed.json, quick=parsed.quick)


class Recorder:
    def __init__(self, benchmark: str, path: Path | None, *, quick: bool = False) -> None:
        self.benchmark = benchmark
        self.path = path
        self.quick = quick
        self.records: list[Record] = []

    def add(self, record: Record) -> Record:
        record.benchmark = self.benchmark
        self.records.append(record.finish())
        return record

    def write(self) -> None:
        if self.path is None:
            return
        payload = {
            "benchmark": self.benchmark,
            "quick": self.quick,
            "records": [asdict(r) for r in self.records],
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, self.path)
