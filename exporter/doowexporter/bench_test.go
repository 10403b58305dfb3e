package doowexporter

import "testing"

// BenchmarkConvertAndBatch: the exporter's CPU per usage point (convert, encode, batch).
func BenchmarkConvertAndBatch(b *testing.B) {
	md := usage(1000)
	opts := createDefaultConfig().(*Config).conversionOptions()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, batch := range makeBatches(convertMetrics(md, opts).events) {
			compress(batch.body())
		}
	}
}
