"""What a secret looks like, and how a value is shown in a message without leaking one.

The attribution policy strips values of these shapes (`doow_otel.model.attribution`);
the field checks (`doow_otel.model.fields`) and times quote a bad value only through
`shown()`, so `kind: must be ... got 'Bearer dk_live_...'` can never be written: the API
key, or any other credential pasted into the wrong field, never reaches a log line, an
exception, a report or the exit text of `doow-otel send`.
"""

from __future__ import annotations

import re

__all__ = ["looks_secret", "shown"]

# The Go exporter (events.go) holds the same patterns; tests/vectors/ keeps them alike.
_SECRET_VALUE_RE = re.compile(
    r"(\bdk_[A-Za-z0-9_\-]{6,}"  # a Doow key
    r"|\b(Bearer|bearer|BEARER)\s+\S+"  # an Authorization header value
    # Basic credentials: base64 of 8+ characters with a digit, + / = or a lower-upper pair
    # ("Basic 2", "basic plan", "Basic Authentication" stay)
    r"|\b[Bb]asic\s+([A-Za-z0-9+/]{6,}([a-z][A-Z]|[0-9+/=])"
    r"|[A-Za-z0-9+/]*([a-z][A-Z]|[0-9+/=])[A-Za-z0-9+/]{6,})"
    r"|://[^\s/?#@:]*:[^\s/?#@]+@"  # a URL with user:password@
    r"|\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"  # a JWT
    r"|\b(AKIA|ASIA)[A-Z0-9]{16}\b"  # an AWS access key id
    r"|\bsk-[A-Za-z0-9_\-]{16,}"  # OpenAI, Anthropic
    r"|\b[rs]k_(live|test)_[A-Za-z0-9]{8,}"  # Stripe
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|\bxox[abposr]-[A-Za-z0-9\-]{8,}"  # Slack
    r"|\bAIza[A-Za-z0-9_\-]{35}"  # Google API key
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----|-----BEGIN [A-Z ]+-----)",
)
_CLEAN_VALUES: set[str] = set()
"""Attribution values already found not to look like credentials: values repeat from event
to event (a function name, an environment), and the patterns cost about 1 us per value
(16 us at 200 characters). Bounded; a value that looks like a credential is never kept."""
MAX_CLEAN_VALUES = 4096


def looks_secret(value: str) -> bool:
    """Whether `value` has the shape of a credential (a Doow key, a bearer token, a JWT...)."""
    if type(value) is not str:  # a subclass may compare as it likes: always searched
        return bool(_SECRET_VALUE_RE.search(value))
    if value in _CLEAN_VALUES:
        return False
    if _SECRET_VALUE_RE.search(value):
        return True
    if len(_CLEAN_VALUES) >= MAX_CLEAN_VALUES:
        _CLEAN_VALUES.clear()
    _CLEAN_VALUES.add(value)
    return False


MAX_SHOWN = 64
"""Longer values are never quoted: a payload, a token of an unknown shape."""


def shown(value: object) -> str:
    """`value` as a message may quote it: numbers and short strings that do not look like
    a credential as they are (repr); any other string by its length only; other values by
    their type."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        if len(value) <= MAX_SHOWN and value.isprintable() and not looks_secret(value):
            return repr(value)
        return f"a string of {len(value)} characters (not shown: it may be a secret)"
    return f"a {type(value).__name__}"
