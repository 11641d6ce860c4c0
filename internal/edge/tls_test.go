package edge_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/netsim"
)

// tlsStamp is an https stamp (healthy) that counts the connections that
// did not start with a TLS handshake and the API requests it served.
type tlsStamp struct {
	srv   *httptest.Server
	plain atomic.Int64 // connections whose first byte was not a TLS handshake record
	api   atomic.Int64 // /api/ requests served, all over TLS
}

func newTLSStamp(t *testing.T) *tlsStamp {
	t.Helper()
	s := &tlsStamp{}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			t.Errorf("a request without TLS reached the https stamp: %s %s", r.Method, r.URL)
		}
		if strings.HasPrefix(r.URL.Path, "/api/") {
			s.api.Add(1)
		}
		w.Header().Set("X-Served-Region", "westeurope")
		_, _ = w.Write([]byte(`{"status":"healthy"}`))
	}))
	s.srv.Listener = sniffListener{s.srv.Listener, &s.plain}
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshakes are expected
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

// sniffListener counts the accepted connections whose first byte is not a
// TLS handshake record (22): plain HTTP sent to a TLS port.
type sniffListener struct {
	net.Listener
	plain *atomic.Int64
}

func (l sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, plain: l.plain}, nil
}

type sniffConn struct {
	net.Conn
	once  sync.Once
	plain *atomic.Int64
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.once.Do(func() {
			if p[0] != 22 {
				c.plain.Add(1)
			}
		})
	}
	return n, err
}

// An https stamp is probed and reached over TLS, its certificate verified
// with the CA in StampTLS against the address the edge dials (127.0.0.1,
// across a simulated link).
func TestHTTPSStampIsReachedOverTLS(t *testing.T) {
	stamp := newTLSStamp(t)
	roots := x509.NewCertPool()
	roots.AddCert(stamp.srv.Certificate())
	net := netsim.New(netsim.Config{})
	t.Cleanup(func() { net.Close() })
	e := runEdge(t, net, edge.Config{ProbeInterval: 50 * time.Millisecond, StampTLS: &tls.Config{RootCAs: roots}},
		edge.StampInfo{ID: "northeurope.tls", Region: "northeurope", URL: stamp.srv.URL})
	waitNear(t, e, "northeurope.tls", 5*time.Second)
	if st := e.Status()[0].Stamps[0]; st.State != health.Healthy || st.LastProbe != "healthy" {
		t.Fatalf("the https stamp: %+v", st)
	}
	front := httptest.NewServer(e.Handler())
	t.Cleanup(front.Close)
	resp, err := http.Get(front.URL + "/api/products")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Served-Region") != "westeurope" {
		t.Fatalf("GET through the edge = %d %s", resp.StatusCode, body)
	}
	if stamp.api.Load() != 1 || stamp.plain.Load() != 0 {
		t.Fatalf("the https stamp served %d API requests and got %d plain connections", stamp.api.Load(), stamp.plain.Load())
	}
}

// An https stamp whose certificate the edge cannot verify (no StampTLS: the
// system roots, which do not hold the test CA) never enters rotation: its
// probe says why, clients go to the other stamp, and nothing is ever sent
// to it in plain http.
func TestUnverifiedHTTPSStampStaysOutOfRotation(t *testing.T) {
	stamp := newTLSStamp(t)
	net := netsim.New(netsim.Config{})
	t.Cleanup(func() { net.Close() })
	e := runEdge(t, net, edge.Config{ProbeInterval: 50 * time.Millisecond},
		edge.StampInfo{ID: "westeurope.tls", Region: "westeurope", URL: stamp.srv.URL},
		edge.StampInfo{ID: "eastus.plain", Region: "eastus", URL: healthyStamp(t)})
	waitNear(t, e, "eastus.plain", 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var st edge.StampStatus
		for _, s := range e.Status()[0].Stamps {
			if s.ID == "westeurope.tls" {
				st = s
			}
		}
		if st.State == health.Unhealthy && !st.Reached && strings.Contains(st.LastProbe, "certificate") {
			t.Logf("the https stamp's probe: %s", st.LastProbe)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the https stamp's probe does not say its certificate failed: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	front := httptest.NewServer(e.Handler())
	t.Cleanup(front.Close)
	for range 5 {
		resp, err := http.Get(front.URL + "/api/products")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Served-Region") == "westeurope" {
			t.Fatalf("GET through the edge = %d from %q", resp.StatusCode, resp.Header.Get("X-Served-Region"))
		}
	}
	if p := e.Status()[0]; len(p.Near) != 1 || p.Near[0] != "eastus.plain" {
		t.Fatalf("the POP routes to %v", p.Near)
	}
	if stamp.plain.Load() != 0 || stamp.api.Load() != 0 {
		t.Fatalf("the https stamp got %d plain connections and served %d API requests", stamp.plain.Load(), stamp.api.Load())
	}
}
