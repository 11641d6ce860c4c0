package stamp

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/contoso/shoes/internal/checkout"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
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

// postOrder authenticates and decodes an order request; the checkout
// service decides what it makes.
func (s *Stamp) postOrder(w http.ResponseWriter, r *http.Request) error {
	claims, err := s.cfg.Verifier.Authenticate(r)
	if err != nil {
		return err
	}
	var in orderRequest
	if err := httpapi.DecodeJSON(r, &in); err != nil {
		return err
	}
	placed, err := s.checkout.Place(r.Context(), checkout.Request{
		User: claims.Subject, Key: r.Header.Get("Idempotency-Key"), Items: in.Items, FromCart: in.FromCart})
	if err != nil {
		return err
	}
	if placed.Fresh {
		s.accepted.Add(r.Context(), 1, metric.WithAttributes(attribute.String(telemetry.AttrRegion, s.cfg.Region)))
	}
	return writeOrder(w, placed.Order, placed.Fresh)
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
	o, err := s.checkout.Order(r.Context(), shop.UserKey(claims.Subject), id)
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
