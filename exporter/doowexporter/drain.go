package doowexporter

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// drainListener is implemented by a collector extension that must know when the usage
// this exporter accepted has left it: the Lambda extension (doowlambdaextension) holds
// the environment's freeze until then. Items are data points, spans or log records, as
// the sending queue counts them.
type drainListener interface {
	Accepted(items int)
	Finished(items int) // delivered, or refused for good
	Failed()            // an attempt failed; the items stay queued for a retry
}

// drainHook finds a drainListener among the host's extensions at start and reports to it.
type drainHook struct{ listener atomic.Pointer[drainListener] }

func (h *drainHook) start(host component.Host) {
	if host == nil {
		return
	}
	for _, ext := range host.GetExtensions() {
		if l, ok := ext.(drainListener); ok {
			h.listener.Store(&l)
			return
		}
	}
}

func (h *drainHook) accepted(items int) {
	if l := h.listener.Load(); l != nil {
		(*l).Accepted(items)
	}
}

// refused: the pipeline got err back for items counted as accepted. A permanent error
// came from a push (no sending queue), which reported them finished already; any other
// is a full queue, or retries given up on without a queue.
func (h *drainHook) refused(items int, err error) {
	if l := h.listener.Load(); l != nil && !consumererror.IsPermanent(err) {
		(*l).Finished(items)
	}
}

func (h *drainHook) pushed(items int, err error) {
	if l := h.listener.Load(); l != nil {
		if err == nil || consumererror.IsPermanent(err) {
			(*l).Finished(items)
		} else {
			(*l).Failed()
		}
	}
}

func (h *drainHook) pushMetrics(push func(context.Context, pmetric.Metrics) error) func(context.Context, pmetric.Metrics) error {
	return func(ctx context.Context, md pmetric.Metrics) error {
		err := push(ctx, md)
		h.pushed(md.DataPointCount(), err)
		return err
	}
}

func (h *drainHook) pushTraces(push func(context.Context, ptrace.Traces) error) func(context.Context, ptrace.Traces) error {
	return func(ctx context.Context, td ptrace.Traces) error {
		err := push(ctx, td)
		h.pushed(td.SpanCount(), err)
		return err
	}
}

func (h *drainHook) pushLogs(push func(context.Context, plog.Logs) error) func(context.Context, plog.Logs) error {
	return func(ctx context.Context, ld plog.Logs) error {
		err := push(ctx, ld)
		h.pushed(ld.LogRecordCount(), err)
		return err
	}
}

// The exporters as the pipeline sees them: counting what enters the sending queue.

type drainedMetrics struct {
	exporter.Metrics
	hook *drainHook
}

func (d drainedMetrics) Start(ctx context.Context, host component.Host) error {
	d.hook.start(host)
	return d.Metrics.Start(ctx, host)
}

func (d drainedMetrics) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	items := md.DataPointCount() // counted first: the queue may hand md on at once
	d.hook.accepted(items)
	err := d.Metrics.ConsumeMetrics(ctx, md)
	if err != nil {
		d.hook.refused(items, err)
	}
	return err
}

type drainedTraces struct {
	exporter.Traces
	hook *drainHook
}

func (d drainedTraces) Start(ctx context.Context, host component.Host) error {
	d.hook.start(host)
	return d.Traces.Start(ctx, host)
}

func (d drainedTraces) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	items := td.SpanCount()
	d.hook.accepted(items)
	err := d.Traces.ConsumeTraces(ctx, td)
	if err != nil {
		d.hook.refused(items, err)
	}
	return err
}

type drainedLogs struct {
	exporter.Logs
	hook *drainHook
}

func (d drainedLogs) Start(ctx context.Context, host component.Host) error {
	d.hook.start(host)
	return d.Logs.Start(ctx, host)
}

func (d drainedLogs) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	items := ld.LogRecordCount()
	d.hook.accepted(items)
	err := d.Logs.ConsumeLogs(ctx, ld)
	if err != nil {
		d.hook.refused(items, err)
	}
	return err
}

func (h *drainHook) metrics(exp exporter.Metrics, err error) (exporter.Metrics, error) {
	if err != nil {
		return nil, err
	}
	return drainedMetrics{exp, h}, nil
}

func (h *drainHook) traces(exp exporter.Traces, err error) (exporter.Traces, error) {
	if err != nil {
		return nil, err
	}
	return drainedTraces{exp, h}, nil
}

func (h *drainHook) logs(exp exporter.Logs, err error) (exporter.Logs, error) {
	if err != nil {
		return nil, err
	}
	return drainedLogs{exp, h}, nil
}
