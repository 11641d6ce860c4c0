package store_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso/shoes/internal/pki"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// securedNode starts one store server that accepts only the roles'
// users, over TLS, and returns it with each role's credentials.
func securedNode(t *testing.T) (*store.Node, map[store.Role]store.Credentials) {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(pki.LoopbackHosts...)
	if err != nil {
		t.Fatal(err)
	}
	users, seeds := storetest.RoleUsers(t)
	creds := map[store.Role]store.Credentials{}
	for r, seed := range seeds {
		creds[r] = store.Credentials{Seed: seed, TLS: pki.ClientConfig(ca.Pool())}
	}
	n, err := store.StartNode(store.NodeConfig{Region: "westeurope", StoreDir: t.TempDir(), Users: users,
		TLS: &store.NodeTLS{Cert: cert, Roots: ca.Pool()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(false) })
	return n, creds
}

func connectAs(t *testing.T, n *store.Node, c store.Credentials) (*nats.Conn, error) {
	t.Helper()
	opts, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(n.ClientURL(), append(opts, nats.Timeout(5*time.Second))...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

func mustConnectAs(t *testing.T, n *store.Node, c store.Credentials) *nats.Conn {
	t.Helper()
	nc, err := connectAs(t, n, c)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return nc
}

func TestStoreServersRefuseClientsWithoutCredentials(t *testing.T) {
	n, creds := securedNode(t)
	if !strings.HasPrefix(n.ClientURL(), "tls://") {
		t.Fatalf("client URL %s does not say tls", n.ClientURL())
	}
	tlsOnly := store.Credentials{TLS: creds[store.RoleStamp].TLS}
	if _, err := connectAs(t, n, tlsOnly); err == nil {
		t.Fatal("a client with no nkey connected")
	}
	other, err := store.NewUserSeed()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connectAs(t, n, store.Credentials{Seed: other, TLS: tlsOnly.TLS}); err == nil {
		t.Fatal("a client with an unknown nkey connected")
	}
	plain := store.Credentials{Seed: creds[store.RoleStamp].Seed}
	if _, err := connectAs(t, n, plain); err == nil {
		t.Fatal("a client connected without TLS")
	}
	untrusting := store.Credentials{Seed: creds[store.RoleStamp].Seed, TLS: &tls.Config{MinVersion: tls.VersionTLS12}}
	if _, err := connectAs(t, n, untrusting); err == nil {
		t.Fatal("a client that does not trust the deployment's CA connected")
	}
	mustConnectAs(t, n, creds[store.RoleStamp])
}

// denied reports whether op failed, as a refused request does (the server
// drops it, so the client sees a permission error or no answer in time).
func denied(t *testing.T, what string, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := op(ctx); err == nil {
		t.Errorf("%s: allowed, want refused", what)
	}
}

func TestEachRoleHasOnlyItsPermissions(t *testing.T) {
	n, creds := securedNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// The administrator declares the assets; the others only find them.
	if _, err := store.Open(ctx, store.Config{Conn: mustConnectAs(t, n, creds[store.RoleAdmin]), Replicas: 1}); err != nil {
		t.Fatalf("admin opens the store: %v", err)
	}
	admin, _ := jetstream.New(mustConnectAs(t, n, creds[store.RoleAdmin]))

	// A stamp does its work...
	stampConn := mustConnectAs(t, n, creds[store.RoleStamp])
	st, err := store.Open(ctx, store.Config{Conn: stampConn, Replicas: 1})
	if err != nil {
		t.Fatalf("stamp opens the store: %v", err)
	}
	if _, err := st.SeedCatalog(ctx, shop.SeedCatalog()[:2]); err != nil {
		t.Fatalf("stamp writes the catalog: %v", err)
	}
	// ...but cannot destroy or reconfigure what others rely on.
	js, _ := jetstream.New(stampConn)
	denied(t, "stamp deletes the order stream", func(ctx context.Context) error { return js.DeleteStream(ctx, store.StreamOrders) })
	denied(t, "stamp purges the order stream", func(ctx context.Context) error {
		s, err := js.Stream(ctx, store.StreamOrders)
		if err != nil {
			t.Errorf("stamp looks up the order stream: %v", err)
			return nil
		}
		return s.Purge(ctx)
	})
	denied(t, "stamp reconfigures the order stream", func(ctx context.Context) error {
		_, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: store.StreamOrders, Subjects: []string{"orders.>"}, MaxMsgs: 1,
			Retention: jetstream.WorkQueuePolicy})
		return err
	})
	denied(t, "stamp creates a stream", func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "STEAL", Subjects: []string{"steal.>"}})
		return err
	})
	denied(t, "stamp deletes the shared order consumer", func(ctx context.Context) error {
		return js.DeleteConsumer(ctx, store.StreamOrders, store.ConsumerOrders)
	})
	denied(t, "stamp deletes a catalog message", func(ctx context.Context) error {
		s, err := js.Stream(ctx, "KV_"+store.BucketCatalog)
		if err != nil {
			return err
		}
		return s.DeleteMsg(ctx, 1)
	})

	// The edge reads the registry (an entry lives for the registry's TTL
	// after its last heartbeat)...
	if err := st.Heartbeat(ctx, store.StampEntry{ID: "westeurope.a", Region: "westeurope", URL: "https://127.0.0.1:1"}); err != nil {
		t.Fatalf("stamp heartbeats: %v", err)
	}
	edgeConn := mustConnectAs(t, n, creds[store.RoleEdge])
	reg, err := store.OpenRegistry(ctx, store.Config{Conn: edgeConn})
	if err != nil {
		t.Fatalf("edge opens the registry: %v", err)
	}
	seen := make(chan string, 1)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchErr := make(chan error, 1)
	go func() {
		watchErr <- reg.Watch(wctx, func(id string, e *store.StampEntry) {
			if e != nil {
				select {
				case seen <- e.URL:
				default:
				}
			}
		}, nil)
	}()
	select {
	case url := <-seen:
		if url != "https://127.0.0.1:1" {
			t.Errorf("edge saw %q", url)
		}
	case err := <-watchErr:
		t.Fatalf("the edge's registry watch ended: %v", err)
	case <-ctx.Done():
		t.Fatal("the edge never saw the stamp's registry entry")
	}
	// ...and nothing else: no registry writes, no data, no asset changes.
	ejs, _ := jetstream.New(edgeConn)
	denied(t, "edge writes a registry entry", func(ctx context.Context) error {
		kv, err := ejs.KeyValue(ctx, store.BucketRegistry)
		if err != nil {
			return err
		}
		_, err = kv.Put(ctx, "westeurope.a", []byte(`{"id":"westeurope.a","url":"http://evil"}`))
		return err
	})
	denied(t, "edge reads the catalog", func(ctx context.Context) error {
		_, err := store.Open(ctx, store.Config{Conn: edgeConn, Replicas: 1})
		return err
	})
	denied(t, "edge deletes the registry", func(ctx context.Context) error { return ejs.DeleteKeyValue(ctx, store.BucketRegistry) })

	// The operations plane reads queue state, and writes nothing.
	opsConn := mustConnectAs(t, n, creds[store.RoleOps])
	ops, err := store.Open(ctx, store.Config{Conn: opsConn, Replicas: 1})
	if err != nil {
		t.Fatalf("ops opens the store: %v", err)
	}
	if _, _, err := ops.QueueAge(ctx, store.StreamOrders); err != nil {
		t.Errorf("ops reads the order queue's age: %v", err)
	}
	denied(t, "ops writes the catalog", func(ctx context.Context) error { return ops.PutProduct(ctx, shop.SeedCatalog()[0]) })
	denied(t, "ops sets stock", func(ctx context.Context) error { return ops.SetStock(ctx, "contoso-skyline-1-42", 1) })
	denied(t, "ops heartbeats a stamp", func(ctx context.Context) error {
		return ops.Heartbeat(ctx, store.StampEntry{ID: "westeurope.b", Region: "westeurope"})
	})

	// Nothing above changed the order stream.
	s, err := admin.Stream(ctx, store.StreamOrders)
	if err != nil {
		t.Fatalf("the order stream is gone: %v", err)
	}
	if cfg := s.CachedInfo().Config; cfg.MaxMsgs == 1 {
		t.Error("the order stream was reconfigured")
	}
	if _, err := s.Consumer(ctx, store.ConsumerOrders); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("the shared order consumer is gone: %v", err)
	}
}

