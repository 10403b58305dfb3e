package doowexporter

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The ingest answers and what a sender does with each. The table is written once, in
// tests/vectors/ingest/answers.json, and run by the Python client (doow_otel.status)
// and by this file's test: both senders decide alike.

type action string

const (
	// actionDelivered: Doow has the batch; rejected lists the events it refused.
	actionDelivered action = "delivered"
	// actionRetry: transient; retry after retryAfter when hasWait, else back off.
	actionRetry action = "retry"
	// actionSplit: a 413 of several events; send the halves.
	actionSplit action = "split"
	// actionReject: Doow will never take the batch as it is; reason says why.
	actionReject action = "reject"
	// actionKeep: not delivered and not the batch's fault; problem says what to fix.
	actionKeep action = "keep"
)

const (
	problemAuth     = "auth"     // 401, 403: the API key
	problemEndpoint = "endpoint" // redirects, 404, 405, 407 (a proxy's), 415, a 2xx that is not Doow's acknowledgement
)

// maxRetryAfter caps the waits Doow asks for.
const maxRetryAfter = 300 * time.Second

// maxReasonChars bounds the detail of a reject reason.
const maxReasonChars = 300

const noReason = "rejected (no reason given)"

type decision struct {
	action     action
	accepted   int
	rejected   []rejection
	retryAfter time.Duration
	hasWait    bool
	reason     string
	problem    string
}

// rejection is an event Doow refused, or with Metric set one measurement of it (rule R
// of docs/conversion.md): a rejection that carries "metric_name", or whose reason is
// exactly "unknown_metric: <metric>".
type rejection struct {
	EventID string `json:"event_id"`
	Reason  string `json:"reason"`
	Metric  string `json:"metric_name,omitempty"`
	// what was refused, e.g. "tokens=5 api_calls=1" (the sender fills it in)
	refused string
}

const unknownMetric = "unknown_metric: "

// decideFailure is the decision for a request that got no answer (a dropped
// connection, a timeout): Doow may or may not have the batch, and resending it under
// the same ids is safe.
func decideFailure() decision {
	return decision{action: actionRetry}
}

// decide maps Doow's answer to a batch of the events ids onto what the sender does;
// now dates a Retry-After given as an HTTP date.
func decide(ids []string, status int, header http.Header, body []byte, now time.Time) decision {
	switch {
	case status >= 200 && status < 300:
		ack, ok := acknowledgement(body)
		if !ok {
			return decision{action: actionKeep, problem: problemEndpoint}
		}
		rejected := rejectedEvents(ids, ack)
		return decision{action: actionDelivered, accepted: distinct(ids) - len(rejected), rejected: rejected}
	case status < 200 || (status >= 300 && status < 400):
		return decision{action: actionKeep, problem: problemEndpoint}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return decision{action: actionKeep, problem: problemAuth}
	case status == http.StatusNotFound || status == http.StatusMethodNotAllowed ||
		status == http.StatusProxyAuthRequired || status == http.StatusUnsupportedMediaType:
		return decision{action: actionKeep, problem: problemEndpoint}
	case status == http.StatusRequestEntityTooLarge && len(ids) > 1:
		return decision{action: actionSplit}
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500:
		wait, ok := retryAfter(header, now)
		return decision{action: actionRetry, retryAfter: wait, hasWait: ok}
	default:
		return decision{action: actionReject, reason: rejectReason(status, body)}
	}
}

// acknowledgement parses Doow's acknowledgement: a JSON object with an accepted or a
// rejections key. Anything else (an HTML page, an empty body, other JSON) is not one.
func acknowledgement(body []byte) (map[string]json.RawMessage, bool) {
	var ack map[string]json.RawMessage
	if json.Unmarshal(body, &ack) != nil || ack == nil {
		return nil, false
	}
	_, accepted := ack["accepted"]
	_, rejections := ack["rejections"]
	return ack, accepted || rejections
}

// rejectedEvents lists the sent events an acknowledgement refuses, each once with its
// first reason; ids that were not sent are ignored. An older server lists the accepted
// ids instead: the others were rejected, without a reason.
func rejectedEvents(ids []string, ack map[string]json.RawMessage) []rejection {
	sent := make(map[string]bool, len(ids))
	for _, id := range ids {
		sent[id] = true
	}
	var rejected []rejection
	seen := map[string]bool{}
	reject := func(id, reason, metric string) {
		if sent[id] && !seen[id] {
			seen[id] = true
			rejected = append(rejected, rejection{EventID: id, Reason: reason, Metric: metric})
		}
	}
	var items []json.RawMessage
	if json.Unmarshal(ack["rejections"], &items) == nil {
		for _, item := range items {
			var fields map[string]json.RawMessage
			var id string
			if json.Unmarshal(item, &fields) == nil && isJSONString(fields["event_id"]) &&
				json.Unmarshal(fields["event_id"], &id) == nil {
				reason := reasonText(fields["reason"])
				reject(id, reason, namedMetric(fields["metric_name"], reason))
			}
		}
	}
	var acceptedIDs []json.RawMessage
	if json.Unmarshal(ack["accepted"], &acceptedIDs) == nil && acceptedIDs != nil {
		accepted := map[string]bool{}
		for _, raw := range acceptedIDs {
			var id string
			if isJSONString(raw) && json.Unmarshal(raw, &id) == nil {
				accepted[id] = true
			}
		}
		for _, id := range ids {
			if !accepted[id] {
				reject(id, noReason, "")
			}
		}
	}
	return rejected
}

