package doowexporter

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// BenchmarkConvertAndBatch: the exporter's CPU per 1000 usage points like the collector
// bench's, a license each and string attribution (convert, encode, batch bodies;
// compression aside). Profile with -cpuprofile and go tool pprof -top.
func BenchmarkConvertAndBatch(b *testing.B) {
	md := usage(1000)
	md.ResourceMetrics().At(0).Resource().Attributes().PutStr("service.name", "bench")
	points := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Sum().DataPoints()
	for i := 0; i < points.Len(); i++ {
		points.At(i).Attributes().PutStr("route", "/v1/summarise")
	}
	opts := createDefaultConfig().(*Config).conversionOptions()
	b.ReportAllocs()
	for b.Loop() {
		for _, batch := range makeBatches(convertMetrics(md, opts).events) {
			_ = batch.body()
		}
	}
}

// BenchmarkGzip: a 500-event body at level 1, as confighttp compresses it (the
// standard library) and as gzipBody does (klauspost).
func BenchmarkGzip(b *testing.B) {
	md := usage(500)
	body := makeBatches(convertMetrics(md, createDefaultConfig().(*Config).conversionOptions()).events)[0].body()
	b.Run("stdlib", func(b *testing.B) {
		w, _ := stdgzip.NewWriterLevel(nil, stdgzip.BestSpeed)
		var out bytes.Buffer
		for b.Loop() {
			out.Reset()
			w.Reset(&out)
			_, _ = w.Write(body)
			_ = w.Close()
		}
		b.ReportMetric(float64(out.Len())/float64(len(body)), "ratio")
	})
	b.Run("klauspost", func(b *testing.B) {
		for b.Loop() {
			gzipBody(body, 1)
		}
	})
}

// BenchmarkAggregate: a gateway's work per 1000 usage points like the collector
// bench's (a stream each): convert, then apply to the windows (storage in memory).
func BenchmarkAggregate(b *testing.B) {
	md := usage(1000)
	points := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Sum().DataPoints()
	opts := createDefaultConfig().(*Config).conversionOptions()
	agg := newAggregator(defaultAggregationConfig(), newMemStorage(), time.Now, func(context.Context, []event) error { return nil })
	if err := agg.load(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		for i := 0; i < points.Len(); i++ {
			points.At(i).SetTimestamp(pcommon.Timestamp(uint64(time.Now().UnixNano()) + uint64(n)))
		}
		result := convertMetrics(md, opts)
		if _, _, err := agg.apply(context.Background(), result.events); err != nil {
			b.Fatal(err)
		}
		result.release()
	}
}
