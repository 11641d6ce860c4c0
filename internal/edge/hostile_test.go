package edge_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/edge/edgetest"
	"github.com/contoso/shoes/internal/netsim"
	"github.com/contoso/shoes/internal/telemetry"
)

const testCredential = "the-deployment's-edge-credential"

// checkedStamp is a stamp that checks every request it gets: a probe of
// /health/stamp (answered healthy), or a request the edge forwarded, which
// must ask for a public path, carry the edge's credential once, and name
// the stamp's own address as its Host. Anything else is recorded as wrong.
// Every answer carries X-Served-Region, as a real stamp's does.
type checkedStamp struct {
	srv *httptest.Server

	mu        sync.Mutex // guards the fields below
	forwarded int        // requests the edge forwarded
	complete  int        // of which those whose body arrived whole
	wrong     []string
	last      http.Header // the headers of the last forwarded request
}

func newCheckedStamp(t testing.TB) *checkedStamp {
	s := &checkedStamp{}
	s.srv = httptest.NewServer(s)
	t.Cleanup(s.srv.Close)
	return s
}

func (s *checkedStamp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, bodyErr := io.Copy(io.Discard, r.Body)
	forwarded := r.Header.Get("X-Request-Id") != "" || len(r.Header.Values("X-Edge-Credential")) > 0
	if !forwarded && r.Method == http.MethodGet && r.URL.Path == "/health/stamp" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"healthy"}`))
		return
	}
	s.mu.Lock()
	s.forwarded++
	if bodyErr == nil {
		s.complete++
	}
	s.last = r.Header.Clone()
	switch cred := r.Header.Values("X-Edge-Credential"); {
	case !forwarded:
		s.wrong = append(s.wrong, fmt.Sprintf("a request the edge did not forward: %s %s", r.Method, r.RequestURI))
	case !publicPath(r.Method, r.URL.Path):
		s.wrong = append(s.wrong, fmt.Sprintf("a path outside the allowlist: %s %s", r.Method, r.RequestURI))
	case len(cred) != 1 || cred[0] != testCredential:
		s.wrong = append(s.wrong, fmt.Sprintf("credential %q on %s %s", cred, r.Method, r.RequestURI))
	case r.Host != s.srv.Listener.Addr().String():
		s.wrong = append(s.wrong, fmt.Sprintf("Host %q on %s %s", r.Host, r.Method, r.RequestURI))
	}
	s.mu.Unlock()
	w.Header().Set("X-Served-Region", "westeurope")
	_, _ = w.Write([]byte("served by the stamp"))
}

// publicPath is the edge's allowlist, as a stamp may see it.
func publicPath(method, path string) bool {
	if strings.HasPrefix(path, "/api/") {
		return true
	}
	return (path == "/health/live" || path == "/health/ready") && (method == http.MethodGet || method == http.MethodHead)
}

// seen reports the requests forwarded so far, what was wrong with any, and
// the headers of the last one (see also completed).
func (s *checkedStamp) seen() (int, []string, http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.forwarded, slices.Clone(s.wrong), s.last
}

// completed is how many forwarded requests arrived with their whole body.
func (s *checkedStamp) completed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.complete
}

// hostileRig is an edge with one POP in westeurope in front of one checked
// stamp, and a foreign listener that nothing may reach.
type hostileRig struct {
	edge    *edge.Edge
	front   string // the edge's host:port
	stamp   *checkedStamp
	foreign *edgetest.Recorder
}

func newHostileRig(t testing.TB, cfg edge.Config) *hostileRig {
	t.Helper()
	net := netsim.New(netsim.Config{})
	t.Cleanup(func() { net.Close() })
	rig := &hostileRig{stamp: newCheckedStamp(t), foreign: edgetest.MustRecord(t)}
	cfg.Credential = testCredential
	cfg.ProbeInterval = 50 * time.Millisecond
	rig.edge = runEdge(t, net, cfg, edge.StampInfo{ID: "westeurope.a", Region: "westeurope", URL: rig.stamp.srv.URL})
	waitNear(t, rig.edge, "westeurope.a", 5*time.Second)
	front := httptest.NewServer(rig.edge.Handler())
	t.Cleanup(front.Close)
	rig.front = front.Listener.Addr().String()
	return rig
}

// targets are the addresses the hostile table names.
func (rig *hostileRig) targets() edgetest.Targets {
	return edgetest.Targets{Edge: rig.front, Foreign: rig.foreign.Addr(), Stamp: rig.stamp.srv.Listener.Addr().String()}
}

// mustStayInRotation fails the test unless the stamp is routed to and not
// ejected.
func (rig *hostileRig) mustStayInRotation(t testing.TB, after string) {
	t.Helper()
	p := rig.edge.Status()[0]
	for _, st := range p.Stamps {
		if st.Ejected {
			t.Fatalf("after %s the stamp was ejected: %+v", after, st)
		}
	}
	if !slices.Equal(p.Near, []string{"westeurope.a"}) {
		t.Fatalf("after %s the POP routes to %v, want the stamp: %+v", after, p.Near, p)
	}
}

// Every hostile request of the table gets its answer from whoever must
// give it, and none reaches another host: the foreign listener hears
// nothing, the stamp sees only public paths carrying the edge's credential,
// and it stays in rotation throughout.
func TestEdgeRefusesHostileRequests(t *testing.T) {
	rig := newHostileRig(t, edge.Config{})
	cases := edgetest.Hostile(rig.targets())
	if len(cases) < 25 {
		t.Fatalf("only %d hostile cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			conns, heard, _ := rig.foreign.Heard()
			before, wrongBefore, _ := rig.stamp.seen()
			got, err := edgetest.Exchange(rig.front, nil, []byte(c.Raw), len(c.Want), 5*time.Second)
			if err != nil {
				t.Fatalf("%v (%s)", err, edgetest.Describe(got))
			}
			if err := edgetest.Check(c, got); err != nil {
				t.Error(err)
			}
			if c2, h2, _ := rig.foreign.Heard(); c2 != conns || h2 != heard {
				t.Errorf("the foreign listener accepted %d connections and %d bytes", c2-conns, h2-heard)
			}
			after, wrong, _ := rig.stamp.seen()
			if len(wrong) > len(wrongBefore) {
				t.Errorf("the stamp saw what it never should: %q", wrong[len(wrongBefore):])
			}
			if !slices.ContainsFunc(c.Want, func(a edgetest.Answer) bool { return a.By == edgetest.ByStamp }) && after != before {
				t.Errorf("%d requests reached the stamp, want none", after-before)
			}
			rig.mustStayInRotation(t, c.Name)
		})
	}
	rig.foreign.MustBeSilent(t, "the hostile table")
	if _, wrong, _ := rig.stamp.seen(); len(wrong) > 0 {
		t.Fatalf("the stamp saw what it never should: %q", wrong)
	}
}

// The stamp gets the edge's credential and the request id whatever the
// client names in Connection, never the client's own credential, and the
// trace context as the client sent it (telemetry off) or continued by the
// edge's span (telemetry on); a header the client names in Connection is
// dropped.
func TestStampGetsTheEdgesHeadersWhateverConnectionNames(t *testing.T) {
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		parent  = "00-" + traceID + "-00f067aa0ba902b7-01"
	)
	for _, traced := range []bool{false, true} {
		t.Run(fmt.Sprintf("telemetry=%v", traced), func(t *testing.T) {
			var cfg edge.Config
			if traced {
				tel, err := telemetry.New(context.Background(), telemetry.Config{Service: "edge-test"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
				cfg.Telemetry = tel
			}
			rig := newHostileRig(t, cfg)
			raw := "GET /api/products HTTP/1.1\r\nHost: " + rig.front + "\r\n" +
				"Connection: keep-alive, X-Edge-Credential, X-Request-Id, traceparent, tracestate, baggage, X-Hop\r\n" +
				"X-Edge-Credential: forged\r\nX-Request-Id: client-chosen-1\r\n" +
				"traceparent: " + parent + "\r\ntracestate: vendor=1\r\nbaggage: shopper=42\r\n" +
				"X-Hop: only-to-the-edge\r\nX-End-To-End: kept\r\n\r\n"
			got, err := edgetest.Exchange(rig.front, nil, []byte(raw), 1, 5*time.Second)
			if err != nil || len(got) != 1 || got[0].Status != http.StatusOK {
				t.Fatalf("answer %s, %v", edgetest.Describe(got), err)
			}
			_, wrong, h := rig.stamp.seen()
			if len(wrong) > 0 {
				t.Fatalf("the stamp saw what it never should: %q", wrong)
			}
			if cred := h.Values("X-Edge-Credential"); !slices.Equal(cred, []string{testCredential}) {
				t.Errorf("the stamp got credential %q, want only the edge's", cred)
			}
			if id := h.Values("X-Request-Id"); !slices.Equal(id, []string{"client-chosen-1"}) {
				t.Errorf("the stamp got request id %q, want the client's well-formed one", id)
			}
			if h.Get("X-Hop") != "" || h.Get("Connection") != "" {
				t.Errorf("hop-by-hop headers reached the stamp: X-Hop %q, Connection %q", h.Get("X-Hop"), h.Get("Connection"))
			}
			if h.Get("X-End-To-End") != "kept" {
				t.Errorf("X-End-To-End = %q, want it forwarded", h.Get("X-End-To-End"))
			}
			tp := h.Get("Traceparent")
			switch {
			case !traced && (tp != parent || h.Get("Tracestate") != "vendor=1" || h.Get("Baggage") != "shopper=42"):
				t.Errorf("without telemetry the stamp got trace context %q %q %q, want the client's", tp, h.Get("Tracestate"), h.Get("Baggage"))
			case traced && (!strings.Contains(tp, traceID) || tp == parent || h.Get("Baggage") != "shopper=42"):
				t.Errorf("with telemetry the stamp got traceparent %q baggage %q, want the client's trace continued by the edge's span", tp, h.Get("Baggage"))
			}
		})
	}
}

// A stamp's hop-by-hop response headers, and those it names in Connection,
// do not reach the client.
func TestEdgeDropsTheStampsHopByHopResponseHeaders(t *testing.T) {
	_, front := streamEdge(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Internal")
		w.Header().Set("X-Internal", "between the stamp and the edge")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Public", "yes")
		_, _ = w.Write([]byte("ok"))
	})
	resp, err := http.Get(front + "/api/products")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Internal") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Fatalf("hop-by-hop headers reached the client: %v", resp.Header)
	}
	if resp.Header.Get("X-Public") != "yes" {
		t.Fatalf("an end-to-end header was lost: %v", resp.Header)
	}
}

// Requests that fail through the client's fault never count against the
// stamp, however many come: a header the transport would refuse (handed to
// the handler directly, as another front end could; net/http's HTTP/1
// server refuses it first) and a streamed body with an invalid chunk. Each
// is answered 400, the stamp stays in rotation and never gets a complete
// request.
func TestClientFaultsNeverEjectTheStamp(t *testing.T) {
	rig := newHostileRig(t, edge.Config{})
	h := rig.edge.Handler()
	for i := range 5 { // more than the failures that eject a stamp
		r := httptest.NewRequest(http.MethodGet, "/api/products", nil)
		r.Header["X-Bad"] = []string{"a\x00b"}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("bad header %d: %d %s %s", i, w.Code, w.Header().Get("Content-Type"), w.Body)
		}
	}
	rig.mustStayInRotation(t, "requests with a header the transport refuses")
	invalidChunk := edgetest.Case{Name: "streamed invalid chunk", Want: []edgetest.Answer{{Status: 400, By: edgetest.ByEdge}},
		Raw: "POST /api/upload HTTP/1.1\r\nHost: " + rig.front + "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"}
	for range 5 {
		got, err := edgetest.Exchange(rig.front, nil, []byte(invalidChunk.Raw), 1, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := edgetest.Check(invalidChunk, got); err != nil {
			t.Fatal(err)
		}
	}
	rig.mustStayInRotation(t, "streamed bodies with an invalid chunk")
	if n := rig.stamp.completed(); n > 0 {
		t.Fatalf("the stamp got %d complete requests, want none", n)
	}
	if _, wrong, _ := rig.stamp.seen(); len(wrong) > 0 {
		t.Fatalf("the stamp saw what it never should: %q", wrong)
	}
}
