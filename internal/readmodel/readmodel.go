// Package readmodel keeps a stamp's in-memory view of the catalog, its
// comments and its ratings, so that reads are answered in the region without
// a call to the store. Watches on the replicated store feed it; it knows
// nothing about where its data comes from.
package readmodel

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/contoso/shoes/internal/shop"
)

// Size is one size of a product as the API shows it, with the units still
// available (as of the read model: it may lag the store by about a second).
type Size struct {
	Size  string `json:"size"`
	SKU   string `json:"sku"`
	Stock int    `json:"stock"`
}

// Product is a product as the API shows it: the stored product with its
// sizes' SKUs and its rating summary.
type Product struct {
	ID          string             `json:"id"`
	Brand       string             `json:"brand"`
	Model       string             `json:"model"`
	Category    string             `json:"category"`
	Price       shop.Money         `json:"price"`
	Sizes       []Size             `json:"sizes"`
	Colour      string             `json:"colour"`
	Description string             `json:"description"`
	Launch      bool               `json:"launch"`
	Rating      shop.RatingSummary `json:"rating"`
	UpdatedAt   string             `json:"updatedAt"`
}

// Filter selects products; empty fields select all.
type Filter struct {
	Category string // exact
	Brand    string // case-insensitive
}

// Model is the read model. Its zero value is not usable; call New.
type Model struct {
	mu sync.RWMutex // guards every field below
	// products by id, and ids in order for paging.
	products map[string]shop.Product
	ids      []string
	// comments per product, newest (highest id) first, and by id.
	comments     map[string][]shop.Comment
	commentByKey map[string]shop.Comment // "<product>.<id>"
	// ratings by "<product>.<id>", and each product's current rating per user.
	ratingByKey map[string]shop.Rating
	userRatings map[string]map[string]shop.Rating // product -> user -> latest rating
	ratingSums  map[string]ratingSum              // product -> sum over userRatings
	// stock per SKU, and which product and size each catalog SKU is.
	stock map[string]int
	skus  map[string]SKURef

	// encoded holds products as ProductJSON answers them, made on the
	// first read after anything a product's view shows changed (the
	// product, the stock of its sizes, its ratings); a writer forgets its
	// product's. encMu guards it; a reader stores into it only while it
	// holds mu for reading, so that no writer (which holds mu) forgets
	// a view between a reader making it and storing it.
	encMu   sync.Mutex
	encoded map[string][]byte
}

// SKURef names the product and size of a SKU.
type SKURef struct{ ProductID, Size string }

type ratingSum struct{ stars, count int }

// New returns an empty read model.
func New() *Model {
	return &Model{
		products:     map[string]shop.Product{},
		comments:     map[string][]shop.Comment{},
		commentByKey: map[string]shop.Comment{},
		ratingByKey:  map[string]shop.Rating{},
		userRatings:  map[string]map[string]shop.Rating{},
		ratingSums:   map[string]ratingSum{},
		stock:        map[string]int{},
		skus:         map[string]SKURef{},
		encoded:      map[string][]byte{},
	}
}

// changed forgets the encoded view of product id; m.mu must be held.
func (m *Model) changed(id string) {
	m.encMu.Lock()
	delete(m.encoded, id)
	m.encMu.Unlock()
}

// ProductJSON returns product id as GET /api/products/{id} answers it:
// the JSON of Product(id) and a newline, as json.Encoder writes it. It is
// made once per change of what the view shows, and shared: the caller
// must not modify it.
func (m *Model) ProductJSON(id string) ([]byte, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	p, ok := m.products[id]
	if !ok {
		return nil, false, nil
	}
	m.encMu.Lock()
	b, cached := m.encoded[id]
	m.encMu.Unlock()
	if cached {
		return b, true, nil
	}
	b, err := json.Marshal(m.view(p))
	if err != nil {
		return nil, false, fmt.Errorf("encode product %s: %w", id, err)
	}
	b = append(b, '\n')
	m.encMu.Lock()
	m.encoded[id] = b
	m.encMu.Unlock()
	return b, true, nil
}

// PutProduct adds or replaces a product.
func (m *Model) PutProduct(p shop.Product) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.products[p.ID]; !ok {
		i, _ := slices.BinarySearch(m.ids, p.ID)
		m.ids = slices.Insert(m.ids, i, p.ID)
	} else {
		m.forgetSKUs(old)
	}
	m.products[p.ID] = p
	m.changed(p.ID)
	for _, size := range p.Sizes {
		m.skus[shop.SKU(p.ID, size)] = SKURef{ProductID: p.ID, Size: size}
	}
}

// forgetSKUs must be called with m.mu held.
func (m *Model) forgetSKUs(p shop.Product) {
	for _, size := range p.Sizes {
		delete(m.skus, shop.SKU(p.ID, size))
	}
}

// PutStock records the units of sku still available.
func (m *Model) PutStock(sku string, available int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stock[sku] = available
	if ref, ok := m.skus[sku]; ok {
		m.changed(ref.ProductID)
	}
}

