package edge_test

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/netsim"
)

// streamEdge runs an edge in front of one stamp whose /api/ requests are
// served by api (its health endpoint always healthy) and returns the edge's
// public URL once the stamp is in rotation.
func streamEdge(t *testing.T, api http.HandlerFunc) (*edge.Edge, string) {
	t.Helper()
	net := netsim.New(netsim.Config{})
	t.Cleanup(func() { net.Close() })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			api(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"status":"healthy"}`))
	}))
	t.Cleanup(srv.Close)
	e := runEdge(t, net, edge.Config{ProbeInterval: 50 * time.Millisecond},
		edge.StampInfo{ID: "westeurope.a", Region: "westeurope", URL: srv.URL})
	waitNear(t, e, "westeurope.a", 5*time.Second)
	front := httptest.NewServer(e.Handler())
	t.Cleanup(front.Close)
	return e, front.URL
}

// within fails the test unless ch yields before the deadline.
func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: nothing within %s", what, d)
		var zero T
		return zero
	}
}

// A request that is not retried streams through the edge: the stamp reads
// the first part of the body while the client has not sent the rest yet.
// An edge that held the body until it was complete would never let the
// stamp see the first part.
func TestEdgeStreamsRequestBodies(t *testing.T) {
	firstPart := make(chan string, 1)
	_, front := streamEdge(t, func(w http.ResponseWriter, r *http.Request) {
		rd := bufio.NewReader(r.Body)
		line, _ := rd.ReadString('\n')
		firstPart <- line
		rest, _ := io.ReadAll(rd)
		_, _ = w.Write(append([]byte(line), rest...))
	})
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.CloseWithError(errors.New("the test is over")) }) // before the servers close
	answered := make(chan *http.Response, 1)
	failed := make(chan error, 1)
	go func() {
		resp, err := http.Post(front+"/api/upload", "text/plain", pr) // no Idempotency-Key: never retried
		if err != nil {
			failed <- err
			return
		}
		answered <- resp
	}()
	if _, err := pw.Write([]byte("first\n")); err != nil {
		t.Fatal(err)
	}
	if got := within(t, firstPart, 5*time.Second, "the stamp reading the first part before the client finished"); got != "first\n" {
		t.Fatalf("first part = %q", got)
	}
	_, _ = pw.Write([]byte("second\n"))
	pw.Close()
	select {
	case err := <-failed:
		t.Fatal(err)
	case resp := <-answered:
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "first\nsecond\n" {
			t.Fatalf("answer = %d %q", resp.StatusCode, body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer")
	}
}

// A streamed body that grows past the limit is cut off and answered 413,
// like a declared one; the stamp never receives a whole oversized body, and
// the client's fault does not count against the stamp: however many such
// requests come, it is not ejected.
func TestEdgeCutsOffAnOversizedStream(t *testing.T) {
	received := make(chan int, 10)
	e, front := streamEdge(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		received <- int(n)
	})
	for i := range 5 { // more than the failures that eject a stamp
		body := io.MultiReader(strings.NewReader(strings.Repeat("x", 70<<10))) // no length: chunked
		resp, err := http.Post(front+"/api/upload", "text/plain", body)
		if err != nil {
			t.Fatal(err)
		}
		problem, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("oversized stream %d = %d %s %s", i, resp.StatusCode, resp.Header.Get("Content-Type"), problem)
		}
	}
	for len(received) > 0 {
		if n := <-received; n > 64<<10 {
			t.Fatalf("the stamp received %d bytes, over the limit", n)
		}
	}
	for _, st := range e.Status()[0].Stamps {
		if st.Ejected {
			t.Fatalf("the stamp was ejected for the client's oversized bodies: %+v", st)
		}
	}
}

// A response of unknown length reaches the client chunk by chunk: the
// client reads the first event while the stamp is still waiting to send
// the second.
func TestEdgeStreamsResponses(t *testing.T) {
	clientGotFirst := make(chan struct{})
	_, front := streamEdge(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("data: one\n\n"))
		http.NewResponseController(w).Flush()
		select {
		case <-clientGotFirst:
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write([]byte("data: two\n\n"))
	})
	resp, err := http.Get(front + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	lines := make(chan string, 1)
	go func() {
		line, _ := rd.ReadString('\n')
		lines <- line
	}()
	if got := within(t, lines, 5*time.Second, "the first event before the stamp sent the second"); got != "data: one\n" {
		t.Fatalf("first line = %q", got)
	}
	close(clientGotFirst)
	rest, _ := io.ReadAll(rd)
	if string(rest) != "\ndata: two\n\n" {
		t.Fatalf("rest = %q", rest)
	}
}

// Clients that give up on a slow answer say nothing about the stamp: their
// cancelled requests do not count towards ejecting it.
func TestClientsGivingUpDoNotEjectTheStamp(t *testing.T) {
	e, front := streamEdge(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	impatient := &http.Client{Timeout: 100 * time.Millisecond}
	for range 5 { // more than the failures that eject a stamp
		if resp, err := impatient.Get(front + "/api/slow"); err == nil {
			resp.Body.Close()
			t.Fatal("the slow answer came in time")
		}
	}
	// The edge notices each client leaving as it happens; give the last
	// one a moment to be handled, then look.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		for _, st := range e.Status()[0].Stamps {
			if st.Ejected {
				t.Fatalf("the stamp was ejected for clients giving up: %+v", st)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}
