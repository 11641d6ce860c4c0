package launch_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/launch"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/store"
	"github.com/contoso/shoes/internal/store/storetest"
)

// node starts one store server that accepts only the roles' users and
// returns a connection as each role.
func node(t *testing.T) map[store.Role]*nats.Conn {
	t.Helper()
	users, seeds := storetest.RoleUsers(t)
	n, err := store.StartNode(store.NodeConfig{Region: "westeurope", StoreDir: t.TempDir(), Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(false) })
	conns := map[store.Role]*nats.Conn{}
	for r, seed := range seeds {
		opts, err := store.Credentials{Seed: seed}.Options()
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(n.ClientURL(), append(opts, nats.Timeout(5*time.Second))...)
		if err != nil {
			t.Fatalf("connect as %s: %v", r, err)
		}
		t.Cleanup(nc.Close)
		conns[r] = nc
	}
	return conns
}

// machine is a stand-in for what a supervisor runs: instances that start
// and drain at once, or fail as told. (The fleet's tests run the real
// supervisor: TestAutoscalerStartsAndDrainsStampProcesses.)
type machine struct {
	region string
	mu     sync.Mutex
	next   int
	run    []release.Instance
	fail   error
	block  chan struct{} // when set, Start waits on it
}

func (m *machine) Start(ctx context.Context, spec release.Spec) (string, error) {
	if m.block != nil {
		select {
		case <-m.block:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return "", m.fail
	}
	m.next++
	id := fmt.Sprintf("%s.%s%d", spec.Region, m.region, m.next)
	m.run = append(m.run, release.Instance{ID: id, Region: spec.Region, Release: spec.Version})
	return id, nil
}

func (m *machine) Stop(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, in := range m.run {
		if in.ID == id {
			m.run = append(m.run[:i], m.run[i+1:]...)
			return nil
		}
	}
	return errors.New("not running")
}

func (m *machine) Running() []release.Instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]release.Instance(nil), m.run...)
}

