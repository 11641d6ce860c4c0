package verify

import (
	"context"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/loadtest"
)

// LoadWith runs an experiment's load with the launch-day load tool against
// the edge: base carries the edge, the regions, the tokens and the rest;
// the experiment sets the rate, the ramp, the hold and, if it names one,
// the mix (no spike: the fault is the event).
func LoadWith(base loadtest.Config) func(ctx context.Context, l Load) (LoadOutcome, error) {
	return func(ctx context.Context, l Load) (LoadOutcome, error) {
		cfg := base
		cfg.Rate, cfg.Ramp, cfg.Hold = l.Rate, l.Ramp.D(), l.Hold.D()
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
		Cells:              map[string]FlowOutcome{},
		IdempotentFailures: rep.IdempotentFailures.Count,
		OrdersAccepted:     int(rep.Orders.Accepted),
		OrdersUnsettled:    int(rep.Orders.Unsettled),
		Oversold:           rep.Oversold,
		Served:             rep.ServedRegions,
		ServedReleases:     rep.ServedReleases,
	}
	for _, f := range rep.Flows {
		var errs int64
		for code, n := range f.Codes {
			if strings.HasPrefix(code, "5") || strings.HasPrefix(code, "error:") {
				errs += n
			}
		}
		out.Flows[string(f.Flow)] = FlowOutcome{
			Requests: f.Requests, Errors: errs,
			P95: time.Duration(f.Latency.P95Ms * float64(time.Millisecond)),
			P99: time.Duration(f.Latency.P99Ms * float64(time.Millisecond)),
		}
	}
	for _, c := range rep.Cells {
		out.Cells[cellKey(string(c.Flow), c.Region)] = FlowOutcome{Requests: c.Requests,
			P99: time.Duration(c.P99Ms * float64(time.Millisecond))}
	}
	return out
}
