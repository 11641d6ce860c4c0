package loadtest

import (
	"math"
	"testing"
	"time"
)

func TestProfileRateAndPhase(t *testing.T) {
	p := Profile{Ramp: 10 * time.Second, Hold: 10 * time.Second, HoldRate: 100, Spike: 5 * time.Second, SpikeRate: 300}
	tests := []struct {
		elapsed time.Duration
		rate    float64
		phase   Phase
	}{
		{-time.Second, 0, PhaseRamp},
		{0, 0, PhaseRamp},
		{5 * time.Second, 50, PhaseRamp},
		{10*time.Second - time.Millisecond, 99.99, PhaseRamp},
		{10 * time.Second, 100, PhaseHold}, // a boundary belongs to the later phase
		{15 * time.Second, 100, PhaseHold},
		{20*time.Second - 1, 100, PhaseHold},
		{20 * time.Second, 300, PhaseSpike},
		{25*time.Second - 1, 300, PhaseSpike},
		{25 * time.Second, 0, PhaseDone},
		{time.Hour, 0, PhaseDone},
	}
	for _, tt := range tests {
		if got := p.Rate(tt.elapsed); math.Abs(got-tt.rate) > 1e-6 {
			t.Errorf("Rate(%v) = %v, want %v", tt.elapsed, got, tt.rate)
		}
		if got := p.Phase(tt.elapsed); got != tt.phase {
			t.Errorf("Phase(%v) = %v, want %v", tt.elapsed, got, tt.phase)
		}
	}
}

func TestProfileHits(t *testing.T) {
	p := Profile{Ramp: 10 * time.Second, Hold: 10 * time.Second, HoldRate: 100, Spike: 5 * time.Second, SpikeRate: 300}
	tests := []struct {
		elapsed time.Duration
		want    float64
	}{
		{-time.Second, 0},
		{0, 0},
		{5 * time.Second, 125}, // 100/s · 5² / (2 · 10)
		{10 * time.Second, 500},
		{15 * time.Second, 1000},
		{20 * time.Second, 1500},
		{25 * time.Second, 3000},
		{time.Hour, 3000},
	}
	for _, tt := range tests {
		if got := p.Hits(tt.elapsed); math.Abs(got-tt.want) > 1e-6 {
			t.Errorf("Hits(%v) = %v, want %v", tt.elapsed, got, tt.want)
		}
	}
}

func TestProfilePace(t *testing.T) {
	full := Profile{Ramp: 10 * time.Second, Hold: 10 * time.Second, HoldRate: 100, Spike: 5 * time.Second, SpikeRate: 300}
	holdOnly := Profile{Hold: 2 * time.Second, HoldRate: 50}
	noHold := Profile{Ramp: 2 * time.Second, HoldRate: 100, Spike: time.Second, SpikeRate: 10}
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	tests := []struct {
		name    string
		p       Profile
		elapsed time.Duration
		hits    uint64
		wait    time.Duration
		stop    bool
	}{
		{"first hit at once", full, 0, 0, 0, false},
		{"second hit of the ramp", full, 0, 1, ms(447.2136), false}, // sqrt(2·10 s·1/100)
		{"behind in the ramp", full, 5 * time.Second, 0, 0, false},
		{"on time in the ramp", full, 5 * time.Second, 126, ms(19.96), false}, // sqrt(25.2) s − 5 s
		{"first hit of the hold", full, 10 * time.Second, 500, 0, false},
		{"second hit of the hold", full, 10 * time.Second, 501, 10 * time.Millisecond, false},
		{"in the hold", full, 15 * time.Second, 1001, 10 * time.Millisecond, false},
		{"start of the spike", full, 20 * time.Second, 1501, ms(3.3333), false},
		{"last hit of the spike", full, 24990 * time.Millisecond, 2999, ms(6.6667), false},
		{"all hits sent", full, 25*time.Second - time.Millisecond, 3000, 0, true},
		{"after the end", full, 25 * time.Second, 10, 0, true},
		{"hold only: first hit", holdOnly, 0, 0, 0, false},
		{"hold only: ahead", holdOnly, time.Second, 60, 200 * time.Millisecond, false},
		{"no hold: ramp end to spike", noHold, 2 * time.Second, 101, 100 * time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wait, stop := tt.p.Pace(tt.elapsed, tt.hits)
			if stop != tt.stop {
				t.Fatalf("Pace(%v, %d) stop = %v, want %v", tt.elapsed, tt.hits, stop, tt.stop)
			}
			if d := wait - tt.wait; d < -50*time.Microsecond || d > 50*time.Microsecond {
				t.Errorf("Pace(%v, %d) wait = %v, want %v", tt.elapsed, tt.hits, wait, tt.wait)
			}
		})
	}
}

// TestProfileSchedule follows Pace on an exact clock: it must send the
// planned number of requests, each phase's share in that phase.
func TestProfileSchedule(t *testing.T) {
	tests := []struct {
		name string
		p    Profile
		want map[Phase]int
	}{
		{"ramp hold spike", Profile{Ramp: 4 * time.Second, Hold: 3 * time.Second, HoldRate: 50, Spike: 2 * time.Second, SpikeRate: 120},
			map[Phase]int{PhaseRamp: 100, PhaseHold: 150, PhaseSpike: 240}},
		{"spike only", Profile{Spike: time.Second, SpikeRate: 33}, map[Phase]int{PhaseSpike: 33}},
		{"fractional rate", Profile{Hold: 10 * time.Second, HoldRate: 0.5}, map[Phase]int{PhaseHold: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[Phase]int{}
			var elapsed time.Duration
			var hits uint64
			for {
				wait, stop := tt.p.Pace(elapsed, hits)
				if stop {
					break
				}
				if wait < 0 {
					t.Fatalf("negative wait %v at %v", wait, elapsed)
				}
				elapsed += wait
				got[tt.p.Phase(elapsed)]++
				hits++
				if hits > 1_000_000 {
					t.Fatal("the schedule does not end")
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("hits by phase = %v, want %v", got, tt.want)
			}
			for ph, n := range tt.want {
				if got[ph] != n {
					t.Errorf("%s: %d hits, want %d (all: %v)", ph, got[ph], n, got)
				}
			}
			if planned := int(math.Ceil(tt.p.Hits(tt.p.Duration()) - 1e-9)); int(hits) != planned {
				t.Errorf("sent %d hits, planned %d", hits, planned)
			}
		})
	}
}
