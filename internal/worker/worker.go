// Package worker is a stamp's background processor: it drains the async
// write stream (comments, ratings) into the replicated store, and answers
// its region's canaries so the health service can prove the whole async path
// works, not only the publish.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/contoso/shoes/internal/backoff"
	"github.com/contoso/shoes/internal/partner"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

// Notifier tells the fulfilment partner about a reserved order. It must be
// idempotent by order id: the worker may call it more than once per order.
type Notifier interface {
	Notify(ctx context.Context, n partner.Notification) error
}

// Config configures a Worker.
type Config struct {
	Region  string       // required
	Store   *store.Store // required
	Partner Notifier     // nil: orders are not processed (comment-only deployments and tests)
	Logger  *slog.Logger // nil: discard
	// OrderConcurrency bounds the orders one worker processes at once;
	// zero: 16.
	OrderConcurrency int
	Now              func() time.Time // nil: time.Now
	// Meter records the orders this worker confirms and rejects
	// (MetricOrdersConfirmed, MetricOrdersRejected); nil: none.
	Meter metric.Meter
}

// Metric names the worker records.
const (
	// MetricOrdersConfirmed counts orders confirmed, by region
	// (contoso_orders_confirmed_total).
	MetricOrdersConfirmed = "contoso.orders.confirmed"
	// MetricOrdersRejected counts orders rejected, by region and reason
	// (shop.ReasonOutOfStock) (contoso_orders_rejected_total).
	MetricOrdersRejected = "contoso.orders.rejected"
)

