package deploy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/keyfile"
	"github.com/contoso/shoes/internal/pki"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

// routeUser is the user the store servers' routes authenticate as.
const routeUser = "route"

// access is what the deployment's parts present to each other: every store
// user's nkey seed (one per role), the routes' password, and with TLS the
// deployment's CA and the certificate every listener presents. All of it
// is made on the first start and kept under <data>/config.
type access struct {
	seeds         StoreUsers
	routePassword string
	ca            *pki.CA         // nil without TLS
	cert          tls.Certificate // every listener's certificate, with TLS
}

// loadAccess reads the deployment's credentials from dataDir, making
// whatever is missing; with withTLS, also its CA and a fresh certificate
// for this machine's loopback names.
func loadAccess(dataDir string, withTLS bool) (*access, error) {
	dir := filepath.Join(dataDir, "config")
	seeds, err := LoadStoreUsers(filepath.Join(dir, "nats"))
	if err != nil {
		return nil, err
	}
	a := &access{seeds: seeds}
	if a.routePassword, err = routePassword(dir); err != nil {
		return nil, err
	}
	if !withTLS {
		return a, nil
	}
	if a.ca, err = pki.LoadOrCreateCA(filepath.Join(dir, "tls")); err != nil {
		return nil, err
	}
	if a.cert, err = a.ca.Issue(pki.LoopbackHosts...); err != nil {
		return nil, err
	}
	return a, nil
}

// routePassword reads the routes' password from the configuration
// directory dir, making it on the first start.
func routePassword(dir string) (string, error) {
	pass, err := keyfile.ReadOrCreate(filepath.Join(dir, "nats", "route.password"), maxSeedBytes, func() ([]byte, error) {
		return []byte(randomHex(24)), nil
	})
	if err != nil {
		return "", fmt.Errorf("store routes: %w", err)
	}
	return string(pass), nil
}

// StoreUsers are the nkey seeds of the store's users, one per role.
type StoreUsers map[store.Role][]byte

// maxSeedBytes bounds a seed file (and the routes' password file).
const maxSeedBytes = 4 << 10

// LoadStoreUsers reads one seed per role from dir (<role>.nk, private
// files through keyfile), making each that is missing. Surrounding white
// space in a file is ignored; a file that holds no user seed is an error.
func LoadStoreUsers(dir string) (StoreUsers, error) {
	seeds := StoreUsers{}
	for _, r := range store.Roles {
		path := filepath.Join(dir, string(r)+".nk")
		b, err := keyfile.ReadOrCreate(path, maxSeedBytes, store.NewUserSeed)
		if err != nil {
			return nil, fmt.Errorf("store user %s: %w", r, err)
		}
		seed := bytes.TrimSpace(b)
		if _, err := store.PublicKey(seed); err != nil {
			return nil, fmt.Errorf("store user %s (%s): %w", r, path, err)
		}
		seeds[r] = seed
	}
	return seeds, nil
}

// Users are the users the servers accept: every role's public key.
func (u StoreUsers) Users() []store.User {
	out := make([]store.User, 0, len(u))
	for _, r := range store.Roles {
		pub, _ := store.PublicKey(u[r]) // checked by LoadStoreUsers
		out = append(out, store.User{Role: r, PublicKey: pub})
	}
	return out
}

// store is how a part in role connects to the store servers.
func (a *access) store(r store.Role) store.Credentials {
	return store.Credentials{Seed: a.seeds[r], TLS: a.clientTLS()}
}

// nodeTLS is the store servers' TLS; nil without TLS.
func (a *access) nodeTLS() *store.NodeTLS {
	if a.ca == nil {
		return nil
	}
	return &store.NodeTLS{Cert: a.cert, Roots: a.ca.Pool()}
}

// serverTLS is what every HTTP listener presents; nil without TLS.
func (a *access) serverTLS() *tls.Config {
	if a.ca == nil {
		return nil
	}
	return pki.ServerConfig(a.cert)
}

// clientTLS trusts the deployment's CA only; nil without TLS.
func (a *access) clientTLS() *tls.Config {
	if a.ca == nil {
		return nil
	}
	return pki.ClientConfig(a.ca.Pool())
}

