package doowexporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configcompression"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/extension/xextension/storage"
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
	userAgent string
	opts      conversionOptions
	settings  component.TelemetrySettings
	logger    *zap.Logger
	telemetry *telemetry
	redact    redactor
	pacer     *pacer
	delivered deliveredBatches
	client    *http.Client

	// aggregation (aggregator.go), when configured, for the metrics exporter
	id     component.ID
	set    exporter.Settings
	agg    *aggregator
	store  storage.Client
	sealed exporter.Logs
	stop   context.CancelFunc
	done   chan struct{}
	// problem is the configuration problem last logged ("auth", "endpoint" or "")
	problem atomic.Value
}

func newExporter(cfg *Config, set exporter.Settings) (*doowExporter, error) {
	p := sharedPacer(set.ID, cfg.EventsPerMinute)
	t, err := newTelemetry(set.TelemetrySettings, p)
	if err != nil {
		return nil, err
	}
	e := &doowExporter{
		cfg:       cfg,
		url:       strings.TrimRight(cfg.Endpoint, "/") + "/telemetry/events",
		userAgent: userAgent(set.BuildInfo),
		opts:      cfg.conversionOptions(),
		settings:  set.TelemetrySettings,
		logger:    set.Logger,
		telemetry: t,
		redact:    newRedactor(cfg),
		pacer:     p,
		id:        set.ID,
		set:       set,
	}
	e.problem.Store("")
	return e, nil
}

// userAgent names the distribution and its version, then this exporter, e.g.
// "otelcol-doow/0.1.0 doowexporter/0.1.0".
func userAgent(build component.BuildInfo) string {
	return fmt.Sprintf("%s/%s doowexporter/%s", build.Command, build.Version, version)
}

// start builds the HTTP client from the standard settings (TLS, proxy, headers,
// auth extensions, compression, keep-alive, timeout).
func (e *doowExporter) start(ctx context.Context, host component.Host) error {
	var extensions map[component.ID]component.Component
	if host != nil {
		extensions = host.GetExtensions()
	}
	client, err := e.cfg.ToClient(ctx, extensions, e.settings)
	if err != nil {
		return err
	}
	client.CheckRedirect = neverRedirect
	e.client = client
	e.warnAboutLosses()
	return nil
}

// startAggregation opens the aggregation's storage, loads what a previous run left,
// starts the sealed windows' queue and the loop that seals windows as they come due.
func (e *doowExporter) startAggregation(ctx context.Context, host component.Host) error {
	cfg := e.cfg.Aggregation.Get()
	ext, ok := host.GetExtensions()[cfg.Storage]
	if !ok {
		return fmt.Errorf("aggregation.storage: no extension %s in service::extensions", cfg.Storage)
	}
	storageExt, ok := ext.(storage.Extension)
	if !ok {
		return fmt.Errorf("aggregation.storage: %s is not a storage extension; use file_storage", cfg.Storage)
	}
	store, err := storageExt.GetClient(ctx, component.KindExporter, e.id, "aggregation")
	if err != nil {
		return err
	}
	e.store = store
	if e.sealed, err = newSealedQueue(ctx, e.set, e.cfg, e); err != nil {
		return err
	}
	if err := e.sealed.Start(ctx, host); err != nil {
		return err
	}
	e.agg = newAggregator(*cfg, store, time.Now, func(ctx context.Context, events []event) error {
		return e.sealed.ConsumeLogs(ctx, sealedLogs(events))
	})
	if err := e.agg.load(ctx); err != nil {
		return err
	}
	loop, stop := context.WithCancel(context.Background())
	e.stop, e.done = stop, make(chan struct{})
	go e.sealLoop(loop, min(time.Second, cfg.Window/10))
	return nil
}

// sealLoop seals windows as they come due; a failure (the queue full, the disk) is
// logged and tried again on the next tick, the window's usage kept meanwhile.
func (e *doowExporter) sealLoop(ctx context.Context, every time.Duration) {
	defer close(e.done)
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		err := e.agg.sealDue(ctx, false)
		if err != nil && !failing {
			e.logger.Error("sealing an aggregation window failed; its usage is kept and sealing is tried again", zap.Error(e.redact.err(err)))
		}
		failing = err != nil
	}
}

