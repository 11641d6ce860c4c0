package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Headers of the shop's API the generator sends or reads.
const (
	headerClientRegion   = "X-Client-Region"
	headerServedRegion   = "X-Served-Region"
	headerServedRelease  = "X-Served-Release"
	headerEdgePop        = "X-Edge-Pop"
	headerRequestID      = "X-Request-Id"
	headerIdempotencyKey = "Idempotency-Key"
)

// launchSuffix ends the id of every launch product.
const launchSuffix = "-launch-edition"

// product is what the generator needs of a catalog product.
type product struct {
	ID       string
	Category string
	Launch   bool
	SKUs     []string
}

// catalog is the shop's catalog as read once before the load.
type catalog struct {
	products   []product
	launch     []product // the launch products, also in products
	categories []string
	cursors    []string // nextCursor values seen while paging, for browsing later pages
}

// launchSKUs returns every SKU of the launch products.
func (c *catalog) launchSKUs() []string {
	var skus []string
	for _, p := range c.launch {
		skus = append(skus, p.SKUs...)
	}
	return skus
}

// skus returns every SKU of the catalog.
func (c *catalog) skus() []string {
	var skus []string
	for _, p := range c.products {
		skus = append(skus, p.SKUs...)
	}
	return skus
}

// maxCursors bounds the cursors kept for browsing.
const maxCursors = 1000

// readCatalog pages through GET /api/products.
func (r *Runner) readCatalog(ctx context.Context) (*catalog, error) {
	type page struct {
		Items []struct {
			ID       string `json:"id"`
			Category string `json:"category"`
			Launch   bool   `json:"launch"`
			Sizes    []struct {
				SKU string `json:"sku"`
			} `json:"sizes"`
		} `json:"items"`
		NextCursor string `json:"nextCursor"`
	}
	cat := &catalog{}
	seenCategory := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages == 10_000 {
			return nil, fmt.Errorf("read catalog: more than %d pages", pages)
		}
		path := "/api/products?limit=20"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var pg page
		if err := r.call(ctx, http.MethodGet, path, "", r.cfg.Regions[0], nil, &pg); err != nil {
			return nil, fmt.Errorf("read catalog: %w", err)
		}
		for _, it := range pg.Items {
			p := product{ID: it.ID, Category: it.Category, Launch: it.Launch || strings.HasSuffix(it.ID, launchSuffix)}
			for _, s := range it.Sizes {
				p.SKUs = append(p.SKUs, s.SKU)
			}
			if len(p.SKUs) == 0 {
				continue // nothing to put in a cart
			}
			cat.products = append(cat.products, p)
			if p.Launch {
				cat.launch = append(cat.launch, p)
			}
			if p.Category != "" && !seenCategory[p.Category] {
				seenCategory[p.Category] = true
				cat.categories = append(cat.categories, p.Category)
			}
		}
		if pg.NextCursor == "" || len(pg.Items) == 0 {
			break
		}
		if len(cat.cursors) < maxCursors {
			cat.cursors = append(cat.cursors, pg.NextCursor)
		}
		cursor = pg.NextCursor
	}
	if len(cat.products) == 0 {
		return nil, fmt.Errorf("read catalog: the catalog has no product with sizes")
	}
	return cat, nil
}

// call sends one request of the runner's own (not part of the load) and
// decodes a 2xx JSON answer into out, when out is not nil.
func (r *Runner) call(ctx context.Context, method, path, token, region string, body, out any) error {
	// The tool's own reads and its idempotent stock settings are retried
	// when the system fails them (5xx, no answer) or sheds them (429,
	// after its Retry-After of a second): a bookkeeping call caught in
	// the middle of a fault or of a full stamp must not void the whole run.
	var err error
	delay := time.Duration(0)
	for attempt := range 5 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(delay):
			}
		}
		err = r.callOnce(ctx, method, path, token, region, body, out)
		var se *statusError
		shed := errors.As(err, &se) && se.code == http.StatusTooManyRequests
		if err == nil || (se != nil && se.code < 500 && !shed) || ctx.Err() != nil {
			return err
		}
		delay = time.Duration(attempt+1) * 500 * time.Millisecond
		if shed {
			delay = max(delay, time.Second)
		}
	}
	return err
}

