package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

func TestConcurrentSeedersCreateEachProductOnce(t *testing.T) {
	c := storetest.NewCluster(t, "a", "b", "c")
	first, _ := c.MustOpen(t, 0)
	stores := []*store.Store{first}
	for i := 1; i < 3; i++ {
		st, _ := c.MustOpen(t, i)
		stores = append(stores, st)
	}
	products := shop.SeedCatalog()
	created := make([]int, len(stores))
	var wg sync.WaitGroup
	for i, st := range stores {
		wg.Go(func() {
			n, err := st.SeedCatalog(t.Context(), products)
			if err != nil {
				t.Error(err)
			}
			created[i] = n
		})
	}
	wg.Wait()
	if total := created[0] + created[1] + created[2]; total != len(products) {
		t.Fatalf("seeders created %v = %d products in all, want exactly %d", created, total, len(products))
	}
	if n, err := stores[1].SeedCatalog(t.Context(), products); err != nil || n != 0 {
		t.Fatalf("seeding again = %d, %v; want 0", n, err)
	}
}

func TestSubmitDeduplicatesByID(t *testing.T) {
	c := storetest.NewCluster(t, "a", "b", "c")
	st, nc := c.MustOpen(t, 1)
	cm := shop.Comment{ID: shop.NewID(time.Now()), ProductID: "p1", User: "u", Text: "once"}
	for range 3 {
		if err := st.SubmitComment(t.Context(), cm); err != nil {
			t.Fatal(err)
		}
	}
	js, _ := jetstream.New(nc)
	s, err := js.Stream(t.Context(), store.StreamWrites)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter("writes.comment.p1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Subjects["writes.comment.p1"]; got != 1 {
		t.Fatalf("the same comment submitted 3 times is %d messages, want 1", got)
	}
	// Saving twice (a redelivery) is a no-op, not an error.
	for range 2 {
		if err := st.SaveComment(t.Context(), cm); err != nil {
			t.Fatalf("save: %v", err)
		}
	}
}

func TestProbeWriteReadsBackFromLeader(t *testing.T) {
	c := storetest.NewCluster(t, "a", "b", "c")
	st, _ := c.MustOpen(t, 2)
	for i := range 20 {
		if err := st.ProbeWrite(t.Context(), "c", shop.NewID(time.Now())); err != nil {
			t.Fatalf("probe %d: %v", i, err)
		}
	}
	if err := st.ProbeRead(t.Context(), "c"); err != nil {
		t.Fatal(err)
	}
}

func TestWriteRidesOutALostServer(t *testing.T) {
	c := storetest.NewCluster(t, "a", "b", "c")
	st, _ := c.MustOpen(t, 0)
	// Whichever server leads, losing one of three keeps a quorum: every
	// acknowledged write must be readable afterwards.
	c.Nodes[2].Shutdown(false)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p := shop.SeedCatalog()[0]
	if err := st.PutProduct(ctx, p); err != nil {
		t.Fatalf("put with one server of three down: %v", err)
	}
	// A watch may end while the cluster settles after the loss (as the
	// stamps' watches do); watch again until the initial values are in.
	var got []byte
	for ctx.Err() == nil {
		err := st.Watch(ctx, store.BucketCatalog, func(key string, v []byte) {
			if key == p.ID {
				got = v
			}
		}, cancel)
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("watch ended: %v; watching again", err)
		}
	}
	if got == nil {
		t.Fatal("acknowledged product not in the catalog")
	}
}

func TestRegistryForgetsAStampWhoseHeartbeatStops(t *testing.T) {
	c := storetest.NewCluster(t, "a", "b", "c")
	st, _ := c.MustOpen(t, 0)
	watcher, _ := c.MustOpen(t, 2)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type event struct {
		id    string
		alive bool
	}
	events := make(chan event, 16)
	go func() {
		_ = watcher.WatchRegistry(ctx, func(id string, e *store.StampEntry) {
			events <- event{id, e != nil}
		}, nil)
	}()
	now := time.Now()
	for _, region := range []string{"a", "b"} {
		id := store.RegistryID(region, "1")
		if err := st.Heartbeat(ctx, store.StampEntry{ID: id, Region: region, URL: "http://127.0.0.1:1", StartedAt: now, HeartbeatAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	want := func(e event, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := time.After(within)
		for {
			select {
			case got := <-events:
				if got == e {
					return time.Since(start)
				}
			case <-deadline:
				t.Fatalf("no %+v within %s", e, within)
			}
		}
	}
	want(event{"a.1", true}, 5*time.Second)
	want(event{"b.1", true}, 5*time.Second)
	// A clean stop deregisters at once.
	if err := st.Deregister(ctx, "b.1"); err != nil {
		t.Fatal(err)
	}
	want(event{"b.1", false}, 5*time.Second)
	// A crashed stamp just stops heartbeating: it expires on its own.
	took := want(event{"a.1", false}, store.RegistryTTL+10*time.Second)
	t.Logf("an unrefreshed entry disappeared %s after the watcher saw it", took)
}
