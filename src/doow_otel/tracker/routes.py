"""track()'s checks, remembered: a call like an earlier one costs a lookup.

A route is what one amount of usage is for (metric, unit, license, attribution as
cleaned by the policy), made once and reused (`doow_otel.delivery.journal.Route`). The
checks run in the order of `track()`'s fields, so the first bad one is named. Fields
that passed are remembered (bounded) with the route made for them, unless the policy
stripped some attribution (then the checks run each time, and each strip is counted).
Equal values of other types (1, 1.0 and True) are equal dict keys: a remembered route
serves only values of its types.

Each route knows its folded companion: the same metric, unit and license with the
attribution `{"doow.folded": true}`, where the recorder puts its usage past its limit of
routes per window (docs/reliability.md, "Cardinality"): the license, metric and unit stay
exact and billed.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from doow_otel.delivery.journal import Route
from doow_otel.errors import InvalidEvent
from doow_otel.model.attribution import AttributionPolicy
from doow_otel.model.fields import (
    MAX_ATTRIBUTES,
    MAX_INT_QUANTITY,
    AttributeValue,
    attributes_problem,
    license_problem,
    metric_problem,
    quantity_problem,
    reserved_key_problem,
    unit_problem,
)
from doow_otel.otel.baggage import LICENSE_KEY

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Meter

__all__ = ["FOLDED", "Mirror", "Routes", "checked_quantity", "plain_quantity"]

FOLDED = "doow.folded"
"""The attribution of usage folded past the route limit: only this key, `True`."""
_CACHE_LIMIT = 4096
_INT64_BOUND = 2.0**63
# OpenTelemetry instrument names are stricter than Doow metric names (they must start
# with a letter and may not contain ':'); other names ride in a doow.metric attribute.
_OTEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/]{0,254}")

Mirror = tuple["Counter", dict[str, AttributeValue]] | None
"""Where a route's usage is mirrored on the application's MeterProvider (None: nowhere)."""
# (the attribution as given, its value types unless all are str, the route, its mirror)
_Known = tuple[dict[str, AttributeValue] | None, tuple[type, ...] | None, Route, Mirror]


class Routes:
    """Not thread-safe by design: a race can only make two equal routes (their usage merges
    when a window is sealed), never a wrong one."""

    def __init__(
        self,
        *,
        base: Mapping[str, AttributeValue],
        policy: AttributionPolicy,
        mirror: Meter | None,
    ) -> None:
        self.policy = policy
        self.base = dict(base)
        self._room = MAX_ATTRIBUTES - len(self.base)  # attribution keys left beside the base
        self._mirror = mirror
        self._made: dict[tuple[object, ...], Route] = {}  # distinct routes, bounded
        self._folded: dict[tuple[object, ...], Route] = {}
        self._numbers = 0  # a route's number is never reused (the journal names it)
        self._known: dict[tuple[object, ...], _Known] = {}
        self._last: dict[tuple[object, object, object], _Known] = {}  # the latest per license
        self._counters: dict[tuple[str, str | None], tuple[Counter, str | None]] = {}
        self._kept: set[tuple[str, object]] = set()  # (key, value) pairs checked and kept
        self._valid_licenses: set[str] = set()

    def find(
        self, metric: Any, quantity: Any, license_id: Any, unit: Any, attribution: Any
    ) -> tuple[Route, Mirror]:
        """The route of a call (InvalidEvent naming the first bad field)."""
        try:  # the same fields as the last call for this metric and license: the common case
            seen, types, route, mirror = self._last[metric, unit, license_id]
            # equal dicts may list their keys in another order: types key by key, in seen's
            if seen == attribution and (
                types is None or types == tuple([type(attribution[k]) for k in seen])  # type: ignore[union-attr]
            ):
                return route, mirror
        except (KeyError, TypeError):  # new, or unhashable (named by the checks)
            pass
        return self._checked(metric, quantity, license_id, unit, attribution)

    def _checked(
        self, metric: Any, quantity: Any, license_id: Any, unit: Any, attribution: Any
    ) -> tuple[Route, Mirror]:
        try:
            known = self._known[
                (metric, unit, license_id)
                if attribution is None
                else (metric, unit, license_id, *attribution.items())
            ]
        except (KeyError, TypeError, AttributeError):  # new, unhashable or not a mapping
            known = None
        if known is not None and (
            known[1] is None or known[1] == tuple(map(type, attribution.values()))
        ):
            self._last[metric, unit, license_id] = known
            return known[2], known[3]
        if (problem := metric_problem(metric)) is not None:
            raise InvalidEvent("metric", problem)
        if (problem := unit_problem(unit)) is not None:
            raise InvalidEvent("unit", problem)
        checked_quantity(quantity)
        if type(license_id) is not str or license_id not in self._valid_licenses:
            self.check_license(license_id)
        cleaned = self.cleaned(attribution) if attribution is not None else {}
        attributes: dict[str, AttributeValue] = {**self.base, **cleaned}
        route = self._route(metric, unit, license_id, attributes)
        mirror = self._mirrored(metric, unit, license_id, attributes)
        seen: dict[str, AttributeValue] | None = None
        types: tuple[type, ...] | None = None
        if attribution is None:
            key: tuple[object, ...] = (metric, unit, license_id)
        elif type(attribution) is dict and len(cleaned) == len(attribution):
            key = (metric, unit, license_id, *attribution.items())
            seen = dict(attribution)  # a copy: the caller may change theirs
            types = tuple(map(type, seen.values()))
            if all(kind is str for kind in types):
                types = None  # nothing but a str equals a str: equal is enough
        else:
            return route, mirror
        if len(self._known) >= _CACHE_LIMIT:
            self._known.clear()
            self._last.clear()
        self._known[key] = self._last[metric, unit, license_id] = (seen, types, route, mirror)
        return route, mirror

    def _route(
        self, metric: str, unit: str | None, license_id: str, attributes: dict[str, AttributeValue]
    ) -> Route:
        """The one route of these fields (attribution compared as given, typed)."""
        key = (metric, unit, license_id, *[(k, type(v), v) for k, v in attributes.items()])
        route = self._made.get(key)
        if route is not None:
            return route
        folded = self._folded.get((metric, unit, license_id))
        if folded is None:
            folded = self._folded[metric, unit, license_id] = self._new(
                metric, unit, license_id, {FOLDED: True}, None
            )
        if attributes == {FOLDED: True}:
            return folded
        if len(self._made) >= _CACHE_LIMIT * 16:  # forgotten: a new one merges when sealed
            self._made.clear()
        if len(self._folded) >= _CACHE_LIMIT * 16:
            self._folded.clear()
        route = self._made[key] = self._new(metric, unit, license_id, attributes, folded)
        return route

    def _new(
        self,
        metric: str,
        unit: str | None,
        license_id: str,
        attributes: dict[str, AttributeValue],
        folded: Route | None,
    ) -> Route:
        self._numbers += 1
        return Route(metric, unit, license_id, attributes, self._numbers, folded)

    def _mirrored(
        self, metric: str, unit: str | None, license_id: str, attributes: dict[str, AttributeValue]
    ) -> Mirror:
        if self._mirror is None:
            return None
        try:
            counter, alias = self._counters[metric, unit]
        except KeyError:
            # OTel instrument names are case-insensitive (the SDK lowercases them): a name
            # not already lowercase, or that OTel refuses, rides in `doow.metric`
            valid = _OTEL_NAME.fullmatch(metric) is not None
            alias = None if valid and metric == metric.lower() else metric
            name = metric.lower() if valid else "doow.usage"
            counter = self._mirror.create_counter(name, unit=str(unit or ""))
            self._counters[metric, unit] = (counter, alias)
        mirrored = {**attributes, LICENSE_KEY: license_id}
        if alias is not None:
            mirrored["doow.metric"] = alias
        return counter, mirrored

    def check_license(self, license_id: object) -> None:
        if license_id is None:
            raise InvalidEvent(
                "license_id",
                "is required: pass license_id=, bill to it with doow_otel.bill_to(license_id), "
                "or configure default_license_id / DOOW_LICENSE_ID",
            )
        problem = license_problem(license_id)
        if problem:
            raise InvalidEvent("license_id", problem)
        if len(self._valid_licenses) < _CACHE_LIMIT:
            self._valid_licenses.add(license_id)  # type: ignore[arg-type]

    def cleaned(self, attribution: object) -> Mapping[str, AttributeValue]:
        """The attribution minus what the policy strips. The (key, value) pairs kept are
        remembered, so that `track()` skips the checks for attribution it has seen."""
        if type(attribution) is not dict and not isinstance(attribution, Mapping):
            raise InvalidEvent("attribution", attributes_problem(attribution) or "is invalid")
        if not attribution:
            return attribution
        kept = self._kept
        try:
            if len(attribution) <= self._room and attribution.items() <= kept:
                return attribution
        except TypeError:  # an unhashable value: let the check below name it
            pass
        problem = attributes_problem(attribution) or reserved_key_problem(attribution)
        if problem:
            raise InvalidEvent("attribution", problem)
        cleaned = self.policy.clean(attribution)
        if len(kept) > _CACHE_LIMIT:
            kept.clear()
        for item in cleaned.items():
            # 2.0**63 == 2**63: a float past the int64 range must not vouch for an int
            if type(item[1]) is not float or abs(item[1]) < _INT64_BOUND:
                kept.add(item)
        room = self._room
        return dict(list(cleaned.items())[:room]) if len(cleaned) > room else cleaned


def checked_quantity(quantity: object) -> int | float:
    """A USAGE quantity as an int or float (see `plain_quantity`), or InvalidEvent."""
    plain = plain_quantity(quantity)
    if not 0 < plain < math.inf or (type(plain) is int and plain > MAX_INT_QUANTITY):
        raise InvalidEvent("quantity", quantity_problem(plain, "USAGE") or "is invalid")
    return plain


def plain_quantity(quantity: object) -> int | float:
    """An int or float from a numeric subclass (an IntEnum, numpy's integers and floats);
    anything else is refused with the reason and the fix."""
    if isinstance(quantity, bool) or quantity is None:
        raise InvalidEvent("quantity", quantity_problem(quantity, "USAGE") or "is invalid")
    if isinstance(quantity, int):
        return int(quantity)
    if isinstance(quantity, float):
        return float(quantity)
    if hasattr(type(quantity), "__index__"):  # numpy.int64 and friends
        try:
            return operator.index(quantity)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - numpy.bool_ refuses, for one
            raise InvalidEvent(
                "quantity", f"{type(quantity).__name__} is not usable as an integer ({exc})"
            ) from None
    raise InvalidEvent(
        "quantity",
        f"must be an int or float, got {type(quantity).__name__}; convert it with int() or "
        "float() (Doow quantities are JSON numbers)",
    )
