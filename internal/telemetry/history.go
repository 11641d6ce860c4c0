package telemetry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Labels selects metric series: every given label must equal the series'
// attribute value (a missing attribute counts as ""); a value ending in "*"
// matches by prefix ("5*" matches "500" and "503", "*" anything).
type Labels = map[string]string

func matches(l Labels, attrs map[string]string) bool {
	for k, want := range l {
		got := attrs[k]
		if p, ok := strings.CutSuffix(want, "*"); ok {
			if !strings.HasPrefix(got, p) {
				return false
			}
		} else if got != want {
			return false
		}
	}
	return true
}

type seriesKind uint8

const (
	kindSum seriesKind = iota + 1
	kindGauge
	kindHistogram
)

// series is one tracked metric series. Its values sit in every snapshot's
// vals from off on: one value for sums and gauges; count, sum and the
// per-bucket (not cumulative) counts, len(bounds)+1 of them, for
// histograms.
type series struct {
	metric string
	attrs  map[string]string // attribute values as strings (ints in decimal)
	kind   seriesKind
	bounds []float64 // histogram bucket upper bounds, +Inf bucket implied
	off    int
}

func (s *series) width() int {
	if s.kind == kindHistogram {
		return 3 + len(s.bounds)
	}
	return 1
}

// snapshot is the value of every tracked series at one collection. A series
// added after the snapshot lies beyond len(vals); NaN marks a series not
// reported in that collection. Both read as "absent" (zero for counts).
type snapshot struct {
	at   time.Time
	vals []float64
}

func (s *snapshot) val(off int) float64 {
	if off >= len(s.vals) || math.IsNaN(s.vals[off]) {
		return 0
	}
	return s.vals[off]
}

func (s *snapshot) has(off int) bool { return off < len(s.vals) && !math.IsNaN(s.vals[off]) }

type tier struct {
	Tier
	snaps ring[*snapshot]
}

// history is the sink's tiered metric history.
type history struct {
	collectMu sync.Mutex // serialises Collect

	mu        sync.RWMutex // guards everything below
	maxSeries int
	series    map[string]*series   // by scope, name and attribute set
	byMetric  map[string][]*series // by metric name
	width     int                  // total values per snapshot
	dropped   int                  // series not tracked for MaxSeries
	tiers     []*tier              // finest first
	latest    *snapshot            // the last collected, nil before the first
}

// maxTierSnapshots bounds one tier's ring; it rejects configurations such as
// a 1 ns resolution kept for hours.
const maxTierSnapshots = 100_000

func newHistory(tiers []Tier, maxSeries int) (*history, error) {
	if len(tiers) == 0 {
		return nil, errors.New("telemetry: at least one metric history tier is required")
	}
	h := &history{maxSeries: maxSeries, series: map[string]*series{}, byMetric: map[string][]*series{}}
	for i, t := range tiers {
		if t.Resolution <= 0 || t.Retention < t.Resolution {
			return nil, fmt.Errorf("telemetry: tier %d: resolution must be positive and retention at least the resolution", i)
		}
		if i > 0 && t.Resolution < tiers[i-1].Resolution {
			return nil, fmt.Errorf("telemetry: tier %d: tiers must go from finest to coarsest", i)
		}
		n := int((t.Retention+t.Resolution-1)/t.Resolution) + 2
		if n > maxTierSnapshots {
			return nil, fmt.Errorf("telemetry: tier %d keeps %d snapshots, more than %d", i, n, maxTierSnapshots)
		}
		h.tiers = append(h.tiers, &tier{Tier: t, snaps: newRing[*snapshot](n)})
	}
	return h, nil
}

