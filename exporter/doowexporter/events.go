package doowexporter

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// The rules of docs/conversion.md and of the Python package's events module: what a
// valid Doow event is, and which attribution is stripped as a secret or payload.

const (
	maxMetricLen    = 128
	maxLicenseLen   = 128
	maxUnitLen      = 64
	maxAttributes   = 64
	maxAttrValueLen = 256
)

// The attribution policy's patterns, written as Python's re module reads them, so
// both implementations strip the same keys and values: Python's \b and \s are
// Unicode-aware (Go's are ASCII), its $ also matches before a final newline (\n?$),
// and its IGNORECASE lets ı and İ match i (pyIgnoreCase).
const (
	pyWord  = `\p{L}\p{N}_`
	pySpace = `\t-\r\x1c-\x20\x85\p{Z}`
	before  = `(?:^|[^` + pyWord + `])` // \b before a word character
	after   = `(?:[^` + pyWord + `]|$)` // \b after a word character
)

var (
	secretKeyRE = regexp.MustCompile(`(?i)` + pyIgnoreCase(`(authori[sz]ation|passw(or)?d|passwd|passphrase|secret|`+
		`api[_-]?key|apikey|access[_-]?key|private[_-]?key|cookie|session|token|credential|bearer|signature)`))
	// token counts (input_tokens, max_tokens, llm.token_count.prompt) are not secrets;
	// access_token, api_token, session_token are
	countKeyRE = regexp.MustCompile(`(?i)(^|[._])` + pyIgnoreCase(`((((input|output|total|prompt|completion|cached|reasoning)_?)?tokens)`+
		`|(input|output|total|prompt|completion|cached|reasoning)_?token`+
		`|token_?counts?(\.(input|output|total|prompt|completion))?)`) + `\n?$`)
	secretValueRE = regexp.MustCompile(before + `dk_[A-Za-z0-9_\-]{6,}` +
		`|` + before + `(Bearer|bearer|BEARER)[` + pySpace + `]+[^` + pySpace + `]+` +
		`|` + before + `[Bb]asic[` + pySpace + `]+([A-Za-z0-9+/]{6,}([a-z][A-Z]|[0-9+/=])` +
		`|[A-Za-z0-9+/]*([a-z][A-Z]|[0-9+/=])[A-Za-z0-9+/]{6,})` +
		`|://[^` + pySpace + `/?#@:]*:[^` + pySpace + `/?#@]+@` +
		`|` + before + `eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*` +
		`|` + before + `(AKIA|ASIA)[A-Z0-9]{16}` + after +
		`|` + before + `sk-[A-Za-z0-9_\-]{16,}` +
		`|` + before + `[rs]k_(live|test)_[A-Za-z0-9]{8,}` +
		`|` + before + `gh[pousr]_[A-Za-z0-9]{20,}|` + before + `github_pat_[A-Za-z0-9_]{20,}` +
		`|` + before + `xox[abposr]-[A-Za-z0-9\-]{8,}` +
		`|` + before + `AIza[A-Za-z0-9_\-]{35}` +
		`|-----BEGIN [A-Z ]*PRIVATE KEY-----|-----BEGIN [A-Z ]+-----`)
)

func pyIgnoreCase(pattern string) string { return strings.ReplaceAll(pattern, "i", "[iıİ]") }

// attrValue is an attribution value: a string, bool, int64 or float64 (no boxing: a
// conversion makes millions of them).
type attrValue struct {
	kind valueKind
	str  string
	bits uint64 // the int64, the float64's bits, or the bool as 0/1
}

type valueKind uint8

const (
	kindNone valueKind = iota
	kindStr
	kindBool
	kindInt
	kindDouble
)

func strValue(s string) attrValue     { return attrValue{kind: kindStr, str: s} }
func intValue(i int64) attrValue      { return attrValue{kind: kindInt, bits: uint64(i)} }
func doubleValue(f float64) attrValue { return attrValue{kind: kindDouble, bits: math.Float64bits(f)} }
func boolValue(b bool) attrValue {
	if b {
		return attrValue{kind: kindBool, bits: 1}
	}
	return attrValue{kind: kindBool}
}

