package verify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/release"
)

// releaseRun is what the runner saw of an experiment's release.
type releaseRun struct {
	Version string          // the version released: the block's version and the start time
	Record  *release.Record // the final record, or the last one read; nil: it never started
	Err     error           // why it could not be started or followed
	// TimedOut: the release had not ended within the expectation's bound
	// (the runner then rolled it back so the next experiment starts
	// clean); AtBound is its record as last read before that rollback.
	TimedOut bool
	AtBound  *release.Record
	// FaultFrom and FaultTo are when the experiment's fault was injected
	// and when it healed itself; zero without a fault.
	FaultFrom, FaultTo time.Time
	// PausedAt and PausedWhy are the first time the release was seen
	// paused for a lost region while the fault lasted.
	PausedAt  time.Time
	PausedWhy string
	// ResumedAt is when the runner's resume was accepted; ResumeErr why
	// it never was.
	ResumedAt time.Time
	ResumeErr error
	// resumeRefused: resume answered something other than a conflict
	// (409, the region runs no stamp yet); the runner stops asking.
	resumeRefused bool
	// Gone is the other version's stamps the edge still listed after the
	// end (by id, empty: none), and GoneAfter how long after the end the
	// last look was.
	Gone      []string
	GoneOf    []string // the versions that must be gone
	GoneAfter time.Duration
	GoneErr   error
}

// releaser starts and follows the release of one experiment.
type releaser struct {
	client *release.Client
	obs    *observer
	every  time.Duration
}

func newReleaser(cfg Config, obs *observer) *releaser {
	return &releaser{
		client: &release.Client{API: httpapi.Client{BaseURL: cfg.Ops, Token: cfg.AdminToken, HTTP: cfg.HTTP}},
		obs:    obs,
		every:  cfg.Sample,
	}
}

// request is the release the block asks for, as version.
func (b *Release) request(version string) release.Request {
	return release.Request{
		Version: version, Steps: b.Steps, Fault: b.Fault, By: "verify", StartTimeout: b.StartTimeout.D(),
		Gate: release.Gate{MinHold: b.Hold.D(), MinRequests: b.MinRequests, ErrorTolerance: b.ErrorTolerance, LatencyFactor: b.LatencyFactor},
	}
}

// run starts the release at start and follows it to its end. injected
// delivers the time the experiment's fault was injected (never, without
// a fault). It returns when the release ended (and the other version left
// the edge), or when it could not.
func (rl *releaser) run(ctx context.Context, e Experiment, start time.Time, injected <-chan time.Time) releaseRun {
	b := e.Release
	out := releaseRun{}
	select {
	case <-time.After(time.Until(start)):
	case <-ctx.Done():
		out.Err = ctx.Err()
		return out
	}
	out.Version = fmt.Sprintf("%s-%d", b.Version, time.Now().Unix())
	// A region still draining the version an earlier experiment retired
	// runs two versions, and the controller refuses to start: the runner
	// waits for the drain, a minute at most, then reports the refusal.
	var (
		rec *release.Record
		err error
	)
	for give := time.Now().Add(time.Minute); ; {
		rec, err = rl.client.Start(ctx, b.request(out.Version))
		var api *httpapi.APIError
		if err == nil || !errors.As(err, &api) || api.Status != http.StatusConflict || !strings.Contains(api.Detail, "runs two versions") || time.Now().After(give) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if err != nil {
		out.Err = err
		return out
	}
	out.Record = rec
	deadline := rec.StartedAt.Add(b.Expect.Within.D())
	if rec.StartedAt.IsZero() {
		deadline = time.Now().Add(b.Expect.Within.D())
	}
	waitCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var lastErr error
	t := time.NewTicker(rl.every)
	defer t.Stop()
	for {
		if out.FaultFrom.IsZero() && injected != nil {
			select {
			case at := <-injected:
				out.FaultFrom, out.FaultTo = at, at.Add(e.Fault.Duration.D())
			default:
			}
		}
		s, err := rl.client.Status(waitCtx)
		lastErr = err
		if err == nil && s.Current != nil && s.Current.ID == rec.ID {
			cur := s.Current
			out.Record = cur
			if cur.Phase.Final() {
				break
			}
			now := time.Now()
			during := !out.FaultFrom.IsZero() && !now.Before(out.FaultFrom) && now.Before(out.FaultTo.Add(rl.every))
			if during && out.PausedAt.IsZero() && cur.Paused && strings.HasPrefix(cur.Reason, "region lost") {
				out.PausedAt, out.PausedWhy = now, cur.Reason
			}
			if b.Expect.PausedByFault && cur.Paused && !out.FaultTo.IsZero() && now.After(out.FaultTo) && out.ResumedAt.IsZero() && !out.resumeRefused {
				rl.resume(waitCtx, e, &out)
			}
		}
		select {
		case <-waitCtx.Done():
			if ctx.Err() != nil {
				out.Err = ctx.Err()
				return out
			}
			out.TimedOut, out.AtBound = true, out.Record
			if lastErr != nil {
				out.Err = fmt.Errorf("the release did not end within %s (last error: %w)", b.Expect.Within.D(), lastErr)
			}
			rl.rollBack(ctx, &out)
			if out.Record != nil && out.Record.Phase.Final() {
				rl.gone(ctx, &out)
			}
			return out
		case <-t.C:
			continue
		}
	}
	rl.gone(ctx, &out)
	return out
}

// resume resumes the paused release once the fault's region is healthy
// again; a refusal (409: the region runs no stamp yet) is tried again on
// the next look.
func (rl *releaser) resume(ctx context.Context, e Experiment, out *releaseRun) {
	if st := rl.obs.look(ctx).States["region."+e.Fault.Target]; st.State != "healthy" {
		out.ResumeErr = fmt.Errorf("region %s not healthy yet (%s)", e.Fault.Target, st.State)
		return
	}
	_, err := rl.client.Do(ctx, release.ActionResume, "verify")
	if err == nil {
		out.ResumedAt, out.ResumeErr = time.Now(), nil
		return
	}
	var api *httpapi.APIError
	out.ResumeErr, out.resumeRefused = err, !errors.As(err, &api) || api.Status != http.StatusConflict
}

// rollBack ends a release that outlived its bound, so that the next
// experiment finds one version running, and records how it ended.
func (rl *releaser) rollBack(ctx context.Context, out *releaseRun) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if _, err := rl.client.Do(ctx, release.ActionRollback, "verify"); err != nil {
		var api *httpapi.APIError
		if !errors.As(err, &api) || api.Status != http.StatusConflict {
			return
		}
	}
	if rec, err := rl.client.Wait(ctx, rl.every, nil); err == nil && out.Record != nil && rec.ID == out.Record.ID {
		out.Record = rec
	}
}

