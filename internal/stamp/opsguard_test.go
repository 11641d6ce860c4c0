package stamp_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/contoso/shoes/internal/deploy/deploytest"
)

// A stamp's /ops/drain refuses browsers and rebound names even with an
// admin token, and drains nothing; its /api/ and /health/ routes, which
// the edge reaches through other addresses, keep answering any Host.
func TestDrainRefusesBrowsersAndForeignHosts(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	base := d.Regions()["westeurope"]
	own := strings.TrimPrefix(base, "http://")
	port := own[strings.LastIndex(own, ":")+1:]
	st, _ := d.Stamp("westeurope")
	admin := deploytest.Token(t, d, "ops", true)
	send := func(method, path, host string, header map[string]string, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		res := deploytest.Send(t, req)
		return res.Status, res.Header.Get("Content-Type")
	}

	for _, c := range []struct {
		name, method, host string
		header             map[string]string
		body               string
		want               int
	}{
		{"foreign Origin", "POST", "", map[string]string{"Origin": "http://evil.example"}, "", http.StatusForbidden},
		{"cross-site fetch", "POST", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, "", http.StatusForbidden},
		{"text/plain body", "POST", "", map[string]string{"Content-Type": "text/plain"}, `{}`, http.StatusUnsupportedMediaType},
		{"body without a type", "POST", "", nil, `{}`, http.StatusUnsupportedMediaType},
		{"rebound name", "POST", "evil.example:" + port, nil, "", http.StatusForbidden},
		{"rebound name reads", "GET", "evil.example:" + port, nil, "", http.StatusForbidden},
	} {
		status, ct := send(c.method, "/ops/drain", c.host, c.header, c.body)
		if status != c.want || ct != "application/problem+json" {
			t.Errorf("%s: %d %s, want %d problem+json", c.name, status, ct, c.want)
		}
		if st.Prober().Drained() {
			t.Fatalf("%s: the stamp was drained", c.name)
		}
	}

	// The address's own page, curl and localhost still drain and restore.
	if status, _ := send("POST", "/ops/drain", "", map[string]string{"Origin": base}, ""); status != http.StatusOK || !st.Prober().Drained() {
		t.Fatalf("drain with the stamp's own Origin = %d, drained %v", status, st.Prober().Drained())
	}
	if status, _ := send("DELETE", "/ops/drain", "localhost:"+port, nil, ""); status != http.StatusOK || st.Prober().Drained() {
		t.Fatalf("restore through localhost = %d, drained %v", status, st.Prober().Drained())
	}

	// No Host rule outside /ops/: the edge reaches these through links
	// whose addresses are not the stamp's.
	for _, path := range []string{"/health/live", "/health/stamp", "/api/products?limit=1"} {
		if status, _ := send("GET", path, "proxy.example:1", nil, ""); status != http.StatusOK {
			t.Errorf("GET %s with another Host = %d, want 200", path, status)
		}
	}
}
