package loadtest

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// maxSamples bounds the failure samples and unsettled ids a report lists.
const maxSamples = 20

// acc sums answers into Stats.
type acc struct {
	requests, successes, errors int64
	codes                       map[string]int64
	hist                        Histogram
}

func (a *acc) add(code string, ok bool, latency time.Duration) {
	a.requests++
	if ok {
		a.successes++
	} else {
		a.errors++
	}
	if a.codes == nil {
		a.codes = map[string]int64{}
	}
	a.codes[code]++
	a.hist.Record(latency)
}

func (a *acc) stats() Stats {
	return Stats{Requests: a.requests, Successes: a.successes, Errors: a.errors, Codes: a.codes, Latency: latencyOf(&a.hist)}
}

// order is an accepted order the runner follows.
type order struct {
	id, user, region string
	lines            []orderLine
	status, reason   string
}

type orderLine struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// final reports whether no further change will happen to the order.
func (o *order) final() bool { return o.status == "confirmed" || o.status == "rejected" }

// openSecond holds the latencies of one second of the timeline until the
// second closes.
type openSecond map[Flow]*Histogram

// collector classifies results. It is used by one goroutine.
type collector struct {
	regions []string
	profile Profile
	start   time.Time
	// window is how many seconds a timeline second stays open for late
	// answers: the request timeout plus two.
	window int

	total    acc
	flows    map[Flow]*acc
	clients  map[string]*acc
	cells    cellAccs
	windows  []Window
	inWindow []cellAccs // by window, as windows
	served   map[string]int64
	servedBy map[string]map[string]int64
	releases map[string]int64 // answers by X-Served-Release
	limited  RateLimited
	idem     IdempotentFailures

	attempted int64
	// named counts, for every SKU a checkout named, the units of the
	// checkouts whose outcome is unknown: no answer, a 5xx, or an accepted
	// answer that did not decode. Any of them may have made an order.
	named          map[string]int
	orders         map[string]*order
	orderOrder     []string // ids in the order they were accepted
	undecodedOrder int64

	timeline []Second
	open     map[int]openSecond
	newest   int // the newest second seen

	first, last time.Time // first request sent, last answer received

	// interval is what happened since the last progress line.
	interval struct {
		requests, errors, limited int64
		hist                      Histogram
		served                    map[string]int64
	}
}

// cellAccs sums answers by flow and client region.
type cellAccs map[Flow]map[string]*acc

func newCellAccs(regions []string) cellAccs {
	m := cellAccs{}
	for _, f := range Flows() {
		m[f] = map[string]*acc{}
		for _, r := range regions {
			m[f][r] = &acc{}
		}
	}
	return m
}

// list is every cell, flows in Flows order, regions in regions order.
func (m cellAccs) list(regions []string) []Cell {
	cells := make([]Cell, 0, len(m)*len(regions))
	for _, f := range Flows() {
		for _, r := range regions {
			a := m[f][r]
			cells = append(cells, Cell{Flow: f, Region: r, Requests: a.requests, Errors: a.errors, P99Ms: ms(a.hist.Quantile(0.99))})
		}
	}
	return cells
}

func newCollector(regions []string, p Profile, timeout time.Duration, windows []Window) *collector {
	c := &collector{
		regions:  regions,
		profile:  p,
		window:   int(math.Ceil(timeout.Seconds())) + 2,
		flows:    map[Flow]*acc{},
		clients:  map[string]*acc{},
		cells:    newCellAccs(regions),
		windows:  windows,
		served:   map[string]int64{},
		servedBy: map[string]map[string]int64{},
		releases: map[string]int64{},
		orders:   map[string]*order{},
		named:    map[string]int{},
		open:     map[int]openSecond{},
		idem:     IdempotentFailures{ByFlow: map[Flow]int64{}, Samples: []FailureSample{}},
	}
	for _, f := range Flows() {
		c.flows[f] = &acc{}
	}
	for range windows {
		c.inWindow = append(c.inWindow, newCellAccs(regions))
	}
	for _, r := range regions {
		c.clients[r] = &acc{}
		c.servedBy[r] = map[string]int64{}
	}
	c.interval.served = map[string]int64{}
	n := int(math.Ceil(p.Duration().Seconds()))
	c.timeline = make([]Second, max(n, 1))
	for i := range c.timeline {
		mid := time.Duration(i)*time.Second + time.Second/2
		c.timeline[i] = Second{Second: i, TargetRate: p.Rate(min(mid, p.Duration()-1)), Flows: map[Flow]FlowPoint{}}
	}
	return c
}