// DeleteStock forgets the stock of sku.
func (m *Model) DeleteStock(sku string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.stock, sku)
	if ref, ok := m.skus[sku]; ok {
		m.changed(ref.ProductID)
	}
}

// SKU reports which product and size sku is, if it is in the catalog.
func (m *Model) SKU(sku string) (SKURef, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ref, ok := m.skus[sku]
	return ref, ok
}

// DeleteProduct removes a product; its comments and ratings stay, so they
// reappear if the product is created again.
func (m *Model) DeleteProduct(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.products[id]
	if !ok {
		return
	}
	m.forgetSKUs(p)
	delete(m.products, id)
	m.changed(id)
	if i, found := slices.BinarySearch(m.ids, id); found {
		m.ids = slices.Delete(m.ids, i, i+1)
	}
}

// PutComment adds a comment; adding it again changes nothing.
func (m *Model) PutComment(c shop.Comment) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := c.ProductID + "." + c.ID
	if _, ok := m.commentByKey[key]; ok {
		return
	}
	m.commentByKey[key] = c
	list := m.comments[c.ProductID]
	// newest first: descending by id
	i := sort.Search(len(list), func(i int) bool { return list[i].ID < c.ID })
	m.comments[c.ProductID] = slices.Insert(list, i, c)
}

// PutRating adds a rating. A user's latest rating of a product (by id, which
// is time-ordered) is the one that counts.
func (m *Model) PutRating(r shop.Rating) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ratingByKey[r.ProductID+"."+r.ID] = r
	users := m.userRatings[r.ProductID]
	if users == nil {
		users = map[string]shop.Rating{}
		m.userRatings[r.ProductID] = users
	}
	cur, ok := users[r.User]
	if ok && cur.ID >= r.ID {
		return
	}
	sum := m.ratingSums[r.ProductID]
	if ok {
		sum.stars -= cur.Stars
		sum.count--
	}
	users[r.User] = r
	sum.stars += r.Stars
	sum.count++
	m.ratingSums[r.ProductID] = sum
	m.changed(r.ProductID)
}

// Len reports how many products the model holds.
func (m *Model) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.ids)
}

// Product returns one product.
func (m *Model) Product(id string) (Product, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	p, ok := m.products[id]
	if !ok {
		return Product{}, false
	}
	return m.view(p), true
}

// Products returns up to limit products matching f with ids after the
// given one, in id order, and the id to continue after ("" at the end).
func (m *Model) Products(f Filter, after string, limit int) ([]Product, string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	start, _ := slices.BinarySearch(m.ids, after)
	if start < len(m.ids) && m.ids[start] == after {
		start++
	}
	out := make([]Product, 0, min(limit, len(m.ids)))
	for i := start; i < len(m.ids); i++ {
		p := m.products[m.ids[i]]
		if (f.Category != "" && p.Category != f.Category) || (f.Brand != "" && !strings.EqualFold(p.Brand, f.Brand)) {
			continue
		}
		if len(out) == limit {
			return out, out[len(out)-1].ID
		}
		out = append(out, m.view(p))
	}
	return out, ""
}

// View returns how the API shows p, with the product's current rating.
func (m *Model) View(p shop.Product) Product {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.view(p)
}

// view must be called with m.mu held.
func (m *Model) view(p shop.Product) Product {
	sizes := make([]Size, len(p.Sizes))
	for i, s := range p.Sizes {
		sku := shop.SKU(p.ID, s)
		sizes[i] = Size{Size: s, SKU: sku, Stock: m.stock[sku]}
	}
	var sum shop.RatingSummary
	if rs := m.ratingSums[p.ID]; rs.count > 0 {
		sum.Count = rs.count
		sum.Average = math.Round(float64(rs.stars)/float64(rs.count)*100) / 100
	}
	return Product{
		ID: p.ID, Brand: p.Brand, Model: p.Model, Category: p.Category, Price: p.Price,
		Sizes: sizes, Colour: p.Colour, Description: p.Description, Launch: p.Launch,
		Rating: sum, UpdatedAt: p.UpdatedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
	}
}

// Comments returns up to limit comments of a product older than the one
// with id after (all when after is empty), newest first, and the id to
// continue after ("" at the end).
func (m *Model) Comments(productID, after string, limit int) ([]shop.Comment, string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	list := m.comments[productID]
	start := 0
	if after != "" {
		start = sort.Search(len(list), func(i int) bool { return list[i].ID < after })
	}
	end := min(start+limit, len(list))
	out := slices.Clone(list[start:end])
	next := ""
	if end < len(list) && len(out) > 0 {
		next = out[len(out)-1].ID
	}
	return out, next
}

// Comment returns one processed comment.
func (m *Model) Comment(productID, id string) (shop.Comment, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	c, ok := m.commentByKey[productID+"."+id]
	return c, ok
}

// Rating returns one processed rating.
func (m *Model) Rating(productID, id string) (shop.Rating, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, ok := m.ratingByKey[productID+"."+id]
	return r, ok
}
