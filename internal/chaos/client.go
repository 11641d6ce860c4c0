package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/contoso/shoes/internal/httpapi"
)

// maxAnswer bounds how much of an answer the client reads.
const maxAnswer = 1 << 20

// Client is a client of the operations API of faults, for tools: the
// command line and the experiment runner.
type Client struct {
	BaseURL string       // the operations address, like "http://127.0.0.1:8090"
	Token   string       // sent as a bearer token (an admin's); empty: none
	HTTP    *http.Client // nil: http.DefaultClient
}

// APIError is a failure answer of the API.
type APIError struct {
	Status int    // the HTTP status
	Title  string // the problem's title, or the status text
	Detail string // the problem's detail, or the start of a non-problem answer; may be empty
	Field  string // the offending field, if the problem names one
}

func (e *APIError) Error() string {
	msg := e.Detail
	if msg == "" {
		msg = e.Title
	}
	if e.Field != "" && !strings.Contains(msg, e.Field) {
		msg = e.Field + ": " + msg
	}
	return fmt.Sprintf("%s (HTTP %d)", msg, e.Status)
}

// Inject asks for the fault s and returns it as injected. A refusal is an
// *APIError (400 for a bad spec, 409 for a conflict).
func (c *Client) Inject(ctx context.Context, s Spec) (Active, error) {
	body, err := json.Marshal(s)
	if err != nil {
		return Active{}, fmt.Errorf("inject %s: %w", s.Fault, err)
	}
	var a Active
	if err := c.do(ctx, http.MethodPost, "/ops/chaos", body, &a); err != nil {
		return Active{}, fmt.Errorf("inject %s on %s: %w", s.Fault, s.Target, err)
	}
	return a, nil
}

// Heal heals the fault id now and returns it; a fault already healed is
// returned as it is.
func (c *Client) Heal(ctx context.Context, id string) (Active, error) {
	var a Active
	if err := c.do(ctx, http.MethodDelete, "/ops/chaos/"+url.PathEscape(id), nil, &a); err != nil {
		return Active{}, fmt.Errorf("heal %s: %w", id, err)
	}
	return a, nil
}

// Get returns the fault id.
func (c *Client) Get(ctx context.Context, id string) (Active, error) {
	var a Active
	if err := c.do(ctx, http.MethodGet, "/ops/chaos/"+url.PathEscape(id), nil, &a); err != nil {
		return Active{}, fmt.Errorf("get fault %s: %w", id, err)
	}
	return a, nil
}

// List returns the active faults, then the recently healed ones, newest
// first.
func (c *Client) List(ctx context.Context) ([]Active, error) {
	var l faultList
	if err := c.do(ctx, http.MethodGet, "/ops/chaos", nil, &l); err != nil {
		return nil, fmt.Errorf("list faults: %w", err)
	}
	if l.Faults == nil {
		l.Faults = []Active{}
	}
	return l.Faults, nil
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, dst any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		return apiError(resp, b)
	}
	if err := json.Unmarshal(b, dst); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// apiError reads a failure answer: a problem document when it is one, the
// start of its text otherwise.
func apiError(resp *http.Response, body []byte) *APIError {
	e := &APIError{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode)}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	var p httpapi.Problem
	if strings.HasSuffix(mt, "json") && json.Unmarshal(body, &p) == nil && (p.Title != "" || p.Detail != "") {
		e.Detail, e.Field = p.Detail, p.Field
		if p.Title != "" {
			e.Title = p.Title
		}
		return e
	}
	text := strings.TrimSpace(strings.ToValidUTF8(string(body), "?"))
	if len(text) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut] + "…"
	}
	e.Detail = text
	return e
}
