package release_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// newRecords is the release records of a store of its own on an embedded
// one-node cluster: a table row's records never meet another row's.
func newRecords(t *testing.T) *testRecords {
	t.Helper()
	_, nc := storetest.NewCluster(t, "a").MustOpen(t, 0)
	return &testRecords{store.NewReleases(store.Config{Conn: nc})}
}

type testRecords struct{ *store.Releases }

// put stores r, and makes it the current release when current is set, as
// the controller writes them ("r.<id>" and "current").
func (m *testRecords) put(t *testing.T, r Record, current bool) {
	t.Helper()
	r.Schema = Schema
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	m.save(t, "r."+r.ID, data)
	if current {
		cur, _ := json.Marshal(map[string]string{"id": r.ID})
		m.save(t, "current", cur)
	}
}

func (m *testRecords) save(t *testing.T, key string, data []byte) {
	t.Helper()
	_, rev, err := m.Load(t.Context(), key)
	if err == nil {
		_, err = m.Save(t.Context(), key, data, rev)
	}
	if err != nil {
		t.Fatalf("save %s: %v", key, err)
	}
}

// memLauncher stands for the machine an agent starts instances on (the
// in-process, process and host launchers are proven with real stamps in
// deploy, fleet and host): each instance starts at once, as an entry.
type memLauncher struct {
	mu      sync.Mutex
	running []Instance
	n       int
	calls   int // starts and stops
}

func (l *memLauncher) Start(_ context.Context, spec Spec) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	l.calls++
	id := fmt.Sprintf("%s.%d", spec.Region, l.n)
	l.running = append(l.running, Instance{ID: id, Region: spec.Region, Release: spec.Version})
	return id, nil
}

func (l *memLauncher) Stop(_ context.Context, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	i := slices.IndexFunc(l.running, func(in Instance) bool { return in.ID == id })
	if i < 0 {
		return fmt.Errorf("stop %s: no such instance", id)
	}
	l.running = slices.Delete(l.running, i, i+1)
	return nil
}

func (l *memLauncher) Running() []Instance {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.running)
}

// counts is how many instances of each region/version run.
func (l *memLauncher) counts() map[string]int {
	out := map[string]int{}
	for _, in := range l.Running() {
		out[in.Region+"/"+in.Release]++
	}
	return out
}

func (l *memLauncher) callCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

