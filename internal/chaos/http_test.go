package chaos_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/chaos/chaostest"
	"github.com/contoso/shoes/internal/httpapi"
)

// newAPI returns a mux serving the routes of a Chaos over a recording
// target.
func newAPI(t *testing.T) (*http.ServeMux, *chaostest.Target) {
	t.Helper()
	target := chaostest.NewTarget(regions...)
	mux := http.NewServeMux()
	newChaos(t, target).Routes(mux)
	return mux, target
}

func do(t *testing.T, h http.Handler, method, path, contentType, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func TestAPIRefusesBadInput(t *testing.T) {
	mux, target := newAPI(t)
	const ct = "application/json"
	for _, tc := range []struct {
		name, method, path, ct, body string
		status                       int
		field                        string
	}{
		{"malformed JSON", "POST", "/ops/chaos", ct, `{"fault":`, 400, ""},
		{"not an object", "POST", "/ops/chaos", ct, `["partition"]`, 400, ""},
		{"empty body", "POST", "/ops/chaos", ct, ``, 400, ""},
		{"trailing data", "POST", "/ops/chaos", ct, `{"fault":"partition","target":"westeurope-eastus","duration":"30s"} {}`, 400, ""},
		{"unknown field", "POST", "/ops/chaos", ct, `{"fault":"partition","target":"westeurope-eastus","duration":"30s","until":"later"}`, 400, "until"},
		{"no fault", "POST", "/ops/chaos", ct, `{"target":"eastus","duration":"30s"}`, 400, "fault"},
		{"unknown fault", "POST", "/ops/chaos", ct, `{"fault":"meteor","target":"eastus","duration":"30s"}`, 400, "fault"},
		{"missing duration", "POST", "/ops/chaos", ct, `{"fault":"stamp-drain","target":"eastus"}`, 400, "duration"},
		{"null duration", "POST", "/ops/chaos", ct, `{"fault":"stamp-drain","target":"eastus","duration":null}`, 400, "duration"},
		{"zero duration", "POST", "/ops/chaos", ct, `{"fault":"stamp-drain","target":"eastus","duration":"0s"}`, 400, "duration"},
		{"negative duration", "POST", "/ops/chaos", ct, `{"fault":"stamp-drain","target":"eastus","duration":"-30s"}`, 400, "duration"},
		{"duration under 1s", "POST", "/ops/chaos", ct, `{"fault":"stamp-drain","target":"eastus","duration":"999ms"}`, 400, "duration"},
		{"duration over 1h", "POST", "/ops/chaos", ct, `{"fault":"stamp-drain","target":"eastus","duration":"1h0m1s"}`, 400, "duration"},
		{"garbage duration", "POST", "/ops/chaos", ct, `{"fault":"stamp-drain","target":"eastus","duration":"soon"}`, 400, "duration"},
		{"duration as a number", "POST", "/ops/chaos", ct, `{"fault":"stamp-drain","target":"eastus","duration":30}`, 400, "duration"},
		{"unknown region", "POST", "/ops/chaos", ct, `{"fault":"region-outage","target":"mars","duration":"30s"}`, 400, "target"},
		{"no target", "POST", "/ops/chaos", ct, `{"fault":"region-outage","duration":"30s"}`, 400, "target"},
		{"link to itself", "POST", "/ops/chaos", ct, `{"fault":"partition","target":"eastus-eastus","duration":"30s"}`, 400, "target"},
		{"a-a", "POST", "/ops/chaos", ct, `{"fault":"partition","target":"a-a","duration":"30s"}`, 400, "target"},
		{"one region for a link", "POST", "/ops/chaos", ct, `{"fault":"link-latency","target":"eastus","duration":"30s"}`, 400, "target"},
		{"link to an unknown region", "POST", "/ops/chaos", ct, `{"fault":"link-latency","target":"eastus-mars","duration":"30s"}`, 400, "target"},
		{"region for a global fault", "POST", "/ops/chaos", ct, `{"fault":"partner-outage","target":"eastus","duration":"30s"}`, 400, "target"},
		{"region for a zone fault", "POST", "/ops/chaos", ct, `{"fault":"zone-outage","target":"eastus","duration":"30s"}`, 400, "target"},
		{"zone 0", "POST", "/ops/chaos", ct, `{"fault":"zone-outage","target":"eastus-0","duration":"30s"}`, 400, "target"},
		{"zone 10", "POST", "/ops/chaos", ct, `{"fault":"zone-outage","target":"eastus-10","duration":"30s"}`, 400, "target"},
		{"zone not a number", "POST", "/ops/chaos", ct, `{"fault":"zone-outage","target":"*-x","duration":"30s"}`, 400, "target"},
		{"zone without a region", "POST", "/ops/chaos", ct, `{"fault":"zone-outage","target":"-2","duration":"30s"}`, 400, "target"},
		{"zone of an unknown region", "POST", "/ops/chaos", ct, `{"fault":"zone-outage","target":"mars-2","duration":"30s"}`, 400, "target"},
		{"bad latency", "POST", "/ops/chaos", ct, `{"fault":"link-latency","target":"westeurope-eastus","duration":"30s","params":{"latency":"slow"}}`, 400, "params.latency"},
		{"negative latency", "POST", "/ops/chaos", ct, `{"fault":"link-latency","target":"westeurope-eastus","duration":"30s","params":{"latency":"-1ms"}}`, 400, "params.latency"},
		{"zero latency", "POST", "/ops/chaos", ct, `{"fault":"link-latency","target":"westeurope-eastus","duration":"30s","params":{"latency":"0s"}}`, 400, "params.latency"},
		{"huge jitter", "POST", "/ops/chaos", ct, `{"fault":"link-latency","target":"westeurope-eastus","duration":"30s","params":{"jitter":"2m"}}`, 400, "params.jitter"},
		{"latency as a number", "POST", "/ops/chaos", ct, `{"fault":"link-latency","target":"westeurope-eastus","duration":"30s","params":{"latency":300}}`, 400, "params"},
		{"unknown param", "POST", "/ops/chaos", ct, `{"fault":"link-latency","target":"westeurope-eastus","duration":"30s","params":{"loss":"5%"}}`, 400, "params.loss"},
		{"param of another fault", "POST", "/ops/chaos", ct, `{"fault":"partner-slow","duration":"30s","params":{"latency":"1s"}}`, 400, "params.latency"},
		{"params for a fault without", "POST", "/ops/chaos", ct, `{"fault":"partition","target":"westeurope-eastus","duration":"30s","params":{"delay":"1s"}}`, 400, "params.delay"},
		{"zero delay", "POST", "/ops/chaos", ct, `{"fault":"partner-slow","duration":"30s","params":{"delay":"0s"}}`, 400, "params.delay"},
		{"oversized body", "POST", "/ops/chaos", ct, `{"fault":"partition","target":"` + strings.Repeat("x", httpapi.MaxBodyBytes) + `","duration":"30s"}`, 413, ""},
		{"not JSON", "POST", "/ops/chaos", "text/plain", `fault=partition`, 415, ""},
		{"heal unknown id", "DELETE", "/ops/chaos/partition-1", "", ``, 404, ""},
		{"get unknown id", "GET", "/ops/chaos/partition-1", "", ``, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, mux, tc.method, tc.path, tc.ct, tc.body)
			var p httpapi.Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatalf("answer %d %q: %v", rec.Code, rec.Body, err)
			}
			if rec.Code != tc.status || p.Status != tc.status || rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("answer %d %s %+v, want problem %d", rec.Code, rec.Header().Get("Content-Type"), p, tc.status)
			}
			if p.Field != tc.field || p.Detail == "" {
				t.Fatalf("problem %+v, want field %q and a detail", p, tc.field)
			}
		})
	}
	if calls := target.Calls(); len(calls) != 0 {
		t.Fatalf("bad input reached the deployment: %q", calls)
	}
	if l := do(t, mux, "GET", "/ops/chaos", "", ""); l.Code != 200 || strings.TrimSpace(l.Body.String()) != `{"faults":[]}` {
		t.Fatalf("list after bad input: %d %s", l.Code, l.Body)
	}
}

