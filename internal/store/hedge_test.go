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

// An acknowledgement that missed the hedge counts as one that took the
// hedge, so the hedge grows while more than a tenth of the orders miss it
// instead of hedging ever more of them. (Mutation tried: missed doing
// nothing → "after 7 more misses: hedge 100ms, want 200ms".)
func TestMissedHedgesRaiseTheHedge(t *testing.T) {
	var l latencies
	for range 64 {
		l.add(10 * time.Millisecond)
	}
	for _, want := range []time.Duration{2 * minHedge, 4 * minHedge, 8 * minHedge} {
		for range 7 {
			l.missed()
		}
		if got := l.current(); got != want {
			t.Fatalf("after 7 more misses: hedge %s, want %s", got, want)
		}
	}
}
