package doowexporter

import (
	"encoding/json"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Usage records: one seed-shaped JSON object per usage event, the body of a doow.usage
// log record (a line the sidecar tailed from a file or read over TCP, or a map an SDK
// logged). The rules of docs/conversion.md ("Usage records"), held alike by the Python
// package's records module; tests/vectors/ keeps the two the same.

var (
	nsIdempotency = uuid.MustParse("9f0e5b1d-6f1c-4d7a-8b10-3c522d7a9b10")
	nsLine        = uuid.MustParse("4c8e9f0e-2d7a-4b10-8c52-6f1c5b1d3c52")
	recordFields  = []string{"attribution", "event_id", "idempotency_key", "kind", "license_id", "metadata",
		"metric", "metric_tuple_hint", "occurred_at", "quantity", "source_system", "timestamp", "unit"}
	hintKeys     = []string{"app_name", "license_name", "metric_name"}
	recordTimeRE = regexp.MustCompile(`^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2}):(\d{2}))$`)
	recordUUIDRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	earliest     = uint64(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	latest       = uint64(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
)

const (
	maxSourceLen   = 64
	maxHintLen     = 128
	maxIdemKeyLen  = 256
	maxBadRecords  = 20
	defaultSource  = "sdk"
	kindUsage      = "USAGE"
	kindAdjustment = "ADJUSTMENT"
)

// bigInt is a JSON integer past int64: Python reads it, and refuses it as a quantity
// or attribution value; so does this.
type bigInt struct{}

// badRecord is why a record is not a usage event: its reason code and the field.
type badRecord struct{ code, field, problem string }

func (b *badRecord) Error() string { return b.field + ": " + b.problem }

func bad(code, field, problem string) *badRecord { return &badRecord{code, field, problem} }

// parseLine reads a line's JSON object, numbers as int64, bigInt or float64.
func parseLine(text string) (map[string]any, *badRecord) {
	decoder := json.NewDecoder(strings.NewReader(text))
	decoder.UseNumber()
	var value any
	if err := decoder.Decode(&value); err != nil {
		return nil, bad("not_json", "line", "not JSON ("+err.Error()+")")
	}
	if _, err := decoder.Token(); err != io.EOF {
		return nil, bad("not_json", "line", "not JSON (extra data after the object)")
	}
	object, ok := numbers(value).(map[string]any)
	if !ok {
		return nil, bad("not_json", "line", "must be a JSON object")
	}
	return object, nil
}

// numbers turns json.Number into int64 (an integer literal), bigInt or float64 (±Inf
// past the range, as Python's float()).
func numbers(value any) any {
	switch v := value.(type) {
	case json.Number:
		text := string(v)
		if !strings.ContainsAny(text, ".eE") {
			if i, err := strconv.ParseInt(text, 10, 64); err == nil {
				return i
			}
			return bigInt{}
		}
		f, _ := strconv.ParseFloat(text, 64)
		return f
	case map[string]any:
		for key, item := range v {
			v[key] = numbers(item)
		}
	case []any:
		for i, item := range v {
			v[i] = numbers(item)
		}
	}
	return value
}

// rawValue is a map body's value as JSON would hold it.
func rawValue(v pcommon.Value) any {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return v.Str()
	case pcommon.ValueTypeBool:
		return v.Bool()
	case pcommon.ValueTypeInt:
		return v.Int()
	case pcommon.ValueTypeDouble:
		return v.Double()
	case pcommon.ValueTypeMap:
		out := make(map[string]any, v.Map().Len())
		v.Map().Range(func(k string, item pcommon.Value) bool {
			out[k] = rawValue(item)
			return true
		})
		return out
	case pcommon.ValueTypeSlice:
		out := make([]any, v.Slice().Len())
		for i := range out {
			out[i] = rawValue(v.Slice().At(i))
		}
		return out
	case pcommon.ValueTypeBytes:
		return v.Bytes().AsRaw()
	}
	return nil
}

// recordContext is what a record's log record supplies when the record does not.
type recordContext struct {
	licenseID string // "" when none
	base      []attr // the resource's attribution
	nanos     uint64 // 0 when none
	eventID   string // from the record's position
}

// recordEvent checks a record in the order of docs/conversion.md (the first failing
// check decides the code) and makes its event.
func (c *converter) recordEvent(data map[string]any, ctx recordContext) (event, *badRecord) {
	var e event
	for _, key := range sortedKeys(data) {
		if !slices.Contains(recordFields, key) {
			return e, bad("invalid_field", key, "is not a usage event field")
		}
	}
	kind := kindUsage
	if v := data["kind"]; v != nil {
		s, _ := v.(string)
		if s != kindUsage && s != kindAdjustment {
			return e, bad("invalid_kind", "kind", "must be 'USAGE' or 'ADJUSTMENT'")
		}
		kind = s
	}
	metricValue := data["metric"]
	if metricValue == nil {
		return e, bad("missing_metric", "metric", "is required")
	}
	metric, _ := metricValue.(string)
	if !metricValid(metric) {
		return e, bad("invalid_metric_name", "metric", "may contain only letters, digits and _ . : - (at most 128)")
	}
	if data["quantity"] == nil {
		return e, bad("missing_quantity", "quantity", "is required")
	}
	q, ok := recordQuantity(data["quantity"], kind)
	if !ok {
		return e, bad("invalid_quantity", "quantity", "must be a finite number, greater than 0 for USAGE, not 0 for ADJUSTMENT")
	}
	licenseID := ctx.licenseID
	if v := data["license_id"]; v != nil {
		licenseID, _ = v.(string)
		if !licenseValid(licenseID) {
			return e, bad("invalid_license", "license_id", "must be a non-empty string of at most 128 characters")
		}
	} else if licenseID == "" {
		return e, bad("missing_license", "license_id", "is required")
	} else if !licenseValid(licenseID) {
		return e, bad("invalid_license", "license_id", "must be a non-empty string of at most 128 characters")
	}
	stamp := data["timestamp"]
	if stamp == nil {
		stamp = data["occurred_at"]
	}
	nanos := ctx.nanos
	if stamp != nil {
		var problem *badRecord
		if nanos, problem = parseTimestamp(stamp); problem != nil {
			return e, problem
		}
	} else if nanos == 0 {
		return e, bad("missing_time", "timestamp", "is required here (RFC 3339)")
	}
	unit, problem := optionalString(data, "unit", maxUnitLen)
	if problem != nil {
		return e, problem
	}
	source, problem := optionalString(data, "source_system", maxSourceLen)
	if problem != nil {
		return e, problem
	}
	if strings.TrimFunc(source, pyIsSpace) == "" {
		source = defaultSource
	}
	hint, problem := recordHint(data["metric_tuple_hint"])
	if problem != nil {
		return e, problem
	}
	own, problem := scalars(data, "attribution")
	if problem != nil {
		return e, problem
	}
	meta, problem := scalars(data, "metadata")
	if problem != nil {
		return e, problem
	}
	eventID := ctx.eventID
	given := data["event_id"]
	if given != nil {
		s, _ := given.(string)
		if !recordUUIDRE.MatchString(s) {
			return e, bad("invalid_field", "event_id", "must be a UUID (8-4-4-4-12 hex digits)")
		}
		eventID = strings.ToLower(s)
	}
	if v := data["idempotency_key"]; v != nil {
		key, _ := v.(string)
		if n := utf8.RuneCountInString(key); n == 0 || n > maxIdemKeyLen {
			return e, bad("invalid_field", "idempotency_key", "must be a string of 1 to 256 characters")
		}
		if given == nil {
			eventID = idempotencyEventID(licenseID, metric, key)
		}
	}
	return event{
		eventID:      eventID,
		licenseID:    licenseID,
		nanos:        nanos,
		unit:         unit,
		metric:       metric,
		quantity:     q,
		attribution:  c.merge(ctx.base, own),
		adjustment:   kind == kindAdjustment,
		sourceSystem: source,
		metadata:     c.merge(nil, meta),
		hint:         hint,
	}, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// recordQuantity: Python's quantity_problem (a finite number within ±(2^63-1); greater
// than 0 for USAGE, not 0 for ADJUSTMENT).
func recordQuantity(v any, kind string) (quantity, bool) {
	var q quantity
	switch n := v.(type) {
	case int64:
		if n == math.MinInt64 {
			return q, false
		}
		q = quantity{isInt: true, i: n}
	case float64:
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return q, false
		}
		q = quantity{f: n}
	default:
		return q, false
	}
	if kind == kindUsage {
		return q, q.float() > 0
	}
	return q, q.float() != 0
}

func optionalString(data map[string]any, field string, maxLen int) (string, *badRecord) {
	v := data[field]
	if v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok || utf8.RuneCountInString(s) > maxLen {
		return "", bad("invalid_field", field, "must be a string of at most "+strconv.Itoa(maxLen)+" characters")
	}
	return s, nil
}

func recordHint(v any) ([]attr, *badRecord) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	problem := bad("invalid_field", "metric_tuple_hint", "must be an object of strings with the keys app_name, license_name, metric_name")
	if !ok {
		return nil, problem
	}
	for key, text := range m {
		s, isString := text.(string)
		if !slices.Contains(hintKeys, key) || !isString || utf8.RuneCountInString(s) > maxHintLen {
			return nil, problem
		}
	}
	var hint []attr
	for _, key := range hintKeys {
		if text, ok := m[key]; ok {
			hint = append(hint, attr{key, strValue(text.(string))})
		}
	}
	return hint, nil
}

// scalars reads attribution or metadata: an object of strings, booleans, int64 and
// finite doubles under non-empty keys (Python's attributes_problem).
func scalars(data map[string]any, field string) ([]attr, *badRecord) {
	v := data[field]
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, bad("invalid_field", field, "must be an object")
	}
	out := make([]attr, 0, len(m))
	for key, item := range m {
		var value attrValue
		switch x := item.(type) {
		case string:
			value = strValue(x)
		case bool:
			value = boolValue(x)
		case int64:
			value = intValue(x)
		case float64:
			if !math.IsNaN(x) && !math.IsInf(x, 0) {
				value = doubleValue(x)
			}
		}
		if key == "" || value.kind == kindNone {
			return nil, bad("invalid_field", field, "must map non-empty keys to strings, numbers or booleans")
		}
		out = append(out, attr{key, value})
	}
	return out, nil
}

