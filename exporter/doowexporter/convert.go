package doowexporter

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// OTLP to Doow events: the rules of docs/conversion.md, written once for Go. The
// Python package's conversion module applies the same rules; tests/vectors/ holds
// both to the same events and the same ids.

const (
	trackerScope   = "doow_otel"
	usageEventName = "doow.usage"
)

var (
	nsMetric    = mustUUID("6f1c2d7a-1b10-4c8e-9f0e-5b1d6f0e3c52")
	nsSpanEvent = mustUUID("0e3c52f1-6f1c-4d7a-8b10-9f0e5b1d6f0e")
	nsGenAI     = mustUUID("7a9b10c2-5b1d-4f0e-8c52-6f1c2d3c9f0e")
	nsLog       = mustUUID("2d7a9b10-3c52-4c8e-9f0e-1b106f1c5b1d")
	licenseKeys = []string{"doow.license_id", "license_id"}
)

const canonicalNaN = 0x7ff8000000000000

// conversionOptions are the configurable parts of the rules.
type conversionOptions struct {
	defaultLicenseID    string
	usageMetrics        map[string]bool
	resourceAttributes  []string
	histogramCount      bool
	genaiWithoutLicense bool
}

// conversion is the events, the usage that could not be converted by reason code, and
// the attribution entries the policy stripped.
type conversion struct {
	events   []event
	dropped  map[string]int
	stripped map[strippedAttr]int
}

type converter struct {
	opts   conversionOptions
	result conversion
}

func newConverter(opts conversionOptions) *converter {
	return &converter{opts: opts, result: conversion{dropped: map[string]int{}, stripped: map[strippedAttr]int{}}}
}

// --- canonical encoding for event ids ---

func encStr(s string) string { return "s" + strconv.Itoa(len(s)) + ":" + s }

func encInt(n int64) string { return "i" + strconv.FormatInt(n, 10) + ";" }

func encUint(n uint64) string { return "i" + strconv.FormatUint(n, 10) + ";" }

func encValue(v pcommon.Value) string {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return encStr(v.Str())
	case pcommon.ValueTypeBool:
		if v.Bool() {
			return "b1"
		}
		return "b0"
	case pcommon.ValueTypeInt:
		return encInt(v.Int())
	case pcommon.ValueTypeDouble:
		bits := math.Float64bits(v.Double())
		if math.IsNaN(v.Double()) {
			// one NaN, as Python's float("nan"): pdata decodes OTLP/JSON "NaN" with
			// another payload (Go's math.NaN), which would change the id
			bits = canonicalNaN
		}
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], bits)
		return "d" + hex.EncodeToString(b[:])
	case pcommon.ValueTypeSlice:
		items := v.Slice()
		var b strings.Builder
		b.WriteString("a" + strconv.Itoa(items.Len()) + "[")
		for i := 0; i < items.Len(); i++ {
			b.WriteString(encValue(items.At(i)))
		}
		b.WriteString("]")
		return b.String()
	case pcommon.ValueTypeMap:
		return encAttrs(v.Map())
	case pcommon.ValueTypeBytes:
		raw := v.Bytes().AsRaw()
		return "y" + strconv.Itoa(len(raw)) + ":" + hex.EncodeToString(raw)
	}
	return "n"
}

func encAttrs(m pcommon.Map) string {
	type kv struct {
		key   string
		value pcommon.Value
	}
	pairs := make([]kv, 0, m.Len())
	m.Range(func(k string, v pcommon.Value) bool {
		pairs = append(pairs, kv{k, v})
		return true
	})
	// stable: a repeated key keeps its order, as in Python's sorted()
	sort.SliceStable(pairs, func(i, j int) bool { return pairs[i].key < pairs[j].key })
	var b strings.Builder
	b.WriteString("m" + strconv.Itoa(len(pairs)) + "{")
	for _, p := range pairs {
		b.WriteString(encStr(p.key))
		b.WriteString(encValue(p.value))
	}
	b.WriteString("}")
	return b.String()
}

// --- attribute access ---

// plain is an attribution value: scalars as they are (finite doubles), arrays of
// scalars joined with ","; nil for anything else.
func plain(v pcommon.Value) attrValue {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return v.Str()
	case pcommon.ValueTypeBool:
		return v.Bool()
	case pcommon.ValueTypeInt:
		return v.Int()
	case pcommon.ValueTypeDouble:
		if math.IsNaN(v.Double()) || math.IsInf(v.Double(), 0) {
			return nil
		}
		return v.Double()
	case pcommon.ValueTypeSlice:
		items := v.Slice()
		parts := make([]string, 0, items.Len())
		for i := 0; i < items.Len(); i++ {
			p := plain(items.At(i))
			if p == nil {
				return nil
			}
			parts = append(parts, scalarText(p))
		}
		return strings.Join(parts, ",")
	}
	return nil
}

