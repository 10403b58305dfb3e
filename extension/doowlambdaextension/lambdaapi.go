package doowlambdaextension

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// The Lambda Extensions API (2020-01-01) and Telemetry API (2022-07-01), the parts used.
const (
	nameHeader = "Lambda-Extension-Name"
	idHeader   = "Lambda-Extension-Identifier"
	errorType  = "Lambda-Extension-Function-Error-Type"
)

type event struct {
	EventType      string `json:"eventType"` // INVOKE or SHUTDOWN
	DeadlineMs     int64  `json:"deadlineMs"`
	RequestID      string `json:"requestId"`
	ShutdownReason string `json:"shutdownReason"`
}

func (e event) deadline() time.Time { return time.UnixMilli(e.DeadlineMs) }

type apiClient struct {
	base string // http://$AWS_LAMBDA_RUNTIME_API
	id   string // Lambda-Extension-Identifier, from register
	http *http.Client
}

func newAPIClient(address string) *apiClient {
	// no timeout: event/next blocks until the next event, however long the environment idles
	return &apiClient{base: "http://" + address, http: &http.Client{}}
}

func (c *apiClient) register(ctx context.Context, name string) error {
	body := []byte(`{"events":["INVOKE","SHUTDOWN"]}`)
	resp, err := c.do(ctx, http.MethodPost, "/2020-01-01/extension/register", body, map[string]string{nameHeader: name})
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	c.id = resp.Header.Get(idHeader)
	if c.id == "" {
		return fmt.Errorf("register: no %s in the answer", idHeader)
	}
	return nil
}

func (c *apiClient) next(ctx context.Context) (event, error) {
	var ev event
	resp, err := c.do(ctx, http.MethodGet, "/2020-01-01/extension/event/next", nil, nil)
	if err != nil {
		return ev, fmt.Errorf("event/next: %w", err)
	}
	if err := json.Unmarshal(resp.body, &ev); err != nil {
		return ev, fmt.Errorf("event/next: %w", err)
	}
	return ev, nil
}

// reportError tells Lambda the extension failed during init ("init") or later ("exit").
func (c *apiClient) reportError(ctx context.Context, phase, kind string) {
	_, _ = c.do(ctx, http.MethodPost, "/2020-01-01/extension/"+phase+"/error", nil, map[string]string{errorType: kind})
}

// subscribePlatform subscribes listener to the Telemetry API's platform events, for
// platform.runtimeDone. ok is false where the API is not offered (the Runtime Interface
// Emulator answers 202 with Telemetry.NotSupported).
func (c *apiClient) subscribePlatform(ctx context.Context, uri string) (bool, error) {
	body, _ := json.Marshal(map[string]any{
		"schemaVersion": "2022-12-13",
		"types":         []string{"platform"},
		// the smallest buffering Lambda allows: runtimeDone reaches us 25 ms after it happens
		"buffering":   map[string]int{"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
		"destination": map[string]string{"protocol": "HTTP", "URI": uri},
	})
	resp, err := c.do(ctx, http.MethodPut, "/2022-07-01/telemetry", body, nil)
	if err != nil {
		return false, fmt.Errorf("telemetry subscribe: %w", err)
	}
	var answer struct {
		ErrorType string `json:"errorType"`
	}
	_ = json.Unmarshal(resp.body, &answer)
	return answer.ErrorType == "", nil
}

type answer struct {
	Header http.Header
	body   []byte
}

func (c *apiClient) do(ctx context.Context, method, path string, body []byte, headers map[string]string) (*answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if c.id != "" {
		req.Header.Set(idHeader, c.id)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	return &answer{Header: resp.Header, body: data}, nil
}

// runtimeDone receives the Telemetry API's platform events and tells, per request id,
// when the runtime has finished the invocation (posted its response or error).
type runtimeDone struct {
	mu      sync.Mutex
	done    map[string]chan struct{}
	server  *http.Server
	address string
}

func startRuntimeDone() (*runtimeDone, error) {
	// Lambda delivers telemetry to sandbox.localdomain; elsewhere, loopback
	listener, err := net.Listen("tcp", "sandbox.localdomain:0")
	if err != nil {
		if listener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
	}
	r := &runtimeDone{done: map[string]chan struct{}{}}
	r.address = listener.Addr().String()
	if host, port, err := net.SplitHostPort(r.address); err == nil && host != "127.0.0.1" {
		r.address = net.JoinHostPort("sandbox.localdomain", port)
	}
	r.server = &http.Server{Handler: http.HandlerFunc(r.receive), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.server.Serve(listener) }()
	return r, nil
}

func (r *runtimeDone) uri() string { return "http://" + r.address }

func (r *runtimeDone) receive(w http.ResponseWriter, req *http.Request) {
	var events []struct {
		Type   string `json:"type"`
		Record struct {
			RequestID string `json:"requestId"`
		} `json:"record"`
	}
	_ = json.NewDecoder(io.LimitReader(req.Body, 8<<20)).Decode(&events)
	for _, e := range events {
		if e.Type == "platform.runtimeDone" {
			r.finished(e.Record.RequestID)
		}
	}
	w.WriteHeader(http.StatusOK)
}

func (r *runtimeDone) finished(requestID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := r.channelLocked(requestID)
	select {
	case <-ch: // told twice
	default:
		close(ch)
	}
}

func (r *runtimeDone) channel(requestID string) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.channelLocked(requestID)
}

func (r *runtimeDone) channelLocked(requestID string) chan struct{} {
	ch, ok := r.done[requestID]
	if !ok {
		if len(r.done) > 1000 { // ids nobody waits for any more
			clear(r.done)
		}
		ch = make(chan struct{})
		r.done[requestID] = ch
	}
	return ch
}

// wait returns true when the runtime is done with requestID, false at the deadline.
func (r *runtimeDone) wait(ctx context.Context, requestID string, deadline time.Time) bool {
	ch := r.channel(requestID)
	defer func() {
		r.mu.Lock()
		delete(r.done, requestID)
		r.mu.Unlock()
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-ch:
		return true
	case <-timer.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (r *runtimeDone) close() { _ = r.server.Close() }
