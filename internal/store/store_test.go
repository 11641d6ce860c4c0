package store_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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

// Seeding that meets a meta bucket not serving yet (as a deployment's
// first seeding can, right after the bucket was declared: "no responders")
// waits for it instead of failing: reading the marker that says whether
// seeding was done is retried as its writes are. Here the bucket is
// deleted under an open store, and declared again a second after seeding
// began.
//
// Mutation tried: the marker read made once, without retrying → "seed
// catalog: nats: no responders available for request".
func TestSeedingWaitsForAMetaBucketNotServingYet(t *testing.T) {
	c := storetest.NewCluster(t, "a", "b", "c")
	st, nc := c.MustOpen(t, 0)
	js, _ := jetstream.New(nc)
	if err := js.DeleteKeyValue(t.Context(), store.BucketMeta); err != nil {
		t.Fatal(err)
	}
	seeded := make(chan error, 1)
	go func() {
		_, err := st.SeedCatalog(t.Context(), shop.SeedCatalog())
		seeded <- err
	}()
	// The first read of the marker is made while the bucket is gone (it
	// starts at once; a second is ample): only a retry can succeed.
	time.Sleep(time.Second)
	c.MustOpen(t, 1) // declares the missing bucket again
	select {
	case err := <-seeded:
		if err != nil {
			t.Fatalf("seeding across the bucket's return: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("seeding did not end within 30 s of the bucket's return")
	}
	if n, err := st.SeedCatalog(t.Context(), shop.SeedCatalog()); err != nil || n != 0 {
		t.Fatalf("seeding again = %d, %v; want 0: the marker was set", n, err)
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

// A stamp deregistered is gone at once; one that stops heartbeating
// (crashed) expires on its own while the others heartbeat; and a watch
// that then hears nothing for RegistryQuiet (no stamp left, or a watch
// that stopped delivering) ends, so its caller sets it up again. A
// watcher with its own expiry (Registry.OwnExpiry, the edge's) hears the
// deregistrations and not the expiry.
//
// Mutation tried: OwnExpiry ignored by Watch → "the own-expiry watch
// reported a.1 gone when the registry expired it".
func TestRegistryForgetsAStampWhoseHeartbeatStops(t *testing.T) {
	c := storetest.NewCluster(t, "a", "b", "c")
	st, _ := c.MustOpen(t, 0)
	watcher, wnc := c.MustOpen(t, 2)
	reg, err := store.OpenRegistry(t.Context(), store.Config{Conn: wnc})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type event struct {
		id    string
		alive bool
	}
	events := make(chan event, 256)
	ended := make(chan error, 1)
	go func() {
		ended <- watcher.WatchRegistry(ctx, func(id string, e *store.StampEntry) {
			select {
			case events <- event{id, e != nil}:
			case <-ctx.Done():
			}
		}, nil)
	}()
	// Stamps leaving, as the watch with its own expiry hears them, in
	// the registry's order.
	left := make(chan string, 256)
	go func() {
		_ = reg.OwnExpiry().Watch(ctx, func(id string, e *store.StampEntry) {
			if e == nil {
				select {
				case left <- id:
				case <-ctx.Done():
				}
			}
		}, nil)
	}()
	heartbeat := func(id string) error {
		now := time.Now()
		region, _, _ := strings.Cut(id, ".")
		return st.Heartbeat(ctx, store.StampEntry{ID: id, Region: region, URL: "http://127.0.0.1:1/" + id, StartedAt: now, HeartbeatAt: now})
	}
	for _, id := range []string{"a.1", "c.1"} {
		if err := heartbeat(id); err != nil {
			t.Fatal(err)
		}
	}
	// b.1 runs: it heartbeats every half second until told to stop.
	stopB, bStopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(bStopped)
		for {
			if err := heartbeat("b.1"); err != nil && ctx.Err() == nil {
				t.Errorf("heartbeat b.1: %v", err)
			}
			select {
			case <-stopB:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
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
	if err := st.Deregister(ctx, "c.1"); err != nil {
		t.Fatal(err)
	}
	want(event{"c.1", false}, 5*time.Second)
	// A crashed stamp just stops heartbeating: it expires on its own.
	took := want(event{"a.1", false}, store.RegistryTTL+10*time.Second)
	t.Logf("an unrefreshed entry disappeared %s after the watcher saw it", took)
	// The last stamp leaves; then nothing more is heard: the watch gives
	// up, so that its caller sets it up again (a watch that stopped
	// delivering looks the same).
	close(stopB)
	<-bStopped
	if err := st.Deregister(ctx, "b.1"); err != nil {
		t.Fatal(err)
	}
	want(event{"b.1", false}, 5*time.Second)
	// The registry's changes reach every watch in one order: c.1's
	// deregistration, a.1's expiry, b.1's deregistration.
	for _, id := range []string{"c.1", "b.1"} {
		select {
		case got := <-left:
			if got != id {
				t.Fatalf("the own-expiry watch reported %s gone when the registry expired it; want %s's deregistration next", got, id)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the own-expiry watch did not report %s's deregistration", id)
		}
	}
	select {
	case err := <-ended:
		if err == nil || !strings.Contains(err.Error(), "nothing heard") {
			t.Fatalf("the watch ended with %v, want it to say it heard nothing", err)
		}
	case <-time.After(store.RegistryQuiet + 10*time.Second):
		t.Fatalf("the watch goes on though the registry has been quiet for %s", store.RegistryQuiet)
	}
}

// A registry index names the stamp that announces a URL, and forgets it
// when it leaves.
func TestRegistryIndexNamesTheStampAtAURL(t *testing.T) {
	c := storetest.NewCluster(t, "a")
	st, nc := c.MustOpen(t, 0)
	ctx := t.Context()
	x, err := store.FollowRegistry(ctx, store.Config{Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	now := time.Now()
	for _, e := range []store.StampEntry{
		{ID: "a.1", Region: "a", URL: "http://10.0.0.1:8081", StartedAt: now, HeartbeatAt: now},
		{ID: "a.2", Region: "a", URL: "http://10.0.0.1:8082", StartedAt: now, HeartbeatAt: now},
	} {
		if err := st.Heartbeat(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	poll := func(url, want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for x.ID(url) != want {
			if time.Now().After(deadline) {
				t.Fatalf("ID(%s) = %q, want %q", url, x.ID(url), want)
			}
			time.Sleep(20 * time.Millisecond) // polling the index, with a deadline
		}
	}
	poll("http://10.0.0.1:8081", "a.1")
	poll("http://10.0.0.1:8082", "a.2")
	if err := st.Deregister(ctx, "a.1"); err != nil {
		t.Fatal(err)
	}
	poll("http://10.0.0.1:8081", "")
	poll("http://10.0.0.1:8082", "a.2")
	if id := x.ID("http://10.0.0.1:9999"); id != "" {
		t.Errorf("ID of a URL no stamp announces = %q", id)
	}
}

// Reads of orders, carts and idempotency records go to a stream's leader.
// While a bucket has no leader (its leader's server lost, an election not
// yet won), a read waits for one within the write budget: the caller sees
// latency, never an error or a missing record. Here the store's own server
// survives but loses its quorum for a few seconds: two of three servers
// crash, one comes back.
func TestReadsWaitForALeaderlessBucket(t *testing.T) {
	c := storetest.NewCluster(t, "a", "b", "c")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// A store on every server, with a budget that covers a restart and an
	// election on a loaded machine.
	stores := make([]*store.Store, len(c.Nodes))
	conns := make([]*nats.Conn, len(c.Nodes))
	for i, n := range c.Nodes {
		nc, err := nats.Connect(n.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		conns[i] = nc
		if stores[i], err = store.Open(ctx, store.Config{Conn: nc, Replicas: 3, WriteBudget: 30 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	st := stores[0]
	now := time.Now()
	p := shop.SeedCatalog()[0]
	sku := shop.SKU(p.ID, p.Sizes[0])
	o := shop.Order{ID: shop.NewID(now), User: "alice", Status: shop.OrderAccepted, CreatedAt: now,
		Lines: []shop.Line{{SKU: sku, Quantity: 1}}}
	if _, err := st.CreateOrder(ctx, o); err != nil {
		t.Fatal(err)
	}
	rec := store.IdempotencyRecord{ID: o.ID, UserKey: shop.UserKey("alice"), RequestHash: "h"}
	if _, won, err := st.Remember(ctx, "key-1", rec); err != nil || !won {
		t.Fatalf("remember = %v, %v", won, err)
	}
	if _, err := st.UpdateCart(ctx, shop.UserKey("alice"), func(c *shop.Cart) error {
		c.Items = []shop.Line{{SKU: sku, Quantity: 2}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Read through a server that does not lead the orders bucket, so that
	// losing the other two leaves it without a leader.
	js, _ := jetstream.New(conns[0])
	info, err := js.Stream(ctx, "KV_"+store.BucketOrders)
	if err != nil {
		t.Fatal(err)
	}
	reader := slices.IndexFunc(c.Nodes, func(n *store.Node) bool { return n.Config().Region != info.CachedInfo().Cluster.Leader })
	st = stores[reader]
	var others []int
	for i, n := range c.Nodes {
		if i != reader {
			others = append(others, i)
			n.Shutdown(false) // a crash: no leadership handed over
		}
	}
	back := make(chan error, 1)
	go func() {
		time.Sleep(3 * time.Second) // the outage the reads must ride out
		n, err := store.StartNode(c.Nodes[others[0]].Config())
		if err == nil {
			t.Cleanup(func() { n.Shutdown(false) })
		}
		back <- err
	}()
	start := time.Now()
	got, err := st.Order(ctx, shop.UserKey("alice"), o.ID)
	if err != nil || got.ID != o.ID {
		t.Fatalf("order without a leader = %+v, %v", got, err)
	}
	t.Logf("the first read answered after %s", time.Since(start))
	if err := <-back; err != nil {
		t.Fatalf("restart: %v", err)
	}
	list, next, err := st.Orders(ctx, shop.UserKey("alice"), "", 10)
	if err != nil || len(list) != 1 || list[0].ID != o.ID || next != "" {
		t.Fatalf("orders = %+v (next %q), %v", list, next, err)
	}
	again, seen, err := st.Recall(ctx, "key-1")
	if err != nil || !seen || again != rec {
		t.Fatalf("recall = %+v %v %v", again, seen, err)
	}
	cart, _, err := st.Cart(ctx, shop.UserKey("alice"))
	if err != nil || len(cart.Items) != 1 || cart.Items[0].Quantity != 2 {
		t.Fatalf("cart = %+v, %v", cart, err)
	}
}

// The comment queue's age is its oldest unfinished comment's: a canary
// that no processor takes (its region gone, or given up on) shares the
// stream but never reads as a comment waiting.
func TestQueueAgeIsTheOldestUnfinishedMessageOfTheQueue(t *testing.T) {
	c := storetest.NewCluster(t, "a")
	st, nc := c.MustOpen(t, 0)
	ctx := t.Context()
	if err := st.SubmitCanary(ctx, store.Canary{Region: "gone", ID: shop.NewID(time.Now())}); err != nil {
		t.Fatal(err)
	}
	if age, pending, err := st.QueueAge(ctx, store.StreamWrites); err != nil || age != 0 || pending != 0 {
		t.Fatalf("with only a canary waiting: age %s, pending %d, %v; want 0, 0", age, pending, err)
	}
	cm := shop.Comment{ID: shop.NewID(time.Now()), ProductID: "p1", User: "u", Text: "waits"}
	if err := st.SubmitComment(ctx, cm); err != nil {
		t.Fatal(err)
	}
	submitted := time.Now()
	var (
		age     time.Duration
		pending uint64
	)
	deadline := time.Now().Add(10 * time.Second)
	// The consumer's pending count follows the stream a moment behind a
	// publish: zero is allowed until it catches up, anything else is not.
	for (pending == 0 || age < 200*time.Millisecond) && time.Now().Before(deadline) {
		var err error
		if age, pending, err = st.QueueAge(ctx, store.StreamWrites); err != nil || pending > 1 {
			t.Fatalf("with a comment waiting: pending %d, %v; want 1", pending, err)
		}
		if limit := time.Since(submitted) + time.Second; age > limit {
			t.Fatalf("a comment submitted %s ago has waited %s", time.Since(submitted), age)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if pending != 1 || age < 200*time.Millisecond {
		t.Fatalf("the waiting comment's age stayed at %s (pending %d)", age, pending)
	}
	// Processed (acknowledged), it leaves the queue; the canary stays.
	js, _ := jetstream.New(nc)
	cons, err := js.Consumer(ctx, store.StreamWrites, store.ConsumerWrites)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if age, pending, err := st.QueueAge(ctx, store.StreamWrites); err != nil || age != 0 || pending != 0 {
		t.Fatalf("after the comment was processed: age %s, pending %d, %v; want 0, 0", age, pending, err)
	}
	if _, _, err := st.QueueAge(ctx, "CATALOG"); err == nil {
		t.Fatal("the age of a stream that is not a work queue: no error")
	}
}

func TestOrdersPagesNewestFirstReadingOnlyThePage(t *testing.T) {
	c := storetest.NewCluster(t, "a")
	st, nc := c.MustOpen(t, 0)
	ctx := t.Context()
	alice := shop.UserKey("alice")
	start := time.Now()
	var ids []string // newest first
	for i := range 25 {
		o := shop.Order{ID: shop.NewID(start.Add(time.Duration(i) * time.Second)), User: "alice", Status: shop.OrderAccepted,
			Lines: []shop.Line{{SKU: "shoe-42", Quantity: 1}}, CreatedAt: start}
		if _, err := st.CreateOrder(ctx, o); err != nil {
			t.Fatal(err)
		}
		ids = append([]string{o.ID}, ids...)
	}
	// Someone else's orders are not alice's.
	if _, err := st.CreateOrder(ctx, shop.Order{ID: shop.NewID(start.Add(time.Hour)), User: "bob", Status: shop.OrderAccepted}); err != nil {
		t.Fatal(err)
	}

	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages == 3 {
			t.Fatalf("more than 3 pages of 10 for 25 orders; so far %v", got)
		}
		page, next, err := st.Orders(ctx, alice, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page {
			got = append(got, o.ID)
		}
		if next == "" {
			if len(page) != 5 {
				t.Fatalf("last page holds %d orders, want 5", len(page))
			}
			break
		}
		if len(page) != 10 || next != page[len(page)-1].ID {
			t.Fatalf("page %d holds %d orders, next %q; want 10 and the last one's id", pages, len(page), next)
		}
		after = next
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("pages list\n%v\nwant every order once, newest first:\n%v", got, ids)
	}
	// A cursor past the oldest order: an empty last page.
	if page, next, err := st.Orders(ctx, alice, shop.NewID(start.Add(-time.Hour)), 10); err != nil || len(page) != 0 || next != "" {
		t.Fatalf("past the end: %d orders, next %q, %v; want none", len(page), next, err)
	}

	// Only the page's orders are read: the oldest one, damaged, fails only
	// the page that holds it.
	js, _ := jetstream.New(nc)
	kv, _ := js.KeyValue(ctx, store.BucketOrders)
	if _, err := kv.Put(ctx, alice+"."+ids[len(ids)-1], []byte("not an order")); err != nil {
		t.Fatal(err)
	}
	if page, _, err := st.Orders(ctx, alice, "", 10); err != nil || len(page) != 10 || page[0].ID != ids[0] {
		t.Fatalf("first page with the oldest order damaged: %d orders, %v", len(page), err)
	}
	if _, _, err := st.Orders(ctx, alice, ids[19], 10); err == nil {
		t.Fatal("the page with the damaged order read without an error")
	}
}

// The passes that open the assets start short, so a request lost in an
// election is sent again soon, and grow to a bound a slow cluster meets.
func TestAssetTimeoutGrowsToItsBound(t *testing.T) {
	for pass, want := range map[int]time.Duration{0: time.Second, 1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 5 * time.Second, 60: 5 * time.Second} {
		if got := store.AssetTimeout(pass); got != want {
			t.Errorf("pass %d: %s, want %s", pass, got, want)
		}
	}
}
