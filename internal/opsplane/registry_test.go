package opsplane

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/poll"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// The plane follows a stamp's deregistration but not the registry's
// expiry of its key: an election of the registry's leader longer than
// its TTL expires every live stamp at once, and a plane that believed it
// would see every region without a stamp until their next heartbeats. The
// plane's own clock, frozen here, is what expires a silent stamp
// (registryGone, TestAStampWhoseDeleteNeverArrivesIsGone). A second,
// plain watch shows the registry did expire the key; a deregistration
// written after that expiry, once the plane has it, shows the plane has
// read the expiry too (one watch delivers in order).
// (Mutation tried: watchRegistry with st.WatchRegistry, the plain watch:
// "expired" is no longer announced.)
func TestThePlaneFollowsDeregistrationsButNotTheRegistrysExpiry(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	st, _ := c.MustOpen(t, 0)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	frozen := time.Now()
	p := &Plane{log: slog.New(slog.DiscardHandler), in: newInputs(func() time.Time { return frozen })}
	wg.Go(func() { p.watchRegistry(ctx, st) })
	expired := make(chan struct{})
	wg.Go(func() {
		var once sync.Once
		_ = st.WatchRegistry(ctx, func(id string, e *store.StampEntry) {
			if id == "expired" && e == nil {
				once.Do(func() { close(expired) })
			}
		}, nil)
	})

	heartbeat := func(id string) {
		t.Helper()
		now := time.Now()
		if err := st.Heartbeat(ctx, store.StampEntry{ID: id, Region: "westeurope", URL: "http://127.0.0.1:1/" + id, StartedAt: now, HeartbeatAt: now}); err != nil {
			t.Fatalf("heartbeat %s: %v", id, err)
		}
	}
	announced := func(id string) (known, announced bool) {
		for _, s := range p.in.stampList() {
			if s.id == id {
				return true, s.announced
			}
		}
		return false, false
	}
	heartbeat("expired")
	poll.Until(t, 10*time.Second, 20*time.Millisecond, func() error {
		if known, on := announced("expired"); !known || !on {
			return fmt.Errorf("the plane does not list the stamp as announced yet")
		}
		return nil
	})
	select {
	case <-expired:
	case <-time.After(store.RegistryTTL + 20*time.Second):
		t.Fatalf("the registry did not expire an entry within %s of its TTL", 20*time.Second)
	}
	heartbeat("deregistered")
	if err := st.Deregister(ctx, "deregistered"); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, 20*time.Millisecond, func() error {
		if known, on := announced("deregistered"); !known || on {
			return fmt.Errorf("deregistered: listed %v, announced %v; want listed as gone", known, on)
		}
		return nil
	})
	if known, on := announced("expired"); !known || !on {
		t.Fatalf("a stamp whose key the registry expired: listed %v, announced %v; want announced until the plane's own clock says gone", known, on)
	}
}
