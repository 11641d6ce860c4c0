package opsplane

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/edge"
	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/store"
)

// popGone is how long a POP may stay silent before the plane takes it for
// gone: three of its publish intervals.
const popGone = 3 * edge.PublishInterval

// scrapeTimeout bounds one read of a stamp's health report.
const scrapeTimeout = 900 * time.Millisecond

// maxReport bounds a stamp's health report.
const maxReport = 1 << 20

// forgetStamp is how long the plane keeps reading a stamp the registry
// no longer announces: a stamp cut off from the store (its server lost)
// stops heartbeating but still answers, and its report says why; a stamp
// that is gone stops answering, and its last report ages meanwhile.
const forgetStamp = 30 * time.Second

// registryGone is how long a stamp the registry stopped announcing
// counts as announced when its delete does not arrive: the registry's
// 5 s TTL plus two heartbeats, as at the edge. It counts only while the
// registry is heard (some stamp announced within registryHeard): a watch
// that hears nothing at all may be the one that is lost.
const (
	registryGone  = 7 * time.Second
	registryHeard = 2 * time.Second
)

// stampSeen is one stamp instance as the plane knows it.
type stampSeen struct {
	id, region, url string
	release         string         // the release the registry entry announces
	zone            string         // the zone the registry entry announces
	report          *health.Report // the last report read; nil: none yet
	freshAt         time.Time      // when a report with a new CheckedAt was last read
	readAt          time.Time      // when a report was last read
	silentSince     time.Time      // when the reads failing since the last answered one began; zero: the last was answered
	heardAt         time.Time      // when the registry last announced it
	left            time.Time      // when the registry stopped announcing it; zero: announced
	scraping        bool
}

// popSeen is one POP's last published status.
type popSeen struct {
	status edge.POPStatus
	heard  time.Time
}

// inputs holds what the plane has heard, each input with when.
type inputs struct {
	now func() time.Time

	mu     sync.Mutex // guards the fields below
	stamps map[string]*stampSeen
	pops   map[string]popSeen
	beats  map[string]time.Time // region -> last registry heartbeat heard
	heard  time.Time            // when the registry last announced any stamp
	seen   map[string]time.Time // region -> last time a stamp of it was in the registry

	// joined is told when a stamp joins the registry, so its first report
	// is scraped at once rather than at the next tick.
	joined chan struct{}
}

func newInputs(now func() time.Time) *inputs {
	return &inputs{now: now, stamps: map[string]*stampSeen{}, pops: map[string]popSeen{},
		beats: map[string]time.Time{}, seen: map[string]time.Time{}, joined: make(chan struct{}, 1)}
}

// registry applies one registry event: a heartbeat (e set) or a stamp that
// left (e nil).
func (in *inputs) registry(id string, e *store.StampEntry) {
	in.mu.Lock()
	defer in.mu.Unlock()
	now := in.now()
	if e == nil {
		if s, ok := in.stamps[id]; ok && s.left.IsZero() {
			s.left = now
		}
		return
	}
	in.beats[e.Region] = now
	in.seen[e.Region] = now
	in.heard = now
	s, ok := in.stamps[id]
	if !ok {
		s = &stampSeen{id: id}
		in.stamps[id] = s
		select {
		case in.joined <- struct{}{}:
		default: // a scrape is asked for already
		}
	}
	s.region, s.url, s.release, s.zone, s.left, s.heardAt = e.Region, e.URL, e.Release, e.Zone, time.Time{}, now
}

