package fleet_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/fleet"
)

// pop is a stand-in POP: it answers with its region and what it received.
func pop(t *testing.T, region string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Edge-Pop", region)
		fmt.Fprintf(w, "%s %s %s client-region=%q body=%q", region, r.Method, r.URL.Path, r.Header.Get("X-Client-Region"), body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// clock is a settable clock for the dispatcher's skip timer.
type clock struct{ now atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.now.Load()) }
func (c *clock) Advance(d time.Duration) { c.now.Add(int64(d)) }
func newClock() *clock                   { c := &clock{}; c.now.Store(time.Unix(1e9, 0).UnixNano()); return c }

func dispatcher(t *testing.T, pops map[string]string, now func() time.Time) *httptest.Server {
	t.Helper()
	srv, _ := newDispatcher(t, pops, now)
	return srv
}

func newDispatcher(t *testing.T, pops map[string]string, now func() time.Time) (*httptest.Server, *fleet.Dispatcher) {
	t.Helper()
	d, err := fleet.NewDispatcher(fleet.DispatcherConfig{POPs: pops, Order: []string{"westeurope", "northeurope", "eastus"}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return srv, d
}

func TestDispatcherPassesOverAWithdrawnPOP(t *testing.T) {
	pops := map[string]string{}
	for _, r := range regions {
		pops[r] = pop(t, r).URL
	}
	srv, d := newDispatcher(t, pops, nil)
	d.Withdraw("westeurope", true)
	if status, body := do(t, http.MethodGet, srv.URL+"/api/products", "westeurope", nil, ""); status != http.StatusOK || !strings.HasPrefix(body, "northeurope ") {
		t.Fatalf("westeurope client while its POP is withdrawn: %d %q, want northeurope's answer", status, body)
	}
	d.Withdraw("westeurope", false)
	if status, body := do(t, http.MethodGet, srv.URL+"/api/products", "westeurope", nil, ""); status != http.StatusOK || !strings.HasPrefix(body, "westeurope ") {
		t.Fatalf("westeurope client once its POP is back: %d %q", status, body)
	}
}

func do(t *testing.T, method, url, region string, header map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if region != "" {
		req.Header.Set("X-Client-Region", region)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDispatcherSendsEachClientToItsRegionsPOP(t *testing.T) {
	pops := map[string]string{}
	for _, r := range regions {
		pops[r] = pop(t, r).URL
	}
	d := dispatcher(t, pops, nil)
	for _, tc := range []struct{ region, want string }{
		{"westeurope", "westeurope"},
		{"northeurope", "northeurope"},
		{"eastus", "eastus"},
		{"", "westeurope"}, // no region: the first POP
	} {
		status, body := do(t, http.MethodGet, d.URL+"/api/products?limit=1", tc.region, nil, "")
		if status != http.StatusOK || !strings.HasPrefix(body, tc.want+" GET /api/products ") {
			t.Errorf("client of %q: %d %q, want %s's answer", tc.region, status, body, tc.want)
		}
		if !strings.Contains(body, `client-region=""`) {
			t.Errorf("client of %q: the POP received X-Client-Region: %q", tc.region, body)
		}
	}
	status, body := do(t, http.MethodGet, d.URL+"/api/products", "mars", nil, "")
	if status != http.StatusBadRequest || !strings.Contains(body, `no point of presence in region \"mars\"`) {
		t.Errorf("client of an unknown region: %d %s, want the edge's 400", status, body)
	}
}

func TestDispatcherFailsOverToTheNearestPOPAndSkipsADeadOne(t *testing.T) {
	// westeurope's POP reads each request, then resets the connection
	// without an answer, and counts the attempts.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int64
	go func() {
		for {
			c, err := dead.Accept()
			if err != nil {
				return
			}
			attempts.Add(1)
			if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				_, _ = io.Copy(io.Discard, req.Body)
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close() // a reset before any answer
		}
	}()
	t.Cleanup(func() { dead.Close() })
	clk := newClock()
	d := dispatcher(t, map[string]string{"westeurope": "http://" + dead.Addr().String(), "northeurope": pop(t, "northeurope").URL, "eastus": pop(t, "eastus").URL}, clk.Now)

	// A POST without an Idempotency-Key whose POP resets the connection
	// after reading it: nothing was answered, but the request went out, so
	// it is not sent again.
	status, body := do(t, http.MethodPost, d.URL+"/api/orders", "westeurope", nil, `{"items":[]}`)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("non-idempotent POST to a POP that reset: %d %q, want 503 and no retry", status, body)
	}
	// The same with an Idempotency-Key goes to the nearest other POP,
	// northeurope (10 ms) rather than eastus (40 ms), body intact.
	clk.Advance(time.Minute)
	status, body = do(t, http.MethodPost, d.URL+"/api/orders", "westeurope", map[string]string{"Idempotency-Key": "k1"}, `{"items":[1]}`)
	if status != http.StatusOK || body != `northeurope POST /api/orders client-region="" body="{\"items\":[1]}"` {
		t.Fatalf("idempotent POST: %d %q, want northeurope's answer", status, body)
	}
	n := attempts.Load()
	if n < 2 {
		t.Fatalf("the dead POP saw %d attempts, want one per request", n)
	}
	// Now found dead, it is passed over: no attempt reaches it.
	for range 3 {
		if status, body := do(t, http.MethodGet, d.URL+"/api/products", "westeurope", nil, ""); status != http.StatusOK || !strings.HasPrefix(body, "northeurope ") {
			t.Fatalf("GET while westeurope is dead: %d %q", status, body)
		}
	}
	if got := attempts.Load(); got != n {
		t.Fatalf("a POP found dead got %d more attempts within its skip time", got-n)
	}
	// After the skip time it is tried again (and fails over again).
	clk.Advance(3 * time.Second)
	if status, body := do(t, http.MethodGet, d.URL+"/api/products", "westeurope", nil, ""); status != http.StatusOK || !strings.HasPrefix(body, "northeurope ") {
		t.Fatalf("GET after the skip time: %d %q", status, body)
	}
	if got := attempts.Load(); got == n {
		t.Fatal("a POP found dead is never tried again")
	}
}

func TestDispatcherRetriesAnyRequestWhenNothingWasSent(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	url := closed.URL
	closed.Close() // connection refused
	d := dispatcher(t, map[string]string{"westeurope": url, "northeurope": pop(t, "northeurope").URL, "eastus": pop(t, "eastus").URL}, nil)
	status, body := do(t, http.MethodPost, d.URL+"/api/products/p1/comments", "westeurope", nil, "hello")
	if status != http.StatusOK || body != `northeurope POST /api/products/p1/comments client-region="" body="hello"` {
		t.Fatalf("POST to a closed POP: %d %q, want northeurope's answer", status, body)
	}
}

func TestDispatcherDoesNotRetryAPostAfterItsBytesWereSent(t *testing.T) {
	// westeurope's POP reads the whole request, then dies without an
	// answer; northeurope counts what reaches it.
	half, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { half.Close() })
	got := make(chan string, 4)
	go func() {
		for {
			c, err := half.Accept()
			if err != nil {
				return
			}
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err == nil {
				b, _ := io.ReadAll(req.Body)
				got <- string(b)
			}
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	var reached atomic.Int64
	ne := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	t.Cleanup(ne.Close)
	d := dispatcher(t, map[string]string{"westeurope": "http://" + half.Addr().String(), "northeurope": ne.URL, "eastus": ne.URL}, nil)
	status, _ := do(t, http.MethodPost, d.URL+"/api/orders", "westeurope", nil, `{"fromCart":true}`)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("POST whose POP died after reading it: %d, want 503", status)
	}
	select {
	case b := <-got:
		if b != `{"fromCart":true}` {
			t.Fatalf("the POP received %q", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the POP never received the request")
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("the POST was sent again to another POP (%d times)", n)
	}
}