// gone polls the edge, for up to 10 s, until no stamp of the version that
// lost (the old one after a done release, the new one otherwise) is
// listed.
func (rl *releaser) gone(ctx context.Context, out *releaseRun) {
	rec := out.Record
	if rec.Phase == release.PhaseDone {
		out.GoneOf = slices.Sorted(maps.Values(rec.From))
		out.GoneOf = slices.Compact(out.GoneOf)
	} else {
		out.GoneOf = []string{rec.Version}
	}
	start := time.Now()
	for {
		left, err := rl.obs.stampsOf(ctx, out.GoneOf)
		out.Gone, out.GoneErr, out.GoneAfter = left, err, time.Since(start)
		if (err == nil && len(left) == 0) || time.Since(start) >= 10*time.Second || ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(rl.every):
		}
	}
}

// judgeRelease checks the release expectations of one run.
func judgeRelease(e Experiment, rr releaseRun, load LoadOutcome) []Verdict {
	b := e.Release
	x := b.Expect
	var out []Verdict
	add := func(expect, measured string, pass bool, numbers map[string]float64) {
		out = append(out, Verdict{Experiment: e.Name, Expectation: expect, Measured: measured, Pass: pass, Numbers: numbers})
	}
	rec := rr.Record
	outcome := fmt.Sprintf("release.outcome: %s within %s", x.Outcome, x.Within.D())
	if rec == nil {
		add(outcome, fmt.Sprintf("not started: %v", rr.Err), false, nil)
		return out
	}
	numbers := map[string]float64{}
	measured := string(rec.Phase)
	if rr.TimedOut {
		at := cmp.Or(rr.AtBound, rec)
		measured = fmt.Sprintf("still %s after %s", at.Phase, x.Within.D())
		if at.Reason != "" {
			measured += " (" + at.Reason + ")"
		}
		if rec.Phase.Final() {
			measured += fmt.Sprintf(" (then rolled back by the runner: %s)", rec.Phase)
		}
	} else if !rec.EndedAt.IsZero() {
		took := rec.EndedAt.Sub(rec.StartedAt)
		numbers["release_seconds"] = took.Seconds()
		measured = fmt.Sprintf("%s after %s", rec.Phase, took.Round(100*time.Millisecond))
	}
	if to, ok := toFull(rec); ok {
		numbers["to_100_seconds"] = to.Seconds()
		measured += fmt.Sprintf(", 100 %% after %s of steps", to.Round(100*time.Millisecond))
	}
	if rec.Reason != "" {
		measured += ": " + rec.Reason
	}
	if rr.Err != nil && !rr.TimedOut {
		measured += fmt.Sprintf(" (%v)", rr.Err)
	}
	add(outcome, measured, !rr.TimedOut && rr.Err == nil && string(rec.Phase) == x.Outcome, numbers)

	if x.Outcome == string(release.PhaseDone) {
		passed := 0
		var bad []string
		for _, st := range rec.Steps {
			if st.Verdict == "passed" {
				passed++
			} else if len(bad) < 3 {
				bad = append(bad, fmt.Sprintf("%s %d %%: %s %s", st.Region, st.Percent, st.Verdict, st.Reason))
			}
		}
		m := fmt.Sprintf("%d of %d passed (plan of %d)", passed, len(rec.Steps), len(rec.Plan))
		if len(bad) > 0 {
			m += "; " + strings.Join(bad, "; ")
		}
		add("release.steps: every step passed", m, len(rec.Steps) > 0 && passed == len(rec.Steps) && len(rec.Steps) == len(rec.Plan), nil)
	}
	if x.MaxErrorShare != nil {
		var failed, all int64
		for _, f := range load.Flows {
			failed, all = failed+f.Errors, all+f.Requests
		}
		share := 0.0
		if all > 0 {
			share = float64(failed) / float64(all)
		}
		add(fmt.Sprintf("release.error_share <= %g", *x.MaxErrorShare), fmt.Sprintf("%.4f (%d of %d requests failed)", share, failed, all),
			all > 0 && share <= *x.MaxErrorShare, map[string]float64{"error_share": share})
	}
	if x.RollbackWithin > 0 {
		// Bounded from when the gate had enough requests to judge the
		// failing step (the new version's MinRequests, or the early
		// verdict on certain errors); the time from the first bad request
		// is reported beside it.
		expect := fmt.Sprintf("release.rollback: within %s of the gate seeing enough requests", x.RollbackWithin.D())
		var enough time.Time
		if n := len(rec.Steps); n > 0 {
			last := rec.Steps[n-1]
			enough = cmp.Or(last.EnoughAt, last.EndedAt)
		}
		switch {
		case enough.IsZero() || rec.RollbackAt.IsZero():
			add(expect, fmt.Sprintf("gate had enough at %s, rollback at %s", stamp(enough), stamp(rec.RollbackAt)), false, nil)
		default:
			took := rec.RollbackAt.Sub(enough)
			fromBad := rec.RollbackAt.Sub(rec.FirstBadAt)
			add(expect, fmt.Sprintf("%s (gate had enough at %s, rollback at %s; %s after the first bad request)", took.Round(time.Millisecond), stamp(enough), stamp(rec.RollbackAt), fromBad.Round(time.Millisecond)),
				took >= 0 && took <= x.RollbackWithin.D(), map[string]float64{"rollback_seconds": took.Seconds(), "first_bad_to_rollback_seconds": fromBad.Seconds()})
		}
	}
	if x.NoTraffic {
		// Answers that name their release prove the load saw the header;
		// without any, an absent version proves nothing.
		var named int64
		for rel, n := range load.ServedReleases {
			if rel != "none" {
				named += n
			}
		}
		n := load.ServedReleases[rr.Version]
		add("release.no_traffic: the new version served nothing",
			fmt.Sprintf("%d answers by %s of %d naming their release, %d steps", n, rr.Version, named, len(rec.Steps)),
			n == 0 && named > 0 && len(rec.Steps) == 0, nil)
	}
	if rec.Phase.Final() {
		expect := "release.new_gone: no stamp of the new version at the edge"
		if rec.Phase == release.PhaseDone {
			expect = "release.old_gone: no stamp of the old version at the edge"
		}
		switch {
		case rr.GoneErr != nil:
			add(expect, fmt.Sprintf("the edge could not be read: %v", rr.GoneErr), false, nil)
		case len(rr.Gone) > 0:
			add(expect, fmt.Sprintf("%s still listed after %s: %s", strings.Join(rr.GoneOf, ", "), rr.GoneAfter.Round(100*time.Millisecond), strings.Join(rr.Gone, ", ")), false, nil)
		default:
			add(expect, fmt.Sprintf("no stamp of %s, %s after the end", strings.Join(rr.GoneOf, ", "), rr.GoneAfter.Round(100*time.Millisecond)), true, nil)
		}
	}
	if x.PausedByFault {
		expect := "release.paused_by_fault: paused (region lost) while the fault lasts, then resumed"
		switch {
		case rr.FaultFrom.IsZero():
			add(expect, "the fault was not injected", false, nil)
		case rr.PausedAt.IsZero():
			add(expect, "never seen paused for a lost region while the fault lasted", false, nil)
		case rr.ResumedAt.IsZero():
			add(expect, fmt.Sprintf("paused %s after the injection (%s); not resumed: %v",
				rr.PausedAt.Sub(rr.FaultFrom).Round(100*time.Millisecond), rr.PausedWhy, rr.ResumeErr), false, nil)
		default:
			add(expect, fmt.Sprintf("paused %s after the injection (%s); resumed %s after the heal",
				rr.PausedAt.Sub(rr.FaultFrom).Round(100*time.Millisecond), rr.PausedWhy, rr.ResumedAt.Sub(rr.FaultTo).Round(100*time.Millisecond)),
				true, map[string]float64{"paused_after_injection_seconds": rr.PausedAt.Sub(rr.FaultFrom).Seconds()})
		}
	}
	return out
}

// toFull is the time from the first step's start to the last step's end
// of a release that reached 100 % everywhere.
func toFull(rec *release.Record) (time.Duration, bool) {
	if len(rec.Steps) == 0 || len(rec.Steps) != len(rec.Plan) {
		return 0, false
	}
	last := rec.Steps[len(rec.Steps)-1]
	if last.Percent != 100 || last.EndedAt.IsZero() {
		return 0, false
	}
	return last.EndedAt.Sub(rec.Steps[0].StartedAt), true
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("15:04:05.000")
}