// warnAboutLosses says which settings can lose usage, and which Doow may refuse.
func (e *doowExporter) warnAboutLosses() {
	if c := e.cfg.Compression; c.IsCompressed() && c != configcompression.TypeGzip {
		e.logger.Warn("Doow's ingest API documents gzip only; if it answers 415, set compression: gzip", zap.String("compression", string(c)))
	}
	if !e.cfg.RetryConfig.Enabled {
		e.logger.Warn("retry_on_failure is disabled: usage that meets a transient failure (a 503, a dropped connection) is dropped; enable it")
	} else if e.cfg.RetryConfig.MaxElapsedTime > 0 {
		e.logger.Warn("retry_on_failure.max_elapsed_time is set: usage still failing after it (an outage, a revoked api_key) is dropped; set it to 0 to retry until delivered",
			zap.Duration("max_elapsed_time", e.cfg.RetryConfig.MaxElapsedTime))
	}
}

// neverRedirect keeps redirects from being followed: they would carry the API key to
// another host, and a redirected endpoint is a configuration error (status.go).
func neverRedirect(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}

func (e *doowExporter) shutdown(ctx context.Context) error {
	var errs []error
	if e.agg != nil {
		e.stop()
		<-e.done
		// every open window is sealed now, into the queue on disk: a gateway that is
		// scaled in leaves no usage in its windows (a restart costs one more event per
		// stream, never more usage)
		if err := e.agg.sealDue(ctx, true); err != nil {
			errs = append(errs, fmt.Errorf("sealing the open windows at shutdown (they are kept and sealed at the next start): %w", err))
		}
	}
	if e.sealed != nil {
		errs = append(errs, e.sealed.Shutdown(ctx))
	}
	if e.store != nil {
		errs = append(errs, e.store.Close(ctx))
	}
	if e.client != nil {
		e.client.CloseIdleConnections()
	}
	e.telemetry.metrics.Shutdown()
	return errors.Join(errs...)
}

