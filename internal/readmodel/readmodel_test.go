package readmodel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/shop"
)

func TestProductsFilterAndPage(t *testing.T) {
	m := New()
	for _, p := range shop.SeedCatalog() {
		m.PutProduct(p)
	}
	var all []Product
	after := ""
	for range 100 {
		items, next := m.Products(Filter{}, after, 7)
		all = append(all, items...)
		if next == "" {
			break
		}
		after = next
	}
	if len(all) != len(shop.SeedCatalog()) {
		t.Fatalf("paged through %d products, want %d", len(all), len(shop.SeedCatalog()))
	}
	for i := 1; i < len(all); i++ {
		if all[i-1].ID >= all[i].ID {
			t.Fatalf("page order broken at %d: %s then %s", i, all[i-1].ID, all[i].ID)
		}
	}
	items, _ := m.Products(Filter{Category: "running"}, "", 100)
	if len(items) == 0 {
		t.Fatal("no running shoes")
	}
	for _, p := range items {
		if p.Category != "running" {
			t.Fatalf("category filter let %s (%s) through", p.ID, p.Category)
		}
	}
	brand := all[0].Brand
	items, _ = m.Products(Filter{Brand: " " + brand[:0] + brand}, "", 100)
	for _, p := range items {
		if p.Brand != brand {
			t.Fatalf("brand filter let %s through", p.Brand)
		}
	}
	// A full last page has no next cursor only when nothing follows.
	items, next := m.Products(Filter{}, "", len(all))
	if len(items) != len(all) || next != "" {
		t.Fatalf("exact page = %d items, next %q", len(items), next)
	}
}

func TestDeleteProduct(t *testing.T) {
	m := New()
	p := shop.SeedCatalog()[0]
	m.PutProduct(p)
	m.PutProduct(p)
	if m.Len() != 1 {
		t.Fatalf("Len = %d after putting one product twice", m.Len())
	}
	m.DeleteProduct(p.ID)
	if _, ok := m.Product(p.ID); ok || m.Len() != 0 {
		t.Fatal("deleted product still there")
	}
}

func TestCommentsNewestFirstPagedAndIdempotent(t *testing.T) {
	m := New()
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 25 {
		c := shop.Comment{ID: shop.NewID(base.Add(time.Duration(i) * time.Second)), ProductID: "p1", User: "u", Text: fmt.Sprint(i)}
		ids = append(ids, c.ID)
		m.PutComment(c)
		m.PutComment(c) // redelivery
	}
	var got []shop.Comment
	after := ""
	for {
		items, next := m.Comments("p1", after, 10)
		got = append(got, items...)
		if next == "" {
			break
		}
		after = next
	}
	if len(got) != 25 {
		t.Fatalf("got %d comments, want 25", len(got))
	}
	for i, c := range got {
		if c.ID != ids[24-i] {
			t.Fatalf("comment %d is %s, want newest first %s", i, c.ID, ids[24-i])
		}
	}
	if _, ok := m.Comment("p1", ids[3]); !ok {
		t.Fatal("Comment by id not found")
	}
	if _, ok := m.Comment("p2", ids[3]); ok {
		t.Fatal("Comment found under the wrong product")
	}
}

func TestRatingsLatestPerUserCounts(t *testing.T) {
	m := New()
	p := shop.SeedCatalog()[0]
	m.PutProduct(p)
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	r := func(sec int, user string, stars int) shop.Rating {
		return shop.Rating{ID: shop.NewID(base.Add(time.Duration(sec) * time.Second)), ProductID: p.ID, User: user, Stars: stars}
	}
	alice1, alice2, bob := r(1, "alice", 1), r(5, "alice", 5), r(3, "bob", 4)
	// Arrival order differs from time order: the later rating still wins.
	m.PutRating(alice2)
	m.PutRating(bob)
	m.PutRating(alice1)
	m.PutRating(bob)
	v, _ := m.Product(p.ID)
	if v.Rating.Count != 2 || v.Rating.Average != 4.5 {
		t.Fatalf("rating = %+v, want 2 ratings averaging 4.5", v.Rating)
	}
	if _, ok := m.Rating(p.ID, alice1.ID); !ok {
		t.Fatal("a replaced rating must still be found by its id")
	}
	if len(v.Sizes) != len(p.Sizes) || v.Sizes[0].SKU != shop.SKU(p.ID, p.Sizes[0]) {
		t.Fatalf("sizes = %+v", v.Sizes)
	}
}

func BenchmarkProduct(b *testing.B) {
	m := New()
	for _, p := range shop.SeedCatalog() {
		m.PutProduct(p)
	}
	id := shop.SeedCatalog()[10].ID
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := m.Product(id); !ok {
			b.Fatal("missing")
		}
	}
}

// ProductJSON is what json.Encoder writes for Product(id), whatever
// changed since it was last read: the product, the stock of a size,
// a rating, the product's deletion.
func TestProductJSONFollowsEveryChange(t *testing.T) {
	m := New()
	p := shop.SeedCatalog()[3]
	m.PutProduct(p)
	sku := shop.SKU(p.ID, p.Sizes[0])
	check := func(when string) {
		t.Helper()
		got, ok, err := m.ProductJSON(p.ID)
		view, found := m.Product(p.ID)
		if err != nil || ok != found {
			t.Fatalf("%s: ProductJSON ok %v, err %v; Product found %v", when, ok, err, found)
		}
		if !found {
			return
		}
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(view); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("%s: ProductJSON\n%s\nwant\n%s", when, got, want.Bytes())
		}
	}
	check("first read")
	check("second read")
	m.PutStock(sku, 7)
	check("stock of a size set")
	m.PutStock(shop.SKU("another-product", "42"), 3)
	check("stock of another product's size set")
	m.PutRating(shop.Rating{ProductID: p.ID, ID: shop.NewID(time.Now()), User: "ann", Stars: 4})
	check("a rating")
	changed := p
	changed.Price.AmountCents++
	changed.Sizes = append(changed.Sizes[:1:1], "47")
	m.PutProduct(changed)
	check("the product changed")
	m.PutStock(shop.SKU(p.ID, "47"), 2)
	check("stock of its new size set")
	m.DeleteStock(shop.SKU(p.ID, "47"))
	check("stock of its new size deleted")
	m.DeleteProduct(p.ID)
	check("the product deleted")
	if _, ok, _ := m.ProductJSON(p.ID); ok {
		t.Fatal("a deleted product is still answered")
	}
}
