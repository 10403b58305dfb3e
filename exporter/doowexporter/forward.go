package doowexporter

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// Forwarding: with gateway.endpoint set, the exporter sends what it receives, unchanged,
// as OTLP/HTTP to a gateway tier (collector/gateway.yaml) instead of converting it and
// posting it to Doow: the gateways aggregate it with every other sender's. The Lambda
// extension's layer uses it (one setting, DOOW_GATEWAY_ENDPOINT): the stock otlphttp
// exporter would forward as well, but the extension holds the environment's freeze
// until this exporter reports the usage delivered (drain.go), so the forwarder is here.
// Answers as otlphttp maps them, except that an answer that is not the data's fault (a
// wrong token, a wrong path) keeps the usage for a retry instead of dropping it.

func (e *doowExporter) startForwarding(ctx context.Context, host component.Host) error {
	gateway := e.cfg.Gateway
	client := confighttp.NewDefaultClientConfig()
	client.Endpoint = gateway.Endpoint
	client.Timeout = e.cfg.Timeout
	client.TLS.CAFile = gateway.CAFile
	var extensions map[component.ID]component.Component
	if host != nil {
		extensions = host.GetExtensions()
	}
	built, err := client.ToClient(ctx, extensions, e.settings)
	if err != nil {
		return err
	}
	built.CheckRedirect = neverRedirect
	e.client = built
	return nil
}

func (e *doowExporter) forwardMetrics(ctx context.Context, md pmetric.Metrics) error {
	body, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	return e.forward(ctx, "/v1/metrics", body, md.DataPointCount())
}

func (e *doowExporter) forwardTraces(ctx context.Context, td ptrace.Traces) error {
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	return e.forward(ctx, "/v1/traces", body, td.SpanCount())
}

func (e *doowExporter) forwardLogs(ctx context.Context, ld plog.Logs) error {
	body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	return e.forward(ctx, "/v1/logs", body, ld.LogRecordCount())
}

func (e *doowExporter) forward(ctx context.Context, path string, body []byte, items int) error {
	return e.redact.err(e.postOTLP(ctx, path, body, items))
}

func (e *doowExporter) postOTLP(ctx context.Context, path string, body []byte, items int) error {
	url := strings.TrimRight(e.cfg.Gateway.Endpoint, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(gzipBody(body, 1)))
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("User-Agent", e.userAgent)
	req.Header.Set("Authorization", "Bearer "+string(e.cfg.Gateway.Token))
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("forwarding %d items to the gateway: %w", items, e.redact.err(err))
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("the gateway answered %d to %d items: %s", resp.StatusCode, items, snippet([]byte(e.redact.text(string(answer)))))
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return consumererror.NewPermanent(err) // the data's fault: it will never go
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		if wait, ok := retryAfter(resp.Header, time.Now()); ok {
			return exporterhelper.NewThrottleRetry(err, wait)
		}
	}
	return err // kept: a gateway down, a wrong token or path is fixed, then it goes
}
