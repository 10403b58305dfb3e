package doowexporter

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func TestThePacerKeepsSendsWithinTheBudget(t *testing.T) {
	p := newPacer(10)
	require.Zero(t, p.admit("a", 6, t0))
	require.Equal(t, 50*time.Second, p.admit("b", 6, t0.Add(10*time.Second)), "b fits once a has aged out")
	require.Zero(t, p.admit("c", 4, t0.Add(10*time.Second)), "c fits beside a")
	require.Zero(t, p.admit("b", 6, t0.Add(60*time.Second)))
	// a batch larger than the budget goes once a whole minute is free
	require.Equal(t, 60*time.Second, p.admit("big", 15, t0.Add(60*time.Second)))
	require.Zero(t, p.admit("big", 15, t0.Add(120*time.Second)))
}

func TestThePacerLearnsTheBudgetAndWaitsForEveryCategory(t *testing.T) {
	p := newPacer(0)
	require.Zero(t, p.admit("a", 5000, t0), "no budget known: nothing held")
	header := http.Header{}
	header.Set("X-Doow-Rate-Limits", `{"event_rate": {"limit": 1000, "current": 1000, "retry_after": 20},
		"daily_cap": {"limit": 50000, "current": 50000, "retry_after": 240}}`)
	p.learn(http.StatusTooManyRequests, header, 20*time.Second, true, t0)
	require.Equal(t, 500, p.budget(), "the limit Doow named, this exporter's share of it halved")
	require.Equal(t, 240*time.Second, p.admit("b", 1, t0), "every category must have expired")
	// an acknowledgement that says the organisation is at its limit blocks too
	p = newPacer(0)
	header.Set("X-Doow-Rate-Limits", `{"event_rate": {"limit": 1000, "current": 1000, "retry_after": 7}}`)
	p.learn(http.StatusAccepted, header, 0, false, t0)
	require.Equal(t, 7*time.Second, p.admit("c", 1, t0))
	// a configured budget wins over the learnt one
	p = newPacer(300)
	p.learn(http.StatusAccepted, header, 0, false, t0.Add(-time.Hour))
	require.Equal(t, 300, p.budget())
}

func TestOverBudgetIsSaidOnceAMinuteWithNumbers(t *testing.T) {
	p := newPacer(10)
	p.admit("a", 8, t0)
	p.admit("b", 5, t0.Add(time.Second))
	p.admit("b", 5, t0.Add(20*time.Second)) // the same batch again: counted once
	require.Empty(t, p.overBudget(t0.Add(30*time.Second)), "not before a minute")
	text := p.overBudget(t0.Add(61 * time.Second))
	for _, want := range []string{"13 events offered", "5 waiting", "budget 10 events a minute", "window", "attribution", "gateway"} {
		require.Contains(t, text, want)
	}
	require.Empty(t, p.overBudget(t0.Add(62*time.Second)), "said once")
}

// After a 429 the exporter does not send again until the wait is over: the push waits
// in the queue (a throttle retry with the delay) instead of meeting 429 after 429.
func TestAfterA429ThePushWaitsWithoutSending(t *testing.T) {
	f := &fakeDoow{answers: []func(http.ResponseWriter, int){status(429, "Retry-After", "30")}}
	e, _, tel := start(t, f)
	err := e.pushMetrics(context.Background(), usage(3))
	require.ErrorContains(t, err, "Throttle (30s)")
	err = e.pushMetrics(context.Background(), usage(3))
	require.Error(t, err)
	require.True(t, strings.HasPrefix(err.Error(), "Throttle (29.") || strings.HasPrefix(err.Error(), "Throttle (30s"), err.Error())
	require.Equal(t, 1, f.count(), "nothing sent while Doow said to wait")
	require.EqualValues(t, 1, counted(t, tel, "doow.exporter.rate_limited"))
	require.Zero(t, delivered(t, tel))
}

