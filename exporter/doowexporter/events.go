package doowexporter

import (
	"bytes"
	"crypto/sha1"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
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
		`|` + before + `[Bb]asic[` + pySpace + `]+[A-Za-z0-9+/]*([a-z][A-Z]|[0-9+/=])[A-Za-z0-9+/]*` +
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

// attrValue is an attribution value: string, bool, int64 or float64.
type attrValue any

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
	occurredAt  string
	unit        string
	metric      string
	quantity    quantity
	attribution []attr
}

// whyStripped says why an attribution entry may not be sent, or "".
func whyStripped(key string, value attrValue) string {
	if keyNamesSecret(key) {
		return "key names a secret"
	}
	if s, ok := value.(string); ok {
		if utf8.RuneCountInString(s) > maxAttrValueLen {
			return "value too long (payload or log?)"
		}
		if looksLikeCredential(s) {
			return "value looks like a credential"
		}
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

// cleanAttribution applies the attribution policy; stripped keys are counted.
func cleanAttribution(attrs []attr, stripped map[strippedAttr]int) []attr {
	out := make([]attr, 0, len(attrs))
	for _, a := range attrs {
		reason := whyStripped(a.key, a.value)
		if reason == "" && len(out) >= maxAttributes {
			reason = "too many attribution keys"
		}
		if reason != "" {
			stripped[strippedAttr{a.key, reason}]++
			continue
		}
		out = append(out, a)
	}
	return out
}

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
	return strings.TrimFunc(license, pyIsSpace) != "" && utf8.RuneCountInString(license) <= maxLicenseLen
}

// pyIsSpace is Python's str.isspace: Go's unicode.IsSpace, and the separators \x1c-\x1f.
func pyIsSpace(r rune) bool { return unicode.IsSpace(r) || '\x1c' <= r && r <= '\x1f' }

// formatTime is ISO 8601 in UTC with milliseconds, truncated.
func formatTime(nanos uint64) string {
	millis := int64(nanos / 1_000_000)
	return time.UnixMilli(millis).UTC().Format("2006-01-02T15:04:05.000Z")
}

const hexDigits = "0123456789abcdef"

// uuid5 is RFC 4122 version 5 (SHA-1) of name in namespace.
func uuid5(namespace [16]byte, name string) string {
	input := make([]byte, 0, 16+len(name))
	input = append(append(input, namespace[:]...), name...)
	sum := sha1.Sum(input)
	sum[6] = (sum[6] & 0x0f) | 0x50
	sum[8] = (sum[8] & 0x3f) | 0x80
	out := make([]byte, 0, 36)
	for i := 0; i < 16; i++ {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hexDigits[sum[i]>>4], hexDigits[sum[i]&0x0f])
	}
	return string(out)
}

func mustUUID(text string) [16]byte {
	var out [16]byte
	hexText := strings.ReplaceAll(text, "-", "")
	for i := 0; i < 16; i++ {
		v, err := strconv.ParseUint(hexText[2*i:2*i+2], 16, 8)
		if err != nil {
			panic(err)
		}
		out[i] = byte(v)
	}
	return out
}

// pyFloat formats a double as Python's repr does (and so its json module): the
// shortest digits that round-trip, ".0" on integral values, exponent from 1e16 or
// below 1e-4. Python and Go must write the same quantities.
func pyFloat(f float64) string {
	if math.Trunc(f) == f && math.Abs(f) < 1e16 {
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	sci := strconv.FormatFloat(f, 'e', -1, 64)
	mantissa, expText, _ := strings.Cut(sci, "e")
	exp, _ := strconv.Atoi(expText)
	if exp < -4 || exp >= 16 {
		sign := "+"
		if exp < 0 {
			sign, exp = "-", -exp
		}
		return mantissa + "e" + sign + padTwo(exp)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

func padTwo(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

// scalarText is how an array item is written when arrays are joined with ",".
func scalarText(v attrValue) string {
	switch x := v.(type) {
	case bool:
		if x {
			return "true"
		}
		return "false"
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return pyFloat(x)
	case string:
		return x
	}
	return ""
}

// writeJSONString writes s as Python's json module does with ensure_ascii=False, so
// both implementations send the same bytes (and so split batches at the same points):
// only '"', '\\' and control characters are escaped; invalid UTF-8 becomes U+FFFD.
func writeJSONString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	if !needsEscape(s) {
		buf.WriteString(s)
		buf.WriteByte('"')
		return
	}
	for _, r := range s {
		switch r {
		case '"':
			buf.WriteString(`\"`)
		case '\\':
			buf.WriteString(`\\`)
		case '\b':
			buf.WriteString(`\b`)
		case '\f':
			buf.WriteString(`\f`)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		default:
			if r < 0x20 {
				buf.WriteString(`\u00`)
				buf.WriteByte(hexDigits[r>>4])
				buf.WriteByte(hexDigits[r&0xf])
			} else {
				buf.WriteRune(r) // ranging turned invalid UTF-8 into U+FFFD
			}
		}
	}
	buf.WriteByte('"')
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

func writeValue(buf *bytes.Buffer, v attrValue) {
	switch x := v.(type) {
	case string:
		writeJSONString(buf, x)
	case bool:
		buf.WriteString(strconv.FormatBool(x))
	case int64:
		buf.WriteString(strconv.FormatInt(x, 10))
	case float64:
		buf.WriteString(pyFloat(x))
	}
}

// encode writes the event as Doow's ingest API takes it.
func (e *event) encode() []byte {
	buf := bytes.NewBuffer(make([]byte, 0, 256))
	buf.WriteString(`{"event_id":`)
	writeJSONString(buf, e.eventID)
	buf.WriteString(`,"license_id":`)
	writeJSONString(buf, e.licenseID)
	buf.WriteString(`,"occurred_at":"` + e.occurredAt + `","source_system":"sdk","kind":"USAGE","attribution":{`)
	for i, a := range e.attribution {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeJSONString(buf, a.key)
		buf.WriteByte(':')
		writeValue(buf, a.value)
	}
	buf.WriteString(`},"metadata":{},"measurements":[{"metric_name":`)
	writeJSONString(buf, e.metric)
	buf.WriteString(`,"quantity":`)
	if e.quantity.isInt {
		buf.WriteString(strconv.FormatInt(e.quantity.i, 10))
	} else {
		buf.WriteString(pyFloat(e.quantity.f))
	}
	buf.WriteString(`}]`)
	if e.unit != "" {
		buf.WriteString(`,"unit":`)
		writeJSONString(buf, e.unit)
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

func sortAttrs(attrs []attr) {
	sort.SliceStable(attrs, func(i, j int) bool { return attrs[i].key < attrs[j].key })
}
