// Package doowlambdaextension runs otelcol-doow as an AWS Lambda external extension.
//
// It speaks the Lambda Extensions API (register for INVOKE and SHUTDOWN, then
// event/next) from inside the collector, so the pipeline (OTLP receiver on localhost,
// doow exporter with a persistent queue) runs in the extension's own process. After
// each invocation it holds the next event/next call until the usage that invocation
// pushed has left the doow exporter (delivered, or kept on disk by the persistent queue
// while Doow is failing), so the function's response never waits for Doow and nothing
// is left in flight when Lambda freezes the environment. On SHUTDOWN it waits for the
// exporter to drain within the shutdown deadline, then stops the collector.
//
// The doow exporter finds this extension through host.GetExtensions() and reports
// what it accepted and finished (Accepted, Finished, Failed).
package doowlambdaextension // import "github.com/doow/doow-otel/extension/doowlambdaextension"
