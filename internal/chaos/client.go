package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/contoso/shoes/internal/httpapi"
)

// Client is a client of the operations API of faults, for tools: the
// command line and the experiment runner.
type Client struct {
	BaseURL string       // the operations address, like "http://127.0.0.1:8090"
	Token   string       // sent as a bearer token (an admin's); empty: none
	HTTP    *http.Client // nil: http.DefaultClient
}

// APIError is a failure answer of the API.
type APIError = httpapi.APIError

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
	return (&httpapi.Client{BaseURL: c.BaseURL, Token: c.Token, HTTP: c.HTTP}).Do(ctx, method, path, body, dst)
}
