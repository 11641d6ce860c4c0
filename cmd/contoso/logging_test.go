package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/shop"
)

// syncBuffer collects what up logs, from all its goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// Every JSON line up logs while it serves a browse, a failed request and
// an order, and processes the order, is one JSON object without a key
// written twice; the lines logged for a request or a message (those with a
// request_id, an order or a message subject) carry trace_id and span_id,
// and the order's lines, from the stamp's access log to the processor's
// partner call and the partner's receipt, all carry the order's trace.
func TestUpLogsEveryRequestAndMessageLineWithItsTraceAndNoKeyTwice(t *testing.T) {
	dir := t.TempDir()
	var stderr syncBuffer
	ready, stop := startUpLogging(t, nil, &stderr, "--data", dir, "--latency", "off",
		"--log-format", "json", "--log-level", "debug", "--probe-interval", "200ms", "--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0")
	var tok strings.Builder
	if err := run(t.Context(), []string{"token", "--data", dir, "--sub", "logged-buyer"}, nil, &tok, io.Discard); err != nil {
		t.Fatal(err)
	}
	send := func(method, path, body string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, ready.Edge+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok.String()))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "logged-order-1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	product := shop.SeedCatalog()[1]
	traces := map[string]string{}
	resp, _ := send(http.MethodGet, "/api/products/"+product.ID, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET product = %d", resp.StatusCode)
	}
	traces["browse"] = resp.Header.Get("X-Trace-Id")
	resp, _ = send(http.MethodGet, "/api/products/no-such-product", "")
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET unknown product = %d", resp.StatusCode)
	}
	traces["not found"] = resp.Header.Get("X-Trace-Id")
	resp, body := send(http.MethodPost, "/api/orders", `{"items":[{"sku":"`+shop.SKU(product.ID, product.Sizes[0])+`","quantity":1}]}`)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST order = %d %s", resp.StatusCode, body)
	}
	traces["order"] = resp.Header.Get("X-Trace-Id")
	var order shop.Order
	if err := json.Unmarshal(body, &order); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for order.Status != shop.OrderConfirmed {
		if time.Now().After(deadline) {
			t.Fatalf("order %s is %s after 60 s, want confirmed", order.ID, order.Status)
		}
		time.Sleep(100 * time.Millisecond)
		if _, body := send(http.MethodGet, "/api/orders/"+order.ID, ""); json.Unmarshal(body, &order) != nil {
			t.Fatalf("GET order: %s", body)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	seen := map[string]map[string]bool{} // trace -> messages logged with it
	lines := bytes.Split(bytes.TrimSpace(stderr.Bytes()), []byte("\n"))
	for _, line := range lines {
		if key, err := repeatedKey(line); err != nil || key != "" {
			t.Errorf("line %s: key %q written twice (%v)", line, key, err)
			continue
		}
		var rec map[string]any
		_ = json.Unmarshal(line, &rec)
		_, byRequest := rec["request_id"]
		_, byOrder := rec["order"]
		_, byMessage := rec["subject"]
		if !byRequest && !byOrder && !byMessage {
			continue
		}
		id, _ := rec["trace_id"].(string)
		if len(id) != 32 || rec["span_id"] == nil {
			t.Errorf("a line logged for a request or a message has no trace: %s", line)
			continue
		}
		if seen[id] == nil {
			seen[id] = map[string]bool{}
		}
		msg, _ := rec["msg"].(string)
		seen[id][msg] = true
	}
	for what, want := range map[string][]string{
		"browse":    {"request"},
		"not found": {"request", "request failed"},
		"order":     {"request", "partner notified", "partner stand-in: notification received"},
	} {
		for _, msg := range want {
			if !seen[traces[what]][msg] {
				t.Errorf("the %s request's trace %s has no line %q; it has %v", what, traces[what], msg, seen[traces[what]])
			}
		}
	}
	if t.Failed() {
		t.Logf("%d lines logged", len(lines))
	}
}

// repeatedKey returns the first key that an object of the JSON text line
// (at any depth) has twice, or "".
func repeatedKey(line []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	var walk func() (string, error)
	walk = func() (string, error) {
		tok, err := dec.Token()
		if err != nil {
			return "", err
		}
		switch tok {
		case json.Delim('{'):
			keys := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return "", err
				}
				key := k.(string)
				if keys[key] {
					return key, nil
				}
				keys[key] = true
				if dup, err := walk(); dup != "" || err != nil {
					return dup, err
				}
			}
			_, err = dec.Token() // '}'
			return "", err
		case json.Delim('['):
			for dec.More() {
				if dup, err := walk(); dup != "" || err != nil {
					return dup, err
				}
			}
			_, err = dec.Token() // ']'
			return "", err
		}
		return "", nil
	}
	dup, err := walk()
	if err == nil && dup == "" && dec.More() {
		err = errors.New("more than one JSON value on the line")
	}
	if err != nil {
		return "", fmt.Errorf("not one JSON object: %w", err)
	}
	return dup, nil
}

func TestRepeatedKey(t *testing.T) {
	for line, want := range map[string]string{
		`{"a":1,"b":2}`:                 "",
		`{"a":1,"a":2}`:                 "a",
		`{"a":{"x":1,"x":2},"b":[{}]}`:  "x",
		`{"a":[{"y":1},{"y":2,"y":3}]}`: "y",
		`{"a":{"x":1},"b":{"x":1}}`:     "",
	} {
		if got, err := repeatedKey([]byte(line)); err != nil || got != want {
			t.Errorf("repeatedKey(%s) = %q, %v; want %q", line, got, err, want)
		}
	}
	if _, err := repeatedKey([]byte(`{"a":1}{"b":2}`)); err == nil {
		t.Error("two objects on a line passed")
	}
}