// Collect reads every metric series now and stores the snapshot in the
// metric history, stamped with the sink's clock: always as the latest, and
// in each tier whose current Resolution-aligned interval has no snapshot
// yet. Run calls it every second.
func (s *Sink) Collect(ctx context.Context) error {
	if s == nil {
		return nil
	}
	h := s.hist
	h.collectMu.Lock()
	defer h.collectMu.Unlock()
	readers := s.localReaders()
	collected := make([]metricdata.ResourceMetrics, len(readers))
	for i, r := range readers {
		if err := r.reader.Collect(ctx, &collected[i]); err != nil {
			return fmt.Errorf("collect metrics: %w", err)
		}
	}
	at := s.now()

	h.mu.Lock()
	defer h.mu.Unlock()
	vals := make([]float64, h.width, h.width+8)
	for i := range vals {
		vals[i] = math.NaN()
	}
	grow := func() {
		for len(vals) < h.width {
			vals = append(vals, math.NaN())
		}
	}
	set := func(se *series, v ...float64) {
		grow()
		copy(vals[se.off:], v)
	}
	// Parts of one service in one region (two instances of a stamp, say)
	// share their series in the history: their values add up.
	add := func(se *series, v ...float64) {
		grow()
		for i, x := range v {
			if cur := vals[se.off+i]; !math.IsNaN(cur) {
				x += cur
			}
			vals[se.off+i] = x
		}
	}
	for i, rm := range collected {
		who := attribute.NewSet(readers[i].who...)
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				scope := sm.Scope.Name
				switch d := m.Data.(type) {
				case metricdata.Sum[int64]:
					setPoints(h, add, scope, m.Name, who, kindSum, d.DataPoints)
				case metricdata.Sum[float64]:
					setPoints(h, add, scope, m.Name, who, kindSum, d.DataPoints)
				case metricdata.Gauge[int64]:
					setPoints(h, add, scope, m.Name, who, kindGauge, d.DataPoints)
				case metricdata.Gauge[float64]:
					setPoints(h, add, scope, m.Name, who, kindGauge, d.DataPoints)
				case metricdata.Histogram[int64]:
					for _, dp := range d.DataPoints {
						setHistogram(h, add, scope, m.Name, withWho(dp.Attributes, who), dp.Bounds, dp.Count, float64(dp.Sum), dp.BucketCounts)
					}
				case metricdata.Histogram[float64]:
					for _, dp := range d.DataPoints {
						setHistogram(h, add, scope, m.Name, withWho(dp.Attributes, who), dp.Bounds, dp.Count, dp.Sum, dp.BucketCounts)
					}
				}
				// Exponential histograms and summaries are not kept.
			}
		}
	}
	s.addRemote(h, set, at)
	snap := &snapshot{at: at, vals: vals}
	h.latest = snap
	for _, t := range h.tiers {
		n := t.snaps.len()
		if n > 0 && !at.Truncate(t.Resolution).After(t.snaps.at(n-1).at.Truncate(t.Resolution)) {
			continue // this interval has its snapshot (or the clock went back)
		}
		t.snaps.push(snap)
	}
	return nil
}

// setPoints stores the value of every data point of a sum or a gauge, with
// the attributes who added.
func setPoints[N int64 | float64](h *history, set func(*series, ...float64), scope, name string, who attribute.Set, kind seriesKind, dps []metricdata.DataPoint[N]) {
	for _, dp := range dps {
		if se := h.lookup(scope, name, withWho(dp.Attributes, who), kind, nil); se != nil {
			set(se, float64(dp.Value))
		}
	}
}

// withWho is attrs with the attributes of who added (who's win).
func withWho(attrs, who attribute.Set) attribute.Set {
	if who.Len() == 0 {
		return attrs
	}
	return attribute.NewSet(append(attrs.ToSlice(), who.ToSlice()...)...)
}

func setHistogram(h *history, set func(*series, ...float64), scope, name string, attrs attribute.Set, bounds []float64, count uint64, sum float64, buckets []uint64) {
	if len(buckets) != len(bounds)+1 {
		return
	}
	se := h.lookup(scope, name, attrs, kindHistogram, bounds)
	if se == nil {
		return
	}
	v := make([]float64, 0, 2+len(buckets))
	v = append(v, float64(count), sum)
	for _, b := range buckets {
		v = append(v, float64(b))
	}
	set(se, v...)
}

