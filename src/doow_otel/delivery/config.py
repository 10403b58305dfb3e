"""Settings from explicit arguments and the environment variables Doow's SDKs use.

Explicit arguments win over the environment, as in OpenTelemetry. (Doow's own
`doow-track` lets the environment win; we follow the OTel convention because our
users already configure OTel that way.)
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from doow_otel.errors import ConfigurationError
from doow_otel.model.fields import AttributeValue, attributes_problem, license_problem

__all__ = ["DEFAULT_ENDPOINT", "Settings", "endpoint_problem", "key_problem", "spool_directory"]

logger = logging.getLogger("doow_otel")

DEFAULT_ENDPOINT = "https://api.doow.co"
DEFAULT_FLUSH_AT = 20
DEFAULT_FLUSH_INTERVAL = 10.0
_TRUE = {"1", "true", "yes", "on"}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be greater than 0, got {raw!r}")
    return value


def _env_attribution() -> Any:
    raw = os.environ.get("DOOW_TRACK_ATTRIBUTION")
    try:
        attrs = json.loads(raw) if raw else {}
    except ValueError:
        raise ConfigurationError(
            'DOOW_TRACK_ATTRIBUTION must be a JSON object, e.g. \'{"environment": "prod"}\''
        ) from None
    problem = attributes_problem(attrs)
    if problem:
        raise ConfigurationError(f"DOOW_TRACK_ATTRIBUTION: {problem}")
    return attrs


def _env_license() -> str | None:
    license_id = os.environ.get("DOOW_LICENSE_ID") or None
    if license_id is not None and license_problem(license_id):
        raise ConfigurationError(f"DOOW_LICENSE_ID: {license_problem(license_id)}")
    return license_id


@dataclass(frozen=True)
class Settings:
    api_key: str | None = field(repr=False)
    endpoint: str
    disabled: bool
    debug: bool
    flush_at: int
    flush_interval: float  # seconds
    attribution: dict[str, AttributeValue]
    default_license_id: str | None

    @classmethod
    def resolve(
        cls,
        *,
        api_key: str | None = None,
        endpoint: str | None = None,
        disabled: bool | None = None,
        debug: bool | None = None,
        flush_at: int | None = None,
        flush_interval: float | None = None,
        attribution: dict[str, AttributeValue] | None = None,
        default_license_id: str | None = None,
    ) -> Settings:
        env = os.environ
        off = _env_flag("DOOW_TRACK_DISABLED") if disabled is None else disabled

        def lenient(value: Any, fallback: Any) -> Any:
            """A bad environment value is an error, except with sending turned off:
            DOOW_TRACK_DISABLED=true never fails (a warning, and the default)."""
            try:
                return value()
            except ConfigurationError as exc:
                if not off:
                    raise
                logger.warning("doow: %s; sending is disabled, so the default is used", exc)
                return fallback

        attrs: Any = attribution
        if attrs is None:
            attrs = lenient(_env_attribution, {})
        problem = attributes_problem(attrs)
        if problem:
            raise ConfigurationError(f"attribution: {problem}")
        license_id = default_license_id
        if license_id is None:
            license_id = lenient(_env_license, None)
        elif license_problem(license_id):
            raise ConfigurationError(f"default_license_id: {license_problem(license_id)}")
        settings = cls(
            # a key pasted with a newline or spaces around it is still the key
            api_key=(api_key or env.get("DOOW_TRACK_API_KEY") or "").strip() or None,
            endpoint=(endpoint or env.get("DOOW_TRACK_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
            disabled=off,
            debug=_env_flag("DOOW_TRACK_DEBUG") if debug is None else debug,
            flush_at=flush_at
            or int(
                lenient(
                    lambda: _env_number("DOOW_TRACK_FLUSH_AT", DEFAULT_FLUSH_AT), DEFAULT_FLUSH_AT
                )
            ),
            flush_interval=flush_interval
            or lenient(
                lambda: _env_number("DOOW_TRACK_FLUSH_INTERVAL", DEFAULT_FLUSH_INTERVAL * 1000),
                DEFAULT_FLUSH_INTERVAL * 1000,
            )
            / 1000,
            attribution=dict(attrs),
            default_license_id=license_id,
        )
        if settings.debug:
            enable_debug_logging()
        return settings

    def problem(self, *, allow_insecure: bool = False) -> str | None:
        """Why this configuration cannot send (a missing or malformed key, a bad endpoint),
        or None. Checked where sending would start, so a module-level tracker never
        crashes an import; `DoowClient` raises it as a `ConfigurationError`."""
        if self.disabled:
            return None
        return key_problem(self.api_key) or endpoint_problem(self.endpoint, allow_insecure)


def key_problem(key: str | None) -> str | None:
    """Why `key` is not a Doow SDK key (never quoting it), or None."""
    if not key:
        return (
            "api_key: no Doow API key; pass api_key='dk_...' or set DOOW_TRACK_API_KEY "
            "(or DOOW_TRACK_DISABLED=true to turn sending off)"
        )
    if not key.startswith("dk_") or not key.isascii() or not key.isprintable() or " " in key:
        return (
            "api_key: a Doow SDK key starts with 'dk_' and is printable ASCII without "
            "spaces; copy it from Company Settings > Integrations"
        )
    return None


def endpoint_problem(endpoint: str, allow_insecure: bool = False) -> str | None:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"endpoint: {endpoint!r} is not an http(s) URL; use e.g. 'https://api.doow.co'"
    if parts.scheme == "http" and not allow_insecure and not _is_loopback(parts.hostname):
        return (
            f"endpoint: {endpoint!r} would send the API key unencrypted; use https, "
            "or pass allow_insecure=True for a trusted network"
        )
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def spool_directory() -> Path:
    """The default spool directory, or a private one under the temp directory when the
    home directory is unknown (HOME unset, a uid without a passwd entry) or the cache
    directory cannot be created there."""
    from doow_otel.delivery.spool import default_spool_dir

    try:
        directory = default_spool_dir()
    except (RuntimeError, KeyError, OSError):  # Path.home() with no home to find
        return _temp_spool()
    if not directory.is_absolute():  # Python < 3.12 leaves an unexpandable '~' as it is
        return _temp_spool()
    existing = directory
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        return _temp_spool()
    return directory


def _temp_spool() -> Path:
    import tempfile  # only where the home directory is unusable: not on every cold start

    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"doow-otel-spool-{uid}"


def enable_debug_logging() -> None:
    log = logging.getLogger("doow_otel")
    if not any(getattr(h, "_doow", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[doow-otel] %(levelname)s %(message)s"))
        handler._doow = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(logging.DEBUG)
