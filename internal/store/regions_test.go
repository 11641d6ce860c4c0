package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/netsim"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// provisioned is a three-region cluster provisioned with an intake stream
// per region, its routes over net's links when net is not nil.
func provisioned(t *testing.T, net *netsim.Network) *storetest.Cluster {
	t.Helper()
	c := storetest.NewClusterWith(t, storetest.Options{Net: net}, "a", "b", "c")
	_, nc := c.MustOpen(t, 0)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := store.Provision(ctx, store.Config{Conn: nc, Regions: []string{"a", "b", "c"}}); err != nil {
		t.Fatal(err)
	}
	return c
}

func accept(t *testing.T, st *store.Store, user, key string) shop.Order {
	t.Helper()
	now := time.Now().UTC()
	o := shop.Order{ID: shop.NewID(now), User: user, Lines: []shop.Line{{SKU: "p1-42", Quantity: 1}},
		Status: shop.OrderAccepted, CreatedAt: now, UpdatedAt: now}
	in := store.Intake{Order: o, IdempotencyID: shop.IdempotencyID(user, key), RequestHash: "h"}
	got, fresh, err := st.AcceptOrder(t.Context(), in)
	if err != nil || !fresh || got.Order.ID != o.ID {
		t.Fatalf("accept %s's order: %+v, fresh %v, %v", user, got.Order, fresh, err)
	}
	return o
}

// queued counts the messages of stream, as its leader says.
func queued(t *testing.T, nc *nats.Conn, stream string) (uint64, error) {
	t.Helper()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	return s.CachedInfo().State.Msgs, nil
}

// A region's stamps keep its intake stream led from the region: moved
// elsewhere (as an election after a lost server moves it), its leader is
// asked back by KeepIntakeLeader.
//
// Mutation tried: placeIntakeLeader asking for the leader's own region
// instead of the client's → "INTAKE_a is led from b, want a".
func TestTheIntakeStreamIsLedFromItsRegion(t *testing.T) {
	c := provisioned(t, nil)
	st, nc := openOn(t, c, 0, store.Config{Region: "a"})
	if leaderOf(t, c, nc, store.IntakeStream("a")) == 0 {
		storetest.StepDown(t, nc, store.IntakeStream("a"), "b")
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { st.KeepIntakeLeader(ctx, 100*time.Millisecond) })
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, 30*time.Second, "INTAKE_a led from a", func() error {
		if l := c.Nodes[leaderOf(t, c, nc, store.IntakeStream("a"))].Config().Region; l != "a" {
			return fmt.Errorf("INTAKE_a is led from %s, want a", l)
		}
		return nil
	})
}