func serve(t *testing.T, nc *nats.Conn, m *machine, regions ...string) *launch.Server {
	t.Helper()
	s, err := launch.Serve(launch.ServeConfig{Conn: nc, Launcher: m, Regions: regions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// A start reaches one agent of its region and returns the instance it
// started; a drain reaches the agent that runs the instance; each agent
// answers only for what it runs; no agent for a region is said at once.
func TestRemoteStartsAndDrainsThroughTheAgentsOfTheRegion(t *testing.T) {
	conns := node(t)
	west, north := &machine{region: "w"}, &machine{region: "n"}
	serve(t, conns[store.RoleAgent], west, "westeurope")
	serve(t, conns[store.RoleAgent], north, "northeurope")
	all := func() []release.Instance { return append(west.Running(), north.Running()...) }
	remote := launch.Remote{Conn: conns[store.RoleOps], Instances: all, StartTimeout: 10 * time.Second, StopTimeout: 10 * time.Second}
	ctx := t.Context()

	a, err := remote.Start(ctx, release.Spec{Region: "westeurope", Version: "v1"})
	if err != nil || a != "westeurope.w1" {
		t.Fatalf("start in westeurope = %q, %v; want westeurope.w1", a, err)
	}
	b, err := remote.Start(ctx, release.Spec{Region: "northeurope", Version: "v1"})
	if err != nil || b != "northeurope.n1" {
		t.Fatalf("start in northeurope = %q, %v; want northeurope.n1", b, err)
	}
	if got := len(remote.Running()); got != 2 {
		t.Fatalf("running %v, want 2 instances", remote.Running())
	}
	if err := remote.Stop(ctx, a); err != nil {
		t.Fatalf("drain %s: %v", a, err)
	}
	if len(west.Running()) != 0 || len(north.Running()) != 1 {
		t.Fatalf("after the drain west runs %v and north %v", west.Running(), north.Running())
	}

	// No agent carries eastus: the sender learns it at once.
	start := time.Now()
	_, err = remote.Start(ctx, release.Spec{Region: "eastus"})
	if err == nil || !strings.Contains(err.Error(), "no supervisor or host carries eastus") || time.Since(start) > 5*time.Second {
		t.Fatalf("start in eastus = %v after %s; want no supervisor or host at once", err, time.Since(start))
	}
	// An instance nobody runs.
	if err := remote.Stop(ctx, "westeurope.gone"); err == nil {
		t.Fatal("drain of an instance nobody runs succeeded")
	}
	// A failed start comes back with its reason.
	west.mu.Lock()
	west.fail = errors.New("the disk is full")
	west.mu.Unlock()
	if _, err := remote.Start(ctx, release.Spec{Region: "westeurope"}); err == nil || !strings.Contains(err.Error(), "the disk is full") {
		t.Fatalf("failing start = %v, want the agent's reason", err)
	}
}

// An agent refuses what is not a start of its region, and a start that
// takes longer than the bound fails on the sender's side.
func TestAgentsRefuseBadStartsAndTheSenderBoundsItsWait(t *testing.T) {
	conns := node(t)
	m := &machine{region: "w", block: make(chan struct{})}
	serve(t, conns[store.RoleAgent], m, "westeurope")
	ops := conns[store.RoleOps]
	for _, tc := range []struct{ name, body, want string }{
		{"malformed", `{"spec":`, "malformed JSON"},
		{"unknown field", `{"spec":{"Region":"westeurope"},"evil":1}`, "unknown field"},
		{"another region", `{"spec":{"Region":"northeurope"}}`, "sent to westeurope"},
		{"oversized", `{"spec":{"Region":"westeurope","Version":"` + strings.Repeat("v", 20<<10) + `"}}`, "more than"},
	} {
		msg, err := ops.Request(store.LaunchSubject+".start.westeurope", []byte(tc.body), 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !strings.Contains(string(msg.Data), tc.want) {
			t.Errorf("%s: answer %s, want %q", tc.name, msg.Data, tc.want)
		}
	}
	if got := m.Running(); len(got) != 0 {
		t.Fatalf("bad starts started %v", got)
	}
	remote := launch.Remote{Conn: ops, Instances: m.Running, StartTimeout: 300 * time.Millisecond}
	if _, err := remote.Start(t.Context(), release.Spec{Region: "westeurope"}); err == nil || !strings.Contains(err.Error(), "no answer within 300ms") {
		t.Fatalf("blocked start = %v, want no answer within the bound", err)
	}
	close(m.block)
}

// Only the operations plane sends starts and only agents take them: an
// edge user subscribed to the subject is no responder, and an agent
// cannot send a start itself.
func TestOnlyOpsSendsAndOnlyAgentsTakeStarts(t *testing.T) {
	conns := node(t)
	if _, err := conns[store.RoleEdge].Subscribe(store.LaunchSubject+".start.westeurope", func(m *nats.Msg) { _ = m.Respond([]byte(`{"id":"evil"}`)) }); err != nil {
		t.Fatal(err)
	}
	_ = conns[store.RoleEdge].Flush()
	remote := launch.Remote{Conn: conns[store.RoleOps], Instances: func() []release.Instance { return nil }, StartTimeout: 2 * time.Second}
	if id, err := remote.Start(t.Context(), release.Spec{Region: "westeurope"}); err == nil {
		t.Fatalf("an edge user answered a start with %q", id)
	}
	m := &machine{region: "w"}
	serve(t, conns[store.RoleAgent], m, "westeurope")
	agentAsSender := launch.Remote{Conn: conns[store.RoleAgent], Instances: m.Running, StartTimeout: 2 * time.Second}
	if id, err := agentAsSender.Start(t.Context(), release.Spec{Region: "westeurope"}); err == nil {
		t.Fatalf("an agent sent a start and got %q", id)
	}
	if got := m.Running(); len(got) != 0 {
		t.Fatalf("an agent's own start ran %v", got)
	}
}

// An agent of every region (a supervisor's) takes the starts of whatever
// region it carries now and refuses those of a region it cannot start
// instances in (its store server down, say).
func TestAnAgentOfEveryRegionStartsOnlyWhereItCarries(t *testing.T) {
	conns := node(t)
	m := &machine{region: "a"}
	s, err := launch.Serve(launch.ServeConfig{Conn: conns[store.RoleAgent], Launcher: m, Carries: func(r string) bool { return r == "westeurope" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	remote := launch.Remote{Conn: conns[store.RoleOps], Instances: m.Running, StartTimeout: 10 * time.Second}
	if id, err := remote.Start(t.Context(), release.Spec{Region: "westeurope"}); err != nil || id != "westeurope.a1" {
		t.Fatalf("start in westeurope = %q, %v", id, err)
	}
	if _, err := remote.Start(t.Context(), release.Spec{Region: "northeurope"}); err == nil || !strings.Contains(err.Error(), "cannot start instances of northeurope now") {
		t.Fatalf("start in northeurope = %v, want refused", err)
	}
	if _, err := remote.Start(t.Context(), release.Spec{Region: "west.europe"}); err == nil || !strings.Contains(err.Error(), "not a region name") {
		t.Fatalf("start in west.europe = %v, want refused before it is sent", err)
	}
	if got := m.Running(); len(got) != 1 {
		t.Fatalf("running %v, want only the westeurope instance", got)
	}
}
