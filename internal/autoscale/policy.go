package autoscale

import (
	"fmt"
	"math"
	"time"

	"github.com/contoso/shoes/internal/health"
)

// Policy is how the scaler damps its recommendations. The zero Policy is
// not usable; DefaultPolicy is.
type Policy struct {
	// Target is the utilisation (mean requests in flight over capacity)
	// the scaler steers every region's instances to, from 0.1 to 0.95.
	Target float64 `json:"target"`
	// Tolerance is how far utilisation may stray from Target, as a
	// fraction of it, before a recommendation differs from the count (as
	// the HPA's 10 %).
	Tolerance float64 `json:"tolerance"`
	// ScaleOutAfter is how long recommendations must stay above the count
	// before instances are added; zero: at the first evaluation.
	ScaleOutAfter time.Duration `json:"-"`
	// ScaleInAfter is the stabilisation window: an instance is removed
	// only when no recommendation in the last window wanted as many as
	// run, and no change was made in it. At least one evaluation.
	ScaleInAfter time.Duration `json:"-"`
}

// DefaultPolicy is what a scaler runs with unless told otherwise: 60 %
// utilisation, out after 2 s above, in after a minute below.
func DefaultPolicy() Policy {
	return Policy{Target: 0.6, Tolerance: 0.1, ScaleOutAfter: 2 * time.Second, ScaleInAfter: time.Minute}
}

// Validate says what is wrong with p, if anything.
func (p Policy) Validate() error {
	switch {
	case math.IsNaN(p.Target) || p.Target < 0.1 || p.Target > 0.95:
		return fmt.Errorf("target %v: want from 0.1 to 0.95", p.Target)
	case math.IsNaN(p.Tolerance) || p.Tolerance < 0 || p.Tolerance > 0.5:
		return fmt.Errorf("tolerance %v: want from 0 to 0.5", p.Tolerance)
	case p.ScaleOutAfter < 0 || p.ScaleOutAfter > time.Minute:
		return fmt.Errorf("scale-out window %s: want from 0 to 1m", p.ScaleOutAfter)
	case p.ScaleInAfter < time.Second || p.ScaleInAfter > time.Hour:
		return fmt.Errorf("scale-in window %s: want from 1s to 1h", p.ScaleInAfter)
	}
	return nil
}

// Inputs are what one evaluation knows of one region.
type Inputs struct {
	// Instances counts the region's instances: running, and starting on
	// the scaler's word.
	Instances int `json:"instances"`
	// Reporting counts the instances whose fresh health report carries a
	// load: ready ones. The sums below are over them.
	Reporting int `json:"reporting"`
	// InFlight is the sum of their mean requests in flight.
	InFlight float64 `json:"inFlight"`
	// Capacity is the sum of their capacities.
	Capacity int `json:"capacity"`
	// Requests and Shed are what they answered and refused for want of
	// a slot in their last window; Waiting, what waits for a slot.
	Requests int64 `json:"requests"`
	Shed     int64 `json:"shed"`
	Waiting  int   `json:"waiting"`
	// P99Ms is the highest p99 of their handlers in their last window.
	P99Ms float64 `json:"p99Ms"`
	// OrdersInProcess is the sum of the orders their processors hold now;
	// OrdersQueued and OrdersOldestMs, the order queue's backlog (every
	// region's processors share it) and the wait of its oldest order, as
	// the freshest of them read it. Shown with every decision; the
	// recommendation does not read them (see Recommend).
	OrdersInProcess int    `json:"ordersInProcess"`
	OrdersQueued    uint64 `json:"ordersQueued"`
	OrdersOldestMs  int64  `json:"ordersOldestMs"`
	// Min and Max bound the count: the region's limits, Min raised by a
	// pre-scale under way.
	Min int `json:"min"`
	Max int `json:"max"`
}

// Utilisation is the region's demand over its capacity: in flight over
// capacity, scaled up by what was shed or waits (demand the instances
// could not take in). Zero without a reporting instance.
func (in Inputs) Utilisation() float64 {
	if in.Reporting == 0 || in.Capacity <= 0 {
		return 0
	}
	// The region's instances as one bulkhead: the in-flight mean is
	// capped by the capacity, and what was refused or waits is demand
	// beyond it, in the proportion of requests (health.Bulkhead.Demand).
	return health.Bulkhead{Utilisation: in.InFlight / float64(in.Capacity), Shed: in.Shed, Waiting: in.Waiting, Requests: in.Requests}.Demand()
}

