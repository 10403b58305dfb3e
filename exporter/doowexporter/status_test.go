package doowexporter

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The shared table of ingest answers, also run by the Python client.
var answersFile = filepath.Join("..", "..", "tests", "vectors", "ingest", "answers.json")

type answerCase struct {
	Name    string   `json:"name"`
	Events  []string `json:"events"`
	Now     string   `json:"now"`
	Failure string   `json:"failure"`
	Answer  struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	} `json:"answer"`
	Decision struct {
		Action     string      `json:"action"`
		Accepted   int         `json:"accepted"`
		Rejected   []rejection `json:"rejected"`
		RetryAfter *float64    `json:"retry_after"`
		Reason     string      `json:"reason"`
		Problem    string      `json:"problem"`
	} `json:"decision"`
}

func TestEveryIngestAnswerIsDecidedAsTheSharedTableSays(t *testing.T) {
	cases := readAnswers(t, answersFile)
	require.GreaterOrEqual(t, len(cases), 48)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) { checkDecision(t, c) })
	}
}

// Random answers decided by the Python client (scripts/status_fuzz.py; go-check
// writes them and sets DOOW_STATUS_FUZZ) are decided alike here.
func TestPythonAndGoDecideRandomAnswersAlike(t *testing.T) {
	path := os.Getenv("DOOW_STATUS_FUZZ")
	if path == "" {
		t.Skip("DOOW_STATUS_FUZZ is not set: scripts/go-check.sh sets it")
	}
	for _, c := range readAnswers(t, path) {
		t.Run(c.Name, func(t *testing.T) { checkDecision(t, c) })
	}
}

func readAnswers(t *testing.T, path string) []answerCase {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var file struct {
		Cases []answerCase `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(data, &file))
	return file.Cases
}

func checkDecision(t *testing.T, c answerCase) {
	var got decision
	if c.Failure != "" {
		got = decideFailure()
	} else {
		now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
		if c.Now != "" {
			var err error
			now, err = time.Parse(time.RFC3339, c.Now)
			require.NoError(t, err)
		}
		header := http.Header{}
		for k, v := range c.Answer.Headers {
			header.Set(k, v)
		}
		got = decide(c.Events, c.Answer.Status, header, []byte(c.Answer.Body), now)
	}
	want := c.Decision
	require.Equal(t, want.Action, string(got.action))
	switch got.action {
	case actionDelivered:
		assert.Equal(t, want.Accepted, got.accepted, "accepted")
		assert.Equal(t, len(want.Rejected), len(got.rejected), "rejected: %+v", got.rejected)
		if len(want.Rejected) > 0 {
			assert.Equal(t, want.Rejected, got.rejected)
		}
	case actionRetry:
		if want.RetryAfter == nil {
			assert.False(t, got.hasWait, "no wait, backoff; got %v", got.retryAfter)
		} else {
			assert.True(t, got.hasWait, "a wait")
			assert.InDelta(t, *want.RetryAfter, got.retryAfter.Seconds(), 1e-9)
		}
	case actionReject:
		assert.Equal(t, want.Reason, got.reason)
	case actionKeep:
		assert.Equal(t, want.Problem, got.problem)
	}
}

func TestRejectionReasonsReadAsPythonWritesThem(t *testing.T) {
	// str(json.loads(literal)) in Python
	for literal, want := range map[string]string{
		`3`: "3", `3.0`: "3.0", `1e16`: "1e+16", `1.5e-7`: "1.5e-07", `0.0001`: "0.0001",
		`0.00001`: "1e-05", `12345678901234567890`: "12345678901234567890", `-0.0`: "-0.0",
		`1e400`: "inf", `1E2`: "100.0", `2.5e15`: "2500000000000000.0", `-0`: "0",
		`true`: "True", `null`: noReason, `"text"`: "text",
	} {
		assert.Equal(t, want, reasonText(json.RawMessage(literal)), literal)
	}
}

func TestRejectReasonsAreBounded(t *testing.T) {
	long := make([]byte, 1000)
	for i := range long {
		long[i] = 'x'
	}
	got := decide([]string{"a"}, 400, http.Header{}, long, time.Now())
	assert.Equal(t, "HTTP 400: "+string(long[:maxReasonChars]), got.reason)
}
