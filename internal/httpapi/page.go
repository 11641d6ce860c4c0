package httpapi

import (
	"encoding/base64"
	"net/url"
	"strconv"

	"github.com/contoso/shoes/internal/shop"
)

// Page is the paging request of a list endpoint: at most Limit items after
// the position that the opaque cursor encodes.
type Page struct {
	Limit int
	After string // position to continue after; empty for the first page
}

// ParsePage reads "limit" (1..shop.MaxPageLimit, default
// shop.DefaultPageLimit) and "cursor" from q.
func ParsePage(q url.Values) (Page, error) {
	p := Page{Limit: shop.DefaultPageLimit}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > shop.MaxPageLimit {
			return Page{}, shop.Invalid("limit", "must be an integer from 1 to %d", shop.MaxPageLimit)
		}
		p.Limit = n
	}
	if c := q.Get("cursor"); c != "" {
		after, err := DecodeCursor(c)
		if err != nil {
			return Page{}, err
		}
		p.After = after
	}
	return p, nil
}

const cursorPrefix = "v1:"

// EncodeCursor makes an opaque cursor for position after.
func EncodeCursor(after string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + after))
}

// DecodeCursor reverses EncodeCursor, rejecting anything it did not make.
func DecodeCursor(c string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) <= len(cursorPrefix) || string(b[:len(cursorPrefix)]) != cursorPrefix || len(b) > 256 {
		return "", shop.Invalid("cursor", "is not a cursor this API issued")
	}
	return string(b[len(cursorPrefix):]), nil
}
