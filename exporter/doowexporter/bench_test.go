package doowexporter

import "testing"

// BenchmarkConvertAndBatch: the exporter's CPU per usage point (convert, encode, batch,
// gzip), on points like the collector bench's: a license each and string attribution.
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
			compress(batch.body())
		}
	}
}
