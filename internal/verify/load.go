package verify

import (
	"context"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/loadtest"
)

// LoadWith runs an experiment's load with the launch-day load tool against
// the edge: base carries the edge, the regions, the tokens and the rest;
// the experiment sets the rate, the ramp, the hold, the launch spike and
// its stock, and, if it names one, the mix. The load always reads back
// the stock of every SKU its checkouts named (loadtest.Config.Conservation),
// which needs an edge whose per-client limit lets its admin reads through.
func LoadWith(base loadtest.Config) func(ctx context.Context, l Load, started func()) (LoadOutcome, error) {
	return func(ctx context.Context, l Load, started func()) (LoadOutcome, error) {
		cfg := base
		cfg.Started = started
		cfg.Rate, cfg.Ramp, cfg.Hold = l.Rate, l.Ramp.D(), l.Hold.D()
		cfg.Spike, cfg.SpikeRate, cfg.SpikeStock = l.Spike.D(), l.SpikeRate, l.Stock
		cfg.Conservation = true
		cfg.Windows = l.Windows
		if len(l.Regions) > 0 {
			cfg.Regions = l.Regions
		}
		if m := l.Mix; m != nil {
			cfg.Mix = loadtest.Mix{Browse: m.Browse, Product: m.Product, Comment: m.Comment, Cart: m.Cart, Checkout: m.Checkout}
		}
		rep, err := loadtest.Run(ctx, cfg)
		if err != nil {
			return LoadOutcome{}, err
		}
		return outcome(rep), nil
	}
}

// outcome turns a load report into what the judge reads. A flow's errors
// are 5xx answers and requests that got no answer: a 4xx is the client's
// doing (and 429s, the admission control, are expected under load).
func outcome(rep *loadtest.Report) LoadOutcome {
	out := LoadOutcome{
		Flows:              map[string]FlowOutcome{},
		IdempotentFailures: rep.IdempotentFailures.Count,
		Failures:           rep.IdempotentFailures.Samples,
		OrdersAccepted:     int(rep.Orders.Accepted),
		OrdersUnsettled:    int(rep.Orders.Unsettled),
		Oversold:           rep.Oversold,
		Served:             rep.ServedRegions,
		ServedByClient:     rep.ServedByClientRegion,
		ServedReleases:     rep.ServedReleases,
	}
	for _, f := range rep.Flows {
		var errs, tooMany int64
		for code, n := range f.Codes {
			switch {
			case strings.HasPrefix(code, "5") || strings.HasPrefix(code, "error:"):
				errs += n
			case code == "429":
				tooMany += n
			}
		}
		out.Flows[string(f.Flow)] = FlowOutcome{
			Requests: f.Requests, Errors: errs, TooMany: tooMany,
			P95: time.Duration(f.Latency.P95Ms * float64(time.Millisecond)),
			P99: time.Duration(f.Latency.P99Ms * float64(time.Millisecond)),
		}
	}
	if c := rep.Conservation; c != nil {
		out.Stock = make([]StockCount, 0, len(c.SKUs))
		for _, s := range c.SKUs {
			out.Stock = append(out.Stock, StockCount{SKU: s.SKU, Initial: s.Initial + s.InitialHeld, Sold: s.Confirmed,
				Available: s.Available, Held: s.Held, Uncertain: s.Uncertain, ReadError: s.ReadError})
		}
	}
	for _, sec := range rep.Timeline {
		for len(out.Seconds) <= sec.Second {
			out.Seconds = append(out.Seconds, map[string]time.Duration{})
		}
		for flow, p := range sec.Flows {
			out.Seconds[sec.Second][string(flow)] = time.Duration(p.P99Ms * float64(time.Millisecond))
		}
	}
	out.Cells = cellOutcomes(rep.Cells)
	for _, w := range rep.Windows {
		if out.Windows == nil {
			out.Windows = map[string]map[string]FlowOutcome{}
		}
		out.Windows[w.Name] = cellOutcomes(w.Cells)
	}
	out.Regions = rep.Regions
	return out
}

// cellOutcomes are cells by cellKey: requests, errors and p99.
func cellOutcomes(cells []loadtest.Cell) map[string]FlowOutcome {
	out := make(map[string]FlowOutcome, len(cells))
	for _, c := range cells {
		out[cellKey(string(c.Flow), c.Region)] = FlowOutcome{Requests: c.Requests, Errors: c.Errors,
			P99: time.Duration(c.P99Ms * float64(time.Millisecond))}
	}
	return out
}