func (r *Runner) callOnce(ctx context.Context, method, path, token, region string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.cfg.Edge+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set(headerClientRegion, region)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 4<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var problem struct {
			Detail string `json:"detail"`
		}
		_ = dec.Decode(&problem)
		return &statusError{method: method, path: path, code: resp.StatusCode, detail: problem.Detail}
	}
	if out == nil {
		return nil
	}
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// statusError is a non-2xx answer to one of the runner's own requests.
type statusError struct {
	method, path string
	code         int
	detail       string
}

func (e *statusError) Error() string {
	s := fmt.Sprintf("%s %s: %d %s", e.method, e.path, e.code, http.StatusText(e.code))
	if e.detail != "" {
		s += ": " + e.detail
	}
	return s
}

// tokens mints each subject's token once and keeps it.
type tokens struct {
	mint  func(sub string, admin bool) (string, error)
	cache sync.Map              // subject -> token
	err   atomic.Pointer[error] // the first minting error
	users []string              // the shoppers' subjects
}

func newTokens(mint func(string, bool) (string, error), users int) *tokens {
	t := &tokens{mint: mint, users: make([]string, users)}
	for i := range t.users {
		t.users[i] = "load-shopper-" + strconv.Itoa(i+1)
	}
	return t
}

// adminSubject is the subject of the runner's administrator token.
const adminSubject = "load-admin"

// get returns sub's token; an empty token when it cannot be minted (the
// first error is kept for the report).
func (t *tokens) get(sub string, admin bool) string {
	if tok, ok := t.cache.Load(sub); ok {
		return tok.(string)
	}
	tok, err := t.mint(sub, admin)
	if err == nil && tok == "" {
		err = errors.New("empty token")
	}
	if err != nil {
		err = fmt.Errorf("token for %s: %w", sub, err)
		t.err.CompareAndSwap(nil, &err)
		return ""
	}
	actual, _ := t.cache.LoadOrStore(sub, tok)
	return actual.(string)
}

// firstErr returns the first minting error, if any.
func (t *tokens) firstErr() error {
	if p := t.err.Load(); p != nil {
		return *p
	}
	return nil
}

// generator builds the requests of a run. Its next method is the run's
// vegeta.Targeter and is called from many goroutines at once.
//
// Each request's flow and client region travel with it in the fragment
// of its URL ("#flow=cart&region=eastus"): vegeta copies the target URL
// into the result, and an HTTP client never sends a fragment, so the shop
// sees the plain URL while the collector reads the tag back from
// Result.URL, whatever the order results come back in.
type generator struct {
	edge      string
	regions   []string
	cat       *catalog
	profile   Profile
	tokens    *tokens
	runID     string // makes Idempotency-Keys unique across runs
	mix       []float64
	spikeMix  []float64
	start     time.Time // when the schedule started; set before the first request
	seq       atomic.Uint64
	checkouts atomic.Uint64
}

// cumulative returns the running sums of m's weights, in Flows order.
func cumulative(m Mix) []float64 {
	w := m.weights()
	for i := 1; i < len(w); i++ {
		w[i] += w[i-1]
	}
	return w
}

// pick returns a flow with the probabilities of cumulative weights cum.
func pick(cum []float64) Flow {
	x := rand.Float64() * cum[len(cum)-1]
	for i, c := range cum {
		if x < c {
			return flows[i]
		}
	}
	return flows[len(cum)-1]
}

// oneOf returns an element of s chosen at random.
func oneOf[T any](s []T) T { return s[rand.IntN(len(s))] }

// tag is the URL fragment carrying a request's flow and client region
// and, for a checkout, the SKUs it orders.
func tag(f Flow, region string, skus ...string) string {
	v := url.Values{"flow": {string(f)}, "region": {region}}
	if len(skus) > 0 {
		v["sku"] = skus
	}
	return v.Encode()
}

// taggedSKUs reads back the SKUs a checkout's tag names.
func taggedSKUs(rawURL string) []string {
	i := strings.LastIndexByte(rawURL, '#')
	if i < 0 {
		return nil
	}
	v, err := url.ParseQuery(rawURL[i+1:])
	if err != nil {
		return nil
	}
	return v["sku"]
}

