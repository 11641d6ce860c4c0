package shop

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewIDIsTimeOrderedAndRoundTrips(t *testing.T) {
	base := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 100 {
		at := base.Add(time.Duration(i) * time.Millisecond)
		id := NewID(at)
		if err := ValidateWriteID("id", id); err != nil {
			t.Fatalf("NewID(%v) = %q: %v", at, id, err)
		}
		got, ok := IDTime(id)
		if !ok || !got.Equal(at) {
			t.Fatalf("IDTime(%q) = %v, %v; want %v", id, got, ok, at)
		}
		ids = append(ids, id)
	}
	if !slices.IsSorted(ids) {
		t.Fatalf("ids made at increasing times are not sorted: %v", ids)
	}
	if a, b := NewID(base), NewID(base); a == b {
		t.Fatalf("two ids at the same instant collide: %q", a)
	}
}

func TestValidateWriteIDRejects(t *testing.T) {
	for _, id := range []string{"", "short", "0123456789ABCDEFGHJKMNPQRS", "0123456789abcdefghjkmnpqrsX", "0123456789abcdefghjkmnpqru", "../../../etc/passwd........"} {
		if ValidateWriteID("id", id) == nil {
			t.Errorf("ValidateWriteID(%q) = nil, want an error", id)
		}
		if _, ok := IDTime(id); ok {
			t.Errorf("IDTime(%q) ok, want not ok", id)
		}
	}
}

// validID is the rule ^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$ written as a
// loop: both agree on edge cases and on random strings of the characters
// that matter.
func TestValidIDIsItsRegularExpression(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$`)
	cases := []string{"", "a", "-", "a-", "-a", "a-b", "a--b", "A", "é", "a_b", "a.b", "9", strings.Repeat("a", 64), strings.Repeat("a", 65),
		"a" + strings.Repeat("-", 62) + "a", "contoso-skyline-1-launch-edition"}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab9-_A."
	for range 20000 {
		b := make([]byte, rng.IntN(70))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	for _, id := range cases {
		if got, want := validID(id), re.MatchString(id); got != want {
			t.Fatalf("validID(%q) = %v, the expression says %v", id, got, want)
		}
		if got, want := ValidateID("id", id) == nil, re.MatchString(id); got != want {
			t.Fatalf("ValidateID(%q) accepts = %v, the expression says %v", id, got, want)
		}
	}
}