// attr is one attribution entry; attribution is kept sorted by key bytes.
type attr struct {
	key   string
	value attrValue
}

// quantity keeps Python's distinction between integers and doubles on the wire.
type quantity struct {
	isInt bool
	i     int64
	f     float64
}

func (q quantity) float() float64 {
	if q.isInt {
		return float64(q.i)
	}
	return q.f
}

// event is one Doow usage event, as POST /telemetry/events takes it.
type event struct {
	eventID     string
	licenseID   string
	nanos       uint64 // occurred_at
	unit        string
	metric      string
	quantity    quantity
	attribution []attr

	// usage records' own fields (records.go); the zero values are what other usage gets
	adjustment   bool
	sourceSystem string // "" is "sdk"
	metadata     []attr
	hint         []attr // metric_tuple_hint, in the order app_name, license_name, metric_name

	// packing (pack.go): a metric data point's event is packable, with the others of its
	// ScopeMetrics (scope counts them across the push); a packed event's measurements
	// after the first (metric, quantity) are in more, in metric name order
	packable bool
	scope    int32
	more     []measurement
	start    uint64 // a metric data point's start time (its window's, when aggregated)
}

// measurement is one of a packed event's measurements.
type measurement struct {
	metric   string
	quantity quantity
}

// whyStripped says why an attribution entry may not be sent, or "".
func whyStripped(key string, value attrValue) string {
	if keyNamesSecret(key) {
		return "key names a secret"
	}
	if value.kind == kindStr {
		return whyValueStripped(value.str)
	}
	return ""
}

// whyValueStripped says why a string value may not be sent, or "".
func whyValueStripped(s string) string {
	if len(s) > maxAttrValueLen && utf8.RuneCountInString(s) > maxAttrValueLen {
		return "value too long (payload or log?)"
	}
	if looksLikeCredential(s) {
		return "value looks like a credential"
	}
	return ""
}

// The patterns cost microseconds per match, which would dominate the conversion:
// keys repeat from event to event, so each key's answer is remembered (up to a bound),
// and a value is matched only when it holds one of the literals every credential
// pattern starts with.
const maxRememberedKeys = 4096

var (
	secretKeys      sync.Map // key -> bool
	rememberedKeys  atomic.Int64
	credentialStart = []string{"dk_", "earer", "EARER", "asic", "://", "eyJ", "AKIA", "ASIA", "sk-",
		"k_live_", "k_test_", "gh", "github_pat_", "xox", "AIza", "-----BEGIN "}
)

func keyNamesSecret(key string) bool {
	if known, ok := secretKeys.Load(key); ok {
		return known.(bool)
	}
	secret := secretKeyRE.MatchString(key) && !countKeyRE.MatchString(key)
	if rememberedKeys.Add(1) <= maxRememberedKeys {
		secretKeys.Store(key, secret)
	}
	return secret
}

func looksLikeCredential(value string) bool {
	for _, literal := range credentialStart {
		if strings.Contains(value, literal) {
			return secretValueRE.MatchString(value)
		}
	}
	return false
}

// strippedAttr is an attribution key the policy removed, and why; never the value.
type strippedAttr struct{ key, reason string }

// metricValid: letters, digits and _ . : - (ASCII, as Python's pattern), at most 128.
func metricValid(metric string) bool {
	if metric == "" || len(metric) > maxMetricLen {
		return false
	}
	for i := 0; i < len(metric); i++ {
		c := metric[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_.:-", c) >= 0) {
			return false
		}
	}
	return true
}

func licenseValid(license string) bool {
	if license == "" || len(license) > maxLicenseLen && utf8.RuneCountInString(license) > maxLicenseLen {
		return false
	}
	if c := license[0]; c < utf8.RuneSelf && c > ' ' && c != '\x7f' { // the common case: not blank
		return true
	}
	return strings.TrimFunc(license, pyIsSpace) != ""
}

