package store_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/contoso/shoes/internal/netsim"
	"github.com/contoso/shoes/internal/poll"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// openOn opens a store on node i of c with cfg (its Conn and, when zero,
// its Replicas filled in), and returns it with its connection.
func openOn(t *testing.T, c *storetest.Cluster, i int, cfg store.Config) (*store.Store, *nats.Conn) {
	t.Helper()
	nc, err := nats.Connect(c.Nodes[i].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cfg.Conn = nc
	if cfg.Replicas == 0 {
		cfg.Replicas = min(3, len(c.Nodes))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st, nc
}

// leaderOf waits for stream to have a leader and returns the index in c of
// the node that leads it.
func leaderOf(t *testing.T, c *storetest.Cluster, nc *nats.Conn, stream string) int {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		s, err := js.Stream(ctx, stream)
		cancel()
		if err == nil && s.CachedInfo().Cluster != nil {
			leader := s.CachedInfo().Cluster.Leader
			if i := slices.IndexFunc(c.Nodes, func(n *store.Node) bool { return n.Config().Region == leader }); i >= 0 {
				return i
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s has no leader after 30 s (last error: %v)", stream, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitUntil polls cond every 50 ms until it holds, failing the test with
// what after within.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	waitFor(t, within, what, func() error {
		if cond() {
			return nil
		}
		return errors.New("not yet")
	})
}

// waitFor polls cond every 50 ms until it returns nil, failing the test
// with what and its last error after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	poll.Until(t, within, 50*time.Millisecond, func() error {
		if err := cond(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// An Idempotency-Key whose create reached the bucket's leader just as that
// leader was cut off from the other regions: the create was proposed but
// never committed, and its retry, answered by the same leader, hears that
// the key exists (a write to it is in flight); the leader, reading its own
// store, then finds nothing. Remember takes that "exists, then not found"
// for what it is, a create that never committed, and creates again until
// the cluster, with a new leader, takes it: the caller gets its own record
// (won, or not won when the answer of the create that did commit was lost
// in turn). A second key, wanted meanwhile by a caller on the other side
// of the partition, is won by that caller, and the cut-off caller gets its
// record: one winner, one record, per key.
//
// Mutation tried: the "create again" branch of Remember removed (a not
// found after exists returned as unavailable at once) → "remember key-1 =
// {ID:order-a1 …}, won false, unavailable: the order could not be read
// back; retry with the same Idempotency-Key: remember key-1: nats: key not
// found; want {ID:order-a1 …}".
func TestRememberCreatesAgainWhenItsFirstCreateNeverCommitted(t *testing.T) {
	net := netsim.New(netsim.Config{Off: true})
	t.Cleanup(func() { _ = net.Close() })
	c := storetest.NewClusterWith(t, storetest.Options{Net: net}, "a", "b", "c")
	_, nc := c.MustOpen(t, 0)
	x := leaderOf(t, c, nc, "KV_"+store.BucketIdempotency)
	y := (x + 1) % len(c.Nodes)
	// Short attempts, so the cut-off caller retries within the leader's
	// term; a budget that outlasts the election and the heal.
	cfg := store.Config{OpTimeout: 500 * time.Millisecond, WriteBudget: 45 * time.Second}
	cutOff, _ := openOn(t, c, x, cfg)
	other, _ := openOn(t, c, y, cfg)

	region := func(i int) string { return c.Nodes[i].Config().Region }
	var links []*netsim.Link
	for i := range c.Nodes {
		if i != x {
			l, ok := net.Link(region(x), region(i))
			if !ok {
				t.Fatalf("no link %s-%s", region(x), region(i))
			}
			links = append(links, l)
		}
	}
	if !c.Nodes[x].Server().JetStreamIsStreamLeader("$G", "KV_"+store.BucketIdempotency) {
		t.Fatalf("region %s does not see itself leading the idempotency bucket", region(x))
	}
	start := time.Now()
	for _, l := range links {
		l.Cut()
	}
	healed := false
	heal := func() {
		if !healed {
			for _, l := range links {
				l.Heal()
			}
			healed = true
		}
	}
	t.Cleanup(heal)

	type result struct {
		rec store.IdempotencyRecord
		won bool
		err error
	}
	remember := func(st *store.Store, key string, rec store.IdempotencyRecord) <-chan result {
		ch := make(chan result, 1)
		go func() {
			got, won, err := st.Remember(t.Context(), key, rec)
			ch <- result{got, won, err}
		}()
		return ch
	}
	recA1 := store.IdempotencyRecord{ID: "order-a1", UserKey: "alice", RequestHash: "h-a1"}
	recA2 := store.IdempotencyRecord{ID: "order-a2", UserKey: "alice", RequestHash: "h-a2"}
	recB2 := store.IdempotencyRecord{ID: "order-b2", UserKey: "alice", RequestHash: "h-b2"}
	a1 := remember(cutOff, "key-1", recA1)
	a2 := remember(cutOff, "key-2", recA2)
	b2 := remember(other, "key-2", recB2)

	// The other side elects a new leader and takes the rival's create.
	var gotB2 result
	select {
	case gotB2 = <-b2:
	case <-time.After(40 * time.Second):
		t.Fatal("the caller on the majority side got no answer within 40 s")
	}
	if gotB2.err != nil || !gotB2.won || gotB2.rec != recB2 {
		t.Fatalf("remember key-2 on the majority side = %+v, won %v, %v; want its own record, won", gotB2.rec, gotB2.won, gotB2.err)
	}
	// The majority side leads the bucket in a newer term now: the cut-off
	// leader's uncommitted create can never commit, and it follows the
	// new leader once the links are back.
	t.Logf("the majority side answered %s after the cut", time.Since(start))
	heal()

	got := map[string]result{}
	for key, ch := range map[string]<-chan result{"key-1": a1, "key-2": a2} {
		select {
		case got[key] = <-ch:
		case <-time.After(45 * time.Second):
			t.Fatalf("remember %s on the cut-off region: no answer within 45 s of the heal", key)
		}
		t.Logf("remember %s on the cut-off region answered %s after the cut: won %v", key, time.Since(start), got[key].won)
	}
	if r := got["key-1"]; r.err != nil || r.rec != recA1 {
		t.Errorf("remember key-1 = %+v, won %v, %v; want %+v", r.rec, r.won, r.err, recA1)
	}
	if r := got["key-2"]; r.err != nil || r.won || r.rec != recB2 {
		t.Errorf("remember key-2 = %+v, won %v, %v; want the other side's %+v, not won", r.rec, r.won, r.err, recB2)
	}
	// Until it hears of the new term, the cut-off server may still answer
	// as the leader, from what it has: read once it has stepped down.
	waitUntil(t, 30*time.Second, "the cut-off server steps down", func() bool {
		return !c.Nodes[x].Server().JetStreamIsStreamLeader("$G", "KV_"+store.BucketIdempotency)
	})
	for key, want := range map[string]store.IdempotencyRecord{"key-1": recA1, "key-2": recB2} {
		for _, st := range []*store.Store{cutOff, other} {
			if rec, ok, err := st.Recall(t.Context(), key); err != nil || !ok || rec != want {
				t.Errorf("recall %s = %+v, %v, %v; want %+v", key, rec, ok, err, want)
			}
		}
	}
	// One record per key: the bucket's stream holds one message for each,
	// and no other message was ever written to it (its last sequence is 2),
	// so no create won twice. A stream info asked right after the heal may
	// meet another leader change: it is asked again until it answers.
	js, _ := jetstream.New(nc)
	waitFor(t, 20*time.Second, "the idempotency bucket holding key-1 and key-2, once each, and nothing else ever", func() error {
		s, err := js.Stream(t.Context(), "KV_"+store.BucketIdempotency)
		if err != nil {
			return err
		}
		info, err := s.Info(t.Context(), jetstream.WithSubjectFilter("$KV."+store.BucketIdempotency+".>"))
		if err != nil {
			return err
		}
		prefix := "$KV." + store.BucketIdempotency + "."
		n1, n2 := info.State.Subjects[prefix+"key-1"], info.State.Subjects[prefix+"key-2"]
		if n1 != 1 || n2 != 1 || info.State.Msgs != 2 || info.State.LastSeq != 2 {
			return fmt.Errorf("key-1 stored %d times, key-2 %d times, %d messages, last sequence %d", n1, n2, info.State.Msgs, info.State.LastSeq)
		}
		return nil
	})
}

// stockIs checks sku's stock, read from the stream leader through st:
// available units and the holds, to the unit.
func stockIs(t *testing.T, st *store.Store, sku string, available int, holds map[string]int) {
	t.Helper()
	got, err := st.Stock(t.Context(), sku)
	if err != nil {
		t.Fatalf("stock %s: %v", sku, err)
	}
	if got.Available != available || !maps.Equal(got.Holds, holds) {
		t.Errorf("stock %s = %d available, holds %v; want %d available, holds %v", sku, got.Available, got.Holds, available, holds)
	}
}

// setStocks sets the available units of every SKU in stock.
func setStocks(t *testing.T, st *store.Store, stock map[string]int) {
	t.Helper()
	for sku, n := range stock {
		if err := st.SetStock(t.Context(), sku, n); err != nil {
			t.Fatal(err)
		}
	}
}

// reservedExactly checks that order id holds each line's quantity of its
// SKU and that each SKU's available stock is what stock had less that.
func reservedExactly(t *testing.T, st *store.Store, id string, lines []shop.Line, stock map[string]int) {
	t.Helper()
	for _, l := range lines {
		stockIs(t, st, l.SKU, stock[l.SKU]-l.Quantity, map[string]int{id: l.Quantity})
	}
}

// skusOf lists the SKUs of lines, sorted, as Reservation.Made does.
func skusOf(lines []shop.Line) []string {
	skus := make([]string, 0, len(lines))
	for _, l := range lines {
		skus = append(skus, l.SKU)
	}
	slices.Sort(skus)
	return skus
}

// settleRejected settles order id, of lines, as rejected: its holds go
// back, whoever made them.
func settleRejected(t *testing.T, st *store.Store, id string, lines []shop.Line) {
	t.Helper()
	o := shop.Order{ID: id, User: "alice", Lines: lines, Status: shop.OrderRejected, Reason: shop.ReasonOutOfStock}
	if err := st.Settle(t.Context(), o, store.Version{}); err != nil {
		t.Fatalf("settle %s rejected: %v", id, err)
	}
}

// untouched checks that every SKU of lines has its stock of stock and no
// hold.
func untouched(t *testing.T, st *store.Store, lines []shop.Line, stock map[string]int) {
	t.Helper()
	for _, l := range lines {
		stockIs(t, st, l.SKU, stock[l.SKU], nil)
	}
}

// spanHook is a span processor that calls onEnd with every span that
// ends: a way to act at a precise point inside a store call, through the
// tracing it already does.
type spanHook struct{ onEnd func(sdktrace.ReadOnlySpan) }

func (h spanHook) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (h spanHook) OnEnd(s sdktrace.ReadOnlySpan)                   { h.onEnd(s) }
func (h spanHook) Shutdown(context.Context) error                  { return nil }
func (h spanHook) ForceFlush(context.Context) error                { return nil }

// afterFirstLine returns ctx for one Reserve call that runs crash once,
// right after the call's first line is written (its compare-and-set on the
// inventory succeeded) and before the second line is read.
func afterFirstLine(t *testing.T, ctx context.Context, crash func()) context.Context {
	t.Helper()
	var once sync.Once
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spanHook{onEnd: func(s sdktrace.ReadOnlySpan) {
		if s.Name() == "update "+store.BucketInventory && s.Status().Code != codes.Error {
			once.Do(crash)
		}
	}}))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(ctx, "process order")
	t.Cleanup(func() { span.End() })
	return ctx
}

var _ sdktrace.SpanProcessor = spanHook{}

// Reserving an order again while its holds stand (a redelivery, here to
// another region's processor) takes nothing more and makes no hold: the
// stock is exact to the unit, for an order of one line and one of
// several. Releasing holds twice is as harmless: a confirmed order's
// units stay sold, a rejected order's come back once.
//
// Mutation tried: the held check in Reserve's update func removed →
// "reserve … again = [twice-a-42], <nil>; want nothing made" and
// "stock twice-a-42 = 1 available, holds map[…:2]; want 3 available".
func TestReserveTwiceTakesTheStockOnce(t *testing.T) {
	c := storetest.NewCluster(t, "a", "b", "c")
	first, _ := c.MustOpen(t, 0)
	again, _ := c.MustOpen(t, 1)
	stock := map[string]int{"twice-a-42": 5, "twice-b-42": 4, "twice-c-42": 3, "twice-d-42": 7}
	setStocks(t, first, stock)
	now := time.Now()
	orders := map[string][]shop.Line{
		shop.NewID(now): {{SKU: "twice-a-42", Quantity: 2}},
		shop.NewID(now.Add(time.Millisecond)): {{SKU: "twice-b-42", Quantity: 1}, {SKU: "twice-c-42", Quantity: 3},
			{SKU: "twice-d-42", Quantity: 2}},
	}
	for id, lines := range orders {
		res, err := first.Reserve(t.Context(), id, lines)
		if err != nil || !slices.Equal(res.Made(), skusOf(lines)) {
			t.Fatalf("reserve %s = %v, %v; want every line made", id, res.Made(), err)
		}
		res, err = again.Reserve(t.Context(), id, lines)
		if err != nil || len(res.Made()) != 0 {
			t.Errorf("reserve %s again = %v, %v; want nothing made", id, res.Made(), err)
		}
		reservedExactly(t, again, id, lines, stock)
	}
	// Settle: the one-line order confirmed (its units stay sold), the other
	// rejected (its units come back), each released twice.
	for id, lines := range orders {
		restore := len(lines) > 1
		for _, st := range []*store.Store{first, again} {
			if err := st.ReleaseHolds(t.Context(), id, lines, restore); err != nil {
				t.Fatalf("release %s (restore %v): %v", id, restore, err)
			}
		}
		for _, l := range lines {
			want := stock[l.SKU] - l.Quantity
			if restore {
				want = stock[l.SKU]
			}
			stockIs(t, first, l.SKU, want, nil)
		}
	}
}

// A reservation cut short between lines (its processor crashed, its
// context ended) leaves holds that the redelivery finds: it makes only
// the lines still missing, and the order ends with all of its lines held,
// each SKU exact to the unit. When a later line cannot be filled, the
// holds already made, by this call or the interrupted one, stand until the
// order is rejected, and settling it gives every one back: all or nothing.
//
// Mutations tried: the errSkip case of Reserve counting the line as made
// → "redelivery = [cut-first-a-42 cut-first-b-42 cut-first-c-42], <nil>;
// want [cut-first-b-42 cut-first-c-42]" (and the same for cut-ctx);
// Settle of a rejected order keeping the units sold → "stock
// short-after-a-42 = 3 available, holds map[]; want 5 available"; the held
// check removed → "redelivery = [cut-first-a-42 cut-first-b-42
// cut-first-c-42], <nil>; want [cut-first-b-42 cut-first-c-42]".
func TestAReservationInterruptedBetweenLinesIsAllOrNothing(t *testing.T) {
	c := storetest.NewCluster(t, "a", "b", "c")
	crashed, _ := c.MustOpen(t, 0) // the first processor's
	redelivered, _ := c.MustOpen(t, 2)
	order := func(name string, q ...int) (string, []shop.Line, map[string]int) {
		id := shop.NewID(time.Now())
		stock := map[string]int{}
		var lines []shop.Line
		for i, n := range q {
			sku := fmt.Sprintf("%s-%c-42", name, 'a'+i)
			lines = append(lines, shop.Line{SKU: sku, Quantity: n})
			stock[sku] = 5
		}
		setStocks(t, crashed, stock)
		return id, lines, stock
	}

	t.Run("the first line only, then all", func(t *testing.T) {
		id, lines, stock := order("cut-first", 2, 1, 3)
		// What a call that crashed after its first line left.
		if res, err := crashed.Reserve(t.Context(), id, lines[:1]); err != nil || !slices.Equal(res.Made(), skusOf(lines[:1])) {
			t.Fatalf("the first line = %v, %v", res.Made(), err)
		}
		res, err := redelivered.Reserve(t.Context(), id, lines)
		if err != nil || !slices.Equal(res.Made(), skusOf(lines[1:])) {
			t.Fatalf("redelivery = %v, %v; want %v", res.Made(), err, skusOf(lines[1:]))
		}
		reservedExactly(t, redelivered, id, lines, stock)
	})

	t.Run("the context ended after the first line", func(t *testing.T) {
		id, lines, stock := order("cut-ctx", 2, 1, 3)
		ctx, cancel := context.WithCancel(t.Context())
		res, err := crashed.Reserve(afterFirstLine(t, ctx, cancel), id, lines)
		if !errors.Is(err, context.Canceled) || !slices.Equal(res.Made(), skusOf(lines[:1])) {
			t.Fatalf("interrupted reservation = %v, %v; want the first line and context canceled", res.Made(), err)
		}
		reservedExactly(t, redelivered, id, lines[:1], stock)
		untouched(t, redelivered, lines[1:], stock)
		res, err = redelivered.Reserve(t.Context(), id, lines)
		if err != nil || !slices.Equal(res.Made(), skusOf(lines[1:])) {
			t.Fatalf("redelivery = %v, %v; want %v", res.Made(), err, skusOf(lines[1:]))
		}
		reservedExactly(t, redelivered, id, lines, stock)
	})

	t.Run("a shortage after the first line was held", func(t *testing.T) {
		id, lines, stock := order("short-after", 2, 6, 1) // 6 of 5
		if _, err := crashed.Reserve(t.Context(), id, lines[:1]); err != nil {
			t.Fatal(err)
		}
		res, err := redelivered.Reserve(t.Context(), id, lines)
		if !errors.Is(err, store.ErrOutOfStock) || len(res.Made()) != 0 {
			t.Fatalf("redelivery = %v, %v; want out of stock, nothing made", res.Made(), err)
		}
		// The interrupted call's hold stands until the order is rejected
		// and settled: another processor may have marked the order
		// reserved with it.
		reservedExactly(t, redelivered, id, lines[:1], stock)
		settleRejected(t, crashed, id, lines)
		untouched(t, redelivered, lines, stock)
	})

	t.Run("a shortage in the same call", func(t *testing.T) {
		id, lines, stock := order("short-same", 2, 1, 6) // 6 of 5
		res, err := crashed.Reserve(t.Context(), id, lines)
		if !errors.Is(err, store.ErrOutOfStock) || !slices.Equal(res.Made(), skusOf(lines[:2])) {
			t.Fatalf("reserve = %v, %v; want out of stock, the first two lines made", res.Made(), err)
		}
		reservedExactly(t, redelivered, id, lines[:2], stock)
		settleRejected(t, redelivered, id, lines)
		untouched(t, redelivered, lines, stock)
		// The stock came back whole: another order takes it all.
		other := shop.NewID(time.Now())
		fits := []shop.Line{{SKU: lines[0].SKU, Quantity: 5}, {SKU: lines[1].SKU, Quantity: 5}}
		if res, err := redelivered.Reserve(t.Context(), other, fits); err != nil || len(res.Made()) != 2 {
			t.Fatalf("reserve all that is left = %v, %v", res.Made(), err)
		}
	})
}

// The region whose processor was reserving an order is lost, with its
// store server, which led the inventory bucket, right after the first
// line's hold was written. Another region's processor, given the order
// again, finds the new leader, the acknowledged hold on it, and makes the
// other holds: every SKU exact to the unit.
//
// Mutation tried: the held check in Reserve's update func removed →
// "redelivery = [lost-a-42 lost-b-42 lost-c-42], <nil>; want [lost-b-42
// lost-c-42]".
func TestAReservationInterruptedByALostInventoryLeaderIsFinishedOnce(t *testing.T) {
	c := storetest.NewCluster(t, "a", "b", "c")
	_, nc := c.MustOpen(t, 0)
	l := leaderOf(t, c, nc, "KV_"+store.BucketInventory)
	crashed, _ := c.MustOpen(t, l)
	redelivered, rnc := openOn(t, c, (l+1)%len(c.Nodes), store.Config{WriteBudget: 40 * time.Second})
	stock := map[string]int{"lost-a-42": 5, "lost-b-42": 4, "lost-c-42": 3}
	setStocks(t, crashed, stock)
	id := shop.NewID(time.Now())
	lines := []shop.Line{{SKU: "lost-a-42", Quantity: 2}, {SKU: "lost-b-42", Quantity: 1}, {SKU: "lost-c-42", Quantity: 3}}

	ctx, cancel := context.WithCancel(t.Context())
	res, err := crashed.Reserve(afterFirstLine(t, ctx, func() {
		c.Nodes[l].Shutdown(false) // a crash: no leadership handed over
		cancel()
	}), id, lines)
	if err == nil || !slices.Equal(res.Made(), skusOf(lines[:1])) {
		t.Fatalf("interrupted reservation = %v, %v; want the first line and an error", res.Made(), err)
	}
	start := time.Now()
	res, err = redelivered.Reserve(t.Context(), id, lines)
	if err != nil || !slices.Equal(res.Made(), skusOf(lines[1:])) {
		t.Fatalf("redelivery = %v, %v; want %v", res.Made(), err, skusOf(lines[1:]))
	}
	t.Logf("the redelivery finished %s after the leader was lost", time.Since(start))
	if now := leaderOf(t, c, rnc, "KV_"+store.BucketInventory); now == l {
		t.Fatalf("the lost server %s still leads the inventory", c.Nodes[l].Config().Region)
	}
	reservedExactly(t, redelivered, id, lines, stock)
}

// Fifty orders of one unit race for twenty units, each order given to two
// processors at once (a redelivery racing the first delivery), through
// six connections spread over the three regions' servers: exactly twenty
// orders hold a unit, once each, both processors of an order agree, the
// thirty others are out of stock, and nothing is left available.
//
// Mutations tried: the held check in Reserve's update func removed → "2
// orders reserved, 30 out of stock, 18 split; want 20, 30 and 0" and
// "race-42 = 14 available, 4 holds of 4 units …"; update writing with Put
// instead of compare-and-set → "50 orders reserved, 0 out of stock, 0
// split; want 20, 30 and 0" and "race-42 = 19 available, 1 holds of 1
// units …".
func TestConcurrentReservationsSellEachUnitOnce(t *testing.T) {
	c := storetest.NewCluster(t, "a", "b", "c")
	var stores []*store.Store
	for i := range 6 {
		st, _ := c.MustOpen(t, i%len(c.Nodes))
		stores = append(stores, st)
	}
	const sku, units, orders = "race-42", 20, 50
	setStocks(t, stores[0], map[string]int{sku: units})
	ids := make([]string, orders)
	start := time.Now()
	for i := range ids {
		ids[i] = shop.NewID(start.Add(time.Duration(i) * time.Millisecond))
	}
	errs := make([][2]error, orders)
	var wg sync.WaitGroup
	for i, id := range ids {
		for k := range 2 {
			st := stores[(2*i+k)%len(stores)]
			wg.Go(func() {
				_, errs[i][k] = st.Reserve(t.Context(), id, []shop.Line{{SKU: sku, Quantity: 1}})
			})
		}
	}
	wg.Wait()
	t.Logf("%d reservations took %s", 2*orders, time.Since(start))
	won := map[string]int{}
	lost, split := 0, 0
	for i, e := range errs {
		switch {
		case e[0] == nil && e[1] == nil:
			won[ids[i]] = 1
		case errors.Is(e[0], store.ErrOutOfStock) && errors.Is(e[1], store.ErrOutOfStock):
			lost++
		default:
			if split++; split <= 3 {
				t.Errorf("order %s: the two processors got %v and %v; want both nil or both out of stock", ids[i], e[0], e[1])
			}
		}
	}
	if len(won) != units || lost != orders-units || split != 0 {
		t.Errorf("%d orders reserved, %d out of stock, %d split; want %d, %d and 0", len(won), lost, split, units, orders-units)
	}
	got, err := stores[3].Stock(t.Context(), sku)
	if err != nil {
		t.Fatal(err)
	}
	held, strays := 0, 0
	for id, q := range got.Holds {
		held += q
		if won[id] != q {
			strays++
		}
	}
	if got.Available != 0 || len(got.Holds) != units || held != units || strays != 0 {
		t.Errorf("%s = %d available, %d holds of %d units (%d not of an order that was told it reserved one unit); want 0 available, %d holds of one unit each, those of the orders told so",
			sku, got.Available, len(got.Holds), held, strays, units)
	}
}

// A reservation whose caller has given up before its change is written
// takes nothing, while the changes batched around it go ahead: the SKU's
// writer leaves out a change whose context is done. The next reservation
// through the same store goes through the same writer after it, so once
// that one is answered the first has been dealt with.
//
// Mutation tried: the check of each change's context in updateAll removed
// → "stock gave-up-42 = 2 available, holds map[…:1 …:2]; want 3 available,
// holds map[…:2]".
func TestAReservationGivenUpBeforeItsWriteTakesNothing(t *testing.T) {
	c := storetest.NewCluster(t, "a")
	st, _ := c.MustOpen(t, 0)
	const sku = "gave-up-42"
	setStocks(t, st, map[string]int{sku: 5})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	gaveUp, kept := shop.NewID(time.Now()), shop.NewID(time.Now().Add(time.Millisecond))
	if res, err := st.Reserve(ctx, gaveUp, []shop.Line{{SKU: sku, Quantity: 1}}); !errors.Is(err, context.Canceled) || len(res.Made()) != 0 {
		t.Fatalf("reservation given up = %v, %v; want nothing and context canceled", res.Made(), err)
	}
	if res, err := st.Reserve(t.Context(), kept, []shop.Line{{SKU: sku, Quantity: 2}}); err != nil || len(res.Made()) != 1 {
		t.Fatalf("the next reservation = %v, %v", res.Made(), err)
	}
	stockIs(t, st, sku, 3, map[string]int{kept: 2})
}

// A status written over the Version of an order that someone else has
// written since is applied to the order as it is: the write over the stale
// Version is refused as a conflict, the order is read, and a final order
// stays as it is. So a processor that created an order, and writes its
// status without reading it, never overwrites what another processor
// (the same message redelivered to it) decided meanwhile. The Version of a
// write that went through is the next write's, and needs no read.
//
// Mutation tried: the first attempt over a known Version written with a
// plain put (no revision check) → "reject over a stale Version = {… Status:rejected …}, <nil>;
// want the confirmed order".
func TestAStatusWrittenOverAStaleVersionMeetsTheOrderAsItIs(t *testing.T) {
	mine, other, o := twoProcessors(t, "stale-a-42")
	ctx, now := t.Context(), o.CreatedAt
	created, err := mine.CreateOrder(ctx, o)
	if err != nil || !created.Known() {
		t.Fatalf("create = %+v, %v; want a known Version", created, err)
	}
	if again, err := other.CreateOrder(ctx, o); err != nil || again.Known() {
		t.Fatalf("create again = %+v, %v; want the zero Version (it was there)", again, err)
	}
	// Another processor, knowing nothing, reserves and confirms it.
	if got, _, err := other.MarkReserved(ctx, o, store.Version{}, reservation(t, other, o), now); err != nil || got.Status != shop.OrderReserved {
		t.Fatalf("reserved by the other = %+v, %v", got, err)
	}
	if got, _, err := other.SetOrderStatus(ctx, o, store.Version{}, shop.OrderConfirmed, "", now); err != nil || got.Status != shop.OrderConfirmed {
		t.Fatalf("confirmed by the other = %+v, %v", got, err)
	}
	// The first, over the Version it created (stale now), rejects it: it
	// meets the confirmed order and leaves it so.
	got, _, err := mine.SetOrderStatus(ctx, o, created, shop.OrderRejected, shop.ReasonOutOfStock, now)
	if err != nil || got.Status != shop.OrderConfirmed {
		t.Fatalf("reject over a stale Version = %+v, %v; want the confirmed order", got, err)
	}
	if got, err := other.Order(ctx, shop.UserKey(o.User), o.ID); err != nil || got.Status != shop.OrderConfirmed {
		t.Fatalf("order %s = %s %q, %v; want confirmed, as the other processor left it", o.ID, got.Status, got.Reason, err)
	}
	// Over a Version nobody has overtaken, a write goes through.
	p := o
	p.ID = shop.NewID(now.Add(time.Millisecond))
	ver, err := mine.CreateOrder(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if got, ver, err = mine.MarkReserved(ctx, p, ver, reservation(t, mine, p), now); err != nil || got.Status != shop.OrderReserved {
		t.Fatalf("reserved over the last Version = %+v, %v", got, err)
	}
	if got, _, err = mine.SetOrderStatus(ctx, p, ver, shop.OrderConfirmed, "", now); err != nil || got.Status != shop.OrderConfirmed {
		t.Fatalf("confirmed over the last Version = %+v, %v", got, err)
	}
	if got, err := other.Order(ctx, shop.UserKey(p.User), p.ID); err != nil || got.Status != shop.OrderConfirmed {
		t.Fatalf("order %s = %+v, %v; want confirmed", p.ID, got, err)
	}
}

// A status written over Unwritten creates the order's record with that
// status when nobody has written it, and meets the order as it is when
// someone has: the create is refused as a conflict, the order is read,
// and a final order stays as it is. So a processor that won a request's
// record, and writes its order's first status without reading, never
// overwrites what another processor holding the same message decided.
//
// Mutation tried: the first attempt over Unwritten written with a plain
// put → "reject over Unwritten = {… Status:rejected …}; want the confirmed
// order".
func TestAStatusWrittenOverUnwrittenMeetsTheOrderAsItIs(t *testing.T) {
	mine, other, o := twoProcessors(t, "unwritten-a-42")
	ctx, now := t.Context(), o.CreatedAt

	got, ver, err := mine.MarkReserved(ctx, o, store.Unwritten(), reservation(t, mine, o), now)
	if err != nil || got.Status != shop.OrderReserved || !ver.Known() {
		t.Fatalf("reserve over Unwritten = %+v, %+v, %v; want the order created reserved", got, ver, err)
	}
	if read, err := other.Order(ctx, shop.UserKey(o.User), o.ID); err != nil || read.Status != shop.OrderReserved || read.ID != o.ID || len(read.Lines) != 1 {
		t.Fatalf("order %s = %+v, %v; want it recorded reserved, with its line", o.ID, read, err)
	}

	// Another processor, knowing nothing, confirms it; the first, over
	// Unwritten (wrong by now), rejects it and meets the confirmed order.
	if got, _, err := other.SetOrderStatus(ctx, o, store.Version{}, shop.OrderConfirmed, "", now); err != nil || got.Status != shop.OrderConfirmed {
		t.Fatalf("confirm by the other = %+v, %v", got, err)
	}
	got, _, err = mine.SetOrderStatus(ctx, o, store.Unwritten(), shop.OrderRejected, shop.ReasonOutOfStock, now)
	if err != nil || got.Status != shop.OrderConfirmed {
		t.Fatalf("reject over Unwritten = %+v, %v; want the confirmed order", got, err)
	}
	if read, err := other.Order(ctx, shop.UserKey(o.User), o.ID); err != nil || read.Status != shop.OrderConfirmed {
		t.Fatalf("order %s = %s %q, %v; want confirmed, as the other processor left it", o.ID, read.Status, read.Reason, err)
	}
}

// reservation stocks each SKU of order o with just enough and reserves
// o's lines on st, as a processor does before it marks the order reserved.
func reservation(t *testing.T, st *store.Store, o shop.Order) store.Reservation {
	t.Helper()
	for _, l := range o.Lines {
		if err := st.SetStock(t.Context(), l.SKU, l.Quantity); err != nil {
			t.Fatal(err)
		}
	}
	res, err := st.Reserve(t.Context(), o.ID, o.Lines)
	if err != nil {
		t.Fatalf("reserve %s: %v", o.ID, err)
	}
	return res
}

// twoProcessors opens two store clients of a new three-node cluster, as
// two processors holding the same message, and returns them with an
// accepted order of one unit of sku, recorded nowhere yet.
func twoProcessors(t *testing.T, sku string) (mine, other *store.Store, o shop.Order) {
	t.Helper()
	c := storetest.NewCluster(t, "a", "b", "c")
	mine, _ = c.MustOpen(t, 0)
	other, _ = c.MustOpen(t, 1)
	now := time.Now().UTC()
	return mine, other, shop.Order{ID: shop.NewID(now), User: "alice", Status: shop.OrderAccepted, CreatedAt: now, UpdatedAt: now,
		Lines: []shop.Line{{SKU: sku, Quantity: 1}}}
}
