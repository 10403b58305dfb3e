"""The credentials a fleet's gateways ask of their senders (collector/gateway.yaml): a
TLS certificate for 127.0.0.1 (self-signed, made here with openssl) and the fleet's
token. For the tests and benchmarks that run gateways."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

__all__ = ["fleet_credentials"]


def fleet_credentials(directory: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The gateways' environment and the senders' (agents, a Lambda extension)."""
    cert, key = directory / "gateway-cert.pem", directory / "gateway-key.pem"
    if not cert.exists():
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
    token = secrets.token_urlsafe(24)
    gateway = {
        "DOOW_GATEWAY_TLS_CERT_FILE": str(cert),
        "DOOW_GATEWAY_TLS_KEY_FILE": str(key),
        "DOOW_GATEWAY_TOKEN": token,
    }
    sender = {"DOOW_GATEWAY_TOKEN": token, "DOOW_GATEWAYS_CA_FILE": str(cert)}
    return gateway, sender
