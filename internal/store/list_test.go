package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/netsim"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// An order whose record was acknowledged is in the very next list of its
// user's orders, even while one replica of the orders bucket trails the
// others by 400 ms. A key listing through an ordered consumer is placed by
// the engine on any replica of the stream, the trailing one included, and
// misses what that replica has not received yet; the list asks the
// stream's leader instead.
//
// Mutation tried: Orders listing with the bucket's ListKeysFiltered (the
// earlier listKeys) → "order 0 of 15 missing from the list right after
// its write: newest listed []" (order 4 in one of three runs: about a
// third of listings land on the trailing replica).
func TestAnAcknowledgedOrderIsInTheNextList(t *testing.T) {
	net := netsim.New(netsim.Config{Off: true})
	t.Cleanup(func() { _ = net.Close() })
	c := storetest.NewClusterWith(t, storetest.Options{Net: net}, "a", "b", "c")
	st, nc := c.MustOpen(t, 0)
	bucket := "KV_" + store.BucketOrders

	// The stream's leader and the engine's meta leader on different
	// servers, so a consumer's placement reaches the third, trailing, one
	// before the records the stream's leader sent it.
	region := func(i int) string { return c.Nodes[i].Config().Region }
	var x, m int
	waitUntil(t, 30*time.Second, "a meta leader", func() bool {
		m = slices.IndexFunc(c.Nodes, func(n *store.Node) bool { return n.Server().JetStreamIsLeader() })
		return m >= 0
	})
	if x = leaderOf(t, c, nc, bucket); x == m {
		stepDown(t, nc, bucket, region((m+1)%3))
		waitUntil(t, 30*time.Second, "a leader off the meta leader", func() bool {
			x = leaderOf(t, c, nc, bucket)
			return x != m
		})
	}
	z := 3 - x - m
	l, ok := net.Link(region(x), region(z))
	if !ok {
		t.Fatalf("no link %s-%s", region(x), region(z))
	}
	if err := l.SetLatency(400*time.Millisecond, 0); err != nil {
		t.Fatal(err)
	}

	const rounds = 15
	now := time.Now()
	for i := range rounds {
		o := shop.Order{ID: shop.NewID(now.Add(time.Duration(i) * time.Millisecond)), User: "alice", Status: shop.OrderAccepted,
			Lines: []shop.Line{{SKU: "shoe-42", Quantity: 1}}, CreatedAt: now}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		if err := st.CreateOrder(ctx, o); err != nil {
			cancel()
			t.Fatalf("order %d: %v", i, err)
		}
		page, _, err := st.Orders(ctx, shop.UserKey("alice"), "", 1)
		cancel()
		if err != nil {
			t.Fatalf("list after order %d: %v", i, err)
		}
		if len(page) != 1 || page[0].ID != o.ID {
			t.Fatalf("order %d of %d missing from the list right after its write: newest listed %v", i, rounds, page)
		}
	}
}
