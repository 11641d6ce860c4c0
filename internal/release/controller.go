package release

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/contoso/shoes/internal/health"
	"github.com/contoso/shoes/internal/shop"
)

// Records is where releases are kept and the traffic table is written:
// the replicated store in a deployment.
type Records interface {
	// Load returns a key's value and revision; nil and 0 when absent.
	Load(ctx context.Context, key string) (data []byte, rev uint64, err error)
	// Save writes a key if its revision is still rev (0: if it does not
	// exist yet) and returns the new revision.
	Save(ctx context.Context, key string, data []byte, rev uint64) (uint64, error)
	// Keys lists every key.
	Keys(ctx context.Context) ([]string, error)
	// SetTraffic writes the traffic table every POP follows: region →
	// version → percent, for release; nil split clears it (every stamp
	// takes its default weight again).
	SetTraffic(ctx context.Context, release string, split map[string]map[string]int) error
}

// Observer is what the operations plane sees of the deployment.
type Observer interface {
	// Instances lists every stamp instance the registry announces, with
	// its last health report.
	Instances() []Instance
	// Flows reads what version's stamps in region served since then, by
	// flow.
	Flows(region, version string, since time.Time) map[string]FlowReading
}

// Keys of the records.
const (
	keyCurrent = "current" // {"id": ...} of the release under way; absent when none
	keyPrefix  = "r."      // r.<id>: one release's record
)

// Env names the environment a controller releases to.
const (
	EnvDev  = "dev"
	EnvProd = "prod"
)

// DefaultSteps are the traffic steps of a release without its own.
var DefaultSteps = []int{10, 50, 100}

// Config configures a Controller.
type Config struct {
	Records  Records  // required
	Observer Observer // required
	// Env is the environment: EnvDev (zero) or EnvProd. In prod a release
	// runs an artifact by digest that passed verification in Dev/Test
	// (Verified), unless forced, and never an injected fault.
	Env string
	// Regions lists the deployment's regions in their declared order: a
	// plan's default region order. Required.
	Regions func() []string
	// Resolve reads the version of an artifact (REF@sha256:...); nil: this
	// deployment runs stamps in process and refuses images.
	Resolve func(ctx context.Context, image string) (version string, err error)
	// Verified says whether an artifact passed verification in Dev/Test:
	// nil error when it did, otherwise why not. Nil: nothing is verified,
	// so prod refuses every release that is not forced.
	Verified func(ctx context.Context, image string) error
	// Steps and Gate are the defaults of a release that names none.
	Steps []int
	Gate  Gate
	// StartTimeout bounds the wait for the new stamps to be ready; zero:
	// 90 s. DrainTimeout bounds the wait for drained stamps to leave the
	// registry; zero: 60 s.
	StartTimeout time.Duration
	DrainTimeout time.Duration
	// Tick is how often the controller looks; zero: 250 ms.
	Tick   time.Duration
	Now    func() time.Time // zero: time.Now
	Logger *slog.Logger     // nil: discard
}

// Controller runs releases. Its methods are safe for concurrent use; Run
// drives the release under way.
type Controller struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex // guards the fields below
	cur   *Record    // the release under way or the last one; nil: none yet
	rev   uint64     // cur's revision in Records
	dirty bool       // cur changed since it was saved
	// baseline is the old version's last reading with enough requests,
	// by flow: what a step is compared with once the old version serves
	// nothing more in its region.
	baseline map[string]FlowReading
	loaded   bool
	// unhealthySince is, per region and version, since when its stamps
	// have read unhealthy without a break: a health state counts for the
	// gate only once it has lasted UnhealthyFor, so one bad probe under a
	// burst of load does not roll a release back (or pause it).
	unhealthySince map[[2]string]time.Time
	// unsure is the record of the last save that failed without a
	// conflict: it may have landed all the same.
	unsure []byte
	// failHeld is since when the current step's failing verdict has been
	// held back because stamps of the release's regions stopped answering.
	failHeld struct {
		step  stepKey
		since time.Time
	}
}

// stepKey names one hold of one step: a resumed step is a new hold.
type stepKey struct {
	release string
	stage   int
	started time.Time
}

// OutageGrace is how long a failing verdict waits while stamps of the
// release's regions do not answer their health reads. A region killed
// while a step is held makes requests fail on both versions for a few
// seconds before the region reads as lost (its last report ages for
// five seconds): the gate would blame the release for the outage. Within
// the grace the region is found lost and the release pauses instead; a
// stamp that answers again, or stays silent past the grace while its
// region still runs, lets the verdict stand.
const OutageGrace = 10 * time.Second

// NewController validates cfg.
func NewController(cfg Config) (*Controller, error) {
	if cfg.Records == nil || cfg.Observer == nil || cfg.Regions == nil {
		return nil, errors.New("release controller: records, observer and regions are required")
	}
	if cfg.Env == "" {
		cfg.Env = EnvDev
	}
	if cfg.Env != EnvDev && cfg.Env != EnvProd {
		return nil, fmt.Errorf("release controller: env %q: want dev or prod", cfg.Env)
	}
	if len(cfg.Steps) == 0 {
		cfg.Steps = DefaultSteps
	}
	cfg.Gate = cfg.Gate.WithDefaults()
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 90 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 60 * time.Second
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 250 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Controller{cfg: cfg, log: cfg.Logger.With("component", "release")}, nil
}

// Env is the environment the controller releases to.
func (c *Controller) Env() string { return c.cfg.Env }

// Request asks for a release.
type Request struct {
	// Version is the release the new stamps announce (in process); Image
	// is an artifact by digest (its version label names the release).
	// Exactly one.
	Version string `json:"version,omitempty"`
	Image   string `json:"image,omitempty"`
	// Steps are the traffic percents of each region, rising to 100; nil:
	// the controller's (10, 50, 100).
	Steps []int `json:"steps,omitempty"`
	// Regions is the order regions take each step in; nil: every region
	// in its declared order. It must name every region.
	Regions []string `json:"regions,omitempty"`
	// Gate overrides the controller's gate field by field (zero fields
	// keep it).
	Gate Gate `json:"gate,omitzero"`
	// Fault is an injected defect the new stamps carry, to prove the gate
	// (stamp.ParseFault's syntax). Refused in prod.
	Fault string `json:"fault,omitempty"`
	// StartTimeout bounds the wait for this release's new stamps to be
	// ready, 1 s to 10 min; zero: the controller's (90 s).
	StartTimeout time.Duration `json:"startTimeout,omitempty"`
	// Force starts a prod release whose artifact did not pass
	// verification.
	Force bool   `json:"force,omitempty"`
	By    string `json:"by,omitempty"`
}

var versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)
var imageRE = regexp.MustCompile(`^[^\s@]{1,255}@sha256:[0-9a-f]{64}$`)

// Start begins a release. It refuses (shop.KindConflict) while another is
// under way, (shop.KindForbidden) in prod what did not pass verification
// unless forced and any fault, and (shop.KindInvalid) a malformed request.
func (c *Controller) Start(ctx context.Context, req Request) (*Record, error) {
	if err := c.load(ctx); err != nil {
		return nil, err
	}
	if (req.Version == "") == (req.Image == "") {
		return nil, shop.Invalid("version", "give exactly one of version and image")
	}
	if req.Version != "" && !versionRE.MatchString(req.Version) {
		return nil, shop.Invalid("version", "a version is 1 to 64 letters, digits and . _ + -, starting with a letter or digit")
	}
	if req.Image != "" && !imageRE.MatchString(req.Image) {
		return nil, shop.Invalid("image", "an image is referenced by digest: REPOSITORY@sha256:<64 hex digits>")
	}
	if len(req.By) > 128 || len(req.Fault) > 256 {
		return nil, shop.Invalid("", "by is at most 128 bytes and fault at most 256")
	}
	if req.StartTimeout != 0 && (req.StartTimeout < time.Second || req.StartTimeout > 10*time.Minute) {
		return nil, shop.Invalid("startTimeout", "the start timeout is 1 s to 10 min (in nanoseconds), or zero for the deployment's")
	}
	if c.cfg.Env == EnvProd {
		if req.Fault != "" {
			return nil, &shop.Error{Kind: shop.KindForbidden, Field: "fault", Detail: "injected faults are refused in the prod environment"}
		}
		if !req.Force {
			if req.Image == "" {
				return nil, &shop.Error{Kind: shop.KindForbidden, Field: "image", Detail: "prod runs artifacts by digest that passed verification in dev; give image REPOSITORY@sha256:..., or force"}
			}
			why := errors.New("this deployment cannot check verifications")
			if c.cfg.Verified != nil {
				why = c.cfg.Verified(ctx, req.Image)
			}
			if why != nil {
				return nil, &shop.Error{Kind: shop.KindForbidden, Field: "image", Detail: fmt.Sprintf("%s did not pass verification in dev: %v (force to release it anyway)", req.Image, why)}
			}
		}
	}
	version := req.Version
	if req.Image != "" {
		if c.cfg.Resolve == nil {
			return nil, shop.Invalid("image", "this deployment runs its stamps in process; release a version, or run the deployment's parts as processes to release an image")
		}
		v, err := c.cfg.Resolve(ctx, req.Image)
		if err != nil {
			return nil, &shop.Error{Kind: shop.KindInvalid, Field: "image", Detail: "the image cannot be read: " + err.Error(), Err: err}
		}
		version = v
	}
	steps := req.Steps
	if steps == nil {
		steps = c.cfg.Steps
	}
	regions := req.Regions
	declared := c.cfg.Regions()
	if regions == nil {
		regions = declared
	} else if !sameSet(regions, declared) {
		return nil, shop.Invalid("regions", "the order must name every region once: %s", strings.Join(declared, ", "))
	}
	plan, err := BuildPlan(regions, steps)
	if err != nil {
		return nil, shop.Invalid("steps", "%v", err)
	}
	gate := mergeGate(c.cfg.Gate, req.Gate)

	// What runs now: one version per region, none of them the new one.
	from := map[string]string{}
	count := map[string]int{}
	for _, in := range c.cfg.Observer.Instances() {
		if prev, ok := from[in.Region]; ok && prev != in.Release {
			return nil, &shop.Error{Kind: shop.KindConflict, Detail: fmt.Sprintf("region %s runs two versions (%s and %s); finish or roll back first", in.Region, prev, in.Release)}
		}
		from[in.Region] = in.Release
		count[in.Region]++
	}
	for _, r := range regions {
		switch from[r] {
		case "":
			return nil, &shop.Error{Kind: shop.KindConflict, Detail: "region " + r + " has no running stamp to release next to"}
		case version:
			return nil, &shop.Error{Kind: shop.KindConflict, Detail: "region " + r + " already runs " + version}
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && !c.cur.Phase.Final() {
		return nil, &shop.Error{Kind: shop.KindConflict, Detail: fmt.Sprintf("release %s is under way (%s); pause, promote or roll it back first", c.cur.ID, c.cur.Phase)}
	}
	now := c.cfg.Now().UTC()
	rec := &Record{
		Schema: Schema, ID: releaseID(now, version), Version: version, Image: req.Image, Env: c.cfg.Env,
		From: from, Fault: req.Fault, StartTimeout: req.StartTimeout, Forced: req.Force && c.cfg.Env == EnvProd, Plan: plan, Gate: gate, Stage: -1,
		Phase: PhaseStarting, By: req.By, Steps: []Step{}, StartedAt: now, UpdatedAt: now,
		Desired: map[string]map[string]int{}, Traffic: map[string]map[string]int{},
	}
	for _, r := range regions {
		rec.Desired[r] = map[string]int{from[r]: count[r], version: count[r]}
		rec.Traffic[r] = map[string]int{from[r]: 100, version: 0}
	}
	// The table goes out before the new stamps exist, so no POP ever
	// gives one a default weight.
	if err := c.cfg.Records.SetTraffic(ctx, rec.ID, rec.Traffic); err != nil {
		return nil, fmt.Errorf("start release: %w", err)
	}
	data, _ := json.Marshal(rec)
	rev, err := c.cfg.Records.Save(ctx, keyPrefix+rec.ID, data, 0)
	if err != nil {
		return nil, fmt.Errorf("start release: %w", err)
	}
	cur, _ := json.Marshal(map[string]string{"id": rec.ID})
	_, curRev, err := c.cfg.Records.Load(ctx, keyCurrent)
	if err != nil {
		return nil, fmt.Errorf("start release: %w", err)
	}
	if _, err := c.cfg.Records.Save(ctx, keyCurrent, cur, curRev); err != nil {
		return nil, fmt.Errorf("start release: %w", err)
	}
	c.cur, c.rev, c.baseline, c.unhealthySince = rec, rev, nil, nil
	c.log.Info("release started", "release", rec.ID, "version", version, "image", req.Image, "from", from, "plan", len(plan), "by", req.By, "fault", req.Fault)
	return rec.clone(), nil
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y) && len(slices.Compact(x)) == len(a)
}

func mergeGate(base, over Gate) Gate {
	if over.MinHold > 0 {
		base.MinHold = over.MinHold
	}
	if over.MinRequests > 0 {
		base.MinRequests = over.MinRequests
	}
	if over.MinFlowRequests > 0 {
		base.MinFlowRequests = over.MinFlowRequests
	}
	if over.ErrorTolerance > 0 {
		base.ErrorTolerance = over.ErrorTolerance
	}
	if over.Confidence > 0 && over.Confidence < 1 {
		base.Confidence = over.Confidence
	}
	if over.LatencyFactor > 0 {
		base.LatencyFactor = over.LatencyFactor
	}
	if over.LatencySlack > 0 {
		base.LatencySlack = over.LatencySlack
	}
	return base.WithDefaults()
}

var idUnsafe = regexp.MustCompile(`[^A-Za-z0-9_-]`)

func releaseID(now time.Time, version string) string {
	return now.Format("20060102T150405Z") + "-" + idUnsafe.ReplaceAllString(version, "_")
}

// Current returns the release under way or the last one; nil when there
// has been none.
func (c *Controller) Current(ctx context.Context) (*Record, error) {
	if err := c.load(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return nil, nil
	}
	return c.cur.clone(), nil
}

// List returns every recorded release, newest first.
func (c *Controller) List(ctx context.Context) ([]*Record, error) {
	keys, err := c.cfg.Records.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	var out []*Record
	for _, k := range keys {
		if !strings.HasPrefix(k, keyPrefix) {
			continue
		}
		data, _, err := c.cfg.Records.Load(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("list releases: %w", err)
		}
		if data == nil {
			continue
		}
		r, err := decodeRecord(data)
		if err != nil {
			return nil, fmt.Errorf("list releases: %s: %w", k, err)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Record) int { return b.StartedAt.Compare(a.StartedAt) })
	return out, nil
}

// Get returns one recorded release.
func (c *Controller) Get(ctx context.Context, id string) (*Record, error) {
	if !idRE.MatchString(id) {
		return nil, shop.Invalid("id", "not a release id")
	}
	data, _, err := c.cfg.Records.Load(ctx, keyPrefix+id)
	if err != nil {
		return nil, fmt.Errorf("get release %s: %w", id, err)
	}
	if data == nil {
		return nil, shop.NotFound("release", id)
	}
	return decodeRecord(data)
}

var idRE = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9_-]{1,64}$`)

// Action is what an operator asks of the release under way.
type Action string

const (
	ActionPause    Action = "pause"    // hold the current step; traffic stays as it is
	ActionResume   Action = "resume"   // go on judging (the step's hold starts again)
	ActionPromote  Action = "promote"  // end the current step now, as if its gate passed
	ActionRollback Action = "rollback" // all traffic back to the old stamps; new ones drained
)

// Do applies an operator's action to the release under way.
func (c *Controller) Do(ctx context.Context, a Action, by string) (*Record, error) {
	switch a {
	case ActionPause, ActionResume, ActionPromote, ActionRollback:
	default:
		return nil, shop.Invalid("action", "want pause, resume, promote or rollback")
	}
	if len(by) > 128 {
		return nil, shop.Invalid("by", "at most 128 bytes")
	}
	if err := c.load(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.cur
	if r == nil || r.Phase.Final() {
		return nil, &shop.Error{Kind: shop.KindConflict, Detail: "no release is under way"}
	}
	before := r.clone()
	now := c.cfg.Now().UTC()
	switch a {
	case ActionPause:
		if r.Phase != PhaseStarting && r.Phase != PhaseShifting {
			return nil, &shop.Error{Kind: shop.KindConflict, Detail: "a release " + string(r.Phase) + " cannot be paused"}
		}
		pause(r, "", "paused by "+orSomeone(by))
	case ActionResume:
		if !r.Paused {
			return nil, &shop.Error{Kind: shop.KindConflict, Detail: "the release is not paused"}
		}
		if lost := unheardRegionsIn(r, c.cfg.Observer.Instances()); len(lost) > 0 {
			return nil, &shop.Error{Kind: shop.KindConflict, Detail: "cannot resume: no stamp of " + strings.Join(lost, ", ") + " is running; bring the region back first"}
		}
		resume(r, now)
	case ActionPromote:
		if r.Phase != PhaseShifting {
			return nil, &shop.Error{Kind: shop.KindConflict, Detail: "only a release that is shifting traffic can be promoted"}
		}
		c.endStep(r, now, "promoted", "promoted by "+orSomeone(by))
		resume(r, now) // a promoted pause ends too; the ended step keeps its times
		if err := c.advance(ctx, r, now); err != nil {
			return nil, err
		}
	case ActionRollback:
		if r.Phase != PhaseStarting && r.Phase != PhaseShifting {
			// Finishing: the old stamps are already draining, and
			// sending traffic back to them would empty the regions.
			return nil, &shop.Error{Kind: shop.KindConflict, Detail: "a release " + string(r.Phase) + " cannot be rolled back"}
		}
		if err := c.rollback(ctx, r, now, "rolled back by "+orSomeone(by)); err != nil {
			return nil, err
		}
	}
	r.UpdatedAt = now
	c.dirty = true
	if err := c.save(ctx); err != nil {
		if a == ActionPause || a == ActionResume {
			// Not done, as the error says: the release keeps its state
			// (promote and roll back moved traffic already, and stand).
			c.cur = before
		}
		return nil, err
	}
	c.log.Info("release action", "release", r.ID, "action", a, "by", by, "phase", r.Phase)
	return r.clone(), nil
}

func orSomeone(by string) string {
	if by == "" {
		return "an operator"
	}
	return by
}

// load reads the release under way from Records once.
func (c *Controller) load(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded {
		return nil
	}
	data, _, err := c.cfg.Records.Load(ctx, keyCurrent)
	if err != nil {
		return fmt.Errorf("load releases: %w", err)
	}
	if data != nil {
		var cur struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(data, &cur); err != nil {
			return fmt.Errorf("load releases: current: %w", err)
		}
		rdata, rev, err := c.cfg.Records.Load(ctx, keyPrefix+cur.ID)
		if err != nil {
			return fmt.Errorf("load releases: %w", err)
		}
		if rdata != nil {
			r, err := decodeRecord(rdata)
			if err != nil {
				return fmt.Errorf("load releases: %w", err)
			}
			c.cur, c.rev = r, rev
			if st := r.current(); st != nil && st.EndedAt.IsZero() {
				st.StartedAt = c.cfg.Now().UTC() // a new controller judges afresh
			}
		}
	}
	c.loaded = true
	return nil
}

// save writes cur if it changed; c.mu is held.
func (c *Controller) save(ctx context.Context) error {
	if !c.dirty || c.cur == nil {
		return nil
	}
	key := keyPrefix + c.cur.ID
	data, _ := json.Marshal(c.cur)
	rev, err := c.cfg.Records.Save(ctx, key, data, c.rev)
	if shop.KindOf(err) == shop.KindConflict && c.unsure != nil {
		// The last save that failed may have landed all the same (its
		// answer lost in an outage): then the stored record is that one,
		// and this save follows it.
		if stored, srev, lerr := c.cfg.Records.Load(ctx, key); lerr == nil && bytes.Equal(stored, c.unsure) {
			c.rev = srev
			rev, err = c.cfg.Records.Save(ctx, key, data, c.rev)
		}
	}
	switch {
	case err == nil:
		c.rev, c.dirty, c.unsure = rev, false, nil
		return nil
	case shop.KindOf(err) != shop.KindConflict:
		c.unsure = data
	}
	return fmt.Errorf("save release %s: %w", c.cur.ID, err)
}

// Run drives the release under way until ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Tick)
	defer t.Stop()
	for {
		if err := c.load(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("release controller: load", "error", err)
		} else if err := c.step(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("release controller", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// step looks once and moves the release under way on.
func (c *Controller) step(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.cur
	if r == nil || r.Phase.Final() {
		return nil
	}
	now := c.cfg.Now().UTC()
	before := r.UpdatedAt
	if err := c.drive(ctx, r, now); err != nil {
		return err
	}
	if r.UpdatedAt != before {
		c.dirty = true
	}
	return c.save(ctx)
}

// drive is one look at r; c.mu is held. Whatever changes r sets
// r.UpdatedAt.
func (c *Controller) drive(ctx context.Context, r *Record, now time.Time) error {
	insts := c.cfg.Observer.Instances()
	switch r.Phase {
	case PhaseStarting, PhaseShifting:
		if lost := lostRegionsIn(r, insts, now); len(lost) > 0 {
			if !r.Paused || !strings.HasPrefix(r.Reason, "region lost") {
				pause(r, "", "region lost: no stamp of "+strings.Join(lost, ", ")+" is running; resume once it is back")
				r.UpdatedAt = now
				c.log.Warn("release paused", "release", r.ID, "reason", r.Reason)
			}
			return nil
		}
		if r.Paused && !c.outageOver(r, insts, now) {
			return nil
		}
	}
	switch r.Phase {
	case PhaseStarting:
		return c.starting(ctx, r, insts, now)
	case PhaseShifting:
		return c.shifting(ctx, r, insts, now)
	case PhaseFinishing:
		return c.draining(ctx, r, insts, now, r.From, PhaseDone)
	case PhaseRollingBack:
		return c.draining(ctx, r, insts, now, map[string]string{"": r.Version}, PhaseRolledBack)
	}
	return nil
}

// starting waits for every new instance to be ready.
func (c *Controller) starting(ctx context.Context, r *Record, insts []Instance, now time.Time) error {
	var waiting []string
	for region, want := range r.Desired {
		ready := 0
		var why []string
		for _, in := range insts {
			if in.Region != region || in.Release != r.Version {
				continue
			}
			if in.Health.Routable() {
				ready++
			} else if in.Reason != "" {
				why = append(why, in.ID+": "+in.Reason)
			}
		}
		if ready < want[r.Version] {
			w := fmt.Sprintf("%s %d/%d ready", region, ready, want[r.Version])
			if len(why) > 0 {
				w += " (" + strings.Join(why, "; ") + ")"
			}
			waiting = append(waiting, w)
		}
	}
	if len(waiting) == 0 {
		r.ReadyAt, r.Phase, r.Reason, r.UpdatedAt = now, PhaseShifting, "", now
		c.log.Info("release: new stamps ready and prewarmed", "release", r.ID, "took", now.Sub(r.StartedAt))
		return c.advance(ctx, r, now)
	}
	slices.Sort(waiting)
	if limit := cmp.Or(r.StartTimeout, c.cfg.StartTimeout); now.Sub(r.StartedAt) > limit {
		return c.fail(ctx, r, now, fmt.Sprintf("new stamps not ready after %s: %s", limit, strings.Join(waiting, ", ")))
	}
	if reason := "waiting for new stamps: " + strings.Join(waiting, ", "); reason != r.Reason {
		r.Reason, r.UpdatedAt = reason, now
	}
	return nil
}

// shifting judges the current step.
func (c *Controller) shifting(ctx context.Context, r *Record, insts []Instance, now time.Time) error {
	st := r.current()
	if st == nil || !st.EndedAt.IsZero() {
		return c.advance(ctx, r, now)
	}
	cur := c.reading(st.Region, r.Version, st.StartedAt, insts)
	old := c.reading(st.Region, r.From[st.Region], st.StartedAt, insts)
	if old.Requests() < float64(r.Gate.MinRequests) {
		// The old version serves too little here to compare with (its
		// share is small or gone): compare with what it served across
		// every region, else with its last good reading.
		all := Reading{Health: old.Health, Instances: old.Instances, Flows: map[string]FlowReading{}}
		for region := range r.Desired {
			for name, f := range c.cfg.Observer.Flows(region, r.From[region], st.StartedAt) {
				a := all.Flows[name]
				a.P99 = max(a.P99, f.P99)
				a.Requests += f.Requests
				a.Errors += f.Errors
				all.Flows[name] = a
			}
		}
		if all.Requests() >= float64(r.Gate.MinRequests) {
			old = all
		} else if c.baseline != nil {
			old.Flows = c.baseline
		}
	}
	if old.Requests() >= float64(r.Gate.MinRequests) {
		c.baseline = old.Flows
	}
	cur.Health = c.lasting(st.Region, r.Version, cur.Health, now)
	old.Health = c.lasting(st.Region, r.From[st.Region], old.Health, now)
	st.New, st.Old = cur, old
	if st.EnoughAt.IsZero() && cur.Requests() >= float64(r.Gate.MinRequests) {
		st.EnoughAt = now
	}
	for _, f := range cur.Flows {
		if f.Errors > 0 && r.FirstBadAt.IsZero() {
			r.FirstBadAt = now
		}
	}
	if old.Health.AtLeast(health.Unhealthy) && cur.Health.AtLeast(health.Unhealthy) {
		pause(r, st.Region, "region "+st.Region+" unhealthy on both versions: an outage, not the release; it resumes once the region is healthy again")
		r.UpdatedAt = now
		c.log.Warn("release paused", "release", r.ID, "reason", r.Reason)
		return nil
	}
	v, why := Judge(r.Gate, cur, old, now.Sub(st.StartedAt))
	st.Verdict, st.Reason = v.String(), why
	r.UpdatedAt = now
	switch v {
	case Pass:
		c.endStep(r, now, v.String(), why)
		c.log.Info("release step passed", "release", r.ID, "region", st.Region, "percent", st.Percent, "reason", why)
		return c.advance(ctx, r, now)
	case Fail:
		if silent := silentIn(r, insts); len(silent) > 0 {
			k := stepKey{r.ID, r.Stage, st.StartedAt}
			if c.failHeld.step != k {
				c.failHeld.step, c.failHeld.since = k, now
			}
			if now.Sub(c.failHeld.since) < OutageGrace {
				st.Verdict = Hold.String()
				st.Reason = "would fail (" + why + "), but " + strings.Join(silent, ", ") + " do not answer: telling an outage from a bad release"
				return nil
			}
		}
		// The step ends once the rollback is written: a step ended
		// before would be taken for passed at the next look.
		if err := c.rollback(ctx, r, now, fmt.Sprintf("gate failed at %s %d %%: %s", st.Region, st.Percent, why)); err != nil {
			return err
		}
		st.EndedAt = now
		c.log.Warn("release gate failed", "release", r.ID, "region", st.Region, "percent", st.Percent, "reason", why)
		return nil
	}
	return nil
}

// pause pauses r for reason. outage is the region of a pause for an
// outage (Record.Outage), which ends by itself (outageOver); empty, the
// pause is an operator's to end.
func pause(r *Record, outage, reason string) {
	r.Paused, r.Outage, r.Reason = true, outage, reason
}

// resume ends r's pause: the step under way holds again from now, so what
// was read before the pause is not judged.
func resume(r *Record, now time.Time) {
	r.Paused, r.Outage, r.Reason = false, "", ""
	if st := r.current(); st != nil && st.EndedAt.IsZero() {
		st.StartedAt = now
	}
}

// outageOver ends a pause for an outage (Record.Outage) once both
// versions' stamps in that region read routable again, and reports
// whether it did. A release paused for an outage on both versions
// (a starved machine, a store that lost its quorum for a while) would
// otherwise wait for an operator with nothing to decide: the release is
// not to blame, and the hold starts again. Every other pause is an
// operator's to end. c.mu is held.
func (c *Controller) outageOver(r *Record, insts []Instance, now time.Time) bool {
	region := r.Outage
	if !r.Paused || region == "" || r.Phase != PhaseShifting {
		return false
	}
	for _, version := range []string{r.Version, r.From[region]} {
		if h, _ := healthIn(region, version, insts); !h.Routable() {
			return false
		}
	}
	for _, version := range []string{r.Version, r.From[region]} {
		delete(c.unhealthySince, [2]string{region, version})
	}
	c.log.Info("release resumed: the outage is over", "release", r.ID, "region", region, "was", r.Reason)
	resume(r, now)
	r.UpdatedAt = now
	return true
}

// UnhealthyFor is how long a version's stamps must read unhealthy before
// the gate counts it.
const UnhealthyFor = 3 * time.Second

// lasting is h, except that unhealthy counts only once it has lasted
// UnhealthyFor; until then it reads degraded. c.mu is held.
func (c *Controller) lasting(region, version string, h health.Status, now time.Time) health.Status {
	if c.unhealthySince == nil {
		c.unhealthySince = map[[2]string]time.Time{}
	}
	k := [2]string{region, version}
	if !h.AtLeast(health.Unhealthy) {
		delete(c.unhealthySince, k)
		return h
	}
	since, ok := c.unhealthySince[k]
	if !ok {
		c.unhealthySince[k], since = now, now
	}
	if now.Sub(since) < UnhealthyFor {
		return health.Degraded
	}
	return h
}

func (c *Controller) reading(region, version string, since time.Time, insts []Instance) Reading {
	rd := Reading{Flows: c.cfg.Observer.Flows(region, version, since)}
	rd.Health, rd.Instances = healthIn(region, version, insts)
	if rd.Flows == nil {
		rd.Flows = map[string]FlowReading{}
	}
	return rd
}

// healthIn is the worst health of version's stamps in region among
// insts (Unknown: none), and how many there are.
func healthIn(region, version string, insts []Instance) (h health.Status, n int) {
	h = health.Unknown
	for _, in := range insts {
		if in.Region == region && in.Release == version {
			n++
			if h == health.Unknown || in.Health.AtLeast(h) {
				h = in.Health
			}
		}
	}
	return h, n
}

func (c *Controller) endStep(r *Record, now time.Time, verdict, why string) {
	if st := r.current(); st != nil && st.EndedAt.IsZero() {
		st.EndedAt, st.Verdict, st.Reason = now, verdict, why
	}
}

// advance starts the next stage, or finishes after the last.
func (c *Controller) advance(ctx context.Context, r *Record, now time.Time) error {
	r.UpdatedAt = now
	if r.Stage+1 >= len(r.Plan) {
		r.Phase, r.Reason = PhaseFinishing, "every step passed; draining the old stamps"
		for region := range r.Desired {
			r.Desired[region][r.From[region]] = 0
		}
		return nil
	}
	s := r.Plan[r.Stage+1]
	// The record takes the new split once the table has it: a write that
	// failed is made again at the next look.
	traffic := splitOrEmpty(r.Traffic)
	traffic[s.Region] = map[string]int{r.From[s.Region]: 100 - s.Percent, r.Version: s.Percent}
	if err := c.cfg.Records.SetTraffic(ctx, r.ID, traffic); err != nil {
		return fmt.Errorf("release %s: shift %s to %d %%: %w", r.ID, s.Region, s.Percent, err)
	}
	r.Stage++
	r.Traffic = traffic
	r.Steps = append(r.Steps, Step{Stage: s, StartedAt: now, Verdict: Hold.String()})
	c.log.Info("release step", "release", r.ID, "region", s.Region, "percent", s.Percent)
	return nil
}

// splitOrEmpty is a copy of m to change, an empty split for nil.
func splitOrEmpty(m map[string]map[string]int) map[string]map[string]int {
	if m == nil {
		return map[string]map[string]int{}
	}
	return cloneSplit(m)
}

// rollback puts every region back on the old version at once and drains
// the new stamps.
func (c *Controller) rollback(ctx context.Context, r *Record, now time.Time, why string) error {
	traffic := splitOrEmpty(r.Traffic)
	for region := range r.Desired {
		traffic[region] = map[string]int{r.From[region]: 100, r.Version: 0}
	}
	if err := c.cfg.Records.SetTraffic(ctx, r.ID, traffic); err != nil {
		return fmt.Errorf("release %s: roll back: %w", r.ID, err)
	}
	r.Traffic = traffic
	for region := range r.Desired {
		r.Desired[region][r.Version] = 0
	}
	r.Phase, r.Paused, r.Outage, r.Reason, r.RollbackAt, r.UpdatedAt = PhaseRollingBack, false, "", why, now, now
	c.log.Warn("release rolling back", "release", r.ID, "reason", why)
	return nil
}

// fail ends a release whose new stamps never took traffic.
func (c *Controller) fail(ctx context.Context, r *Record, now time.Time, why string) error {
	if err := c.rollback(ctx, r, now, why); err != nil {
		return err
	}
	r.Reason = "failed: " + why
	return nil
}

// draining waits until no instance of the drained versions is announced,
// then clears the traffic table and ends the release in final.
func (c *Controller) draining(ctx context.Context, r *Record, insts []Instance, now time.Time, gone map[string]string, final Phase) error {
	drained := map[string]bool{}
	for _, v := range gone {
		drained[v] = true
	}
	var left []string
	for _, in := range insts {
		if drained[in.Release] && (gone[""] != "" || gone[in.Region] == in.Release) {
			left = append(left, in.ID)
		}
	}
	since := r.UpdatedAt
	if final == PhaseRolledBack {
		since = r.RollbackAt
	}
	if len(left) > 0 && now.Sub(since) < c.cfg.DrainTimeout {
		return nil
	}
	if len(left) == 0 {
		if err := c.cfg.Records.SetTraffic(ctx, r.ID, nil); err != nil {
			return fmt.Errorf("release %s: clear traffic: %w", r.ID, err)
		}
		r.Traffic = nil
	} else {
		// Stamps of the retired version still announce themselves: the
		// table keeps them at 0 % (so no user request reaches them) while
		// the agents go on stopping them.
		kept := r.Version
		if final == PhaseRolledBack {
			kept = ""
		}
		for region := range r.Desired {
			v := kept
			if v == "" {
				v = r.From[region]
			}
			r.Traffic[region] = map[string]int{v: 100}
		}
		if err := c.cfg.Records.SetTraffic(ctx, r.ID, r.Traffic); err != nil {
			return fmt.Errorf("release %s: keep the retired stamps out: %w", r.ID, err)
		}
	}
	if final == PhaseRolledBack && r.ReadyAt.IsZero() {
		final = PhaseFailed
	}
	r.Phase, r.EndedAt, r.UpdatedAt = final, now, now
	if len(left) > 0 {
		r.Reason = strings.TrimSpace(r.Reason + fmt.Sprintf("; %s still announced after %s", strings.Join(left, ", "), c.cfg.DrainTimeout))
	}
	if final == PhaseDone {
		r.Reason = ""
	}
	c.log.Info("release ended", "release", r.ID, "phase", final, "reason", r.Reason)
	return nil
}

// silentIn lists the stamps of r's regions whose last health read failed.
func silentIn(r *Record, insts []Instance) []string {
	var out []string
	for _, in := range insts {
		if _, ok := r.Desired[in.Region]; ok && in.Silent {
			out = append(out, in.ID)
		}
	}
	slices.Sort(out)
	return out
}

// silentGrace is how long the operations plane must have failed to read
// every stamp of a region before the region counts as lost: a starved
// machine (or a long collection pause) can leave a stamp's reports stale
// and a read or two unanswered, and a release paused for a lost region
// waits for an operator.
const silentGrace = 5 * time.Second

// lostRegionsIn lists the regions of r where no stamp of insts runs at
// now: each is gone from the registry (a registry entry may outlive its
// stamp for a while: its TTL, or a watch yet to hear of the loss), or its
// report is stale and its reads have failed for silentGrace (or since a
// time not given). A stamp answering its reads runs, however stale its
// report.
func lostRegionsIn(r *Record, insts []Instance, now time.Time) []string {
	return regionsWithout(r, insts, func(in Instance) bool {
		return in.Health != health.Unknown || !in.Silent || (!in.SilentSince.IsZero() && now.Sub(in.SilentSince) < silentGrace)
	})
}

// unheardRegionsIn lists the regions of r where no stamp of insts has a
// fresh report: where a resume waits for the region to be back.
func unheardRegionsIn(r *Record, insts []Instance) []string {
	return regionsWithout(r, insts, func(in Instance) bool { return in.Health != health.Unknown })
}

// regionsWithout lists the regions of r where no instance of insts
// runs, by runs.
func regionsWithout(r *Record, insts []Instance, runs func(Instance) bool) []string {
	running := map[string]bool{}
	for _, in := range insts {
		if runs(in) {
			running[in.Region] = true
		}
	}
	var lost []string
	for _, region := range slices.Sorted(maps.Keys(r.Desired)) {
		if !running[region] {
			lost = append(lost, region)
		}
	}
	return lost
}

func conflictNotUnderWay(id string) error {
	return &shop.Error{Kind: shop.KindConflict, Detail: "release " + id + " is not the release under way"}
}
