package loadtest

import (
	"bytes"
	"errors"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

func TestCheckStock(t *testing.T) {
	readErr := errors.New("GET /api/inventory/x: 503 Service Unavailable")
	tests := []struct {
		name        string
		initial     stockView
		confirmed   int
		final       stockView
		err         error
		oversold    bool
		unaccounted int
	}{
		{"sold out exactly", stockView{Available: 5}, 5, stockView{}, nil, false, 0},
		{"some left", stockView{Available: 5}, 2, stockView{Available: 3}, nil, false, 0},
		{"holds still out", stockView{Available: 5}, 2, stockView{Available: 1, Held: 2}, nil, false, 0},
		{"confirmed more than the stock", stockView{Available: 5}, 6, stockView{Available: 0}, nil, true, -1},
		{"negative stock afterwards", stockView{Available: 5}, 5, stockView{Available: -1}, nil, true, 1},
		{"a unit went missing", stockView{Available: 5}, 2, stockView{Available: 2}, nil, false, 1},
		{"not read back, within stock", stockView{Available: 5}, 5, stockView{}, readErr, false, 0},
		{"not read back, oversold", stockView{Available: 1}, 2, stockView{}, readErr, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := checkStock("sku-1", tt.initial, tt.confirmed, tt.final, tt.err)
			if c.Oversold != tt.oversold {
				t.Errorf("Oversold = %v, want %v (%+v)", c.Oversold, tt.oversold, c)
			}
			if c.Unaccounted != tt.unaccounted {
				t.Errorf("Unaccounted = %d, want %d", c.Unaccounted, tt.unaccounted)
			}
			if (c.ReadError != "") != (tt.err != nil) {
				t.Errorf("ReadError = %q with read error %v", c.ReadError, tt.err)
			}
		})
	}
}

// TestOversellReported feeds the check a synthetic oversell: confirmed
// orders for more units than the stock, and follows it into the report.
func TestOversellReported(t *testing.T) {
	col := newCollector([]string{"westeurope"}, Profile{Hold: time.Second, HoldRate: 1}, time.Second, nil)
	for i, status := range []string{"confirmed", "confirmed", "rejected", "confirmed"} {
		id := string(rune('a' + i))
		col.orders[id] = &order{id: id, status: status, lines: []orderLine{{SKU: "x-launch-edition-42", Quantity: 1}}}
		col.orderOrder = append(col.orderOrder, id)
	}
	units := confirmedUnits(col)
	if units["x-launch-edition-42"] != 3 {
		t.Fatalf("confirmed units = %v, want 3 of x-launch-edition-42", units)
	}
	c := checkStock("x-launch-edition-42", stockView{Available: 2}, units["x-launch-edition-42"], stockView{Available: 0}, nil)
	if !c.Oversold {
		t.Fatalf("3 units confirmed of 2 in stock is not reported oversold: %+v", c)
	}
	rep := &Report{Edge: "http://edge.test", LaunchStock: []StockCheck{c}, Oversold: c.Oversold}
	if v := rep.Verdict(); !strings.Contains(v, "OVERSOLD") {
		t.Errorf("Verdict = %q, want OVERSOLD", v)
	}
	var out bytes.Buffer
	if err := rep.Print(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "OVERSOLD x-launch-edition-42") {
		t.Errorf("Print does not name the oversold SKU:\n%s", out.String())
	}
	out.Reset()
	if err := rep.WriteHTML(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "OVERSOLD") {
		t.Error("the HTML report does not show the oversell")
	}
}

