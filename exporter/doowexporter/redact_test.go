package doowexporter

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/doow/doow-otel/exporter/doowexporter/internal/metadata"
)

const testHeaderSecret = "tenant-secret-98765"

// echoingDoow answers every request with status and a body that quotes the request's
// Authorization and X-Tenant-Token headers, as a misbehaving proxy's error page may.
func echoingDoow(status int, body func(auth, tenant string) string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body(r.Header.Get("Authorization"), r.Header.Get("X-Tenant-Token"))))
	}
}

// Whatever Doow or a proxy answers, the key and the configured header values appear in
// no log line and no error: through the factory and exporterhelper's retries, as the
// collector runs it.
func TestNoSecretInAnyLogOrErrorWhateverTheAnswerEchoes(t *testing.T) {
	// the key at character 190 of a long page: a snippet cut at 200 characters would
	// keep its first part if redaction came after the cut
	page := func(auth, tenant string) string {
		return strings.Repeat("x", 183) + "echo: " + auth + " tenant=" + tenant + strings.Repeat(" y", 200)
	}
	escaped := func(s string) string { // the key as a JSON string with escapes
		var out strings.Builder
		for _, r := range s {
			fmt.Fprintf(&out, `\u%04x`, r)
		}
		return out.String()
	}
	cases := map[string]http.HandlerFunc{
		"503": echoingDoow(503, page),
		"400": echoingDoow(400, func(auth, tenant string) string {
			return `{"error": "bad request from ` + auth + ` ` + tenant + `"}`
		}),
		"400 escaped": echoingDoow(400, func(auth, _ string) string {
			return `{"error": "` + escaped(auth) + `"}`
		}),
		"207": func(w http.ResponseWriter, r *http.Request) {
			auth := r.Header.Get("Authorization")
			var ids []string
			for _, ev := range convertMetrics(usage(2), createDefaultConfig().(*Config).conversionOptions()).events {
				ids = append(ids, ev.eventID)
			}
			w.WriteHeader(207)
			_, _ = fmt.Fprintf(w, `{"accepted": 0, "rejected": 2, "rejections": [{"event_id": %q, "reason": %q}, {"event_id": %q, "reason": "%s"}]}`,
				ids[0], "echo "+auth+" "+r.Header.Get("X-Tenant-Token"), ids[1], escaped(auth))
		},
		"401":           echoingDoow(401, page),
		"413 one event": echoingDoow(413, page),
	}
	for name, handler := range cases {
		t.Run(name, func(t *testing.T) {
			server := httptest.NewServer(handler)
			t.Cleanup(server.Close)
			core, logs := observer.New(zap.DebugLevel)
			factory := NewFactory()
			cfg := factory.CreateDefaultConfig().(*Config)
			cfg.Endpoint = server.URL
			cfg.APIKey = testKey
			cfg.Headers.Set("X-Tenant-Token", configopaque.String(testHeaderSecret))
			cfg.RetryConfig.InitialInterval = 5 * time.Millisecond
			cfg.RetryConfig.MaxElapsedTime = 100 * time.Millisecond // give up: the drop is logged too
			cfg.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
			set := exportertest.NewNopSettings(metadata.Type)
			set.Logger = zap.New(core)
			ctx := context.Background()
			exp, err := factory.CreateMetrics(ctx, set, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := exp.Start(ctx, componenttest.NewNopHost()); err != nil {
				t.Fatal(err)
			}
			points := 2
			if name == "413 one event" {
				points = 1
			}
			pushErr := exp.ConsumeMetrics(ctx, usage(points))
			if err := exp.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			var texts []string
			if pushErr != nil {
				texts = append(texts, "error: "+pushErr.Error(), fmt.Sprintf("error %%+v: %+v", pushErr))
			}
			for _, entry := range logs.All() {
				encoder := zapcore.NewMapObjectEncoder()
				for _, field := range entry.Context {
					field.AddTo(encoder)
				}
				texts = append(texts, fmt.Sprintf("log: %s %v", entry.Message, encoder.Fields))
			}
			if len(texts) == 0 {
				t.Fatal("nothing was logged or returned: the test sees nothing")
			}
			sawAnswer := false
			for _, text := range texts {
				for _, secret := range []string{testKey, testKey[:12], testHeaderSecret} {
					if strings.Contains(text, secret) {
						t.Errorf("a secret in %q", text)
					}
				}
				sawAnswer = sawAnswer || strings.Contains(text, "[RED")
			}
			if name != "401" && !sawAnswer {
				t.Errorf("no text quotes the answer (redacted): the test checks nothing\n%s", strings.Join(texts, "\n"))
			}
		})
	}
}

func TestTheRedactorFindsEverySecretItHolds(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.APIKey = testKey
	cfg.Headers.Set("X-Short", "1")
	cfg.Headers.Set("X-Tenant-Token", testHeaderSecret)
	cfg.ProxyURL = "http://user:proxy-pass-42@proxy.internal:3128"
	r := newRedactor(cfg)
	got := r.text("a " + testKey + " b " + testHeaderSecret + " c proxy-pass-42 d 1")
	if want := "a [REDACTED] b [REDACTED] c [REDACTED] d 1"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