func TestAPIInjectListGetHeal(t *testing.T) {
	mux, target := newAPI(t)
	body := `{"fault":"link-latency","target":"westeurope-eastus","duration":"45s","params":{"latency":"300ms","jitter":"50ms"}}`

	rec := do(t, mux, "POST", "/ops/chaos", "application/json", body)
	var injected chaos.Active
	if err := json.Unmarshal(rec.Body.Bytes(), &injected); err != nil || rec.Code != http.StatusCreated {
		t.Fatalf("POST: %d %s (%v)", rec.Code, rec.Body, err)
	}
	if loc := rec.Header().Get("Location"); loc != "/ops/chaos/"+injected.ID || injected.ID == "" {
		t.Fatalf("Location %q for %+v", loc, injected)
	}
	if injected.Fault != chaos.FaultLinkLatency || injected.Target != "westeurope-eastus" ||
		injected.Params["latency"] != "300ms" || injected.Params["jitter"] != "50ms" ||
		injected.HealsAt.Sub(injected.InjectedAt) != 45e9 || injected.HealedAt != nil {
		t.Fatalf("injected %+v", injected)
	}
	wantCalls(t, "POST", target.Take(), []string{"SetLatency westeurope-eastus 300ms 50ms"})
	// The JSON names are a contract.
	for _, key := range []string{`"id":`, `"fault":`, `"target":`, `"params":`, `"injectedAt":`, `"healsAt":`} {
		if !strings.Contains(rec.Body.String(), key) {
			t.Errorf("answer %s lacks %s", rec.Body, key)
		}
	}
	if strings.Contains(rec.Body.String(), `"healedAt"`) || strings.Contains(rec.Body.String(), `"error"`) {
		t.Errorf("answer of an active fault %s has healedAt or error", rec.Body)
	}

	if rec := do(t, mux, "POST", "/ops/chaos", "application/json", body); rec.Code != http.StatusConflict {
		t.Fatalf("second POST: %d %s, want 409", rec.Code, rec.Body)
	}

	rec = do(t, mux, "GET", "/ops/chaos/"+injected.ID, "", "")
	var got chaos.Active
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 200 || got.ID != injected.ID || got.HealedAt != nil {
		t.Fatalf("GET one: %d %s", rec.Code, rec.Body)
	}

	var list struct{ Faults []chaos.Active }
	rec = do(t, mux, "GET", "/ops/chaos", "", "")
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || rec.Code != 200 || len(list.Faults) != 1 || list.Faults[0].ID != injected.ID {
		t.Fatalf("GET list: %d %s", rec.Code, rec.Body)
	}

	for range 2 { // the second DELETE answers the record
		rec = do(t, mux, "DELETE", "/ops/chaos/"+injected.ID, "", "")
		var healed chaos.Active
		if err := json.Unmarshal(rec.Body.Bytes(), &healed); err != nil || rec.Code != 200 || healed.ID != injected.ID || healed.HealedAt == nil {
			t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
		}
	}
	wantCalls(t, "DELETE", target.Take(), []string{"ResetLatency westeurope-eastus"})

	rec = do(t, mux, "GET", "/ops/chaos", "", "")
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list.Faults) != 1 || list.Faults[0].HealedAt == nil {
		t.Fatalf("GET list after heal: %d %s", rec.Code, rec.Body)
	}
	if rec := do(t, mux, "POST", "/ops/chaos", "application/json", body); rec.Code != http.StatusCreated {
		t.Fatalf("POST after heal: %d %s, want 201", rec.Code, rec.Body)
	}
}

func TestAPIFailedInjectIs500WithoutDetail(t *testing.T) {
	mux, target := newAPI(t)
	target.FailOn("StopServer eastus", errTarget)
	rec := do(t, mux, "POST", "/ops/chaos", "application/json", `{"fault":"store-node-loss","target":"eastus","duration":"1m"}`)
	if rec.Code != 500 || strings.Contains(rec.Body.String(), errTarget.Error()) {
		t.Fatalf("answer %d %s, want 500 without the cause", rec.Code, rec.Body)
	}
}
