package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/contoso/shoes/internal/edge"
)

// sample is one look at the deployment: every health entity's state and
// reason, the regions some POP routes its clients to, and the POPs that
// failed open (no stamp routable to them).
type sample struct {
	At       time.Time
	States   map[string]entityState
	Routed   map[string]bool
	FailOpen []string // regions of the POPs failing open
	Err      error    // why this look failed, if it did
}

type entityState struct{ State, Reason string }

// observer polls the operations API: the health model and the edge.
type observer struct {
	ops, token string
	client     *http.Client
	every      time.Duration
}

// run samples until ctx is done and returns the samples in time order.
func (o *observer) run(ctx context.Context) []sample {
	var out []sample
	t := time.NewTicker(o.every)
	defer t.Stop()
	for {
		out = append(out, o.look(ctx))
		select {
		case <-ctx.Done():
			return out
		case <-t.C:
		}
	}
}

func (o *observer) look(ctx context.Context) sample {
	s := sample{At: time.Now(), States: map[string]entityState{}, Routed: map[string]bool{}}
	var tree node
	if err := o.get(ctx, "/ops/health", &tree); err != nil {
		s.Err = err
	} else {
		tree.walk(func(n *node) { s.States[n.ID] = entityState{n.State, n.Reason} })
	}
	pops, err := o.pops(ctx)
	if err != nil {
		s.Err = errors.Join(s.Err, err)
	}
	for _, regions := range edge.Routes(pops) {
		for _, r := range regions {
			s.Routed[r] = true
		}
	}
	for _, p := range pops {
		if p.FailOpen {
			s.FailOpen = append(s.FailOpen, p.Region)
		}
	}
	return s
}

// pops reads the edge's POPs.
func (o *observer) pops(ctx context.Context) ([]edge.POPStatus, error) {
	var front struct {
		POPs []edge.POPStatus `json:"pops"`
	}
	err := o.get(ctx, "/ops/edge", &front)
	return front.POPs, err
}

// serving is the region that the POP of the clients of region clients
// sends them to at this moment: the region of its nearest stamp in
// rotation.
func (o *observer) serving(ctx context.Context, clients string) (string, error) {
	pops, err := o.pops(ctx)
	if err != nil {
		return "", err
	}
	if routes := edge.Routes(pops)[clients]; len(routes) > 0 {
		return routes[0], nil
	}
	return "", fmt.Errorf("the POP of %s routes its clients nowhere", clients)
}

type node struct {
	ID       string  `json:"id"`
	State    string  `json:"state"`
	Reason   string  `json:"reason"`
	Children []*node `json:"children"`
}

func (n *node) walk(fn func(*node)) {
	fn(n)
	for _, c := range n.Children {
		c.walk(fn)
	}
}

func (o *observer) get(ctx context.Context, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.ops+path, nil)
	if err != nil {
		return err
	}
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(v)
}

// stampsOf lists the stamps of the given releases that some POP of the
// edge lists (GET /ops/edge), by id.
func (o *observer) stampsOf(ctx context.Context, releases []string) ([]string, error) {
	var front struct {
		POPs []edge.POPStatus `json:"pops"`
	}
	if err := o.get(ctx, "/ops/edge", &front); err != nil {
		return nil, err
	}
	var ids []string
	for _, p := range front.POPs {
		for _, s := range p.Stamps {
			if slices.Contains(releases, s.Release) && !slices.Contains(ids, s.ID) {
				ids = append(ids, s.ID)
			}
		}
	}
	slices.Sort(ids)
	return ids, nil
}