func stringAttr(m pcommon.Map, key string) string {
	if v, ok := m.Get(key); ok && v.Type() == pcommon.ValueTypeStr {
		return v.Str()
	}
	return ""
}

func license(sources ...pcommon.Map) string {
	for _, m := range sources {
		for _, key := range licenseKeys {
			if found := stringAttr(m, key); found != "" {
				return found
			}
		}
	}
	return ""
}

func number(m pcommon.Map, key string) *quantity {
	v, ok := m.Get(key)
	if !ok {
		return nil
	}
	switch v.Type() {
	case pcommon.ValueTypeInt:
		return &quantity{isInt: true, i: v.Int()}
	case pcommon.ValueTypeDouble:
		return &quantity{f: v.Double()}
	}
	return nil
}

func isOverflow(m pcommon.Map) bool {
	v, ok := m.Get("otel.metric.overflow")
	return ok && v.Type() == pcommon.ValueTypeBool && v.Bool()
}

func traceHex(id pcommon.TraceID) string {
	if id.IsEmpty() {
		return ""
	}
	return hex.EncodeToString(id[:])
}

func spanHex(id pcommon.SpanID) string {
	if id.IsEmpty() {
		return ""
	}
	return hex.EncodeToString(id[:])
}

// --- attribution ---

func (c *converter) resourceAttribution(resource pcommon.Map) map[string]attrValue {
	picked := map[string]attrValue{}
	for _, key := range c.opts.resourceAttributes {
		v, ok := resource.Get(key)
		if !ok {
			continue
		}
		value := plain(v)
		if s, isStr := value.(string); key == "service.name" && isStr && strings.HasPrefix(s, "unknown_service") {
			continue // the SDKs' placeholder names nothing
		}
		if value != nil {
			picked[key] = value
		}
	}
	return picked
}

func sorted(merged map[string]attrValue) []attr {
	out := make([]attr, 0, len(merged))
	for k, v := range merged {
		out = append(out, attr{k, v})
	}
	sortAttrs(out)
	return out
}

func (c *converter) attribution(base map[string]attrValue, record pcommon.Map, skip string) []attr {
	merged := make(map[string]attrValue, len(base)+record.Len())
	for k, v := range base {
		merged[k] = v
	}
	record.Range(func(k string, v pcommon.Value) bool {
		if k == "" || strings.HasPrefix(k, "doow.") || k == "license_id" || k == skip {
			return true
		}
		if p := plain(v); p != nil {
			merged[k] = p
		}
		return true
	})
	return sorted(merged)
}

// emit adds one event, or counts why it was dropped; a zero quantity is skipped quietly.
func (c *converter) emit(metric string, q *quantity, licenseID, unit string, nanos uint64, attribution []attr, eventID string) {
	drop := func(code string) { c.result.dropped[code]++ }
	switch {
	case q == nil:
		drop("missing_quantity")
		return
	case math.IsNaN(q.float()) || math.IsInf(q.float(), 0) || q.float() < 0:
		drop("invalid_quantity")
		return
	case q.float() == 0:
		return
	case nanos == 0:
		drop("missing_time")
		return
	case licenseID == "":
		drop("missing_license")
		return
	case !metricValid(metric):
		drop("invalid_metric_name")
		return
	case !licenseValid(licenseID):
		drop("invalid_license")
		return
	}
	if utf8.RuneCountInString(unit) > maxUnitLen {
		unit = ""
	}
	c.result.events = append(c.result.events, event{
		eventID:     eventID,
		licenseID:   licenseID,
		occurredAt:  formatTime(nanos),
		unit:        unit,
		metric:      metric,
		quantity:    *q,
		attribution: cleanAttribution(attribution, c.result.stripped),
	})
}

// --- metrics ---

func (c *converter) metrics(md pmetric.Metrics) {
	for i := 0; i < md.ResourceMetrics().Len(); i++ {
		rm := md.ResourceMetrics().At(i)
		resource := rm.Resource().Attributes()
		encResource := encAttrs(resource)
		base := c.resourceAttribution(resource)
		for j := 0; j < rm.ScopeMetrics().Len(); j++ {
			sm := rm.ScopeMetrics().At(j)
			scope := sm.Scope()
			prefix := encResource + encStr(scope.Name()) + encStr(scope.Version())
			for k := 0; k < sm.Metrics().Len(); k++ {
				metric := sm.Metrics().At(k)
				listed := scope.Name() == trackerScope || c.opts.usageMetrics[metric.Name()]
				c.metric(metric, resource, base, prefix, listed)
			}
		}
	}
}

