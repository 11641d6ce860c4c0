package opsplane

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/contoso/shoes/internal/autoscale"
	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/ops"
	"github.com/contoso/shoes/internal/release"
)

// scalingEvents is how many of the autoscaler's events the dashboard
// shows.
const scalingEvents = 20

// staleReport is the age past which a stamp's last report no longer says
// how it is (it publishes one every probe interval, a second by default).
const staleReport = 5 * time.Second

// Snapshot is what the operations dashboard shows now: regions and their
// stamps, where every POP routes, the health model, the SLOs, the recent
// errors, the release with each region's split and the autoscaler's state.
// It reads what the plane holds (the last reports and statuses heard, the
// model's last evaluation, the metric history) and never waits on the
// network; the release is what Config.Release answers, the scaling what
// Config.Scaling does.
func (p *Plane) Snapshot(ctx context.Context) (*ops.Snapshot, error) {
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
		st := ops.Stamp{ID: s.id, URL: s.url, Release: s.release, Zone: s.zone, State: health.Unknown, Reason: "no health report read yet"}
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
	regions := p.Regions()
	for _, name := range regions {
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
	p.releaseSection(ctx, snap, regions, status)
	if p.cfg.Scaling != nil {
		snap.Scaling = scalingView(p.cfg.Scaling(), now)
	}
	return snap, nil
}

// releaseSection fills in the release, if there is one, with the split
// the POPs apply now. A release that cannot be read leaves the rest of the
// snapshot standing: the page says so in place of the section.
func (p *Plane) releaseSection(ctx context.Context, snap *ops.Snapshot, regions []string, status []edge.POPStatus) {
	if p.cfg.Release == nil {
		return
	}
	rec, err := p.cfg.Release(ctx)
	if err != nil {
		if !p.releaseFailing.Swap(true) {
			p.log.WarnContext(ctx, "dashboard snapshot: release not read", "error", err)
		}
		snap.ReleaseProblem = "the release could not be read; see the operations plane's log"
		return
	}
	if p.releaseFailing.Swap(false) {
		p.log.InfoContext(ctx, "dashboard snapshot: release read again")
	}
	if rec != nil {
		snap.Release = releaseView(rec, regions, status)
	}
}

// releaseView is the dashboard's view of rec, with the split of every
// region the snapshot shows or the release plans, in that order, as the
// POPs apply it.
func releaseView(rec *release.Record, regions []string, status []edge.POPStatus) *ops.Release {
	v := &ops.Release{
		ID: rec.ID, Version: rec.Version, Image: rec.Image, Env: rec.Env, From: maps.Clone(rec.From),
		Phase: string(rec.Phase), Paused: rec.Paused, Reason: rec.Reason, By: rec.By,
		Plan: []ops.ReleaseStage{}, Stage: rec.Stage, Steps: []ops.ReleaseStep{},
		StartedAt: rec.StartedAt, EndedAt: rec.EndedAt, FirstBadAt: rec.FirstBadAt, RollbackAt: rec.RollbackAt,
		Split: []ops.RegionSplit{},
	}
	if v.From == nil {
		v.From = map[string]string{}
	}
	for _, st := range rec.Plan {
		v.Plan = append(v.Plan, ops.ReleaseStage{Region: st.Region, Percent: st.Percent})
	}
	for _, st := range rec.Steps {
		v.Steps = append(v.Steps, ops.ReleaseStep{
			Region: st.Region, Percent: st.Percent, StartedAt: st.StartedAt, EndedAt: st.EndedAt,
			Verdict: st.Verdict, Reason: st.Reason, New: gateReading(st.New), Old: gateReading(st.Old),
		})
	}
	order := slices.Clone(regions)
	var more []string
	for _, st := range rec.Plan {
		more = append(more, st.Region)
	}
	for _, ps := range status {
		for region := range ps.Split {
			more = append(more, region)
		}
	}
	slices.Sort(more)
	for _, r := range slices.Compact(more) {
		if !slices.Contains(order, r) {
			order = append(order, r)
		}
	}
	for _, region := range order {
		v.Split = append(v.Split, regionSplit(region, status))
	}
	return v
}

// regionSplit is region's split as the POPs apply it: the first POP's,
// settled when every POP applies the same.
func regionSplit(region string, status []edge.POPStatus) ops.RegionSplit {
	rs := ops.RegionSplit{Region: region, Percents: map[string]int{}, Settled: true}
	for i, ps := range status {
		split := ps.Split[region]
		if i == 0 {
			maps.Copy(rs.Percents, split)
			continue
		}
		if !maps.Equal(split, status[0].Split[region]) {
			rs.Settled = false
		}
	}
	return rs
}

// scalingView is the dashboard's view of the autoscaler's status at now,
// with its most recent events; nil for a nil status.
func scalingView(st *autoscale.Status, now time.Time) *ops.Scaling {
	if st == nil {
		return nil
	}
	p := st.Policy
	v := &ops.Scaling{
		Policy: ops.ScalingPolicy{Target: p.Target, Tolerance: p.Tolerance,
			ScaleOutAfterSeconds: p.ScaleOutAfterSeconds, ScaleInAfterSeconds: p.ScaleInAfterSeconds},
		Held: st.Held, Regions: []ops.ScalingRegion{}, Events: []ops.ScalingEvent{},
	}
	for _, r := range st.Regions {
		sr := ops.ScalingRegion{Region: r.Region, Min: r.Min, Max: r.Max, Want: r.Want, Reason: r.Reason,
			Utilisation: r.Utilisation, Inputs: scalingInputs(r.Inputs)}
		if r.PreScale != nil {
			sr.PreScale = &ops.ScalingPreScale{Min: r.PreScale.Min, Until: r.PreScale.Until, Active: now.Before(r.PreScale.Until)}
		}
		v.Regions = append(v.Regions, sr)
	}
	for _, e := range st.Events[:min(len(st.Events), scalingEvents)] {
		se := ops.ScalingEvent{At: e.At, Region: e.Region, Action: e.Action, From: e.From, To: e.To, Reason: e.Reason,
			Instance: e.Instance, ExceededAt: e.ExceededAt, ToTrafficMs: e.ToTrafficMs}
		if e.Inputs != nil {
			in := scalingInputs(*e.Inputs)
			se.Inputs = &in
		}
		v.Events = append(v.Events, se)
	}
	return v
}

func scalingInputs(in autoscale.Inputs) ops.ScalingInputs {
	return ops.ScalingInputs{Instances: in.Instances, Reporting: in.Reporting, InFlight: in.InFlight, Capacity: in.Capacity,
		Requests: in.Requests, Shed: in.Shed, Waiting: in.Waiting, P99Ms: in.P99Ms, Min: in.Min, Max: in.Max,
		OrdersInProcess: in.OrdersInProcess, OrdersQueued: in.OrdersQueued, OrdersOldestMs: in.OrdersOldestMs}
}

// gateReading is the dashboard's view of one release's reading, its flows
// by name.
func gateReading(r release.Reading) ops.GateReading {
	g := ops.GateReading{Health: r.Health, Instances: r.Instances, Flows: []ops.FlowReading{}}
	for _, flow := range slices.Sorted(maps.Keys(r.Flows)) {
		f := r.Flows[flow]
		g.Flows = append(g.Flows, ops.FlowReading{Flow: flow, Requests: f.Requests, ErrorRatio: f.ErrorRatio(), P99Ms: f.P99 * 1000})
	}
	return g
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
