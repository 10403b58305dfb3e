#!/usr/bin/env bash
# Build the otelcol-doow Lambda extension layer: _build/otelcol-doow-lambda-layer.zip with
#   extensions/otelcol-doow     the collector, which Lambda starts from /opt/extensions
#   otelcol-doow/config.yaml    its default config (DOOW_EXTENSION_CONFIG overrides it)
# Same pinned builder as build.sh; GOARCH=arm64 builds for Graviton functions.
# Skips the build when the layer is newer than its sources.
set -euo pipefail
cd "$(dirname "$0")"
BUILDER_VERSION=v0.165.0
OUT=_build/lambda
LAYER=_build/otelcol-doow-lambda-layer.zip

stale() {
  [ ! -f "$LAYER" ] || [ -n "$(find lambda-manifest.yaml lambda build-lambda-layer.sh ../exporter/doowexporter \
    ../extension/doowlambdaextension -newer "$LAYER" -type f \( -name '*.yaml' -o -name '*.sh' \
    -o -name go.mod -o -name go.sum -o -name '*.go' \) ! -name '*_test.go' -print -quit)" ]
}

stale || exit 0
mkdir -p _build _tools
if [ ! -x _tools/builder ] || ! _tools/builder version 2>/dev/null | grep -q "${BUILDER_VERSION#v}"; then
  GOBIN="$PWD/_tools" go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION"
fi
echo "building the Lambda layer (a first build downloads modules and takes minutes)" >&2
_tools/builder --config lambda-manifest.yaml --skip-compilation >_build/lambda-build.log 2>&1 ||
  { tail -40 _build/lambda-build.log >&2; exit 1; }
cp lambda/run.go "$OUT/main_others.go" # the config default for Lambda's argument-less start
(cd "$OUT" && CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags='-s -w' -o otelcol-doow .) \
  >>_build/lambda-build.log 2>&1 || { tail -40 _build/lambda-build.log >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/extensions" "$stage/otelcol-doow"
cp "$OUT/otelcol-doow" "$stage/extensions/otelcol-doow"
cp lambda/config.yaml "$stage/otelcol-doow/config.yaml"
chmod 755 "$stage/extensions/otelcol-doow"
rm -f "$LAYER"
"${PYTHON:-python3}" - "$stage" "$LAYER" <<'PY'
import os, sys, zipfile
stage, layer = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(layer, "w", zipfile.ZIP_DEFLATED) as z:
    for root, _, files in sorted(os.walk(stage)):
        for name in sorted(files):
            path = os.path.join(root, name)
            info = zipfile.ZipInfo.from_file(path, os.path.relpath(path, stage))
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                z.writestr(info, f.read())  # keeps the executable bit
PY
echo "$LAYER" >&2
