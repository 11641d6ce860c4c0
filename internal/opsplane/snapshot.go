package opsplane

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/ops"
)

// staleReport is the age past which a stamp's last report no longer says
// how it is (it publishes one every probe interval, a second by default).
const staleReport = 5 * time.Second

// Snapshot is what the operations dashboard shows now: regions and their
// stamps, where every POP routes, the health model, the SLOs and the
// recent errors. It reads what the plane holds (the last reports and
// statuses heard, the model's last evaluation, the metric history) and
// never waits on the network.
func (p *Plane) Snapshot(context.Context) (*ops.Snapshot, error) {
	now := p.now()
	snap := &ops.Snapshot{Time: now.UTC(), Regions: []ops.Region{}, POPs: []ops.POP{}, SLOs: []ops.SLOStatus{}, Errors: []ops.ErrorEntry{}}
	tree := p.eval.Latest()
	if tree != nil {
		snap.Health = &ops.HealthNode{}
		if err := convert(tree, snap.Health); err != nil {
			return nil, err
		}
	}
	if err := convert(p.SLOs(), &snap.SLOs); err != nil {
		return nil, err
	}
	status := p.POPs()
	routes := edge.Routes(status)
	for _, ps := range status {
		snap.POPs = append(snap.POPs, ops.POP{Region: ps.Region, Routes: routes[ps.Region], FailOpen: ps.FailOpen})
	}
	byRegion := map[string][]ops.Stamp{}
	for _, s := range p.in.stampList() {
		st := ops.Stamp{ID: s.id, URL: s.url, State: health.Unknown, Reason: "no health report read yet"}
		switch {
		case s.report == nil:
		case now.Sub(s.freshAt) > staleReport:
			st.Reason = "health report not read for " + now.Sub(s.freshAt).Round(time.Second).String()
		case s.report.Drained:
			st.State, st.Reason = health.Drained, s.report.Reason
		default:
			st.State, st.Reason = s.report.Status, s.report.Reason
		}
		if !s.announced {
			st.Reason = "not announced in the stamps registry; " + st.Reason
		}
		byRegion[s.region] = append(byRegion[s.region], st)
	}
	for _, name := range p.Regions() {
		reg := ops.Region{Name: name, State: health.Unknown, Stamps: append([]ops.Stamp{}, byRegion[name]...)}
		if n := tree.Find("region." + name); n != nil {
			reg.State, reg.Reason = n.State, n.Reason
		}
		reg.RPS = trafficOf(p.cfg.Sink, apiRequests(name), 10*time.Second).requests / 10
		t := trafficOf(p.cfg.Sink, apiRequests(name), signalWindow)
		reg.ErrorRatio, reg.P99Ms = t.errorRatio, t.p99*1000
		snap.Regions = append(snap.Regions, reg)
	}
	for _, l := range p.cfg.Sink.RecentLogs(30, slog.LevelError) {
		snap.Errors = append(snap.Errors, ops.ErrorEntry{Time: l.Time, Level: l.Level, Message: l.Message,
			Region: l.Attrs["region"], TraceID: l.TraceID, Attrs: l.Attrs})
	}
	return snap, nil
}

// convert copies one JSON shape into another with the same field names
// (the health tree and the SLO status into the dashboard's types).
func convert(from, to any) error {
	b, err := json.Marshal(from)
	if err != nil {
		return fmt.Errorf("dashboard snapshot: %w", err)
	}
	if err := json.Unmarshal(b, to); err != nil {
		return fmt.Errorf("dashboard snapshot: %w", err)
	}
	return nil
}
