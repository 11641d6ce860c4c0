// Package auth verifies bearer JWTs against a JWKS and issues development tokens.
//
// A [Verifier] accepts RS256 and ES256 tokens whose kid selects a key of the
// matching type in a JSON Web Key Set (RFC 7517), given either as a static
// document or as a URL that is fetched and refreshed. An [Issuer] is the
// deployment's own ES256 issuer for development, used when no external
// issuer is configured.
//
// Errors meant for HTTP clients are *shop.Error values of kind
// shop.KindUnauthorized or shop.KindForbidden (shop.KindUnavailable when a
// remote key set has never been fetched); their details are client-safe and
// their causes are kept in Err for logs.
package auth

import (
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/contoso/shoes/internal/shop"
)

// Claims is what a verified token says about its bearer.
type Claims struct {
	Subject   string    // the "sub" claim: the user's stable identifier
	Admin     bool      // the "roles" claim contains "admin"
	ExpiresAt time.Time // the "exp" claim
}

// RequireAdmin returns a shop.KindForbidden error unless c grants the admin
// role.
func RequireAdmin(c Claims) error {
	if !c.Admin {
		return shop.Errorf(shop.KindForbidden, "", "admin role required")
	}
	return nil
}

// maxSubjectLen is the longest subject accepted, in characters.
const maxSubjectLen = 128

var errEmptySubject = errors.New("subject is empty")

// checkSubject reports whether sub is an acceptable subject: 1 to 128
// characters of valid UTF-8 without control, format (such as bidirectional
// overrides) or line and paragraph separator characters. Its messages are
// client-safe.
func checkSubject(sub string) error {
	switch {
	case sub == "":
		return errEmptySubject
	case !utf8.ValidString(sub):
		return errors.New("subject is not valid UTF-8")
	case utf8.RuneCountInString(sub) > maxSubjectLen:
		return fmt.Errorf("subject is longer than %d characters", maxSubjectLen)
	}
	for _, r := range sub {
		if unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
			return errors.New("subject contains a control character")
		}
	}
	return nil
}
