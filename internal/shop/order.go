package shop

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Limits of orders and carts. They are part of the API contract.
const (
	MaxOrderLines     = 20
	MaxLineQuantity   = 10
	MaxCartItems      = 50
	MaxStock          = 1_000_000
	CartTTL           = 7 * 24 * time.Hour
	IdempotencyTTL    = 24 * time.Hour
	maxIdempotencyKey = 128
)

var (
	skuPattern            = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,80}$`)
	idempotencyKeyPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
)

// OrderStatus is where an order is in its life: accepted -> reserved ->
// confirmed, or rejected.
type OrderStatus string

const (
	OrderAccepted  OrderStatus = "accepted"
	OrderReserved  OrderStatus = "reserved"
	OrderConfirmed OrderStatus = "confirmed"
	OrderRejected  OrderStatus = "rejected"
)

// Final reports whether no further change will happen to an order.
func (s OrderStatus) Final() bool { return s == OrderConfirmed || s == OrderRejected }

// ReasonOutOfStock is the rejection reason of an order that cannot be filled.
const ReasonOutOfStock = "out_of_stock"

// ReasonDuplicate is the rejection reason of an order whose request had
// made another order first (Order.SameAs).
const ReasonDuplicate = "duplicate"

// Line is one SKU and quantity of an order or a cart.
type Line struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// Order is a buyer's order. ID is time-ordered.
type Order struct {
	ID        string      `json:"id"`
	User      string      `json:"user"`
	Lines     []Line      `json:"items"`
	Status    OrderStatus `json:"status"`
	Reason    string      `json:"reason,omitempty"`
	Region    string      `json:"acceptedIn"`
	CreatedAt time.Time   `json:"createdAt"`
	UpdatedAt time.Time   `json:"updatedAt"`
	// SameAs, on the record of an order dropped as a duplicate (rejected,
	// ReasonDuplicate), is the id of the order its request made first:
	// this id is another name for that order, and reading it reads that
	// order. Empty on every other order.
	SameAs string `json:"sameAs,omitempty"`
}

// ValidateSKU checks the form of a SKU (whether it exists is the catalog's
// business).
func ValidateSKU(field, sku string) error {
	if !skuPattern.MatchString(sku) {
		return Invalid(field, "must be a SKU such as contoso-skyline-1-42_5")
	}
	return nil
}

// ValidateIdempotencyKey checks an Idempotency-Key header value.
func ValidateIdempotencyKey(key string) error {
	if !idempotencyKeyPattern.MatchString(key) {
		return Invalid("Idempotency-Key", "header is required: 1-%d characters of letters, digits and ._:-", maxIdempotencyKey)
	}
	return nil
}

// ValidateLines checks the lines of an order: 1-20 lines of distinct SKUs,
// each with a quantity of 1-10. It returns the lines sorted by SKU.
func ValidateLines(lines []Line) ([]Line, error) {
	if len(lines) == 0 || len(lines) > MaxOrderLines {
		return nil, Invalid("items", "must hold 1-%d lines", MaxOrderLines)
	}
	seen := make(map[string]bool, len(lines))
	for i, l := range lines {
		if err := ValidateSKU(fmt.Sprintf("items[%d].sku", i), l.SKU); err != nil {
			return nil, err
		}
		if seen[l.SKU] {
			return nil, Invalid(fmt.Sprintf("items[%d].sku", i), "repeats a SKU; give each SKU once")
		}
		seen[l.SKU] = true
		if err := ValidateQuantity(fmt.Sprintf("items[%d].quantity", i), l.Quantity, 1); err != nil {
			return nil, err
		}
	}
	out := slices.Clone(lines)
	slices.SortFunc(out, func(a, b Line) int { return strings.Compare(a.SKU, b.SKU) })
	return out, nil
}

// ValidateQuantity checks a line quantity: minimum..10.
func ValidateQuantity(field string, q, minimum int) error {
	if q < minimum || q > MaxLineQuantity {
		return Invalid(field, "must be an integer from %d to %d", minimum, MaxLineQuantity)
	}
	return nil
}

// ValidateStock checks a stock level: 0..1,000,000.
func ValidateStock(n int) error {
	if n < 0 || n > MaxStock {
		return Invalid("stock", "must be an integer from 0 to %d", MaxStock)
	}
	return nil
}

// UserKey is a stable, subject-safe key for a user id (token subjects may
// hold characters that keys cannot).
func UserKey(user string) string {
	h := sha256.Sum256([]byte("user\x00" + user))
	return hex.EncodeToString(h[:12])
}

// IdempotencyID is the key under which a user's Idempotency-Key is
// remembered, in every region.
func IdempotencyID(user, key string) string {
	h := sha256.Sum256([]byte("idem\x00" + user + "\x00" + key))
	return hex.EncodeToString(h[:16])
}

// RequestHash fingerprints what an order request asked for, so a replay
// with the same Idempotency-Key but another body is recognised.
func RequestHash(fromCart bool, lines []Line) string {
	h := sha256.New()
	if fromCart {
		h.Write([]byte("cart"))
	}
	for _, l := range lines {
		fmt.Fprintf(h, "\x00%s\x00%d", l.SKU, l.Quantity)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Cart is a user's cart.
type Cart struct {
	Items     []Line    `json:"items"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// SetItem sets the quantity of sku in the cart: 0 removes it. It keeps the
// items sorted by SKU and refuses more than MaxCartItems distinct SKUs.
func (c *Cart) SetItem(sku string, quantity int) error {
	i, found := slices.BinarySearchFunc(c.Items, sku, func(l Line, s string) int { return strings.Compare(l.SKU, s) })
	switch {
	case quantity == 0 && found:
		c.Items = slices.Delete(c.Items, i, i+1)
	case quantity == 0:
	case found:
		c.Items[i].Quantity = quantity
	case len(c.Items) >= MaxCartItems:
		return Errorf(KindConflict, "items", "a cart holds at most %d SKUs", MaxCartItems)
	default:
		c.Items = slices.Insert(c.Items, i, Line{SKU: sku, Quantity: quantity})
	}
	return nil
}

// Stock is the stored state of one SKU: what can still be sold, and the
// quantities held by orders being processed. A hold and its stock decrement
// are one compare-and-set, so a reservation is never half done.
type Stock struct {
	Available int            `json:"available"`
	Holds     map[string]int `json:"holds,omitempty"` // order id -> quantity
	// Holders names, by order id, the reservation that made each hold (a
	// token of the call): a confirmed order sells only the holds its
	// reservation was marked with (see store.Settle). A hold made by a
	// release that predates it has none.
	Holders map[string]string `json:"holders,omitempty"`
}
