package netsim

import (
	"maps"
	"testing"
	"time"
)

func TestPair(t *testing.T) {
	if p := NewPair("westeurope", "eastus"); p != (Pair{A: "eastus", B: "westeurope"}) || p.String() != "eastus-westeurope" {
		t.Fatalf("NewPair = %+v %q", p, p)
	}
	if NewPair("a", "b") != NewPair("b", "a") {
		t.Fatal("NewPair not symmetric")
	}
	for _, s := range []string{"eastus-westeurope", "westeurope-eastus"} {
		p, err := ParsePair(s)
		if err != nil || p != NewPair("eastus", "westeurope") {
			t.Fatalf("ParsePair(%q) = %+v, %v", s, p, err)
		}
	}
	for _, s := range []string{"", "eastus", "a-b-c", "a-", "-b", "a-a", "East-us", "a_b-c", "a b-c"} {
		if p, err := ParsePair(s); err == nil {
			t.Errorf("ParsePair(%q) = %+v; want error", s, p)
		}
	}
}

func TestBetween(t *testing.T) {
	d := DefaultLatencies()
	for _, tc := range []struct {
		a, b string
		want time.Duration
	}{
		{"westeurope", "northeurope", 10 * time.Millisecond},
		{"northeurope", "westeurope", 10 * time.Millisecond},
		{"westeurope", "eastus", 40 * time.Millisecond},
		{"eastus", "westeurope", 40 * time.Millisecond},
		{"northeurope", "eastus", 38 * time.Millisecond},
		{"eastus", "northeurope", 38 * time.Millisecond},
		{"eastus", "eastus", 0},
		{"eastus", "southafricanorth", DefaultUnknownLatency},
		{"southafricanorth", "eastus", DefaultUnknownLatency},
		{"uksouth", "westeurope", 8 * time.Millisecond},
		{"westus", "eastus", 30 * time.Millisecond},
	} {
		if got := d.Between(tc.a, tc.b); got != tc.want {
			t.Errorf("Between(%s, %s) = %v; want %v", tc.a, tc.b, got, tc.want)
		}
	}
	if DefaultUnknownLatency != 50*time.Millisecond {
		t.Fatalf("DefaultUnknownLatency = %v", DefaultUnknownLatency)
	}
	var nilTable LatencyTable
	if got := nilTable.Between("a", "b"); got != DefaultUnknownLatency {
		t.Fatalf("nil table Between = %v", got)
	}
}

func TestParseLatencyTable(t *testing.T) {
	good := []struct {
		in   string
		want LatencyTable
	}{
		{"westeurope-northeurope=10ms,eastus-westeurope=40ms", LatencyTable{
			NewPair("westeurope", "northeurope"): 10 * time.Millisecond,
			NewPair("eastus", "westeurope"):      40 * time.Millisecond,
		}},
		{" a-b = 1.5s , c1-b=0 ", LatencyTable{
			NewPair("a", "b"):  1500 * time.Millisecond,
			NewPair("b", "c1"): 0,
		}},
		{"", LatencyTable{}},
		{"  ", LatencyTable{}},
	}
	for _, tc := range good {
		got, err := ParseLatencyTable(tc.in)
		if err != nil {
			t.Errorf("ParseLatencyTable(%q): %v", tc.in, err)
			continue
		}
		if got == nil || !maps.Equal(got, tc.want) {
			t.Errorf("ParseLatencyTable(%q) = %v; want %v", tc.in, got, tc.want)
		}
	}
	bad := []string{
		"a-b",               // no duration
		"a=10ms",            // not a pair
		"a-b=",              // empty duration
		"a-b=10",            // no unit
		"a-b=fast",          // not a duration
		"a-b=-1ms",          // negative
		"A-b=1ms",           // upper case
		"a-a=1ms",           // same region
		"a-b-c=1ms",         // region with '-'
		"a-b=1ms,b-a=2ms",   // duplicate pair
		"a-b=1ms,",          // empty entry
		",a-b=1ms",          // empty entry
		"we_st-x=1ms",       // bad character
		"a-b=1ms;c-d=2ms",   // wrong separator
		"a-b=1ms=2ms",       // extra '='
		"a-b=1ms,,c-d=1ms",  // empty entry
		"a-b=1ms, c-d=2xs ", // bad unit
	}
	for _, in := range bad {
		if got, err := ParseLatencyTable(in); err == nil {
			t.Errorf("ParseLatencyTable(%q) = %v; want error", in, got)
		}
	}
}
