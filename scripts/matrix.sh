#!/usr/bin/env bash
# ./dev matrix: the smoke suite (SMOKE below) on the oldest supported OpenTelemetry SDK with
# the oldest supported Python, and on the newest with the newest.
# Venvs are cached under .venv-matrix/ and rebuilt when pyproject.toml changes.
# A Python that is not installed is skipped with the reason (never a failure).
set -euo pipefail
cd "$(dirname "$0")/.."

# python  opentelemetry-sdk/api/proto/exporter-otlp-proto-*  distro/instrumentation (0.xxb)
ENTRIES=(
  "3.10 1.34.1 0.55b1" # oldest: the lower bound in pyproject.toml
  "3.13 1.45.2 0.66b2" # newest: bump when OpenTelemetry releases
)

# track, the exporters beside an existing setup, opentelemetry-instrument, a serverless
# wrapper, the conversion vectors, what differs between SDK releases, and delivery to the
# local server; only these modules are collected (the rest may need the dev extras)
SMOKE=(
  tests/otel/test_conversion_sdk.py # the SDK adapter reads each release's data classes
  tests/otel/test_otel_compat.py
  tests/otel/test_otel_path.py
  tests/serverless/test_serverless_flush.py
  tests/tracker/test_tracker.py
  tests/otel/test_vectors.py
  tests/otel/test_self_metrics.py # observable instruments on each release's MeterProvider
)

find_python() { # the newest installed patch release of Python $1
  local want=$1 candidate
  for candidate in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$want".* 2>/dev/null | sort -V -r); do
    if [ -x "$candidate/bin/python" ]; then
      echo "$candidate/bin/python"
      return
    fi
  done
  if command -v "python$want" >/dev/null; then
    command -v "python$want"
  fi
}

build() { # venv python otel instrumentation
  local venv=$1 python=$2 otel=$3 contrib=$4 stamp="$1/.installed" project fresh=1
  local projects=(-e .)
  for project in packages/*/pyproject.toml; do # the repo's other distributions
    if [ -f "$project" ]; then projects+=(-e "$(dirname "$project")"); fi
  done
  for project in pyproject.toml packages/*/pyproject.toml "$0"; do
    if [ -f "$project" ] && ! [ "$stamp" -nt "$project" ]; then fresh=0; fi
  done
  if [ -f "$stamp" ] && [ "$fresh" = 1 ]; then
    return
  fi
  echo "matrix: building $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "${projects[@]}" pytest pytest-timeout hypothesis \
    "opentelemetry-api==$otel" "opentelemetry-sdk==$otel" "opentelemetry-proto==$otel" \
    "opentelemetry-exporter-otlp-proto-common==$otel" \
    "opentelemetry-exporter-otlp-proto-http==$otel" \
    "opentelemetry-distro==$contrib" "opentelemetry-instrumentation==$contrib"
  touch "$stamp"
}

failed=0
for entry in "${ENTRIES[@]}"; do
  read -r py otel contrib <<<"$entry"
  python=$(find_python "$py")
  if [ -z "$python" ]; then
    echo "matrix: SKIPPED OpenTelemetry $otel on Python $py: no Python $py installed" \
      "(looked in ${PYENV_ROOT:-$HOME/.pyenv}/versions and PATH; pyenv install $py)" >&2
    continue
  fi
  venv=".venv-matrix/py$py-otel$otel"
  build "$venv" "$python" "$otel" "$contrib"
  echo "matrix: OpenTelemetry $otel on $("$venv/bin/python" -V)" >&2
  if ! "$venv/bin/python" -m pytest -q -rfE -p no:cacheprovider "${SMOKE[@]}" "$@"; then
    echo "matrix: FAILED OpenTelemetry $otel on Python $py" >&2
    failed=1
  fi
done
exit "$failed"
