package fleet_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/fleet"
	"github.com/contoso/shoes/internal/shop"
)

// testOrderTrace places one order through the dispatcher with a trace id
// of its own and finds, in the operations plane (which only hears the
// parts over OTLP), one trace across the POP, the stamp, the order
// stream, the processor and the partner, each part under its own
// service.name.
func testOrderTrace(t *testing.T, f *fleet.Fleet) {
	p := shop.SeedCatalog()[2]
	tok := token(t, f, "traced-buyer", false)
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	body, _ := json.Marshal(map[string]any{"items": []shop.Line{{SKU: shop.SKU(p.ID, p.Sizes[0]), Quantity: 1}}})
	req, _ := http.NewRequest(http.MethodPost, f.EdgeURL()+"/api/orders", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Idempotency-Key", "traced-order")
	req.Header.Set("X-Client-Region", "northeurope")
	req.Header.Set("traceparent", "00-"+traceID+"-b7ad6b7169203331-01")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /api/orders = %d", resp.StatusCode)
	}
	admin := token(t, f, "ops", true)
	want := []string{"contoso-edge", "contoso-stamp", "contoso-worker", "contoso-partner"}
	eventually(t, time.Minute, func() error {
		var tr struct {
			Spans []struct {
				Name, Kind string
				Attributes map[string]string
			}
		}
		if err := getJSON(f.OpsURL()+"/ops/traces/"+traceID, admin, &tr); err != nil {
			return err
		}
		services, kinds := map[string]bool{}, map[string]bool{}
		for _, s := range tr.Spans {
			services[s.Attributes["service.name"]] = true
			kinds[s.Kind] = true
		}
		for _, s := range want {
			if !services[s] {
				return fmt.Errorf("the trace has spans of %v, not yet of %s", services, s)
			}
		}
		if !kinds["producer"] || !kinds["consumer"] {
			return fmt.Errorf("the trace has span kinds %v: want the stream's producer and consumer", slices.Sorted(maps.Keys(kinds)))
		}
		return nil
	})
}
