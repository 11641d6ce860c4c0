// Package netsim simulates inter-region network links on one machine: a TCP proxy per region pair with one-way latency that faults can slow, jitter or cut.
package netsim

import (
	"fmt"
	"strings"
	"time"
)

// DefaultUnknownLatency is the one-way latency of a link between two regions
// that a LatencyTable does not list.
const DefaultUnknownLatency = 50 * time.Millisecond

// LatencyTable gives the one-way latency between two regions, in either order.
type LatencyTable map[Pair]time.Duration

// Pair names the two ends of a link between regions. It is canonical when
// A < B; NewPair and ParsePair always return canonical pairs.
type Pair struct{ A, B string }

// NewPair returns the canonical pair of regions a and b (sorted, so
// NewPair(a, b) == NewPair(b, a)).
func NewPair(a, b string) Pair {
	if b < a {
		a, b = b, a
	}
	return Pair{A: a, B: b}
}

// String returns the pair's name, "A-B", for example "eastus-westeurope".
func (p Pair) String() string { return p.A + "-" + p.B }

// ParsePair parses "a-b" (regions in either order) into a canonical Pair.
// Region names must match [a-z0-9]+ and the two regions must differ.
func ParsePair(s string) (Pair, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return Pair{}, fmt.Errorf("netsim: pair %q: want region-region", s)
	}
	if err := validRegion(a); err != nil {
		return Pair{}, fmt.Errorf("netsim: pair %q: %w", s, err)
	}
	if err := validRegion(b); err != nil {
		return Pair{}, fmt.Errorf("netsim: pair %q: %w", s, err)
	}
	if a == b {
		return Pair{}, fmt.Errorf("netsim: pair %q: a link needs two different regions", s)
	}
	return NewPair(a, b), nil
}

// validRegion reports whether name is a region name: [a-z0-9]+.
func validRegion(name string) error {
	if name == "" {
		return fmt.Errorf("empty region name")
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return fmt.Errorf("region name %q: only [a-z0-9] allowed", name)
		}
	}
	return nil
}

// DefaultLatencies returns the default one-way latencies:
// westeurope–northeurope 10ms, westeurope–eastus 40ms, northeurope–eastus
// 38ms, and for regions an operator may add at run time: uksouth (8 ms from
// westeurope, 12 ms from northeurope, 38 ms from eastus) and westus (30 ms
// from eastus, 70 ms from the European regions).
func DefaultLatencies() LatencyTable {
	ms := time.Millisecond
	return LatencyTable{
		NewPair("westeurope", "northeurope"): 10 * ms,
		NewPair("westeurope", "eastus"):      40 * ms,
		NewPair("northeurope", "eastus"):     38 * ms,
		NewPair("uksouth", "westeurope"):     8 * ms,
		NewPair("uksouth", "northeurope"):    12 * ms,
		NewPair("uksouth", "eastus"):         38 * ms,
		NewPair("westus", "eastus"):          30 * ms,
		NewPair("westus", "westeurope"):      70 * ms,
		NewPair("westus", "northeurope"):     70 * ms,
		NewPair("westus", "uksouth"):         70 * ms,
	}
}

// Between returns the one-way latency between regions a and b in either
// order: 0 within one region, DefaultUnknownLatency for a pair the table
// does not list.
func (t LatencyTable) Between(a, b string) time.Duration {
	if a == b {
		return 0
	}
	if d, ok := t[NewPair(a, b)]; ok {
		return d
	}
	return DefaultUnknownLatency
}

// ParseLatencyTable parses the flag form of a LatencyTable: comma-separated
// pair=duration entries such as "westeurope-northeurope=10ms,eastus-westeurope=40ms".
// Spaces around entries are ignored; an empty (or all-space) string gives an
// empty table. Durations use time.ParseDuration syntax and must not be
// negative; a pair may appear only once (in either order).
func ParseLatencyTable(s string) (LatencyTable, error) {
	t := LatencyTable{}
	if strings.TrimSpace(s) == "" {
		return t, nil
	}
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		name, value, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("netsim: latency entry %q: want region-region=duration", entry)
		}
		p, err := ParsePair(strings.TrimSpace(name))
		if err != nil {
			return nil, err
		}
		d, err := time.ParseDuration(strings.TrimSpace(value))
		if err != nil {
			return nil, fmt.Errorf("netsim: latency entry %q: %w", entry, err)
		}
		if d < 0 {
			return nil, fmt.Errorf("netsim: latency entry %q: negative latency", entry)
		}
		if _, dup := t[p]; dup {
			return nil, fmt.Errorf("netsim: latency entry %q: pair %s given twice", entry, p)
		}
		t[p] = d
	}
	return t, nil
}