func TestConfigValidation(t *testing.T) {
	tokens := func(string, bool) (string, error) { return "t", nil }
	ok := Config{Edge: "http://127.0.0.1:8080", Rate: 10, Hold: time.Second, Tokens: tokens}
	tests := []struct {
		name   string
		change func(*Config)
		want   string // in the error; empty: valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no edge", func(c *Config) { c.Edge = "" }, "edge"},
		{"edge without scheme", func(c *Config) { c.Edge = "127.0.0.1:8080" }, "edge"},
		{"edge with fragment", func(c *Config) { c.Edge = "http://127.0.0.1:8080/#x" }, "edge"},
		{"zero rate", func(c *Config) { c.Rate = 0 }, "rate"},
		{"negative hold", func(c *Config) { c.Hold = -time.Second }, "negative"},
		{"empty profile", func(c *Config) { c.Hold = 0 }, "nothing to run"},
		{"spike only", func(c *Config) { c.Hold, c.Spike = 0, time.Second }, ""},
		{"negative spike rate", func(c *Config) { c.SpikeRate = -1 }, "spike rate"},
		{"no tokens", func(c *Config) { c.Tokens = nil }, "tokens"},
		{"negative weight", func(c *Config) { c.Mix = Mix{Browse: 1, Cart: -1} }, "mix"},
		{"duplicate region", func(c *Config) { c.Regions = []string{"eastus", "eastus"} }, "twice"},
		{"region with comma", func(c *Config) { c.Regions = []string{"east,us"} }, "region"},
		{"too many users", func(c *Config) { c.Users = 2_000_000 }, "users"},
		{"negative spike stock", func(c *Config) { c.SpikeStock = -1 }, "spike stock"},
		{"window", func(c *Config) { c.Windows = []Window{{Name: "before", From: 0, To: time.Second}} }, ""},
		{"window without name", func(c *Config) { c.Windows = []Window{{To: time.Second}} }, "name"},
		{"window ending before it starts", func(c *Config) { c.Windows = []Window{{Name: "w", From: 2 * time.Second, To: time.Second}} }, "before to"},
		{"window starting before the schedule", func(c *Config) { c.Windows = []Window{{Name: "w", From: -time.Second, To: time.Second}} }, ">= 0"},
		{"window twice", func(c *Config) { c.Windows = []Window{{Name: "w", To: 1}, {Name: "w", To: 1}} }, "twice"},
		{"too many windows", func(c *Config) { c.Windows = make([]Window, maxWindows+1) }, "at most"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.change(&cfg)
			r, err := New(cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("New accepted %+v", cfg)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("New error %q does not mention %q", err, tt.want)
			case err == nil:
				if len(r.cfg.Regions) == 0 || r.cfg.Users != 500 || r.cfg.Timeout != 30*time.Second || r.cfg.SpikeRate != 2*r.cfg.Rate {
					t.Errorf("defaults not applied: %+v", r.cfg)
				}
			}
		})
	}
}

func TestTagRoundTrip(t *testing.T) {
	for _, f := range Flows() {
		for _, region := range []string{"westeurope", "eu-west-1", "a&b=c"} {
			u := "http://127.0.0.1:1/api/products?limit=20&category=running#" + tag(f, region)
			gf, gr := untag(u)
			if gf != f || gr != region {
				t.Errorf("untag(%q) = %q, %q; want %q, %q", u, gf, gr, f, region)
			}
		}
	}
	if f, r := untag("http://127.0.0.1/api/products"); f != "" || r != "" {
		t.Errorf("untagged URL gave %q, %q", f, r)
	}
	u := "http://127.0.0.1:1/api/orders#" + tag(FlowCheckout, "eastus", "p-42", "p-43")
	if f, r := untag(u); f != FlowCheckout || r != "eastus" {
		t.Errorf("untag(%q) = %q, %q", u, f, r)
	}
	if got := taggedSKUs(u); !slices.Equal(got, []string{"p-42", "p-43"}) {
		t.Errorf("taggedSKUs(%q) = %q", u, got)
	}
}

