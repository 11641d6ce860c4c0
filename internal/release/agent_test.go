package release

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
)

// memRecords is Records in memory.
type memRecords struct {
	mu   sync.Mutex
	data map[string][]byte
	revs map[string]uint64
}

func newMemRecords() *memRecords {
	return &memRecords{data: map[string][]byte{}, revs: map[string]uint64{}}
}

func (m *memRecords) Load(_ context.Context, key string) ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.data[key], m.revs[key], nil
}

func (m *memRecords) Save(_ context.Context, key string, data []byte, rev uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.revs[key] != rev {
		return 0, fmt.Errorf("save %s: revision %d, not %d", key, m.revs[key], rev)
	}
	m.data[key] = data
	m.revs[key]++
	return m.revs[key], nil
}

func (m *memRecords) Keys(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.data)), nil
}

func (m *memRecords) SetTraffic(context.Context, string, map[string]map[string]int) error {
	return nil
}

// put stores r, and makes it the current release when current is set.
func (m *memRecords) put(t *testing.T, r Record, current bool) {
	t.Helper()
	r.Schema = Schema
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data[keyPrefix+r.ID] = data
	m.revs[keyPrefix+r.ID]++
	if current {
		m.data[keyCurrent], _ = json.Marshal(map[string]string{"id": r.ID})
		m.revs[keyCurrent]++
	}
}

// memLauncher runs instances as entries in memory: each starts at once.
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

// settle runs the agent's passes until one starts and stops nothing.
func settle(t *testing.T, a *Agent, l *memLauncher) {
	t.Helper()
	for range 10 {
		before := l.callCount()
		if err := a.reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		a.wg.Wait()
		if l.callCount() == before {
			return
		}
	}
	t.Fatalf("the agent never settled: %v", l.counts())
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
			records := newMemRecords()
			records.put(t, Record{ID: "r1", Version: "v2", From: map[string]string{"westeurope": "v1"}, Phase: tt.phase, Desired: tt.desired}, true)
			l := &memLauncher{}
			for k, n := range tt.running {
				region, version, _ := strings.Cut(k, "/")
				for range n {
					_, _ = l.Start(t.Context(), Spec{Region: region, Version: version})
				}
			}
			cfg := AgentConfig{Records: records, Launcher: l, Instances: tt.instances}
			if tt.hosts != nil {
				cfg.Hosts = func(r string) bool { return slices.Contains(tt.hosts, r) }
			}
			a, err := NewAgent(cfg)
			if err != nil {
				t.Fatal(err)
			}
			settle(t, a, l)
			if got := l.counts(); !maps.Equal(got, tt.want) {
				t.Errorf("runs %v, want %v", got, tt.want)
			}
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
			records := newMemRecords()
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
