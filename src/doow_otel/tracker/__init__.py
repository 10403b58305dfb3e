"""The `track()` facade: `DoowTracker` and `configure()`, built on the layers below."""

from doow_otel.tracker.tracker import DoowTracker, configure

__all__ = ["DoowTracker", "configure"]