// namedMetric is the metric a rejection names: its metric_name when a non-empty string,
// else what follows "unknown_metric: " in its reason, else "".
func namedMetric(raw json.RawMessage, reason string) string {
	var metric string
	if isJSONString(raw) && json.Unmarshal(raw, &metric) == nil && metric != "" {
		return metric
	}
	if named, ok := strings.CutPrefix(reason, unknownMetric); ok {
		return named
	}
	return ""
}

func distinct(ids []string) int {
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		seen[id] = true
	}
	return len(seen)
}

func isJSONString(raw json.RawMessage) bool {
	return len(raw) > 0 && raw[0] == '"'
}

// reasonText is a rejection's reason as text: a string as it is, a number or a boolean
// as Python's str() writes it (so both senders report alike), anything else raw.
func reasonText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return noReason
	case raw[0] == '"':
		var text string
		if json.Unmarshal(raw, &text) == nil {
			return text
		}
	case string(raw) == "true":
		return "True"
	case string(raw) == "false":
		return "False"
	case raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'):
		return pythonNumber(string(raw))
	}
	return string(raw)
}

// pythonNumber writes a JSON number as Python's str() does after json.loads: integers
// exactly, floats in repr's shortest form (3.0, 1e+16, 1.5e-07, inf).
func pythonNumber(literal string) string {
	if !strings.ContainsAny(literal, ".eE") {
		if n, ok := new(big.Int).SetString(literal, 10); ok {
			return n.String()
		}
		return literal
	}
	f, err := strconv.ParseFloat(literal, 64)
	if err != nil && !math.IsInf(f, 0) {
		return literal
	}
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	scientific := strconv.FormatFloat(f, 'e', -1, 64)
	exponent, _ := strconv.Atoi(scientific[strings.IndexByte(scientific, 'e')+1:])
	if exponent < -4 || exponent >= 16 {
		return scientific
	}
	text := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(text, ".") {
		text += ".0"
	}
	return text
}

// rejectReason is "HTTP <status>: " and the answer's message: a string message, error
// or reason field of a JSON object, a JSON string's value, or else the raw body.
func rejectReason(status int, body []byte) string {
	detail := string(body)
	var object map[string]json.RawMessage
	var text string
	if json.Unmarshal(body, &object) == nil && object != nil {
		for _, key := range []string{"message", "error", "reason"} {
			if isJSONString(object[key]) && json.Unmarshal(object[key], &text) == nil {
				detail = text
				break
			}
		}
	} else if isJSONString(bytes.TrimSpace(body)) && json.Unmarshal(body, &text) == nil {
		detail = text
	}
	detail = strings.TrimSpace(detail)
	if utf8.RuneCountInString(detail) > maxReasonChars {
		detail = string([]rune(detail)[:maxReasonChars])
	}
	return "HTTP " + strconv.Itoa(status) + ": " + detail
}

// retryAfter reads how long Doow asks the sender to wait: Retry-After (whole seconds
// or an HTTP date, relative to now) and X-Doow-Rate-Limits (the largest numeric
// retry_after among its categories); the longer wins, capped at maxRetryAfter.
// Negative or unreadable values are ignored.
func retryAfter(header http.Header, now time.Time) (time.Duration, bool) {
	var wait time.Duration
	found := false
	if value := strings.TrimSpace(header.Get("Retry-After")); value != "" {
		if isDigits(value) {
			seconds, err := strconv.ParseUint(value, 10, 64)
			if err != nil || seconds > uint64(maxRetryAfter/time.Second) {
				seconds = uint64(maxRetryAfter / time.Second)
			}
			wait, found = time.Duration(seconds)*time.Second, true
		} else if date, err := http.ParseTime(value); err == nil {
			wait, found = max(min(date.Sub(now), maxRetryAfter), 0), true
		}
	}
	var categories map[string]json.RawMessage
	if limits := header.Get("X-Doow-Rate-Limits"); limits != "" && json.Unmarshal([]byte(limits), &categories) == nil {
		for _, raw := range categories {
			var category map[string]json.RawMessage
			if json.Unmarshal(raw, &category) != nil || !isJSONNumber(category["retry_after"]) {
				continue
			}
			// a number past float64's range reads as infinite, as in Python: capped
			seconds, err := strconv.ParseFloat(string(bytes.TrimSpace(category["retry_after"])), 64)
			if (err != nil && !math.IsInf(seconds, 0)) || seconds < 0 {
				continue
			}
			wait = max(wait, time.Duration(min(seconds, maxRetryAfter.Seconds())*float64(time.Second)))
			found = true
		}
	}
	return min(wait, maxRetryAfter), found
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

func isJSONNumber(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'))
}
