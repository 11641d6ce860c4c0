package shop

import (
	"errors"
	"fmt"
)

// Kind is the closed set of error kinds the system distinguishes. Every
// adapter maps a Kind to its own vocabulary (an HTTP status, an exit code)
// in exactly one place.
type Kind uint8

const (
	KindInternal         Kind = iota // a bug or an unexpected failure; the zero value
	KindInvalid                      // the request is malformed or a value is out of range
	KindNotFound                     // the thing asked for does not exist (or is not the caller's)
	KindConflict                     // the request conflicts with the current state
	KindUnauthorized                 // no valid credential was presented
	KindForbidden                    // the credential is valid but lacks the right
	KindUnavailable                  // a dependency is down; retrying later may work
	KindTooLarge                     // the request body is larger than allowed
	KindUnsupported                  // the request's media type is not accepted
	KindMethodNotAllowed             // the resource exists but not with this method
	KindUnprocessable                // well-formed, but contradicts an earlier request (an Idempotency-Key reused with another body)
	KindTooMany                      // the caller or the stamp is over its admission limit; retry after a while
)

var kindNames = [...]string{
	KindInternal:         "internal",
	KindInvalid:          "invalid",
	KindNotFound:         "not-found",
	KindConflict:         "conflict",
	KindUnauthorized:     "unauthorized",
	KindForbidden:        "forbidden",
	KindUnavailable:      "unavailable",
	KindTooLarge:         "too-large",
	KindUnsupported:      "unsupported-media-type",
	KindMethodNotAllowed: "method-not-allowed",
	KindUnprocessable:    "unprocessable",
	KindTooMany:          "too-many-requests",
}

// String returns the kind's stable slug, used in problem type URIs.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Error is an error with a Kind, the offending field (empty when the error
// is not about one field) and a message that is safe to show to a client.
// Err, when set, carries the cause for logs; it is never shown to clients.
type Error struct {
	Kind   Kind
	Field  string
	Detail string
	Err    error
}

func (e *Error) Error() string {
	msg := e.Kind.String()
	if e.Field != "" {
		msg += " " + e.Field
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind about field with a formatted,
// client-safe detail.
func Errorf(kind Kind, field, format string, args ...any) *Error {
	return &Error{Kind: kind, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// Invalid reports that field has a bad value.
func Invalid(field, format string, args ...any) *Error {
	return Errorf(KindInvalid, field, format, args...)
}

// NotFound reports that what was asked for does not exist.
func NotFound(what, id string) *Error {
	return &Error{Kind: KindNotFound, Detail: fmt.Sprintf("%s %q not found", what, id)}
}

// Unavailable wraps a dependency failure whose cause must not reach clients.
func Unavailable(detail string, err error) *Error {
	return &Error{Kind: KindUnavailable, Detail: detail, Err: err}
}

// KindOf returns the Kind of the first *Error in err's chain, or
// KindInternal when there is none.
func KindOf(err error) Kind {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Kind
	}
	return KindInternal
}
