// Package chaostest provides a recording chaos.Target for the tests of code
// that drives faults: it changes nothing, writes down every call in order,
// and fails the calls it is told to fail.
package chaostest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/contoso/shoes/internal/chaos"
)

var _ chaos.Target = (*Target)(nil)

// Target records the calls made to it as lines like "KillRegion westeurope",
// "Cut westeurope-eastus" or "SetPartner slow 3s". Link lookups are not
// recorded; what is done to a link is, named "a-b" in the order of the
// lookup.
type Target struct {
	mu        sync.Mutex // guards the fields below
	regions   []string
	calls     []string
	fail      map[string]error
	instances map[string]int // instances killed or added so far, per region
}

// NewTarget returns a Target with the given regions.
func NewTarget(regions ...string) *Target {
	return &Target{regions: slices.Clone(regions), fail: map[string]error{}, instances: map[string]int{}}
}

// Calls returns the calls recorded so far, oldest first.
func (t *Target) Calls() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.calls)
}

// Take returns the calls recorded so far and forgets them.
func (t *Target) Take() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	calls := t.calls
	t.calls = nil
	return calls
}

// FailOn makes every later call whose record is call, or starts with call
// and a space, fail with err ("StartServer eastus", or "SetLatency" for
// every link); nil err lifts it. Link lookups fail with "Link a-b". Calls
// that return no error cannot fail.
func (t *Target) FailOn(call string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		delete(t.fail, call)
		return
	}
	t.fail[call] = err
}

// SetRegions replaces the regions Regions reports.
func (t *Target) SetRegions(regions ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.regions = slices.Clone(regions)
}

// record writes call down and returns the error it should fail with.
func (t *Target) record(call string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls = append(t.calls, call)
	return t.failure(call)
}

// failure returns the error call should fail with. The caller holds t.mu.
func (t *Target) failure(call string) error {
	for prefix, err := range t.fail {
		if call == prefix || strings.HasPrefix(call, prefix+" ") {
			return err
		}
	}
	return nil
}

// Regions returns the regions.
func (t *Target) Regions() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.regions)
}

// KillRegion records "KillRegion region".
func (t *Target) KillRegion(region string) error { return t.record("KillRegion " + region) }

// ReviveRegion records "ReviveRegion region".
func (t *Target) ReviveRegion(ctx context.Context, region string) error {
	if err := t.record("ReviveRegion " + region); err != nil {
		return err
	}
	return ctx.Err()
}

// StopServer records "StopServer region".
func (t *Target) StopServer(region string) error { return t.record("StopServer " + region) }

// StartServer records "StartServer region".
func (t *Target) StartServer(region string) error { return t.record("StartServer " + region) }

// Link returns the link "a-b", which records what is done to it.
func (t *Target) Link(a, b string) (chaos.Link, error) {
	name := a + "-" + b
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.failure("Link " + name); err != nil {
		return nil, err
	}
	if !slices.Contains(t.regions, a) || !slices.Contains(t.regions, b) || a == b {
		return nil, fmt.Errorf("no link %s", name)
	}
	return &link{t: t, name: name}, nil
}

// SetSecretStore records "SetSecretStore up".
func (t *Target) SetSecretStore(up bool) { _ = t.record(fmt.Sprintf("SetSecretStore %t", up)) }

// SetPartner records "SetPartner mode delay".
func (t *Target) SetPartner(mode string, delay time.Duration) error {
	return t.record(fmt.Sprintf("SetPartner %s %s", mode, delay))
}

// SetDrained records "SetDrained region drained".
func (t *Target) SetDrained(region string, drained bool) error {
	return t.record(fmt.Sprintf("SetDrained %s %t", region, drained))
}

// KillInstance records "KillInstance region" and returns an id like
// "westeurope-1".
func (t *Target) KillInstance(region string) (string, error) {
	if err := t.record("KillInstance " + region); err != nil {
		return "", err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.instances[region]++
	return fmt.Sprintf("%s-%d", region, t.instances[region]), nil
}

// KillZone records "KillZone region k" and returns one id per region it
// covers, like "westeurope.z2".
func (t *Target) KillZone(region string, k int) ([]string, error) {
	if err := t.record(fmt.Sprintf("KillZone %s %d", region, k)); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	regions := []string{region}
	if region == chaos.EveryRegion {
		regions = t.regions
	}
	var ids []string
	for _, r := range regions {
		ids = append(ids, fmt.Sprintf("%s.z%d", r, k))
	}
	return ids, nil
}

// RestoreZone records "RestoreZone region k".
func (t *Target) RestoreZone(ctx context.Context, region string, k int) error {
	if err := t.record(fmt.Sprintf("RestoreZone %s %d", region, k)); err != nil {
		return err
	}
	return ctx.Err()
}

// AddInstance records "AddInstance region" and returns a loopback URL.
func (t *Target) AddInstance(ctx context.Context, region string) (string, error) {
	if err := t.record("AddInstance " + region); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.instances[region]++
	return fmt.Sprintf("http://127.0.0.1:%d", 9000+t.instances[region]), nil
}

// link records what is done to it on its Target.
type link struct {
	t    *Target
	name string
}

func (l *link) SetLatency(latency, jitter time.Duration) error {
	return l.t.record(fmt.Sprintf("SetLatency %s %s %s", l.name, latency, jitter))
}

func (l *link) ResetLatency() { _ = l.t.record("ResetLatency " + l.name) }
func (l *link) Cut()          { _ = l.t.record("Cut " + l.name) }
func (l *link) Heal()         { _ = l.t.record("Heal " + l.name) }