// transportKind names the kind of a transport error.
func transportKind(err string) string {
	e := strings.ToLower(err)
	switch {
	case strings.Contains(e, "timeout") || strings.Contains(e, "deadline exceeded"):
		return "timeout"
	case strings.Contains(e, "connection refused"):
		return "refused"
	case strings.Contains(e, "connection reset") || strings.Contains(e, "broken pipe"):
		return "reset"
	case strings.Contains(e, "eof"):
		return "eof"
	case strings.Contains(e, "no such host"):
		return "dns"
	}
	return "other"
}

// add classifies one result.
func (c *collector) add(res *vegeta.Result) {
	flow, region := untag(res.URL)
	if _, ok := c.flows[flow]; !ok {
		flow = "" // not one of ours; counted in the totals only
	}
	if _, ok := c.clients[region]; !ok {
		region = ""
	}
	code := strconv.Itoa(int(res.Code))
	if res.Code == 0 {
		code = "error:" + transportKind(res.Error)
	}
	ok := res.Code >= 200 && res.Code <= 299
	served := res.Headers.Get(headerServedRegion)
	if served == "" {
		served = NotServed
	}

	if c.first.IsZero() || res.Timestamp.Before(c.first) {
		c.first = res.Timestamp
	}
	if end := res.End(); end.After(c.last) {
		c.last = end
	}

	c.total.add(code, ok, res.Latency)
	if flow != "" {
		c.flows[flow].add(code, ok, res.Latency)
	}
	if region != "" {
		c.clients[region].add(code, ok, res.Latency)
		c.servedBy[region][served]++
	}
	if flow != "" && region != "" {
		c.cells[flow][region].add(code, ok, res.Latency)
		sent := res.Timestamp.Sub(c.start)
		for i, w := range c.windows {
			if sent >= w.From && sent < w.To && (!w.Answered || sent+res.Latency < w.To) {
				c.inWindow[i][flow][region].add(code, ok, res.Latency)
			}
		}
	}
	c.served[served]++
	release := res.Headers.Get(headerServedRelease)
	if release == "" {
		release = "none"
	}
	c.releases[release]++
	c.timelineAdd(res, flow, ok)

	c.interval.requests++
	if !ok {
		c.interval.errors++
	}
	c.interval.hist.Record(res.Latency)
	c.interval.served[served]++

	if res.Code == 429 {
		c.interval.limited++
		if res.Headers.Get(headerEdgePop) == "" {
			c.limited.Edge++
		} else {
			c.limited.Admission++
		}
	}
	if flow != "" && flow.idempotent() && (res.Code == 0 || res.Code >= 500) {
		c.idem.Count++
		c.idem.ByFlow[flow]++
		if len(c.idem.Samples) < maxSamples {
			path := res.URL
			if u, err := url.Parse(res.URL); err == nil {
				path = u.RequestURI()
			}
			c.idem.Samples = append(c.idem.Samples, FailureSample{
				Flow: flow, Method: res.Method, Path: path, ClientRegion: region, Status: code,
				ServedRegion: res.Headers.Get(headerServedRegion), RequestID: res.Headers.Get(headerRequestID),
				Problem: problemOf(res.Body), Sent: res.Timestamp.Sub(c.start),
			})
		}
	}
	if flow == FlowCheckout {
		c.attempted++
		unknown := res.Code == 0 || res.Code >= 500
		if res.Code == 200 || res.Code == 202 {
			unknown = !c.addOrder(res.Body, region)
		}
		for _, sku := range taggedSKUs(res.URL) {
			c.named[sku] += 0
			if unknown {
				c.named[sku] += checkoutQuantity
			}
		}
	}
}

// addOrder records an accepted order from the body of its answer, and
// reports whether the body decoded as one.
func (c *collector) addOrder(body []byte, region string) bool {
	var o struct {
		ID     string      `json:"id"`
		User   string      `json:"user"`
		Items  []orderLine `json:"items"`
		Status string      `json:"status"`
		Reason string      `json:"reason"`
	}
	if err := json.Unmarshal(body, &o); err != nil || o.ID == "" {
		c.undecodedOrder++
		return false
	}
	if _, dup := c.orders[o.ID]; dup {
		return true
	}
	c.orders[o.ID] = &order{id: o.ID, user: o.User, region: region, lines: o.Items, status: o.Status, reason: o.Reason}
	c.orderOrder = append(c.orderOrder, o.ID)
	return true
}

