#!/usr/bin/env bash
# Go side of the test command: vet and test the doow exporter (with the shared vectors,
# random OTLP converted by Python first, to be converted alike, and random ingest
# answers decided by Python first, to be decided alike), the sidecar's file receiver and
# the Lambda extension, then build the collector distribution when missing or stale.
set -euo pipefail
cd "$(dirname "$0")/.."
parity=$(mktemp -d)
answers=$(mktemp)
trap 'rm -rf "$parity" "$answers"' EXIT
"${DOOW_VENV:-.venv}/bin/python" scripts/parity_fuzz.py "$parity" --cases 1000
"${DOOW_VENV:-.venv}/bin/python" scripts/status_fuzz.py "$answers" --cases 3000
# gofmt and go vet clean; with a metadata.yaml, the generated files are what go generate
# makes (mdatagen, pinned in internal/tools; the exporter's version.go, from the Python
# package's _version.py)
check_module() {
  test -z "$(gofmt -l .)" || { gofmt -l . >&2; echo "gofmt: files above need formatting" >&2; exit 1; }
  go vet ./...
  if [ -f metadata.yaml ]; then
    generated() { find internal/metadata internal/metadatatest documentation.md generated_*_test.go $(ls version.go 2>/dev/null) -type f -print0 | sort -z | xargs -0 sha256sum; }
    local before
    before=$(generated)
    go generate ./...
    [ "$before" = "$(generated)" ] || { echo "go generate changed the generated files: run it after editing metadata.yaml" >&2; exit 1; }
  fi
}
(
  cd exporter/doowexporter
  check_module
  DOOW_PARITY_DIR="$parity" DOOW_STATUS_FUZZ="$answers" go test ./...
)
(
  cd receiver/doowfilelogreceiver # the sidecar's file receiver (tests/collector/test_sidecar.py runs it)
  check_module
  go test ./...
)
(cd bench/collectorbench && go vet ./...)
(
  cd extension/doowlambdaextension # the Lambda extension (tests/serverless/test_lambda_extension.py builds its layer)
  check_module
  go test ./...
)
bash collector/build.sh
