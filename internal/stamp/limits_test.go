package stamp_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/shop"
)

// One user posting comments (or ratings) as fast as possible gets the
// burst, then 429 problems with Retry-After; another user is not affected.
func TestCommentsAndRatingsAreLimitedPerUser(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	base := d.Regions()["westeurope"]
	prod := "/api/products/" + shop.SeedCatalog()[4].ID
	for _, tc := range []struct {
		what, path string
		body       any
		burst      int
	}{
		{"comments", prod + "/comments", map[string]string{"text": "Light and quick."}, 5},
		{"ratings", prod + "/ratings", map[string]int{"stars": 4}, 10},
	} {
		t.Run(tc.what, func(t *testing.T) {
			hasty := deploytest.Token(t, d, "hasty-"+tc.what, false)
			accepted, limited := 0, 0
			for i := range 3 * tc.burst {
				res := deploytest.Do(t, http.MethodPost, base+tc.path, hasty, tc.body)
				switch res.Status {
				case http.StatusAccepted:
					accepted++
				case http.StatusTooManyRequests:
					limited++
					var p httpapi.Problem
					if err := json.Unmarshal(res.Body, &p); err != nil || res.Header.Get("Content-Type") != "application/problem+json" ||
						res.Header.Get("Retry-After") != "1" || p.Type != httpapi.ProblemTypeBase+"too-many-requests" ||
						p.Detail != "too many "+tc.what+" from this user; retry in a second" {
						t.Fatalf("429 = %v %s", res.Header, res.Body)
					}
				default:
					t.Fatalf("POST %d = %d %s", i, res.Status, res.Body)
				}
			}
			// The posts take well under a second: the burst, and about
			// nothing more, is accepted.
			if accepted < tc.burst || limited < tc.burst {
				t.Fatalf("%d of %d back-to-back %s accepted and %d limited; want the burst of %d accepted, then at least %d limited",
					accepted, 3*tc.burst, tc.what, limited, tc.burst, tc.burst)
			}
			calm := deploytest.Token(t, d, "calm-"+tc.what, false)
			if res := deploytest.Do(t, http.MethodPost, base+tc.path, calm, tc.body); res.Status != http.StatusAccepted {
				t.Fatalf("another user's POST = %d %s", res.Status, res.Body)
			}
		})
	}
}