// timelineAdd counts a result in the second it was sent in, and closes
// the seconds that can no longer receive answers.
func (c *collector) timelineAdd(res *vegeta.Result, flow Flow, ok bool) {
	s := int(res.Timestamp.Sub(c.start) / time.Second)
	s = min(max(s, 0), len(c.timeline)-1)
	sec := &c.timeline[s]
	sec.Requests++
	if !ok {
		sec.Errors++
	}
	if flow != "" {
		pt := sec.Flows[flow]
		pt.Requests++
		if !ok {
			pt.Errors++
		}
		sec.Flows[flow] = pt
		if s > c.newest-c.window { // still open
			o := c.open[s]
			if o == nil {
				o = openSecond{}
				c.open[s] = o
			}
			h := o[flow]
			if h == nil {
				h = &Histogram{}
				o[flow] = h
			}
			h.Record(res.Latency)
		}
	}
	if s > c.newest {
		c.newest = s
		for old := range c.open {
			if old <= c.newest-c.window {
				c.closeSecond(old)
			}
		}
	}
}

// closeSecond computes the p99 of an open second and forgets its
// latencies.
func (c *collector) closeSecond(s int) {
	for f, h := range c.open[s] {
		pt := c.timeline[s].Flows[f]
		pt.P99Ms = ms(h.Quantile(0.99))
		c.timeline[s].Flows[f] = pt
	}
	delete(c.open, s)
}

// progressLine describes the interval since the last line and starts the
// next one.
func (c *collector) progressLine(elapsed, every time.Duration) string {
	iv := &c.interval
	var b strings.Builder
	fmt.Fprintf(&b, "%7.1fs  target %6.1f/s  achieved %6.1f/s  errors %d", elapsed.Seconds(),
		c.profile.Rate(elapsed), float64(iv.requests)/every.Seconds(), iv.errors)
	if iv.limited > 0 {
		fmt.Fprintf(&b, " (429: %d)", iv.limited)
	}
	fmt.Fprintf(&b, "  p99 %.1fms  served", ms(iv.hist.Quantile(0.99)))
	for _, r := range orderedKeys(iv.served, c.regions) {
		fmt.Fprintf(&b, " %s=%d", r, iv.served[r])
	}
	if len(iv.served) == 0 {
		b.WriteString(" -")
	}
	iv.requests, iv.errors, iv.limited = 0, 0, 0
	iv.hist.Reset()
	clear(iv.served)
	return b.String()
}

// orderedKeys returns the keys of m: first those in preferred, in that
// order, then the others sorted.
func orderedKeys[V any](m map[string]V, preferred []string) []string {
	var keys, rest []string
	for _, k := range preferred {
		if _, ok := m[k]; ok {
			keys = append(keys, k)
		}
	}
	for k := range m {
		if !slices.Contains(preferred, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	return append(keys, rest...)
}

// fill writes what the collector saw into rep.
func (c *collector) fill(rep *Report) {
	for s := range c.open {
		c.closeSecond(s)
	}
	rep.Total = c.total.stats()
	for _, f := range Flows() {
		a := c.flows[f]
		rep.Flows = append(rep.Flows, FlowStats{Flow: f, Stats: a.stats(), Histogram: a.hist.Bins()})
	}
	rep.Cells = c.cells.list(c.regions)
	for i, w := range c.windows {
		rep.Windows = append(rep.Windows, WindowStats{Name: w.Name, FromSeconds: w.From.Seconds(), ToSeconds: w.To.Seconds(),
			Cells: c.inWindow[i].list(c.regions)})
	}
	for _, r := range c.regions {
		rep.ClientRegions = append(rep.ClientRegions, RegionStats{Region: r, Stats: c.clients[r].stats()})
	}
	rep.ServedRegions = c.served
	rep.ServedByClientRegion = c.servedBy
	rep.ServedReleases = c.releases
	rep.RateLimited = c.limited
	rep.IdempotentFailures = c.idem
	rep.Timeline = c.timeline
	if !c.first.IsZero() {
		rep.LoadSeconds = c.last.Sub(c.first).Seconds()
	}
	rep.Orders.Attempted = c.attempted
	if c.undecodedOrder > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d accepted checkouts had a body that did not decode as an order; they are not followed", c.undecodedOrder))
	}
}

// problemOf is the title and detail of a problem+json body, "" for any
// other body.
func problemOf(body []byte) string {
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &p) != nil || p.Title == "" {
		return ""
	}
	if p.Detail == "" {
		return p.Title
	}
	return p.Title + ": " + p.Detail
}
