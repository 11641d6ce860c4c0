package store

import (
	"testing"
	"time"
)

// The hedge is twice the 90th percentile of the last 64 acknowledgements,
// within [minHedge, maxHedge], and firstHedge before the first.
func TestTheHedgeFollowsTheRecentAcknowledgements(t *testing.T) {
	var l latencies
	if got := l.current(); got != firstHedge {
		t.Fatalf("hedge before any acknowledgement = %s, want %s", got, firstHedge)
	}
	for _, tc := range []struct {
		add  time.Duration
		n    int
		want time.Duration
	}{
		{10 * time.Millisecond, 64, minHedge},
		{300 * time.Millisecond, 5, minHedge}, // 5 of 64 slow: below the 90th percentile
		{300 * time.Millisecond, 5, 600 * time.Millisecond},
		{5 * time.Second, 64, maxHedge},
		{10 * time.Millisecond, 57, maxHedge}, // 7 of the last 64 still slow
		{10 * time.Millisecond, 7, minHedge},  // the slow ones left the ring
	} {
		for range tc.n {
			l.add(tc.add)
		}
		if got := l.current(); got != tc.want {
			t.Fatalf("after %d more of %s: hedge %s, want %s", tc.n, tc.add, got, tc.want)
		}
	}
}
