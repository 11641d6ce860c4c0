// Package partner talks to the fulfilment partner: a signed, idempotent HTTP
// notification per confirmed order, behind failsafe-go policies; and StandIn,
// a faithful stand-in for the partner that a deployment runs because the
// real one is out of reach.
package partner

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// Headers of a notification request.
const (
	HeaderAPIKey         = "X-Api-Key"       // the partner API key
	HeaderSignature      = "X-Signature"     // Sign of the raw body with the signing key
	HeaderIdempotencyKey = "Idempotency-Key" // the order id; the partner deduplicates by it
)

// maxIdempotencyKey is the longest Idempotency-Key (and so order id) the
// partner takes.
const maxIdempotencyKey = 128

// validIdempotencyKey reports whether k is 1-128 letters, digits and ._:-,
// what the partner takes as an Idempotency-Key.
func validIdempotencyKey(k string) bool {
	if len(k) == 0 || len(k) > maxIdempotencyKey {
		return false
	}
	for _, c := range []byte(k) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// signaturePrefix names the MAC algorithm in an X-Signature value.
const signaturePrefix = "sha256="

// Notification is what the partner receives for one order.
type Notification struct {
	OrderID string    `json:"orderId"`
	User    string    `json:"user"`
	Lines   []Line    `json:"lines"`
	Region  string    `json:"region"` // the region whose processor sent it
	At      time.Time `json:"at"`
}

// Line is one SKU and quantity of a notified order.
type Line struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// Secrets gives the client its credentials at call time, so that a rotated
// secret is used without a restart. Typically a secrets cache.
type Secrets interface {
	PartnerAPIKey() (string, error)
	PartnerSigningKey() (string, error)
}

// Errors of Notify, matched with errors.Is. Each comes wrapped in a
// *shop.Error whose Kind says what the caller should do.
var (
	// ErrRejected marks a notification the partner refused for good (a 4xx
	// answer other than 408, 409 and 429): retrying the same request cannot
	// succeed. Kind Invalid.
	ErrRejected = errors.New("partner rejected the notification")
	// ErrCircuitOpen marks a call that was not made because the partner
	// failed repeatedly and the circuit breaker is open. Kind Unavailable.
	ErrCircuitOpen = errors.New("partner circuit breaker is open")
	// ErrBusy marks a call that was not made because the maximum number of
	// concurrent partner calls were in flight for the whole wait. Kind
	// Unavailable.
	ErrBusy = errors.New("too many partner calls in flight")
)

// Sign returns the X-Signature header value for body with key:
// "sha256=" and the lower-case hex HMAC-SHA256 of body.
func Sign(key, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return signaturePrefix + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether header is the X-Signature value of body with key,
// exactly as Sign makes it. The comparison takes constant time for headers
// of the right length.
func Verify(key, body []byte, header string) bool {
	return hmac.Equal([]byte(header), []byte(Sign(key, body)))
}
