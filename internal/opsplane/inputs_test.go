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
// It is silent since its first unanswered read, however many follow (what
// the controller's grace before a region counts as lost is measured from).
// (Mutation tried: silentSince set at every failed read: "silent since
// +2s; want +1s".)
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
	start := time.Now()
	now := start
	in := newInputs(func() time.Time { return now })
	in.registry("s1", &store.StampEntry{Region: "westeurope", URL: srv.URL, Release: "v1"})
	view := func() stampView {
		t.Helper()
		l := in.stampList()
		if len(l) != 1 || l[0].report == nil {
			t.Fatalf("stamps %+v, want s1 with a report", l)
		}
		return l[0]
	}
	silent := func() bool {
		t.Helper()
		v := view()
		if v.silent != !v.silentSince.IsZero() {
			t.Fatalf("silent %v, silent since %v: want both or neither", v.silent, v.silentSince)
		}
		return v.silent
	}

	in.scrapeAll(t.Context(), srv.Client())
	if silent() {
		t.Fatal("silent after a read that answered")
	}
	answering = false
	now = start.Add(time.Second)
	in.scrapeAll(t.Context(), srv.Client())
	if !silent() {
		t.Fatal("not silent after a read that failed")
	}
	now = start.Add(2 * time.Second)
	in.scrapeAll(t.Context(), srv.Client())
	if since := view().silentSince; !since.Equal(start.Add(time.Second)) {
		t.Fatalf("silent since +%s; want +1s, its first unanswered read", since.Sub(start))
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

// TestAStampWhoseDeleteNeverArrivesIsGone: a stamp the registry stops
// announcing while it goes on announcing others leaves once
// registryGone has passed, though no delete arrived (a watch set up again
// replays entries, not deletes); while the registry announces nothing at
// all, nobody leaves, since the plane's own watch may be what is lost.
// (Mutation tried: without the expiry in stampList, s1 stays announced.)
func TestAStampWhoseDeleteNeverArrivesIsGone(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	in := newInputs(func() time.Time { return now })
	announce := func(ids ...string) {
		for _, id := range ids {
			in.registry(id, &store.StampEntry{ID: id, Region: "westeurope", URL: "http://" + id, Release: "v1"})
		}
	}
	announced := func() map[string]bool {
		out := map[string]bool{}
		for _, s := range in.stampList() {
			out[s.id] = s.announced
		}
		return out
	}
	announce("s1", "s2")
	// Quiet: nothing heard for longer than registryGone.
	now = now.Add(registryGone + time.Second)
	if got := announced(); !got["s1"] || !got["s2"] {
		t.Fatalf("after a quiet spell: %v, want both still announced", got)
	}
	// s2 goes on heartbeating; s1 does not.
	for range int(registryGone/time.Second) + 1 {
		now = now.Add(time.Second)
		announce("s2")
	}
	if got := announced(); got["s1"] || !got["s2"] {
		t.Fatalf("s1 silent for %s while s2 heartbeats: %v, want only s2 announced", registryGone, got)
	}
	// s1 comes back.
	announce("s1")
	if got := announced(); !got["s1"] {
		t.Fatalf("after s1 announced again: %v", got)
	}
}