// pop records a POP's published status.
func (in *inputs) pop(m *nats.Msg) {
	var st edge.POPStatus
	if err := json.Unmarshal(m.Data, &st); err != nil || st.Region == "" || m.Subject != edge.StatusSubject+"."+st.Region {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.pops[st.Region] = popSeen{status: st, heard: in.now()}
}

// popStatus is every POP heard from recently, in region order.
func (in *inputs) popStatus() []edge.POPStatus {
	in.mu.Lock()
	defer in.mu.Unlock()
	now := in.now()
	out := []edge.POPStatus{}
	for region, p := range in.pops {
		if now.Sub(p.heard) > popGone {
			delete(in.pops, region)
			continue
		}
		out = append(out, p.status)
	}
	slices.SortFunc(out, func(a, b edge.POPStatus) int { return strings.Compare(a.Region, b.Region) })
	return out
}

// stampView is a copy of one stampSeen, safe to read without the lock.
type stampView struct {
	id, region, url string
	release, zone   string
	report          *health.Report
	freshAt         time.Time
	announced       bool      // the registry announces it now
	silent          bool      // its last health read failed
	silentSince     time.Time // since when its reads fail; zero: not silent
}

// freshReport is the stamp's last report while it still says how the
// stamp is (no older than staleReport), else nil.
func (s stampView) freshReport(now time.Time) *health.Report {
	if s.report == nil || now.Sub(s.freshAt) > staleReport {
		return nil
	}
	return s.report
}

// stampList is every known stamp instance, by id. A stamp the registry
// stopped announcing is forgotten once it has not answered for
// forgetStamp.
func (in *inputs) stampList() []stampView {
	in.mu.Lock()
	defer in.mu.Unlock()
	now := in.now()
	out := make([]stampView, 0, len(in.stamps))
	for id, s := range in.stamps {
		if !s.left.IsZero() && now.Sub(s.left) > forgetStamp && now.Sub(s.readAt) > forgetStamp {
			delete(in.stamps, id)
			continue
		}
		if s.left.IsZero() && now.Sub(s.heardAt) > registryGone && now.Sub(in.heard) < registryHeard {
			// Its delete never arrived (a watch set up again replays
			// entries, not deletes), while the registry goes on
			// announcing others: gone, as the edge decides too.
			s.left = s.heardAt.Add(registryGone)
		}
		out = append(out, stampView{id: s.id, region: s.region, url: s.url, release: s.release, zone: s.zone, report: s.report, freshAt: s.freshAt, announced: s.left.IsZero(), silent: !s.silentSince.IsZero(), silentSince: s.silentSince})
	}
	slices.SortFunc(out, func(a, b stampView) int { return strings.Compare(a.id, b.id) })
	return out
}

// heartbeats is the last registry heartbeat heard from each region.
func (in *inputs) heartbeats() map[string]time.Time {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make(map[string]time.Time, len(in.beats))
	for r, t := range in.beats {
		out[r] = t
	}
	return out
}

// regionsSeen is every region a stamp announced itself in within forget.
func (in *inputs) regionsSeen(forget time.Duration) []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	now := in.now()
	var out []string
	for r, t := range in.seen {
		if now.Sub(t) <= forget {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

// scrapeAll reads every known stamp's health report, each at most once at a
// time: a stamp that does not answer keeps its last report, which ages.
func (in *inputs) scrapeAll(ctx context.Context, client *http.Client) {
	type job struct {
		s   *stampSeen
		url string // read under the lock: the registry may change it
	}
	in.mu.Lock()
	var todo []job
	for _, s := range in.stamps {
		if !s.scraping && s.url != "" {
			s.scraping = true
			todo = append(todo, job{s, s.url})
		}
	}
	in.mu.Unlock()
	var wg sync.WaitGroup
	for _, j := range todo {
		wg.Go(func() {
			s := j.s
			rep, err := scrape(ctx, client, j.url)
			in.mu.Lock()
			defer in.mu.Unlock()
			s.scraping = false
			now := in.now()
			if err != nil {
				if s.silentSince.IsZero() {
					s.silentSince = now
				}
				return
			}
			s.silentSince = time.Time{}
			if s.report == nil || !rep.CheckedAt.Equal(s.report.CheckedAt) {
				s.freshAt = now
			}
			s.report, s.readAt = rep, now
		})
	}
	wg.Wait()
}

// scrape reads one stamp's report. /health/stamp answers 503 with the
// report when the stamp is unhealthy or drained: both carry a report.
func scrape(ctx context.Context, client *http.Client, base string) (*health.Report, error) {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/health/stamp", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return nil, fmt.Errorf("GET %s/health/stamp: %s", base, resp.Status)
	}
	var rep health.Report
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxReport)).Decode(&rep); err != nil {
		return nil, fmt.Errorf("GET %s/health/stamp: %w", base, err)
	}
	if rep.CheckedAt.IsZero() {
		return nil, fmt.Errorf("GET %s/health/stamp: no report yet", base)
	}
	return &rep, nil
}
