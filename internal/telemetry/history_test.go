package telemetry

import (
	"context"
	"math"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC) // minute-aligned

// TestSinkWindows records known observations between collections one
// second apart and checks the window queries give exact answers.
func TestSinkWindows(t *testing.T) {
	clock := newFakeClock(t0)
	tel := mustNew(t, Config{Now: clock.Now})
	sink := tel.Sink()
	ctx := context.Background()
	meter := tel.Meter("test")
	orders, _ := meter.Int64Counter("contoso.orders")
	stock, _ := meter.Int64Gauge("contoso.stock")
	inflight, _ := meter.Int64UpDownCounter("contoso.inflight")
	latency, _ := meter.Float64Histogram("contoso.latency", metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.1, 0.25, 0.5, 1))
	a := metric.WithAttributes(attribute.String("region", "westeurope"), attribute.Int("http.response.status_code", 200))
	b := metric.WithAttributes(attribute.String("region", "eastus"), attribute.Int("http.response.status_code", 503))

	if _, ok := sink.Increase("contoso.orders", nil, time.Minute); ok {
		t.Fatal("Increase answered before any collection")
	}
	mustCollect(t, sink) // t0: nothing recorded yet
	// Second i (1..10): region a gets 1 order, region b 2; latency gets
	// 0.05 and 0.2 every second, 0.7 on even seconds and 5 at second 10.
	for i := 1; i <= 10; i++ {
		orders.Add(ctx, 1, a)
		orders.Add(ctx, 2, b)
		latency.Record(ctx, 0.05, a)
		latency.Record(ctx, 0.2, b)
		if i%2 == 0 {
			latency.Record(ctx, 0.7, a)
		}
		if i == 10 {
			latency.Record(ctx, 5, b)
		}
		stock.Record(ctx, int64(100-i), a)
		inflight.Add(ctx, 1, a)
		clock.Set(t0.Add(time.Duration(i) * time.Second))
		mustCollect(t, sink)
	}

	inf := math.Inf(1)
	for _, tc := range []struct {
		name   string
		query  func() (float64, bool)
		want   float64
		wantOK bool
	}{
		{"increase all over 5s", func() (float64, bool) { return sink.Increase("contoso.orders", nil, 5*time.Second) }, 15, true},
		{"increase one region", func() (float64, bool) {
			return sink.Increase("contoso.orders", Labels{"region": "westeurope"}, 5*time.Second)
		}, 5, true},
		{"int attribute as decimal", func() (float64, bool) {
			return sink.Increase("contoso.orders", Labels{"http.response.status_code": "503"}, 3*time.Second)
		}, 6, true},
		{"prefix match", func() (float64, bool) {
			return sink.Increase("contoso.orders", Labels{"http.response.status_code": "5*"}, 3*time.Second)
		}, 6, true},
		{"prefix star matches all", func() (float64, bool) {
			return sink.Increase("contoso.orders", Labels{"region": "*"}, 1*time.Second)
		}, 3, true},
		{"series absent at the start counts from zero", func() (float64, bool) {
			return sink.Increase("contoso.orders", nil, 10*time.Second)
		}, 30, true},
		{"window longer than history uses the oldest", func() (float64, bool) {
			return sink.Increase("contoso.orders", nil, time.Hour)
		}, 30, true},
		{"no matching series", func() (float64, bool) {
			return sink.Increase("contoso.orders", Labels{"region": "brazilsouth"}, 5*time.Second)
		}, 0, false},
		{"unknown metric", func() (float64, bool) { return sink.Increase("contoso.nothing", nil, 5*time.Second) }, 0, false},
		{"zero window", func() (float64, bool) { return sink.Increase("contoso.orders", nil, 0) }, 0, false},
		{"gauge has no increase", func() (float64, bool) { return sink.Increase("contoso.stock", nil, 5*time.Second) }, 0, false},
		{"up-down counter change", func() (float64, bool) { return sink.Increase("contoso.inflight", nil, 4*time.Second) }, 4, true},
		{"histogram count", func() (float64, bool) { return sink.Increase("contoso.latency", nil, 4*time.Second) }, 11, true},

		// Seconds 7..10: 4×0.05, 4×0.2, 2×0.7, 1×5.
		{"at most 0.1", func() (float64, bool) { return sink.CountAtMost("contoso.latency", nil, 0.1, 4*time.Second) }, 4, true},
		{"at most 0.25", func() (float64, bool) { return sink.CountAtMost("contoso.latency", nil, 0.25, 4*time.Second) }, 8, true},
		{"at most 1", func() (float64, bool) { return sink.CountAtMost("contoso.latency", nil, 1, 4*time.Second) }, 10, true},
		{"at most +Inf", func() (float64, bool) { return sink.CountAtMost("contoso.latency", nil, inf, 4*time.Second) }, 11, true},
		{"at most 1, one region", func() (float64, bool) {
			return sink.CountAtMost("contoso.latency", Labels{"region": "eastus"}, 1, 4*time.Second)
		}, 4, true},
		{"not a boundary", func() (float64, bool) { return sink.CountAtMost("contoso.latency", nil, 0.3, 4*time.Second) }, 0, false},
		{"not a histogram", func() (float64, bool) { return sink.CountAtMost("contoso.orders", nil, 1, 4*time.Second) }, 0, false},

		// rank 5.5 of 11: bucket (0.1, 0.25] holds ranks 5..8.
		{"median", func() (float64, bool) { return sink.Quantile("contoso.latency", nil, 0.5, 4*time.Second) }, 0.1 + 0.15*1.5/4, true},
		// rank 9.9: bucket (0.5, 1] holds ranks 9..10.
		{"p90", func() (float64, bool) { return sink.Quantile("contoso.latency", nil, 0.9, 4*time.Second) }, 0.5 + 0.5*1.9/2, true},
		// rank 10.89 lies in +Inf: the highest finite bound.
		{"p99 in +Inf", func() (float64, bool) { return sink.Quantile("contoso.latency", nil, 0.99, 4*time.Second) }, 1, true},
		{"p50 of one region", func() (float64, bool) {
			return sink.Quantile("contoso.latency", Labels{"region": "westeurope"}, 0.5, 4*time.Second)
		}, 0.1 * 3 / 4, true},
		{"quantile out of range", func() (float64, bool) { return sink.Quantile("contoso.latency", nil, 1.5, 4*time.Second) }, 0, false},
		{"quantile of a counter", func() (float64, bool) { return sink.Quantile("contoso.orders", nil, 0.5, 4*time.Second) }, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.query()
			if ok != tc.wantOK || (ok && math.Abs(got-tc.want) > 1e-9) {
				t.Errorf("got %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}

	if v, at, ok := sink.Last("contoso.stock", Labels{"region": "westeurope"}); !ok || v != 90 || !at.Equal(t0.Add(10*time.Second)) {
		t.Errorf("Last(stock) = %v, %v, %v; want 90 at t0+10s", v, at, ok)
	}
	if v, _, ok := sink.Last("contoso.inflight", nil); !ok || v != 10 {
		t.Errorf("Last(inflight) = %v, %v; want 10", v, ok)
	}
	if _, _, ok := sink.Last("contoso.latency", nil); ok {
		t.Error("Last answered for a histogram")
	}
	if got := sink.LabelValues("contoso.orders", "region", nil); len(got) != 2 || got[0] != "eastus" || got[1] != "westeurope" {
		t.Errorf("LabelValues = %v", got)
	}

	// Once the clock runs past the last snapshot by more than the window,
	// no history covers the window.
	clock.Advance(time.Minute)
	if _, ok := sink.Increase("contoso.orders", nil, 30*time.Second); ok {
		t.Error("Increase answered for a window after the last snapshot")
	}
	if v, ok := sink.Increase("contoso.orders", nil, 2*time.Minute); !ok || v != 30 {
		t.Errorf("Increase over a window reaching the history = %v, %v; want 30", v, ok)
	}
}

// TestSinkTiers collects every second for seven minutes with the default
// tiers: the first two minutes fall out of the 1 s tier and are answered
// from the 1 min tier.
func TestSinkTiers(t *testing.T) {
	clock := newFakeClock(t0)
	tel := mustNew(t, Config{Now: clock.Now})
	sink := tel.Sink()
	ctx := context.Background()
	c, _ := tel.Meter("test").Int64Counter("contoso.ticks")
	const seconds = 7 * 60
	for i := 0; i <= seconds; i++ {
		clock.Set(t0.Add(time.Duration(i) * time.Second))
		mustCollect(t, sink) // the counter reads i
		c.Add(ctx, 1)
		checkTierBounds(t, sink)
	}
	fine, coarse := sink.hist.tiers[0], sink.hist.tiers[1]
	if fine.snaps.len() != 302 || fine.snaps.cap() != 302 {
		t.Errorf("1 s tier holds %d of %d, want 302 of 302", fine.snaps.len(), fine.snaps.cap())
	}
	if got := fine.snaps.at(0).at; !got.Equal(t0.Add(2*time.Minute - time.Second)) {
		t.Errorf("1 s tier starts at %v, want t0+1m59s", got)
	}
	if coarse.snaps.len() != 8 || coarse.snaps.cap() != 362 {
		t.Errorf("1 min tier holds %d of %d, want 8 of 362", coarse.snaps.len(), coarse.snaps.cap())
	}
	for _, tc := range []struct {
		window time.Duration
		want   float64
	}{
		{time.Second, 1},
		{2 * time.Minute, 120},                // 1 s tier
		{5 * time.Minute, 300},                // 1 s tier
		{5*time.Minute + time.Second, 301},    // oldest of the 1 s tier
		{6 * time.Minute, 360},                // t0+1m: only in the 1 min tier
		{6*time.Minute + 20*time.Second, 360}, // t0+40s is nearest t0+1m
		{6*time.Minute + 30*time.Second, 420}, // tie between t0 and t0+1m: the older
		{7 * time.Minute, 420},
		{time.Hour, 420},
	} {
		got, ok := sink.Increase("contoso.ticks", nil, tc.window)
		if !ok || got != tc.want {
			t.Errorf("Increase over %v = %v, %v; want %v", tc.window, got, ok, tc.want)
		}
	}
}

// TestSinkTiersReachThreeDays collects every minute for three days and an
// hour with the default tiers: the slow-burn alert's 3d window is answered
// from the 1 h tier, its 6h window from the 1 min tier.
func TestSinkTiersReachThreeDays(t *testing.T) {
	clock := newFakeClock(t0) // hour-aligned
	tel := mustNew(t, Config{Now: clock.Now})
	sink := tel.Sink()
	c, _ := tel.Meter("test").Int64Counter("contoso.minutes")
	const minutes = 3*24*60 + 60
	for i := 0; i <= minutes; i++ {
		clock.Set(t0.Add(time.Duration(i) * time.Minute))
		mustCollect(t, sink) // the counter reads i
		c.Add(context.Background(), 1)
	}
	if hours := sink.hist.tiers[2]; hours.snaps.len() != 74 || hours.snaps.cap() != 74 {
		t.Errorf("1 h tier holds %d of %d, want 74 of 74", hours.snaps.len(), hours.snaps.cap())
	}
	for _, tc := range []struct {
		window time.Duration
		want   float64
	}{
		{6 * time.Hour, 360},                    // 1 min tier
		{6*time.Hour + time.Minute, 361},        // oldest of the 1 min tier
		{24 * time.Hour, 1440},                  // 1 h tier
		{3 * 24 * time.Hour, 4320},              // 1 h tier
		{3*24*time.Hour + 20*time.Minute, 4320}, // nearest hour
		{3*24*time.Hour + time.Hour, 4380},      // oldest of the 1 h tier
		{4 * 24 * time.Hour, 4380},              // beyond: the oldest kept
	} {
		got, ok := sink.Increase("contoso.minutes", nil, tc.window)
		if !ok || got != tc.want {
			t.Errorf("Increase over %v = %v, %v; want %v", tc.window, got, ok, tc.want)
		}
	}
}

// TestSinkTierBounds runs small tiers well past their capacity.
func TestSinkTierBounds(t *testing.T) {
	clock := newFakeClock(t0)
	tiers := []Tier{{Resolution: time.Second, Retention: 5 * time.Second}, {Resolution: 3 * time.Second, Retention: 12 * time.Second}}
	tel := mustNew(t, Config{Now: clock.Now, Tiers: tiers})
	sink := tel.Sink()
	c, _ := tel.Meter("test").Int64Counter("contoso.ticks")
	for i := 0; i < 100; i++ {
		// Collections every 700 ms: some seconds get two, whose second is
		// kept only as the latest.
		clock.Set(t0.Add(time.Duration(i) * 700 * time.Millisecond))
		c.Add(context.Background(), 1)
		mustCollect(t, sink)
		checkTierBounds(t, sink)
	}
	for i, want := range []int{7, 6} {
		tr := sink.hist.tiers[i]
		if tr.snaps.len() != want {
			t.Errorf("tier %d holds %d snapshots, want %d", i, tr.snaps.len(), want)
		}
		latest := t0.Add(99 * 700 * time.Millisecond)
		if age := latest.Sub(tr.snaps.at(0).at); age < tr.Retention {
			t.Errorf("tier %d reaches back %v, less than its retention %v", i, age, tr.Retention)
		}
		for j := 1; j < tr.snaps.len(); j++ {
			prev, cur := tr.snaps.at(j-1).at, tr.snaps.at(j).at
			if cur.Truncate(tr.Resolution).Sub(prev.Truncate(tr.Resolution)) < tr.Resolution {
				t.Errorf("tier %d keeps two snapshots in one interval: %v, %v", i, prev, cur)
			}
		}
	}
	// One count per collection. The latest is at 69.3 s; 2.1 s earlier,
	// 67.2 s, is the first collection of its second, so the 1 s tier kept
	// it: the counter rose by 3 since.
	if got, ok := sink.Increase("contoso.ticks", nil, 2100*time.Millisecond); !ok || got != 3 {
		t.Errorf("Increase over 2.1s = %v, %v; want 3", got, ok)
	}
	// 65.8 s was the second collection in its second, so only 65.1 s and
	// 66.5 s were kept; they are equally near and the older one answers.
	if got, ok := sink.Increase("contoso.ticks", nil, 3500*time.Millisecond); !ok || got != 6 {
		t.Errorf("Increase over 3.5s = %v, %v; want 6", got, ok)
	}
}

func checkTierBounds(t *testing.T, sink *Sink) {
	t.Helper()
	for i, tr := range sink.hist.tiers {
		want := int(tr.Retention/tr.Resolution) + 2
		if tr.snaps.cap() != want || tr.snaps.len() > tr.snaps.cap() {
			t.Fatalf("tier %d holds %d snapshots, capacity %d, want capacity %d", i, tr.snaps.len(), tr.snaps.cap(), want)
		}
	}
}

func TestSinkMaxSeries(t *testing.T) {
	clock := newFakeClock(t0)
	tel := mustNew(t, Config{Now: clock.Now, MaxSeries: 3})
	sink := tel.Sink()
	c, _ := tel.Meter("test").Int64Counter("contoso.c")
	for _, r := range []string{"a", "b", "c", "d", "e"} {
		c.Add(context.Background(), 1, metric.WithAttributes(attribute.String("region", r)))
	}
	mustCollect(t, sink)
	if n := len(sink.hist.series); n != 3 || sink.hist.dropped == 0 {
		t.Errorf("tracked %d series (%d dropped), want 3 and some dropped", n, sink.hist.dropped)
	}
}

func TestBucketQuantile(t *testing.T) {
	bounds := []float64{1, 2, 4}
	for _, tc := range []struct {
		name   string
		q      float64
		bounds []float64
		counts []float64
		want   float64
		ok     bool
	}{
		{"empty", 0.5, bounds, []float64{0, 0, 0, 0}, 0, false},
		{"first bucket from zero", 0.5, bounds, []float64{4, 0, 0, 0}, 0.5, true},
		{"q 1 is the upper bound", 1, bounds, []float64{4, 0, 0, 0}, 1, true},
		{"q 0 starts at the lowest non-empty bucket", 0, bounds, []float64{0, 4, 0, 0}, 1, true},
		{"middle bucket", 0.75, bounds, []float64{2, 2, 0, 0}, 1.5, true},
		{"skips empty buckets", 0.5, bounds, []float64{0, 0, 2, 0}, 3, true},
		{"+Inf bucket", 0.9, bounds, []float64{1, 0, 0, 9}, 4, true},
		{"non-positive first bound", 0.1, []float64{-1, 0, 1}, []float64{5, 0, 0, 0}, -1, true},
		{"mismatched counts", 0.5, bounds, []float64{1}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := bucketQuantile(tc.q, tc.bounds, tc.counts)
			if ok != tc.ok || (ok && math.Abs(got-tc.want) > 1e-12) {
				t.Errorf("bucketQuantile(%v, %v, %v) = %v, %v; want %v, %v", tc.q, tc.bounds, tc.counts, got, ok, tc.want, tc.ok)
			}
		})
	}
}
