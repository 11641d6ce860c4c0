package loadtest

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactQuantile is the nearest-rank quantile of sorted.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func TestHistogramPrecision(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	gen := func(n int, f func() time.Duration) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = f()
		}
		return out
	}
	tests := []struct {
		name string
		lat  []time.Duration
	}{
		{"one value", []time.Duration{7 * time.Millisecond}},
		{"constant", gen(1000, func() time.Duration { return 5 * time.Millisecond })},
		{"uniform 1-1000 ms", gen(10_000, func() time.Duration { return time.Duration(1+rng.IntN(1000)) * time.Millisecond })},
		{"exponential, mean 20 ms", gen(20_000, func() time.Duration {
			return time.Microsecond + time.Duration(rng.ExpFloat64()*float64(20*time.Millisecond))
		})},
		{"bimodal: 99 % fast, 1 % at 2 s", gen(5000, func() time.Duration {
			if rng.IntN(100) == 0 {
				return 2*time.Second + time.Duration(rng.IntN(1000))*time.Microsecond
			}
			return 800*time.Microsecond + time.Duration(rng.IntN(400))*time.Microsecond
		})},
		{"micro to minutes", gen(5000, func() time.Duration {
			return time.Duration(math.Pow(10, 3+rng.Float64()*8)) // 1 µs .. 100 s
		})},
		{"exact bucket bounds", []time.Duration{time.Microsecond, time.Duration(bucketUpper(1)), time.Duration(bucketUpper(100)), time.Duration(bucketUpper(500))}},
	}
	quantiles := []float64{0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			var sum time.Duration
			for _, d := range tt.lat {
				h.Record(d)
				sum += d
			}
			sorted := slices.Clone(tt.lat)
			slices.Sort(sorted)
			if h.Count() != uint64(len(sorted)) {
				t.Fatalf("Count = %d, want %d", h.Count(), len(sorted))
			}
			if h.Max() != sorted[len(sorted)-1] {
				t.Errorf("Max = %v, want %v", h.Max(), sorted[len(sorted)-1])
			}
			if want := sum / time.Duration(len(sorted)); h.Mean() != want {
				t.Errorf("Mean = %v, want %v", h.Mean(), want)
			}
			for _, q := range quantiles {
				want := exactQuantile(sorted, q)
				got := h.Quantile(q)
				// Never below the exact value, at most 2 % above it.
				if got < want || float64(got) > float64(want)*histGrowth+1 {
					t.Errorf("Quantile(%v) = %v, exact %v (%.3f%%)", q, got, want, 100*(float64(got)/float64(want)-1))
				}
			}
			var binned uint64
			for _, b := range h.Bins() {
				binned += b.Count
			}
			if binned != h.Count() {
				t.Errorf("bins hold %d latencies, want %d", binned, h.Count())
			}
		})
	}
}

func TestHistogramMergeAndEmpty(t *testing.T) {
	var empty Histogram
	if empty.Quantile(0.99) != 0 || empty.Max() != 0 || empty.Mean() != 0 || empty.Bins() != nil {
		t.Error("an empty histogram reports non-zero values")
	}
	var a, b, all Histogram
	for i := range 1000 {
		d := time.Duration(i+1) * 137 * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(&b)
	a.Merge(&empty)
	if a != all {
		t.Errorf("merged halves differ from the whole: p99 %v vs %v, n %d vs %d", a.Quantile(0.99), all.Quantile(0.99), a.Count(), all.Count())
	}
	a.Reset()
	if a.Count() != 0 || a.Quantile(0.5) != 0 {
		t.Error("Reset left latencies behind")
	}
}

func TestHistogramBins(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{300 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, 40 * time.Millisecond} {
		h.Record(d)
	}
	got := h.Bins()
	want := []Bin{{0.5, 1}, {1, 0}, {2, 0}, {5, 2}, {10, 0}, {20, 0}, {50, 1}}
	if !slices.Equal(got, want) {
		t.Errorf("Bins = %v, want %v", got, want)
	}
}