// parseTimestamp reads RFC 3339 with a timezone, between 2000 and 2100, as Python's
// records.parse_timestamp does (its datetime refuses what this refuses).
func parseTimestamp(v any) (uint64, *badRecord) {
	invalid := bad("invalid_time", "timestamp", "must be RFC 3339 with a timezone, between 2000 and 2100, e.g. 2026-11-24T10:15:00.123Z")
	s, _ := v.(string)
	m := recordTimeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, invalid
	}
	n := func(i int) int { x, _ := strconv.Atoi(m[i]); return x }
	year, month, day, hour, minute, second := n(1), n(2), n(3), n(4), n(5), n(6)
	if year < 1 || month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59 {
		return 0, invalid
	}
	if day < 1 || day > time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day() {
		return 0, invalid
	}
	fraction := 0
	if m[7] != "" {
		fraction, _ = strconv.Atoi((m[7] + "00000000")[:9])
	}
	offset := 0
	if m[8] != "Z" {
		offset = n(10)*3600 + n(11)*60
		if offset >= 86400 {
			return 0, invalid
		}
		if m[9] == "-" {
			offset = -offset
		}
	}
	t := time.Date(year, time.Month(month), day, hour, minute, second, fraction, time.UTC).Add(-time.Duration(offset) * time.Second)
	if t.Year() < 2000 || t.Year() >= 2100 {
		return 0, invalid
	}
	nanos := uint64(t.UnixNano())
	if nanos < earliest || nanos >= latest {
		return 0, invalid
	}
	return nanos, nil
}