// pyIsSpace is Python's str.isspace: Go's unicode.IsSpace, and the separators \x1c-\x1f.
func pyIsSpace(r rune) bool { return unicode.IsSpace(r) || '\x1c' <= r && r <= '\x1f' }

// appendTime writes ISO 8601 in UTC with milliseconds, truncated.
func appendTime(buf []byte, nanos uint64) []byte {
	t := time.UnixMilli(int64(nanos / 1_000_000)).UTC()
	year, month, day := t.Date()
	hour, minute, second := t.Clock()
	if year < 0 || year > 9999 {
		return t.AppendFormat(buf, "2006-01-02T15:04:05.000Z")
	}
	buf = appendDigits(buf, year, 4)
	buf = appendDigits(append(buf, '-'), int(month), 2)
	buf = appendDigits(append(buf, '-'), day, 2)
	buf = appendDigits(append(buf, 'T'), hour, 2)
	buf = appendDigits(append(buf, ':'), minute, 2)
	buf = appendDigits(append(buf, ':'), second, 2)
	buf = appendDigits(append(buf, '.'), t.Nanosecond()/1_000_000, 3)
	return append(buf, 'Z')
}

func appendDigits(buf []byte, n, width int) []byte {
	var digits [4]byte
	for i := width - 1; i >= 0; i-- {
		digits[i] = byte('0' + n%10)
		n /= 10
	}
	return append(buf, digits[:width]...)
}

// timeText remembers the last time written: the points of a push mostly share one.
type timeText struct {
	millis uint64
	text   []byte
}

func (t *timeText) appendTo(buf []byte, nanos uint64) []byte {
	if millis := nanos / 1_000_000; t.text == nil || millis != t.millis {
		t.millis, t.text = millis, appendTime(t.text[:0], nanos)
	}
	return append(buf, t.text...)
}

// formatTime is appendTime as a string.
func formatTime(nanos uint64) string { return string(appendTime(nil, nanos)) }

const hexDigits = "0123456789abcdef"

// uuid5 is the version 5 (SHA-1) UUID of name in namespace.
func uuid5(namespace uuid.UUID, name string) string {
	return uuid.NewSHA1(namespace, []byte(name)).String()
}

