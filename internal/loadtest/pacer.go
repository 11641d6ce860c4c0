package loadtest

import (
	"math"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Phase is a part of a [Profile].
type Phase string

const (
	PhaseRamp  Phase = "ramp"  // from 0 to HoldRate, linearly
	PhaseHold  Phase = "hold"  // at HoldRate
	PhaseSpike Phase = "spike" // at SpikeRate, on the launch products
	PhaseDone  Phase = "done"  // after the profile
)

// Profile is the offered load over time: a linear ramp from 0 to HoldRate
// over Ramp, HoldRate for Hold, then SpikeRate for Spike. It is a pure
// function of the elapsed time and implements [vegeta.Pacer]. A zero
// duration skips its phase; a phase with a zero rate sends nothing.
type Profile struct {
	Ramp      time.Duration
	Hold      time.Duration
	HoldRate  float64 // requests per second at the end of the ramp and during the hold
	Spike     time.Duration
	SpikeRate float64 // requests per second during the spike
}

var _ vegeta.Pacer = Profile{}

// Duration is the length of the whole profile.
func (p Profile) Duration() time.Duration { return p.Ramp + p.Hold + p.Spike }

// Phase returns the phase at elapsed. A boundary belongs to the later
// phase: at exactly Ramp the hold has begun.
func (p Profile) Phase(elapsed time.Duration) Phase {
	switch {
	case elapsed < 0:
		return PhaseRamp
	case elapsed < p.Ramp:
		return PhaseRamp
	case elapsed < p.Ramp+p.Hold:
		return PhaseHold
	case elapsed < p.Duration():
		return PhaseSpike
	}
	return PhaseDone
}

// Rate returns the target rate, in requests per second, at elapsed.
func (p Profile) Rate(elapsed time.Duration) float64 {
	switch p.Phase(elapsed) {
	case PhaseRamp:
		if elapsed < 0 {
			return 0
		}
		return p.HoldRate * elapsed.Seconds() / p.Ramp.Seconds()
	case PhaseHold:
		return p.HoldRate
	case PhaseSpike:
		return p.SpikeRate
	}
	return 0
}

// Hits returns the integral of Rate from 0 to elapsed. The profile sends
// ceil(Hits(elapsed)) requests in its first elapsed (see at).
func (p Profile) Hits(elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	elapsed = min(elapsed, p.Duration())
	ramp, hold := p.Ramp.Seconds(), p.Hold.Seconds()
	t := elapsed.Seconds()
	if elapsed < p.Ramp {
		return p.HoldRate * t * t / (2 * ramp)
	}
	h := p.HoldRate * ramp / 2
	if elapsed < p.Ramp+p.Hold {
		return h + p.HoldRate*(t-ramp)
	}
	h += p.HoldRate * hold
	return h + p.SpikeRate*(t-ramp-hold)
}

// at returns when the profile sends request n, counting from 0: the
// earliest elapsed time with Hits >= n, so request 0 leaves at once and
// every request leaves at the start of its share of the schedule. ok is
// false when the profile has fewer requests.
func (p Profile) at(n float64) (elapsed time.Duration, ok bool) {
	seconds := func(s float64) time.Duration { return time.Duration(math.Ceil(s * float64(time.Second))) }
	ramp, hold, spike := p.Ramp.Seconds(), p.Hold.Seconds(), p.Spike.Seconds()
	if p.HoldRate > 0 {
		rampHits := p.HoldRate * ramp / 2
		if ramp > 0 && n <= rampHits {
			return seconds(math.Sqrt(2 * ramp * n / p.HoldRate)), true
		}
		n -= rampHits
		if hold > 0 && n <= p.HoldRate*hold {
			return p.Ramp + seconds(n/p.HoldRate), true
		}
		n -= p.HoldRate * hold
	}
	if p.SpikeRate > 0 && spike > 0 && n <= p.SpikeRate*spike {
		return p.Ramp + p.Hold + seconds(n/p.SpikeRate), true
	}
	return 0, false
}

// Pace tells the attacker how long to wait before the next request, given
// the elapsed time and the requests sent so far; stop is true once the
// profile has no further request to send. A caller that has fallen behind
// gets a zero wait until it has caught up.
func (p Profile) Pace(elapsed time.Duration, hits uint64) (wait time.Duration, stop bool) {
	if elapsed >= p.Duration() {
		return 0, true
	}
	next, ok := p.at(float64(hits))
	if !ok || next >= p.Duration() {
		return 0, true
	}
	return max(0, next-elapsed), false
}
