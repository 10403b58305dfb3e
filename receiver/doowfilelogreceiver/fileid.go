package doowfilelogreceiver

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"go.uber.org/zap"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/stanza/operator"
)

const (
	// attrFileID names the file a line was read from: "dev:inode:birth-time-ns:generation".
	attrFileID = "doow.file.id"
	// attrFileEnd is where the lines delivered under the id end; kept with the id in
	// the reader's attributes (so in filelog's checkpoint, with the offset), never put on
	// a record. A batch that starts before it is a truncated file read again.
	attrFileEnd = "doow.file.end"
	// stateKey holds the generations handed out, in the operator's own storage scope
	// (next to filelog's "knownFiles").
	stateKey = "doow.file.generations"
	// maxEntries bounds the state; the least recently named files are forgotten first.
	maxEntries   = 100_000
	stateVersion = 1
	headerSize   = 1 + 3*8
	entrySize    = 4 * 8
)

// fileKey is a file's identity on this host: a new file (a rename rotation's new file)
// has another inode or another birth time; copytruncate keeps all three.
type fileKey struct {
	dev, ino uint64
	btime    int64
}

// fileIDs hands out doow.file.id values. A reader that filelog restored from its
// checkpoint (after a restart, or on each poll) keeps the id it had; a reader filelog
// made fresh (a new file, a truncated file, a file read again because its checkpoint
// was not written) gets a (file, generation) pair never handed out before, recorded in
// the storage before any of its lines are emitted.
type fileIDs struct {
	logger    *zap.Logger
	stat      func(path string) (fileKey, error)
	persister operator.Persister

	mu       sync.Mutex
	loaded   bool
	entries  map[fileKey]uint64 // the files named, with when (clock) they last were
	counter  uint64             // the last generation handed out by a bump (0 is a file's first)
	clock    uint64
	forgotBT int64 // the latest birth time among forgotten files
	limit    int

	unnamed        func(context.Context) // counts a batch read without an id
	unnamedBatches uint64
}

func newFileIDs(logger *zap.Logger, stat func(string) (fileKey, error)) *fileIDs {
	return &fileIDs{
		logger: logger, stat: stat, entries: map[fileKey]uint64{}, limit: maxEntries,
		unnamed: func(context.Context) {},
	}
}

// assign makes sure attrs (a reader's FileAttributes, which filelog checkpoints and
// carries over to the reader it restores) name their file, for a batch starting at start.
// Without a name (stat or storage failed) the lines go on without doow.file.id and the
// exporter names them as it names lines of the stock filelog receiver.
func (f *fileIDs) assign(ctx context.Context, attrs map[string]any, start int64) {
	if id, ok := attrs[attrFileID].(string); ok && id != "" {
		end, hasEnd := number(attrs[attrFileEnd])
		if !hasEnd || start >= end {
			return
		}
		// filelog went back in a file it knew (on_truncate: read_whole_file): new content
	}
	delete(attrs, attrFileID)
	delete(attrs, attrFileEnd)
	path, _ := attrs["log.file.path"].(string)
	key, err := f.stat(path)
	if err != nil {
		f.unnamedFile(ctx, path, err)
		return
	}
	id, err := f.next(ctx, key)
	if err != nil {
		f.unnamedFile(ctx, path, err)
		return
	}
	attrs[attrFileID] = id
}

// unnamedFile counts and reports a batch read without an id: logged once as a warning.
func (f *fileIDs) unnamedFile(ctx context.Context, path string, err error) {
	f.unnamed(ctx)
	f.mu.Lock()
	f.unnamedBatches++
	n := f.unnamedBatches
	f.mu.Unlock()
	if n == 1 {
		f.logger.Warn("doow.file.id not given; lines of such files are named by the log record (a line re-read after a crash counts again)",
			zap.String("path", path), zap.Error(err))
		return
	}
	f.logger.Debug("doow.file.id not given", zap.String("path", path), zap.Uint64("batches_without_id", n), zap.Error(err))
}

// next hands out the file's next generation and stores it before returning.
func (f *fileIDs) next(ctx context.Context, key fileKey) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.load(ctx); err != nil {
		return "", err
	}
	var gen uint64
	if _, seen := f.entries[key]; seen || key.btime <= f.forgotBT {
		// seen before, or maybe (forgotten): a generation never handed out
		f.counter++
		gen = f.counter
	}
	f.clock++
	f.entries[key] = f.clock
	f.forget()
	if err := f.persister.Set(ctx, stateKey, f.encode()); err != nil {
		return "", fmt.Errorf("store file generations: %w", err)
	}
	return fmt.Sprintf("%x:%x:%d:%d", key.dev, key.ino, key.btime, gen), nil
}

// forget drops the least recently named tenth when the state is full, remembering the
// latest birth time among them: a file born by then and not remembered may have been
// named before, so it is given a bumped generation rather than 0.
func (f *fileIDs) forget() {
	if len(f.entries) <= f.limit {
		return
	}
	type aged struct {
		key  fileKey
		used uint64
	}
	all := make([]aged, 0, len(f.entries))
	for k, used := range f.entries {
		all = append(all, aged{k, used})
	}
	slices.SortFunc(all, func(a, b aged) int { return cmp.Compare(a.used, b.used) })
	for _, a := range all[:len(all)-f.limit*9/10] {
		f.forgotBT = max(f.forgotBT, a.key.btime)
		delete(f.entries, a.key)
	}
}

func (f *fileIDs) load(ctx context.Context) error {
	if f.loaded {
		return nil
	}
	if f.persister == nil {
		return errors.New("no storage: set the receiver's storage")
	}
	data, err := f.persister.Get(ctx, stateKey)
	if err != nil {
		return fmt.Errorf("read file generations: %w", err)
	}
	if err = f.decode(data); err != nil {
		return err
	}
	f.loaded = true
	return nil
}

// encode: version, counter, clock, forgotBT, then (dev, ino, btime, used) per file.
func (f *fileIDs) encode() []byte {
	out := make([]byte, 0, headerSize+len(f.entries)*entrySize)
	out = append(out, stateVersion)
	out = binary.LittleEndian.AppendUint64(out, f.counter)
	out = binary.LittleEndian.AppendUint64(out, f.clock)
	out = binary.LittleEndian.AppendUint64(out, uint64(f.forgotBT))
	for k, used := range f.entries {
		out = binary.LittleEndian.AppendUint64(out, k.dev)
		out = binary.LittleEndian.AppendUint64(out, k.ino)
		out = binary.LittleEndian.AppendUint64(out, uint64(k.btime))
		out = binary.LittleEndian.AppendUint64(out, used)
	}
	return out
}

func (f *fileIDs) decode(data []byte) error {
	f.entries = map[fileKey]uint64{}
	if len(data) == 0 {
		return nil
	}
	if data[0] != stateVersion || len(data) < headerSize || (len(data)-headerSize)%entrySize != 0 {
		return fmt.Errorf("%s: unknown format (version %d, %d bytes)", stateKey, data[0], len(data))
	}
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(data[i:]) }
	f.counter, f.clock, f.forgotBT = u(1), u(9), int64(u(17))
	for i := headerSize; i < len(data); i += entrySize {
		f.entries[fileKey{u(i), u(i + 8), int64(u(i + 16))}] = u(i + 24)
	}
	return nil
}

// number reads an offset back from a checkpoint (JSON: a float64) or from memory.
func number(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case float64:
		if n >= 0 && n <= math.MaxInt64 {
			return int64(n), true
		}
	}
	return 0, false
}
