// Package checkout decides what an order request makes: the rules of
// POST /api/orders without HTTP. A request names its user, its
// Idempotency-Key and either its lines or the user's cart; Place answers
// with the order it made, or the order the same request made before (in
// any region, within the idempotency window), or an error whose kind the
// HTTP layer maps (shop.Kind): Invalid for a malformed request,
// Unprocessable for a key used with another body, TooMany when admission
// refuses, Unavailable when the store cannot answer.
//
// One accepted order is one quorum write, the order's message
// (store.AcceptOrder); the processor records the request and the order
// when it takes the message.
package checkout

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

// Config is what a Service needs.
type Config struct {
	Store  *store.Store
	Region string // the region the orders are accepted in
	// Known reports whether sku is a size of a product in the catalog.
	Known func(sku string) bool
	// Admit takes a slot for one of user's orders, or refuses it with an
	// error of kind TooMany; release gives the slot back. Nil: every
	// order is admitted.
	Admit func(user string) (release func(), err error)
	Now   func() time.Time // nil: time.Now
	Log   *slog.Logger     // nil: slog.Default()
}

// Service places orders.
type Service struct {
	cfg Config
}

// New returns a Service for cfg.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Admit == nil {
		cfg.Admit = func(string) (func(), error) { return func() {}, nil }
	}
	return &Service{cfg: cfg}
}

// Request is one order request, as its user sent it.
type Request struct {
	User     string      // the authenticated subject
	Key      string      // the Idempotency-Key
	Items    []shop.Line // the lines; or
	FromCart bool        // the user's cart
}

// Placed is what Place answers: the order, and whether this request made
// it (Fresh) or the same request had before.
type Placed struct {
	Order shop.Order
	Fresh bool
}

// ErrReusedKey refuses a request whose Idempotency-Key came before with
// another body.
var ErrReusedKey = shop.Errorf(shop.KindUnprocessable, "Idempotency-Key", "was used before with a different request body")

// Place accepts req's order once its message is durably on the replicated
// order stream. The same user and Idempotency-Key again gets the same
// order back (Fresh false); with another body, ErrReusedKey. A replay the
// processor has recorded is found by one read of the idempotency record;
// one still queued, by the stream's deduplication of the message id (the
// request's idempotency id). A malformed request is refused before it
// takes an admission slot.
func (s *Service) Place(ctx context.Context, req Request) (Placed, error) {
	if err := shop.ValidateIdempotencyKey(req.Key); err != nil {
		return Placed{}, err
	}
	if req.FromCart == (len(req.Items) > 0) {
		return Placed{}, shop.Invalid("items", "give either items or \"fromCart\": true")
	}
	// What the request asked for: the cart (whatever it holds by a replay)
	// or its lines, in a canonical order, so a replay listing the same lines
	// in another order is the same request.
	hash := shop.RequestHash(true, nil)
	var lines []shop.Line
	if !req.FromCart {
		var err error
		if lines, err = s.lines(req.Items); err != nil {
			return Placed{}, err
		}
		hash = shop.RequestHash(false, lines)
	}
	release, err := s.cfg.Admit(req.User)
	if err != nil {
		return Placed{}, err
	}
	defer release()

	userKey := shop.UserKey(req.User)
	idemID := shop.IdempotencyID(req.User, req.Key)
	// A replay the processor recorded is answered from what the first
	// request made, before the cart (empty by now) is read again.
	rec, seen, err := s.cfg.Store.Recall(ctx, idemID)
	if err != nil {
		return Placed{}, err
	}
	if seen {
		if prev, done, err := s.replay(ctx, rec, hash); done || err != nil {
			return prev, err
		}
	}
	cartRev := uint64(0)
	if req.FromCart {
		cart, rev, err := s.cfg.Store.Cart(ctx, userKey)
		if err != nil {
			return Placed{}, err
		}
		if len(cart.Items) == 0 {
			// The cart the first request of a replay emptied, its order
			// still on the queue.
			prev, queued, err := s.cfg.Store.QueuedRequest(ctx, userKey, idemID)
			switch {
			case err != nil:
				return Placed{}, err
			case queued && prev.RequestHash != hash:
				return Placed{}, ErrReusedKey
			case queued:
				return Placed{Order: prev.Order}, nil
			}
			return Placed{}, shop.Invalid("fromCart", "the cart is empty")
		}
		if lines, err = s.lines(cart.Items); err != nil {
			return Placed{}, err
		}
		cartRev = rev
	}
	now := s.cfg.Now().UTC()
	id := shop.NewID(now)
	if seen {
		// The request was recorded without its order ever queued (a
		// release before the processor recorded requests): finish it.
		id = rec.ID
	}
	o := shop.Order{ID: id, User: req.User, Lines: lines, Status: shop.OrderAccepted,
		Region: s.cfg.Region, CreatedAt: now, UpdatedAt: now}
	prev, fresh, err := s.cfg.Store.AcceptOrder(ctx, store.Intake{Order: o, IdempotencyID: idemID, RequestHash: hash})
	if err != nil {
		return Placed{}, err
	}
	if !fresh {
		// The same request, still remembered by the stream.
		if prev.RequestHash != hash {
			return Placed{}, ErrReusedKey
		}
		return Placed{Order: prev.Order}, nil
	}
	if req.FromCart {
		// Best effort: the order is accepted either way, and a cart changed
		// in the meantime is left alone.
		if err := s.cfg.Store.DeleteCart(ctx, userKey, cartRev); err != nil {
			s.cfg.Log.WarnContext(ctx, "cart not emptied after order", "order", o.ID, "error", err)
		}
	}
	return Placed{Order: o, Fresh: true}, nil
}

