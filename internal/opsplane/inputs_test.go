package opsplane

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/store"
)

// TestAStampThatStopsAnsweringReadsSilentAtOnce: a stamp whose health read
// fails is silent from that read on, while its last report is still fresh
// enough to count (what lets the release controller tell a region going
// down from a bad release); it stops being silent once it answers again.
func TestAStampThatStopsAnsweringReadsSilentAtOnce(t *testing.T) {
	checked := time.Now()
	answering := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health/stamp" || !answering {
			http.Error(w, "no", http.StatusBadGateway)
			return
		}
		checked = checked.Add(time.Second)
		json.NewEncoder(w).Encode(health.Report{Status: health.Healthy, CheckedAt: checked})
	}))
	defer srv.Close()
	in := newInputs(time.Now)
	in.registry("s1", &store.StampEntry{Region: "westeurope", URL: srv.URL, Release: "v1"})
	silent := func() bool {
		t.Helper()
		l := in.stampList()
		if len(l) != 1 || l[0].report == nil {
			t.Fatalf("stamps %+v, want s1 with a report", l)
		}
		return l[0].silent
	}

	in.scrapeAll(t.Context(), srv.Client())
	if silent() {
		t.Fatal("silent after a read that answered")
	}
	answering = false
	in.scrapeAll(t.Context(), srv.Client())
	if !silent() {
		t.Fatal("not silent after a read that failed")
	}
	answering = true
	in.scrapeAll(t.Context(), srv.Client())
	if silent() {
		t.Fatal("still silent after it answered again")
	}
	srv.Close() // gone: the connection is refused
	in.scrapeAll(t.Context(), srv.Client())
	if !silent() {
		t.Fatal("not silent once its server is gone")
	}
}
