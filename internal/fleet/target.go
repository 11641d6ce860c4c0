package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/contoso/shoes/internal/chaos"
	"github.com/contoso/shoes/internal/child"
	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/partner"
)

// target is the fleet as the fault library sees it: every fault acts on
// the real processes. The fleet's own methods do the work; Regions is the
// one the Target interface names differently.
type target struct{ *Fleet }

var _ chaos.Target = target{}

// Regions lists the fleet's regions.
func (t target) Regions() []string { return append([]string(nil), t.order...) }

// Target is the fleet as a chaos.Target, for chaos.New.
func (f *Fleet) Target() chaos.Target { return target{f} }

func (f *Fleet) region(name string) (*region, error) {
	r, ok := f.regions[name]
	if !ok {
		return nil, fmt.Errorf("unknown region %q", name)
	}
	return r, nil
}

// KillRegion SIGKILLs the region's POP, stamp instances and store server,
// as a crash of the whole region would; its added instances are gone for
// good, its stamps of the start (one per zone) come back with
// ReviveRegion. The dispatcher takes
// the POP out of rotation first, as geo-DNS does for a region known to be
// down; requests in flight there are retried on the next POP.
func (f *Fleet) KillRegion(name string) error {
	r, err := f.region(name)
	if err != nil {
		return fmt.Errorf("kill region: %w", err)
	}
	f.withdraw(name, true)
	f.mu.Lock()
	stamps := r.stamps
	r.stamps = r.stamps[:min(len(r.stamps), f.instances())]
	f.mu.Unlock()
	all := []*child.Process{r.pop, r.nats}
	for _, s := range stamps {
		all = append(all, s.Process)
	}
	_ = each(all, func(p *child.Process) error { p.Kill(); return nil })
	return nil
}

// ReviveRegion restarts what of the region is not running, on its ports
// and data: the store server, its stamps of the start, the POP; it
// returns once the POP routes to the region's stamps again.
func (f *Fleet) ReviveRegion(ctx context.Context, name string) error {
	r, err := f.region(name)
	if err != nil {
		return fmt.Errorf("revive region: %w", err)
	}
	f.mu.Lock()
	parts := []*child.Process{r.nats}
	for _, s := range r.stamps {
		parts = append(parts, s.Process)
	}
	parts = append(parts, r.pop)
	if r.handedOver {
		parts = []*child.Process{r.nats, r.pop} // its stamps are another supervisor's
	}
	f.mu.Unlock()
	for _, p := range parts {
		if p.Running() {
			continue
		}
		if err := p.Start(ctx); err != nil {
			return fmt.Errorf("revive region %s: %w", name, err)
		}
	}
	f.withdraw(name, false) // its POP routes to its stamp: back in rotation
	return nil
}

// StopServer SIGKILLs the region's store server.
func (f *Fleet) StopServer(name string) error {
	r, err := f.region(name)
	if err != nil {
		return fmt.Errorf("stop server: %w", err)
	}
	r.nats.Kill()
	return nil
}

// StartServer restarts the region's store server on its ports and data.
func (f *Fleet) StartServer(name string) error {
	r, err := f.region(name)
	if err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	if r.nats.Running() {
		return nil
	}
	return r.nats.Start(context.Background())
}

// Link is the link between two regions: every proxy between them, both
// ways.
func (f *Fleet) Link(a, b string) (chaos.Link, error) {
	if l := f.link(a, b); l != nil {
		return l, nil
	}
	return nil, fmt.Errorf("no link between %s and %s", a, b)
}

// SetSecretStore stops the secret store's process (up false) or starts
// it again.
func (f *Fleet) SetSecretStore(up bool) {
	if !up {
		f.secrets.Stop(child.StopGrace)
		return
	}
	if f.secrets.Running() {
		return
	}
	if err := f.secrets.Start(context.Background()); err != nil {
		f.log.Error("secret store did not start again", "error", err)
	}
}

// SetPartner switches the partner stand-in's mode through its /v1/mode.
func (f *Fleet) SetPartner(mode string, delay time.Duration) error {
	if !partner.Mode(mode).Valid() {
		return fmt.Errorf("partner mode %q", mode)
	}
	body, _ := json.Marshal(map[string]any{"mode": mode, "delayMs": delay.Milliseconds()})
	return f.call(context.Background(), http.MethodPut, f.partnerURL+"/v1/mode", body, false)
}

// SetDrained drains (or restores) every running stamp instance of the
// region through its POST (DELETE) /ops/drain, with an admin token.
func (f *Fleet) SetDrained(name string, drained bool) error {
	r, err := f.region(name)
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	method := http.MethodDelete
	if drained {
		method = http.MethodPost
	}
	n := 0
	var errs []error
	for _, s := range f.stampsOf(r) {
		if !s.Running() {
			continue
		}
		n++
		errs = append(errs, f.call(context.Background(), method, s.url+"/ops/drain", nil, true))
	}
	if n == 0 {
		return fmt.Errorf("drain: region %q has no running instance", name)
	}
	return errors.Join(errs...)
}

