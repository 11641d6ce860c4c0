package loadtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/deploy/deploytest"
	"github.com/contoso/shoes/internal/loadtest"
)

var regions = []string{"westeurope", "northeurope", "eastus"}

func tokensOf(d *deploy.Deployment) func(string, bool) (string, error) {
	return func(sub string, admin bool) (string, error) {
		return d.Issuer().Mint(sub, admin, time.Hour, time.Now())
	}
}

// TestRun makes a short run with every flow, a ramp, a hold and a launch
// spike against a real three-region deployment.
func TestRun(t *testing.T) {
	d := deploytest.MustStart(t, deploytest.Options{EdgeRate: 1e6, EdgeBurst: 1e6}, regions...)
	var progress bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := loadtest.Run(ctx, loadtest.Config{
		Edge:          d.EdgeURL(),
		Regions:       regions,
		Rate:          50,
		Ramp:          time.Second,
		Hold:          2 * time.Second,
		Spike:         1500 * time.Millisecond,
		SpikeRate:     80,
		SpikeStock:    1, // fewer units than the spike's checkouts: some orders must be rejected
		Users:         40,
		Mix:           loadtest.Mix{Browse: 30, Product: 25, Comment: 15, Cart: 15, Checkout: 15},
		Tokens:        tokensOf(d),
		Progress:      &progress,
		ProgressEvery: 500 * time.Millisecond,
		Conservation:  true,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var summary bytes.Buffer
	if err := rep.Print(&summary); err != nil {
		t.Fatal(err)
	}
	t.Logf("summary:\n%s", summary.String())

	// Counts add up.
	if rep.Planned != 25+100+120 {
		t.Errorf("planned %d requests, want 245", rep.Planned)
	}
	if rep.Total.Requests < rep.Planned*9/10 || rep.Total.Requests > rep.Planned {
		t.Errorf("sent %d requests of %d planned", rep.Total.Requests, rep.Planned)
	}
	checkStats(t, "total", rep.Total)
	var byFlow, byRegion, byCell, byServed, bySecond int64
	for _, f := range rep.Flows {
		checkStats(t, string(f.Flow), f.Stats)
		byFlow += f.Requests
		if f.Successes == 0 {
			t.Errorf("flow %s: no successful request: %+v", f.Flow, f.Stats)
		}
		var binned uint64
		for _, b := range f.Histogram {
			binned += b.Count
		}
		if binned != uint64(f.Requests) {
			t.Errorf("flow %s: histogram holds %d of %d requests", f.Flow, binned, f.Requests)
		}
	}
	if got := flowsOf(rep); !slices.Equal(got, loadtest.Flows()) {
		t.Errorf("flows %v, want %v", got, loadtest.Flows())
	}
	for _, r := range rep.ClientRegions {
		checkStats(t, r.Region, r.Stats)
		byRegion += r.Requests
		// Regions take turns: the shares differ by at most one request.
		if share := rep.Total.Requests / int64(len(regions)); r.Requests < share || r.Requests > share+1 {
			t.Errorf("client region %s sent %d of %d requests", r.Region, r.Requests, rep.Total.Requests)
		}
	}
	if len(rep.ClientRegions) != len(regions) {
		t.Errorf("client regions %+v, want %v", rep.ClientRegions, regions)
	}
	for _, c := range rep.Cells {
		byCell += c.Requests
	}
	for served, n := range rep.ServedRegions {
		if !slices.Contains(regions, served) {
			t.Errorf("%d answers served by %q", n, served)
		}
		byServed += n
	}
	for _, s := range rep.Timeline {
		bySecond += s.Requests
	}
	for name, n := range map[string]int64{"flows": byFlow, "client regions": byRegion, "cells": byCell, "served regions": byServed, "timeline": bySecond} {
		if n != rep.Total.Requests {
			t.Errorf("%s sum to %d requests, total %d", name, n, rep.Total.Requests)
		}
	}
	if len(rep.Timeline) != 5 {
		t.Errorf("timeline has %d seconds, want 5", len(rep.Timeline))
	}
	if rep.Total.Errors != 0 {
		t.Errorf("%d errors on a healthy deployment: %v", rep.Total.Errors, rep.Total.Codes)
	}

	// The promises of the shop.
	if rep.IdempotentFailures.Count != 0 {
		t.Errorf("idempotent failures: %+v", rep.IdempotentFailures)
	}
	if rep.RateLimited.Edge != 0 {
		t.Errorf("%d requests refused by the edge's client limit", rep.RateLimited.Edge)
	}
	o := rep.Orders
	if o.Accepted == 0 || o.Accepted != o.Attempted-rep.RateLimited.Admission {
		t.Errorf("orders: %+v with %d refused by admission", o, rep.RateLimited.Admission)
	}
	if o.Unsettled != 0 || o.Confirmed+o.Rejected != o.Accepted {
		t.Errorf("orders did not settle: %+v", o)
	}
	if o.Rejected == 0 || o.RejectReasons["out_of_stock"] != o.Rejected {
		t.Errorf("a spike on one unit per launch SKU rejected no order for lack of stock: %+v", o)
	}
	if rep.Oversold {
		t.Errorf("oversold: %+v", rep.LaunchStock)
	}
	if len(rep.LaunchStock) == 0 {
		t.Fatal("no launch SKU checked")
	}
	var confirmedLaunch int
	for _, c := range rep.LaunchStock {
		if !strings.Contains(c.SKU, "-launch-edition") || c.Initial != 1 || c.Confirmed > 1 || c.ReadError != "" {
			t.Errorf("launch stock %+v", c)
		}
		if c.Unaccounted != 0 || c.Held != 0 || c.Available != c.Initial-c.Confirmed {
			t.Errorf("launch stock does not add up after settling: %+v", c)
		}
		confirmedLaunch += c.Confirmed
	}
	if confirmedLaunch == 0 {
		t.Error("no launch unit was sold")
	}
	// Every unit of every SKU the checkouts named, launch or not, is sold
	// to the run or still in stock.
	if rep.Conservation == nil {
		t.Fatal("no conservation accounting with Config.Conservation")
	}
	var launch, other int
	for _, c := range rep.Conservation.SKUs {
		if c.ReadError != "" || c.Unaccounted != 0 || c.Uncertain != 0 || c.Initial+c.InitialHeld != c.Confirmed+c.Available+c.Held {
			t.Errorf("conservation: %+v", c)
		}
		if strings.Contains(c.SKU, "-launch-edition") {
			launch++
		} else {
			other++
		}
	}
	if launch == 0 || other == 0 {
		t.Errorf("conservation covers %d launch and %d other SKUs; want both", launch, other)
	}

	// Progress: one plain line per tick.
	lines := strings.Split(strings.TrimSpace(progress.String()), "\n")
	if len(lines) < 5 {
		t.Errorf("%d progress lines, want one per 500 ms of a 4.5 s run:\n%s", len(lines), progress.String())
	}
	for _, l := range lines {
		if !strings.Contains(l, "target") || !strings.Contains(l, "achieved") || !strings.Contains(l, "p99") || !strings.Contains(l, "served") {
			t.Errorf("progress line %q", l)
		}
	}

	checkJSONRoundTrip(t, rep)
	checkHTML(t, rep)
}

func flowsOf(rep *loadtest.Report) []loadtest.Flow {
	var fs []loadtest.Flow
	for _, f := range rep.Flows {
		fs = append(fs, f.Flow)
	}
	return fs
}

// checkStats checks that the parts of s add up.
func checkStats(t *testing.T, name string, s loadtest.Stats) {
	t.Helper()
	if s.Requests == 0 {
		t.Errorf("%s: no requests", name)
	}
	if s.Successes+s.Errors != s.Requests {
		t.Errorf("%s: %d successes + %d errors != %d requests", name, s.Successes, s.Errors, s.Requests)
	}
	var coded int64
	for _, n := range s.Codes {
		coded += n
	}
	if coded != s.Requests {
		t.Errorf("%s: codes %v sum to %d, want %d", name, s.Codes, coded, s.Requests)
	}
	l := s.Latency
	if !(0 < l.P50Ms && l.P50Ms <= l.P95Ms && l.P95Ms <= l.P99Ms && l.P99Ms <= l.MaxMs) {
		t.Errorf("%s: latencies out of order: %+v", name, l)
	}
}

func checkJSONRoundTrip(t *testing.T, rep *loadtest.Report) {
	t.Helper()
	var first bytes.Buffer
	if err := rep.WriteJSON(&first); err != nil {
		t.Fatal(err)
	}
	var back loadtest.Report
	if err := json.Unmarshal(first.Bytes(), &back); err != nil {
		t.Fatalf("report JSON does not decode: %v", err)
	}
	var second bytes.Buffer
	if err := back.WriteJSON(&second); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Errorf("report JSON changes on a round trip:\n%s\n---\n%s", first.String(), second.String())
	}
	if back.Total.Requests != rep.Total.Requests || back.Orders.Accepted != rep.Orders.Accepted || !back.Started.Equal(rep.Started) {
		t.Errorf("decoded report differs: %+v", back.Total)
	}
}

var externalRef = regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?\s*(https?:)?//`)

func checkHTML(t *testing.T, rep *loadtest.Report) {
	t.Helper()
	var page bytes.Buffer
	if err := rep.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	s := page.String()
	// Two time plots and one histogram per flow.
	if n, want := strings.Count(s, "<svg"), 2+len(loadtest.Flows()); n != want {
		t.Errorf("%d <svg> elements, want %d", n, want)
	}
	if m := externalRef.FindString(s); m != "" {
		t.Errorf("the page references something outside itself: %q", m)
	}
	for _, bad := range []string{"<script", "<link", "@import", "url("} {
		if strings.Contains(s, bad) {
			t.Errorf("the page contains %q", bad)
		}
	}
	for _, want := range []string{"<html", "</html>", "checkout", "westeurope", "Launch stock"} {
		if !strings.Contains(s, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

// TestRunUnreachable: a run against an edge that does not answer is not
// made, and the report says why.
func TestRunUnreachable(t *testing.T) {
	rep, err := loadtest.Run(context.Background(), loadtest.Config{
		Edge: "http://127.0.0.1:1", Rate: 10, Hold: time.Second,
		Tokens: func(string, bool) (string, error) { return "token", nil },
	})
	if err == nil {
		t.Fatal("Run against a closed port succeeded")
	}
	if rep == nil || rep.Error == "" || rep.Total.Requests != 0 {
		t.Fatalf("report %+v", rep)
	}
	var out bytes.Buffer
	if err := rep.WriteHTML(&out); err != nil {
		t.Fatalf("WriteHTML of a failed run: %v", err)
	}
	if err := rep.Print(&out); err != nil || !strings.Contains(out.String(), "could not be made") {
		t.Errorf("Print of a failed run: %v\n%s", err, out.String())
	}
}
