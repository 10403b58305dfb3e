package doowlambdaextension

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/extensioncapabilities"
	"go.uber.org/zap"
)

const (
	// kept free before an invocation's deadline: Lambda ends the invoke phase there
	invokeMargin = 50 * time.Millisecond
	// kept free before the shutdown deadline, for the collector to stop and close its queue
	shutdownMargin = 150 * time.Millisecond
)

type lambdaExtension struct {
	cfg    *Config
	logger *zap.Logger
	drain  *drain
	stop   func() // stops the collector after SHUTDOWN
	cancel context.CancelFunc
	done   sync.WaitGroup
}

var _ extensioncapabilities.PipelineWatcher = (*lambdaExtension)(nil)

func newLambdaExtension(cfg *Config, logger *zap.Logger) *lambdaExtension {
	return &lambdaExtension{cfg: cfg, logger: logger, drain: newDrain(), stop: stopCollector}
}

// Accepted, Finished and Failed are the doow exporter's reports (see drain).
func (x *lambdaExtension) Accepted(items int) { x.drain.Accepted(items) }
func (x *lambdaExtension) Finished(items int) { x.drain.Finished(items) }
func (x *lambdaExtension) Failed()            { x.drain.Failed() }

func (x *lambdaExtension) Start(context.Context, component.Host) error { return nil }

// Ready runs once every pipeline has started: only then does the extension register,
// so Lambda starts the function's runtime with the OTLP receiver already listening.
func (x *lambdaExtension) Ready() error {
	address := os.Getenv("AWS_LAMBDA_RUNTIME_API")
	if address == "" {
		x.logger.Warn("AWS_LAMBDA_RUNTIME_API is not set: not running as a Lambda extension; the pipeline runs as a plain collector")
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	x.cancel = cancel
	api := newAPIClient(address)
	if err := api.register(ctx, filepath.Base(os.Args[0])); err != nil {
		cancel()
		return err // the collector fails to start; Lambda reports the extension's exit
	}
	done, err := startRuntimeDone()
	if err == nil {
		var ok bool
		if ok, err = api.subscribePlatform(ctx, done.uri()); !ok || err != nil {
			done.close()
			done = nil
		}
	}
	if done == nil {
		// the Runtime Interface Emulator: no platform events, and no freeze either
		x.logger.Info("Lambda Telemetry API not offered: each invocation is acknowledged at once, usage is exported in the background", zap.Error(err))
	}
	x.done.Add(1)
	go func() {
		defer x.done.Done()
		x.loop(ctx, api, done)
	}()
	return nil
}

func (x *lambdaExtension) NotReady() error { return nil }

func (x *lambdaExtension) Shutdown(context.Context) error {
	if x.cancel != nil {
		x.cancel()
		x.done.Wait()
	}
	return nil
}

func (x *lambdaExtension) loop(ctx context.Context, api *apiClient, runtime *runtimeDone) {
	if runtime != nil {
		defer runtime.close()
	}
	for {
		ev, err := api.next(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			x.logger.Error("Lambda Extensions API failed; stopping", zap.Error(err))
			api.reportError(ctx, "exit", "Extension.EventNextFailed")
			x.stop()
			return
		}
		switch ev.EventType {
		case "INVOKE":
			x.afterInvoke(ctx, ev, runtime)
		case "SHUTDOWN":
			x.beforeShutdown(ctx, ev)
			x.stop()
			return
		}
	}
}

// afterInvoke returns when the invocation's usage has left the exporter: the runtime
// is done (its pushes are in the sending queue), then the queue is drained or the
// exporter is failing (the queue keeps the usage on disk), within the invocation's time.
func (x *lambdaExtension) afterInvoke(ctx context.Context, ev event, runtime *runtimeDone) {
	limit := ev.deadline().Add(-invokeMargin)
	if runtime == nil {
		return
	}
	if !runtime.wait(ctx, ev.RequestID, limit) {
		x.logger.Warn("no platform.runtimeDone before the invocation's deadline", zap.String("request_id", ev.RequestID))
		return
	}
	limit = earliest(limit, time.Now().Add(x.cfg.DrainTimeout))
	pending, failing := x.drain.wait(ctx, limit, true)
	x.logger.Debug("invocation done", zap.String("request_id", ev.RequestID), zap.Int("pending", pending), zap.Bool("doow_failing", failing))
	if pending > 0 {
		x.logger.Info("usage not yet delivered stays in the persistent queue",
			zap.Int("items", pending), zap.Bool("doow_failing", failing), zap.String("request_id", ev.RequestID))
	}
}

// beforeShutdown waits for everything accepted to be delivered, within the shutdown
// deadline; what is left when it passes stays queued on disk, and the log line says so.
func (x *lambdaExtension) beforeShutdown(ctx context.Context, ev event) {
	limit := ev.deadline().Add(-shutdownMargin)
	if pending, failing := x.drain.wait(ctx, limit, false); pending > 0 {
		x.logger.Error("shutting down with usage not yet delivered: it stays in the persistent queue on disk, and a collector started again on the same queue directory sends it (the exporter's \"Exporting failed. Dropping data.\" that follows is the attempt cut short, not the queued usage); on AWS Lambda that directory is the environment's /tmp, which goes with the environment",
			zap.Int("items", pending), zap.Bool("doow_failing", failing), zap.String("reason", ev.ShutdownReason))
	}
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// stopCollector asks the collector to stop as it does on SIGTERM (receivers first,
// then the exporters' queues, then the storage).
func stopCollector() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
}
