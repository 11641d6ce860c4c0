package stamp

import (
	"context"
	"fmt"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/telemetry"
)

// knownSKU checks that sku is a size of a product in the catalog.
func (s *Stamp) knownSKU(field, sku string) error {
	if err := shop.ValidateSKU(field, sku); err != nil {
		return err
	}
	if _, ok := s.model.SKU(sku); !ok {
		return shop.Invalid(field, "unknown SKU %q", sku)
	}
	return nil
}

// stockView is how GET /api/inventory/{sku} shows one SKU's stock.
type stockView struct {
	SKU       string `json:"sku"`
	Available int    `json:"available"`
	Held      int    `json:"held"`
}

// inventorySKU returns the {sku} of an inventory route: 400 when it cannot
// be a SKU, 404 when the catalog has no such size.
func (s *Stamp) inventorySKU(r *http.Request) (string, error) {
	sku := r.PathValue("sku")
	if err := shop.ValidateSKU("sku", sku); err != nil {
		return "", err
	}
	if _, ok := s.model.SKU(sku); !ok {
		return "", shop.NotFound("SKU", sku)
	}
	return sku, nil
}

func (s *Stamp) getInventory(w http.ResponseWriter, r *http.Request) error {
	if err := s.requireAdmin(r); err != nil {
		return err
	}
	sku, err := s.inventorySKU(r)
	if err != nil {
		return err
	}
	st, err := s.cfg.Store.Stock(r.Context(), sku)
	if err != nil {
		return shop.Unavailable("stock cannot be read right now", err)
	}
	v := stockView{SKU: sku, Available: st.Available}
	for _, q := range st.Holds {
		v.Held += q
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
	return nil
}

func (s *Stamp) putInventory(w http.ResponseWriter, r *http.Request) error {
	if err := s.requireAdmin(r); err != nil {
		return err
	}
	sku, err := s.inventorySKU(r)
	if err != nil {
		return err
	}
	var in struct {
		Stock *int `json:"stock"`
	}
	if err := httpapi.DecodeJSON(r, &in); err != nil {
		return err
	}
	if in.Stock == nil {
		return shop.Invalid("stock", "is required")
	}
	if err := shop.ValidateStock(*in.Stock); err != nil {
		return err
	}
	if err := s.cfg.Store.SetStock(r.Context(), sku, *in.Stock); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, stockView{SKU: sku, Available: *in.Stock})
	return nil
}

func (s *Stamp) getCart(w http.ResponseWriter, r *http.Request) error {
	claims, err := s.cfg.Verifier.Authenticate(r)
	if err != nil {
		return err
	}
	c, _, err := s.cfg.Store.Cart(r.Context(), shop.UserKey(claims.Subject))
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (s *Stamp) putCartItem(w http.ResponseWriter, r *http.Request) error {
	claims, err := s.cfg.Verifier.Authenticate(r)
	if err != nil {
		return err
	}
	sku := r.PathValue("sku")
	if err := s.knownSKU("sku", sku); err != nil {
		return err
	}
	var in struct {
		Quantity *int `json:"quantity"`
	}
	if err := httpapi.DecodeJSON(r, &in); err != nil {
		return err
	}
	if in.Quantity == nil {
		return shop.Invalid("quantity", "is required")
	}
	if err := shop.ValidateQuantity("quantity", *in.Quantity, 0); err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	c, err := s.cfg.Store.UpdateCart(r.Context(), shop.UserKey(claims.Subject), func(c *shop.Cart) error {
		c.UpdatedAt = now
		if c.Items == nil {
			c.Items = []shop.Line{}
		}
		return c.SetItem(sku, *in.Quantity)
	})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, c)
	return nil
}