// lookup returns the series, creating it when new; nil when it cannot be
// tracked (MaxSeries reached, or its shape changed). The caller holds mu.
func (h *history) lookup(scope, name string, attrs attribute.Set, kind seriesKind, bounds []float64) *series {
	key := scope + "\x00" + name + "\x00" + attrs.Encoded(attribute.DefaultEncoder())
	if se, ok := h.series[key]; ok {
		if se.kind != kind || !slices.Equal(se.bounds, bounds) {
			return nil
		}
		return se
	}
	if len(h.series) >= h.maxSeries {
		h.dropped++
		return nil
	}
	se := &series{metric: name, kind: kind, bounds: slices.Clone(bounds), off: h.width, attrs: make(map[string]string, attrs.Len())}
	for _, kv := range attrs.ToSlice() {
		se.attrs[string(kv.Key)] = kv.Value.Emit()
	}
	h.width += se.width()
	h.series[key] = se
	h.byMetric[name] = append(h.byMetric[name], se)
	return se
}

// window finds the latest snapshot, the snapshot older than it that is
// nearest to now-window (searched in every tier, so the finest tier that
// reaches back that far answers; ties go to the older, which covers the
// whole window), and the matching series present in the latest. ok is false
// when the latest snapshot is not inside the window, there is no older
// snapshot, or no series matches. The caller holds mu for reading.
func (s *Sink) window(metric string, match Labels, window time.Duration) (end, start *snapshot, matched []*series, ok bool) {
	h := s.hist
	end = h.latest
	if end == nil || window <= 0 {
		return nil, nil, nil, false
	}
	target := s.now().Add(-window)
	if !end.at.After(target) {
		return nil, nil, nil, false // no snapshot inside the window
	}
	for _, t := range h.tiers {
		n := t.snaps.len()
		// i: the first snapshot at or after target.
		i := sort.Search(n, func(i int) bool { return !t.snaps.at(i).at.Before(target) })
		for _, j := range []int{i - 1, i} {
			if j < 0 || j >= n {
				continue
			}
			c := t.snaps.at(j)
			if !c.at.Before(end.at) {
				continue
			}
			if start == nil || absDur(c.at.Sub(target)) < absDur(start.at.Sub(target)) ||
				(absDur(c.at.Sub(target)) == absDur(start.at.Sub(target)) && c.at.Before(start.at)) {
				start = c
			}
		}
	}
	if start == nil {
		return nil, nil, nil, false
	}
	for _, se := range h.byMetric[metric] {
		if end.has(se.off) && matches(match, se.attrs) {
			matched = append(matched, se)
		}
	}
	return end, start, matched, len(matched) > 0
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// Increase returns how much the matching series grew over the window ending
// now: for sums (counters, up-down counters) the change of the value, for
// histograms the number of observations. It subtracts the snapshot nearest
// to now-window (from the finest tier that reaches back that far, else the
// oldest kept) from the latest; a series absent from the older snapshot
// starts at zero. ok is false when no snapshot pair spans any part of the
// window, or no sum or histogram series matches.
func (s *Sink) Increase(metric string, match Labels, window time.Duration) (float64, bool) {
	if s == nil {
		return 0, false
	}
	s.hist.mu.RLock()
	defer s.hist.mu.RUnlock()
	end, start, matched, ok := s.window(metric, match, window)
	if !ok {
		return 0, false
	}
	var total float64
	found := false
	for _, se := range matched {
		if se.kind == kindGauge {
			continue
		}
		found = true
		total += end.val(se.off) - start.val(se.off)
	}
	return total, found
}

// CountAtMost returns how many observations of the matching histogram
// series were at most le over the window (see Increase for how the window
// is taken). le must be one of the series' bucket boundaries (or +Inf, for
// all observations); ok is false otherwise, when a matching series is not a
// histogram, or when Increase would say not ok.
func (s *Sink) CountAtMost(metric string, match Labels, le float64, window time.Duration) (float64, bool) {
	if s == nil {
		return 0, false
	}
	s.hist.mu.RLock()
	defer s.hist.mu.RUnlock()
	end, start, matched, ok := s.window(metric, match, window)
	if !ok {
		return 0, false
	}
	var total float64
	for _, se := range matched {
		if se.kind != kindHistogram {
			return 0, false
		}
		last := len(se.bounds) // the +Inf bucket
		if !math.IsInf(le, 1) {
			last = slices.Index(se.bounds, le)
			if last < 0 {
				return 0, false
			}
		}
		for b := 0; b <= last; b++ {
			off := se.off + 2 + b
			total += end.val(off) - start.val(off)
		}
	}
	return total, true
}

// Quantile estimates the q-quantile (0 <= q <= 1) of the observations of
// the matching histogram series over the window (see Increase), the way
// Prometheus' histogram_quantile does: it finds the bucket holding the
// q·count-th observation and interpolates linearly within it (the first
// bucket starts at 0, unless its upper bound is not positive; a rank in
// the +Inf bucket answers the highest finite bound). ok is false when no
// observation fell in the window, the matching series disagree on their
// buckets, or a matching series is not a histogram.
func (s *Sink) Quantile(metric string, match Labels, q float64, window time.Duration) (float64, bool) {
	if s == nil || q < 0 || q > 1 || math.IsNaN(q) {
		return 0, false
	}
	s.hist.mu.RLock()
	defer s.hist.mu.RUnlock()
	end, start, matched, ok := s.window(metric, match, window)
	if !ok {
		return 0, false
	}
	bounds := matched[0].bounds
	counts := make([]float64, len(bounds)+1)
	for _, se := range matched {
		if se.kind != kindHistogram || !slices.Equal(se.bounds, bounds) {
			return 0, false
		}
		for b := range counts {
			off := se.off + 2 + b
			counts[b] += end.val(off) - start.val(off)
		}
	}
	return bucketQuantile(q, bounds, counts)
}

// bucketQuantile is Prometheus' bucketQuantile over per-bucket counts (the
// last bucket is +Inf).
func bucketQuantile(q float64, bounds, counts []float64) (float64, bool) {
	if len(bounds) == 0 || len(counts) != len(bounds)+1 {
		return 0, false
	}
	cum := make([]float64, len(counts))
	var total float64
	for i, c := range counts {
		total += c
		cum[i] = total
	}
	if total <= 0 {
		return 0, false
	}
	rank := q * total
	// b: the first finite bucket whose cumulative count reaches the rank
	// (and is not empty, so that q=0 answers the lowest observed bucket where
	// Prometheus answers NaN).
	b := sort.Search(len(bounds), func(i int) bool { return cum[i] >= rank && cum[i] > 0 })
	if b == len(bounds) {
		return bounds[len(bounds)-1], true
	}
	if b == 0 && bounds[0] <= 0 {
		return bounds[0], true
	}
	lower, count := 0.0, cum[b]
	if b > 0 {
		lower = bounds[b-1]
		count -= cum[b-1]
		rank -= cum[b-1]
	}
	if count <= 0 {
		return lower, true
	}
	return lower + (bounds[b]-lower)*(rank/count), true
}

// Last returns the latest collected value of the matching gauge and sum
// series, summed, and when it was collected. ok is false before the first
// collection or when no gauge or sum series matches.
func (s *Sink) Last(metric string, match Labels) (float64, time.Time, bool) {
	if s == nil {
		return 0, time.Time{}, false
	}
	h := s.hist
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.latest == nil {
		return 0, time.Time{}, false
	}
	var total float64
	found := false
	for _, se := range h.byMetric[metric] {
		if se.kind == kindHistogram || !h.latest.has(se.off) || !matches(match, se.attrs) {
			continue
		}
		found = true
		total += h.latest.val(se.off)
	}
	if !found {
		return 0, time.Time{}, false
	}
	return total, h.latest.at, true
}

// LabelValues returns the distinct values of the label among the tracked
// series of metric that match, sorted: which routes, regions or flows have
// been recorded.
func (s *Sink) LabelValues(metric, label string, match Labels) []string {
	if s == nil {
		return nil
	}
	h := s.hist
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []string
	for _, se := range h.byMetric[metric] {
		if v, ok := se.attrs[label]; ok && matches(match, se.attrs) && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}
