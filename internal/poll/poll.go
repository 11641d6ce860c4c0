// Package poll waits, in tests, for a condition to hold: Until asks it
// again and again until it does or a deadline passes, instead of sleeping
// and hoping.
package poll

import (
	"testing"
	"time"
)

// Until calls cond every every until it returns nil, and fails tb with
// cond's last error once within has passed without.
func Until(tb testing.TB, within, every time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not true within %s: %v", within, err)
		}
		time.Sleep(every)
	}
}
