// Package worker is a stamp's background processor: it drains the async
// write stream (comments, ratings) into the replicated store, and answers
// its region's canaries so the health service can prove the whole async path
// works, not only the publish.
package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

// Config configures a Worker.
type Config struct {
	Region string       // required
	Store  *store.Store // required
	Logger *slog.Logger // nil: discard
}

// Worker processes async writes. It is safe for concurrent use.
type Worker struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex // guards the fields below
	canarySent time.Time  // send time of the newest canary processed
	canaryDone time.Time  // when it was processed
	processed  uint64
}

var _ store.WriteHandler = (*Worker)(nil)

// New returns a worker; call Run to start it.
func New(cfg Config) *Worker {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Worker{cfg: cfg, log: cfg.Logger}
}

// Run processes until ctx is done, then finishes in-flight messages. When
// the store cannot be reached to start processing, it keeps trying with
// back-off: a slow store delays the processor, it never stops the stamp
// (the async-path health check reports it meanwhile).
func (w *Worker) Run(ctx context.Context) error {
	poisoned := func(err error) bool { return shop.KindOf(err) == shop.KindInvalid }
	delay := 250 * time.Millisecond
	for {
		err := w.cfg.Store.ProcessWrites(ctx, w.cfg.Region, w, poisoned)
		if ctx.Err() != nil {
			return nil
		}
		w.log.Warn("background processing stopped; restarting", "error", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

// Comment validates and stores one comment.
func (w *Worker) Comment(ctx context.Context, data []byte) error {
	var c shop.Comment
	if err := json.Unmarshal(data, &c); err != nil {
		return shop.Invalid("", "undecodable comment: %v", err)
	}
	if err := firstErr(shop.ValidateID("productId", c.ProductID), shop.ValidateWriteID("id", c.ID), shop.ValidateCommentText(c.Text)); err != nil {
		return err
	}
	if err := w.cfg.Store.SaveComment(ctx, c); err != nil {
		return fmt.Errorf("process comment %s: %w", c.ID, err)
	}
	w.count()
	return nil
}

// Rating validates and stores one rating.
func (w *Worker) Rating(ctx context.Context, data []byte) error {
	var r shop.Rating
	if err := json.Unmarshal(data, &r); err != nil {
		return shop.Invalid("", "undecodable rating: %v", err)
	}
	if err := firstErr(shop.ValidateID("productId", r.ProductID), shop.ValidateWriteID("id", r.ID), shop.ValidateStars(r.Stars)); err != nil {
		return err
	}
	if err := w.cfg.Store.SaveRating(ctx, r); err != nil {
		return fmt.Errorf("process rating %s: %w", r.ID, err)
	}
	w.count()
	return nil
}

// Canary records that a canary of this region came through, in the store
// (the processor's own write path) and in memory for the health check.
func (w *Worker) Canary(ctx context.Context, data []byte) error {
	var c store.Canary
	if err := json.Unmarshal(data, &c); err != nil {
		return shop.Invalid("", "undecodable canary: %v", err)
	}
	sent, ok := shop.IDTime(c.ID)
	if !ok || c.Region != w.cfg.Region {
		return shop.Invalid("", "canary %q of region %q is not for %q", c.ID, c.Region, w.cfg.Region)
	}
	if err := w.cfg.Store.RecordCanary(ctx, c); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if sent.After(w.canarySent) {
		w.canarySent, w.canaryDone = sent, time.Now()
	}
	return nil
}

// LastCanary reports when the newest processed canary was sent and when it
// was processed; zero times when none has come through yet.
func (w *Worker) LastCanary() (sent, processed time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.canarySent, w.canaryDone
}

// Processed reports how many comments and ratings this worker stored.
func (w *Worker) Processed() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.processed
}

func (w *Worker) count() {
	w.mu.Lock()
	w.processed++
	w.mu.Unlock()
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
