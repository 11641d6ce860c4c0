package stamp

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/readmodel"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

// listPage is the body of a paged list.
type listPage[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"nextCursor,omitempty"`
}

func page[T any](items []T, next string) listPage[T] {
	p := listPage[T]{Items: items}
	if next != "" {
		p.NextCursor = httpapi.EncodeCursor(next)
	}
	return p
}

func (s *Stamp) listProducts(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	pg, err := httpapi.ParsePage(q)
	if err != nil {
		return err
	}
	f := readmodel.Filter{Category: q.Get("category"), Brand: strings.TrimSpace(q.Get("brand"))}
	if f.Category != "" && !slices.Contains(shop.Categories, f.Category) {
		return shop.Invalid("category", "must be one of %s", strings.Join(shop.Categories, ", "))
	}
	if len(f.Brand) > 200 {
		return shop.Invalid("brand", "must be at most 200 characters")
	}
	items, next := s.model.Products(f, pg.After, pg.Limit)
	httpapi.WriteJSON(w, http.StatusOK, page(items, next))
	return nil
}

// product returns the product named by the {id} path value, from the read
// model.
func (s *Stamp) product(r *http.Request) (readmodel.Product, error) {
	id := r.PathValue("id")
	if err := shop.ValidateID("id", id); err != nil {
		return readmodel.Product{}, err
	}
	p, ok := s.model.Product(id)
	if !ok {
		return readmodel.Product{}, shop.NotFound("product", id)
	}
	return p, nil
}

// getProduct answers with the read model's encoded view, made once per
// change of the product (readmodel.Model.ProductJSON): a product page is
// the most frequent read, and encoding it each time cost more than the
// rest of the request.
func (s *Stamp) getProduct(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := shop.ValidateID("id", id); err != nil {
		return err
	}
	b, ok, err := s.model.ProductJSON(id)
	switch {
	case err != nil:
		return err
	case !ok:
		return shop.NotFound("product", id)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}

// productInput is the body of PUT /api/products/{id}. The id comes from the
// path; ratings and timestamps are the system's.
type productInput struct {
	Brand       string     `json:"brand"`
	Model       string     `json:"model"`
	Category    string     `json:"category"`
	Price       shop.Money `json:"price"`
	Sizes       []string   `json:"sizes"`
	Colour      string     `json:"colour"`
	Description string     `json:"description"`
	Launch      bool       `json:"launch"`
}

func (s *Stamp) putProduct(w http.ResponseWriter, r *http.Request) error {
	if err := s.requireAdmin(r); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := shop.ValidateID("id", id); err != nil {
		return err
	}
	var in productInput
	if err := httpapi.DecodeJSON(r, &in); err != nil {
		return err
	}
	p := shop.Product{
		ID: id, Brand: in.Brand, Model: in.Model, Category: in.Category, Price: in.Price,
		Sizes: in.Sizes, Colour: in.Colour, Description: in.Description, Launch: in.Launch,
		UpdatedAt: s.cfg.Now().UTC(),
	}
	if err := p.Validate(); err != nil {
		return err
	}
	_, existed := s.model.Product(id)
	if err := s.cfg.Store.PutProduct(r.Context(), p); err != nil {
		return err
	}
	status := http.StatusOK
	if !existed {
		status = http.StatusCreated
		w.Header().Set("Location", "/api/products/"+id)
	}
	httpapi.WriteJSON(w, status, s.model.View(p))
	return nil
}

func (s *Stamp) listComments(w http.ResponseWriter, r *http.Request) error {
	p, err := s.product(r)
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
	items, next := s.model.Comments(p.ID, pg.After, pg.Limit)
	httpapi.WriteJSON(w, http.StatusOK, page(items, next))
	return nil
}

// accepted is the body of a 202 answer to an async write.
type accepted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// asyncWriteID returns the id for a new comment or rating. With an
// Idempotency-Key the client used before (in any region, within 24 hours)
// for the same write, it is the id the first request got, so a retried POST
// (by the client, or by the edge) stores one comment, not two; the same key
// with another body is 422.
func (s *Stamp) asyncWriteID(r *http.Request, user, kind, productID, body string, now time.Time) (string, error) {
	id := shop.NewID(now)
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return id, nil
	}
	if err := shop.ValidateIdempotencyKey(key); err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(kind + "\x00" + productID + "\x00" + body))
	fingerprint := hex.EncodeToString(sum[:16])
	rec, won, err := s.cfg.Store.Remember(r.Context(), shop.IdempotencyID(user, kind+"\x00"+key),
		store.IdempotencyRecord{ID: id, UserKey: shop.UserKey(user), RequestHash: fingerprint})
	if err != nil {
		return "", err
	}
	if !won && rec.RequestHash != fingerprint {
		return "", shop.Errorf(shop.KindUnprocessable, "Idempotency-Key", "was used before with a different request")
	}
	return rec.ID, nil
}

func writeAccepted(w http.ResponseWriter, location, id string) {
	w.Header().Set("Location", location)
	httpapi.WriteJSON(w, http.StatusAccepted, accepted{ID: id, Status: "accepted"})
}

func (s *Stamp) postComment(w http.ResponseWriter, r *http.Request) error {
	claims, err := s.cfg.Verifier.Authenticate(r)
	if err != nil {
		return err
	}
	p, err := s.product(r)
	if err != nil {
		return err
	}
	var in struct {
		Text string `json:"text"`
	}
	if err := httpapi.DecodeJSON(r, &in); err != nil {
		return err
	}
	if err := shop.ValidateCommentText(in.Text); err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	if err := s.admission.comment(claims.Subject, now); err != nil {
		return err
	}
	id, err := s.asyncWriteID(r, claims.Subject, "comment", p.ID, in.Text, now)
	if err != nil {
		return err
	}
	c := shop.Comment{ID: id, ProductID: p.ID, User: claims.Subject, Text: in.Text, CreatedAt: now}
	if err := s.cfg.Store.SubmitComment(r.Context(), c); err != nil {
		return err
	}
	writeAccepted(w, "/api/products/"+p.ID+"/comments/"+c.ID, c.ID)
	return nil
}

func (s *Stamp) getComment(w http.ResponseWriter, r *http.Request) error {
	return getProcessed(s, w, r, "commentId", "comment", s.model.Comment)
}

// getProcessed answers GET on the Location of an async write: 404 until the
// background processor has stored it and the read model has it, then 200.
func getProcessed[T any](s *Stamp, w http.ResponseWriter, r *http.Request, param, what string, lookup func(productID, id string) (T, bool)) error {
	p, err := s.product(r)
	if err != nil {
		return err
	}
	id := r.PathValue(param)
	if err := shop.ValidateWriteID(param, id); err != nil {
		return err
	}
	v, ok := lookup(p.ID, id)
	if !ok {
		return shop.NotFound(what+" (unknown, or not processed yet)", id)
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
	return nil
}

func (s *Stamp) postRating(w http.ResponseWriter, r *http.Request) error {
	claims, err := s.cfg.Verifier.Authenticate(r)
	if err != nil {
		return err
	}
	p, err := s.product(r)
	if err != nil {
		return err
	}
	var in struct {
		Stars *int `json:"stars"`
	}
	if err := httpapi.DecodeJSON(r, &in); err != nil {
		return err
	}
	if in.Stars == nil {
		return shop.Invalid("stars", "is required")
	}
	if err := shop.ValidateStars(*in.Stars); err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	if err := s.admission.rating(claims.Subject, now); err != nil {
		return err
	}
	id, err := s.asyncWriteID(r, claims.Subject, "rating", p.ID, strconv.Itoa(*in.Stars), now)
	if err != nil {
		return err
	}
	rt := shop.Rating{ID: id, ProductID: p.ID, User: claims.Subject, Stars: *in.Stars, CreatedAt: now}
	if err := s.cfg.Store.SubmitRating(r.Context(), rt); err != nil {
		return err
	}
	writeAccepted(w, "/api/products/"+p.ID+"/ratings/"+rt.ID, rt.ID)
	return nil
}

func (s *Stamp) getRating(w http.ResponseWriter, r *http.Request) error {
	return getProcessed(s, w, r, "ratingId", "rating", s.model.Rating)
}

// drainStatus is the body of the drain endpoints.
type drainStatus struct {
	Region  string    `json:"region"`
	Drained bool      `json:"drained"`
	At      time.Time `json:"at"`
}

func (s *Stamp) drain(on bool) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := s.requireAdmin(r); err != nil {
			return err
		}
		s.prober.SetDrained(on)
		httpapi.WriteJSON(w, http.StatusOK, drainStatus{Region: s.cfg.Region, Drained: on, At: time.Now().UTC()})
		return nil
	}
}

func (s *Stamp) drainState(w http.ResponseWriter, r *http.Request) error {
	if err := s.requireAdmin(r); err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, drainStatus{Region: s.cfg.Region, Drained: s.prober.Drained(), At: time.Now().UTC()})
	return nil
}

func (s *Stamp) requireAdmin(r *http.Request) error {
	claims, err := s.cfg.Verifier.Authenticate(r)
	if err != nil {
		return err
	}
	return auth.RequireAdmin(claims)
}
