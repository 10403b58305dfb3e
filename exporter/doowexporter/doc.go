// Package doowexporter bills the usage in OTLP metrics, spans and logs to Doow: it
// converts them to Doow usage events (docs/conversion.md) and posts them to Doow's
// ingest API, with the collector's sending queue and retries around it.
package doowexporter

// mdatagen is pinned in internal/tools/go.mod (its own module, so that its
// dependencies stay out of the collector distribution's build).
//go:generate go tool -modfile=internal/tools/go.mod mdatagen metadata.yaml

// version.go holds the Python package's version (one version for both).
//go:generate go run ./internal/versiongen ../../src/doow_otel/_version.py version.go
