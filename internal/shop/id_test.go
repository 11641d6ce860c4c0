package shop

import (
	"slices"
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
