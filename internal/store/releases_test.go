package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

// The release controller's records are written by the ops user with
// compare-and-set: a writer holding a stale revision loses, and says so.
func TestReleaseRecordsAreComparedAndSetByTheOpsUser(t *testing.T) {
	n, creds := securedNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	rel := store.NewReleases(store.Config{Conn: mustConnectAs(t, n, creds[store.RoleOps])})
	// Before any stamp declared the bucket, the records cannot be read.
	if _, _, err := rel.Load(ctx, "current"); err == nil {
		t.Fatal("Load before the bucket exists succeeded")
	}
	if _, err := store.Open(ctx, store.Config{Conn: mustConnectAs(t, n, creds[store.RoleAdmin]), Replicas: 1}); err != nil {
		t.Fatalf("admin opens the store: %v", err)
	}
	if data, rev, err := rel.Load(ctx, "current"); data != nil || rev != 0 || err != nil {
		t.Fatalf("Load of an absent key = %q, %d, %v; want nil, 0, nil", data, rev, err)
	}
	rev, err := rel.Save(ctx, "r.a", []byte(`{"schema":1}`), 0)
	if err != nil || rev == 0 {
		t.Fatalf("create = %d, %v", rev, err)
	}
	if _, err := rel.Save(ctx, "r.a", []byte(`{"schema":1,"again":true}`), 0); !isKind(err, shop.KindConflict) {
		t.Fatalf("a second create = %v, want a conflict", err)
	}
	rev2, err := rel.Save(ctx, "r.a", []byte(`{"schema":1,"phase":"shifting"}`), rev)
	if err != nil || rev2 <= rev {
		t.Fatalf("update at the current revision = %d, %v", rev2, err)
	}
	if _, err := rel.Save(ctx, "r.a", []byte(`{"schema":1,"phase":"stale"}`), rev); !isKind(err, shop.KindConflict) {
		t.Fatalf("an update at a stale revision = %v, want a conflict", err)
	}
	if data, got, err := rel.Load(ctx, "r.a"); err != nil || got != rev2 || string(data) != `{"schema":1,"phase":"shifting"}` {
		t.Fatalf("Load = %q, %d, %v; want the update at revision %d", data, got, err, rev2)
	}
	// The same update again at the old revision: what a retry sends after
	// its first attempt landed without an answer. The record stored is
	// the one asked for, so it is no conflict, and nothing is written.
	// (Mutation tried: without the re-read in Save this is a conflict.)
	if got, err := rel.Save(ctx, "r.a", []byte(`{"schema":1,"phase":"shifting"}`), rev); err != nil || got != rev2 {
		t.Fatalf("the landed update again = %d, %v; want revision %d and no error", got, err, rev2)
	}
	if err := rel.SetTraffic(ctx, "a", map[string]map[string]int{"westeurope": {"v1": 50, "v2": 50}}); err != nil {
		t.Fatalf("SetTraffic: %v", err)
	}
	keys, err := rel.Keys(ctx)
	if err != nil || !slices.Contains(keys, "r.a") || !slices.Contains(keys, store.TrafficKey) {
		t.Fatalf("Keys = %v, %v; want r.a and the traffic table", keys, err)
	}
	if err := rel.SetTraffic(ctx, "a", nil); err != nil {
		t.Fatalf("SetTraffic(nil): %v", err)
	}
	if data, _, err := rel.Load(ctx, store.TrafficKey); data != nil || err != nil {
		t.Fatalf("after clearing, the table is %q, %v", data, err)
	}
}

func isKind(err error, k shop.Kind) bool {
	var se *shop.Error
	return errors.As(err, &se) && se.Kind == k
}