// An order goes to ORDERS, whose duplicate window covers every region,
// while ORDERS answers. With the server that leads ORDERS cut off from the
// others (as a crash: it cannot hand leadership over, and the others
// elect a new leader only after their election timeout, seconds), an
// order accepted in a surviving region goes
// to that region's own intake stream instead, without waiting for ORDERS'
// new leader; a replay of it in the region is the same order; it can be
// read back from another region; once ORDERS has a leader again, the
// region's orders go to it again; and the order processors take the
// orders of both queues.
//
// Mutation tried: publishOrder without the fallback to the intake stream
// → the second order is accepted only after ORDERS' election, on ORDERS:
// "INTAKE_b holds 0 orders (<nil>); want 1".
func TestAnOrderGoesToItsRegionsIntakeWhileTheSharedQueueHasNoLeader(t *testing.T) {
	net := netsim.New(netsim.Config{Off: true})
	t.Cleanup(func() { _ = net.Close() })
	c := provisioned(t, net)
	_, nc0 := c.MustOpen(t, 0)
	lost := leaderOf(t, c, nc0, store.StreamOrders)
	here, other := (lost+1)%3, (lost+2)%3
	region := c.Nodes[here].Config().Region
	st, nc := openOn(t, c, here, store.Config{Region: region})
	if l := leaderOf(t, c, nc, store.IntakeStream(region)); l != here {
		storetest.StepDown(t, nc, store.IntakeStream(region), region)
		waitFor(t, 30*time.Second, "the intake stream led from its region", func() error {
			if l := leaderOf(t, c, nc, store.IntakeStream(region)); l != here {
				return fmt.Errorf("%s led from %s", store.IntakeStream(region), c.Nodes[l].Config().Region)
			}
			return nil
		})
	}
	first := accept(t, st, "alice", "k1")
	for _, i := range []int{here, other} {
		l, ok := net.Link(c.Nodes[lost].Config().Region, c.Nodes[i].Config().Region)
		if !ok {
			t.Fatal("no link")
		}
		l.Cut()
	}
	second := accept(t, st, "bob", "k2")
	if in, err := queued(t, nc, store.IntakeStream(region)); err != nil || in != 1 {
		t.Fatalf("%s holds %d orders (%v); want 1", store.IntakeStream(region), in, err)
	}
	// A replay of the second, in its region: the intake stream's
	// duplicate window answers it.
	now := time.Now().UTC()
	again := store.Intake{Order: shop.Order{ID: shop.NewID(now), User: "bob", Lines: second.Lines, Status: shop.OrderAccepted, CreatedAt: now, UpdatedAt: now},
		IdempotencyID: shop.IdempotencyID("bob", "k2"), RequestHash: "h"}
	if got, fresh, err := st.AcceptOrder(t.Context(), again); err != nil || fresh || got.Order.ID != second.ID {
		t.Fatalf("replay of bob's order = %s, fresh %v, %v; want %s", got.Order.ID, fresh, err, second.ID)
	}
	// ORDERS, once it has a leader again, holds the first order only; and
	// the stamp's orders go back to it (its breaker's probe finds the
	// leader).
	waitFor(t, 40*time.Second, "ORDERS answers", func() error {
		n, err := queued(t, nc, store.StreamOrders)
		if err == nil && n != 1 {
			t.Fatalf("ORDERS holds %d orders, want 1 (the one accepted before the cut)", n)
		}
		return err
	})
	later := 0
	waitFor(t, 10*time.Second, "orders go to ORDERS again", func() error {
		later++
		accept(t, st, "carol", fmt.Sprint("later-", later))
		if n, err := queued(t, nc, store.StreamOrders); err != nil || n < 2 {
			return fmt.Errorf("ORDERS holds %d orders (%v) after %d more", n, err, later)
		}
		return nil
	})
	reader, _ := openOn(t, c, other, store.Config{Region: c.Nodes[other].Config().Region, WriteBudget: 40 * time.Second})
	// A client opened while the cut region's meta leader is replaced may
	// not list the intake streams at once: it answers "unavailable" (a
	// 503, retried) until it has, never "not found".
	for _, o := range []shop.Order{first, second} {
		waitFor(t, 30*time.Second, "order "+o.ID+" read from another region", func() error {
			got, err := reader.PendingOrder(t.Context(), shop.UserKey(o.User), o.ID)
			if shop.KindOf(err) == shop.KindNotFound {
				t.Fatalf("pending order %s read from another region: %v; an accepted order is never not found", o.ID, err)
			}
			if err != nil || got.ID != o.ID {
				return fmt.Errorf("pending order %s = %+v, %v", o.ID, got, err)
			}
			return nil
		})
	}
	var (
		mu   sync.Mutex
		took []string
	)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = reader.ProcessOrders(ctx, func(_ context.Context, in store.Intake) error {
			mu.Lock()
			defer mu.Unlock()
			took = append(took, in.Order.ID)
			return nil
		}, func(error) bool { return false }, 4)
	})
	defer func() { cancel(); wg.Wait() }()
	waitFor(t, 40*time.Second, "both orders processed", func() error {
		mu.Lock()
		defer mu.Unlock()
		if !slices.Contains(took, first.ID) || !slices.Contains(took, second.ID) {
			return fmt.Errorf("processed %v, want %s and %s", took, first.ID, second.ID)
		}
		return nil
	})
}
