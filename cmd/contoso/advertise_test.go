package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// A stamp never announces an address the edge cannot reach: listening on a
// wildcard address without --advertise, a wildcard or malformed
// --advertise, or a scheme that does not match whether it serves TLS, and
// it refuses to start, before it connects to anything, naming the flag.
func TestStampRefusesToAdvertiseWhatTheEdgeCannotReach(t *testing.T) {
	dir := t.TempDir()
	var certs struct{ Cert, Key string }
	var out bytes.Buffer
	if err := run(t.Context(), []string{"certs", "--dir", filepath.Join(dir, "tls"), "--host", "127.0.0.1", "--name", "stamp"}, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out.Bytes(), &certs); err != nil {
		t.Fatalf("certs printed %q: %v", out.String(), err)
	}
	tlsFlags := []string{"--tls-cert", certs.Cert, "--tls-key", certs.Key}
	base := []string{"stamp", "--region", "westeurope", "--nats", "nats://127.0.0.1:1", "--data", dir}
	for _, tc := range []struct {
		name  string
		args  []string
		wants []string
	}{
		{"IPv4 wildcard listener", []string{"--listen", "0.0.0.0:0"}, []string{"-listen 0.0.0.0:0", "wildcard", "pass --advertise http://HOST:PORT"}},
		{"IPv6 wildcard listener", []string{"--listen", "[::]:0"}, []string{"wildcard", "pass --advertise"}},
		{"listener without a host", []string{"--listen", ":0"}, []string{"wildcard", "pass --advertise"}},
		{"wildcard listener over TLS", append([]string{"--listen", "0.0.0.0:0"}, tlsFlags...), []string{"pass --advertise https://HOST:PORT"}},
		{"IPv4 wildcard advertised", []string{"--listen", "0.0.0.0:0", "--advertise", "http://0.0.0.0:8081"}, []string{"--advertise", "wildcard"}},
		{"IPv6 wildcard advertised", []string{"--listen", "0.0.0.0:0", "--advertise", "http://[::]:8081"}, []string{"--advertise", "wildcard"}},
		{"no host advertised", []string{"--listen", "0.0.0.0:0", "--advertise", "http://:8081"}, []string{"--advertise", "wildcard"}},
		{"https without TLS", []string{"--listen", "0.0.0.0:0", "--advertise", "https://127.0.0.1:8081"}, []string{"--advertise", "plain HTTP"}},
		{"http with TLS", append([]string{"--listen", "0.0.0.0:0", "--advertise", "http://127.0.0.1:8081"}, tlsFlags...), []string{"--advertise", "serves HTTPS", "https://"}},
		{"no port", []string{"--listen", "0.0.0.0:0", "--advertise", "http://stamp-1.example"}, []string{"--advertise", "no port", "http://stamp-1.example:80"}},
		{"not a URL", []string{"--listen", "0.0.0.0:0", "--advertise", "stamp-1.example:8081"}, []string{"--advertise", "scheme must be http"}},
		{"a path", []string{"--listen", "0.0.0.0:0", "--advertise", "http://stamp-1.example:8081/weu"}, []string{"--advertise", "nothing more"}},
		{"another scheme", []string{"--listen", "0.0.0.0:0", "--advertise", "ftp://stamp-1.example:8081"}, []string{"--advertise", "scheme must be http"}},
	} {
		t.Run(tc.name, func(t *testing.T) { refusesToStart(t, append(slices.Clone(base), tc.args...), nil, tc.wants...) })
	}
}

// A stamp listening on every address announces the URL given with
// --advertise, and the edge reaches it there; a stamp listening on a
// specific address without it announces that address.
func TestStampRegistersTheAdvertisedURL(t *testing.T) {
	c := storetest.NewCluster(t, "westeurope")
	dir := t.TempDir()
	port, err := store.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	advertised := fmt.Sprintf("http://127.0.0.1:%d", port)
	var wild, plain struct{ Event, Region, URL, Advertise string }
	startCommand(t, nil, &wild, "stamp", "--region", "westeurope", "--nats", c.Nodes[0].ClientURL(), "--replicas", "1",
		"--listen", fmt.Sprintf("0.0.0.0:%d", port), "--advertise", advertised, "--data", dir, "--probe-interval", "200ms")
	if wild.Advertise != advertised {
		t.Fatalf("listening line = %+v, want advertise %s", wild, advertised)
	}
	startCommand(t, nil, &plain, "stamp", "--region", "northeurope", "--nats", c.Nodes[0].ClientURL(), "--replicas", "1",
		"--listen", "127.0.0.1:0", "--data", dir, "--probe-interval", "200ms")
	if !strings.HasPrefix(plain.URL, "http://127.0.0.1:") || plain.Advertise != plain.URL {
		t.Fatalf("listening line = %+v, want the listener's URL advertised", plain)
	}

	// Read the registry as the edge does.
	nc, err := nats.Connect(c.Nodes[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	reg, err := store.OpenRegistry(t.Context(), store.Config{Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	urls := map[string]string{} // region -> announced URL
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = reg.Watch(ctx, func(_ string, e *store.StampEntry) {
			if e != nil {
				mu.Lock()
				urls[e.Region] = e.URL
				mu.Unlock()
			}
		}, nil)
	}()
	defer func() { cancel(); <-done }()
	want := map[string]string{"westeurope": advertised, "northeurope": plain.URL}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		got := fmt.Sprint(urls)
		mu.Unlock()
		if got == fmt.Sprint(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registry announces %s, want %s", got, fmt.Sprint(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get(advertised + "/health/live")
	if err != nil {
		t.Fatalf("the advertised URL does not reach the stamp: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/health/live = %d", advertised, resp.StatusCode)
	}
}
