package doowexporter

import (
	"net/url"
	"strings"
)

// redactor removes the secrets the exporter holds from any text it logs or returns: the
// api_key, the gateway's token, the values of the configured headers, the password of a proxy_url or an
// endpoint. Doow, a proxy or a load balancer may echo a request's headers in an answer
// (a 503 page that quotes Authorization), and the answer's text goes into errors and
// logs; everything the exporter says of an answer or a failed request passes here.
type redactor struct{ secrets []string }

const redacted = "[REDACTED]"

// minSecretLen: shorter header values (a "1", a "json") are not secrets, and redacting
// them would garble every message.
const minSecretLen = 4

func newRedactor(cfg *Config) redactor {
	var r redactor
	r.add(string(cfg.APIKey))
	r.add(string(cfg.Gateway.Token))
	for _, value := range cfg.Headers.Iter {
		r.add(string(value))
	}
	for _, address := range []string{cfg.Endpoint, cfg.ProxyURL} {
		if u, err := url.Parse(address); err == nil && u.User != nil {
			password, _ := u.User.Password()
			r.add(password)
		}
	}
	return r
}

func (r *redactor) add(secret string) {
	if len(secret) >= minSecretLen {
		r.secrets = append(r.secrets, secret)
	}
}

// text is s with every secret replaced by [REDACTED]. Redact before cutting a text
// short: a cut secret is no longer found.
func (r redactor) text(s string) string {
	for _, secret := range r.secrets {
		if strings.Contains(s, secret) {
			s = strings.ReplaceAll(s, secret, redacted)
		}
	}
	return s
}

// err is err with a redacted message. What it wraps stays reachable (errors.As still
// finds a permanent error or a throttle delay), but every layer that wrapped foreign
// text redacted it at the source (send), so no inner message holds a secret either.
func (r redactor) err(err error) error {
	if err == nil {
		return nil
	}
	if text := err.Error(); r.text(text) != text {
		return &redactedError{text: r.text(text), err: err}
	}
	return err
}

type redactedError struct {
	text string
	err  error
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }
