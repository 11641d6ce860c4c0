package edge

import (
	"maps"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/httpapi"
)

// StampStatus is one stamp as a POP sees it, for operators.
type StampStatus struct {
	ID           string        `json:"id"`
	Region       string        `json:"region"`
	Zone         string        `json:"zone,omitempty"` // its failure domain in the region, as announced
	Release      string        `json:"release"`        // as the registry announces it; empty: none
	State        health.Status `json:"state"`          // healthy, degraded, unhealthy, unknown or drained
	RTTMs        float64       `json:"rttMs"`
	LastProbe    string        `json:"lastProbe"`
	Reached      bool          `json:"reached"` // the last probe got an answer from the stamp
	ProbedAt     time.Time     `json:"probedAt"`
	Ejected      bool          `json:"ejected"`
	EjectedUntil time.Time     `json:"ejectedUntil,omitzero"`
	// Weight is the stamp's effective share among equally near stamps:
	// DefaultWeight without a traffic table for its region, its release's
	// percent scaled by its instances under one (see Weights), and 0 on
	// standby.
	Weight int `json:"weight"`
	// Requests is how many requests this POP sent the stamp (answered or
	// failed) since the stamp joined: over a window, the stamps' shares of
	// a region's traffic.
	Requests uint64 `json:"requests"`
	Standby  bool   `json:"standby"` // its release takes no traffic in its region: it takes no user request
	Routing  string `json:"routing"` // why it is or is not taking this POP's traffic
}

// POPStatus is one POP's routing table and its reasons.
type POPStatus struct {
	Region   string   `json:"region"`
	Near     []string `json:"near"`     // where this POP's clients go now
	Fallback []string `json:"fallback"` // where a retry goes, nearest first
	FailOpen bool     `json:"failOpen"`
	Changes  int      `json:"changes"` // how often the near set changed since the POP opened
	// Split is the traffic table the POP applies now: region → release →
	// percent. A region not in it routes with default weights; empty (not
	// null) when no release is under way.
	Split  map[string]map[string]int `json:"split"`
	Stamps []StampStatus             `json:"stamps"`
}

// StatusSubject prefixes the NATS subject on which a POP's status is
// published for the operations plane: StatusSubject + "." + its region,
// a JSON POPStatus, every PublishInterval.
const StatusSubject = "contoso.ops.pop"

// PublishInterval is how often a POP publishes its status. A POP not
// heard for three intervals is taken for gone, so a dead POP leaves the
// operations plane's view within 1.5 s.
const PublishInterval = 500 * time.Millisecond

// Status explains every POP's decisions.
func (e *Edge) Status() []POPStatus {
	e.mu.Lock()
	e.expireLocked(e.cfg.Now())
	regions := make(map[string]string, len(e.stamps))
	for id, s := range e.stamps {
		regions[id] = s.Region
	}
	split := e.weights.clone()
	e.mu.Unlock()
	now := time.Now()
	var out []POPStatus
	for _, p := range e.popList() {
		p.mu.Lock()
		ps := POPStatus{Region: p.region, Near: p.dec.Near, Fallback: p.dec.Fallback, FailOpen: p.dec.FailOpen, Changes: p.changes,
			Split: map[string]map[string]int{}, Stamps: []StampStatus{}}
		for region, rel := range split {
			ps.Split[region] = maps.Clone(rel)
		}
		for id, st := range p.state {
			ps.Stamps = append(ps.Stamps, StampStatus{
				ID: id, Region: regions[id], Zone: st.zone, Release: st.release, State: st.routedHealth(), RTTMs: float64(st.rtt.Microseconds()) / 1000,
				LastProbe: st.verdict, Reached: st.answered, ProbedAt: st.probedAt, Ejected: now.Before(st.ejectedTill),
				EjectedUntil: st.ejectedTill, Weight: st.share.effective(), Requests: st.sent, Standby: st.share.standby, Routing: p.dec.Reasons[id],
			})
		}
		p.mu.Unlock()
		sort.Slice(ps.Stamps, func(i, j int) bool { return ps.Stamps[i].ID < ps.Stamps[j].ID })
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Region < out[j].Region })
	return out
}

// Heartbeats maps every stamp in the registry to its region and to when
// the registry last announced it (each heartbeat does), on Config.Now. An
// expired stamp (Config.RegistryTTL) is not in it.
func (e *Edge) Heartbeats() map[string]StampSeen {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireLocked(e.cfg.Now())
	out := make(map[string]StampSeen, len(e.stamps))
	for id, s := range e.stamps {
		out[id] = StampSeen{Region: s.Region, At: e.seen[id]}
	}
	return out
}

// StampSeen is a stamp's last heartbeat as the edge saw it.
type StampSeen struct {
	Region string
	At     time.Time
}

// Redirects maps the region of every removed POP to the POPs its clients
// use instead, nearest first.
func (e *Edge) Redirects() map[string][]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.redirects)
}

// StatusHandler serves GET /ops/edge.
func (e *Edge) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"pops": e.Status(), "redirects": e.Redirects()})
	})
}

// Routes maps every POP of status to the regions it sends its clients to
// now (the regions of its near stamps, nearest first, each once).
func Routes(status []POPStatus) map[string][]string {
	out := make(map[string][]string, len(status))
	for _, p := range status {
		regionOf := make(map[string]string, len(p.Stamps))
		for _, st := range p.Stamps {
			regionOf[st.ID] = st.Region
		}
		routes := []string{}
		for _, id := range p.Near {
			if r := regionOf[id]; r != "" && !slices.Contains(routes, r) {
				routes = append(routes, r)
			}
		}
		out[p.Region] = routes
	}
	return out
}