// lines validates the lines of an order, in a canonical order, each a
// size in the catalog.
func (s *Service) lines(asked []shop.Line) ([]shop.Line, error) {
	lines, err := shop.ValidateLines(asked)
	if err != nil {
		return nil, err
	}
	for i, l := range asked { // the client's order, so the index names its line
		if !s.cfg.Known(l.SKU) {
			return nil, shop.Invalid(fmt.Sprintf("items[%d].sku", i), "unknown SKU %q", l.SKU)
		}
	}
	return lines, nil
}

// replay answers a request whose Idempotency-Key the processor recorded:
// ErrReusedKey for another body, else the order the first request made,
// recorded or still on the queue. done is false when the order is neither
// (the request of an older release, recorded before its order was
// queued), which the caller then queues.
func (s *Service) replay(ctx context.Context, rec store.IdempotencyRecord, hash string) (p Placed, done bool, err error) {
	if rec.RequestHash != hash {
		return Placed{}, true, ErrReusedKey
	}
	prev, err := s.cfg.Store.Order(ctx, rec.UserKey, rec.ID)
	switch {
	case err == nil:
		if prev.Status == shop.OrderAccepted {
			// A release before the processor recorded orders could
			// record one without queueing it: queue it again (a repeat
			// is processed as a no-op).
			if err := s.cfg.Store.SubmitOrder(ctx, prev); err != nil {
				return Placed{}, true, err
			}
		}
	case shop.KindOf(err) == shop.KindNotFound:
		if prev, err = s.cfg.Store.PendingOrder(ctx, rec.UserKey, rec.ID); shop.KindOf(err) == shop.KindNotFound {
			return Placed{}, false, nil
		}
		if err != nil {
			return Placed{}, true, err
		}
	default:
		return Placed{}, true, err
	}
	return Placed{Order: prev}, true, nil
}

// Order reads a user's order as recorded or, before the processor
// recorded it, as queued (store.UserOrder).
func (s *Service) Order(ctx context.Context, userKey, id string) (shop.Order, error) {
	return s.cfg.Store.UserOrder(ctx, userKey, id)
}
