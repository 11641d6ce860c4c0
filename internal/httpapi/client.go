package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"
)

// maxAnswer bounds how much of an answer a Client reads.
const maxAnswer = 1 << 20

// Client calls a JSON API of ours (the operations API, for tools): it
// sends a bearer token and reads a failure answer as an *APIError.
type Client struct {
	BaseURL string       // like "http://127.0.0.1:8090"
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

// Do sends body (nil: none) with method to path and decodes a 2xx answer
// into dst; any other answer is an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, body []byte, dst any) error {
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
	var p Problem
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