// The traffic table is the operations plane's to write (its release
// controller) and the edge's to follow: an edge user watches it but can
// neither write nor delete it, an ops user writes and clears it.
func TestOpsWritesTheTrafficTableAndTheEdgeOnlyWatchesIt(t *testing.T) {
	n, creds := securedNode(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if _, err := store.Open(ctx, store.Config{Conn: mustConnectAs(t, n, creds[store.RoleAdmin]), Replicas: 1}); err != nil {
		t.Fatalf("admin opens the store: %v", err)
	}
	ops, err := store.Open(ctx, store.Config{Conn: mustConnectAs(t, n, creds[store.RoleOps]), Replicas: 1, FindOnly: true})
	if err != nil {
		t.Fatalf("ops opens the store: %v", err)
	}
	split := map[string]map[string]int{"westeurope": {"v1": 90, "v2": 10}}
	if err := ops.PutTraffic(ctx, store.Traffic{Release: "r-1", Regions: split}); err != nil {
		t.Fatalf("ops writes the traffic table: %v", err)
	}

	edgeConn := mustConnectAs(t, n, creds[store.RoleEdge])
	reg, err := store.OpenRegistry(ctx, store.Config{Conn: edgeConn})
	if err != nil {
		t.Fatalf("edge opens the registry: %v", err)
	}
	w := watchKey(t, reg.WatchTraffic)
	if got := splitOf(w.next(t, "the edge's watch")); got["westeurope"]["v2"] != 10 {
		t.Fatalf("the edge's watch began with %v, want %v", got, split)
	}
	ejs, _ := jetstream.New(edgeConn)
	kv, err := ejs.KeyValue(ctx, store.BucketReleases)
	if err != nil {
		t.Fatalf("edge looks the releases bucket up: %v", err)
	}
	denied(t, "edge writes the traffic table", func(ctx context.Context) error {
		_, err := kv.Put(ctx, store.TrafficKey, []byte(`{"schema":1,"regions":{"westeurope":{"v2":100}}}`))
		return err
	})
	denied(t, "edge deletes the traffic table", func(ctx context.Context) error { return kv.Delete(ctx, store.TrafficKey) })
	denied(t, "edge writes a release record", func(ctx context.Context) error {
		_, err := kv.Put(ctx, "r-evil", []byte(`{}`))
		return err
	})
	if tr, err := ops.Traffic(ctx); err != nil || tr == nil || tr.Regions["westeurope"]["v2"] != 10 {
		t.Fatalf("after the edge's attempts the table is %+v, %v; want the one ops wrote", tr, err)
	}

	if err := ops.ClearTraffic(ctx); err != nil {
		t.Fatalf("ops clears the traffic table: %v", err)
	}
	if tr := w.next(t, "the clear"); tr != nil {
		t.Fatalf("after the clear the edge's watch delivered %+v, want nil", tr)
	}
}

func TestServerConfigListsEveryRoleWithItsPermissions(t *testing.T) {
	var users []store.User
	for i, r := range store.Roles {
		users = append(users, store.User{Role: r, PublicKey: strings.Repeat(string(rune('A'+i)), 3)})
	}
	conf := store.ServerConfig(users)
	for _, want := range []string{
		`{nkey: "AAA"}`, // admin: no permissions block
		`{nkey: "BBB", permissions: {`,
		`deny: ["$JS.API.CONSUMER.DELETE.*.order-processor"`,
		`"$KV.>"`,
		`"$JS.API.DIRECT.GET.KV_registry"`,
		`"$JS.API.DIRECT.GET.KV_releases"`, // the edge follows the traffic table
		`"$KV.releases.>"`,                 // which ops writes
		`subscribe: {allow: ["_INBOX.>"]}`,
		`"contoso.launch.>"`,                          // the autoscaler's starts, which agents take
		`allow_responses: {max: 1, expires: "10m0s"}`, // and answer
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("server configuration lacks %s:\n%s", want, conf)
		}
	}
}

// A store server offers every asset its declared size, whatever the disk's
// free space when it starts.
func TestDefaultMaxStoreHoldsEveryAsset(t *testing.T) {
	var total int64
	for _, a := range store.Assets() {
		total += a.MaxBytes
	}
	for _, region := range []string{"westeurope", "northeurope", "eastus"} { // each server holds every intake stream
		total += store.IntakeAsset(region).MaxBytes
	}
	if store.DefaultMaxStore < total {
		t.Fatalf("DefaultMaxStore %d < the assets' %d bytes", store.DefaultMaxStore, total)
	}
}
