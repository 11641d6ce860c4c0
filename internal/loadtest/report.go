package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// Report is what a run did: the load offered, the answers by flow and by
// client region, where they were served, the orders and the launch stock.
// Latencies are in milliseconds, within the precision of [Histogram].
type Report struct {
	Edge    string        `json:"edge"`
	Regions []string      `json:"regions"` // client regions, as configured
	Started time.Time     `json:"started"`
	Ended   time.Time     `json:"ended"`
	Profile ProfileReport `json:"profile"`
	// Error says why the run could not be made (the edge could not be
	// reached, the catalog read, the stock set); the rest of the report is
	// then mostly empty.
	Error string `json:"error,omitempty"`
	// Interrupted is set when the run was cancelled before its end.
	Interrupted bool `json:"interrupted,omitempty"`

	// Planned is how many requests the profile asks for; Total.Requests
	// falls short of it when the workers could not keep up.
	Planned int64 `json:"planned"`
	// LoadSeconds is the wall time from the first request sent to the
	// last answer received.
	LoadSeconds float64 `json:"loadSeconds"`

	Total         Stats         `json:"total"`
	Flows         []FlowStats   `json:"flows"`         // every flow, in Flows order
	ClientRegions []RegionStats `json:"clientRegions"` // every client region, in configured order
	Cells         []Cell        `json:"cells"`         // every flow for every client region

	// ServedRegions counts answers by X-Served-Region ("none" when the
	// answer had none, as the edge's own refusals and transport errors).
	ServedRegions map[string]int64 `json:"servedRegions"`
	// ServedByClientRegion breaks ServedRegions down by client region.
	// Answers without a served-by region (no answer, or one from no stamp)
	// count under NotServed.
	ServedByClientRegion map[string]map[string]int64 `json:"servedByClientRegion"`
	// ServedReleases counts answers by X-Served-Release, the release of
	// the stamp that answered ("none" when the answer had none).
	ServedReleases map[string]int64 `json:"servedReleases"`

	RateLimited        RateLimited        `json:"rateLimited"`
	IdempotentFailures IdempotentFailures `json:"idempotentFailures"`
	Orders             Orders             `json:"orders"`
	// LaunchStock checks every launch SKU for oversell.
	LaunchStock []StockCheck `json:"launchStock"`
	// Oversold is set when any launch SKU was oversold.
	Oversold bool `json:"oversold"`
	// Conservation accounts for every SKU the run's checkouts named,
	// launch SKUs or not; nil unless Config.Conservation.
	Conservation *Conservation `json:"conservation,omitempty"`

	// Windows are Config.Windows' answers by flow and client region, in
	// their configured order.
	Windows []WindowStats `json:"windows,omitempty"`

	// Timeline has one entry per second of the schedule, by the second in
	// which each request was sent.
	Timeline []Second `json:"timeline"`

	// Warnings are things that make the numbers less trustworthy, such as
	// a token that could not be minted or an answer that did not decode.
	Warnings []string `json:"warnings,omitempty"`
}

// ProfileReport is the configuration a run was made with.
type ProfileReport struct {
	Rate                 float64 `json:"rate"`
	RampSeconds          float64 `json:"rampSeconds"`
	HoldSeconds          float64 `json:"holdSeconds"`
	SpikeSeconds         float64 `json:"spikeSeconds"`
	SpikeRate            float64 `json:"spikeRate"`
	SpikeStock           int     `json:"spikeStock"`
	Users                int     `json:"users"`
	Mix                  Mix     `json:"mix"`
	SpikeMix             Mix     `json:"spikeMix"`
	TimeoutSeconds       float64 `json:"timeoutSeconds"`
	SettleTimeoutSeconds float64 `json:"settleTimeoutSeconds"`
}

// Stats sums a set of answers. An answer is a success when its status is
// 2xx; anything else, a transport error included, is an error.
type Stats struct {
	Requests  int64 `json:"requests"`
	Successes int64 `json:"successes"`
	Errors    int64 `json:"errors"`
	// Codes counts answers by status code ("200", "503") or, for requests
	// that got no answer, by "error:<kind>" (timeout, refused, reset, eof,
	// dns, other).
	Codes   map[string]int64 `json:"codes"`
	Latency Latency          `json:"latency"`
}

// Latency summarises latencies in milliseconds.
type Latency struct {
	P50Ms  float64 `json:"p50Ms"`
	P95Ms  float64 `json:"p95Ms"`
	P99Ms  float64 `json:"p99Ms"`
	MaxMs  float64 `json:"maxMs"`
	MeanMs float64 `json:"meanMs"`
}

// FlowStats is the answers of one flow, with their latency histogram.
type FlowStats struct {
	Flow Flow `json:"flow"`
	Stats
	Histogram []Bin `json:"histogram"`
}

// RegionStats is the answers to the clients of one region.
type RegionStats struct {
	Region string `json:"region"`
	Stats
}

// Cell is one flow seen from one client region.
type Cell struct {
	Flow     Flow    `json:"flow"`
	Region   string  `json:"region"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	P99Ms    float64 `json:"p99Ms"`
}

// WindowStats is one window of the schedule: the requests sent from
// FromSeconds to ToSeconds, every flow for every client region.
type WindowStats struct {
	Name        string  `json:"name"`
	FromSeconds float64 `json:"fromSeconds"`
	ToSeconds   float64 `json:"toSeconds"`
	Cells       []Cell  `json:"cells"`
}

// RateLimited counts 429 answers by who refused: the edge's per-client
// limit (no X-Edge-Pop on the answer: a run against `contoso up` needs
// --client-rate 1e9 --client-burst 1000000000) or a stamp's order
// admission (per shopper, or the store being busy).
type RateLimited struct {
	Edge      int64 `json:"edge"`
	Admission int64 `json:"admission"`
}

// IdempotentFailures are safe or keyed requests (GET, or with an
// Idempotency-Key) that ended in a 5xx or without an answer: the edge
// retries those elsewhere and promises there are none.
type IdempotentFailures struct {
	Count   int64           `json:"count"`
	ByFlow  map[Flow]int64  `json:"byFlow"`
	Samples []FailureSample `json:"samples"` // the first few
}

// FailureSample describes one failed request.
type FailureSample struct {
	Flow         Flow   `json:"flow"`
	Method       string `json:"method"`
	Path         string `json:"path"`
	ClientRegion string `json:"clientRegion"`
	Status       string `json:"status"` // as in Stats.Codes
	ServedRegion string `json:"servedRegion,omitempty"`
	RequestID    string `json:"requestId,omitempty"`
	// Problem is the answer's problem title and detail, when it came as
	// problem+json: why the edge or the stamp refused it.
	Problem string `json:"problem,omitempty"`
	// Sent is when the request was sent, from the start of the load.
	Sent time.Duration `json:"sentNs"`
}

// Orders follows the checkouts: every accepted order (202, or 200 for a
// replay) is polled after the load until it is confirmed or rejected, or
// the settle timeout passes (unsettled).
type Orders struct {
	Attempted     int64            `json:"attempted"` // checkout requests sent
	Accepted      int64            `json:"accepted"`
	Confirmed     int64            `json:"confirmed"`
	Rejected      int64            `json:"rejected"`
	Unsettled     int64            `json:"unsettled"`
	RejectReasons map[string]int64 `json:"rejectReasons"`
	// SettleSeconds is how long following the orders took.
	SettleSeconds float64 `json:"settleSeconds"`
	// UnsettledIDs are the first few orders that did not settle.
	UnsettledIDs []string `json:"unsettledIds,omitempty"`
}

// StockCheck is the oversell check of one launch SKU. Initial is the
// available stock before the load; Confirmed the units of the run's
// confirmed orders; Available and Held are read back after the orders
// settled. The SKU is oversold when Confirmed > Initial or Available < 0.
// Unaccounted is Initial + InitialHeld − Confirmed − Available − Held:
// zero when every unit is either sold to the run or still in stock (other
// shoppers buying during the run also make it positive).
type StockCheck struct {
	SKU         string `json:"sku"`
	Initial     int    `json:"initial"`
	InitialHeld int    `json:"initialHeld"`
	Confirmed   int    `json:"confirmed"`
	Available   int    `json:"available"`
	Held        int    `json:"held"`
	Unaccounted int    `json:"unaccounted"`
	Oversold    bool   `json:"oversold"`
	// ReadError is set when the stock could not be read back; Available,
	// Held and Unaccounted are then zero and only Confirmed > Initial counts.
	ReadError string `json:"readError,omitempty"`
	// Uncertain, in Report.Conservation, is the units of this SKU in the
	// run's checkouts whose fate the run does not know when the stock is
	// read back: orders not final yet, and checkouts that got no answer, a
	// 5xx or an accepted answer that did not decode. Each may hold or have
	// sold its units without counting in Confirmed, so Unaccounted from 0
	// to Uncertain loses no unit for sure.
	Uncertain int `json:"uncertain,omitempty"`
}

// Conservation accounts for the units of every SKU the run's checkouts
// named (Config.Conservation): its stock before the load, the units of
// the run's confirmed orders, and its stock read back after the orders
// settled. No unit was lost or made up when Initial + InitialHeld =
// Confirmed + Available + Held, Unaccounted 0.
type Conservation struct {
	SKUs []StockCheck `json:"skus"` // by SKU
	// Rereads counts the rounds in which some SKUs were read back again
	// because they showed more units than the run left: a confirmed
	// order's hold is released just after its confirmation.
	Rereads int `json:"rereads"`
}

// Second is one second of the timeline.
type Second struct {
	Second     int                `json:"second"`     // since the start of the schedule
	TargetRate float64            `json:"targetRate"` // the profile's rate in the middle of the second
	Requests   int64              `json:"requests"`
	Errors     int64              `json:"errors"`
	Flows      map[Flow]FlowPoint `json:"flows"`
}

// FlowPoint is one flow in one second. P99Ms is zero when the answers of
// the second arrived too late to be measured (after the second closed).
type FlowPoint struct {
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	P99Ms    float64 `json:"p99Ms"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ms converts d to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// latencyOf summarises h.
func latencyOf(h *Histogram) Latency {
	return Latency{
		P50Ms:  ms(h.Quantile(0.50)),
		P95Ms:  ms(h.Quantile(0.95)),
		P99Ms:  ms(h.Quantile(0.99)),
		MaxMs:  ms(h.Max()),
		MeanMs: ms(h.Mean()),
	}
}

// NotServed is the served region of a request no stamp answered.
const NotServed = "none"

// String describes the failure on one line: when it was sent, what, from
// where, its status and why, and who served it.
func (s FailureSample) String() string {
	why := s.Status
	if s.Problem != "" {
		why += " " + s.Problem
	}
	return fmt.Sprintf("at +%s %s %s from %s: %s (served by %q, request %s)",
		s.Sent.Round(time.Millisecond), s.Method, s.Path, s.ClientRegion, why, s.ServedRegion, s.RequestID)
}