func (e *doowExporter) pushMetrics(ctx context.Context, md pmetric.Metrics) error {
	result := convertMetrics(md, e.opts)
	if e.agg != nil {
		// metric points go into their windows (stored before the push succeeds); a
		// metrics push makes nothing else, nothing to deliver now
		added, repeated, err := e.agg.apply(ctx, result.events)
		if err == nil {
			e.telemetry.converted(ctx, result) // what could not be converted, reported once
			e.telemetry.aggregated(ctx, added, repeated)
		}
		result.release()
		return e.redact.err(err)
	}
	return e.deliver(ctx, result)
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
	defer result.release() // the push's events and buffers serve the next push
	var errs []error
	batches := makeBatches(pack(result.events))
	for _, b := range batches {
		now := time.Now()
		if e.delivered.has(b.id, now) {
			continue // delivered by an earlier attempt of this push
		}
		if wait := e.pacer.admit(b.id, len(b.events), now); wait > 0 {
			// this batch and the ones after it wait, in order, in the sending queue
			err := fmt.Errorf("%d events wait %s for Doow's event budget", len(b.events), wait.Round(time.Millisecond))
			errs = append(errs, exporterhelper.NewThrottleRetry(err, wait))
			break
		}
		err := e.send(ctx, b)
		if err == nil {
			e.delivered.add(b.id, time.Now())
		}
		errs = append(errs, err)
	}
	if text := e.pacer.overBudget(time.Now()); text != "" {
		e.logger.Warn(text)
	}
	if _, ok := ownGzip(e.cfg.ClientConfig); ok {
		releaseBodies(batches) // they went out as gzipped copies
	}
	err := e.combine(errs)
	if err == nil || consumererror.IsPermanent(err) {
		e.telemetry.converted(ctx, result)
	}
	if consumererror.IsPermanent(err) {
		for _, r := range refusals(err) {
			e.telemetry.refused(ctx, r)
		}
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

// send posts one batch and maps the decision on Doow's answer (status.go) onto the
// collector's machinery: a retryable error keeps the batch in the sending queue, a
// permanent one drops it. No error it returns holds a secret (redact.go).
func (e *doowExporter) send(ctx context.Context, b batch) error {
	return e.redact.err(e.post(ctx, b))
}

func (e *doowExporter) post(ctx context.Context, b batch) error {
	// compression (gzip by default) is confighttp's, in the client's transport, except
	// gzip at levels 1-9, done here at half the CPU (confighttp leaves encoded bodies be)
	body, gzipped := b.body(), false
	if level, ok := ownGzip(e.cfg.ClientConfig); ok {
		body, gzipped = gzipBody(body, level), true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	if gzipped {
		req.Header.Set("Content-Encoding", "gzip")
	}
	req.Header.Set("Authorization", "Bearer "+string(e.cfg.APIKey))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", e.userAgent)
	req.Header.Set("X-Doow-SDK-Version", version)
	resp, err := e.client.Do(req)
	if err != nil {
		// net/http errors name the URL, never the headers; a proxy's may say more
		return fmt.Errorf("posting %d events to Doow: %w", len(b.events), e.redact.err(err))
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return fmt.Errorf("reading Doow's answer to %d events: %w", len(b.events), err)
	}

	// an answer may echo the request's headers: redacted before anything reads it (a
	// snippet or a reason cut short could keep part of a secret), and what is decoded
	// from it again (a secret written with JSON escapes)
	answer = []byte(e.redact.text(string(answer)))
	now := time.Now()
	d := decide(b.eventIDs, resp.StatusCode, resp.Header, answer, now)
	e.pacer.learn(resp.StatusCode, resp.Header, d.retryAfter, d.hasWait, now)
	e.telemetry.answered(ctx, resp.StatusCode, d)
	d.reason = e.redact.text(d.reason)
	for i := range d.rejected {
		d.rejected[i].Reason = e.redact.text(d.rejected[i].Reason)
	}
	if d.action != actionKeep {
		e.configurationOK()
	}
	switch d.action {
	case actionDelivered:
		if len(d.rejected) == 0 {
			return nil
		}
		// rejected events are never resent; the other measurements of a packed event
		// whose one measurement was rejected go again at once (rule R)
		repacked := repackRejected(b.source, d.rejected)
		e.telemetry.rejectedEvents(ctx, len(d.rejected), len(b.events), d.rejected)
		if len(repacked) == 0 {
			return nil
		}
		var errs []error
		for _, again := range makeBatches(repacked) {
			e.pacer.note(len(again.events), time.Now())
			errs = append(errs, e.send(ctx, again))
		}
		return e.combine(errs)
	case actionSplit:
		left, right := b.halves()
		return e.combine([]error{e.send(ctx, left), e.send(ctx, right)})
	case actionReject:
		return consumererror.NewPermanent(&refusal{events: len(b.events), reason: d.reason})
	case actionKeep:
		err := e.configurationError(resp.StatusCode, d.problem)
		return fmt.Errorf("%d events kept for a retry: %w", len(b.events), err)
	default: // retry
		err := fmt.Errorf("Doow answered %d to %d events: %s", resp.StatusCode, len(b.events), snippet(answer))
		if d.hasWait {
			return exporterhelper.NewThrottleRetry(err, d.retryAfter)
		}
		return err
	}
}

// maxAnswerBytes bounds what is read of an answer: a 207 lists up to 500 rejections.
const maxAnswerBytes = 1 << 20

// refusal is a batch Doow will never take as it is (400, other 4xx, a 413 of one event).
type refusal struct {
	events int
	reason string
}

func (r *refusal) Error() string {
	return fmt.Sprintf("Doow refused %d events: %s", r.events, r.reason)
}

// refusals lists the refusals in a push's error.
func refusals(err error) []*refusal {
	var found []*refusal
	var walk func(error)
	walk = func(err error) {
		if r, ok := err.(*refusal); ok {
			found = append(found, r)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, inner := range u.Unwrap() {
				walk(inner)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	if err != nil {
		walk(err)
	}
	return found
}

// configurationError logs a wrong api_key or endpoint once, until an answer shows it
// fixed, and returns the error the push fails with. The usage stays in the queue and is
// retried: a rotated key or a corrected endpoint (and a restart) delivers it.
func (e *doowExporter) configurationError(status int, problem string) error {
	var err error
	if problem == problemAuth {
		err = fmt.Errorf("configuration error: Doow refused the API key (HTTP %d): set api_key to a valid Doow SDK key (dk_...) and restart the collector; usage is kept in the sending queue meanwhile", status)
	} else {
		err = fmt.Errorf("configuration error: %s did not answer as Doow's ingest API (HTTP %d): check endpoint (Doow's is https://api.doow.co) and restart the collector; usage is kept in the sending queue meanwhile", e.url, status)
	}
	err = e.redact.err(err) // the endpoint may hold a password
	if e.problem.Swap(problem) != problem {
		e.logger.Error("Doow exporter misconfigured: usage is not delivered", zap.Error(err))
	}
	return err
}

// configurationOK notes an answer that shows api_key and endpoint right.
func (e *doowExporter) configurationOK() {
	if old := e.problem.Swap(""); old != "" {
		e.logger.Info("Doow accepts the exporter's configuration again; kept usage is being delivered", zap.Any("was", old))
	}
}

func snippet(answer []byte) string {
	text := strings.TrimSpace(string(answer))
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	return text
}
