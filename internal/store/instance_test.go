package store_test

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// The operations plane's instance settings reach a stamp's watch in
// another region: none at first, then each change, then none once
// deleted. Settings no stamp could follow are refused when set (400, and
// nothing stored) and, written past the checks with a newer schema, by the
// watch, which delivers nothing for them. (Mutation tried: decodeInstance
// without its schema and validity checks: the watch delivers the newer
// settings.)
func TestInstanceSettingsAreWatchedFromAnotherRegion(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope", "northeurope", "eastus")
	_, opsConn := c.MustOpen(t, 0)
	stampStore, _ := c.MustOpen(t, 2)
	ctx := t.Context()
	records := store.NewReleases(store.Config{Conn: opsConn})

	w := watchKey(t, stampStore.WatchInstance)
	if is := w.next(t, "the start"); is != nil {
		t.Fatalf("first delivery = %+v, want nil (no settings)", is)
	}
	if err := records.SetInstance(ctx, &store.InstanceSettings{Capacity: 2, WorkMs: 30}); err != nil {
		t.Fatal(err)
	}
	if is := w.next(t, "the settings"); is == nil || is.Capacity != 2 || is.WorkMs != 30 || is.Schema != store.InstanceSchema || is.UpdatedAt.IsZero() {
		t.Fatalf("delivered %+v, want capacity 2, work 30 ms, schema %d and a time", is, store.InstanceSchema)
	}

	for _, bad := range []store.InstanceSettings{{Capacity: 0}, {Capacity: shop.MaxInstanceCapacity + 1}, {Capacity: 1, WorkMs: -1},
		{Capacity: 1, WorkMs: shop.MaxInstanceWorkMs + 1}, {Schema: store.InstanceSchema + 1, Capacity: 1}} {
		if err := records.SetInstance(ctx, &bad); shop.KindOf(err) != shop.KindInvalid {
			t.Errorf("SetInstance(%+v) = %v, want an invalid request", bad, err)
		}
	}

	// Newer settings, written past SetInstance's checks: refused by the
	// watch, which then delivers the next good ones.
	js, _ := jetstream.New(opsConn)
	kv, err := js.KeyValue(ctx, store.BucketReleases)
	if err != nil {
		t.Fatal(err)
	}
	future, _ := json.Marshal(store.InstanceSettings{Schema: store.InstanceSchema + 1, Capacity: 9})
	if _, err := kv.Put(ctx, store.InstanceKey, future); err != nil {
		t.Fatal(err)
	}
	if err := records.SetInstance(ctx, &store.InstanceSettings{Capacity: 4}); err != nil {
		t.Fatal(err)
	}
	if is := w.next(t, "the settings after the refused ones"); is == nil || is.Capacity != 4 || is.WorkMs != 0 {
		t.Fatalf("delivered %+v after the refused settings, want capacity 4 and no work (nothing for the refused ones)", is)
	}

	if err := records.SetInstance(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if is := w.next(t, "the delete"); is != nil {
		t.Fatalf("after the delete the watch delivered %+v, want nil", is)
	}
	// Deleting what is not there is no error: a plane that starts clears.
	if err := records.SetInstance(ctx, nil); err != nil {
		t.Fatalf("deleting absent settings = %v, want nil", err)
	}
}
