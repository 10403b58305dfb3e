package doowexporter

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

type sentEvent struct {
	EventID      string `json:"event_id"`
	Measurements []struct {
		MetricName string `json:"metric_name"`
		Quantity   int    `json:"quantity"`
	} `json:"measurements"`
}

func (s sentEvent) metrics() string {
	var names []string
	for _, m := range s.Measurements {
		names = append(names, fmt.Sprintf("%s=%d", m.MetricName, m.Quantity))
	}
	return strings.Join(names, " ")
}

// answeringDoow records the events of each request and answers with answer(request
// number, events).
func answeringDoow(t *testing.T, answer func(n int, events []sentEvent) (int, string)) (*httptest.Server, *[][]sentEvent) {
	var mu sync.Mutex
	var requests [][]sentEvent
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Events []sentEvent `json:"events"`
		}
		gz, err := gzip.NewReader(r.Body)
		require.NoError(t, err)
		require.NoError(t, json.NewDecoder(gz).Decode(&body))
		mu.Lock()
		requests = append(requests, body.Events)
		n := len(requests)
		mu.Unlock()
		status, text := answer(n, body.Events)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(text))
	}))
	t.Cleanup(server.Close)
	return server, &requests
}

// threeMetricsOfOneStream: a, b and c for one license, attribution and time.
func threeMetricsOfOneStream() pmetric.Metrics {
	md := pmetric.NewMetrics()
	metrics := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	for i, name := range []string{"c", "a", "b"} {
		metric := metrics.AppendEmpty()
		metric.SetName(name)
		sum := metric.SetEmptySum()
		sum.SetIsMonotonic(true)
		sum.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
		p := sum.DataPoints().AppendEmpty()
		p.SetIntValue(int64(i + 1))
		p.SetTimestamp(1_795_515_300_000_000_000)
		p.Attributes().PutStr("doow.license_id", "lic_r")
	}
	return md
}

func repackedID(rejected, metric string) string {
	return uuid.NewSHA1(nsRepacked, []byte(fmt.Sprintf("s36:%ss%d:%s", rejected, len(metric), metric))).String()
}

// A 207 that rejects one measurement of a packed event: that measurement is reported,
// the others go again at once under the id rule R derives; again when the new event
// meets a rejection naming its metric in the reason.
func TestA207NamingAMetricSendsTheOtherMeasurementsAgain(t *testing.T) {
	rejections := func(id, fields string) string {
		return `{"accepted": 0, "rejected": 1, "rejections": [{"event_id": "` + id + `", ` + fields + `}]}`
	}
	server, requests := answeringDoow(t, func(n int, events []sentEvent) (int, string) {
		switch n {
		case 1:
			return 207, rejections(events[0].EventID, `"reason": "not on the plan", "metric_name": "b"`)
		case 2:
			return 207, rejections(events[0].EventID, `"reason": "unknown_metric: c"`)
		}
		return 202, `{"accepted": 1}`
	})
	e, logs, _ := start(t, &fakeDoow{}, func(cfg *Config) { cfg.Endpoint = server.URL })
	require.NoError(t, e.pushMetrics(context.Background(), threeMetricsOfOneStream()))

	require.Len(t, *requests, 3)
	first, second, third := (*requests)[0], (*requests)[1], (*requests)[2]
	require.Len(t, first, 1, "the three metrics of one stream are one event")
	require.Equal(t, "a=2 b=3 c=1", first[0].metrics())
	require.Equal(t, "a=2 c=1", second[0].metrics())
	require.Equal(t, repackedID(first[0].EventID, "b"), second[0].EventID)
	require.Equal(t, "a=2", third[0].metrics())
	require.Equal(t, repackedID(second[0].EventID, "c"), third[0].EventID)

	found := logs.FilterMessage("measurement rejected").All()
	require.Len(t, found, 2)
	require.Equal(t, "b=3", found[0].ContextMap()["refused"])
	require.Equal(t, "not on the plan", found[0].ContextMap()["reason"])
	require.Equal(t, "c=1", found[1].ContextMap()["refused"])
}

// A rejection naming a metric the event does not have, or its only one, rejects the
// whole event (reported with every measurement); nothing is sent again.
func TestA207NamingAMetricTheEventHasNotRejectsTheWholeEvent(t *testing.T) {
	server, requests := answeringDoow(t, func(n int, events []sentEvent) (int, string) {
		return 207, `{"accepted": 0, "rejected": 1, "rejections": [{"event_id": "` + events[0].EventID +
			`", "reason": "unknown_metric: z", "metric_name": "z"}]}`
	})
	e, logs, _ := start(t, &fakeDoow{}, func(cfg *Config) { cfg.Endpoint = server.URL })
	require.NoError(t, e.pushMetrics(context.Background(), threeMetricsOfOneStream()))
	require.Len(t, *requests, 1)
	found := logs.FilterMessage("event rejected").All()
	require.Len(t, found, 1)
	require.Equal(t, "a=2 b=3 c=1", found[0].ContextMap()["refused"])
}
