"""The attribution policy: what may travel as attribution, scrubbed before it leaves.

Doow's guide: never send request payloads, customer content, secrets or raw logs. A key
that names a secret (password, access_token, ...) or a value that looks like a
credential (a Doow key, a bearer token, a JWT, a URL with a password, common API key
shapes) or a payload (over 256 characters) is stripped, counted per reason and logged
once per reason; the event is kept, and token counts (input_tokens, ...) stay. The Go
exporter (events.go) holds the same patterns; tests/vectors/ keeps the two alike.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections import Counter
from collections.abc import Mapping

from doow_otel.model.fields import MAX_ATTRIBUTES, AttributeValue
from doow_otel.model.secrets import looks_secret

__all__ = ["DEFAULT_POLICY", "MAX_ATTRIBUTE_VALUE_LEN", "AttributionPolicy"]

logger = logging.getLogger("doow_otel")

MAX_ATTRIBUTE_VALUE_LEN = 256

_SECRET_KEY_RE = re.compile(
    r"(authori[sz]ation|passw(or)?d|passwd|passphrase|secret|api[_-]?key|apikey|access[_-]?key|"
    r"private[_-]?key|cookie|session|token|credential|bearer|signature)",
    re.IGNORECASE,
)
# Usage metrics legitimately carry token *counts*: keys like input_tokens, max_tokens or
# llm.token_count.prompt are not secrets; access_token, api_token, session_token are.
_COUNT_KEY_RE = re.compile(
    r"(^|[._])((((input|output|total|prompt|completion|cached|reasoning)_?)?tokens)"
    r"|(input|output|total|prompt|completion|cached|reasoning)_?token"
    r"|token_?counts?(\.(input|output|total|prompt|completion))?)$",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=1024)
def _key_names_secret(key: str) -> bool:
    """Attribution keys repeat from event to event: decide each once."""
    return bool(_SECRET_KEY_RE.search(key)) and not _COUNT_KEY_RE.search(key)


class AttributionPolicy:
    """Strips attribution that looks like a secret or payload, counts it, logs each reason once.

    Doow's guide: never send request payloads, customer content, secrets or raw logs.
    The event is kept; only the offending attribute goes.
    """

    def __init__(
        self,
        max_keys: int = MAX_ATTRIBUTES,
        max_value_len: int = MAX_ATTRIBUTE_VALUE_LEN,
        max_reported: int = 1024,
    ) -> None:
        self.max_keys = max_keys
        self.max_value_len = max_value_len
        self.stripped: Counter[str] = Counter()
        self.max_reported = max_reported
        self._reported: set[tuple[str, str]] = set()  # the first keys stripped, bounded
        self._logged: set[str] = set()  # reasons already logged
        self._lock = threading.Lock()

    def why_stripped(self, key: str, value: AttributeValue) -> str | None:
        if _key_names_secret(key):
            return "key names a secret"
        if isinstance(value, str):
            if len(value) > self.max_value_len:
                return f"value longer than {self.max_value_len} characters (payload or log?)"
            if looks_secret(value):
                return "value looks like a credential"
        return None

    def clean(self, attributes: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
        if not attributes:
            return {}
        cleaned: dict[str, AttributeValue] = {}
        for key, value in attributes.items():
            reason = self.why_stripped(key, value)
            if reason is None and len(cleaned) >= self.max_keys:
                reason = f"more than {self.max_keys} attribution keys"
            if reason is None:
                cleaned[key] = value
            else:
                self._record(key, reason)
        return cleaned

    def _record(self, key: str, reason: str) -> None:
        with self._lock:
            self.stripped[reason] += 1
            if len(self._reported) < self.max_reported:
                self._reported.add((key, reason))
            first = reason not in self._logged
            self._logged.add(reason)
        if first:
            # One line per reason, however many keys follow (10,000 bad keys are one line,
            # not 10,000); `stripped` counts them all. The value is never logged: it is the
            # very thing that must not leak.
            logger.warning(
                "doow: attribution %r stripped: %s (further keys stripped for this reason "
                "are counted, not logged)",
                key,
                reason,
            )


DEFAULT_POLICY = AttributionPolicy()