// Recommend is the count the region's load asks for now, undamped and
// unbounded: ceil(reporting × utilisation / target), the count itself
// when utilisation is within the tolerance of the target or no instance
// reports. Instances still starting count toward it: they are on their
// way, and the load they will take is not yet theirs.
//
// The order backlog is not read: the queue is shared by every region, and
// what drains it is the store's quorum writes and the partner, so a
// growing backlog (a slow partner, an election) is no region's want of
// instances; a region whose orders pile up because its instances are
// busy shows it in their in-flight requests first.
func (p Policy) Recommend(in Inputs) int {
	if in.Reporting == 0 {
		return in.Instances
	}
	u := in.Utilisation()
	ratio := u / p.Target
	if math.Abs(ratio-1) <= p.Tolerance {
		return in.Instances
	}
	want := int(math.Ceil(float64(in.Reporting) * ratio))
	starting := in.Instances - in.Reporting
	if ratio > 1 {
		// More is wanted: those starting count as if they reported.
		return max(want+max(starting, 0), in.Instances)
	}
	return max(want+max(starting, 0), 1)
}

// State is a region's memory between evaluations. The zero State is a
// region just seen.
type State struct {
	// aboveSince is when recommendations went above the count; zero: they
	// are not above.
	aboveSince time.Time
	// recent are the recommendations of the last ScaleInAfter.
	recent []sample
	// changedAt is when the scaler last changed the count.
	changedAt time.Time
	// lastMin is the least count the previous evaluation's bounds asked
	// for: a raise of it (an operator's) scales out at once.
	lastMin int
}

type sample struct {
	at   time.Time
	want int
}

// Decision is what one evaluation of a region decided: the count it wants
// and why. Want equals Inputs.Instances when nothing changes.
type Decision struct {
	Want   int
	Reason string
	// ExceededAt is when recommendations first went above the count, for
	// a scale-out on load; zero otherwise.
	ExceededAt time.Time
}

// Decide evaluates one region at now: the pure rule behind the scaler,
// with st carried from one evaluation to the next. It never replaces an
// instance lost to a fault (a count below Min that Min did not just rise
// above); it scales out on load after ScaleOutAfter, up to Max, several at
// once when the load asks; it scales in one at a time, after ScaleInAfter
// without a recommendation as high as the count and without a change, down
// to Min; above Max it removes one at a time at once.
func (p Policy) Decide(st *State, in Inputs, now time.Time) Decision {
	n := in.Instances
	rec := p.Recommend(in)
	st.recent = append(st.recent, sample{at: now, want: rec})
	cut := 0
	for cut < len(st.recent) && now.Sub(st.recent[cut].at) > p.ScaleInAfter {
		cut++
	}
	st.recent = st.recent[cut:]
	raised := st.lastMin != 0 && in.Min > st.lastMin
	st.lastMin = in.Min
	keep := Decision{Want: n}
	switch {
	case n == 0:
		st.aboveSince = time.Time{}
		keep.Reason = "no instance runs: the region's revive restores it"
		return keep
	case n > in.Max:
		st.aboveSince = time.Time{}
		st.changedAt = now
		return Decision{Want: n - 1, Reason: fmt.Sprintf("above max %d", in.Max)}
	case raised && n < in.Min:
		st.aboveSince = time.Time{}
		st.changedAt = now
		return Decision{Want: in.Min, Reason: fmt.Sprintf("min raised to %d", in.Min)}
	}
	if in.Reporting == 0 {
		st.aboveSince = time.Time{}
		keep.Reason = "no instance reports its load"
		return keep
	}
	if rec > n && n < in.Max {
		if st.aboveSince.IsZero() {
			st.aboveSince = now
		}
		if now.Sub(st.aboveSince) >= p.ScaleOutAfter {
			exceeded := st.aboveSince
			st.aboveSince = time.Time{}
			st.changedAt = now
			want := min(rec, in.Max)
			return Decision{Want: want, ExceededAt: exceeded,
				Reason: fmt.Sprintf("utilisation %.0f %% over target %.0f %% for %s", 100*in.Utilisation(), 100*p.Target, now.Sub(exceeded).Round(time.Millisecond))}
		}
		keep.Reason = "above target, within the scale-out window"
		return keep
	}
	st.aboveSince = time.Time{}
	if n <= in.Min || now.Sub(st.changedAt) < p.ScaleInAfter {
		return keep
	}
	if len(st.recent) == 0 || now.Sub(st.recent[0].at) < p.ScaleInAfter-p.ScaleInAfter/10 {
		// Not a whole window of recommendations yet (a region just seen).
		return keep
	}
	for _, s := range st.recent {
		if s.want >= n {
			return keep
		}
	}
	st.changedAt = now
	return Decision{Want: n - 1, Reason: fmt.Sprintf("utilisation %.0f %% under target %.0f %% for %s", 100*in.Utilisation(), 100*p.Target, p.ScaleInAfter)}
}
