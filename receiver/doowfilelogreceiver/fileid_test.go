package doowfilelogreceiver

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/stanza/entry"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/stanza/fileconsumer"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/stanza/operator"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/stanza/operator/input/file"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/stanza/testutil"
)

// line is the same usage line every time: files told apart by content alone cannot be.
const line = `{"metric": "api_calls", "quantity": 1, "license_id": "lic_1"}`

func lines(n int) string { return strings.Repeat(line+"\n", n) }

type harness struct {
	t         *testing.T
	dir       string
	persister operator.Persister
	op        operator.Operator
	received  chan *entry.Entry
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, dir: t.TempDir(), persister: &memPersister{data: map[string][]byte{}}}
}

// memPersister is the storage, which a test can copy as it is at one moment.
type memPersister struct {
	mu   sync.Mutex
	data map[string][]byte
}

func (p *memPersister) Get(_ context.Context, key string) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.data[key], nil
}

func (p *memPersister) Set(_ context.Context, key string, value []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.data[key] = value
	return nil
}

func (p *memPersister) Delete(_ context.Context, key string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.data, key)
	return nil
}

func (p *memPersister) Batch(ctx context.Context, ops ...*storage.Operation) error {
	for _, op := range ops {
		var err error
		switch op.Type {
		case storage.Get:
			op.Value, err = p.Get(ctx, op.Key)
		case storage.Set:
			err = p.Set(ctx, op.Key, op.Value)
		case storage.Delete:
			err = p.Delete(ctx, op.Key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// copyOf is the storage as it is now, with only the keys given (all when none).
func (p *memPersister) copyOf(keys ...string) *memPersister {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := &memPersister{data: maps.Clone(p.data)}
	if len(keys) > 0 {
		c.data = map[string][]byte{}
		for _, k := range keys {
			c.data[k] = p.data[k]
		}
	}
	return c
}

// pairs are the (file id, offset) names of lines read.
func pairs(ids []string, offsets []int64) map[string]bool {
	named := map[string]bool{}
	for i := range ids {
		named[ids[i]+"@"+strconv.FormatInt(offsets[i], 10)] = true
	}
	return named
}

// start starts the receiver's input operator on the harness's storage (a restart when
// it ran before: filelog restores its readers from the checkpoint Stop wrote).
func (h *harness) start() {
	cfg := file.NewConfigWithID("doow_file_input")
	cfg.Include = []string{filepath.Join(h.dir, "usage.log*")}
	cfg.StartAt = "beginning"
	cfg.PollInterval = 20 * time.Millisecond
	cfg.IncludeFileRecordOffset = true
	cfg.OnTruncate = fileconsumer.OnTruncateReadWholeFile
	cfg.OutputIDs = []string{"fake"}
	op, err := (&inputConfig{Config: *cfg}).Build(componenttest.NewNopTelemetrySettings())
	require.NoError(h.t, err)
	out := testutil.NewFakeOutput(h.t)
	require.NoError(h.t, op.SetOutputs([]operator.Operator{out}))
	require.NoError(h.t, op.Start(h.persister))
	h.op, h.received = op, out.Received
	h.t.Cleanup(func() { _ = op.Stop() })
}

func (h *harness) stop() { require.NoError(h.t, h.op.Stop()) }

// read waits (bounded) for n lines and returns their doow.file.id and offsets.
func (h *harness) read(n int) (ids []string, offsets []int64) {
	for range n {
		select {
		case e := <-h.received:
			id, ok := e.Attributes[attrFileID].(string)
			require.True(h.t, ok, "no %s on %v", attrFileID, e.Attributes)
			require.NotContains(h.t, e.Attributes, attrFileEnd)
			ids = append(ids, id)
			offsets = append(offsets, e.Attributes["log.file.record_offset"].(int64))
		case <-time.After(10 * time.Second):
			h.t.Fatalf("%d of %d lines read", len(ids), n)
		}
	}
	return ids, offsets
}

func (h *harness) write(name, text string, flags int) {
	f, err := os.OpenFile(filepath.Join(h.dir, name), os.O_WRONLY|os.O_CREATE|flags, 0o600)
	require.NoError(h.t, err)
	_, err = f.WriteString(text)
	require.NoError(h.t, err)
	require.NoError(h.t, f.Close())
}

func single(t *testing.T, ids []string) string {
	for _, id := range ids {
		require.Equal(t, ids[0], id)
	}
	return ids[0]
}

func TestFreshFileGetsAnID(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.write("usage.log", lines(3), os.O_APPEND)
	ids, offsets := h.read(3)
	id := single(t, ids)
	require.Regexp(t, `^[0-9a-f]+:[0-9a-f]+:\d+:0$`, id)
	require.Equal(t, []int64{0, int64(len(line) + 1), 2 * int64(len(line)+1)}, offsets)
}

func TestIDSurvivesRenameAndRestart(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.write("usage.log", `{"first": 1}`+"\n"+lines(30), os.O_APPEND)
	ids, _ := h.read(31)
	first := single(t, ids)
	h.stop()

	// rotated by renaming while stopped; the old file grows, a new one starts
	require.NoError(t, os.Rename(filepath.Join(h.dir, "usage.log"), filepath.Join(h.dir, "usage.log.1")))
	h.write("usage.log.1", lines(2), os.O_APPEND)
	h.write("usage.log", `{"second": 1}`+"\n"+lines(30), os.O_APPEND)
	h.start()
	ids, offsets := h.read(33)
	byID := map[string][]int64{}
	for i, id := range ids {
		byID[id] = append(byID[id], offsets[i])
	}
	require.Len(t, byID, 2, byID)
	require.Len(t, byID[first], 2, "the renamed file keeps its id across the restart: %v", byID)
	for id, o := range byID {
		if id != first {
			require.Len(t, o, 31)
			require.Equal(t, int64(0), o[0])
		}
	}
}

func TestCopytruncateGetsANewGeneration(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.write("usage.log", lines(40), os.O_APPEND)
	ids, _ := h.read(40)
	first := single(t, ids)

	// copytruncate while running: the new content is shorter than the fingerprint at first
	h.write("usage.log", lines(5), os.O_TRUNC)
	ids, offsets := h.read(5)
	second := single(t, ids)
	require.NotEqual(t, first, second)
	require.Equal(t, int64(0), offsets[0])
	require.Equal(t, strings.Join(strings.Split(first, ":")[:3], ":"), strings.Join(strings.Split(second, ":")[:3], ":"), "the same inode")

	// copytruncate while stopped: filelog restores the reader (same first kilobyte) and
	// goes back to offset 0 (on_truncate: read_whole_file); the id must change again
	h.write("usage.log", lines(40), os.O_APPEND)
	_, _ = h.read(40)
	h.stop()
	h.write("usage.log", lines(30), os.O_TRUNC)
	h.start()
	ids, offsets = h.read(30)
	third := single(t, ids)
	require.NotContains(t, []string{first, second}, third)
	require.Equal(t, int64(0), offsets[0])
}

func TestFilesWithTheSameContentGetDifferentIDs(t *testing.T) {
	dir := t.TempDir()
	ids := newFileIDs(zap.NewNop(), statFile)
	ids.persister = testutil.NewUnscopedMockPersister()
	var got []string
	for _, name := range []string{"a.log", "b.log"} {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(lines(3)), 0o600))
		attrs := map[string]any{"log.file.path": path}
		ids.assign(context.Background(), attrs, 0)
		got = append(got, attrs[attrFileID].(string))
	}
	require.NotEqual(t, got[0], got[1])
}

func TestGenerationsAreStoredAndNeverHandedOutTwice(t *testing.T) {
	keys := map[string]fileKey{"a": {1, 10, 100}, "b": {1, 11, 200}, "c": {1, 12, 300}}
	stat := func(p string) (fileKey, error) { return keys[p], nil }
	persister := testutil.NewUnscopedMockPersister()
	fresh := func() *fileIDs {
		ids := newFileIDs(zap.NewNop(), stat)
		ids.persister, ids.limit = persister, 2
		return ids
	}
	seen := map[string]bool{}
	name := func(ids *fileIDs, path string) string {
		attrs := map[string]any{"log.file.path": path}
		ids.assign(context.Background(), attrs, 0)
		id := attrs[attrFileID].(string)
		require.False(t, seen[id], "%s handed out twice", id)
		seen[id] = true
		return id
	}
	ids := fresh()
	require.Equal(t, "1:a:100:0", name(ids, "a"))
	require.Equal(t, "1:a:100:1", name(ids, "a"))
	ids = fresh() // a restart reads the generations back
	require.Equal(t, "1:a:100:2", name(ids, "a"))
	require.Equal(t, "1:b:200:0", name(ids, "b"))
	require.Equal(t, "1:c:300:0", name(ids, "c")) // over the limit: "a" is forgotten
	require.NotContains(t, ids.entries, keys["a"])
	require.Equal(t, "1:a:100:3", name(ids, "a"), "a forgotten file born before the forgetting is not given 0 again")

	// a restored reader keeps its id; one that goes back in its file gets a new one
	attrs := map[string]any{"log.file.path": "b", attrFileID: "1:b:200:0", attrFileEnd: float64(500)}
	ids.assign(context.Background(), attrs, 500)
	require.Equal(t, "1:b:200:0", attrs[attrFileID])
	ids.assign(context.Background(), attrs, 0)
	require.Equal(t, "1:b:200:4", attrs[attrFileID])
	require.NotContains(t, attrs, attrFileEnd)
}

func TestAFileThatCannotBeNamedGoesOnWithoutAnID(t *testing.T) {
	ids := newFileIDs(zap.NewNop(), statFile)
	ids.persister = testutil.NewUnscopedMockPersister()
	counted := 0
	ids.unnamed = func(context.Context) { counted++ }
	attrs := map[string]any{"log.file.path": filepath.Join(t.TempDir(), "gone.log")}
	ids.assign(context.Background(), attrs, 0)
	require.NotContains(t, attrs, attrFileID)
	require.Equal(t, 1, counted)
}

// A crash after a file's checkpoint: the lines after it are read again under the names
// they had (the reader's attributes come back with its offset), renamed file included.
func TestLinesReadAgainAfterACrashKeepTheirIDs(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.write("usage.log", lines(20), os.O_APPEND)
	_, _ = h.read(20)
	h.stop()
	checkpointed := h.persister.(*memPersister).copyOf() // 20 lines read
	h.start()
	h.write("usage.log", lines(150), os.O_APPEND)
	ids, offsets := h.read(150)
	first := pairs(ids, offsets)
	h.stop()
	require.NoError(t, os.Rename(filepath.Join(h.dir, "usage.log"), filepath.Join(h.dir, "usage.log.1")))

	// started again on the storage as a crash before the next checkpoint leaves it: the
	// offsets as they were, the generations as they are (stored before lines go out)
	checkpointed.data[stateKey] = h.persister.(*memPersister).copyOf(stateKey).data[stateKey]
	h.persister = checkpointed
	h.start()
	ids, offsets = h.read(150)
	require.Equal(t, first, pairs(ids, offsets))
}

// A crash before a new file's first checkpoint: the generation was stored before its
// lines went out, the offsets were not, so the file is read again under a new
// generation: its lines count again, and share no name with anything else.
func TestANewFileReadAgainBeforeItsFirstCheckpointGetsANewGeneration(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.write("usage.log", lines(20), os.O_APPEND)
	ids, offsets := h.read(20)
	first := pairs(ids, offsets)
	h.stop()

	h.persister = h.persister.(*memPersister).copyOf(stateKey) // no "knownFiles"
	h.start()
	ids, offsets = h.read(20)
	again := pairs(ids, offsets)
	require.Len(t, again, 20)
	for name := range again {
		require.False(t, first[name], "%s named twice", name)
	}
	require.True(t, strings.HasSuffix(ids[0], ":1"), ids[0])
}
