#!/usr/bin/env bash
# Install the AWS Lambda Runtime Interface Emulator (aws-lambda-rie), pinned, from its Go
# module into collector/_tools; prints the binary's path. The module publishes no tags:
# the pin is a pseudo-version (a commit of github.com/aws/aws-lambda-runtime-interface-emulator).
set -euo pipefail
cd "$(dirname "$0")/.."
RIE_VERSION=v0.0.0-20261030222936-bef5c4ba774d
TOOLS="$PWD/collector/_tools"
BINARY="$TOOLS/aws-lambda-rie"
STAMP="$TOOLS/aws-lambda-rie.version"
if [ ! -x "$BINARY" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$RIE_VERSION" ]; then
  mkdir -p "$TOOLS"
  GOBIN="$TOOLS" go install "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$RIE_VERSION" >&2
  echo "$RIE_VERSION" >"$STAMP"
fi
echo "$BINARY"
