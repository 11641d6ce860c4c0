package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// startProcess runs one contoso command in process like startCommand,
// decoding its first line into line, and returns stop: it cancels the
// command's context and returns what the command returned. stop fails the
// test when the command printed anything after its first line, and runs
// at the end of the test if the test did not call it.
func startProcess(t *testing.T, env map[string]string, line any, args ...string) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, args, func(k string) string { return env[k] }, pw, io.Discard)
		pw.Close()
	}()
	dec := json.NewDecoder(pr)
	if err := dec.Decode(line); err != nil {
		cancel()
		t.Fatalf("%s: first line: %v (run: %v)", args[0], err, <-errc)
	}
	var rest bytes.Buffer
	copied := make(chan struct{})
	go func() {
		io.Copy(&rest, io.MultiReader(dec.Buffered(), pr))
		close(copied)
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(30 * time.Second):
				t.Fatalf("%s did not stop within 30 s", args[0])
			}
			<-copied
			if s := strings.TrimSpace(rest.String()); s != "" {
				t.Errorf("%s printed more than its ready line on stdout: %q", args[0], s)
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// A command told to stop finishes the request in flight before it
// returns, and takes no new connection meanwhile.
func TestServeEndpointsDrainsRequestsInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "finished")
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		errc <- serveEndpoints(ctx, pw, slog.New(slog.DiscardHandler), nil, map[string]string{"event": "ready"},
			endpoint{name: "url", addr: "127.0.0.1:0", handler: h})
		pw.Close()
	}()
	var ready struct{ Event, URL string }
	if err := json.NewDecoder(pr).Decode(&ready); err != nil || ready.Event != "ready" || !strings.HasPrefix(ready.URL, "http://127.0.0.1:") {
		t.Fatalf("ready line %+v: %v", ready, err)
	}
	go io.Copy(io.Discard, pr)
	type answer struct {
		body string
		err  error
	}
	answers := make(chan answer, 1)
	go func() {
		resp, err := http.Get(ready.URL + "/slow")
		if err != nil {
			answers <- answer{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		answers <- answer{string(b), err}
	}()
	<-entered
	cancel()
	// The listener closes first: poll until a new connection is refused.
	host := strings.TrimPrefix(ready.URL, "http://")
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", host)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still taking connections 10 s after it was told to stop")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-errc:
		t.Fatalf("returned %v with a request in flight", err)
	default:
	}
	close(release)
	if a := <-answers; a.err != nil || a.body != "finished" {
		t.Fatalf("the request in flight got %q, %v; want it finished", a.body, a.err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("returned %v after draining, want nil", err)
	}
}

// A listen address that is taken fails the command before its ready line,
// and the listeners it opened already are closed again.
func TestServeEndpointsFailsBeforeTheReadyLine(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var out bytes.Buffer
	err = serveEndpoints(t.Context(), &out, slog.New(slog.DiscardHandler), nil, map[string]string{"event": "ready"},
		endpoint{name: "url", addr: "127.0.0.1:0", handler: http.NotFoundHandler()},
		endpoint{name: "ops", addr: taken.Addr().String(), handler: http.NotFoundHandler()})
	if err == nil || !strings.Contains(err.Error(), "ops: listen") {
		t.Fatalf("serveEndpoints on a taken address = %v, want a listen error naming the endpoint", err)
	}
	if out.Len() != 0 {
		t.Fatalf("printed %q before failing", out.String())
	}
}