// Worker processes async writes. It is safe for concurrent use.
type Worker struct {
	cfg                 Config
	log                 *slog.Logger
	confirmed, rejected metric.Int64Counter

	inProcess atomic.Int64 // order messages in Take now

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
	if cfg.OrderConcurrency <= 0 {
		cfg.OrderConcurrency = 16
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Meter == nil {
		cfg.Meter = noop.NewMeterProvider().Meter("")
	}
	w := &Worker{cfg: cfg, log: cfg.Logger}
	// Instrument errors only come of invalid names, which these are not;
	// the instrument returned then is a no-op.
	w.confirmed, _ = cfg.Meter.Int64Counter(MetricOrdersConfirmed, metric.WithUnit("{order}"), metric.WithDescription("Orders confirmed: reserved and passed to the fulfilment partner."))
	w.rejected, _ = cfg.Meter.Int64Counter(MetricOrdersRejected, metric.WithUnit("{order}"), metric.WithDescription("Orders rejected, by reason."))
	return w
}

// Run processes comments, ratings, canaries and (with a partner) orders
// until ctx is done, then finishes in-flight messages. When the store
// cannot be reached to start processing, it keeps trying with back-off: a
// slow store delays the processor, it never stops the stamp (the
// async-path health check reports it meanwhile).
func (w *Worker) Run(ctx context.Context) error {
	poisoned := func(err error) bool { return shop.KindOf(err) == shop.KindInvalid }
	var wg sync.WaitGroup
	wg.Go(func() {
		w.forever(ctx, "writes", func() error { return w.cfg.Store.ProcessWrites(ctx, w.cfg.Region, w, poisoned) })
	})
	if w.cfg.Partner != nil {
		wg.Go(func() {
			w.forever(ctx, "orders", func() error {
				return w.cfg.Store.ProcessOrders(ctx, w.Take, poisoned, w.cfg.OrderConcurrency)
			})
		})
	}
	wg.Wait()
	return nil
}

func (w *Worker) forever(ctx context.Context, what string, process func() error) {
	backoff.Policy{First: 250 * time.Millisecond, Max: 10 * time.Second}.Keep(ctx, func(context.Context) error {
		return process()
	}, func(err error, wait time.Duration) {
		w.log.WarnContext(ctx, "background processing stopped; restarting", "queue", what, "error", err, "retry_in", wait)
	})
}

// Take handles an order message. An order accepted with the one write of
// its message comes with the request that made it: before anything is
// reserved, Take records that request (create-if-absent, so a replay in
// any region later gets this order); the order's own record is written
// with its first status, reserved or rejected, one write fewer than a
// record created accepted and then changed. When the
// request is recorded already with another order (a replay published again
// after the stream's duplicate window, or to another queue, while this
// message still waited), the message is a duplicate: nothing is reserved,
// and its order is recorded as a rejected duplicate whose SameAs names the
// order the request made, so that its id reads as that order. Then Order
// takes the order further. A crash anywhere leaves the message
// unacknowledged, and its redelivery records nothing twice.
func (w *Worker) Take(ctx context.Context, in store.Intake) error {
	w.inProcess.Add(1)
	defer w.inProcess.Add(-1)
	o := in.Order
	if err := validOrder(o); err != nil {
		return err
	}
	var ver store.Version
	if in.IdempotencyID != "" {
		rec, won, err := w.cfg.Store.Remember(ctx, in.IdempotencyID, in.Record())
		if err != nil {
			return fmt.Errorf("record the request of order %s: %w", o.ID, err)
		}
		if !won && rec.ID != o.ID {
			// Its id, which a client may hold, names the order the
			// request made: recorded as a rejected duplicate pointing
			// there, read as that order.
			w.log.WarnContext(ctx, "dropping an order whose request made another order", "order", o.ID, "kept", rec.ID)
			dup := o
			dup.Status, dup.Reason, dup.SameAs, dup.UpdatedAt = shop.OrderRejected, shop.ReasonDuplicate, rec.ID, w.cfg.Now().UTC()
			if _, err := w.cfg.Store.CreateOrder(ctx, dup); err != nil {
				return fmt.Errorf("record duplicate order %s of %s: %w", o.ID, rec.ID, err)
			}
			return nil
		}
		if won {
			// A new request: its order has no record yet, and the order's
			// first status write (reserved, or rejected) creates it
			// without reading it first. Until then the order reads as
			// queued (GET /api/orders/{id} finds it on the stream).
			ver = store.Unwritten()
		}
	}
	return w.order(ctx, o, ver)
}

func validOrder(o shop.Order) error {
	_, err := shop.ValidateLines(o.Lines)
	if err != nil || shop.ValidateWriteID("id", o.ID) != nil || o.User == "" {
		return shop.Invalid("", "malformed order %q: %v", o.ID, err)
	}
	return nil
}

// Order takes one order one step further, from whatever state it is in,
// so a redelivered order continues where a crashed processor stopped:
// accepted -> reserve every line (all or none) -> reserved -> notify the
// partner -> confirmed; an order that cannot be filled is rejected and
// holds no stock. A partner outage leaves the order reserved: the error
// redelivers it later.
func (w *Worker) Order(ctx context.Context, o shop.Order) error {
	return w.order(ctx, o, store.Version{})
}

// order is Order for an order whose request this processor may have just
// recorded: ver, when known, is the order's record as this processor knows
// it (store.Unwritten: none yet), so the order is known to be accepted
// without reading it, and each status write goes without a read while
// nobody else writes the order (store.Version).
func (w *Worker) order(ctx context.Context, o shop.Order, ver store.Version) error {
	lines, err := shop.ValidateLines(o.Lines)
	if err != nil || shop.ValidateWriteID("id", o.ID) != nil || o.User == "" {
		return shop.Invalid("", "malformed order %q: %v", o.ID, err)
	}
	cur := o // accepted, when ver is known
	if !ver.Known() {
		cur, err = w.cfg.Store.Order(ctx, shop.UserKey(o.User), o.ID)
		switch {
		case err == nil:
		case shop.KindOf(err) == shop.KindNotFound:
			cur = o // the stream has it, so it was acknowledged: it is owed
		default:
			return err
		}
	}
	switch cur.Status {
	case shop.OrderConfirmed, shop.OrderRejected:
		if cur.ID != o.ID {
			// The order was dropped as a duplicate (its record reads as
			// the order its request made, which its own message settles):
			// it never held stock.
			return nil
		}
		return w.settle(ctx, cur, store.Version{})
	case shop.OrderAccepted, "":
		var reserved bool
		if reserved, ver, err = w.reserve(ctx, o, lines, ver); err != nil || !reserved {
			return err
		}
	}
	n := partner.Notification{OrderID: o.ID, User: o.User, Region: w.cfg.Region, At: o.CreatedAt}
	for _, l := range lines {
		n.Lines = append(n.Lines, partner.Line{SKU: l.SKU, Quantity: l.Quantity})
	}
	if err := w.cfg.Partner.Notify(ctx, n); err != nil {
		// Whatever the partner said, the order is reserved and owed: retry
		// later rather than dropping it.
		return shop.Unavailable("fulfilment partner", fmt.Errorf("notify partner of order %s: %w", o.ID, err))
	}
	done, ver, err := w.cfg.Store.SetOrderStatus(ctx, o, ver, shop.OrderConfirmed, "", w.cfg.Now().UTC())
	if err != nil {
		return fmt.Errorf("confirm order %s: %w", o.ID, err)
	}
	w.confirmed.Add(ctx, 1, metric.WithAttributes(attribute.String("region", w.cfg.Region)))
	return w.settle(ctx, done, ver)
}

// settle releases the holds of an order that is final (o as stored, ver
// its Version when known): a rejected order's units go back to the stock,
// a confirmed order's stay sold (store.Settle). Settling again changes
// nothing.
func (w *Worker) settle(ctx context.Context, o shop.Order, ver store.Version) error {
	if err := w.cfg.Store.Settle(ctx, o, ver); err != nil {
		return fmt.Errorf("settle order %s: %w", o.ID, err)
	}
	return nil
}

// reserve takes an accepted order's stock and marks it reserved (true,
// with its record as marked), or ends it (false): rejected when the stock
// is short, or settled when it turns out final already.
//
// Two processors may hold the same order message at once (one kept it past
// its ack wait, its progress reports lost in a leader election), each
// acting on the status it read, which may be stale. Three rules keep the
// stock exact whatever they interleave:
//   - A hold is made once per order and SKU and found by the others, and
//     the order is marked reserved (a compare-and-set, once) with the
//     tokens of the holds it was reserved with, whoever made them.
//   - No hold is released before the order is final: a processor that
//     finds the stock short writes the rejection first. Another processor
//     may have found its holds and marked the order reserved with them;
//     the rejection then finds the order reserved and goes on with it.
//   - A final order is settled from its record: a rejected order's holds
//     go back, a confirmed order sells only the holds it was marked with,
//     and gives back any other (a processor that reserved it again after
//     it was settled).
func (w *Worker) reserve(ctx context.Context, o shop.Order, lines []shop.Line, ver store.Version) (bool, store.Version, error) {
	res, err := w.cfg.Store.Reserve(ctx, o.ID, lines)
	return w.commit(ctx, o, ver, res, err)
}

// commit is reserve once its reservation returned res and err.
func (w *Worker) commit(ctx context.Context, o shop.Order, ver store.Version, res store.Reservation, err error) (bool, store.Version, error) {
	if errors.Is(err, store.ErrOutOfStock) {
		got, ver, err := w.cfg.Store.SetOrderStatus(ctx, o, ver, shop.OrderRejected, shop.ReasonOutOfStock, w.cfg.Now().UTC())
		switch {
		case err != nil:
			return false, ver, fmt.Errorf("reject order %s: %w", o.ID, err)
		case got.Status == shop.OrderReserved:
			// Another processor holding the same message reserved it,
			// with holds this one made or found: they stand under the
			// order's id, and the order goes on from here as from there.
			w.log.WarnContext(ctx, "order reserved by another processor meanwhile: going on with it", "order", o.ID)
			return true, ver, nil
		case got.Status == shop.OrderRejected && got.Reason == shop.ReasonOutOfStock:
			w.rejected.Add(ctx, 1, metric.WithAttributes(attribute.String("region", w.cfg.Region), attribute.String("reason", shop.ReasonOutOfStock)))
			w.log.InfoContext(ctx, "order rejected", "order", o.ID, "reason", shop.ReasonOutOfStock)
		}
		return false, ver, w.settle(ctx, got, ver)
	}
	if err != nil {
		return false, ver, err
	}
	now, ver, err := w.cfg.Store.MarkReserved(ctx, o, ver, res, w.cfg.Now().UTC())
	if err != nil {
		return false, ver, fmt.Errorf("mark order %s reserved: %w", o.ID, err)
	}
	if !now.Status.Final() {
		return true, ver, nil
	}
	if len(res.Made()) > 0 {
		w.log.WarnContext(ctx, "order already final: settling it from its record", "order", o.ID, "status", now.Status, "made", res.Made())
	}
	return false, ver, w.settle(ctx, now, ver)
}

// Comment validates and stores one comment. A comment written with a
// newer schema than this release reads returns an error matching
// store.ErrSchema, which leaves it on the queue for a newer processor.
func (w *Worker) Comment(ctx context.Context, data []byte) error {
	c, err := store.DecodeComment(data)
	if err != nil {
		return undecodable("comment", err)
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

// Rating validates and stores one rating; see Comment.
func (w *Worker) Rating(ctx context.Context, data []byte) error {
	r, err := store.DecodeRating(data)
	if err != nil {
		return undecodable("rating", err)
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

// StaleCanary is the age past which a canary proves nothing about the
// async path any more: it is dropped, not recorded. Until then a canary is
// retried like any write, so none waits in the stream for ever.
const StaleCanary = time.Minute

// Canary records that a canary of this region came through, in the store
// (the processor's own write path) and in memory for the health check.
func (w *Worker) Canary(ctx context.Context, data []byte) error {
	c, err := store.DecodeCanary(data)
	if err != nil {
		return undecodable("canary", err)
	}
	sent, ok := shop.IDTime(c.ID)
	if !ok || c.Region != w.cfg.Region {
		return shop.Invalid("", "canary %q of region %q is not for %q", c.ID, c.Region, w.cfg.Region)
	}
	if w.cfg.Now().Sub(sent) > StaleCanary {
		return nil
	}
	if err := w.cfg.Store.RecordCanary(ctx, c); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if sent.After(w.canarySent) {
		w.canarySent, w.canaryDone = sent, w.cfg.Now()
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

// OrdersInProcess reports how many orders this worker is processing now
// (taken from the queue, not yet finished), at most OrderConcurrency.
func (w *Worker) OrdersInProcess() int { return int(w.inProcess.Load()) }

// OrderConcurrency is the most orders this worker processes at once.
func (w *Worker) OrderConcurrency() int { return w.cfg.OrderConcurrency }

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

// undecodable is the error for a message that did not decode: one of a
// newer schema as the store said (left for a newer processor), anything
// else invalid (dropped: it can never be processed).
func undecodable(what string, err error) error {
	if errors.Is(err, store.ErrSchema) {
		return err
	}
	return shop.Invalid("", "undecodable %s: %v", what, err)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
