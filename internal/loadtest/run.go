package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Runner runs load tests of one configuration.
type Runner struct {
	cfg Config
}

// New validates cfg and returns a runner for it.
func New(cfg Config) (*Runner, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg}, nil
}

// Run is New followed by Runner.Run.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	r, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return r.Run(ctx)
}

// Run makes one run: it reads the catalog, prepares the launch stock,
// sends the load on the profile's schedule, follows the accepted orders
// until they settle and reads the launch stock back.
//
// The error is non-nil only when the run could not be made (the edge
// cannot be reached, the catalog cannot be read, the stock cannot be set);
// the report, never nil, then says why in its Error field. Failed
// requests during the load are results, not errors. Cancelling ctx stops
// the load early; the report covers what was sent and is marked
// Interrupted.
func (r *Runner) Run(ctx context.Context) (*Report, error) {
	cfg := r.cfg
	p := cfg.profile()
	rep := &Report{
		Edge:    cfg.Edge,
		Regions: cfg.Regions,
		Started: cfg.Now().UTC().Round(0),
		Profile: ProfileReport{
			Rate: cfg.Rate, RampSeconds: cfg.Ramp.Seconds(), HoldSeconds: cfg.Hold.Seconds(),
			SpikeSeconds: cfg.Spike.Seconds(), SpikeRate: cfg.SpikeRate, SpikeStock: cfg.SpikeStock,
			Users: cfg.Users, Mix: cfg.Mix, SpikeMix: cfg.SpikeMix,
			TimeoutSeconds: cfg.Timeout.Seconds(), SettleTimeoutSeconds: cfg.SettleTimeout.Seconds(),
		},
		Planned: int64(math.Ceil(p.Hits(p.Duration()) - 1e-9)),
	}
	fail := func(err error) (*Report, error) {
		rep.Error = err.Error()
		rep.Ended = cfg.Now().UTC().Round(0)
		return rep, err
	}

	toks := newTokens(cfg.Tokens, cfg.Users)
	admin := toks.get(adminSubject, true)
	if admin == "" {
		return fail(toks.firstErr())
	}
	cat, err := r.readCatalog(ctx)
	if err != nil {
		return fail(fmt.Errorf("the edge at %s cannot serve the run: %w", cfg.Edge, err))
	}
	skus := cat.launchSKUs()
	initial, err := r.prepareStock(ctx, skus, admin)
	if err != nil {
		return fail(err)
	}
	var before map[string]stockRead
	if cfg.Conservation {
		before = r.readStocks(ctx, cat.skus(), admin)
	}
	runID := make([]byte, 6)
	_, _ = rand.Read(runID)

	gen := &generator{
		edge: cfg.Edge, regions: cfg.Regions, cat: cat, profile: p, tokens: toks,
		runID: hex.EncodeToString(runID), mix: cumulative(cfg.Mix), spikeMix: cumulative(cfg.SpikeMix),
	}
	col := newCollector(cfg.Regions, p, cfg.Timeout, cfg.Windows)
	atk := vegeta.NewAttacker(
		vegeta.Client(cfg.Client), // first: the options below adjust it
		vegeta.Timeout(cfg.Timeout),
		vegeta.Workers(uint64(min(10, cfg.MaxWorkers))),
		vegeta.MaxWorkers(uint64(cfg.MaxWorkers)),
		vegeta.Redirects(vegeta.NoFollow),
		vegeta.MaxBody(1<<20),
	)
	gen.start = time.Now()
	col.start = gen.start
	if cfg.Started != nil {
		cfg.Started()
	}
	results := atk.Attack(gen.next, p, p.Duration(), "contoso-load")
	stopOnCancel := context.AfterFunc(ctx, func() { atk.Stop() })
	var tick <-chan time.Time
	if cfg.Progress != nil {
		t := time.NewTicker(cfg.ProgressEvery)
		defer t.Stop()
		tick = t.C
	}
	lastTick := gen.start
	for done := false; !done; {
		select {
		case res, ok := <-results:
			if !ok {
				done = true
				break
			}
			col.add(res)
		case now := <-tick:
			fmt.Fprintln(cfg.Progress, col.progressLine(now.Sub(gen.start), now.Sub(lastTick)))
			lastTick = now
		}
	}
	stopOnCancel()
	if ctx.Err() != nil {
		rep.Interrupted = true
	}
	col.fill(rep)

	started := time.Now()
	settleErr := r.settle(ctx, col, toks)
	rep.Orders.SettleSeconds = time.Since(started).Seconds()
	r.summariseOrders(rep, col)
	if settleErr != nil {
		rep.Warnings = append(rep.Warnings, settleErr.Error())
	}
	rep.LaunchStock, rep.Oversold = r.checkLaunchStock(ctx, skus, initial, confirmedUnits(col), admin)
	if cfg.Conservation {
		rep.Conservation = r.conserve(ctx, col, before, admin)
	}
	if err := toks.firstErr(); err != nil {
		rep.Warnings = append(rep.Warnings, "some requests went without a token: "+err.Error())
	}
	rep.Ended = cfg.Now().UTC().Round(0)
	return rep, nil
}

