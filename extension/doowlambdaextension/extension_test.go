package doowlambdaextension

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// fakeLambda serves the parts of the Extensions and Telemetry APIs the extension uses;
// each event/next call takes the next event from events (or blocks).
type fakeLambda struct {
	t         *testing.T
	telemetry bool // whether the Telemetry API is offered
	events    chan event
	mu        sync.Mutex
	nexts     []time.Time // when each event/next call arrived
	name      string
	dest      string // the telemetry destination the extension subscribed
}

func (f *fakeLambda) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/2020-01-01/extension/register":
		f.mu.Lock()
		f.name = r.Header.Get(nameHeader)
		f.mu.Unlock()
		w.Header().Set(idHeader, "ext-1")
		_, _ = w.Write([]byte(`{"functionName":"f"}`))
	case r.URL.Path == "/2022-07-01/telemetry":
		var body struct {
			Destination struct{ URI string } `json:"destination"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		f.mu.Lock()
		f.dest = body.Destination.URI
		f.mu.Unlock()
		if !f.telemetry {
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"errorType":"Telemetry.NotSupported","errorMessage":"no"}`))
			return
		}
		_, _ = w.Write([]byte(`OK`))
	case r.URL.Path == "/2020-01-01/extension/event/next":
		if r.Header.Get(idHeader) != "ext-1" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		f.mu.Lock()
		f.nexts = append(f.nexts, time.Now())
		f.mu.Unlock()
		select {
		case ev := <-f.events:
			_ = json.NewEncoder(w).Encode(ev)
		case <-r.Context().Done():
		}
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func (f *fakeLambda) nextCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.nexts)
}

func startExtension(t *testing.T, f *fakeLambda) (*lambdaExtension, chan struct{}) {
	t.Helper()
	server := httptest.NewServer(f)
	t.Cleanup(server.Close)
	t.Setenv("AWS_LAMBDA_RUNTIME_API", strings.TrimPrefix(server.URL, "http://"))
	stopped := make(chan struct{})
	x := newLambdaExtension(createDefaultConfig().(*Config), zap.NewNop())
	x.stop = func() { close(stopped) }
	if err := x.Ready(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.Shutdown(context.Background()) })
	return x, stopped
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func runtimeDoneFor(t *testing.T, uri, requestID string) {
	t.Helper()
	body := fmt.Sprintf(`[{"type":"platform.start","record":{"requestId":%q}},`+
		`{"type":"platform.runtimeDone","record":{"requestId":%q,"status":"success"}}]`, requestID, requestID)
	resp, err := http.Post(uri, "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
}

func invoke(id string) event {
	return event{EventType: "INVOKE", RequestID: id, DeadlineMs: time.Now().Add(5 * time.Second).UnixMilli()}
}

// The next event is asked for only once the runtime is done and what the exporter
// accepted has been delivered: the environment cannot freeze with usage in flight.
func TestNextWaitsForRuntimeDoneThenForTheDrain(t *testing.T) {
	f := &fakeLambda{t: t, telemetry: true, events: make(chan event, 4)}
	x, _ := startExtension(t, f)
	if f.name == "" || f.dest == "" {
		t.Fatalf("registered as %q, telemetry to %q", f.name, f.dest)
	}
	f.events <- invoke("r1")
	waitFor(t, "the INVOKE to be taken", func() bool { return len(f.events) == 0 })
	x.Accepted(10) // the function's push, during the invocation
	time.Sleep(50 * time.Millisecond)
	if n := f.nextCalls(); n != 1 {
		t.Fatalf("event/next called %d times before the runtime was done", n)
	}
	runtimeDoneFor(t, f.dest, "r1")
	time.Sleep(50 * time.Millisecond)
	if n := f.nextCalls(); n != 1 {
		t.Fatalf("event/next called %d times with 10 items not delivered", n)
	}
	x.Finished(10)
	waitFor(t, "event/next after the drain", func() bool { return f.nextCalls() == 2 })
}

// While Doow fails, the usage is in the persistent queue: the wait ends at once.
func TestAFailingExporterEndsTheWait(t *testing.T) {
	f := &fakeLambda{t: t, telemetry: true, events: make(chan event, 4)}
	x, _ := startExtension(t, f)
	f.events <- invoke("r1")
	waitFor(t, "the INVOKE to be taken", func() bool { return len(f.events) == 0 })
	x.Accepted(3)
	runtimeDoneFor(t, f.dest, "r1")
	time.Sleep(50 * time.Millisecond)
	if n := f.nextCalls(); n != 1 {
		t.Fatalf("event/next called %d times with 3 items not delivered", n)
	}
	x.Failed()
	waitFor(t, "event/next once the exporter fails", func() bool { return f.nextCalls() == 2 })
}

// SHUTDOWN: everything accepted is delivered before the collector is stopped, failing or not.
func TestShutdownDrainsThenStopsTheCollector(t *testing.T) {
	f := &fakeLambda{t: t, events: make(chan event, 4)}
	x, stopped := startExtension(t, f)
	x.Accepted(5)
	x.Failed()
	f.events <- event{EventType: "SHUTDOWN", DeadlineMs: time.Now().Add(5 * time.Second).UnixMilli()}
	select {
	case <-stopped:
		t.Fatal("stopped with 5 items pending")
	case <-time.After(100 * time.Millisecond):
	}
	x.Finished(5)
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("not stopped after the drain")
	}
}

// Without the Telemetry API (the Runtime Interface Emulator), INVOKE is acknowledged at once.
func TestWithoutTheTelemetryAPIInvokeIsAcknowledgedAtOnce(t *testing.T) {
	f := &fakeLambda{t: t, events: make(chan event, 4)}
	x, _ := startExtension(t, f)
	x.Accepted(1)
	f.events <- invoke("r1")
	waitFor(t, "event/next", func() bool { return f.nextCalls() == 2 })
}

func TestDrainTimeoutMustBePositive(t *testing.T) {
	if err := (&Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "drain_timeout") {
		t.Fatalf("got %v", err)
	}
	if err := createDefaultConfig().(*Config).Validate(); err != nil {
		t.Fatal(err)
	}
}
