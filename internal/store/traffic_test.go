package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
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

// keyWatch collects what a watch of one key (the traffic table, the
// instance settings) delivers.
type keyWatch[T any] struct {
	got  chan *T
	done chan error
}

// watchKey runs watch until the test ends, delivering every call of its fn
// to the returned channel.
func watchKey[T any](t *testing.T, watch func(ctx context.Context, fn func(*T)) error) *keyWatch[T] {
	t.Helper()
	w := &keyWatch[T]{got: make(chan *T, 16), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { w.done <- watch(ctx, func(v *T) { w.got <- v }) }()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// next is the watch's next delivery, within ten seconds.
func (w *keyWatch[T]) next(t *testing.T, what string) *T {
	t.Helper()
	select {
	case v := <-w.got:
		return v
	case err := <-w.done:
		t.Fatalf("%s: the watch ended: %v", what, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the watch delivered nothing", what)
	}
	return nil
}

// splitOf is what a delivery says of the split: nil for no table.
func splitOf(tr *store.Traffic) map[string]map[string]int {
	if tr == nil {
		return nil
	}
	return tr.Regions
}

// syncLog is a log sink safe for the watch's goroutine.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// The traffic table goes from the release controller's store to every
// watching POP: the current table first (none at the start), each change,
// nothing for a table of a newer schema (the POP keeps the last one, and
// the refusal is logged), and nil once cleared. A watch started later
// begins with the table as it is.
func TestTrafficTableIsWatchedFromAnotherRegion(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope", "northeurope", "eastus")
	st, nc := c.MustOpen(t, 0)
	ctx := t.Context()
	if tr, err := st.Traffic(ctx); tr != nil || err != nil {
		t.Fatalf("Traffic before any table = %+v, %v; want nil, nil", tr, err)
	}
	// The POP's side: another region's server, the edge's registry.
	edgeConn, err := nats.Connect(c.Nodes[2].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(edgeConn.Close)
	var logs syncLog
	reg, err := store.OpenRegistry(ctx, store.Config{Conn: edgeConn, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	w := watchKey(t, reg.WatchTraffic)
	if tr := w.next(t, "the start"); tr != nil {
		t.Fatalf("first delivery = %+v, want nil (no table)", tr)
	}

	tenPercent := map[string]map[string]int{"westeurope": {"v1": 90, "v2": 10}}
	if err := st.PutTraffic(ctx, store.Traffic{Release: "r-2", Regions: tenPercent}); err != nil {
		t.Fatal(err)
	}
	tr := w.next(t, "the first table")
	if tr == nil || !reflect.DeepEqual(tr.Regions, tenPercent) || tr.Schema != store.TrafficSchema || tr.Release != "r-2" || tr.UpdatedAt.IsZero() {
		t.Fatalf("delivered %+v, want the table with schema %d, release r-2 and a time", tr, store.TrafficSchema)
	}
	if got, err := st.Traffic(ctx); err != nil || got == nil || !reflect.DeepEqual(got.Regions, tenPercent) {
		t.Fatalf("Traffic = %+v, %v; want the table", got, err)
	}

	// A table of a schema this version does not know, written past
	// PutTraffic's checks, is refused: nothing is delivered for it.
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, store.BucketReleases)
	if err != nil {
		t.Fatal(err)
	}
	future, _ := json.Marshal(store.Traffic{Schema: store.TrafficSchema + 1, Regions: map[string]map[string]int{"westeurope": {"v2": 100}}})
	if _, err := kv.Put(ctx, store.TrafficKey, future); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Traffic(ctx); !errors.Is(err, store.ErrSchema) {
		t.Fatalf("Traffic of a newer schema = %v, want store.ErrSchema", err)
	}
	// The watch refuses it, and says so, before the next table is written:
	// a watch that restarts delivers only the last value of the key, so a
	// refused table overwritten at once might never be seen.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "refusing a traffic table"); {
		if time.Now().After(deadline) {
			t.Fatalf("the refused table was not logged within 10 s:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("the refused table was not logged as an error:\n%s", logs.String())
	}
	half := map[string]map[string]int{"westeurope": {"v1": 50, "v2": 50}, "eastus": {"v1": 100}}
	if err := st.PutTraffic(ctx, store.Traffic{Release: "r-2", Regions: half}); err != nil {
		t.Fatal(err)
	}
	if got := splitOf(w.next(t, "the table after the refused one")); !reflect.DeepEqual(got, half) {
		t.Fatalf("delivered %v after the refused table, want %v (nothing for the refused one)", got, half)
	}

	// A later watch (a POP starting, a watch restarted) begins with the
	// table as it is; a Store watches the same way.
	late := watchKey(t, st.WatchTraffic)
	if got := splitOf(late.next(t, "a later watch")); !reflect.DeepEqual(got, half) {
		t.Fatalf("a later watch began with %v, want %v", got, half)
	}

	if err := st.ClearTraffic(ctx); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*keyWatch[store.Traffic]{w, late} {
		if tr := x.next(t, "the clear"); tr != nil {
			t.Fatalf("after ClearTraffic the watch delivered %+v, want nil", tr)
		}
	}
	if tr, err := st.Traffic(ctx); tr != nil || err != nil {
		t.Fatalf("Traffic after ClearTraffic = %+v, %v; want nil, nil", tr, err)
	}
	// And cleared, a new watch begins with nil.
	if tr := watchKey(t, reg.WatchTraffic).next(t, "a watch after the clear"); tr != nil {
		t.Fatalf("a watch after the clear began with %+v, want nil", tr)
	}
}

// PutTraffic refuses a table no POP could follow, as an invalid request,
// and stores nothing.
func TestPutTrafficRefusesInvalidTables(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	st, _ := c.MustOpen(t, 0)
	ctx := t.Context()
	for _, tc := range []struct {
		name  string
		table store.Traffic
		says  string
	}{
		{"percent above 100", store.Traffic{Regions: map[string]map[string]int{"westeurope": {"v1": 101}}}, "want 0 to 100"},
		{"negative percent", store.Traffic{Regions: map[string]map[string]int{"westeurope": {"v1": 110, "v2": -10}}}, "want 0 to 100"},
		{"sum below 100", store.Traffic{Regions: map[string]map[string]int{"westeurope": {"v1": 50, "v2": 40}}}, "sum to 90"},
		{"sum above 100", store.Traffic{Regions: map[string]map[string]int{"westeurope": {"v1": 100}, "eastus": {"v1": 60, "v2": 50}}}, "sum to 110"},
		{"all at zero", store.Traffic{Regions: map[string]map[string]int{"westeurope": {"v1": 0, "v2": 0}}}, "sum to 0"},
		{"a region with no release", store.Traffic{Regions: map[string]map[string]int{"westeurope": {}}}, "lists no release"},
		{"a release without a name", store.Traffic{Regions: map[string]map[string]int{"westeurope": {"": 100}}}, "no name"},
		{"a region without a name", store.Traffic{Regions: map[string]map[string]int{"": {"v1": 100}}}, "no name"},
		{"unknown schema", store.Traffic{Schema: store.TrafficSchema + 1, Regions: map[string]map[string]int{"westeurope": {"v1": 100}}}, "schema"},
		{"negative schema", store.Traffic{Schema: -1}, "schema"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := st.PutTraffic(ctx, tc.table)
			var se *shop.Error
			if !errors.As(err, &se) || se.Kind != shop.KindInvalid || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("PutTraffic = %v, want an invalid-table error saying %q", err, tc.says)
			}
			if tr, err := st.Traffic(ctx); tr != nil || err != nil {
				t.Fatalf("after a refused table Traffic = %+v, %v; want nil, nil", tr, err)
			}
		})
	}
	// The boundaries are accepted: 0 and 100, a table with no region.
	for _, ok := range []store.Traffic{
		{Regions: map[string]map[string]int{"westeurope": {"v1": 100, "v2": 0}}},
		{Schema: store.TrafficSchema, Regions: map[string]map[string]int{"westeurope": {"v1": 0, "v2": 100}, "eastus": {"v1": 1, "v2": 99}}},
		{},
	} {
		if err := st.PutTraffic(ctx, ok); err != nil {
			t.Errorf("PutTraffic(%+v) = %v, want it stored", ok, err)
		}
	}
}
