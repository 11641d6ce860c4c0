// Package storetest starts real embedded JetStream clusters for tests of
// the store: one server per region, routed directly on loopback or through
// simulated inter-region links that a test can cut.
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/netsim"
	"github.com/contoso/shoes/internal/store"
)

// Cluster is a running test cluster.
type Cluster struct {
	Nodes []*store.Node
}

// NewCluster starts one server per region (R3 needs three) and stops them
// when the test ends. Any client may connect, over plain TCP.
func NewCluster(tb testing.TB, regions ...string) *Cluster {
	tb.Helper()
	return NewClusterWith(tb, Options{}, regions...)
}

// Options secure a test cluster as a deployment's is secured, or route it
// as a deployment's is routed.
type Options struct {
	Users []store.User   // the only clients the servers accept; empty: anyone
	TLS   *store.NodeTLS // required of clients and routes; nil: plain TCP
	// Net carries every route between two servers over the link of their
	// regions' pair, so a test can cut a region off (Net.Link(a, b).Cut())
	// while its clients stay connected to it. Nil: routes go directly over
	// loopback.
	Net *netsim.Network
}

// routePassword authenticates a secured test cluster's routes.
const routePassword = "test-route-password"

// NewClusterWith is NewCluster with the servers secured by opts.
func NewClusterWith(tb testing.TB, opts Options, regions ...string) *Cluster {
	tb.Helper()
	ports := make([]int, len(regions))
	for i := range regions {
		p, err := store.FreePort()
		if err != nil {
			tb.Fatal(err)
		}
		ports[i] = p
	}
	c := &Cluster{}
	for i, r := range regions {
		cfg := store.NodeConfig{Region: r, StoreDir: tb.TempDir(), SyncAlways: true, Users: opts.Users, TLS: opts.TLS}
		routeUser := ""
		if len(opts.Users) > 0 {
			routeUser, cfg.RouteUser, cfg.RoutePassword = "route", "route", routePassword
		}
		if len(regions) > 1 {
			cfg.ClusterPort = ports[i]
			for j := range regions {
				if j == i {
					continue
				}
				addr := fmt.Sprintf("127.0.0.1:%d", ports[j])
				if opts.Net != nil {
					var err error
					if addr, err = opts.Net.Route(r, regions[j], addr); err != nil {
						tb.Fatal(err)
					}
				}
				cfg.Routes = append(cfg.Routes, store.RouteURL(addr, routeUser, cfg.RoutePassword))
			}
		}
		n, err := store.StartNode(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { n.Shutdown(false) })
		c.Nodes = append(c.Nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := store.WaitForCluster(ctx, c.Nodes); err != nil {
		tb.Fatal(err)
	}
	return c
}

// MustOpen connects to node i and opens the store on it, with replicas
// equal to the cluster size (at most three).
func (c *Cluster) MustOpen(tb testing.TB, i int) (*store.Store, *nats.Conn) {
	tb.Helper()
	nc, err := nats.Connect(c.Nodes[i].ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Conn: nc, Replicas: min(3, len(c.Nodes))})
	if err != nil {
		tb.Fatal(err)
	}
	return st, nc
}

// RoleUsers makes a user nkey for every role: the users a server accepts
// and each role's seed, to connect as it.
func RoleUsers(tb testing.TB) ([]store.User, map[store.Role][]byte) {
	tb.Helper()
	seeds := map[store.Role][]byte{}
	var users []store.User
	for _, r := range store.Roles {
		seed, err := store.NewUserSeed()
		if err != nil {
			tb.Fatal(err)
		}
		pub, err := store.PublicKey(seed)
		if err != nil {
			tb.Fatal(err)
		}
		seeds[r] = seed
		users = append(users, store.User{Role: r, PublicKey: pub})
	}
	return users, seeds
}

// StepDown asks stream's leader to hand over to region's server (the
// servers carry a "region:<name>" tag, as a deployment's do); the test
// fails when the engine refuses.
func StepDown(tb testing.TB, nc *nats.Conn, stream, region string) {
	tb.Helper()
	req, _ := json.Marshal(map[string]any{"placement": map[string]any{"tags": []string{"region:" + region}}})
	resp, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, req, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	var answer struct{ Success bool }
	if json.Unmarshal(resp.Data, &answer); !answer.Success {
		tb.Fatalf("step-down of %s to %s: %s", stream, region, resp.Data)
	}
}
