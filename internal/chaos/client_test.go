package chaos_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/chaos/chaostest"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

// serveAPI serves the routes over HTTP behind a bearer token check, as the
// operations server does.
func serveAPI(t *testing.T, token string) (*httptest.Server, *chaostest.Target) {
	t.Helper()
	mux, target := newAPI(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			httpapi.WriteError(w, r, nil, shop.Errorf(shop.KindUnauthorized, "", "an admin token is required"))
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, target
}

func TestClient(t *testing.T) {
	srv, target := serveAPI(t, "s3cret")
	ctx := context.Background()
	c := &chaos.Client{BaseURL: srv.URL + "/", Token: "s3cret", HTTP: srv.Client()}

	a, err := c.Inject(ctx, spec(chaos.FaultPartnerSlow, "", 20*time.Second, "delay", "5s"))
	if err != nil || a.ID == "" || a.Target != "global" || a.Params["delay"] != "5s" || a.HealsAt.Sub(a.InjectedAt) != 20*time.Second {
		t.Fatalf("Inject = %+v, %v", a, err)
	}
	b, err := c.Inject(ctx, spec(chaos.FaultRegionOutage, "southeastasia", time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "injects", target.Take(), []string{"SetPartner slow 5s",
		"Cut southeastasia-westeurope", "Cut southeastasia-eastus", "KillRegion southeastasia"})

	if got, err := c.Get(ctx, a.ID); err != nil || got.ID != a.ID || got.HealedAt != nil {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	l, err := c.List(ctx)
	if err != nil || len(l) != 2 || l[0].ID != b.ID || l[1].ID != a.ID {
		t.Fatalf("List = %+v, %v", l, err)
	}
	healed, err := c.Heal(ctx, a.ID)
	if err != nil || healed.ID != a.ID || healed.HealedAt == nil {
		t.Fatalf("Heal = %+v, %v", healed, err)
	}
	wantCalls(t, "heal", target.Take(), []string{"SetPartner up 0s"})

	for _, tc := range []struct {
		name   string
		call   func(*chaos.Client) error
		client chaos.Client
		status int
		detail string // a part of the error's text
		field  string
	}{
		{"conflict", func(c *chaos.Client) error {
			_, err := c.Inject(ctx, spec(chaos.FaultStoreNodeLoss, "southeastasia", time.Minute))
			return err
		}, *c, 409, "would fight the active " + b.ID, ""},
		{"bad spec", func(c *chaos.Client) error {
			_, err := c.Inject(ctx, spec(chaos.FaultPartition, "westeurope-eastus", 2*time.Hour))
			return err
		}, *c, 400, "must be between 1s and 1h0m0s", "duration"},
		{"unknown id", func(c *chaos.Client) error { _, err := c.Heal(ctx, "partition-99"); return err }, *c, 404, `fault "partition-99" not found`, ""},
		{"bad token", func(c *chaos.Client) error { _, err := c.List(ctx); return err },
			chaos.Client{BaseURL: srv.URL, Token: "guess", HTTP: srv.Client()}, 401, "an admin token is required", ""},
		{"not the API", func(c *chaos.Client) error { _, err := c.List(ctx); return err },
			chaos.Client{BaseURL: srv.URL + "/nowhere", Token: "s3cret", HTTP: srv.Client()}, 404, "404 page not found", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(&tc.client)
			apiErr, ok := errors.AsType[*chaos.APIError](err)
			if !ok || apiErr.Status != tc.status || !strings.Contains(apiErr.Detail, tc.detail) || apiErr.Field != tc.field {
				t.Fatalf("error %v (%#v), want status %d detail %q field %q", err, apiErr, tc.status, tc.detail, tc.field)
			}
			if !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("error text %q lacks the detail %q", err, tc.detail)
			}
		})
	}
	wantCalls(t, "refused calls", target.Take(), nil)
}

func TestClientUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := &chaos.Client{BaseURL: url}
	if _, err := c.List(context.Background()); err == nil {
		t.Fatal("List against a closed server succeeded")
	} else if _, ok := errors.AsType[*chaos.APIError](err); ok {
		t.Fatalf("a connection failure is an APIError: %v", err)
	}
}