// With events_per_minute, a push past the budget waits; its batches already delivered
// are not sent again when it is retried.
func TestAPushPastTheConfiguredBudgetWaitsAndIsNotResent(t *testing.T) {
	f := &fakeDoow{}
	e, _, tel := start(t, f, func(cfg *Config) { cfg.EventsPerMinute = 700 })
	err := e.pushMetrics(context.Background(), usage(1000)) // batches of 500 and 500
	require.ErrorContains(t, err, "wait")
	require.ErrorContains(t, err, "Throttle (")
	require.Equal(t, 1, f.count())
	err = e.pushMetrics(context.Background(), usage(1000)) // the queue's retry
	require.ErrorContains(t, err, "Throttle (")
	require.Equal(t, 1, f.count(), "the delivered batch is not sent again, the other still waits")
	require.EqualValues(t, 500, delivered(t, tel))
}

// doow.exporter.event.budget reads the pacer at each collection: nothing while the
// budget is unknown, then the one Doow announced; a configured one from the start.
func TestTheBudgetGaugeReadsThePacer(t *testing.T) {
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	p := newPacer(0)
	telemetry, err := newTelemetry(tel.NewTelemetrySettings(), p)
	require.NoError(t, err)
	t.Cleanup(telemetry.metrics.Shutdown)
	_, known := budgetGauge(t, tel)
	require.False(t, known, "no budget known: no point")
	header := http.Header{}
	header.Set("X-Doow-Rate-Limits", `{"event_rate": {"limit": 1200, "current": 3}}`)
	p.learn(http.StatusAccepted, header, 0, false, t0)
	budget, known := budgetGauge(t, tel)
	require.True(t, known)
	require.EqualValues(t, 1200, budget)

	f := &fakeDoow{}
	_, _, tel = start(t, f, func(cfg *Config) { cfg.EventsPerMinute = 700 })
	budget, known = budgetGauge(t, tel)
	require.True(t, known)
	require.EqualValues(t, 700, budget)
}

func budgetGauge(t *testing.T, tel *componenttest.Telemetry) (int64, bool) {
	t.Helper()
	m, err := tel.GetMetric("doow.exporter.event.budget")
	if err != nil {
		return 0, false
	}
	points := m.Data.(metricdata.Gauge[int64]).DataPoints
	if len(points) == 0 {
		return 0, false
	}
	require.Len(t, points, 1)
	require.Zero(t, points[0].Attributes.Len())
	return points[0].Value, true
}

// A learnt budget is shared with senders the exporter cannot see (30 Lambda environments'
// extensions sending direct met 1,064 429s in bench_budget): one overload halves this
// exporter's share once, quiet time gives it back, a configured budget is kept.
func TestAnOverloadHalvesALearntShareOnceAndQuietGivesItBack(t *testing.T) {
	header := http.Header{}
	header.Set("X-Doow-Rate-Limits", `{"event_rate": {"limit": 1000, "current": 1040, "retry_after": 20}}`)
	p := newPacer(0)
	p.learn(http.StatusTooManyRequests, header, 20*time.Second, true, t0)
	require.Equal(t, 500, p.budget())
	p.learn(http.StatusTooManyRequests, header, 20*time.Second, true, t0.Add(time.Second))
	require.Equal(t, 500, p.budget(), "a 429 within the first one's wait is the same overload")
	p.learn(http.StatusTooManyRequests, header, 20*time.Second, true, t0.Add(30*time.Second))
	require.Equal(t, 250, p.budget(), "past the wait, a new overload")
	quiet := t0.Add(30*time.Second + 20*time.Second + 30*time.Second) // the wait, then half a minute
	p.admit("a", 1, quiet.Add(2*time.Minute))
	require.Equal(t, 750, p.budget())
	p.admit("b", 1, quiet.Add(4*time.Minute))
	require.Equal(t, 1000, p.budget(), "the whole budget again")

	given := newPacer(300)
	given.learn(http.StatusTooManyRequests, header, 20*time.Second, true, t0)
	require.Equal(t, 300, given.budget(), "a configured budget is this exporter's own")
}
