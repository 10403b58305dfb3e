package doowexporter

import (
	"context"
	"net/http"
	"sync"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/doow/doow-otel/exporter/doowexporter/internal/metadata"
)

// What the exporter could not bill is an operator's business: it is counted on the
// collector's own metrics (service::telemetry, next to exporterhelper's sent and failed
// items) and logged with the fix. The metrics carry the Python client's names
// (doow_otel.self_metrics) where they mean the same: doow.exporter.event.exported with
// error.type, doow.exporter.rate_limited, doow.exporter.usage.not_billed,
// doow.exporter.event.budget (metadata.yaml).

// fixes says, for each reason code, how to stop the drops at the source.
var fixes = map[string]string{
	"cardinality_overflow":   "the SDK's cardinality limit folded attribute sets together; raise it for usage metrics",
	"cumulative_temporality": "use delta temporality in the SDK, or put the cumulative_to_delta processor before the doow exporter",
	"histogram_without_sum":  "record non-negative values, or set histogram_quantity: count",
	"invalid_quantity":       "usage quantities must be finite and not negative",
	"invalid_metric_name":    "metric names may contain letters, digits and _ . : - (at most 128)",
	"invalid_license":        "license ids are at most 128 characters",
	"missing_time":           "the record has no timestamp",
	"missing_metric":         "a doow.usage event needs a string doow.metric attribute",
	"missing_quantity":       "a doow.usage event needs a numeric doow.quantity attribute",
	"missing_license":        "set doow.license_id on the record or the resource, or configure default_license_id",
	"not_json":               "a doow.usage record's body must be a JSON object (docs/conversion.md, Usage records)",
	"invalid_kind":           "kind is USAGE or ADJUSTMENT",
	"invalid_time":           "timestamp is RFC 3339 with a timezone, between 2000 and 2100",
	"invalid_field":          "a usage record field has the wrong type or is unknown (docs/conversion.md, Usage records)",
}

type telemetry struct {
	logger  *zap.Logger
	metrics *metadata.TelemetryBuilder // generated from metadata.yaml

	mu       sync.Mutex
	reported map[strippedAttr]bool
}

// maxReported bounds the stripped keys remembered; past it, new ones are not logged.
const maxReported = 1024

func newTelemetry(set component.TelemetrySettings, p *pacer) (*telemetry, error) {
	metrics, err := metadata.NewTelemetryBuilder(set)
	if err != nil {
		return nil, err
	}
	// the budget the pacer keeps to, read at each collection; none while it is unknown
	err = metrics.RegisterExporterEventBudgetCallback(func(_ context.Context, o metric.Int64Observer) error {
		if budget := p.currentBudget(); budget > 0 {
			o.Observe(int64(budget))
		}
		return nil
	})
	return &telemetry{logger: set.Logger, metrics: metrics, reported: map[strippedAttr]bool{}}, err
}

// Values of error.type on doow.exporter.event.exported (as the Python client's).
var (
	exportedRejected = metric.WithAttributes(attribute.String("error.type", "rejected"))
	exportedRefused  = metric.WithAttributes(attribute.String("error.type", "refused"))
)

// converted reports a push's conversion once the push is done (not on every retry):
// drops are counted and logged, and each stripped key is logged the first time.
func (t *telemetry) converted(ctx context.Context, result conversion) {
	for code, count := range result.dropped {
		t.metrics.ExporterUsageNotBilled.Add(ctx, int64(count), metric.WithAttributes(attribute.String("error.type", code)))
		t.logger.Warn("usage dropped", zap.String("reason", code), zap.Int("count", count), zap.String("fix", fixes[code]))
	}
	for _, where := range result.badRecords {
		t.logger.Warn("bad usage record skipped", zap.String("record", where))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for s := range result.stripped {
		if !t.reported[s] && len(t.reported) < maxReported {
			t.reported[s] = true
			// the value is never logged: it is the very thing that must not leak
			t.logger.Warn("attribution stripped", zap.String("key", s.key), zap.String("reason", s.reason))
		}
	}
}

// answered counts what Doow's answer settles: the events it kept (delivered; those it
// rejected are counted by rejectedEvents), and its 429s.
func (t *telemetry) answered(ctx context.Context, status int, d decision) {
	switch {
	case d.action == actionDelivered:
		t.metrics.ExporterEventExported.Add(ctx, int64(d.accepted))
	case status == http.StatusTooManyRequests:
		t.metrics.ExporterRateLimited.Add(ctx, 1)
	}
}

// aggregated counts the points a push added to the windows, and those seen before.
func (t *telemetry) aggregated(ctx context.Context, added, repeated int) {
	t.metrics.ExporterPointAggregated.Add(ctx, int64(added))
	t.metrics.ExporterPointRepeated.Add(ctx, int64(repeated))
}

// rejectedEvents reports a 207: how many events Doow rejected, and each one's reason.
func (t *telemetry) rejectedEvents(ctx context.Context, rejected, sent int, reasons []rejection) {
	t.metrics.ExporterEventExported.Add(ctx, int64(rejected), exportedRejected)
	t.logger.Warn("Doow rejected events", zap.Int("rejected", rejected), zap.Int("sent", sent))
	for _, r := range reasons {
		if r.Metric != "" {
			// one measurement of a packed event; the others were sent again (rule R)
			t.logger.Warn("measurement rejected", zap.String("event_id", r.EventID), zap.String("metric", r.Metric),
				zap.String("refused", r.refused), zap.String("reason", r.Reason))
		} else {
			t.logger.Warn("event rejected", zap.String("event_id", r.EventID), zap.String("refused", r.refused), zap.String("reason", r.Reason))
		}
	}
}

// refused reports a batch Doow refused for good, with Doow's reason.
func (t *telemetry) refused(ctx context.Context, r *refusal) {
	t.metrics.ExporterEventExported.Add(ctx, int64(r.events), exportedRefused)
	t.logger.Error("Doow refused a batch; its events are dropped", zap.Int("events", r.events), zap.String("reason", r.reason))
}
