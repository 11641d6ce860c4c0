package deploy_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/ops/opstest"
)

// The operations address of a development deployment trusts loopback
// clients, but not a web page in a browser on the same machine: a
// cross-site write, a name rebound to 127.0.0.1 and a body a page may send
// without a preflight are refused before the trust decision, and change
// nothing. curl-like clients and the address's own pages still work.
func TestOpsAddressRefusesBrowsersAndRebinding(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{}, "westeurope")
	ops := d.OpsURL()
	scheme, own, _ := strings.Cut(ops, "://") // https under CONTOSO_TEST_TLS=1
	port := own[strings.LastIndex(own, ":")+1:]
	const fault = `{"fault":"stamp-drain","target":"westeurope","duration":"1m"}`
	const region = `{"name":"uksouth","latencyMs":{"westeurope":20}}`
	jsonBody := map[string]string{"Content-Type": "application/json"}
	with := func(h map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range h {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	send := func(method, path, host string, header map[string]string, body string) deploytest.Response {
		t.Helper()
		req, err := http.NewRequest(method, ops+path, deploytest.Body(t, nilIfEmpty(body)))
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		return deploytest.Send(t, req)
	}
	faults := func() int {
		t.Helper()
		var list struct{ Faults []struct{ ID string } }
		res := send("GET", "/ops/chaos", "", nil, "")
		if res.Status != http.StatusOK {
			t.Fatalf("GET /ops/chaos = %d %s", res.Status, res.Body)
		}
		res.JSON(t, &list)
		return len(list.Faults)
	}
	regions := func() []string {
		t.Helper()
		var list struct{ Regions []struct{ Name string } }
		res := send("GET", "/ops/regions", "", nil, "")
		if res.Status != http.StatusOK {
			t.Fatalf("GET /ops/regions = %d %s", res.Status, res.Body)
		}
		res.JSON(t, &list)
		var names []string
		for _, r := range list.Regions {
			names = append(names, r.Name)
		}
		slices.Sort(names)
		return names
	}
	st, _ := d.Stamp("westeurope")
	unchanged := func(what string) {
		t.Helper()
		if n := faults(); n != 0 {
			t.Fatalf("%s: %d faults injected, want none", what, n)
		}
		if st.Prober().Drained() {
			t.Fatalf("%s: the stamp is drained", what)
		}
		if got := regions(); !slices.Equal(got, []string{"westeurope"}) {
			t.Fatalf("%s: regions %v, want westeurope alone", what, got)
		}
	}

	for _, c := range []struct {
		name, method, path, host string
		header                   map[string]string
		body                     string
		want                     int
	}{
		{"a foreign Origin injects a fault", "POST", "/ops/chaos", "", with(jsonBody, "Origin", "http://evil.example"), fault, http.StatusForbidden},
		{"a cross-site fetch injects a fault", "POST", "/ops/chaos", "", with(jsonBody, "Sec-Fetch-Site", "cross-site"), fault, http.StatusForbidden},
		{"a foreign Origin adds a region", "POST", "/ops/regions", "", with(jsonBody, "Origin", "http://evil.example"), region, http.StatusForbidden},
		{"a rebound name injects a fault", "POST", "/ops/chaos", "evil.example:" + port, with(jsonBody, "Origin", "http://evil.example:"+port), fault, http.StatusForbidden},
		{"a rebound name reads the faults", "GET", "/ops/chaos", "evil.example:" + port, nil, "", http.StatusForbidden},
		{"a rebound name reads the dashboard", "GET", "/ops/dashboard/", "evil.example:" + port, nil, "", http.StatusForbidden},
		{"a rebound name reads the health model", "GET", "/ops/health", "evil.example:" + port, nil, "", http.StatusForbidden},
		{"a text/plain body injects a fault", "POST", "/ops/chaos", "", map[string]string{"Content-Type": "text/plain"}, fault, http.StatusUnsupportedMediaType},
		{"a body without a type adds a region", "POST", "/ops/regions", "", nil, region, http.StatusUnsupportedMediaType},
	} {
		res := send(c.method, c.path, c.host, c.header, c.body)
		if res.Status != c.want || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s: %d %s %s, want %d problem+json", c.name, res.Status, res.Header.Get("Content-Type"), res.Body, c.want)
		}
		unchanged(c.name)
	}

	// What a person or a program on this machine does still works: the
	// dashboard by address and by localhost, a curl-like write, and a
	// write from the address's own page.
	for _, host := range []string{"", "localhost:" + port} {
		if res := send("GET", "/ops/dashboard/", host, nil, ""); res.Status != http.StatusOK {
			t.Fatalf("dashboard with Host %q = %d %s", host, res.Status, res.Body)
		}
	}
	res := send("POST", "/ops/chaos", "", with(jsonBody, "Origin", scheme+"://"+own, "Sec-Fetch-Site", "same-origin"), fault)
	if res.Status != http.StatusCreated {
		t.Fatalf("inject from the address's own page = %d %s", res.Status, res.Body)
	}
	var active struct{ ID string }
	res.JSON(t, &active)
	if !st.Prober().Drained() {
		t.Fatal("the injected stamp-drain did not drain the stamp")
	}
	if res := send("DELETE", "/ops/chaos/"+active.ID, "", nil, ""); res.Status != http.StatusOK {
		t.Fatalf("curl-like heal = %d %s", res.Status, res.Body)
	}

	if res := send("POST", "/ops/regions", "", jsonBody, region); res.Status != http.StatusCreated {
		t.Fatalf("curl-like add region = %d %s", res.Status, res.Body)
	}
	for _, origin := range []string{"http://evil.example", "http://localhost:" + port, "null"} {
		if res := send("DELETE", "/ops/regions/uksouth", "", map[string]string{"Origin": origin}, ""); res.Status != http.StatusForbidden {
			t.Fatalf("remove region with Origin %s = %d %s, want 403", origin, res.Status, res.Body)
		}
		if got := regions(); !slices.Contains(got, "uksouth") {
			t.Fatalf("after a refused removal (Origin %s) the regions are %v", origin, got)
		}
	}
	if res := send("DELETE", "/ops/regions/uksouth", "", map[string]string{"Origin": scheme + "://" + own}, ""); res.Status != http.StatusOK {
		t.Fatalf("remove region from the address's own page = %d %s", res.Status, res.Body)
	}
	if got := regions(); slices.Contains(got, "uksouth") {
		t.Fatalf("after the removal the regions are %v", got)
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// A real browser on the same machine shows a page from another origin that
// fires a request it may send without asking first (no-cors, a body with
// no type) at the operations address of a development deployment: the
// fault it asks for is never injected.
func TestOpsAddressRefusesACrossSitePageInABrowser(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{NoTLS: true}, "westeurope")
	st, _ := d.Stamp("westeurope")
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><title>page</title><script>
fetch(%q, {method: "POST", mode: "no-cors", body: new Blob([%q])})
  .then(() => { document.title = "sent"; }, e => { document.title = "failed: " + e; });
</script>`, d.OpsURL()+"/ops/chaos", `{"fault":"stamp-drain","target":"westeurope","duration":"1m"}`)
	}))
	t.Cleanup(page.Close)
	ctx := opstest.Browser(t) // after the servers: its cleanup closes the browser first
	if err := chromedp.Do(ctx, chromedp.Navigate(page.URL)); err != nil {
		t.Fatal(err)
	}
	if err := opstest.WaitFor(ctx, `document.title === "sent"`, 10*time.Second); err != nil {
		t.Fatalf("the page did not send its request: %v", err)
	}
	res := deploytest.Do(t, http.MethodGet, d.OpsURL()+"/ops/chaos", "", nil)
	var list struct{ Faults []struct{ ID string } }
	res.JSON(t, &list)
	if len(list.Faults) != 0 || st.Prober().Drained() {
		t.Fatalf("a page from %s injected %+v (stamp drained: %v)", page.URL, list.Faults, st.Prober().Drained())
	}
}
