package deploy_test

import (
	"fmt"
	"net/http"
	"os"
	"slices"
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
		trace.Spans = nil // decode afresh: json would merge into the maps of the last try
		r.JSON(t, &trace)
		seen := map[string]bool{}
		for _, s := range trace.Spans {
			switch {
			case s.Attributes["component"] == "edge" && s.Kind == "server":
				seen["edge"] = true
			case s.Attributes["component"] == "stamp" && s.Kind == "server" && s.Name == "POST /api/orders":
				seen["stamp"] = true
			case s.Kind == "producer" && s.Name == "publish orders.new":
				seen["publish"] = true
			case s.Kind == "consumer" && strings.HasPrefix(s.Name, "process orders"):
				seen["processor"] = true
			case s.Kind == "client" && strings.HasPrefix(s.Name, "partner"):
				seen["partner"] = true
			case s.Attributes["component"] == "partner" && s.Kind == "server":
				seen["partner's server"] = true
			}
		}
		if len(seen) != 6 {
			return fmt.Errorf("trace %s has %v of edge, stamp, publish, processor, partner, partner's server: %+v", traceID, seen, trace.Spans)
		}
		return nil
	})
	// Each span carries the identity of the part that made it, though all
	// of them share one process: the edge, the stamp that took the order
	// (its API, its read of the idempotency record and its one write, the
	// order's message), the processor that handled it (its records of the
	// request and the order, the stock and partner call, in whichever
	// region took it from the queue), the partner.
	served := res.Header.Get("X-Served-Region")
	for _, s := range trace.Spans {
		var want map[string]string
		switch {
		case s.Attributes["component"] == "edge", s.Attributes["dependency"] == "stamp":
			want = map[string]string{"service.name": "contoso-edge", "cloud.region": ""}
		case s.Attributes["component"] == "partner":
			want = map[string]string{"service.name": "contoso-partner", "cloud.region": ""}
		case slices.Contains([]string{"POST /api/orders", "get idempotency", "publish orders.new"}, s.Name):
			want = map[string]string{"service.name": "contoso-stamp", "cloud.region": served}
		default:
			want = map[string]string{"service.name": "contoso-worker"}
		}
		for k, v := range want {
			if got := s.Attributes[k]; got != v {
				t.Errorf("span %q (%s): %s = %q, want %q", s.Name, s.Kind, k, got, v)
			}
		}
		if s.Attributes["service.instance.id"] == "" {
			t.Errorf("span %q has no service.instance.id", s.Name)
		}
	}
	roots := 0
	for _, s := range trace.Spans {
		if s.ParentID == "" {
			roots++
		}
	}
	if roots != 1 {
		t.Fatalf("trace has %d root spans, want one (the edge's)", roots)
	}
	// Each series appears at its own pace (the plane reads the queues and
	// the stamps once a second): wait until every one is there.
	wants := []string{`component="edge"`, `component="stamp"`, `flow="checkout"`, `http_route="/api/orders"`,
		`service_name="contoso-edge"`, `cloud_region="` + served + `",component="stamp"`, `service_name="contoso-worker"`, `service_name="contoso-partner"`,
		`contoso_orders_accepted_total{cloud_region="` + served + `",region="` + served + `"`, `go_goroutines `, `process_cpu_seconds_total `,
		`contoso_queue_age_seconds{stream="orders"}`, `contoso_probe_status{check="store-write",region="westeurope"}`,
		`contoso_partner_breaker{region="eastus"}`, `contoso_edge_routes{pop="northeurope",region="northeurope"}`,
		`contoso_health_state{entity="system",kind="system",state="`,
		`contoso_health_state{entity="region.westeurope.checkout",flow="checkout",kind="region",region="westeurope",state="`,
		`contoso_regions_healthy`, `contoso_regions_up`}
	var metrics string
	deploytest.Eventually(t, 30*time.Second, func() error {
		metrics = string(deploytest.Do(t, http.MethodGet, d.OpsURL()+"/metrics", "", nil).Body)
		if !strings.Contains(metrics, "contoso_orders_confirmed_total{") {
			return fmt.Errorf("no order confirmed yet:\n%s", grepLines(metrics, "contoso_orders"))
		}
		for _, want := range wants {
			if !strings.Contains(metrics, want) {
				return fmt.Errorf("/metrics lacks %s", want)
			}
		}
		return nil
	})
	// The redundancy alerts compare these: one per region, not one per
	// region-kind entity of the model.
	if !strings.Contains(metrics, "\ncontoso_regions_total 3\n") {
		t.Fatalf("contoso_regions_total is not 3 for three regions:\n%s", grepLines(metrics, "contoso_regions"))
	}
	// Every family of ours is in the telemetry table of the docs.
	doc, err := os.ReadFile("../../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(metrics, "\n") {
		if name, ok := strings.CutPrefix(l, "# TYPE "); ok && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") && !strings.HasPrefix(name, "promhttp_") {
			name, kind, _ := strings.Cut(name, " ")
			if !strings.Contains(string(doc), "`"+name+"`") {
				t.Errorf("docs/observability.md does not list %s (%s)", name, kind)
			}
		}
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
