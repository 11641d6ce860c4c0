package loadtest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Flow is one kind of request a shopper makes.
type Flow string

const (
	FlowBrowse   Flow = "browse"   // GET /api/products: the first page, a category, or a later page
	FlowProduct  Flow = "product"  // GET /api/products/{id}
	FlowComment  Flow = "comment"  // POST /api/products/{id}/comments with an Idempotency-Key
	FlowCart     Flow = "cart"     // PUT /api/cart/items/{sku}
	FlowCheckout Flow = "checkout" // POST /api/orders with a fresh Idempotency-Key
)

// Flows returns every flow, in the order reports list them.
func Flows() []Flow { return slices.Clone(flows[:]) }

var flows = [...]Flow{FlowBrowse, FlowProduct, FlowComment, FlowCart, FlowCheckout}

// idempotent reports whether the flow's requests are safe (GET) or carry
// an Idempotency-Key, so that the edge may retry them and promises that they
// never fail with a 5xx or a lost connection.
func (f Flow) idempotent() bool { return f != FlowCart }

// Mix weighs the flows: a request is of a flow with probability its
// weight over the sum of the weights. Weights are relative, not percents.
type Mix struct {
	Browse   float64 `json:"browse"`
	Product  float64 `json:"product"`
	Comment  float64 `json:"comment"`
	Cart     float64 `json:"cart"`
	Checkout float64 `json:"checkout"`
}

// DefaultMix is the traffic of an ordinary busy hour: mostly browsing,
// one request in ten a checkout.
func DefaultMix() Mix { return Mix{Browse: 40, Product: 35, Comment: 5, Cart: 10, Checkout: 10} }

// DefaultSpikeMix is the traffic of a launch: shoppers refresh the launch
// product pages and try to buy.
func DefaultSpikeMix() Mix { return Mix{Product: 45, Cart: 10, Checkout: 45} }

// DefaultRegions are the client regions of a run that names none.
func DefaultRegions() []string { return []string{"westeurope", "northeurope", "eastus"} }

func (m Mix) weights() []float64 {
	return []float64{m.Browse, m.Product, m.Comment, m.Cart, m.Checkout}
}

func (m Mix) validate(name string) error {
	var sum float64
	for i, w := range m.weights() {
		if w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			return fmt.Errorf("%s: weight of %s must be a finite number >= 0, got %v", name, Flows()[i], w)
		}
		sum += w
	}
	if sum <= 0 {
		return fmt.Errorf("%s: at least one weight must be positive", name)
	}
	return nil
}

// Config configures a [Runner]. Edge, Rate, Tokens and a non-zero profile
// (Ramp+Hold+Spike) are required; every other zero field has the default
// its comment names.
type Config struct {
	// Edge is the base URL every request goes to, e.g.
	// http://127.0.0.1:8080. Its path, if any, prefixes the API paths.
	Edge string
	// Regions are the client regions, sent as X-Client-Region in turn so
	// each gets the same share of the requests; empty: DefaultRegions.
	Regions []string

	// Rate is the peak rate in requests per second, reached at the end of
	// the ramp and kept during the hold.
	Rate float64
	// Ramp is how long the rate takes to grow from 0 to Rate; zero: no ramp.
	Ramp time.Duration
	// Hold is how long the rate stays at Rate; zero: no hold.
	Hold time.Duration
	// Spike is how long the launch spike lasts after the hold; during it
	// product pages, carts and checkouts are of the launch products only
	// and the mix is SpikeMix. Zero: no spike.
	Spike time.Duration
	// SpikeRate is the rate during the spike; zero: twice Rate.
	SpikeRate float64
	// SpikeStock, when positive, is the stock every launch SKU is set to
	// before the run (through the admin inventory API); zero leaves the
	// stock as it is. Either way the stock is read before and after.
	SpikeStock int

	// Conservation also reads the stock of every SKU of the catalog before
	// the load, not only the launch SKUs', and accounts afterwards for
	// every SKU the run's checkouts named (Report.Conservation). It costs
	// two admin reads per SKU, 16 at a time, which the edge's per-client
	// limit must let through. False: the launch SKUs only.
	Conservation bool

	// Users is how many distinct shoppers send the comments, carts and
	// checkouts; checkouts take them in turn so no shopper exceeds the
	// per-user order admission. Zero: 500.
	Users int
	// Mix weighs the flows during the ramp and the hold; zero: DefaultMix.
	Mix Mix
	// SpikeMix weighs the flows during the spike; zero: DefaultSpikeMix.
	SpikeMix Mix

	// Tokens returns a bearer token for a shopper (sub) or, with admin
	// set, for an administrator. It is called once per subject, from
	// several goroutines. Required.
	Tokens func(sub string, admin bool) (string, error)

	// Windows are named stretches of the schedule whose answers are also
	// summed apart, by flow and client region (Report.Windows): the
	// seconds before a fault and the seconds it lasts, for example. A
	// request counts in every window holding the moment it was sent.
	// At most maxWindows; empty: none.
	Windows []Window

	// Started is called once when the schedule starts, after the catalog
	// and the stock are read and before the first request; nil: not
	// called. A caller timing events within the load counts from then.
	Started func()

	// Progress receives one line of plain text per ProgressEvery while the
	// load runs; nil: none.
	Progress io.Writer
	// ProgressEvery is the time between progress lines; zero: 1 s.
	ProgressEvery time.Duration

	// Timeout bounds each request; zero: 30 s, as patient as a shopper
	// (the system may take seconds through a leader election).
	Timeout time.Duration
	// SettleTimeout bounds how long accepted orders are followed after
	// the load until they are confirmed or rejected; zero: 30 s.
	SettleTimeout time.Duration
	// MaxWorkers caps the requests in flight at once. When the shop is so
	// slow that every worker waits, the offered rate falls behind the
	// profile (the report shows the shortfall). Zero: 1024.
	MaxWorkers int
	// Client sends every request; nil: a fresh client. Timeout applies
	// whatever the client's own timeout.
	Client *http.Client
	// TLS verifies an https:// edge when Client is nil (its RootCAs: the
	// deployment's CA); nil: the system's roots.
	TLS *tls.Config
	// Now stamps the report's start and end; nil: time.Now. The schedule
	// itself always follows the real clock.
	Now func() time.Time
}

