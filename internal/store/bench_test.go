package store_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// BenchmarkReserveOneSKU races 64 orders at a time for one SKU through
// three store clients, one on each server of a three-region cluster (fsync
// on every write), as the processors of three regions do in a launch that
// sells one shoe: each order reserves a unit and then settles it (its hold
// dropped, the unit sold), the two stock changes of a confirmed order.
// "batched" goes through the SKU's one writer per client (Reserve,
// ReleaseHolds); "each" runs every change in its own compare-and-set loop,
// as before changes were batched: the baseline, in the same run. Both
// must sell exactly b.N units.
//
//	go test -run='^$' -bench=ReserveOneSKU -benchtime=2000x ./internal/store
func BenchmarkReserveOneSKU(b *testing.B) {
	c := storetest.NewCluster(b, "a", "b", "c")
	var stores []*store.Store
	for i := range c.Nodes {
		st, _ := c.MustOpen(b, i)
		stores = append(stores, st)
	}
	for _, tc := range []struct {
		name            string
		reserve, settle func(st *store.Store, id string, l shop.Line) error
	}{
		{"batched",
			func(st *store.Store, id string, l shop.Line) error {
				_, err := st.Reserve(b.Context(), id, []shop.Line{l})
				return err
			},
			func(st *store.Store, id string, l shop.Line) error {
				return st.ReleaseHolds(b.Context(), id, []shop.Line{l}, false)
			}},
		{"each",
			func(st *store.Store, id string, l shop.Line) error { return st.ReserveEach(b.Context(), id, l) },
			func(st *store.Store, id string, l shop.Line) error { return st.ReleaseEach(b.Context(), id, l) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			sku := fmt.Sprintf("hot-%s-%d-42", tc.name, b.N)
			const initial = 1_000_000
			if err := stores[0].SetStock(b.Context(), sku, initial); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			ids := make([]string, b.N)
			for i := range ids {
				ids[i] = shop.NewID(start.Add(time.Duration(i) * time.Microsecond))
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range 64 {
				wg.Go(func() {
					for {
						i := int(next.Add(1) - 1)
						if i >= b.N {
							return
						}
						st, l := stores[i%len(stores)], shop.Line{SKU: sku, Quantity: 1}
						if err := tc.reserve(st, ids[i], l); err != nil {
							b.Error(err)
							return
						}
						if err := tc.settle(st, ids[i], l); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "orders/s")
			got, err := stores[1].Stock(b.Context(), sku)
			if err != nil {
				b.Fatal(err)
			}
			if got.Available != initial-b.N || len(got.Holds) != 0 {
				b.Fatalf("%s = %d available, %d holds; want %d sold and no holds", sku, got.Available, len(got.Holds), b.N)
			}
		})
	}
}
