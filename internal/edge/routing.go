package edge

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/health"
)

// Default policy values, used where a Policy field is zero.
const (
	DefaultSensitivity = 10 * time.Millisecond
	DefaultHysteresis  = 5 * time.Millisecond
)

// DefaultWeight is the weight of a candidate whose Weight is zero or
// negative.
const DefaultWeight = 100

// Candidate is what a POP knows about one stamp when it routes. The zero
// value is a stamp with an empty ID, unknown health, unknown RTT, weight
// 100, no ejection, and not on standby.
type Candidate struct {
	// ID is the stamp id (e.g. "eastus/1"), unique among the candidates
	// passed to one call. If an ID repeats anyway, Decide considers only
	// its most routable entry and Pick uses the smallest weight given.
	ID string
	// Region is the stamp's region: Decide ignores it; Pick retries in
	// the primary's region first, and PickLessLoaded weighs only stamps of
	// one region against each other.
	Region string
	// Release is the release the stamp runs; informational, reasons name
	// it.
	Release string
	// Health is the stamp's state as the POP's probes see it: healthy and
	// degraded stamps are in rotation (degraded with no penalty beyond its
	// measured RTT); unknown ones have not been probed yet; unhealthy ones
	// fail their probes; drained ones were taken out by an operator. A
	// value that is not a valid health.Status counts as unknown.
	Health health.Status
	// RTT is the smoothed round trip from this POP (probe EWMA); zero or
	// negative means unknown.
	RTT time.Duration
	// Weight is the stamp's share of traffic among equally near stamps;
	// zero or negative means DefaultWeight (100). Releases shift weights
	// (see Weights).
	Weight int
	// EjectedUntil is passive outlier ejection: the stamp is not routable
	// before this time. The zero time never ejects.
	EjectedUntil time.Time
	// Standby is a stamp whose release takes no traffic in its region (0 %
	// of a traffic table, or not in it): it takes no user request while
	// any stamp that is not on standby exists (Decide's rule 0). false:
	// an ordinary candidate.
	Standby bool
}

// Policy is how a POP chooses. Zero fields take the defaults shown; the
// zero value is the default policy.
type Policy struct {
	// Sensitivity: stamps within this RTT of the nearest count as equally
	// near. Zero: DefaultSensitivity (10 ms); negative: none, only stamps
	// exactly as near as the nearest share.
	Sensitivity time.Duration
	// Hysteresis: a stamp in the previous near set stays in it until it is
	// more than Sensitivity+Hysteresis slower than the nearest. Zero:
	// DefaultHysteresis (5 ms); negative: none.
	Hysteresis time.Duration
}

func (p Policy) sensitivity() time.Duration {
	switch {
	case p.Sensitivity == 0:
		return DefaultSensitivity
	case p.Sensitivity < 0:
		return 0
	}
	return p.Sensitivity
}

func (p Policy) hysteresis() time.Duration {
	switch {
	case p.Hysteresis == 0:
		return DefaultHysteresis
	case p.Hysteresis < 0:
		return 0
	}
	return p.Hysteresis
}

// Decision is a POP's routing table at one moment. Decide never returns
// nil slices or a nil map, so a Decision serializes as [] and {} when
// empty; the zero value is a table with no stamps.
type Decision struct {
	// Near holds the ids of the stamps that share traffic now (by weight),
	// sorted.
	Near []string
	// Fallback holds every other routable stamp, nearest first: where a
	// retry goes.
	Fallback []string
	// Spare holds the stamps in neither Near nor Fallback that a retry
	// may still take when those hold no other stamp (rule 5 of Decide),
	// least bad first.
	Spare []string
	// FailOpen is set when no stamp was routable: Near then holds the
	// least-bad stamps (see Decide).
	FailOpen bool
	// Reasons maps every candidate id to why it is or is not in Near.
	Reasons map[string]string
}

// class ranks a candidate from routable (best) to drained and ejected
// (worst). Decide routes to the best class present.
type class int