// pyFloat is a double as Python's repr writes it (the shortest digits that round-trip,
// ".0" on integral values, an exponent from 1e16 or below 1e-4): the text of an array
// item in attribution (scalarText) is content, and Python writes the same.
func pyFloat(f float64) string {
	if math.Trunc(f) == f && math.Abs(f) < 1e16 {
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	text := strconv.FormatFloat(f, 'e', -1, 64)
	mantissa, exponent, _ := strings.Cut(text, "e")
	exp, _ := strconv.Atoi(exponent)
	if exp < -4 || exp >= 16 {
		return fmt.Sprintf("%se%+03d", mantissa, exp)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// appendJSONFloat writes a finite double as a JSON number, as encoding/json does (the
// shortest digits that round-trip): the wire need not be byte-identical to Python's,
// only the same numbers (the vectors compare parsed JSON).
func appendJSONFloat(buf []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(buf, f, format, -1, 64)
}

// scalarText is how an array item is written when arrays are joined with ",".
func scalarText(v attrValue) string {
	switch v.kind {
	case kindBool:
		if v.bits != 0 {
			return "true"
		}
		return "false"
	case kindInt:
		return strconv.FormatInt(int64(v.bits), 10)
	case kindDouble:
		return pyFloat(math.Float64frombits(v.bits))
	case kindStr:
		return v.str
	}
	return ""
}

// appendJSONString writes s as a JSON string, without reflection (a conversion writes
// millions): '"', '\\' and control characters escaped, the rest as UTF-8, invalid UTF-8
// as U+FFFD.
func appendJSONString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	if !needsEscape(s) {
		return append(append(buf, s...), '"')
	}
	for _, r := range s {
		switch r {
		case '"':
			buf = append(buf, `\"`...)
		case '\\':
			buf = append(buf, `\\`...)
		case '\b':
			buf = append(buf, `\b`...)
		case '\f':
			buf = append(buf, `\f`...)
		case '\n':
			buf = append(buf, `\n`...)
		case '\r':
			buf = append(buf, `\r`...)
		case '\t':
			buf = append(buf, `\t`...)
		default:
			if r < 0x20 {
				buf = append(buf, `\u00`...)
				buf = append(buf, hexDigits[r>>4], hexDigits[r&0xf])
			} else {
				buf = utf8.AppendRune(buf, r) // ranging turned invalid UTF-8 into U+FFFD
			}
		}
	}
	return append(buf, '"')
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

func appendValue(buf []byte, v attrValue) []byte {
	switch v.kind {
	case kindStr:
		return appendJSONString(buf, v.str)
	case kindBool:
		return strconv.AppendBool(buf, v.bits != 0)
	case kindInt:
		return strconv.AppendInt(buf, int64(v.bits), 10)
	case kindDouble:
		return appendJSONFloat(buf, math.Float64frombits(v.bits))
	}
	return buf
}

// appendTo writes the event as Doow's ingest API takes it.
func (e *event) appendTo(buf []byte, times *timeText) []byte {
	buf = append(buf, `{"event_id":"`...)
	buf = append(buf, e.eventID...) // a UUID: nothing to escape
	buf = append(buf, '"')
	buf = append(buf, `,"license_id":`...)
	buf = appendJSONString(buf, e.licenseID)
	buf = append(buf, `,"occurred_at":"`...)
	buf = times.appendTo(buf, e.nanos)
	if e.sourceSystem == "" {
		buf = append(buf, `","source_system":"sdk"`...)
	} else {
		buf = append(buf, `","source_system":`...)
		buf = appendJSONString(buf, e.sourceSystem)
	}
	if e.adjustment {
		buf = append(buf, `,"kind":"ADJUSTMENT","attribution":`...)
	} else {
		buf = append(buf, `,"kind":"USAGE","attribution":`...)
	}
	buf = appendObject(buf, e.attribution)
	buf = append(buf, `,"metadata":`...)
	buf = appendObject(buf, e.metadata)
	buf = append(buf, `,"measurements":[{"metric_name":`...)
	buf = appendJSONString(buf, e.metric)
	buf = append(buf, `,"quantity":`...)
	buf = appendQuantity(buf, e.quantity)
	if e.hint != nil {
		buf = appendObject(append(buf, `,"metric_tuple_hint":`...), e.hint)
	}
	for _, m := range e.more {
		buf = append(buf, `},{"metric_name":`...)
		buf = appendJSONString(buf, m.metric)
		buf = appendQuantity(append(buf, `,"quantity":`...), m.quantity)
	}
	buf = append(buf, `}]`...)
	if e.unit != "" {
		buf = append(buf, `,"unit":`...)
		buf = appendJSONString(buf, e.unit)
	}
	if e.hint != nil {
		buf = appendObject(append(buf, `,"metric_tuple_hint":`...), e.hint)
	}
	return append(buf, '}')
}

func appendQuantity(buf []byte, q quantity) []byte {
	if q.isInt {
		return strconv.AppendInt(buf, q.i, 10)
	}
	return appendJSONFloat(buf, q.f)
}

func appendObject(buf []byte, entries []attr) []byte {
	buf = append(buf, '{')
	for i, a := range entries {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, a.key)
		buf = append(buf, ':')
		buf = appendValue(buf, a.value)
	}
	return append(buf, '}')
}

// encode is the event's JSON on its own.
func (e *event) encode() []byte { return e.appendTo(make([]byte, 0, 256), &timeText{}) }
