package deploy_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/shop"
)

// One order is one trace from the edge to the partner: the edge's server
// span, the stamp's, the order processor's consumer span (the trace
// context crossed the order stream in the message headers), and the
// partner call. The client gets the trace id, and the metrics of the edge
// and of the stamp name the checkout flow.
func TestAnOrderIsOneTraceFromEdgeToPartner(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, regions3...)
	tok := deploytest.Token(t, d, "traced-buyer", false)
	sku := shop.SKU(shop.SeedCatalog()[2].ID, shop.SeedCatalog()[2].Sizes[0])
	res := sendAs(t, d, "northeurope", http.MethodPost, "/api/orders", tok, "trace-1",
		map[string]any{"items": []map[string]any{{"sku": sku, "quantity": 1}}})
	if res.Status != http.StatusAccepted {
		t.Fatalf("order = %d %s", res.Status, res.Body)
	}
	traceID := res.Header.Get("X-Trace-Id")
	if len(traceID) != 32 {
		t.Fatalf("X-Trace-Id = %q", traceID)
	}
	var order struct{ ID, Status string }
	res.JSON(t, &order)
	type span struct {
		Name       string            `json:"name"`
		Kind       string            `json:"kind"`
		Status     string            `json:"status"`
		ParentID   string            `json:"parentId"`
		Attributes map[string]string `json:"attributes"`
	}
	var trace struct {
		TraceID string `json:"traceId"`
		Spans   []span `json:"spans"`
	}
	deploytest.Eventually(t, 30*time.Second, func() error {
		r := deploytest.Do(t, http.MethodGet, d.OpsURL()+"/ops/traces/"+traceID, "", nil)
		if r.Status != http.StatusOK {
			return fmt.Errorf("trace = %d", r.Status)
		}
		r.JSON(t, &trace)
		seen := map[string]bool{}
		for _, s := range trace.Spans {
			switch {
			case s.Attributes["component"] == "edge" && s.Kind == "server":
				seen["edge"] = true
			case s.Attributes["component"] == "stamp" && s.Kind == "server" && s.Name == "POST /api/orders":
				seen["stamp"] = true
			case s.Kind == "consumer" && strings.HasPrefix(s.Name, "process orders"):
				seen["processor"] = true
			case s.Kind == "client" && strings.HasPrefix(s.Name, "partner"):
				seen["partner"] = true
			}
		}
		if len(seen) != 4 {
			return fmt.Errorf("trace %s has %v of edge, stamp, processor, partner: %+v", traceID, seen, trace.Spans)
		}
		return nil
	})
	roots := 0
	for _, s := range trace.Spans {
		if s.ParentID == "" {
			roots++
		}
	}
	if roots != 1 {
		t.Fatalf("trace has %d root spans, want one (the edge's)", roots)
	}
	metrics := string(deploytest.Do(t, http.MethodGet, d.OpsURL()+"/metrics", "", nil).Body)
	for _, want := range []string{`component="edge"`, `component="stamp"`, `flow="checkout"`, `http_route="/api/orders"`,
		`contoso_queue_age_seconds{stream="orders"}`, `contoso_probe_status{check="store-write",region="westeurope"}`,
		`contoso_partner_breaker{region="eastus"}`, `contoso_edge_routes{pop="northeurope",region="northeurope"}`,
		`contoso_health_state{entity="system",kind="system",state="`,
		`contoso_health_state{entity="region.westeurope.checkout",flow="checkout",kind="region",region="westeurope",state="`,
		`contoso_regions_healthy`, `contoso_regions_up`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
	// The redundancy alerts compare these: one per region, not one per
	// region-kind entity of the model.
	if !strings.Contains(metrics, "\ncontoso_regions_total 3\n") {
		t.Fatalf("contoso_regions_total is not 3 for three regions:\n%s", grepLines(metrics, "contoso_regions"))
	}
}

func grepLines(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
