package fleet

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/netsim"
	"github.com/contoso/shoes/internal/shop"
)

// maxReplayBody is the largest body of an idempotent request the
// dispatcher keeps to send again to another POP; a larger one is streamed
// and, once sent, never retried.
const maxReplayBody = 1 << 20

// DispatcherConfig configures a Dispatcher.
type DispatcherConfig struct {
	// POPs maps each region with a point of presence to its URL
	// (http://host:port); required.
	POPs map[string]string
	// Order lists the POPs' regions; the first serves clients without
	// X-Client-Region. Nil: the regions of POPs in sorted order.
	Order []string
	// Latency orders the other POPs a client falls back to, nearest to its
	// region first; nil: netsim.DefaultLatencies.
	Latency netsim.LatencyTable
	// SkipFor is how long a POP found dead is passed over before it is
	// tried again; zero: 2 s.
	SkipFor time.Duration
	// Transport reaches the POPs; nil: a clone of http.DefaultTransport
	// without a proxy from the environment.
	Transport http.RoundTripper
	Now       func() time.Time // nil: time.Now
	Logger    *slog.Logger     // nil: discard
}

// Dispatcher is the fleet's one client-facing URL, standing in for geo-DNS
// or anycast: it sends each request, as a transparent reverse proxy, to
// the POP of the client's region (X-Client-Region, which it removes; none:
// the first). When
// that POP's process is gone, the request goes to the next-nearest POP,
// so a lost POP is invisible to clients: a request of which nothing was
// sent is always tried on the next POP, and one that was sent (at least
// its headers) only when it is idempotent: GET, HEAD, or with an
// Idempotency-Key. A POP found dead is passed over for SkipFor.
type Dispatcher struct {
	cfg    DispatcherConfig
	log    *slog.Logger
	pops   map[string]*url.URL
	orders map[string][]string // region → its POP, then the others nearest first
	proxy  *httputil.ReverseProxy
	base   http.RoundTripper

	mu        sync.Mutex           // guards dead and withdrawn
	dead      map[string]time.Time // POP → until when it is passed over
	withdrawn map[string]bool      // POPs taken out of rotation (Withdraw)
}

// NewDispatcher returns a Dispatcher for cfg, or an error when cfg is
// invalid.
func NewDispatcher(cfg DispatcherConfig) (*Dispatcher, error) {
	if len(cfg.POPs) == 0 {
		return nil, errors.New("dispatcher: no POPs")
	}
	d := &Dispatcher{cfg: cfg, log: cfg.Logger, pops: map[string]*url.URL{}, dead: map[string]time.Time{}, withdrawn: map[string]bool{}}
	for region, raw := range cfg.POPs {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("dispatcher: POP %s: URL %q is not http(s)://host:port", region, raw)
		}
		d.pops[region] = u
	}
	if d.cfg.Order == nil {
		d.cfg.Order = slices.Sorted(maps.Keys(cfg.POPs))
	}
	for _, r := range d.cfg.Order {
		if _, ok := d.pops[r]; !ok {
			return nil, fmt.Errorf("dispatcher: region %s in Order has no POP", r)
		}
	}
	if d.cfg.Latency == nil {
		d.cfg.Latency = netsim.DefaultLatencies()
	}
	// Each region's POP order, worked out once: the POPs and the
	// latencies are fixed.
	d.orders = make(map[string][]string, len(d.pops))
	for region := range d.pops {
		out := []string{region}
		for _, r := range d.cfg.Order {
			if r != region {
				out = append(out, r)
			}
		}
		slices.SortStableFunc(out[1:], func(a, b string) int {
			return cmp.Compare(d.cfg.Latency.Between(region, a), d.cfg.Latency.Between(region, b))
		})
		d.orders[region] = out
	}
	d.cfg.SkipFor = cmp.Or(d.cfg.SkipFor, 2*time.Second)
	if d.cfg.Now == nil {
		d.cfg.Now = time.Now
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.base = cfg.Transport
	if d.base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		t.MaxIdleConnsPerHost = 64
		d.base = t
	}
	d.proxy = &httputil.ReverseProxy{
		// The request goes out as it came in, to whichever POP the
		// transport picks, without hop-by-hop headers and without
		// X-Client-Region: the dispatcher has acted on it as geo-DNS
		// would, and a POP serves whoever reaches it (it refuses a
		// region other than its own).
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.Out.Header.Del(edge.HeaderClientRegion) },
		Transport:     failover{d},
		FlushInterval: -1, // stream: every write reaches the client at once
		ErrorLog:      slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client went away
			}
			httpapi.WriteError(w, r, d.log, shop.Unavailable("no point of presence answered", err))
		},
	}
	return d, nil
}