// idempotencyEventID is the id a key gives: one per (license, metric, key).
func idempotencyEventID(licenseID, metric, key string) string {
	name := appendEncStr(appendEncStr(appendEncStr(nil, licenseID), metric), key)
	return uuid5(nsIdempotency, string(name))
}

// bodyRecord converts a doow.usage log record whose body is a usage record; c.id holds
// the log record's identity (nsLog and what follows it).
func (c *converter) bodyRecord(body pcommon.Value, attrs pcommon.Map, ctx recordContext) {
	file := stringAttr(attrs, "log.file.path")
	if file == "" {
		file = stringAttr(attrs, "log.file.name")
	}
	position, hasPosition := intAttr(attrs, "log.file.record_offset")
	if !hasPosition {
		position, hasPosition = intAttr(attrs, "log.file.record_number")
	}
	var data map[string]any
	var problem *badRecord
	switch body.Type() {
	case pcommon.ValueTypeStr:
		data, problem = parseLine(body.Str())
	case pcommon.ValueTypeMap:
		data, _ = rawValue(body).(map[string]any)
	default:
		problem = bad("not_json", "body", "must be a JSON object or a map")
	}
	// a line is named by its place in its file: the file's doow.file.id (the doowfilelog
	// receiver's, which a rotation or truncation changes) and offset when it has them,
	// else, with a time of its own, its path and position; a line without either, by
	// the log record (which includes when it was read: identical lines stay apart)
	fileID := stringAttr(attrs, "doow.file.id")
	offset, hasOffset := intAttr(attrs, "log.file.record_offset")
	switch {
	case fileID != "" && hasOffset:
		c.startID(nsLine)
		c.id = appendEncInt(appendEncStr(c.id, fileID), offset)
	case file != "" && hasPosition && (data["timestamp"] != nil || data["occurred_at"] != nil):
		c.startID(nsLine)
		c.id = appendEncInt(appendEncStr(c.id, file), position)
	default:
		copy(c.id[:16], nsLine[:])
	}
	c.encValue(body)
	ctx.eventID = c.eventID()
	where := "record"
	if file != "" && hasPosition {
		where = file + ":" + strconv.FormatInt(position, 10)
	}
	if problem != nil {
		c.badRecord(problem, where)
		return
	}
	c.record(data, ctx, where)
}

