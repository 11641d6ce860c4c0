package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// putRaw stores doc under key byte for byte, as another release's binary
// would, and returns its revision.
func putRaw(t *testing.T, nc *nats.Conn, bucket, key, doc string) uint64 {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Put(t.Context(), key, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// rawRecord reads key's value and revision from the bucket's stream leader
// (which has every acknowledged write), byte for byte.
func rawRecord(t *testing.T, nc *nats.Conn, bucket, key string) ([]byte, uint64) {
	t.Helper()
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + bucket + "." + key})
	msg, err := nc.RequestWithContext(t.Context(), "$JS.API.STREAM.MSG.GET.KV_"+bucket, req)
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		Message *struct {
			Seq  uint64 `json:"seq"`
			Data []byte `json:"data"`
		} `json:"message"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Error != nil || resp.Message == nil {
		t.Fatalf("%s/%s: %+v", bucket, key, resp.Error)
	}
	return resp.Message.Data, resp.Message.Seq
}

// record reads key as stored, decoded into plain JSON values.
func record(t *testing.T, nc *nats.Conn, bucket, key string) map[string]any {
	t.Helper()
	data, _ := rawRecord(t, nc, bucket, key)
	var rec map[string]any
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatalf("%s/%s: %v: %s", bucket, key, err, data)
	}
	return rec
}

// at walks a decoded JSON value along path: object members by name, list
// elements by index ("0").
func at(v any, path ...string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

// wantAt checks that rec holds want at path.
func wantAt(t *testing.T, what string, rec map[string]any, want any, path ...string) {
	t.Helper()
	if got := at(rec, path...); got != want {
		t.Errorf("%s: %s = %v, want %v\nrecord: %v", what, strings.Join(path, "."), got, want, rec)
	}
}

func orderDoc(schema int, o shop.Order, extra string) string {
	return fmt.Sprintf(`{"schema":%d,"id":%q,"user":%q,"items":[{"sku":%q,"quantity":%d%s}],"status":%q,"acceptedIn":%q,"createdAt":%q,"updatedAt":%q%s}`,
		schema, o.ID, o.User, o.Lines[0].SKU, o.Lines[0].Quantity, extra, o.Status, o.Region,
		o.CreatedAt.Format(time.RFC3339Nano), o.UpdatedAt.Format(time.RFC3339Nano), extra)
}

// A member a newer release added to a record, at the same schema version,
// survives this release's read-modify-writes of the record: the stock
// record through a reservation and its release, the order record through
// a status change, the cart through an update. So does a member the newer
// release put inside a member the change leaves alone (an order line's). A
// record written before records carried a version reads as version 1 and
// is written back as version 1.
func TestReadModifyWriteKeepsTheMembersOfANewerRelease(t *testing.T) {
	c := storetest.NewCluster(t, "a")
	st, nc := c.MustOpen(t, 0)
	ctx := t.Context()
	const sku = "contoso-skyline-1-42"
	now := time.Now().UTC().Truncate(time.Millisecond)
	o := shop.Order{ID: shop.NewID(now), User: "alice", Lines: []shop.Line{{SKU: sku, Quantity: 2}}, Status: shop.OrderAccepted,
		Region: "a", CreatedAt: now, UpdatedAt: now}
	alice := shop.UserKey(o.User)
	orderKey := alice + "." + o.ID

	// Written by the next release.
	putRaw(t, nc, store.BucketInventory, sku, fmt.Sprintf(`{"schema":%d,"available":5,"warehouse":"eu-1"}`, store.SchemaStock))
	putRaw(t, nc, store.BucketOrders, orderKey, orderDoc(store.SchemaOrder, o, `,"giftWrap":true`))
	// Written before records carried a version.
	putRaw(t, nc, store.BucketCarts, alice, `{"items":[{"sku":"`+sku+`","quantity":1}],"updatedAt":"2025-01-01T00:00:00Z","coupon":"SPRING"}`)

	res, err := st.Reserve(ctx, o.ID, o.Lines)
	if err != nil {
		t.Fatal(err)
	}
	rec := record(t, nc, store.BucketInventory, sku)
	wantAt(t, "reserved stock", rec, "eu-1", "warehouse")
	wantAt(t, "reserved stock", rec, 3.0, "available")
	wantAt(t, "reserved stock", rec, 2.0, "holds", o.ID)
	wantAt(t, "reserved stock", rec, float64(store.SchemaStock), "schema")

	if _, _, err := st.MarkReserved(ctx, o, store.Version{}, res, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	rec = record(t, nc, store.BucketOrders, orderKey)
	wantAt(t, "reserved order", rec, true, "giftWrap")
	wantAt(t, "reserved order", rec, true, "items", "0", "giftWrap")
	wantAt(t, "reserved order", rec, string(shop.OrderReserved), "status")
	wantAt(t, "reserved order", rec, float64(store.SchemaOrder), "schema")
	if token, ok := at(rec, "reservation", sku).(string); !ok || token == "" {
		t.Errorf("reserved order: reservation.%s = %v; want the token of its hold", sku, at(rec, "reservation", sku))
	}

	confirmed, ver, err := st.SetOrderStatus(ctx, o, store.Version{}, shop.OrderConfirmed, "", now.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Settle(ctx, confirmed, ver); err != nil {
		t.Fatal(err)
	}
	rec = record(t, nc, store.BucketInventory, sku)
	wantAt(t, "released stock", rec, "eu-1", "warehouse")
	wantAt(t, "released stock", rec, 3.0, "available")
	for _, m := range []string{"holds", "holders"} {
		if _, ok := rec[m]; ok {
			t.Errorf("released stock still has %s: %v", m, rec)
		}
	}

	if _, err := st.UpdateCart(ctx, alice, func(c *shop.Cart) error { return c.SetItem(sku, 3) }); err != nil {
		t.Fatal(err)
	}
	rec = record(t, nc, store.BucketCarts, alice)
	wantAt(t, "updated cart", rec, "SPRING", "coupon")
	wantAt(t, "updated cart", rec, 3.0, "items", "0", "quantity")
	wantAt(t, "updated cart", rec, float64(store.SchemaCart), "schema")

	// This release reads them as it always did.
	got, err := st.Order(ctx, alice, o.ID)
	if err != nil || got.Status != shop.OrderConfirmed || !slices.Equal(got.Lines, o.Lines) {
		t.Fatalf("order read back: %+v, %v", got, err)
	}
	// Its own new records carry their version.
	bob := o
	bob.ID, bob.User = shop.NewID(now.Add(time.Millisecond)), "bob"
	if _, err := st.CreateOrder(ctx, bob); err != nil {
		t.Fatal(err)
	}
	wantAt(t, "new order", record(t, nc, store.BucketOrders, shop.UserKey("bob")+"."+bob.ID), float64(store.SchemaOrder), "schema")
}

// A record written with a schema newer than this release reads is refused
// by every read and every write, with an error that says so (ErrSchema,
// kind Unavailable), and left byte for byte as it was. A user reading such
// an order over HTTP gets 503 problem+json: unavailable rather than
// internal, because nothing is broken and a retry may reach a stamp of the
// newer release, or come after the upgrade.
func TestARecordOfANewerSchemaIsRefusedAndLeftAsItIs(t *testing.T) {
	c := storetest.NewCluster(t, "a")
	st, nc := c.MustOpen(t, 0)
	ctx := t.Context()
	const sku = "contoso-skyline-1-42"
	now := time.Now().UTC().Truncate(time.Millisecond)
	o := shop.Order{ID: shop.NewID(now), User: "alice", Lines: []shop.Line{{SKU: sku, Quantity: 1}}, Status: shop.OrderAccepted,
		Region: "a", CreatedAt: now, UpdatedAt: now}
	alice := shop.UserKey(o.User)
	idem := shop.IdempotencyID(o.User, "k1")
	type stored struct{ bucket, key, doc string }
	records := []stored{
		{store.BucketOrders, alice + "." + o.ID, orderDoc(store.SchemaOrder+1, o, "")},
		{store.BucketInventory, sku, fmt.Sprintf(`{"schema":%d,"available":5}`, store.SchemaStock+1)},
		{store.BucketCarts, alice, fmt.Sprintf(`{"schema":%d,"items":[]}`, store.SchemaCart+1)},
		{store.BucketIdempotency, idem, fmt.Sprintf(`{"schema":%d,"id":%q,"userKey":%q,"requestHash":"h"}`, store.SchemaIdempotency+1, o.ID, alice)},
	}
	revs := make([]uint64, len(records))
	for i, r := range records {
		revs[i] = putRaw(t, nc, r.bucket, r.key, r.doc)
	}

	refused := func(what string, err error) {
		t.Helper()
		var se *store.SchemaError
		switch {
		case !errors.Is(err, store.ErrSchema) || !errors.As(err, &se):
			t.Errorf("%s: %v; want a store.ErrSchema", what, err)
		case se.Schema != se.Reads+1:
			t.Errorf("%s: %+v; want schema one above what this release reads", what, se)
		case shop.KindOf(err) != shop.KindUnavailable:
			t.Errorf("%s: kind %s, want unavailable: %v", what, shop.KindOf(err), err)
		}
	}
	_, err := st.Order(ctx, alice, o.ID)
	refused("read the order", err)
	if want := fmt.Sprintf("order %s: written with schema %d, this release reads up to %d: upgrade before reading it", o.ID, store.SchemaOrder+1, store.SchemaOrder); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("read the order: %v\nwant it to say %q", err, want)
	}
	_, _, err = st.Orders(ctx, alice, "", 10)
	refused("list the orders", err)
	_, err = st.FindOrder(ctx, o.ID)
	refused("find the order", err)
	_, _, err = st.SetOrderStatus(ctx, o, store.Version{}, shop.OrderRejected, shop.ReasonOutOfStock, now)
	refused("change the order's status", err)
	_, err = st.Reserve(ctx, shop.NewID(now), o.Lines)
	refused("reserve the stock", err)
	rejected := o
	rejected.Status = shop.OrderRejected
	refused("release holds on the stock", st.Settle(ctx, rejected, store.Version{}))
	refused("set the stock", st.SetStock(ctx, sku, 9))
	_, err = st.Stock(ctx, sku)
	refused("read the stock", err)
	_, _, err = st.Cart(ctx, alice)
	refused("read the cart", err)
	_, err = st.UpdateCart(ctx, alice, func(c *shop.Cart) error { return c.SetItem(sku, 1) })
	refused("update the cart", err)
	_, _, err = st.Recall(ctx, idem)
	refused("recall the idempotency record", err)
	_, _, err = st.Remember(ctx, idem, store.IdempotencyRecord{ID: shop.NewID(now), UserKey: alice, RequestHash: "h"})
	refused("remember over the idempotency record", err)

	for i, r := range records {
		data, rev := rawRecord(t, nc, r.bucket, r.key)
		if rev != revs[i] || string(data) != r.doc {
			t.Errorf("%s/%s was rewritten: revision %d %s; stored %d %s", r.bucket, r.key, rev, data, revs[i], r.doc)
		}
	}

	// GET /api/orders/{id} as the stamp answers it: the store's error
	// through the one kind-to-status table.
	mux := http.NewServeMux()
	mux.Handle("GET /api/orders/{id}", httpapi.Handle(nil, func(w http.ResponseWriter, r *http.Request) error {
		o, err := st.Order(r.Context(), alice, r.PathValue("id"))
		if err != nil {
			return err
		}
		httpapi.WriteJSON(w, http.StatusOK, o)
		return nil
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/api/orders/" + o.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p httpapi.Problem
	_ = json.NewDecoder(resp.Body).Decode(&p)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != "application/problem+json" ||
		resp.Header.Get("Retry-After") == "" || !strings.Contains(p.Detail, "newer release") {
		t.Errorf("GET the order: %d %s, Retry-After %q, %+v; want 503 problem+json that says a newer release wrote it, with Retry-After",
			resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Retry-After"), p)
	}
}

// Watchers do not apply a record of a newer schema: the read model keeps
// what it had, and an edge does not route to a stamp whose entry it cannot
// read.
func TestWatchersSkipRecordsOfANewerSchema(t *testing.T) {
	c := storetest.NewCluster(t, "a")
	st, nc := c.MustOpen(t, 0)
	ctx := t.Context()
	product := func(id string, schema int) string {
		return fmt.Sprintf(`{"schema":%d,"id":%q,"brand":"Contoso","model":"M","category":"running","price":{"amountCents":100,"currency":"EUR"},"sizes":["42"]}`, schema, id)
	}
	putRaw(t, nc, store.BucketCatalog, "p-now", product("p-now", store.SchemaProduct))
	putRaw(t, nc, store.BucketCatalog, "p-next", product("p-next", store.SchemaProduct+1))
	seen := map[string]bool{}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// A watch ends with its context; ended by loaded, it may say "closed".
	if err := st.Watch(wctx, store.BucketCatalog, func(key string, _ []byte) { seen[key] = true }, cancel); err != nil && wctx.Err() == nil {
		t.Fatal(err)
	}
	if errors.Is(wctx.Err(), context.DeadlineExceeded) {
		t.Fatal("the catalog watch never loaded")
	}
	if !seen["p-now"] || seen["p-next"] {
		t.Errorf("the watch passed on %v; want p-now and not p-next", seen)
	}

	entry := func(id string, schema int) string {
		return fmt.Sprintf(`{"schema":%d,"id":%q,"region":"a","url":"http://127.0.0.1:1"}`, schema, id)
	}
	putRaw(t, nc, store.BucketRegistry, "a.now", entry("a.now", store.SchemaStampEntry))
	putRaw(t, nc, store.BucketRegistry, "a.next", entry("a.next", store.SchemaStampEntry+1))
	alive := map[string]bool{}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := st.WatchRegistry(rctx, func(id string, e *store.StampEntry) { alive[id] = e != nil }, cancel); err != nil && rctx.Err() == nil {
		t.Fatal(err)
	}
	if errors.Is(rctx.Err(), context.DeadlineExceeded) {
		t.Fatal("the registry watch never loaded")
	}
	if live, seen := alive["a.next"]; !alive["a.now"] || !seen || live {
		t.Errorf("the registry watch reported %v; want a.now alive and a.next gone", alive)
	}
}

// Two releases side by side on one store, as during an upgrade or after a
// rollback. The old release is a store client of this release; the next
// release is another client of this release that also writes a member this
// release does not know into every record it writes (SetExtraMembers). That
// is all a next release does to the records that matters here: building a
// second binary from another version of the tree would add nothing, since
// what must hold is what this release's code does with such records. Both
// clients, on different regions' servers, place orders and process them
// together (one reserves, the other marks the order reserved, the first
// confirms it, the other releases its holds; or the first rejects it) on
// the same SKUs at once for a few seconds. Afterwards the stock adds up
// exactly, every record the next release wrote still has its member after
// the old release wrote it, and no call failed.
func TestOldAndNextReleaseShareTheStoreUnderLoad(t *testing.T) {
	c := storetest.NewCluster(t, "a", "b", "c")
	old, nc := c.MustOpen(t, 0)
	next, _ := c.MustOpen(t, 1)
	store.SetExtraMembers(next, map[string]json.RawMessage{"giftWrap": json.RawMessage(`true`)})
	ctx := t.Context()
	skus := []string{"contoso-skyline-1-41", "contoso-skyline-1-42", "contoso-skyline-1-43"}
	const initial = 30
	for _, sku := range skus {
		if err := next.SetStock(ctx, sku, initial); err != nil {
			t.Fatal(err)
		}
	}

	// process takes an order from accepted to confirmed or rejected, with
	// the two releases taking turns; the processor, the release that did not
	// create the order, writes its record last.
	process := func(creator, processor *store.Store, o shop.Order) error {
		now := time.Now().UTC()
		res, err := processor.Reserve(ctx, o.ID, o.Lines)
		if errors.Is(err, store.ErrOutOfStock) {
			rejected, _, err := processor.SetOrderStatus(ctx, o, store.Version{}, shop.OrderRejected, shop.ReasonOutOfStock, now)
			if err != nil {
				return err
			}
			return creator.Settle(ctx, rejected, store.Version{})
		}
		if err != nil {
			return err
		}
		if _, _, err := creator.MarkReserved(ctx, o, store.Version{}, res, now); err != nil {
			return err
		}
		confirmed, _, err := processor.SetOrderStatus(ctx, o, store.Version{}, shop.OrderConfirmed, "", now)
		if err != nil {
			return err
		}
		return creator.Settle(ctx, confirmed, store.Version{})
	}
	type placed struct {
		o      shop.Order
		byNext bool
	}
	var (
		mu     sync.Mutex
		orders []placed
		wg     sync.WaitGroup
	)
	stop := time.Now().Add(3 * time.Second)
	for i := range 6 {
		byNext := i%2 == 1
		creator, processor := old, next
		if byNext {
			creator, processor = next, old
		}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for time.Now().Before(stop) {
				now := time.Now().UTC()
				var lines []shop.Line
				for _, j := range rng.Perm(len(skus))[:1+rng.IntN(2)] {
					lines = append(lines, shop.Line{SKU: skus[j], Quantity: 1 + rng.IntN(3)})
				}
				lines, err := shop.ValidateLines(lines)
				if err != nil {
					t.Error(err)
					return
				}
				o := shop.Order{ID: shop.NewID(now), User: fmt.Sprintf("buyer-%d", i), Lines: lines, Status: shop.OrderAccepted,
					Region: "a", CreatedAt: now, UpdatedAt: now}
				if _, err := creator.CreateOrder(ctx, o); err != nil {
					t.Errorf("create order %s: %v", o.ID, err)
					return
				}
				mu.Lock()
				orders = append(orders, placed{o, byNext})
				mu.Unlock()
				if err := process(creator, processor, o); err != nil {
					t.Errorf("process order %s: %v", o.ID, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// The old release writes every stock record last.
	for _, sku := range skus {
		s, err := old.Stock(ctx, sku)
		if err != nil {
			t.Fatal(err)
		}
		if err := old.SetStock(ctx, sku, s.Available); err != nil {
			t.Fatal(err)
		}
	}

	sold := map[string]int{}
	confirmed, byNext := 0, 0
	for _, p := range orders {
		got, err := old.Order(ctx, shop.UserKey(p.o.User), p.o.ID)
		if err != nil {
			t.Fatalf("order %s: %v", p.o.ID, err)
		}
		switch got.Status {
		case shop.OrderConfirmed:
			confirmed++
			for _, l := range got.Lines {
				sold[l.SKU] += l.Quantity
			}
		case shop.OrderRejected:
		default:
			t.Errorf("order %s left %s", got.ID, got.Status)
		}
		if p.byNext {
			byNext++
			rec := record(t, nc, store.BucketOrders, shop.UserKey(p.o.User)+"."+p.o.ID)
			wantAt(t, "order "+p.o.ID+" of the next release", rec, true, "giftWrap")
		}
	}
	for _, sku := range skus {
		s, err := old.Stock(ctx, sku)
		if err != nil {
			t.Fatal(err)
		}
		held := 0
		for _, q := range s.Holds {
			held += q
		}
		if s.Available+held+sold[sku] != initial {
			t.Errorf("%s: %d available + %d held + %d sold = %d, want %d", sku, s.Available, held, sold[sku], s.Available+held+sold[sku], initial)
		}
		wantAt(t, "stock "+sku, record(t, nc, store.BucketInventory, sku), true, "giftWrap")
	}
	t.Logf("%d orders (%d by the next release), %d confirmed; sold %v of %d each", len(orders), byNext, confirmed, sold, initial)
	if confirmed == 0 || byNext == 0 {
		t.Fatalf("%d orders confirmed, %d placed by the next release: no load to speak of", confirmed, byNext)
	}
}

// Holds and orders written by a release before holds carried tokens are
// settled as that release settled them: a confirmed order without a
// reservation sells whatever holds it has (even one this release made,
// with a token), and a hold without a token,
// found by this release's reservation, is the one the order is marked
// with and sells. A token whose hold an older release released (it keeps
// members it does not know) is dropped at the next write.
//
// Mutation tried: Settle without its rule for orders without a reservation
// → "an order confirmed before tokens: 5 available, holds map[], holders
// map[]; want 3, none".
func TestHoldsAndOrdersWrittenBeforeTokensAreSettledAsBefore(t *testing.T) {
	c := storetest.NewCluster(t, "a")
	st, nc := c.MustOpen(t, 0)
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Millisecond)
	order := func(sku string, quantity int, status shop.OrderStatus) shop.Order {
		o := shop.Order{ID: shop.NewID(now), User: "alice", Lines: []shop.Line{{SKU: sku, Quantity: quantity}}, Status: status,
			Region: "a", CreatedAt: now, UpdatedAt: now}
		now = now.Add(time.Millisecond)
		return o
	}
	stock := func(what, sku string, available int) {
		t.Helper()
		got, err := st.Stock(ctx, sku)
		if err != nil {
			t.Fatal(err)
		}
		if got.Available != available || len(got.Holds) != 0 || len(got.Holders) != 0 {
			t.Errorf("%s: %d available, holds %v, holders %v; want %d, none", what, got.Available, got.Holds, got.Holders, available)
		}
	}

	// Held by this release, reserved and confirmed by the older one,
	// which leaves its hold (it crashed before settling).
	old := order("before-a-42", 2, shop.OrderConfirmed)
	putRaw(t, nc, store.BucketInventory, "before-a-42", `{"schema":1,"available":3,"holds":{"`+old.ID+`":2},"holders":{"`+old.ID+`":"a-token"}}`)
	putRaw(t, nc, store.BucketOrders, shop.UserKey(old.User)+"."+old.ID, orderDoc(store.SchemaOrder, old, ""))
	if err := st.Settle(ctx, old, store.Version{}); err != nil {
		t.Fatal(err)
	}
	stock("an order confirmed before tokens", "before-a-42", 3)

	// Held by the older release, reserved and confirmed by this one.
	mixed := order("before-b-42", 1, shop.OrderAccepted)
	putRaw(t, nc, store.BucketInventory, "before-b-42", `{"schema":1,"available":4,"holds":{"`+mixed.ID+`":1},"holders":{"released-by-an-older-release":"t"}}`)
	res, err := st.Reserve(ctx, mixed.ID, mixed.Lines)
	if err != nil || len(res.Made()) != 0 {
		t.Fatalf("reserve over the older release's hold = %v, %v; want it found", res.Made(), err)
	}
	if _, _, err := st.MarkReserved(ctx, mixed, store.Version{}, res, now); err != nil {
		t.Fatal(err)
	}
	done, ver, err := st.SetOrderStatus(ctx, mixed, store.Version{}, shop.OrderConfirmed, "", now)
	if err != nil || done.Status != shop.OrderConfirmed {
		t.Fatalf("confirm = %+v, %v", done, err)
	}
	if err := st.Settle(ctx, done, ver); err != nil {
		t.Fatal(err)
	}
	stock("a hold made before tokens, sold by an order reserved with it", "before-b-42", 4)
}