// stockView is a SKU's stock as GET /api/inventory/{sku} shows it.
type stockView struct {
	Available int `json:"available"`
	Held      int `json:"held"`
}

// prepareStock sets every launch SKU's stock to SpikeStock (when
// positive) and returns the stock before the load.
func (r *Runner) prepareStock(ctx context.Context, skus []string, admin string) (map[string]stockView, error) {
	region := r.cfg.Regions[0]
	initial := make(map[string]stockView, len(skus))
	for _, sku := range skus {
		if r.cfg.SpikeStock > 0 {
			err := r.call(ctx, http.MethodPut, "/api/inventory/"+sku, admin, region, map[string]int{"stock": r.cfg.SpikeStock}, nil)
			if err != nil {
				return nil, fmt.Errorf("set the stock of launch SKU %s: %w", sku, err)
			}
		}
		var st stockView
		if err := r.call(ctx, http.MethodGet, "/api/inventory/"+sku, admin, region, nil, &st); err != nil {
			return nil, fmt.Errorf("read the stock of launch SKU %s: %w", sku, err)
		}
		initial[sku] = st
	}
	return initial, nil
}

// settlePoll is the time between rounds of polling unsettled orders.
const settlePoll = 200 * time.Millisecond

// settle polls the accepted orders that are not final yet, as their
// owners, until all are final or the settle timeout passes. It returns an
// error describing failed polls, if the last round had any.
func (r *Runner) settle(ctx context.Context, col *collector, toks *tokens) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.SettleTimeout)
	defer cancel()
	for {
		var pending []*order
		for _, id := range col.orderOrder {
			if o := col.orders[id]; !o.final() {
				pending = append(pending, o)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		var (
			mu       sync.Mutex
			failed   int
			firstErr error
			wg       sync.WaitGroup
			sem      = make(chan struct{}, 8)
		)
		for _, o := range pending {
			if ctx.Err() != nil {
				break
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				var got struct {
					Status string `json:"status"`
					Reason string `json:"reason"`
				}
				err := errors.New("no token for the order's owner")
				if o.user != "" {
					if tok := toks.get(o.user, false); tok != "" {
						err = r.call(ctx, http.MethodGet, "/api/orders/"+o.id, tok, o.region, nil, &got)
					}
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
					return
				}
				o.status, o.reason = got.Status, got.Reason
			})
		}
		wg.Wait()
		t := time.NewTimer(settlePoll)
		select {
		case <-ctx.Done():
			t.Stop()
			if failed > 0 {
				return fmt.Errorf("%d order polls failed in the last round, first: %w", failed, firstErr)
			}
			return nil
		case <-t.C:
		}
	}
}

// summariseOrders counts the orders by their final state.
func (r *Runner) summariseOrders(rep *Report, col *collector) {
	o := &rep.Orders
	o.RejectReasons = map[string]int64{}
	for _, id := range col.orderOrder {
		ord := col.orders[id]
		o.Accepted++
		switch ord.status {
		case "confirmed":
			o.Confirmed++
		case "rejected":
			o.Rejected++
			reason := ord.reason
			if reason == "" {
				reason = "unspecified"
			}
			o.RejectReasons[reason]++
		default:
			o.Unsettled++
			if len(o.UnsettledIDs) < maxSamples {
				o.UnsettledIDs = append(o.UnsettledIDs, id)
			}
		}
	}
}

// confirmedUnits sums the units of the confirmed orders by SKU.
func confirmedUnits(col *collector) map[string]int {
	units := map[string]int{}
	for _, o := range col.orders {
		if o.status != "confirmed" {
			continue
		}
		for _, l := range o.lines {
			units[l.SKU] += l.Quantity
		}
	}
	return units
}