// record converts a usage record, or counts and describes why it is not one.
func (c *converter) record(data map[string]any, ctx recordContext, where string) {
	e, problem := c.recordEvent(data, ctx)
	if problem != nil {
		c.badRecord(problem, where)
		return
	}
	c.result.events = append(c.result.events, e)
}

func (c *converter) badRecord(problem *badRecord, where string) {
	c.result.dropped[problem.code]++
	if len(c.result.badRecords) < maxBadRecords {
		c.result.badRecords = append(c.result.badRecords, where+": "+problem.Error())
	}
}

var (
	recordKeys = map[string]string{"doow.kind": "kind", "doow.timestamp": "timestamp", "doow.event_id": "event_id",
		"doow.idempotency_key": "idempotency_key", "doow.source_system": "source_system"}
	recordMaps   = [][2]string{{"doow.metadata.", "metadata"}, {"doow.metric_tuple_hint.", "metric_tuple_hint"}}
	recordBasics = [][2]string{{"doow.metric", "metric"}, {"doow.quantity", "quantity"}, {"doow.unit", "unit"}}
)

// attributeRecord is the usage record that doow.* attributes make when they name one of
// its fields beyond metric, quantity, unit and license; nil otherwise (the plain
// attribute form). A repeated key: the last wins, as in Python's dict.
func attributeRecord(attrs pcommon.Map) map[string]any {
	var data map[string]any
	attrs.Range(func(k string, v pcommon.Value) bool {
		if !strings.HasPrefix(k, "doow.") {
			return true
		}
		if name, ok := recordKeys[k]; ok {
			if data == nil {
				data = map[string]any{}
			}
			data[name] = rawValue(v)
			return true
		}
		for _, m := range recordMaps {
			if strings.HasPrefix(k, m[0]) {
				if data == nil {
					data = map[string]any{}
				}
				inner, _ := data[m[1]].(map[string]any)
				if inner == nil {
					inner = map[string]any{}
					data[m[1]] = inner
				}
				inner[k[len(m[0]):]] = rawValue(v)
			}
		}
		return true
	})
	if data == nil {
		return nil
	}
	attrs.Range(func(k string, v pcommon.Value) bool {
		for _, b := range recordBasics {
			if k == b[0] {
				data[b[1]] = rawValue(v)
			}
		}
		return true
	})
	return data
}

func intAttr(m pcommon.Map, key string) (int64, bool) {
	if v, ok := m.Get(key); ok && v.Type() == pcommon.ValueTypeInt {
		return v.Int(), true
	}
	return 0, false
}
