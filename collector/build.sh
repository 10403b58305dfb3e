#!/usr/bin/env bash
# Build otelcol-doow with the official builder (ocb), pinned to the manifest's release.
# Skips the build when the binary is newer than the manifest and our components' sources.
set -euo pipefail
cd "$(dirname "$0")"
BUILDER_VERSION=v0.165.0
BINARY=_build/otelcol-doow

stale() {
  [ ! -x "$BINARY" ] || [ -n "$(find manifest.yaml ../exporter/doowexporter ../receiver/doowfilelogreceiver -newer "$BINARY" -type f \
    \( -name manifest.yaml -o -name go.mod -o -name go.sum -o -name '*.go' \) ! -name '*_test.go' -print -quit)" ]
}

stale || exit 0
if [ ! -x _tools/builder ] || ! _tools/builder version 2>/dev/null | grep -q "${BUILDER_VERSION#v}"; then
  GOBIN="$PWD/_tools" go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION"
fi
echo "building $BINARY (a first build downloads modules and takes several minutes)" >&2
_tools/builder --config manifest.yaml >_build.log 2>&1 || { tail -40 _build.log >&2; exit 1; }
touch "$BINARY" # the builder leaves an up-to-date binary's time alone
