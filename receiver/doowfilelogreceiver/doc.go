// Package doowfilelogreceiver is the contrib filelog receiver (same configuration, same
// file consumer) whose lines also carry doow.file.id: an identity of the file that
// survives renames and restarts (it is kept in filelog's own checkpoint) and changes
// when the file is truncated, so a usage line's id can be derived from (file id,
// offset, body) without two files' lines colliding (docs/conversion.md).
package doowfilelogreceiver // import "github.com/doow/doow-otel/receiver/doowfilelogreceiver"

// mdatagen is pinned in internal/tools/go.mod (its own module, so that its
// dependencies stay out of the collector distribution's build).
//go:generate go tool -modfile=internal/tools/go.mod mdatagen metadata.yaml