// provision declares every replicated asset as the store's administrator,
// with an intake stream for each data region, before any stamp starts (stamps' users may not create or reconfigure
// assets), and brings assets of an older data directory to their declared
// limits.
func (d *Deployment) provision(ctx context.Context, nodes []*store.Node) error {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.ClientURL()
	}
	nc, err := connectStore(strings.Join(urls, ","), "provision", d.access.store(store.RoleAdmin), d.log)
	if err != nil {
		return err
	}
	defer nc.Close()
	openCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	regions := make([]string, len(nodes))
	for i, n := range nodes {
		regions[i] = n.Config().Region
	}
	st, err := store.Provision(openCtx, store.Config{Conn: nc, Replicas: d.replicas(), Regions: regions, Logger: d.log.With("component", "provision")})
	if err != nil {
		return err
	}
	d.log.Debug("store assets declared; seeding")
	// The seed catalog and stock are stored here, once, before any stamp
	// starts: every stamp instance seeds a store it finds unseeded, and six
	// of them at once made some 900 creates, most of them refused, on the
	// first start's way to ready. The stamps then find the seed done.
	var catalogErr, stockErr error
	var wg sync.WaitGroup
	wg.Go(func() { _, catalogErr = st.SeedCatalog(openCtx, shop.SeedCatalog()) })
	wg.Go(func() { _, stockErr = st.SeedInventory(openCtx, shop.SeedStock()) })
	wg.Wait()
	return errors.Join(catalogErr, stockErr)
}

// LogPermissionDenied is the message logged when a store server refuses
// an operation because the part's user may not do it: a bug in the part or
// in its role's permissions, never a condition to ride out.
const LogPermissionDenied = "the store refused an operation this part's user may not do"

// connectStore connects a part named name to the store servers at urls
// (comma-separated, tried in order) with creds, reconnecting for ever. A
// refused operation (the part's user may not do it) is logged as an error:
// it is a bug in the part or in its role's permissions.
func connectStore(urls, name string, creds store.Credentials, log *slog.Logger) (*nats.Conn, error) {
	opts, err := creds.Options()
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.DontRandomize(), // the servers are listed nearest first
		nats.NoCallbacksAfterClientClose(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				log.Error(LogPermissionDenied, "connection", name, "error", err)
				return
			}
			log.Warn("store connection error", "connection", name, "error", err)
		}),
	)
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %s to the store: %w", name, err)
	}
	return nc, nil
}

// CAPath is the file of the deployment's CA certificate, which every
// https:// URL of the deployment chains to; empty without TLS.
func (d *Deployment) CAPath() string {
	if d.access.ca == nil {
		return ""
	}
	return d.access.ca.CertPath()
}

// ClientTLS is a TLS client configuration that trusts the deployment's CA;
// nil without TLS.
func (d *Deployment) ClientTLS() *tls.Config { return d.access.clientTLS() }

// StoreCredentials are the credentials of the store user with role, for
// operators' tools and tests that connect to a store server directly.
func (d *Deployment) StoreCredentials(r store.Role) store.Credentials { return d.access.store(r) }

// Hosts lists the host:port of the deployment's edge, operations address
// and global services.
func (d *Deployment) Hosts() []string {
	var out []string
	urls := []string{d.services.urls["secrets"], d.services.urls["partner"]}
	if d.front != nil {
		urls = append(urls, d.front.edgeURL, d.front.opsURL)
	}
	for _, u := range urls {
		if host := hostOf(u); host != "" {
			out = append(out, host)
		}
	}
	return out
}

// hostOf is the host:port of one of the deployment's URLs (scheme://host:port).
func hostOf(url string) string {
	_, host, _ := strings.Cut(url, "://")
	return host
}

// ClusterAddr is the address of a region's store server's cluster port
// (its routes), for tests that check what it demands.
func (d *Deployment) ClusterAddr(name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.regions[name]
	if !ok || r.node == nil {
		return ""
	}
	return r.node.ClusterAddr()
}
