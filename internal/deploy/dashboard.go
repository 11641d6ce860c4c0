package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/ops"
	"github.com/contoso/shoes/internal/slo"
)

// snapshot is what the operations dashboard shows now: regions and their
// stamps, where every POP routes, the health model, the SLOs and the
// recent errors. It reads cached state only (the edge's last probes, the
// model's last evaluation, the metric history).
func (d *Deployment) snapshot(context.Context) (*ops.Snapshot, error) {
	snap := &ops.Snapshot{Time: time.Now().UTC(), Regions: []ops.Region{}, POPs: []ops.POP{}, SLOs: []ops.SLOStatus{}, Errors: []ops.ErrorEntry{}}
	tree := d.front.model.Latest()
	if tree != nil {
		snap.Health = &ops.HealthNode{}
		if err := convert(tree, snap.Health); err != nil {
			return nil, err
		}
	}
	if err := convert(slo.Evaluate(d.tel.Sink(), slo.Default()), &snap.SLOs); err != nil {
		return nil, err
	}
	status := d.front.edge.Status()
	routes := edge.Routes(status)
	for _, p := range status {
		snap.POPs = append(snap.POPs, ops.POP{Region: p.Region, Routes: routes[p.Region], FailOpen: p.FailOpen})
	}
	sink := d.tel.Sink()
	for _, name := range d.regionNames() {
		reg := ops.Region{Name: name, State: health.Unknown, Stamps: []ops.Stamp{}}
		if n := tree.Find("region." + name); n != nil {
			reg.State, reg.Reason = n.State, n.Reason
		}
		d.mu.Lock()
		instances := slices.Clone(d.regions[name].instances)
		d.mu.Unlock()
		for _, in := range instances {
			rep := in.stamp.Prober().Report()
			st := ops.Stamp{ID: in.stamp.ID(), State: rep.Status, Reason: rep.Reason, URL: in.url}
			if rep.Drained {
				st.State = health.Drained
			}
			reg.Stamps = append(reg.Stamps, st)
		}
		reg.RPS = trafficOf(sink, apiRequests(name), 10*time.Second).requests / 10
		t := trafficOf(sink, apiRequests(name), signalWindow)
		reg.ErrorRatio, reg.P99Ms = t.errorRatio, t.p99*1000
		snap.Regions = append(snap.Regions, reg)
	}
	for _, l := range sink.RecentLogs(30, slog.LevelError) {
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
