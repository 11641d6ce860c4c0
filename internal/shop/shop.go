// Package shop holds the domain of the store: products, comments, ratings,
// their validation rules and the error kinds every adapter maps. It imports
// nothing of ours and nothing outside the standard library.
package shop

import (
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of the domain. They are part of the API contract.
const (
	MaxCommentRunes  = 2000
	MaxPageLimit     = 100
	DefaultPageLimit = 20
	MinStars         = 1
	MaxStars         = 5
	maxTextField     = 200
	maxDescription   = 4000
	maxSizes         = 40
)

// Categories a product may belong to.
var Categories = []string{"running", "trail", "basketball", "lifestyle", "hiking", "tennis", "training", "sandals", "boots", "formal"}

var (
	sizePattern     = regexp.MustCompile(`^[0-9]{1,2}(?:\.5)?$`)
	currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)
)

// Money is an amount in the smallest unit of an ISO 4217 currency.
type Money struct {
	AmountCents int64  `json:"amountCents"`
	Currency    string `json:"currency"`
}

// Product is a shoe model in the catalog as it is stored. Sizes are EU
// sizes ("42", "42.5"); the SKU of a size is SKU(product, size).
type Product struct {
	ID          string    `json:"id"`
	Brand       string    `json:"brand"`
	Model       string    `json:"model"`
	Category    string    `json:"category"`
	Price       Money     `json:"price"`
	Sizes       []string  `json:"sizes"`
	Colour      string    `json:"colour"`
	Description string    `json:"description"`
	Launch      bool      `json:"launch"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// SKU names one size of one product: the unit of stock.
func SKU(productID, size string) string { return productID + "-" + strings.ReplaceAll(size, ".", "_") }

// ValidateID checks a product id: lowercase letters, digits and inner
// hyphens, at most 64 characters.
func ValidateID(field, id string) error {
	if !validID(id) {
		return Invalid(field, "must be 1-64 lowercase letters, digits or inner hyphens")
	}
	return nil
}

// validID is ValidateID's rule as a loop (every product read checks an
// id): 1 to 64 of a-z, 0-9 and "-", not starting or ending with "-".
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 || id[0] == '-' || id[len(id)-1] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Validate checks every field of p and names the first bad one.
func (p *Product) Validate() error {
	if err := ValidateID("id", p.ID); err != nil {
		return err
	}
	for _, f := range []struct{ name, value string }{{"brand", p.Brand}, {"model", p.Model}, {"colour", p.Colour}} {
		if err := validText(f.name, f.value, 1, maxTextField); err != nil {
			return err
		}
	}
	if !slices.Contains(Categories, p.Category) {
		return Invalid("category", "must be one of %s", strings.Join(Categories, ", "))
	}
	if p.Price.AmountCents <= 0 || p.Price.AmountCents > 100_000_00 {
		return Invalid("price.amountCents", "must be between 1 and 10000000")
	}
	if !currencyPattern.MatchString(p.Price.Currency) {
		return Invalid("price.currency", "must be a three-letter ISO 4217 code")
	}
	if len(p.Sizes) == 0 || len(p.Sizes) > maxSizes {
		return Invalid("sizes", "must list 1-%d sizes", maxSizes)
	}
	seen := make(map[string]bool, len(p.Sizes))
	for _, s := range p.Sizes {
		if !sizePattern.MatchString(s) || seen[s] {
			return Invalid("sizes", "each size must be a distinct EU size such as 42 or 42.5")
		}
		seen[s] = true
	}
	return validText("description", p.Description, 0, maxDescription)
}

func validText(field, s string, minRunes, maxRunes int) error {
	if !utf8.ValidString(s) {
		return Invalid(field, "must be valid UTF-8")
	}
	n := utf8.RuneCountInString(strings.TrimSpace(s))
	if n < minRunes || utf8.RuneCountInString(s) > maxRunes {
		return Invalid(field, "must be %d-%d characters", minRunes, maxRunes)
	}
	for _, r := range s {
		if r < 0x20 && r != '\n' && r != '\t' && r != '\r' {
			return Invalid(field, "must not contain control characters")
		}
	}
	return nil
}

// Comment is a user's comment on a product. ID is time-ordered, so sorting
// by ID descending lists the newest first.
type Comment struct {
	ID        string    `json:"id"`
	ProductID string    `json:"productId"`
	User      string    `json:"user"`
	Text      string    `json:"text"`
	CreatedAt time.Time `json:"createdAt"`
}

// ValidateCommentText checks a comment body: 1-2000 characters.
func ValidateCommentText(text string) error {
	return validText("text", text, 1, MaxCommentRunes)
}

// Rating is a user's star rating of a product. A later rating by the same
// user on the same product replaces the earlier one.
type Rating struct {
	ID        string    `json:"id"`
	ProductID string    `json:"productId"`
	User      string    `json:"user"`
	Stars     int       `json:"stars"`
	CreatedAt time.Time `json:"createdAt"`
}

// ValidateStars checks a rating value: 1-5.
func ValidateStars(stars int) error {
	if stars < MinStars || stars > MaxStars {
		return Invalid("stars", "must be an integer from %d to %d", MinStars, MaxStars)
	}
	return nil
}

// RatingSummary is the average and count of the current ratings of a product.
type RatingSummary struct {
	Average float64 `json:"average"`
	Count   int     `json:"count"`
}

// Bounds of the settings an operator gives every stamp instance at run
// time, as the stamps' own configuration has them: capacity (API requests
// of each kind at once) and simulated work per request.
const (
	MaxInstanceCapacity = 100_000
	MaxInstanceWorkMs   = 10_000
)

// ValidateInstanceSettings checks an instance capacity from 1 to
// MaxInstanceCapacity and work from 0 to MaxInstanceWorkMs milliseconds.
func ValidateInstanceSettings(capacity, workMs int) error {
	switch {
	case capacity < 1 || capacity > MaxInstanceCapacity:
		return Invalid("capacity", "instance capacity %d: want from 1 to %d", capacity, MaxInstanceCapacity)
	case workMs < 0 || workMs > MaxInstanceWorkMs:
		return Invalid("workMs", "instance workMs %d: want from 0 to %d", workMs, MaxInstanceWorkMs)
	}
	return nil
}