func (s *Stamp) deleteCart(w http.ResponseWriter, r *http.Request) error {
	claims, err := s.cfg.Verifier.Authenticate(r)
	if err != nil {
		return err
	}
	if err := s.cfg.Store.DeleteCart(r.Context(), shop.UserKey(claims.Subject), 0); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// orderRequest is the body of POST /api/orders: items, or the cart.
type orderRequest struct {
	Items    []shop.Line `json:"items"`
	FromCart bool        `json:"fromCart"`
}

// postOrder accepts an order: once the order's message is durably on the
// replicated order stream (one quorum write) it answers 202 with its
// Location. The same user and Idempotency-Key again, in any region within
// 24 hours, gets the same order back; with another body, 422. A replay
// the processor has recorded is found by one read of the idempotency
// record; one still on the queue, by the stream's deduplication of the
// message id (the request's idempotency id).
func (s *Stamp) postOrder(w http.ResponseWriter, r *http.Request) error {
	claims, err := s.cfg.Verifier.Authenticate(r)
	if err != nil {
		return err
	}
	key := r.Header.Get("Idempotency-Key")
	if err := shop.ValidateIdempotencyKey(key); err != nil {
		return err
	}
	var in orderRequest
	if err := httpapi.DecodeJSON(r, &in); err != nil {
		return err
	}
	if in.FromCart == (len(in.Items) > 0) {
		return shop.Invalid("items", "give either items or \"fromCart\": true")
	}
	release, err := s.admission.order(claims.Subject, s.cfg.Now())
	if err != nil {
		return err
	}
	defer release()

	ctx := r.Context()
	userKey := shop.UserKey(claims.Subject)
	idemID := shop.IdempotencyID(claims.Subject, key)
	// What the request asked for: the cart (whatever it holds by a replay)
	// or its lines, in a canonical order, so a replay listing the same lines
	// in another order is the same request.
	hash := shop.RequestHash(true, nil)
	var lines []shop.Line
	if !in.FromCart {
		if lines, err = s.orderLines(in.Items); err != nil {
			return err
		}
		hash = shop.RequestHash(false, lines)
	}
	// A replay the processor recorded is answered from what the first
	// request made, before the cart (empty by now) is read again.
	rec, seen, err := s.cfg.Store.Recall(ctx, idemID)
	if err != nil {
		return err
	}
	if seen {
		if done, err := s.replayOrder(w, r, rec, hash); done || err != nil {
			return err
		}
	}
	cartRev := uint64(0)
	if in.FromCart {
		cart, rev, err := s.cfg.Store.Cart(ctx, userKey)
		if err != nil {
			return err
		}
		if len(cart.Items) == 0 {
			// The cart the first request of a replay emptied, its order
			// still on the queue.
			prev, queued, err := s.cfg.Store.QueuedRequest(ctx, userKey, idemID)
			if err != nil {
				return err
			}
			if queued && prev.RequestHash != hash {
				return errReusedKey
			}
			if queued {
				return writeOrder(w, prev.Order, false)
			}
			return shop.Invalid("fromCart", "the cart is empty")
		}
		if lines, err = s.orderLines(cart.Items); err != nil {
			return err
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
	o := shop.Order{ID: id, User: claims.Subject, Lines: lines, Status: shop.OrderAccepted,
		Region: s.cfg.Region, CreatedAt: now, UpdatedAt: now}
	prev, fresh, err := s.cfg.Store.AcceptOrder(ctx, store.Intake{Order: o, IdempotencyID: idemID, RequestHash: hash})
	if err != nil {
		return err
	}
	if !fresh {
		// The same request, still remembered by the stream.
		if prev.RequestHash != hash {
			return errReusedKey
		}
		return writeOrder(w, prev.Order, false)
	}
	if in.FromCart {
		// Best effort: the order is accepted either way, and a cart changed
		// in the meantime is left alone.
		if err := s.cfg.Store.DeleteCart(ctx, userKey, cartRev); err != nil {
			s.log.WarnContext(ctx, "cart not emptied after order", "order", o.ID, "error", err)
		}
	}
	s.accepted.Add(ctx, 1, metric.WithAttributes(attribute.String(telemetry.AttrRegion, s.cfg.Region)))
	return writeOrder(w, o, true)
}

// errReusedKey answers a replay with another body.
var errReusedKey = shop.Errorf(shop.KindUnprocessable, "Idempotency-Key", "was used before with a different request body")

// orderLines validates the lines of an order, in a canonical order, each
// a size in the catalog.
func (s *Stamp) orderLines(asked []shop.Line) ([]shop.Line, error) {
	lines, err := shop.ValidateLines(asked)
	if err != nil {
		return nil, err
	}
	for i, l := range asked { // the client's order, so the index names its line
		if err := s.knownSKU(fmt.Sprintf("items[%d].sku", i), l.SKU); err != nil {
			return nil, err
		}
	}
	return lines, nil
}

// replayOrder answers a request whose Idempotency-Key the processor
// recorded: 422 for another body, else the order the first request made,
// recorded or still on the queue. done is false when the order is neither
// (the request of an older release, recorded before its order was queued),
// which the caller then queues.
func (s *Stamp) replayOrder(w http.ResponseWriter, r *http.Request, rec store.IdempotencyRecord, hash string) (done bool, err error) {
	if rec.RequestHash != hash {
		return true, errReusedKey
	}
	ctx := r.Context()
	prev, err := s.cfg.Store.Order(ctx, rec.UserKey, rec.ID)
	switch {
	case err == nil:
		if prev.Status == shop.OrderAccepted {
			// A release before the processor recorded orders could
			// record one without queueing it: queue it again (a repeat
			// is processed as a no-op).
			if err := s.cfg.Store.SubmitOrder(ctx, prev); err != nil {
				return true, err
			}
		}
	case shop.KindOf(err) == shop.KindNotFound:
		if prev, err = s.cfg.Store.PendingOrder(ctx, rec.UserKey, rec.ID); shop.KindOf(err) == shop.KindNotFound {
			return false, nil
		}
		if err != nil {
			return true, err
		}
	default:
		return true, err
	}
	return true, writeOrder(w, prev, false)
}

// order reads a user's order as recorded or, before the processor
// recorded it, as queued.
func (s *Stamp) order(ctx context.Context, userKey, id string) (shop.Order, error) {
	o, err := s.cfg.Store.Order(ctx, userKey, id)
	if shop.KindOf(err) == shop.KindNotFound {
		return s.cfg.Store.PendingOrder(ctx, userKey, id)
	}
	return o, err
}

// writeOrder answers with an order and its Location: 202 while it is
// being processed, 200 once final (or on a replay of a processed order).
func writeOrder(w http.ResponseWriter, o shop.Order, fresh bool) error {
	w.Header().Set("Location", "/api/orders/"+o.ID)
	status := http.StatusOK
	if fresh || !o.Status.Final() {
		status = http.StatusAccepted
	}
	httpapi.WriteJSON(w, status, o)
	return nil
}

func (s *Stamp) getOrder(w http.ResponseWriter, r *http.Request) error {
	claims, err := s.cfg.Verifier.Authenticate(r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := shop.ValidateWriteID("id", id); err != nil {
		return err
	}
	o, err := s.order(r.Context(), shop.UserKey(claims.Subject), id)
	if shop.KindOf(err) == shop.KindNotFound && claims.Admin {
		o, err = s.cfg.Store.FindOrder(r.Context(), id)
	}
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, o)
	return nil
}

func (s *Stamp) listOrders(w http.ResponseWriter, r *http.Request) error {
	claims, err := s.cfg.Verifier.Authenticate(r)
	if err != nil {
		return err
	}
	pg, err := httpapi.ParsePage(r.URL.Query())
	if err != nil {
		return err
	}
	if pg.After != "" {
		if err := shop.ValidateWriteID("cursor", pg.After); err != nil {
			return err
		}
	}
	orders, next, err := s.cfg.Store.Orders(r.Context(), shop.UserKey(claims.Subject), pg.After, pg.Limit)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, page(orders, next))
	return nil
}
