package loadtest

import (
	"math"
	"time"
)

// Histogram precision: bucket i holds the latencies in
// (histMin·histGrowth^(i-1), histMin·histGrowth^i]; bucket 0 also holds
// everything up to histMin and the last bucket everything above its lower
// bound (about ten and a half minutes).
const (
	histMin     = time.Microsecond
	histGrowth  = 1.02
	histBuckets = 1024
)

// Histogram counts latencies in fixed logarithmic buckets, so its size
// (8 KiB) does not depend on how many latencies it holds. A quantile is
// the upper bound of the bucket holding it, clamped to the smallest and
// largest latency recorded: never below the exact value and at most 2 %
// above it (for latencies between 1 µs and ten minutes). The minimum, the
// maximum and the mean are exact. The zero value is an empty histogram;
// it is not safe for concurrent use.
type Histogram struct {
	counts   [histBuckets]uint64
	n        uint64
	sum      time.Duration
	min, max time.Duration
}

// bucketOf returns the bucket of latency d.
func bucketOf(d time.Duration) int {
	if d <= histMin {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(histMin)) / math.Log(histGrowth)))
	// Guard against rounding: d must not exceed its bucket's upper bound.
	if i < histBuckets-1 && float64(d) > bucketUpper(i) {
		i++
	}
	return min(i, histBuckets-1)
}

// bucketUpper returns the upper bound of bucket i in nanoseconds.
func bucketUpper(i int) float64 {
	return float64(histMin) * math.Pow(histGrowth, float64(i))
}

// Record adds one latency; negative ones count as zero.
func (h *Histogram) Record(d time.Duration) {
	d = max(d, 0)
	h.counts[bucketOf(d)]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += d
}

// Merge adds every latency of o.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Reset empties the histogram.
func (h *Histogram) Reset() { *h = Histogram{} }

// Count returns how many latencies were recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest latency recorded; zero when empty.
func (h *Histogram) Max() time.Duration { return h.max }

// Mean returns the mean latency; zero when empty.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// Quantile returns the q-quantile (0 < q <= 1) by the nearest-rank method:
// the ceil(q·n)-th smallest latency, within the precision above. It
// returns zero when the histogram is empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := time.Duration(math.Ceil(bucketUpper(i)))
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

// Bin is one bar of a coarse latency histogram.
type Bin struct {
	UpToMs float64 `json:"upToMs"` // upper bound of the bin in milliseconds; the last bin has the largest latency recorded
	Count  uint64  `json:"count"`
}

// Bins returns the histogram in coarse logarithmic bins with 1-2-5 bounds
// (0.1 ms, 0.2 ms, 0.5 ms, 1 ms, … 500 s), from the first non-empty bin to
// the last. A fine bucket goes to the bin holding its upper bound, so a
// latency within 2 % below a bound may be counted in the next bin.
func (h *Histogram) Bins() []Bin {
	if h.n == 0 {
		return nil
	}
	var bounds []float64 // nanoseconds
	for decade := 1e5; decade <= 1e11; decade *= 10 {
		bounds = append(bounds, decade, 2*decade, 5*decade)
	}
	bins := make([]Bin, len(bounds)+1)
	for i, b := range bounds {
		bins[i].UpToMs = b / 1e6
	}
	bins[len(bounds)].UpToMs = float64(h.max) / 1e6
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		up := bucketUpper(i)
		j := 0
		for j < len(bounds) && up > bounds[j] {
			j++
		}
		bins[j].Count += c
	}
	first, last := -1, -1
	for i, b := range bins {
		if b.Count > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	return bins[first : last+1]
}
