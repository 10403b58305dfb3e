package doowexporter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"
)

// doowExporter converts OTLP data to Doow batches and posts them; the exporterhelper
// around it queues (persistently with file_storage) and retries what it returns as
// retryable. Retrying a whole push is safe: every event id and batch id is
// deterministic, and Doow counts a resent event once.
type doowExporter struct {
	cfg       *Config
	url       string
	opts      conversionOptions
	logger    *zap.Logger
	telemetry *telemetry
	client    *http.Client
}

func newExporter(cfg *Config, set exporter.Settings) (*doowExporter, error) {
	t, err := newTelemetry(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	return &doowExporter{
		cfg:       cfg,
		url:       strings.TrimRight(cfg.Endpoint, "/") + "/telemetry/events",
		opts:      cfg.conversionOptions(),
		logger:    set.Logger,
		telemetry: t,
	}, nil
}

func (e *doowExporter) start(context.Context, component.Host) error {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// the queue's consumers post in parallel: keep a connection for each
	transport.MaxIdleConnsPerHost = 64
	e.client = &http.Client{Timeout: e.cfg.Timeout, Transport: transport}
	return nil
}

func (e *doowExporter) shutdown(context.Context) error {
	if e.client != nil {
		e.client.CloseIdleConnections()
	}
	return nil
}

func (e *doowExporter) pushMetrics(ctx context.Context, md pmetric.Metrics) error {
	return e.deliver(ctx, convertMetrics(md, e.opts))
}

func (e *doowExporter) pushTraces(ctx context.Context, td ptrace.Traces) error {
	return e.deliver(ctx, convertTraces(td, e.opts))
}

func (e *doowExporter) pushLogs(ctx context.Context, ld plog.Logs) error {
	return e.deliver(ctx, convertLogs(ld, e.opts))
}

// deliver sends a push's events; what could not be converted is reported once the push
// is done, delivered or refused for good, rather than on every retry.
func (e *doowExporter) deliver(ctx context.Context, result conversion) error {
	var errs []error
	for _, b := range makeBatches(result.events) {
		errs = append(errs, e.send(ctx, b))
	}
	err := e.combine(errs)
	if err == nil || consumererror.IsPermanent(err) {
		e.telemetry.converted(ctx, result)
	}
	return err
}

// combine decides what a push whose batches failed differently returns. One retryable
// failure makes the whole push retryable, even when another batch was refused for good
// (consumererror would otherwise drop them all): the retry resends the accepted batches
// under the same ids, which Doow counts once.
func (e *doowExporter) combine(errs []error) error {
	var retryable, permanent []error
	for _, err := range errs {
		switch {
		case err == nil:
		case consumererror.IsPermanent(err):
			permanent = append(permanent, err)
		default:
			retryable = append(retryable, err)
		}
	}
	if len(retryable) == 0 {
		return errors.Join(permanent...)
	}
	for _, err := range permanent {
		e.logger.Error("Doow refused a batch; it is resent with the rest of the push", zap.Error(err))
	}
	return errors.Join(retryable...)
}

// send posts one batch and maps Doow's answer onto the collector's retry machinery.
func (e *doowExporter) send(ctx context.Context, b batch) error {
	body, encoding := compress(b.body())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	req.Header.Set("Authorization", "Bearer "+string(e.cfg.APIKey))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "doow-otel-collector/"+version)
	req.Header.Set("X-Doow-SDK-Version", version)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		// net/http errors name the URL, never the headers: safe to pass on.
		return fmt.Errorf("posting %d events to Doow: %w", len(b.events), err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))

	switch status := resp.StatusCode; {
	case status == http.StatusMultiStatus:
		e.reportRejections(ctx, answer, len(b.events))
		return nil // rejected events are never resent
	case status >= 200 && status < 300:
		return nil
	case status == http.StatusRequestEntityTooLarge && len(b.events) > 1:
		left, right := b.halves()
		return e.combine([]error{e.send(ctx, left), e.send(ctx, right)})
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		err := fmt.Errorf("Doow answered %d: %s", status, snippet(answer))
		if delay, ok := retryAfter(resp.Header.Get("Retry-After"), resp.Header.Get("X-Doow-Rate-Limits")); ok {
			return exporterhelper.NewThrottleRetry(err, delay)
		}
		return err
	case status == http.StatusUnauthorized:
		return consumererror.NewPermanent(errors.New("Doow answered 401: the API key is missing, malformed or revoked; check api_key"))
	case status >= 400 && status < 500:
		return consumererror.NewPermanent(fmt.Errorf("Doow answered %d: %s", status, snippet(answer)))
	default:
		return fmt.Errorf("Doow answered %d: %s", status, snippet(answer))
	}
}

// maxAnswerBytes bounds what is read of an answer: a 207 lists up to 500 rejections.
const maxAnswerBytes = 1 << 20

type rejection struct {
	EventID string `json:"event_id"`
	Reason  string `json:"reason"`
}

func (e *doowExporter) reportRejections(ctx context.Context, answer []byte, sent int) {
	var parsed struct {
		Rejected   int         `json:"rejected"`
		Rejections []rejection `json:"rejections"`
	}
	_ = json.Unmarshal(answer, &parsed)
	e.telemetry.rejectedEvents(ctx, max(parsed.Rejected, len(parsed.Rejections)), sent, parsed.Rejections)
}

// retryAfter reads Retry-After (seconds or an HTTP date) and X-Doow-Rate-Limits
// ({"<category>": {"retry_after": seconds}}); the longest wait wins.
func retryAfter(header, limits string) (time.Duration, bool) {
	var wait time.Duration
	found := false
	if header != "" {
		if seconds, err := strconv.ParseUint(header, 10, 32); err == nil {
			wait, found = time.Duration(seconds)*time.Second, true
		} else if date, err := http.ParseTime(header); err == nil {
			wait, found = max(time.Until(date), 0), true
		}
	}
	var categories map[string]struct {
		RetryAfter float64 `json:"retry_after"`
	}
	if limits != "" && json.Unmarshal([]byte(limits), &categories) == nil {
		for _, c := range categories {
			if c.RetryAfter > 0 && c.RetryAfter < 1<<32 {
				wait, found = max(wait, time.Duration(c.RetryAfter*float64(time.Second))), true
			}
		}
	}
	return wait, found
}

func snippet(answer []byte) string {
	text := strings.TrimSpace(string(answer))
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	return text
}
