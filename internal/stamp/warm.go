package stamp

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/readmodel"
)

// defaultWarmRequests is Config.WarmRequests when it is zero.
const defaultWarmRequests = 20

// warmProducts is how many products of the catalog the warm-up reads one
// by one, round and round.
const warmProducts = 5

// warmth is what a passed warm-up did.
type warmth struct {
	n    int           // synthetic requests answered
	took time.Duration // how long they took, all together
}

// Warmed reports how many synthetic requests the stamp answered before it
// first reported ready, and how long they took; zeros before the warm-up
// has passed (and always without warm requests).
func (s *Stamp) Warmed() (n int, took time.Duration) {
	if w := s.warmed.Load(); w != nil {
		return w.n, w.took
	}
	return 0, 0
}

// warm warms the stamp up before it first reports ready: once its catalog
// is seeded, its read models are loaded and the store has answered a read
// probe, it answers Config.WarmRequests synthetic requests through its own
// handler, in process. A failed request keeps the stamp unready; it is
// logged and the warm-up starts over after a pause (250 ms, doubling up
// to 5 s) until one passes or ctx is done.
func (s *Stamp) warm(ctx context.Context) {
	if s.warmed.Load() != nil {
		return
	}
	h := s.warmHandler()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	delay := 250 * time.Millisecond
	for {
		if s.serving() == nil {
			start := time.Now()
			err := s.warmOnce(ctx, h)
			if err == nil {
				w := &warmth{n: s.cfg.WarmRequests, took: time.Since(start)}
				s.warmed.Store(w)
				s.log.Info("stamp warmed up", "requests", w.n, "took", w.took)
				s.prober.Kick() // its health report says so now, not a probe interval later
				return
			}
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("warm-up failed; the stamp stays unready", "error", err, "retry_in", delay)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, 5*time.Second)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		}
	}
}

// warmOnce answers the warm-up's requests through h: GET /api/products
// every fourth, GET /api/products/{id} of a few products of the catalog
// between (only the list when the catalog is empty). Every answer must be
// 200.
func (s *Stamp) warmOnce(ctx context.Context, h http.Handler) error {
	var ids []string
	products, _ := s.model.Products(readmodel.Filter{}, "", warmProducts)
	for _, p := range products {
		ids = append(ids, p.ID)
	}
	for i := range s.cfg.WarmRequests {
		path := "/api/products"
		if i%4 != 0 && len(ids) > 0 {
			path += "/" + ids[i%len(ids)]
		}
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil)
		if s.cfg.EdgeCredential != "" {
			req.Header.Set(httpapi.HeaderEdgeCredential, s.cfg.EdgeCredential)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			return fmt.Errorf("warm-up request %d of %d, GET %s: %d %.300s", i+1, s.cfg.WarmRequests, path, rec.Code, rec.Body.String())
		}
	}
	return nil
}