const (
	routable         class = iota // healthy or degraded, not ejected
	ejected                       // healthy or degraded, ejected
	unknown                       // never probed
	unknownEjected                // never probed, ejected
	unhealthy                     // probes fail
	unhealthyEjected              // probes fail, ejected
	drained                       // operator drained
	drainedEjected                // operator drained, ejected
)

// classOf follows the order of health.Status: the routable states first,
// then unknown, unhealthy and drained; an ejected stamp comes right after
// the others of its state.
func classOf(c Candidate, now time.Time) class {
	var base class
	switch h := c.Health; {
	case h.Routable():
		base = routable
	case h.AtLeast(health.Drained):
		base = drained
	case h.AtLeast(health.Unhealthy):
		base = unhealthy
	default:
		base = unknown
	}
	if now.Before(c.EjectedUntil) {
		base++
	}
	return base
}

// rttKey orders unknown RTTs after every known one.
func rttKey(c Candidate) time.Duration {
	if c.RTT <= 0 {
		return math.MaxInt64
	}
	return c.RTT
}

func byNearness(a, b Candidate) int {
	return cmp.Or(cmp.Compare(rttKey(a), rttKey(b)), strings.Compare(a.ID, b.ID))
}

// dedupe returns the candidates sorted by ID, one per ID: the most
// routable entry, ties broken by every other field so that the result
// does not depend on input order.
func dedupe(cands []Candidate, now time.Time) []Candidate {
	cs := slices.Clone(cands)
	slices.SortFunc(cs, func(a, b Candidate) int {
		return cmp.Or(
			strings.Compare(a.ID, b.ID),
			cmpBool(a.Standby, b.Standby),
			cmp.Compare(classOf(a, now), classOf(b, now)),
			cmp.Compare(rttKey(a), rttKey(b)),
			cmp.Compare(a.Health.Rank(), b.Health.Rank()),
			cmp.Compare(a.Health, b.Health),
			cmp.Compare(a.Weight, b.Weight),
			strings.Compare(a.Region, b.Region),
			strings.Compare(a.Release, b.Release),
			a.EjectedUntil.Compare(b.EjectedUntil),
		)
	})
	return slices.CompactFunc(cs, func(a, b Candidate) bool { return a.ID == b.ID })
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// Decide computes the decision. prev is the previous decision's Near set
// (nil at start), for hysteresis. It is a pure function: it reads nothing
// but its arguments and keeps no state, so the caller carries prev from
// one decision to the next.
//
// The rules, exactly as implemented:
//
//  0. Standby: a candidate with Standby set (its release takes no traffic
//     in its region) is in neither Near nor Fallback, whatever its health,
//     while any candidate without Standby exists, whatever that one's
//     health: it is never a primary, a retry or a fail-open choice while
//     another stamp can be routed to at all. Rules 1 to 4 then apply to
//     the other candidates alone, and prev ids on standby are ignored.
//     Only when every candidate is on standby (a table that names no
//     release any stamp runs) do rules 1 to 4 apply to them, with FailOpen
//     set: routing to a stamp that should take no traffic beats failing
//     every request.
//  1. Routable: Health is Routable, healthy or degraded (degraded stays in
//     rotation, ranked only by its RTT), and now >= EjectedUntil (an
//     ejection expires at its instant). Unknown (never probed, and any
//     value that is not a valid health.Status) is not routable; it is used
//     only through fail open (rule 4) when nothing is routable and no
//     healthy or degraded stamp is merely ejected. Unhealthy and drained
//     are not routable.
//  2. Near: among routable stamps with a known RTT (RTT > 0), nearest is
//     the minimum RTT. Near is every routable stamp with
//     RTT <= nearest+Sensitivity, plus every stamp of prev that is still
//     routable and has RTT <= nearest+Sensitivity+Hysteresis ("kept by
//     hysteresis"), so a noisy link does not flap routing: a stamp joins
//     as soon as it is within Sensitivity, and leaves only once it is
//     beyond Sensitivity+Hysteresis. A routable stamp with an unknown RTT
//     counts as farther than every known one (it is never near, not even
//     through prev, while some RTT is known); if no routable stamp has a
//     known RTT, every routable stamp is Near. prev ids that are not
//     candidates are ignored.
//  3. Fallback: the other routable stamps, ordered by RTT (unknown last),
//     ties by ID.
//  4. Fail open: if nothing is routable, the POP fails open to the
//     least-bad stamps rather than failing every request, and sets
//     FailOpen. The classes, best first, in the order of health.Status:
//     healthy or degraded but ejected; unknown; unknown and ejected;
//     unhealthy; unhealthy and ejected; drained; drained and ejected. The
//     best class present plays the role of the routable set in rules 2
//     and 3 (same Sensitivity window and hysteresis), so Near holds its
//     nearest stamps and Fallback the rest of that class; the worse
//     classes are in neither. Drained is therefore chosen only when every
//     stamp is drained: an operator drained everything, which is not an
//     outage, so the POP still routes.
//     The reasons of the chosen class start with "fail open: " and name
//     the class. This mirrors, and improves on, the reference router,
//     which routes to all origins when all are unhealthy: we route to the
//     least bad and say why.
//  5. Spare: every candidate in neither Near nor Fallback whose class is
//     better than drained (ejected, unknown, unhealthy, and those
//     ejected), and not on standby while another candidate is not, ordered
//     by class, then by RTT (unknown last), then by ID. A retry takes the
//     first spare only when Near and Fallback hold no stamp other than the
//     request's first: a request that would fail for want of a routable
//     stamp is better tried on a stamp whose probes lapsed (a starved
//     machine makes probes time out and flap damping keep stamps out for
//     seconds) than answered 503. A drained stamp is an operator's
//     decision, and is never a spare.
//  6. Deterministic: the same inputs give the same Decision whatever the
//     order of cands and prev. Candidates are sorted, and no map iteration
//     order reaches the output. If an ID repeats, only its most routable
//     entry counts (not on standby, then lowest class, then lowest RTT,
//     then the better health, then the other fields).
//
// Reasons has an entry for every candidate id. Near: "nearest",
// "within sensitivity: +4ms", "kept by hysteresis: +13ms", or "rtt
// unknown for every stamp: all share". Fallback: "too far: +23ms (window
// +10ms)", "too far: +23ms (was near; hysteresis window +15ms)" or "rtt
// unknown: after every measured stamp". Routable degraded stamps get
// "; degraded" appended. Excluded stamps: "unhealthy", "drained",
// "unknown: never probed", "ejected until <RFC 3339 time> (<left> more)",
// joined by "; " when several apply. Under fail open the chosen class
// reads "fail open: least bad: <excluded reason>; <near or fallback
// reason>", or "fail open: every stamp is drained; ..." when all are.
// A stamp on standby reads `standby: release "v2" takes no traffic`, with
// "; <excluded reason>" when it is not healthy and routable; when every
// stamp is on standby the chosen ones read "fail open: every stamp is on
// standby; " and then as above.
//
// An empty cands gives an empty Decision (empty Near and Fallback, empty
// Reasons, FailOpen false).
func Decide(p Policy, cands []Candidate, prev []string, now time.Time) Decision {
	d := Decision{Near: []string{}, Fallback: []string{}, Spare: []string{}, Reasons: map[string]string{}}
	cs := dedupe(cands, now)
	if len(cs) == 0 {
		return d
	}
	allStandby := !slices.ContainsFunc(cs, func(c Candidate) bool { return !c.Standby })
	if !allStandby {
		for _, c := range cs {
			if c.Standby {
				d.Reasons[c.ID] = standbyReason(c, now)
			}
		}
		cs = slices.DeleteFunc(cs, func(c Candidate) bool { return c.Standby })
	}
	best := drainedEjected
	for _, c := range cs {
		best = min(best, classOf(c, now))
	}
	d.FailOpen = best != routable || allStandby

	wasNear := make(map[string]bool, len(prev))
	for _, id := range prev {
		wasNear[id] = true
	}
	var pool, spare []Candidate
	for _, c := range cs {
		switch k := classOf(c, now); {
		case k == best:
			pool = append(pool, c)
		case k < drained:
			spare = append(spare, c)
			fallthrough
		default:
			d.Reasons[c.ID] = statusReason(c, now)
		}
	}
	slices.SortFunc(pool, byNearness)
	slices.SortFunc(spare, func(a, b Candidate) int {
		return cmp.Or(cmp.Compare(classOf(a, now), classOf(b, now)), byNearness(a, b))
	})
	for _, c := range spare {
		d.Spare = append(d.Spare, c.ID)
	}

	nearest := pool[0].RTT // pool is sorted: the minimum known RTT, or unknown
	sens := p.sensitivity()
	keep := sens + p.hysteresis()
	if keep < sens { // overflow
		keep = math.MaxInt64
	}
	for _, c := range pool {
		var in bool
		var why string
		switch {
		case nearest <= 0:
			in, why = true, "rtt unknown for every stamp: all share"
		case c.RTT <= 0:
			why = "rtt unknown: after every measured stamp"
		default:
			gap := c.RTT - nearest // both positive: no overflow
			switch {
			case gap == 0:
				in, why = true, "nearest"
			case gap <= sens:
				in, why = true, "within sensitivity: +"+fmtGap(gap)
			case wasNear[c.ID] && gap <= keep:
				in, why = true, "kept by hysteresis: +"+fmtGap(gap)
			case wasNear[c.ID]:
				why = fmt.Sprintf("too far: +%s (was near; hysteresis window +%s)", fmtGap(gap), fmtGap(keep))
			default:
				why = fmt.Sprintf("too far: +%s (window +%s)", fmtGap(gap), fmtGap(sens))
			}
		}
		switch {
		case d.FailOpen:
			why = "fail open: " + failOpenClass(c, best, allStandby, now) + "; " + why
		case c.Health == health.Degraded:
			why += "; degraded"
		}
		d.Reasons[c.ID] = why
		if in {
			d.Near = append(d.Near, c.ID)
		} else {
			d.Fallback = append(d.Fallback, c.ID)
		}
	}
	slices.Sort(d.Near)
	return d
}

// fmtGap formats a duration for a reason, to the microsecond.
func fmtGap(d time.Duration) string { return d.Round(time.Microsecond).String() }

// statusReason says why c is not routable (or, for a routable stamp, its
// health).
func statusReason(c Candidate, now time.Time) string {
	var parts []string
	switch h := c.Health; {
	case h == health.Healthy:
	case !h.Valid():
		parts = append(parts, "unknown: health "+h.String())
	case h == health.Unknown:
		parts = append(parts, "unknown: never probed")
	default:
		parts = append(parts, h.String())
	}
	if now.Before(c.EjectedUntil) {
		parts = append(parts, fmt.Sprintf("ejected until %s (%s more)",
			c.EjectedUntil.UTC().Format(time.RFC3339Nano), fmtGap(c.EjectedUntil.Sub(now))))
	}
	if len(parts) == 0 {
		return health.Healthy.String()
	}
	return strings.Join(parts, "; ")
}

// failOpenClass names the class chosen by fail open, as seen on c, and
// says when every stamp is on standby.
func failOpenClass(c Candidate, best class, allStandby bool, now time.Time) string {
	var parts []string
	if allStandby {
		parts = append(parts, "every stamp is on standby")
	}
	switch {
	case best >= drained:
		parts = append(parts, "every stamp is "+statusReason(c, now))
	case best != routable:
		parts = append(parts, "least bad: "+statusReason(c, now))
	}
	return strings.Join(parts, "; ")
}

// standbyReason says why a stamp on standby takes no traffic, and its
// state when it could not take any anyway.
func standbyReason(c Candidate, now time.Time) string {
	why := fmt.Sprintf("standby: release %q takes no traffic", c.Release)
	if classOf(c, now) != routable {
		why += "; " + statusReason(c, now)
	}
	return why
}

// share is what a traffic table makes of one stamp: its weight (zero:
// DefaultWeight) and whether it is on standby.
type share struct {
	weight  int
	standby bool
}

// effective is the weight s routes with: 0 on standby, DefaultWeight for
// a zero weight.
func (s share) effective() int {
	switch {
	case s.standby:
		return 0
	case s.weight <= 0:
		return DefaultWeight
	}
	return s.weight
}

// trafficShares applies traffic table w to stamps (the registry's
// entries), so that each release gets its percent of its region's traffic
// whatever the number of its instances. It is a pure function; the rules:
//
//   - A region with no entry in w (nil w, no key, or an empty map) is
//     routed as without a table: each of its stamps has weight 0, that is
//     DefaultWeight, and none is on standby.
//   - In a region with an entry, a stamp whose release is listed with a
//     percent above 0 takes percent × DefaultWeight × N / (100 × n),
//     rounded to the nearest integer and at least 1, where n is the number
//     of the region's stamps that run its release and N the number of the
//     region's stamps whose release has a percent above 0. The region's
//     stamps so weigh DefaultWeight × N together, as N stamps without a
//     table would, so a region under a table keeps its share beside the
//     stamps of other regions that are equally near; within the region,
//     each release gets its percent, its instances an equal part of it.
//     (Up to rounding, and when every release listed above 0 has a stamp:
//     a listed release without one leaves its part to nobody, so the
//     region weighs that much less.) Percents above 100 count as 100 (the
//     store refuses such a table).
//   - A stamp whose release is at 0 % (or below), or not listed, is on
//     standby: it takes no user traffic (Decide's rule 0).
//
// Stamps are told apart by ID; the result has an entry for every one.
func trafficShares(w Weights, stamps []StampInfo) map[string]share {
	out := make(map[string]share, len(stamps))
	percent := func(s StampInfo) int { return min(w[s.Region][s.Release], 100) }
	instances := map[[2]string]int{} // region, release → stamps
	active := map[string]int{}       // region → stamps whose release takes traffic
	for _, s := range stamps {
		if len(w[s.Region]) == 0 {
			continue
		}
		instances[[2]string{s.Region, s.Release}]++
		if percent(s) > 0 {
			active[s.Region]++
		}
	}
	for _, s := range stamps {
		switch p := percent(s); {
		case len(w[s.Region]) == 0:
			out[s.ID] = share{}
		case p <= 0:
			out[s.ID] = share{standby: true}
		default:
			n, total := instances[[2]string{s.Region, s.Release}], active[s.Region]
			num, den := p*DefaultWeight*total, 100*n
			out[s.ID] = share{weight: max(1, (2*num+den)/(2*den))}
		}
	}
	return out
}

// Pick chooses one stamp of d.Near for a request, by weight, given a number
// r in [0,1) (the caller passes rand.Float64(); tests pass fixed values),
// and returns the stamp for a retry.
//
// Weights come from cands by id (zero or negative: DefaultWeight; a Near id
// missing from cands: DefaultWeight). The members of d.Near, in order, own
// consecutive slices of [0, total weight); primary is the one whose slice
// holds r*total. An r below 0 (or NaN) counts as 0, and an r of 1 or more
// picks the last member.
//
// retry stays in primary's region when it can (another instance there,
// another zone, answers as the region would): the next member of d.Near
// after primary (wrapping) in primary's Region, else the first entry of
// d.Fallback in that Region; only then the first entry of d.Fallback
// other than primary, else the next member of d.Near other than primary,
// else the first entry of d.Spare other than primary; otherwise "".
// Regions come from cands by id (a Near id missing there has none, and
// shares it with no other). Both are "" when d.Near is empty. Pick reads
// no Standby: Decide leaves stamps on standby out of Near, Fallback and
// Spare while any other stamp exists, so neither primary nor retry is one
// of them.
func Pick(d Decision, cands []Candidate, r float64) (primary, retry string) {
	if len(d.Near) == 0 {
		return "", ""
	}
	i := pickIndex(d, cands, r, nil)
	return d.Near[i], retryFor(d, cands, i)
}

// PickLessLoaded is Pick with two choices: the first pick is Pick's, with
// r1; the second, with r2, is among the members of d.Near of the first's
// region and release only (by weight, as Pick's); of the two, the one with
// fewer requests in flight by load wins, the first on a tie, with its own
// retry (Pick's rule). load is called at most twice and never kept.
//
// Each region's and release's share of the traffic is so exactly Pick's
// (a release's step of a traffic table holds under any load), and when the
// stamps are idle, or equally busy, the pick is Pick's. Within a release,
// a request mostly goes to an instance that is not busy with slow requests
// (a checkout waiting on a quorum write) instead of queueing behind them:
// the "power of two choices", nearly the balance of always taking the
// least loaded, without sending every request to the one that just freed
// up.
func PickLessLoaded(d Decision, cands []Candidate, r1, r2 float64, load func(id string) int) (primary, retry string) {
	if len(d.Near) == 0 {
		return "", ""
	}
	i := pickIndex(d, cands, r1, nil)
	first := candidateOf(cands, d.Near[i])
	j := pickIndex(d, cands, r2, func(c Candidate) bool { return c.Region == first.Region && c.Release == first.Release })
	if j != i && load(d.Near[j]) < load(d.Near[i]) {
		i = j
	}
	return d.Near[i], retryFor(d, cands, i)
}

// pickIndex is the index in d.Near (which is not empty) of the member
// whose slice of the weights holds r (see Pick), among the members in
// alike only (nil: all; a member missing from cands is a zero Candidate
// with its ID). When alike takes none, it is the last member.
func pickIndex(d Decision, cands []Candidate, r float64, alike func(Candidate) bool) int {
	in := func(id string) bool { return alike == nil || alike(candidateOf(cands, id)) }
	// Weights are looked up in cands, not copied into a map: a POP picks
	// for every request, and cands are few.
	var total float64
	for _, id := range d.Near {
		if in(id) {
			total += weightOf(cands, id)
		}
	}
	if !(r >= 0) { // negative or NaN
		r = 0
	}
	target := r * total
	idx := len(d.Near) - 1
	var cum float64
	for i, id := range d.Near {
		if !in(id) {
			continue
		}
		idx = i
		cum += weightOf(cands, id)
		if target < cum {
			break
		}
	}
	return idx
}

// retryFor is Pick's retry for the member of d.Near at index i (see Pick).
func retryFor(d Decision, cands []Candidate, i int) string {
	primary := d.Near[i]
	if home := regionOf(cands, primary); home != "" {
		for k := 1; k < len(d.Near); k++ {
			if id := d.Near[(i+k)%len(d.Near)]; id != primary && regionOf(cands, id) == home {
				return id
			}
		}
		for _, id := range d.Fallback {
			if id != primary && regionOf(cands, id) == home {
				return id
			}
		}
	}
	for _, id := range d.Fallback {
		if id != primary {
			return id
		}
	}
	for k := 1; k < len(d.Near); k++ {
		if id := d.Near[(i+k)%len(d.Near)]; id != primary {
			return id
		}
	}
	for _, id := range d.Spare {
		if id != primary {
			return id
		}
	}
	return ""
}

// candidateOf is the first entry of cands with id, or a zero Candidate
// with that ID.
func candidateOf(cands []Candidate, id string) Candidate {
	for _, c := range cands {
		if c.ID == id {
			return c
		}
	}
	return Candidate{ID: id}
}

// regionOf is the Region cands give stamp id; empty when none does.
func regionOf(cands []Candidate, id string) string {
	for _, c := range cands {
		if c.ID == id {
			return c.Region
		}
	}
	return ""
}

// weightOf is the weight Pick gives stamp id: the smallest weight cands
// give it (zero or negative: DefaultWeight), DefaultWeight when none.
func weightOf(cands []Candidate, id string) float64 {
	w, found := DefaultWeight, false
	for _, c := range cands {
		if c.ID != id {
			continue
		}
		cw := c.Weight
		if cw <= 0 {
			cw = DefaultWeight
		}
		if !found || cw < w {
			w, found = cw, true
		}
	}
	return float64(w)
}
