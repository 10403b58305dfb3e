package doowexporter

import (
	"strings"
	"testing"
)

// The attribution policy and the JSON strings must match Python's re and json modules
// exactly; the expected answers below were taken from the Python package
// (events.DEFAULT_POLICY.why_stripped and wire.encode_event).

func TestPolicyReadsPatternsAsPython(t *testing.T) {
	keys := map[string]bool{ // key -> stripped
		"sessıon": true, "sessİon": true, "ſecret": true, "api_key": true,
		"input_tokens": false, "x.tokens\n": false, "tokens\n\n": true, "user": false,
		"access_token": true, "refresh_token": true, "api_token": true, "session_token": true,
		"auth_token": true, "gen_ai.usage.output_tokens": false, "max_tokens": false,
		"llm.token_count.prompt": false,
	}
	for key, stripped := range keys {
		if got := whyStripped(key, intValue(1)) != ""; got != stripped {
			t.Errorf("key %q stripped = %v, Python says %v", key, got, stripped)
		}
	}
	values := map[string]bool{ // value -> stripped
		"édk_abcdefg": false, "xdk_abcdefg": false, "٣dk_abcdefg": false, "a dk_abcdefg": true,
		"Bearer\u00a0abc": true, "Bearer\vabc": true,
		"AKIA0123456789ABCDEFé": false, "AKIA0123456789ABCDEF.": true,
		strings.Repeat("é", 256): false, strings.Repeat("é", 257): true,
		"bearer xyz": true, "Basic dXNlcjpwYXNz": true, "basic plan": false,
		"Basic YWxhZGRpbjpvcGVuc2VzYW1l": true, "Basic 5GB": false, "Basic 2024": false,
		"postgres://app:hunter2@db:5432/app": true, "https://h:443/a@b": false,
		"sk-proj-AbCdEf0123456789": true, "sk_live_51H8abcdEF": true, "xoxb-123456789012": true,
		"ghp_0123456789abcdefghijAB": true, "task-abcdefghijklmnopqrs": false,
	}
	for value, stripped := range values {
		if got := whyStripped("k", strValue(value)) != ""; got != stripped {
			t.Errorf("value %q stripped = %v, Python says %v", value, got, stripped)
		}
	}
}

func TestJSONStringsAreWrittenAsPython(t *testing.T) {
	got := string(appendJSONString(nil, "q\"\\\n\t\x01\b\f\x7f<>&\u2028é"))
	if want := "\"q\\\"\\\\\\n\\t\\u0001\\b\\f\x7f<>&\u2028é\""; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestLicenseOfWhitespaceIsInvalidAsInPython(t *testing.T) {
	// str.strip() also strips \x1c-\x1f, which Go's unicode.IsSpace does not know
	for _, license := range []string{" ", "\u00a0", " \x1f"} {
		if licenseValid(license) {
			t.Errorf("license %q is valid; Python says invalid_license", license)
		}
	}
	if !licenseValid("lic_é") || licenseValid(strings.Repeat("é", 129)) {
		t.Error("licenses are at most 128 characters (not bytes)")
	}
}
