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
	cfg    *Config
	url    string
	opts   conversionOptions
	logger *zap.Logger
	client *http.Client
}

func newExporter(cfg *Config, set exporter.Settings) *doowExporter {
	return &doowExporter{
		cfg:    cfg,
		url:    strings.TrimRight(cfg.Endpoint, "/") + "/telemetry/events",
		opts:   cfg.conversionOptions(),
		logger: set.Logger,
	}
}

func (e *doowExporter) start(context.Context, component.Host) error {
	e.client = &http.Client{Timeout: e.cfg.Timeout}
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

func (e *doowExporter) deliver(ctx context.Context, result conversion) error {
	for code, count := range result.dropped {
		e.logger.Warn("usage dropped", zap.String("reason", code), zap.Int("count", count))
	}
	for reason, count := range result.stripped {
		e.logger.Warn("attribution stripped", zap.String("reason", reason), zap.Int("count", count))
	}
	var errs []error
	for _, b := range makeBatches(result.events) {
		if err := e.send(ctx, b); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64*1024))

	switch status := resp.StatusCode; {
	case status == http.StatusOK || status == http.StatusAccepted:
		return nil
	case status == http.StatusMultiStatus:
		e.reportRejections(answer, len(b.events))
		return nil // rejected events are never resent
	case status == http.StatusRequestEntityTooLarge && len(b.events) > 1:
		left, right := b.halves()
		return errors.Join(e.send(ctx, left), e.send(ctx, right))
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

func (e *doowExporter) reportRejections(answer []byte, sent int) {
	var parsed struct {
		Rejections []struct {
			EventID string `json:"event_id"`
			Reason  string `json:"reason"`
		} `json:"rejections"`
	}
	_ = json.Unmarshal(answer, &parsed)
	e.logger.Warn("Doow rejected events", zap.Int("rejected", len(parsed.Rejections)), zap.Int("sent", sent))
	for _, r := range parsed.Rejections {
		e.logger.Warn("event rejected", zap.String("event_id", r.EventID), zap.String("reason", r.Reason))
	}
}

// retryAfter reads Retry-After (seconds or an HTTP date) and X-Doow-Rate-Limits
// ({"<category>": {"retry_after": seconds}}); the longest wait wins.
func retryAfter(header, limits string) (time.Duration, bool) {
	var wait time.Duration
	found := false
	if header != "" {
		if seconds, err := strconv.ParseFloat(header, 64); err == nil {
			wait, found = time.Duration(seconds*float64(time.Second)), true
		} else if date, err := http.ParseTime(header); err == nil {
			wait, found = time.Until(date), true
		}
	}
	var categories map[string]struct {
		RetryAfter float64 `json:"retry_after"`
	}
	if limits != "" && json.Unmarshal([]byte(limits), &categories) == nil {
		for _, c := range categories {
			if d := time.Duration(c.RetryAfter * float64(time.Second)); d > wait {
				wait, found = d, true
			}
		}
	}
	if wait < 0 {
		wait = 0
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
