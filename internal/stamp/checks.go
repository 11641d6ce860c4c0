package stamp

import (
	"context"
	"fmt"
	"time"

	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

// Names of the stamp's health checks.
const (
	checkStoreRead     = "store-read"
	checkStoreWrite    = "store-write"
	checkStreamPublish = "stream-publish"
	checkAsyncPath     = "async-path"
	checkReadModel     = "read-model"
)

// writeGrace is how long failing replicated writes count as degraded: the
// store's default write budget, what a write retries through.
const writeGrace = store.DefaultWriteBudget

// electionTolerance is how long failing replicated writes count as
// healthy: the store elects new leaders within about 8 to 10 s of losing
// a region, and the stamp's writes ride that out within their budget, so
// nobody using a surviving region notices more than latency.
const electionTolerance = 12 * time.Second

// costlyProbeEvery is how often, at most, the stamp's probes that cost
// the store real work run, whatever the probe interval: the checks that
// write (each a replicated write, the canary also a message for the
// processor), whose verdict waits out electionTolerance before it changes,
// and the reading of the order queue's backlog (readOrderQueue), which
// asks every intake stream's leader. Probing them faster only loads the
// store. The read checks follow the probe interval.
const costlyProbeEvery = time.Second

func (s *Stamp) checks() []health.Check {
	return []health.Check{
		{Name: checkStoreRead, Run: func(ctx context.Context) (string, error) {
			return "direct get of the region's probe key", s.cfg.Store.ProbeRead(ctx, s.cfg.Region)
		}},
		// A leader election stalls replicated writes for a few seconds;
		// the stamp's own writes retry through it (store.Config.WriteBudget),
		// so the stamp stays in rotation: healthy through an election's
		// usual length, degraded beyond it, unhealthy past the budget.
		{Name: checkStoreWrite, Tolerate: electionTolerance, Grace: writeGrace, Every: costlyProbeEvery, Run: func(ctx context.Context) (string, error) {
			return "replicated put with a one-minute TTL, read back from the leader",
				s.cfg.Store.ProbeWrite(ctx, s.cfg.Region, shop.NewID(s.cfg.Now()))
		}},
		{Name: checkStreamPublish, Tolerate: electionTolerance, Grace: writeGrace, Every: costlyProbeEvery, Run: func(ctx context.Context) (string, error) {
			err := s.cfg.Store.SubmitCanary(ctx, store.Canary{Region: s.cfg.Region, ID: shop.NewID(time.Now())})
			return "canary published to the async write stream", err
		}},
		// The async path can lag while writes stay durable, and other
		// regions' processors share the work: it degrades, never fails, the
		// stamp. Canaries stall with the writes during an election.
		{Name: checkAsyncPath, Impact: health.Degraded, Tolerate: electionTolerance, Run: s.checkAsyncPath},
		{Name: checkReadModel, Run: func(context.Context) (string, error) {
			for i := range s.loaded {
				if !s.loaded[i].Load() {
					return "", fmt.Errorf("%s is loading", watched[i])
				}
			}
			return fmt.Sprintf("%d products", s.model.Len()), nil
		}},
	}
}

// checkAsyncPath passes when a canary sent within the last three canary
// intervals (the probe interval, at least costlyProbeEvery) has come out of
// this stamp's background processor.
func (s *Stamp) checkAsyncPath(context.Context) (string, error) {
	sent, done := s.worker.LastCanary()
	bound := 3 * max(s.cfg.ProbeInterval, costlyProbeEvery)
	if sent.IsZero() {
		if time.Since(s.start) < 2*bound {
			return "", fmt.Errorf("waiting for the first canary: %w", health.ErrDegraded)
		}
		return "", fmt.Errorf("no canary has come through the processor since start")
	}
	latency := done.Sub(sent)
	detail := fmt.Sprintf("last canary processed in %s", latency.Round(time.Millisecond))
	if age := time.Since(sent); age > bound {
		return detail, fmt.Errorf("newest processed canary was sent %s ago", age.Round(time.Millisecond))
	}
	return detail, nil
}