// settle runs the agent until the instances match want, or fails.
func settle(t *testing.T, a *Agent, l *memLauncher, want map[string]int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for !maps.Equal(l.counts(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("runs %v, want %v", l.counts(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// And it stays so: a few more passes change nothing.
	calls := l.callCount()
	time.Sleep(100 * time.Millisecond) // five ticks
	if got := l.counts(); !maps.Equal(got, want) || l.callCount() != calls {
		t.Fatalf("after settling: runs %v, want %v", got, want)
	}
}

func TestAgentKeepsItsShareOfEveryVersion(t *testing.T) {
	weu := func(split map[string]int) map[string]map[string]int {
		return map[string]map[string]int{"westeurope": split}
	}
	tests := []struct {
		name      string
		instances int
		hosts     []string // nil: every region
		phase     Phase
		desired   map[string]map[string]int
		running   map[string]int // region/version → instances before
		want      map[string]int // region/version → instances after
	}{
		{
			name: "zero: the region's desired counts", phase: PhaseShifting,
			desired: weu(map[string]int{"v1": 3, "v2": 3}),
			running: map[string]int{"westeurope/v1": 3},
			want:    map[string]int{"westeurope/v1": 3, "westeurope/v2": 3},
		},
		{
			name: "one host of three carries one of each", instances: 1, phase: PhaseStarting,
			desired: weu(map[string]int{"v1": 3, "v2": 3}),
			running: map[string]int{"westeurope/v1": 1},
			want:    map[string]int{"westeurope/v1": 1, "westeurope/v2": 1},
		},
		{
			name: "two of each, whatever the region's total", instances: 2, phase: PhaseShifting,
			desired: weu(map[string]int{"v1": 5, "v2": 5}),
			running: map[string]int{"westeurope/v1": 2},
			want:    map[string]int{"westeurope/v1": 2, "westeurope/v2": 2},
		},
		{
			name: "more than its share is drained to it", instances: 1, phase: PhaseShifting,
			desired: weu(map[string]int{"v1": 3, "v2": 3}),
			running: map[string]int{"westeurope/v1": 2, "westeurope/v2": 1},
			want:    map[string]int{"westeurope/v1": 1, "westeurope/v2": 1},
		},
		{
			name: "finishing: the old version, desired at zero, is drained", instances: 2, phase: PhaseFinishing,
			desired: weu(map[string]int{"v1": 0, "v2": 4}),
			running: map[string]int{"westeurope/v1": 2, "westeurope/v2": 2},
			want:    map[string]int{"westeurope/v2": 2},
		},
		{
			name: "rolling back: the new version, desired at zero, is drained", instances: 2, phase: PhaseRollingBack,
			desired: weu(map[string]int{"v1": 4, "v2": 0}),
			running: map[string]int{"westeurope/v1": 2, "westeurope/v2": 2},
			want:    map[string]int{"westeurope/v1": 2},
		},
		{
			name: "a region it does not host is left alone", instances: 1, hosts: []string{"westeurope"}, phase: PhaseStarting,
			desired: map[string]map[string]int{"westeurope": {"v1": 2, "v2": 2}, "eastus": {"v1": 2, "v2": 2}},
			running: map[string]int{"westeurope/v1": 1},
			want:    map[string]int{"westeurope/v1": 1, "westeurope/v2": 1},
		},
		{
			name: "an ended release starts nothing and drains the retired version", instances: 1, phase: PhaseDone,
			desired: weu(map[string]int{"v1": 0, "v2": 3}),
			running: map[string]int{"westeurope/v1": 1},
			want:    map[string]int{},
		},
		{
			name: "an ended release leaves a scale-out alone", instances: 1, phase: PhaseDone,
			desired: weu(map[string]int{"v1": 0, "v2": 3}),
			running: map[string]int{"westeurope/v2": 2},
			want:    map[string]int{"westeurope/v2": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			records := newRecords(t)
			records.put(t, Record{ID: "r1", Version: "v2", From: map[string]string{"westeurope": "v1"}, Phase: tt.phase, Desired: tt.desired}, true)
			l := &memLauncher{}
			for k, n := range tt.running {
				region, version, _ := strings.Cut(k, "/")
				for range n {
					_, _ = l.Start(t.Context(), Spec{Region: region, Version: version})
				}
			}
			cfg := AgentConfig{Records: records, Launcher: l, Instances: tt.instances, Tick: 20 * time.Millisecond}
			if tt.hosts != nil {
				cfg.Hosts = func(r string) bool { return slices.Contains(tt.hosts, r) }
			}
			a, err := NewAgent(cfg)
			if err != nil {
				t.Fatal(err)
			}
			settle(t, a, l, tt.want)
		})
	}
}

func TestLeftIsWhatTheLastReleaseLeft(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	from := map[string]string{"westeurope": "v1"}
	v1Done := Record{ID: "r1", Version: "v1", Image: "reg/shoes@sha256:11", From: map[string]string{"westeurope": "v0"}, Phase: PhaseDone, EndedAt: at}
	tests := []struct {
		name    string
		past    []Record
		current *Record
		region  string
		want    Spec
		ok      bool
	}{
		{name: "no release yet", region: "westeurope"},
		{
			name: "done: the new version, from its image", region: "westeurope",
			current: &Record{ID: "r2", Version: "v2", Image: "reg/shoes@sha256:22", From: from, Phase: PhaseDone},
			want:    Spec{Region: "westeurope", Version: "v2", Image: "reg/shoes@sha256:22"}, ok: true,
		},
		{
			name: "a region the release did not name", region: "eastus",
			current: &Record{ID: "r2", Version: "v2", Image: "reg/shoes@sha256:22", From: from, Phase: PhaseDone},
		},
		{
			name: "rolled back: the old version, from the image a done release brought it from", region: "westeurope",
			past:    []Record{v1Done, {ID: "r0", Version: "v1", Image: "reg/shoes@sha256:10", Phase: PhaseDone, EndedAt: at.Add(-time.Hour)}},
			current: &Record{ID: "r2", Version: "v2", Image: "reg/shoes@sha256:22", From: from, Phase: PhaseRolledBack},
			want:    Spec{Region: "westeurope", Version: "v1", Image: "reg/shoes@sha256:11"}, ok: true,
		},
		{
			name: "failed: the old version, which no image brought", region: "westeurope",
			past:    []Record{{ID: "r1", Version: "v1", Image: "reg/shoes@sha256:11", Phase: PhaseRolledBack, EndedAt: at}},
			current: &Record{ID: "r2", Version: "v2", Image: "reg/shoes@sha256:22", From: from, Phase: PhaseFailed},
			want:    Spec{Region: "westeurope", Version: "v1"}, ok: true,
		},
		{
			name: "under way: the version it started from", region: "westeurope",
			past:    []Record{v1Done},
			current: &Record{ID: "r2", Version: "v2", Image: "reg/shoes@sha256:22", From: from, Phase: PhaseShifting},
			want:    Spec{Region: "westeurope", Version: "v1", Image: "reg/shoes@sha256:11"}, ok: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			records := newRecords(t)
			for _, r := range tt.past {
				records.put(t, r, false)
			}
			if tt.current != nil {
				records.put(t, *tt.current, true)
			}
			got, ok, err := Left(t.Context(), records, tt.region)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want || ok != tt.ok {
				t.Errorf("Left = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
