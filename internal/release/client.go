package release

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
)

// Client is a client of the operations API of releases, for tools: the
// command line and the experiment runner.
type Client struct {
	API httpapi.Client
}

// Status is the answer of GET /ops/releases.
type Status struct {
	Env      string    `json:"env"`
	Current  *Record   `json:"current"`
	Releases []*Record `json:"releases"`
}

// Start asks for a release and returns its record.
func (c *Client) Start(ctx context.Context, req Request) (*Record, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var r Record
	if err := c.API.Do(ctx, http.MethodPost, "/ops/releases", body, &r); err != nil {
		return nil, fmt.Errorf("start release: %w", err)
	}
	return &r, nil
}

// Status reads the release under way and the recorded ones.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	if err := c.API.Do(ctx, http.MethodGet, "/ops/releases", nil, &s); err != nil {
		return Status{}, fmt.Errorf("release status: %w", err)
	}
	return s, nil
}

// Do applies an action to the release under way.
func (c *Client) Do(ctx context.Context, a Action, by string) (*Record, error) {
	body, _ := json.Marshal(map[string]string{"by": by})
	var r Record
	if err := c.API.Do(ctx, http.MethodPost, "/ops/releases/current/"+string(a), body, &r); err != nil {
		return nil, fmt.Errorf("release %s: %w", a, err)
	}
	return &r, nil
}

// Wait polls the release under way until it ends or ctx is done, calling
// seen (if not nil) with every record it reads.
func (c *Client) Wait(ctx context.Context, every time.Duration, seen func(*Record)) (*Record, error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s, err := c.Status(ctx)
		if err == nil && s.Current != nil {
			if seen != nil {
				seen(s.Current)
			}
			if s.Current.Phase.Final() {
				return s.Current, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the release: %w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}