// checkLaunchStock reads every launch SKU's stock back and checks it.
func (r *Runner) checkLaunchStock(ctx context.Context, skus []string, initial map[string]stockView, confirmed map[string]int, admin string) ([]StockCheck, bool) {
	checks := []StockCheck{}
	oversold := false
	for _, sku := range skus {
		var final stockView
		err := r.call(ctx, http.MethodGet, "/api/inventory/"+sku, admin, r.cfg.Regions[0], nil, &final)
		c := checkStock(sku, initial[sku], confirmed[sku], final, err)
		oversold = oversold || c.Oversold
		checks = append(checks, c)
	}
	slices.SortFunc(checks, func(a, b StockCheck) int { return strings.Compare(a.SKU, b.SKU) })
	return checks, oversold
}

// checkStock is the oversell verdict for one SKU: initial is its stock
// before the load, confirmed the units of the run's confirmed orders,
// final its stock after the orders settled (unless readErr is set).
func checkStock(sku string, initial stockView, confirmed int, final stockView, readErr error) StockCheck {
	c := StockCheck{SKU: sku, Initial: initial.Available, InitialHeld: initial.Held, Confirmed: confirmed}
	if readErr != nil {
		c.ReadError = readErr.Error()
	} else {
		c.Available, c.Held = final.Available, final.Held
		c.Unaccounted = initial.Available + initial.Held - confirmed - final.Available - final.Held
	}
	c.Oversold = confirmed > initial.Available || (readErr == nil && final.Available < 0)
	return c
}

// stockRead is one SKU's stock as read, or why it could not be.
type stockRead struct {
	view stockView
	err  error
}

// readStocks reads the stock of every SKU of skus, a few at a time.
func (r *Runner) readStocks(ctx context.Context, skus []string, admin string) map[string]stockRead {
	out := make(map[string]stockRead, len(skus))
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		slots = make(chan struct{}, 16)
	)
	for _, sku := range skus {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			var st stockView
			err := r.call(ctx, http.MethodGet, "/api/inventory/"+sku, admin, r.cfg.Regions[0], nil, &st)
			mu.Lock()
			out[sku] = stockRead{st, err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// Waiting for the stock to account for every unit: a confirmed order's
// hold is released just after its confirmation, and until then its units
// count as held and as sold. A SKU showing more units than the run left
// is read again every conservePoll, for up to conserveWait.
const (
	conservePoll = 250 * time.Millisecond
	conserveWait = 10 * time.Second
)

// conserve accounts for every unit of every SKU the run's checkouts named:
// its stock before the load (before), the units of the run's confirmed
// orders and its stock read back now, with the units whose fate the run
// does not know (orders not final, checkouts without a usable answer).
func (r *Runner) conserve(ctx context.Context, col *collector, before map[string]stockRead, admin string) *Conservation {
	uncertain := maps.Clone(col.named)
	for _, o := range col.orders {
		for _, l := range o.lines {
			if _, ok := uncertain[l.SKU]; !ok {
				uncertain[l.SKU] = 0
			}
			if !o.final() {
				uncertain[l.SKU] += l.Quantity
			}
		}
	}
	confirmed := confirmedUnits(col)
	cons := &Conservation{SKUs: []StockCheck{}}
	checks := map[string]StockCheck{}
	pending := slices.Sorted(maps.Keys(uncertain))
	deadline := time.Now().Add(conserveWait)
	for {
		after := r.readStocks(ctx, pending, admin)
		var again []string
		for _, sku := range pending {
			b, a := before[sku], after[sku]
			c := checkStock(sku, b.view, confirmed[sku], a.view, a.err)
			c.Uncertain = uncertain[sku]
			switch {
			case b.err != nil || before == nil:
				c.ReadError, c.Unaccounted, c.Oversold = "the stock before the load was not read", 0, false
				if b.err != nil {
					c.ReadError = "before the load: " + b.err.Error()
				}
			case c.ReadError != "" || c.Unaccounted < 0:
				again = append(again, sku)
			}
			checks[sku] = c
		}
		if len(again) == 0 || time.Now().After(deadline) {
			break
		}
		t := time.NewTimer(conservePoll)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
		cons.Rereads++
		pending = again
	}
	for _, sku := range slices.Sorted(maps.Keys(checks)) {
		cons.SKUs = append(cons.SKUs, checks[sku])
	}
	return cons
}
