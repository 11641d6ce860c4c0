package stamp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/stamp"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// The rule every way of building a stamp shares: the registry never
// announces a wildcard or malformed URL. New refuses such an AdvertiseURL,
// or one whose scheme does not match the stamp's TLS; Serve refuses a
// wildcard listener without one, and announces the AdvertiseURL it is
// given, wherever it listens.
func TestAStampAdvertisesOnlyAReachableURL(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	st, _ := c.MustOpen(t, 0)
	_, verifier := testIssuer(t)
	cfg := func(advertise string, withTLS bool) stamp.Config {
		c := stamp.Config{Region: "westeurope", Store: st, Verifier: verifier, AdvertiseURL: advertise, ProbeInterval: 100 * time.Millisecond}
		if withTLS {
			c.TLS = &tls.Config{}
		}
		return c
	}

	for _, tc := range []struct {
		url  string
		tls  bool
		want string
	}{
		{"http://0.0.0.0:8081", false, "wildcard"},
		{"http://[::]:8081", false, "wildcard"},
		{"http://[::ffff:0.0.0.0]:8081", false, "wildcard"},
		{"http://:8081", false, "wildcard"},
		{"https://127.0.0.1:8081", false, "plain HTTP"},
		{"http://127.0.0.1:8081", true, "serves HTTPS"},
		{"http://127.0.0.1", false, "no port"},
		{"http://127.0.0.1:0", false, "port 0"},
		{"http://127.0.0.1:8081/x", false, "nothing more"},
		{"http://u:p@127.0.0.1:8081", false, "nothing more"},
		{"http://127.0.0.1:8081?x=1", false, "nothing more"},
		{"127.0.0.1:8081", false, "not a URL"},
		{"stamp-1.example:8081", false, "scheme must be http"},
	} {
		if _, err := stamp.New(cfg(tc.url, tc.tls)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New with AdvertiseURL %q (TLS %v) = %v, want an error saying %q", tc.url, tc.tls, err, tc.want)
		}
	}
	for _, ok := range []struct {
		url string
		tls bool
	}{{"http://127.0.0.1:8081", false}, {"https://weu-1.stamps.contoso.example:443", true}, {"http://[::1]:8081/", false}} {
		if _, err := stamp.New(cfg(ok.url, ok.tls)); err != nil {
			t.Errorf("New with AdvertiseURL %q (TLS %v) = %v, want it accepted", ok.url, ok.tls, err)
		}
	}

	// What the registry says, by region.
	var mu sync.Mutex
	urls := map[string]string{}
	ctx, cancel := context.WithCancel(t.Context())
	loaded := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = st.WatchRegistry(ctx, func(_ string, e *store.StampEntry) {
			mu.Lock()
			defer mu.Unlock()
			if e != nil {
				urls[e.Region] = e.URL
			}
		}, func() { close(loaded) })
	}()
	t.Cleanup(func() { cancel(); <-done })
	<-loaded

	for _, addr := range []string{"0.0.0.0:0", "[::]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil && addr == "[::]:0" {
			t.Logf("no IPv6 here: %v", err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		s, err := stamp.New(cfg("", false))
		if err != nil {
			t.Fatal(err)
		}
		refuseCtx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		err = s.Serve(refuseCtx, ln)
		cancel()
		if !errors.Is(err, stamp.ErrWildcardListener) {
			t.Fatalf("Serve on %s without AdvertiseURL = %v, want ErrWildcardListener", ln.Addr(), err)
		}
		if _, err := ln.Accept(); err == nil {
			t.Fatalf("Serve left the listener on %s open", ln.Addr())
		}
	}

	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	want := fmt.Sprintf("http://127.0.0.1:%d", port)
	s, err := stamp.New(cfg(want, false))
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- s.Serve(serveCtx, ln) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := urls["westeurope"]
		mu.Unlock()
		if got == want {
			break
		}
		if got != "" || time.Now().After(deadline) {
			stop()
			t.Fatalf("the registry announces %q, want %q", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if err := <-served; err != nil {
		t.Fatalf("Serve returned %v", err)
	}
}
