package deploy_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/shop"
	"github.com/contoso/shoes/internal/store"
)

// With TLS on, every hop is encrypted and verified against the
// deployment's CA: client → edge, edge → stamp, stamp → secret store and
// partner, every store client → its server, server → server. Plain HTTP and
// plain NATS are refused, and a checkout still goes all the way through.
func TestEveryHopIsTLS(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{TLS: true}, regions3...)
	if d.CAPath() == "" {
		t.Fatal("no CA file for a TLS deployment")
	}
	urls := map[string]string{"edge": d.EdgeURL(), "ops": d.OpsURL()}
	for name, u := range d.ServiceURLs() {
		urls[name] = u
	}
	for r, u := range d.Regions() {
		urls["stamp "+r] = u
	}
	for name, u := range urls {
		if !strings.HasPrefix(u, "https://") {
			t.Errorf("%s is %s, want https://", name, u)
		}
	}

	// Plain HTTP to a stamp or the edge is refused, never served.
	for _, name := range []string{"edge", "stamp westeurope"} {
		plain := "http://" + strings.TrimPrefix(urls[name], "https://") + "/health/live"
		resp, err := http.Get(plain)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("plain HTTP to the %s: %d, want 400 (an HTTP request to an HTTPS server)", name, resp.StatusCode)
			}
		}
	}
	// A client that does not trust the deployment's CA cannot talk to it.
	if resp, err := http.Get(d.EdgeURL() + "/api/products?limit=1"); err == nil {
		resp.Body.Close()
		t.Error("a client without the deployment's CA reached the edge")
	} else if _, ok := errors.AsType[*tls.CertificateVerificationError](err); !ok {
		t.Errorf("a client without the CA: %v, want a certificate verification error", err)
	}

	// The store servers take TLS clients only, and those only with a
	// user's credentials; their cluster routes want TLS and credentials.
	url, _ := d.ClientURL("westeurope")
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("store client URL %s, want tls://", url)
	}
	admin := d.StoreCredentials(store.RoleAdmin)
	noTLS, _ := store.Credentials{Seed: admin.Seed}.Options()
	if nc, err := nats.Connect(url, append(noTLS, nats.Timeout(5*time.Second))...); err == nil {
		nc.Close()
		t.Error("a store client without TLS connected")
	}
	noUser, _ := store.Credentials{TLS: admin.TLS}.Options()
	if nc, err := nats.Connect(url, append(noUser, nats.Timeout(5*time.Second))...); err == nil {
		nc.Close()
		t.Error("a store client without credentials connected")
	}
	if err := routeHandshake(d.ClusterAddr("westeurope"), d.ClientTLS()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a route without a certificate of the deployment: %v, want refused for its certificate", err)
	}

	// A purchase through the edge: the edge reaches the stamp over TLS, the
	// stamp's processor gets its secrets and tells the partner over TLS.
	sku := shop.SeedCatalog()[0].ID + "-42"
	setStock(t, d, sku, 5)
	alice := deploytest.Token(t, d, "alice", false)
	res := deploytest.DoKeyed(t, http.MethodPost, d.EdgeURL()+"/api/orders", alice, "tls-order-1",
		map[string]any{"items": []map[string]any{{"sku": sku, "quantity": 1}}})
	if res.Status != http.StatusAccepted {
		t.Fatalf("order through the edge: %d %s", res.Status, res.Body)
	}
	var o order
	res.JSON(t, &o)
	final := waitFinal(t, d, map[string]string{o.ID: alice}, 30*time.Second)
	if got := final[o.ID].Status; got != shop.OrderConfirmed {
		t.Fatalf("order %s ended %s (%s), want confirmed", o.ID, got, final[o.ID].Reason)
	}
}

// routeHandshake speaks TLS to a store server's cluster port as a route
// would, trusting the deployment's CA but presenting no certificate, and
// returns why the server would not talk.
func routeHandshake(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = bufio.NewReader(c).ReadString('\n') // TLS 1.3: the refusal arrives after the handshake
	return err
}
