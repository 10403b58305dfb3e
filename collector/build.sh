#!/usr/bin/env bash
# Build otelcol-doow with the official builder (ocb), pinned to the manifest's release.
# Skips the build when the binary is newer than the manifest and the exporter sources.
set -euo pipefail
cd "$(dirname "$0")"
BUILDER_VERSION=v0.165.0
BINARY=_build/otelcol-doow

if [ -x "$BINARY" ] && [ -z "$(find manifest.yaml ../exporter/doowexporter -newer "$BINARY" -type f -print -quit)" ]; then
  exit 0
fi
if [ ! -x _tools/builder ] || ! _tools/builder version 2>/dev/null | grep -q "${BUILDER_VERSION#v}"; then
  GOBIN="$PWD/_tools" go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION"
fi
echo "building $BINARY (first build downloads modules and takes a few minutes)" >&2
_tools/builder --config manifest.yaml >_build.log 2>&1 || { tail -40 _build.log >&2; exit 1; }
touch "$BINARY"