// ServeHTTP dispatches one request.
func (d *Dispatcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	order, err := d.order(r.Header.Get(edge.HeaderClientRegion))
	if err != nil {
		httpapi.WriteError(w, r, d.log, err)
		return
	}
	d.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), orderKey{}, order)))
}

type orderKey struct{}

// order lists the POPs for a client in region: its own, then the others
// nearest first. A region without a POP is refused as the edge refuses it.
func (d *Dispatcher) order(region string) ([]string, error) {
	if region == "" {
		region = d.cfg.Order[0]
	}
	out, ok := d.orders[region]
	if !ok {
		return nil, shop.Invalid(edge.HeaderClientRegion, "no point of presence in region %q", region)
	}
	return out, nil
}

// Withdraw takes a POP out of rotation (out true), as a health-checked
// geo-DNS would for a region known to be down, or puts it back once it
// serves: a withdrawn POP is tried only when no other one answers. A POP
// that starts again is not in rotation before it routes to a stamp, so
// it is withdrawn until then.
func (d *Dispatcher) Withdraw(region string, out bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if out {
		d.withdrawn[region] = true
		return
	}
	delete(d.withdrawn, region)
	delete(d.dead, region)
}

// candidates is order with the POPs being passed over, then the withdrawn
// ones, moved to the end, so that they are still tried when every other
// one failed.
func (d *Dispatcher) candidates(order []string) []string {
	now := d.cfg.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	alive := make([]string, 0, len(order))
	var dead, withdrawn []string
	for _, r := range order {
		switch {
		case d.withdrawn[r]:
			withdrawn = append(withdrawn, r)
		case now.Before(d.dead[r]):
			dead = append(dead, r)
		default:
			alive = append(alive, r)
		}
	}
	return append(append(alive, dead...), withdrawn...)
}

func (d *Dispatcher) markDead(region string) {
	d.mu.Lock()
	d.dead[region] = d.cfg.Now().Add(d.cfg.SkipFor)
	d.mu.Unlock()
}

func (d *Dispatcher) markAlive(region string) {
	d.mu.Lock()
	delete(d.dead, region)
	d.mu.Unlock()
}

// failover is the dispatcher's transport: one attempt per candidate POP,
// until one answers or a retry would not be safe.
type failover struct{ d *Dispatcher }

func (f failover) RoundTrip(req *http.Request) (*http.Response, error) {
	d := f.d
	order, _ := req.Context().Value(orderKey{}).([]string)
	if len(order) == 0 {
		return nil, errors.New("dispatcher: request without a POP order")
	}
	idempotent := req.Method == http.MethodGet || req.Method == http.MethodHead || req.Header.Get("Idempotency-Key") != ""
	body := &countingBody{r: req.Body}
	var replay []byte // the whole body of an idempotent request, to send again
	if req.Body != nil && req.Body != http.NoBody {
		defer req.Body.Close()
		if idempotent {
			b, err := io.ReadAll(io.LimitReader(req.Body, maxReplayBody+1))
			if err != nil {
				return nil, fmt.Errorf("dispatcher: read the request body: %w", err)
			}
			if len(b) <= maxReplayBody {
				replay = b
			} else {
				body.r = io.MultiReader(bytes.NewReader(b), req.Body)
			}
		}
	}
	var lastErr error
	for _, region := range d.candidates(order) {
		pop := d.pops[region]
		var wrote atomic.Bool
		ctx := httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{WroteHeaders: func() { wrote.Store(true) }})
		out := req.Clone(ctx)
		out.URL.Scheme, out.URL.Host = pop.Scheme, pop.Host
		switch {
		case replay != nil:
			out.Body = io.NopCloser(bytes.NewReader(replay))
			out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(replay)), nil }
			out.ContentLength = int64(len(replay))
		case req.Body != nil && req.Body != http.NoBody:
			out.Body = io.NopCloser(body) // the transport closes it; the client's body stays open for another POP
		}
		resp, err := d.base.RoundTrip(out)
		if err == nil {
			if region != order[0] {
				d.log.Debug("dispatched to another POP", "client_region", order[0], "pop", region)
			}
			d.markAlive(region)
			return resp, nil
		}
		if req.Context().Err() != nil {
			return nil, err
		}
		lastErr = fmt.Errorf("POP %s: %w", region, err)
		d.markDead(region)
		sent := wrote.Load() || body.n.Load() > 0
		if sent && (!idempotent || (replay == nil && body.n.Load() > 0)) {
			d.log.Warn("POP failed after the request was sent; not retried: it is not idempotent", "pop", region, "method", req.Method, "error", err)
			return nil, lastErr
		}
		d.log.Warn("POP did not answer; trying the next", "pop", region, "sent", sent, "error", err)
	}
	return nil, lastErr
}

// countingBody counts what the transport read of a request body.
type countingBody struct {
	r io.Reader
	n atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.r == nil {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	return n, err
}
