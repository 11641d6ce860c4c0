// Package secrets gives stamps the secrets they need (the fulfilment
// partner's API and signing keys) without making the secret store a single
// point of failure: an in-memory cache refreshed in the background, with a
// last-known-good copy encrypted on local disk.
//
// A brand-new stamp instance therefore starts, becomes ready and keeps
// working while the secret store is down, and a rotated secret is used
// within one refresh interval without a restart. Secret values never appear
// in logs, errors or fmt output: a Value prints as "[redacted]" and only
// Reveal returns the plaintext.
package secrets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
)

// Provider reads secrets from a source.
type Provider interface {
	// Fetch returns the current values of the named secrets. A missing name
	// is an error wrapping ErrNotFound.
	Fetch(ctx context.Context, names []string) (map[string]Value, error)
}

// ErrNotFound is wrapped by every error about a secret that does not exist.
var ErrNotFound = errors.New("secret not found")

// redacted is what a Value prints as, whatever the verb or encoder.
const redacted = "[redacted]"

// Value is a secret value. Its String, GoString, Format, MarshalJSON,
// MarshalText and LogValue (slog.LogValuer) all print "[redacted]"; Reveal is
// the only way to get the plaintext. The zero Value reveals "".
//
// The plaintext is held by a closure, not a field: fmt cannot call Value's
// methods when a Value sits in an unexported struct field, and then prints
// the raw field, which for a func is only an address, whatever the verb.
type Value struct{ reveal func() string }

// NewValue wraps s as a secret Value.
func NewValue(s string) Value { return Value{reveal: func() string { return s }} }

// Reveal returns the plaintext. Call it at the last moment (building the
// partner request) and never log or return what it gives.
func (v Value) Reveal() string {
	if v.reveal == nil {
		return ""
	}
	return v.reveal()
}

// String implements fmt.Stringer; it prints "[redacted]".
func (Value) String() string { return redacted }

// GoString implements fmt.GoStringer; it prints "[redacted]".
func (Value) GoString() string { return redacted }

// Format implements fmt.Formatter so that every verb (%v, %+v, %#v, %s, %x,
// %d...) prints "[redacted]"; %q prints it quoted.
func (Value) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		_, _ = io.WriteString(f, strconv.Quote(redacted))
		return
	}
	_, _ = io.WriteString(f, redacted)
}

// MarshalJSON implements json.Marshaler; it encodes "[redacted]".
func (Value) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler; it encodes "[redacted]".
func (Value) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue implements slog.LogValuer; it logs "[redacted]".
func (Value) LogValue() slog.Value { return slog.StringValue(redacted) }

// maxNameLen is the longest secret name.
const maxNameLen = 63

// validName reports whether name matches ^[a-z0-9][a-z0-9-]{0,62}$, the
// names the secret store accepts. Names are safe to log and to use as file
// names; values are neither.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > maxNameLen || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// checkNames returns an error naming the first invalid name, if any.
func checkNames(names []string) error {
	for _, n := range names {
		if !ValidName(n) {
			return fmt.Errorf("secrets: invalid secret name %q: want ^[a-z0-9][a-z0-9-]{0,62}$", n)
		}
	}
	return nil
}

// notFound returns the error for the missing names, wrapping ErrNotFound.
func notFound(missing []string) error {
	return fmt.Errorf("%w: %q", ErrNotFound, missing)
}