// Window is a named stretch of the schedule, From (inclusive) to To
// (exclusive), counted from the schedule's start. It holds the requests
// sent within it; with Answered, only those also answered before To (the
// seconds before a fault, without the requests the fault caught in
// flight).
type Window struct {
	Name     string
	From, To time.Duration
	Answered bool
}

// maxWindows bounds Config.Windows: each holds a latency histogram for
// every flow and client region.
const maxWindows = 8

// withDefaults validates cfg and fills in its defaults.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if u, err := url.Parse(cfg.Edge); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		bad("edge must be an http or https base URL such as http://127.0.0.1:8080, got %q", cfg.Edge)
	}
	cfg.Edge = strings.TrimRight(cfg.Edge, "/")
	if len(cfg.Regions) == 0 {
		cfg.Regions = DefaultRegions()
	}
	cfg.Regions = slices.Clone(cfg.Regions)
	for i, r := range cfg.Regions {
		if r == "" || strings.ContainsAny(r, " \t\r\n,") {
			bad("regions[%d] %q is not a region name", i, r)
		} else if slices.Index(cfg.Regions, r) != i {
			bad("regions: %q is listed twice", r)
		}
	}
	if !(cfg.Rate > 0) || math.IsInf(cfg.Rate, 0) {
		bad("rate must be a positive number of requests per second, got %v", cfg.Rate)
	}
	if cfg.Ramp < 0 || cfg.Hold < 0 || cfg.Spike < 0 {
		bad("ramp, hold and spike must not be negative")
	} else if cfg.Ramp+cfg.Hold+cfg.Spike <= 0 {
		bad("ramp, hold and spike are all zero: nothing to run")
	}
	if cfg.SpikeRate < 0 || math.IsNaN(cfg.SpikeRate) || math.IsInf(cfg.SpikeRate, 0) {
		bad("spike rate must be a number >= 0, got %v", cfg.SpikeRate)
	}
	if cfg.SpikeRate == 0 {
		cfg.SpikeRate = 2 * cfg.Rate
	}
	if cfg.SpikeStock < 0 || cfg.SpikeStock > 1_000_000 {
		bad("spike stock must be between 0 and 1000000, got %d", cfg.SpikeStock)
	}
	if cfg.Users < 0 || cfg.Users > 1_000_000 {
		bad("users must be between 0 and 1000000, got %d", cfg.Users)
	}
	if cfg.Users == 0 {
		cfg.Users = 500
	}
	if cfg.Mix == (Mix{}) {
		cfg.Mix = DefaultMix()
	}
	if cfg.SpikeMix == (Mix{}) {
		cfg.SpikeMix = DefaultSpikeMix()
	}
	if err := cfg.Mix.validate("mix"); err != nil {
		errs = append(errs, err)
	}
	if err := cfg.SpikeMix.validate("spike mix"); err != nil {
		errs = append(errs, err)
	}
	if cfg.Tokens == nil {
		bad("tokens is required")
	}
	if len(cfg.Windows) > maxWindows {
		bad("at most %d windows, got %d", maxWindows, len(cfg.Windows))
	}
	cfg.Windows = slices.Clone(cfg.Windows)
	for i, w := range cfg.Windows {
		switch {
		case w.Name == "" || len(w.Name) > 64:
			bad("windows[%d]: a name of 1 to 64 bytes is required", i)
		case slices.IndexFunc(cfg.Windows, func(o Window) bool { return o.Name == w.Name }) != i:
			bad("windows: %q is listed twice", w.Name)
		case w.From < 0 || w.To <= w.From:
			bad("windows[%d] %q: from (%s) must be >= 0 and before to (%s)", i, w.Name, w.From, w.To)
		}
	}
	if cfg.ProgressEvery < 0 || cfg.Timeout < 0 || cfg.SettleTimeout < 0 {
		bad("progress interval, timeout and settle timeout must not be negative")
	}
	if cfg.ProgressEvery == 0 {
		cfg.ProgressEvery = time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.SettleTimeout == 0 {
		cfg.SettleTimeout = 30 * time.Second
	}
	if cfg.MaxWorkers < 0 {
		bad("max workers must not be negative, got %d", cfg.MaxWorkers)
	}
	if cfg.MaxWorkers == 0 {
		cfg.MaxWorkers = 1024
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: cfg.MaxWorkers,
			IdleConnTimeout:     90 * time.Second,
			TLSClientConfig:     cfg.TLS,
		}}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("loadtest: %w", errors.Join(errs...))
	}
	return cfg, nil
}

// profile is the schedule cfg asks for.
func (cfg Config) profile() Profile {
	return Profile{Ramp: cfg.Ramp, Hold: cfg.Hold, HoldRate: cfg.Rate, Spike: cfg.Spike, SpikeRate: cfg.SpikeRate}
}