// usagePoint is what the metric rules need of any kind of data point.
type usagePoint struct {
	attrs       pcommon.Map
	start, time uint64
	value       *quantity
	noSum       bool
}

func (c *converter) metric(metric pmetric.Metric, resource pcommon.Map, base map[string]attrValue, prefix string, listed bool) {
	var points []usagePoint
	var temporality pmetric.AggregationTemporality
	switch metric.Type() {
	case pmetric.MetricTypeSum:
		sum := metric.Sum()
		if !sum.IsMonotonic() {
			return
		}
		temporality = sum.AggregationTemporality()
		for i := 0; i < sum.DataPoints().Len(); i++ {
			p := sum.DataPoints().At(i)
			up := usagePoint{attrs: p.Attributes(), start: uint64(p.StartTimestamp()), time: uint64(p.Timestamp())}
			switch p.ValueType() {
			case pmetric.NumberDataPointValueTypeInt:
				up.value = &quantity{isInt: true, i: p.IntValue()}
			case pmetric.NumberDataPointValueTypeDouble:
				up.value = &quantity{f: p.DoubleValue()}
			}
			points = append(points, up)
		}
	case pmetric.MetricTypeHistogram:
		h := metric.Histogram()
		temporality = h.AggregationTemporality()
		for i := 0; i < h.DataPoints().Len(); i++ {
			p := h.DataPoints().At(i)
			points = append(points, c.histogramPoint(p.Attributes(), uint64(p.StartTimestamp()), uint64(p.Timestamp()), p.Count(), p.HasSum(), p.Sum()))
		}
	case pmetric.MetricTypeExponentialHistogram:
		h := metric.ExponentialHistogram()
		temporality = h.AggregationTemporality()
		for i := 0; i < h.DataPoints().Len(); i++ {
			p := h.DataPoints().At(i)
			points = append(points, c.histogramPoint(p.Attributes(), uint64(p.StartTimestamp()), uint64(p.Timestamp()), p.Count(), p.HasSum(), p.Sum()))
		}
	default:
		return
	}
	usageMetric := listed
	for _, p := range points {
		usageMetric = usageMetric || license(p.attrs) != ""
	}
	for _, p := range points {
		own := license(p.attrs)
		if isOverflow(p.attrs) {
			if usageMetric { // the SDK's cardinality limit folded licenses away
				c.result.dropped["cardinality_overflow"]++
			}
			continue
		}
		if own == "" && !listed {
			continue // other telemetry
		}
		if temporality != pmetric.AggregationTemporalityDelta {
			c.result.dropped["cumulative_temporality"]++
			continue
		}
		if p.noSum {
			c.result.dropped["histogram_without_sum"]++
			continue
		}
		name := stringAttr(p.attrs, "doow.metric")
		if name == "" {
			name = metric.Name()
		}
		licenseID := own
		if licenseID == "" {
			licenseID = license(resource)
		}
		if licenseID == "" {
			licenseID = c.opts.defaultLicenseID
		}
		unit := stringAttr(p.attrs, "doow.unit")
		if unit == "" {
			unit = metric.Unit()
		}
		id := uuid5(nsMetric, prefix+encStr(metric.Name())+encAttrs(p.attrs)+encUint(p.start)+encUint(p.time))
		c.emit(name, p.value, licenseID, unit, p.time, c.attribution(base, p.attrs, ""), id)
	}
}

func (c *converter) histogramPoint(attrs pcommon.Map, start, time, count uint64, hasSum bool, sum float64) usagePoint {
	p := usagePoint{attrs: attrs, start: start, time: time}
	switch {
	case c.opts.histogramCount:
		p.value = &quantity{isInt: true, i: int64(count)}
	case hasSum:
		p.value = &quantity{f: sum}
	default:
		p.noSum = true
	}
	return p
}

// --- traces ---

func (c *converter) traces(td ptrace.Traces) {
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		resource := rs.Resource().Attributes()
		base := c.resourceAttribution(resource)
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			spans := rs.ScopeSpans().At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				c.span(spans.At(k), resource, base)
			}
		}
	}
}

func (c *converter) span(span ptrace.Span, resource pcommon.Map, base map[string]attrValue) {
	spanAttrs := span.Attributes()
	traceID, spanID := traceHex(span.TraceID()), spanHex(span.SpanID())
	for position := 0; position < span.Events().Len(); position++ {
		ev := span.Events().At(position)
		if ev.Name() != usageEventName {
			continue
		}
		licenseID := license(ev.Attributes(), spanAttrs, resource)
		if licenseID == "" {
			licenseID = c.opts.defaultLicenseID
		}
		id := uuid5(nsSpanEvent, encStr(traceID)+encStr(spanID)+encInt(int64(position)))
		c.usageRecord(ev.Attributes(), licenseID, uint64(ev.Timestamp()), base, "", id)
	}
	c.genai(span, spanAttrs, resource, base, traceID, spanID)
}

var genaiAttribution = []struct {
	target  string
	sources []string
}{
	{"model", []string{"gen_ai.request.model"}},
	{"provider", []string{"gen_ai.provider.name", "gen_ai.system"}},
	{"finish_reason", []string{"gen_ai.response.finish_reasons"}},
}

func (c *converter) genai(span ptrace.Span, attrs, resource pcommon.Map, base map[string]attrValue, traceID, spanID string) {
	metrics := []string{"input_tokens", "output_tokens"}
	counts := []*quantity{number(attrs, "gen_ai.usage.input_tokens"), number(attrs, "gen_ai.usage.output_tokens")}
	if counts[0] == nil && counts[1] == nil {
		return
	}
	licenseID := license(attrs, resource)
	if licenseID == "" {
		if !c.opts.genaiWithoutLicense {
			return
		}
		licenseID = c.opts.defaultLicenseID
	}
	merged := make(map[string]attrValue, len(base)+3)
	for k, v := range base {
		merged[k] = v
	}
	for _, m := range genaiAttribution {
		for _, source := range m.sources {
			if v, ok := attrs.Get(source); ok {
				if p := plain(v); p != nil {
					merged[m.target] = p
					break
				}
			}
		}
	}
	attribution := sorted(merged)
	for i, q := range counts {
		if q == nil {
			continue
		}
		id := uuid5(nsGenAI, encStr(traceID)+encStr(spanID)+encStr(metrics[i]))
		c.emit(metrics[i], q, licenseID, "tokens", uint64(span.EndTimestamp()), attribution, id)
	}
}

// usageRecord converts a doow.usage span event or log record.
func (c *converter) usageRecord(attrs pcommon.Map, licenseID string, nanos uint64, base map[string]attrValue, skip, id string) {
	metric := stringAttr(attrs, "doow.metric")
	if metric == "" {
		c.result.dropped["missing_metric"]++
		return
	}
	c.emit(metric, number(attrs, "doow.quantity"), licenseID, stringAttr(attrs, "doow.unit"), nanos, c.attribution(base, attrs, skip), id)
}

// --- logs ---

func (c *converter) logs(ld plog.Logs) {
	for i := 0; i < ld.ResourceLogs().Len(); i++ {
		rl := ld.ResourceLogs().At(i)
		resource := rl.Resource().Attributes()
		encResource := encAttrs(resource)
		base := c.resourceAttribution(resource)
		for j := 0; j < rl.ScopeLogs().Len(); j++ {
			sl := rl.ScopeLogs().At(j)
			prefix := encResource + encStr(sl.Scope().Name())
			for k := 0; k < sl.LogRecords().Len(); k++ {
				record := sl.LogRecords().At(k)
				attrs := record.Attributes()
				name := record.EventName()
				if name == "" {
					name = stringAttr(attrs, "event.name")
				}
				if name != usageEventName {
					continue
				}
				licenseID := license(attrs, resource)
				if licenseID == "" {
					licenseID = c.opts.defaultLicenseID
				}
				nanos := uint64(record.Timestamp())
				if nanos == 0 {
					nanos = uint64(record.ObservedTimestamp())
				}
				id := uuid5(nsLog, prefix+encUint(uint64(record.Timestamp()))+encUint(uint64(record.ObservedTimestamp()))+
					encStr(traceHex(record.TraceID()))+encStr(spanHex(record.SpanID()))+encAttrs(attrs))
				c.usageRecord(attrs, licenseID, nanos, base, "event.name", id)
			}
		}
	}
}

func convertMetrics(md pmetric.Metrics, opts conversionOptions) conversion {
	c := newConverter(opts)
	c.metrics(md)
	return c.result
}

func convertTraces(td ptrace.Traces, opts conversionOptions) conversion {
	c := newConverter(opts)
	c.traces(td)
	return c.result
}

func convertLogs(ld plog.Logs, opts conversionOptions) conversion {
	c := newConverter(opts)
	c.logs(ld)
	return c.result
}