// untag reads the flow and client region back from a result's URL.
func untag(rawURL string) (Flow, string) {
	i := strings.LastIndexByte(rawURL, '#')
	if i < 0 {
		return "", ""
	}
	v, err := url.ParseQuery(rawURL[i+1:])
	if err != nil {
		return "", ""
	}
	return Flow(v.Get("flow")), v.Get("region")
}

// next fills t with the next request of the run. It never fails.
func (g *generator) next(t *vegeta.Target) error {
	n := g.seq.Add(1)
	region := g.regions[(n-1)%uint64(len(g.regions))]
	spike := g.profile.Phase(time.Since(g.start)) == PhaseSpike && len(g.cat.launch) > 0
	products, cum := g.cat.products, g.mix
	if spike {
		products, cum = g.cat.launch, g.spikeMix
	}
	p := oneOf(products)
	f := pick(cum)

	h := http.Header{}
	h.Set("Accept", "application/json")
	h.Set(headerClientRegion, region)
	var path string
	var body any
	var skus []string // a checkout's
	switch f {
	case FlowBrowse:
		path = "/api/products?limit=20"
		switch x := rand.IntN(4); {
		case (spike || x == 1) && p.Category != "":
			path += "&category=" + url.QueryEscape(p.Category)
		case x == 2 && len(g.cat.cursors) > 0:
			path += "&cursor=" + url.QueryEscape(oneOf(g.cat.cursors))
		}
	case FlowProduct:
		path = "/api/products/" + p.ID
	case FlowComment:
		path = "/api/products/" + p.ID + "/comments"
		body = map[string]string{"text": fmt.Sprintf("Load test comment %d, sent from %s.", n, region)}
		h.Set(headerIdempotencyKey, fmt.Sprintf("load-%s-c%d", g.runID, n))
		g.authorize(h, oneOf(g.tokens.users))
	case FlowCart:
		path = "/api/cart/items/" + oneOf(p.SKUs)
		body = map[string]int{"quantity": 1 + rand.IntN(3)}
		g.authorize(h, oneOf(g.tokens.users))
	case FlowCheckout:
		path = "/api/orders"
		skus = checkoutSKUs(p, spike)
		items := make([]map[string]any, len(skus))
		for i, sku := range skus {
			items[i] = map[string]any{"sku": sku, "quantity": checkoutQuantity}
		}
		body = map[string]any{"items": items}
		h.Set(headerIdempotencyKey, fmt.Sprintf("load-%s-o%d", g.runID, n))
		// Shoppers take turns, so each stays far below its order admission.
		i := (g.checkouts.Add(1) - 1) % uint64(len(g.tokens.users))
		g.authorize(h, g.tokens.users[i])
	}
	t.Method = http.MethodGet
	t.Body = nil
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		t.Body = b
		h.Set("Content-Type", "application/json")
		t.Method = bodyMethod[f]
	}
	t.URL = g.edge + path + "#" + tag(f, region, skus...)
	t.Header = h
	return nil
}

// checkoutQuantity is how many units of each SKU a checkout orders.
const checkoutQuantity = 1

// checkoutSKUs are the SKUs one checkout of product p orders: one size;
// during the launch spike, one checkout in four asks for two sizes of the
// launch shoe (a shopper unsure of the size), so that a size selling out
// rejects an order that already holds the other one and its stock must
// go back.
func checkoutSKUs(p product, spike bool) []string {
	first := rand.IntN(len(p.SKUs))
	if !spike || len(p.SKUs) < 2 || rand.IntN(4) != 0 {
		return []string{p.SKUs[first]}
	}
	second := (first + 1 + rand.IntN(len(p.SKUs)-1)) % len(p.SKUs)
	return []string{p.SKUs[first], p.SKUs[second]}
}

// bodyMethod is the method of each flow that sends a body.
var bodyMethod = map[Flow]string{FlowComment: http.MethodPost, FlowCart: http.MethodPut, FlowCheckout: http.MethodPost}

func (g *generator) authorize(h http.Header, sub string) {
	if tok := g.tokens.get(sub, false); tok != "" {
		h.Set("Authorization", "Bearer "+tok)
	}
}
