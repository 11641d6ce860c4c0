package main

import (
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// The flag sets the process's target and the restore puts the one before
// back; GOGC wins over the flag's default, not over the flag given; a
// value out of range is refused and changes nothing.
func TestApplyGCPercent(t *testing.T) {
	current := func() int { // setting reads it; set it back at once
		n := debug.SetGCPercent(100)
		debug.SetGCPercent(n)
		return n
	}
	before := current()
	noEnv := func(string) string { return "" }
	withEnv := func(k string) string { return map[string]string{"GOGC": "200"}[k] }
	for _, tc := range []struct {
		name  string
		value string
		given bool
		env   func(string) string
		want  int
	}{
		{"the default", strconv.Itoa(defaultUpGCPercent), false, noEnv, defaultUpGCPercent},
		{"given", "80", true, noEnv, 80},
		{"the lowest", "10", true, noEnv, 10},
		{"the highest", "1000", true, noEnv, 1000},
		{"GOGC over the default", strconv.Itoa(defaultUpGCPercent), false, withEnv, before},
		{"the flag given over GOGC", "80", true, withEnv, 80},
	} {
		restore, err := applyGCPercent(tc.value, tc.given, tc.env)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := current(); got != tc.want {
			t.Errorf("%s: GC percent %d, want %d", tc.name, got, tc.want)
		}
		restore()
		if got := current(); got != before {
			t.Fatalf("%s: GC percent %d after restore, want %d back", tc.name, got, before)
		}
	}
	for _, bad := range []string{"", "off", "lots", "9", "0", "-50", "1001", "50%", "5e1", "99999999999999999999"} {
		_, err := applyGCPercent(bad, true, noEnv)
		if err == nil || !strings.Contains(err.Error(), "-gogc must be") {
			t.Errorf("applyGCPercent(%q) = %v, want a refusal", bad, err)
		}
		if got := current(); got != before {
			t.Fatalf("applyGCPercent(%q) left the GC percent at %d, want %d", bad, got, before)
		}
	}
}