// The collector knows every SKU a checkout named, and counts as of
// unknown fate the units of checkouts that may have made an order it does
// not follow: no answer, a 5xx, an accepted answer that did not decode.
func TestCollectorCountsCheckoutsOfUnknownFate(t *testing.T) {
	col := newCollector([]string{"westeurope"}, Profile{Hold: time.Second, HoldRate: 1}, time.Second, nil)
	now := time.Now()
	col.start = now
	for _, r := range []struct {
		code uint16
		body string
		skus []string
	}{
		{202, `{"id":"o1","user":"u1","items":[{"sku":"a-1","quantity":1}],"status":"accepted"}`, []string{"a-1"}},
		{202, `not json`, []string{"b-1"}},
		{503, ``, []string{"c-1", "c-2"}},
		{0, ``, []string{"d-1"}},
		{409, `{"detail":"no"}`, []string{"e-1"}},
		{429, ``, []string{"a-1"}},
	} {
		col.add(&vegeta.Result{Code: r.code, Body: []byte(r.body), Timestamp: now, Latency: time.Millisecond,
			URL: "http://edge.test/api/orders#" + tag(FlowCheckout, "westeurope", r.skus...), Method: http.MethodPost})
	}
	want := map[string]int{"a-1": 0, "b-1": 1, "c-1": 1, "c-2": 1, "d-1": 1, "e-1": 0}
	if !maps.Equal(col.named, want) {
		t.Errorf("named = %v, want %v", col.named, want)
	}
	if len(col.orders) != 1 || col.orders["o1"] == nil {
		t.Errorf("orders followed: %v", col.orders)
	}
}

// A failed idempotent request is described with when it was sent and
// why, from its problem+json answer, so that a run's failures can be told
// apart (a stamp's 503 from the edge's "no routable stamp"); a failure
// without a problem body keeps its status alone, and a non-idempotent
// failure is not a sample.
func TestFailureSamplesSayWhenAndWhy(t *testing.T) {
	col := newCollector([]string{"westeurope"}, Profile{Hold: time.Second, HoldRate: 1}, time.Second, nil)
	now := time.Now()
	col.start = now
	for i, r := range []struct {
		code   uint16
		body   string
		flow   Flow
		method string
	}{
		{503, `{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"no routable stamp"}`, FlowProduct, http.MethodGet},
		{502, `<html>bad gateway</html>`, FlowProduct, http.MethodGet},
		{503, `{"title":"Service Unavailable"}`, FlowCheckout, http.MethodPost},
		{500, `{"title":"Internal Server Error","detail":"boom"}`, FlowCart, http.MethodPost},
	} {
		col.add(&vegeta.Result{Code: r.code, Body: []byte(r.body), Timestamp: now.Add(time.Duration(i) * time.Second), Latency: time.Millisecond,
			URL: "http://edge.test/api/x#" + tag(r.flow, "westeurope"), Method: r.method})
	}
	got := col.idem.Samples
	if len(got) != 3 {
		t.Fatalf("samples = %+v; want the product GETs and the keyed checkout, not the cart", got)
	}
	for i, want := range []struct {
		problem string
		sent    time.Duration
	}{{"Service Unavailable: no routable stamp", 0}, {"", time.Second}, {"Service Unavailable", 2 * time.Second}} {
		if got[i].Problem != want.problem || got[i].Sent != want.sent {
			t.Errorf("sample %d = %+v; want problem %q sent at %s", i, got[i], want.problem, want.sent)
		}
	}
	if line := got[0].String(); !strings.Contains(line, "at +0s") || !strings.Contains(line, "503 Service Unavailable: no routable stamp") {
		t.Errorf("sample line %q; want when and why", line)
	}
}

