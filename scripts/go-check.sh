#!/usr/bin/env bash
# Go side of the test command: vet and test the doow exporter, build the collector
# distribution when missing or stale.
set -euo pipefail
cd "$(dirname "$0")/.."
(
  cd exporter/doowexporter
  test -z "$(gofmt -l .)" || { gofmt -l . >&2; echo "gofmt: files above need formatting" >&2; exit 1; }
  go vet ./...
  go test ./...
)
(cd bench/collectorbench && go vet ./...)
bash collector/build.sh
