package shop

import (
	"crypto/rand"
	"encoding/binary"
	"regexp"
	"strings"
	"time"
)

const crockford = "0123456789abcdefghjkmnpqrstvwxyz"

var writeIDPattern = regexp.MustCompile(`^[0-9a-hjkmnp-tv-z]{26}$`)

// NewID returns a 26-character, lowercase Crockford base32 identifier whose
// first 10 characters encode t in milliseconds, so lexical order is time
// order, and whose remaining 80 bits are random.
func NewID(t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixMilli())<<16)
	rand.Read(b[6:])
	// 128 bits -> 26 base32 digits (the top two bits of the first digit are zero).
	var out [26]byte
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// ValidateWriteID checks an identifier made by NewID.
func ValidateWriteID(field, id string) error {
	if !writeIDPattern.MatchString(id) {
		return Invalid(field, "must be a 26-character identifier")
	}
	return nil
}

// IDTime returns the time encoded in an identifier made by NewID.
func IDTime(id string) (time.Time, bool) {
	if ValidateWriteID("id", id) != nil {
		return time.Time{}, false
	}
	var ms uint64
	for i := 0; i < 10; i++ {
		ms = ms<<5 | uint64(strings.IndexByte(crockford, id[i]))
	}
	return time.UnixMilli(int64(ms)), true
}
