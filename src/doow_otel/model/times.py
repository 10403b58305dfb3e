"""Times on the wire: written as Doow's SDKs write them, read by one rule everywhere.

`format_time` writes ISO 8601 in UTC with milliseconds ("2026-11-24T10:15:00.123Z").
`parse_time` reads RFC 3339 with a timezone, between 2000 and 2100: a record's
`timestamp`, an event's `occurred_at` (in `UsageEvent` and at the local server alike),
so that what one place refuses no other place takes.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta, timezone

from doow_otel.model.secrets import shown

__all__ = ["EARLIEST", "LATEST", "format_time", "parse_time"]

EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
EXAMPLE = "2026-11-24T10:15:00.123Z"
_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


@functools.lru_cache(maxsize=256)  # the events of one export share their time
def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with millisecond precision (truncated), the form Doow's SDKs send."""
    # isoformat truncates to the millisecond, at half the cost of strftime
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_time(value: object, *, bounded: bool = True) -> datetime:
    """The moment `value` names, in UTC; a ValueError saying what is wrong otherwise.

    `bounded`: only 2000 to 2100, as usage times (a search's bounds may be any year)."""
    match = _TIME_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{shown(value)} is not RFC 3339 with a timezone, e.g. {EXAMPLE}")
    year, month, day, hour, minute, second, fraction, zone, sign, oh, om = match.groups()
    try:
        offset = timedelta(0) if zone == "Z" else timedelta(hours=int(oh), minutes=int(om))
        tz = timezone(-offset if sign == "-" else offset)
        micros = int((fraction or "0")[:6].ljust(6, "0"))
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tz
        ).astimezone(timezone.utc)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{shown(value)}: {exc}") from None
    if bounded and not EARLIEST <= moment < LATEST:
        raise ValueError(f"{shown(value)} is not between 2000 and 2100")
    return moment