// A window sums the answers to the requests sent within it, by flow and
// client region, and nothing sent before or after it: the p99 of the
// seconds before a fault and of the seconds it lasts, side by side. A
// window of answered requests leaves out those answered after its end.
func TestWindowsSumTheRequestsSentWithinThem(t *testing.T) {
	regions := []string{"westeurope", "eastus"}
	windows := []Window{{Name: "before", From: time.Second, To: 3 * time.Second, Answered: true}, {Name: "during", From: 3 * time.Second, To: 5 * time.Second}}
	col := newCollector(regions, Profile{Hold: 6 * time.Second, HoldRate: 1}, time.Second, windows)
	now := time.Now()
	col.start = now
	send := func(at time.Duration, region string, code uint16, latency time.Duration) {
		col.add(&vegeta.Result{Code: code, Timestamp: now.Add(at), Latency: latency,
			URL: "http://edge.test/api/products/p#" + tag(FlowProduct, region), Method: http.MethodGet})
	}
	send(500*time.Millisecond, "westeurope", 200, time.Hour) // before every window
	send(time.Second, "westeurope", 200, 10*time.Millisecond)
	send(2*time.Second, "westeurope", 200, 20*time.Millisecond)
	send(2900*time.Millisecond, "westeurope", 200, 5*time.Second) // sent before, answered after: in neither
	send(3*time.Second, "westeurope", 503, 2*time.Second)         // the first moment of "during"
	send(4*time.Second, "eastus", 200, 30*time.Millisecond)
	send(5*time.Second, "eastus", 200, time.Hour) // after every window
	rep := &Report{}
	col.fill(rep)
	if len(rep.Windows) != 2 || rep.Windows[0].Name != "before" || rep.Windows[1].Name != "during" ||
		rep.Windows[1].FromSeconds != 3 || rep.Windows[1].ToSeconds != 5 {
		t.Fatalf("windows = %+v", rep.Windows)
	}
	cell := func(w WindowStats, region string) Cell {
		for _, c := range w.Cells {
			if c.Flow == FlowProduct && c.Region == region {
				return c
			}
		}
		t.Fatalf("window %s has no product cell for %s: %+v", w.Name, region, w.Cells)
		return Cell{}
	}
	for _, tt := range []struct {
		w              int
		region         string
		requests, errs int64
		maxP99         time.Duration
	}{
		{0, "westeurope", 2, 0, 21 * time.Millisecond},
		{0, "eastus", 0, 0, 0},
		{1, "westeurope", 1, 1, 2050 * time.Millisecond},
		{1, "eastus", 1, 0, 31 * time.Millisecond},
	} {
		c := cell(rep.Windows[tt.w], tt.region)
		p99 := time.Duration(c.P99Ms * float64(time.Millisecond))
		if c.Requests != tt.requests || c.Errors != tt.errs || p99 > tt.maxP99 || (tt.requests > 0 && p99 < tt.maxP99/2) {
			t.Errorf("%s in %s = %d requests, %d errors, p99 %s; want %d, %d, p99 about %s",
				rep.Windows[tt.w].Name, tt.region, c.Requests, c.Errors, p99, tt.requests, tt.errs, tt.maxP99)
		}
	}
	if got := len(rep.Windows[0].Cells); got != len(Flows())*len(regions) {
		t.Errorf("a window has %d cells, want one for every flow and region (%d)", got, len(Flows())*len(regions))
	}
}

func TestTransportKind(t *testing.T) {
	tests := map[string]string{
		`Get "http://127.0.0.1:1/api/products": dial tcp 127.0.0.1:1: connect: connection refused`:               "refused",
		`Post "http://x/api/orders": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`: "timeout",
		`Get "http://x/": read tcp 127.0.0.1:5->127.0.0.1:6: read: connection reset by peer`:                     "reset",
		`Get "http://x/": EOF`: "eof",
		`Get "http://nowhere.invalid/": dial tcp: lookup nowhere.invalid: no such host`: "dns",
		`something else`: "other",
	}
	for in, want := range tests {
		if got := transportKind(in); got != want {
			t.Errorf("transportKind(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestYScale(t *testing.T) {
	tests := []struct {
		maxY      float64
		n         int
		top, step float64
	}{
		{252, 5, 300, 100},
		{240, 5, 250, 50},
		{0.9, 5, 1, 0.2},
		{457, 4, 600, 200},
		{380, 4, 400, 100},
		{1000, 5, 1000, 200},
		{0, 5, 1, 0.2},
	}
	for _, tt := range tests {
		top, step := yScale(tt.maxY, tt.n)
		if math.Abs(top-tt.top) > 1e-9 || math.Abs(step-tt.step) > 1e-9 {
			t.Errorf("yScale(%v, %d) = %v, %v; want %v, %v", tt.maxY, tt.n, top, step, tt.top, tt.step)
		}
		if top < tt.maxY {
			t.Errorf("yScale(%v, %d): top %v below the largest value", tt.maxY, tt.n, top)
		}
	}
}