// KillInstance SIGKILLs the region's newest running stamp instance and
// returns its registry id.
func (f *Fleet) KillInstance(name string) (string, error) {
	r, err := f.region(name)
	if err != nil {
		return "", fmt.Errorf("kill instance: %w", err)
	}
	f.mu.Lock()
	var victim *stampProc
	for i := len(r.stamps) - 1; i >= 0; i-- {
		if r.stamps[i].Running() {
			victim = r.stamps[i]
			if i >= f.instances() { // an added one is gone for good
				r.stamps = append(r.stamps[:i], r.stamps[i+1:]...)
			}
			break
		}
	}
	f.mu.Unlock()
	if victim == nil {
		return "", fmt.Errorf("kill instance: region %q has no running instance", name)
	}
	id := f.registry.id(victim.url)
	victim.Kill()
	if id == "" {
		id = victim.Name
	}
	return id, nil
}

// AddInstance starts one more stamp process in the region and returns its
// URL once it is ready: one of the region's stamps of the start that is
// down (a crash), on its port and in its zone, so every POP reaches it as
// before; else a new process. The region's own POP reaches a new one
// directly; the other regions' POPs reach it without the link's latency,
// since their --via was set when they started.
func (f *Fleet) AddInstance(ctx context.Context, name string) (string, error) {
	r, err := f.region(name)
	if err != nil {
		return "", fmt.Errorf("add instance: %w", err)
	}
	f.mu.Lock()
	var down *stampProc
	for _, s := range r.stamps[:min(len(r.stamps), f.instances())] {
		if !s.Running() && !s.starting && !r.handedOver {
			down = s
			break
		}
	}
	f.mu.Unlock()
	if down != nil {
		if err := down.Start(ctx); err != nil {
			return "", fmt.Errorf("add instance: %w", err)
		}
		return down.url, nil
	}
	return f.addInstance(ctx, name, "")
}

// addInstance starts a stamp process of region name in zone (empty: the
// zone with the fewest running stamps).
func (f *Fleet) addInstance(ctx context.Context, name, zone string) (string, error) {
	r, err := f.region(name)
	if err != nil {
		return "", fmt.Errorf("add instance: %w", err)
	}
	f.mu.Lock()
	if zone == "" {
		zone = f.emptiestZone(r)
	}
	f.nextID++
	i := f.nextID
	port, err := f.ports.take()
	f.mu.Unlock()
	if err != nil {
		return "", fmt.Errorf("add instance: %w", err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	f.mu.Lock()
	s := &stampProc{url: url, region: name, release: r.release, binary: r.binary, zone: zone}
	f.mu.Unlock()
	s.Process = f.stampProc(s, i, "")
	if err := s.Start(ctx); err != nil {
		return "", fmt.Errorf("add instance: %w", err)
	}
	f.mu.Lock()
	r.stamps = append(r.stamps, s)
	f.mu.Unlock()
	return url, nil
}

// instances is how many stamps each region runs.
func (f *Fleet) instances() int { return max(1, f.cfg.Instances) }

// emptiestZone is r's zone with the fewest running stamps; f.mu is held.
func (f *Fleet) emptiestZone(r *region) string {
	return deploy.FewestZone(r.name, f.instances(), func(zone string) int {
		n := 0
		for _, s := range r.stamps {
			if s.zone == zone && s.Running() {
				n++
			}
		}
		return n
	})
}

// KillZone SIGKILLs every running stamp process in zone k of a region (of
// every region for chaos.EveryRegion) and returns their registry ids.
func (f *Fleet) KillZone(name string, k int) ([]string, error) {
	if name != chaos.EveryRegion {
		if _, err := f.region(name); err != nil {
			return nil, fmt.Errorf("kill zone: %w", err)
		}
	}
	f.mu.Lock()
	var victims []*stampProc
	for _, r := range f.regions {
		if name != chaos.EveryRegion && r.name != name {
			continue
		}
		zone := deploy.ZoneName(r.name, k)
		for _, s := range r.stamps {
			if s.zone == zone && s.Running() {
				victims = append(victims, s)
			}
		}
	}
	f.mu.Unlock()
	var ids []string
	for _, s := range victims {
		id := f.registry.id(s.url)
		s.Kill()
		if id == "" {
			id = s.Name
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// RestoreZone starts again every stamp process of zone k of a region (of
// every region for chaos.EveryRegion) that is not running, and returns
// once they are ready.
func (f *Fleet) RestoreZone(ctx context.Context, name string, k int) error {
	f.mu.Lock()
	var todo []*stampProc
	for _, r := range f.regions {
		if name != chaos.EveryRegion && r.name != name {
			continue
		}
		for _, s := range r.stamps {
			if s.zone == deploy.ZoneName(r.name, k) && !s.Running() && !s.starting {
				todo = append(todo, s)
			}
		}
	}
	f.mu.Unlock()
	return each(todo, func(s *stampProc) error { return s.Start(ctx) })
}

func (f *Fleet) stampsOf(r *region) []*stampProc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*stampProc(nil), r.stamps...)
}

// call sends one request to a part and fails on any answer but 2xx; with
// admin, it carries an admin token.
func (f *Fleet) call(ctx context.Context, method, url string, body []byte, admin bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if admin {
		tok, err := f.adminToken()
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := localClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}
