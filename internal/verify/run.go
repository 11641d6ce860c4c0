package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// shownFailures bounds the failed idempotent requests the progress log
// describes after an experiment's load.
const shownFailures = 5

// Injector injects a fault through the operations API and heals it.
type Injector interface {
	Inject(ctx context.Context, f Fault) (id string, err error)
	Heal(ctx context.Context, id string) error
}

// Config is where the experiments run and with what.
type Config struct {
	Ops        string // the operations address, e.g. http://127.0.0.1:8090
	AdminToken string // bearer token for the operations API; empty: none (loopback in development mode)
	// Load runs one load profile against the edge to its end, settles the
	// accepted orders and checks the stock. It calls started once, when
	// its schedule starts (after whatever it reads first): the fault's
	// and the release's times count from then.
	Load   func(ctx context.Context, l Load, started func()) (LoadOutcome, error)
	Chaos  Injector
	Log    io.Writer     // progress lines; nil: discard
	Sample time.Duration // how often the health model and the routing are read; zero: 200 ms
	// Steady bounds the wait for a healthy system before each experiment;
	// zero: 90 s.
	Steady time.Duration
	HTTP   *http.Client // nil: a client of its own
}

// Run runs the experiments one after the other and judges each. It
// returns the verdicts of every experiment run; an error means an
// experiment could not be run at all (its verdicts say so too).
func Run(ctx context.Context, cfg Config, exps []Experiment) ([]Verdict, error) {
	if cfg.Load == nil || cfg.Chaos == nil || cfg.Ops == "" {
		return nil, errors.New("verify: Ops, Load and Chaos are required")
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Sample <= 0 {
		cfg.Sample = 200 * time.Millisecond
	}
	if cfg.Steady <= 0 {
		cfg.Steady = 90 * time.Second
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{}
	}
	obs := &observer{ops: cfg.Ops, token: cfg.AdminToken, client: cfg.HTTP, every: cfg.Sample}
	var all []Verdict
	var errs []error
	for _, e := range exps {
		vs, err := runOne(ctx, cfg, obs, e)
		all = append(all, vs...)
		if err != nil {
			errs = append(errs, fmt.Errorf("experiment %s: %w", e.Name, err))
			all = append(all, Verdict{Experiment: e.Name, Expectation: "the experiment runs", Measured: err.Error()})
		}
		if ctx.Err() != nil {
			break
		}
	}
	return all, errors.Join(errs...)
}

func runOne(ctx context.Context, cfg Config, obs *observer, e Experiment) ([]Verdict, error) {
	began := time.Now()
	defer func() { fmt.Fprintf(cfg.Log, "   %s took %s\n", e.Name, time.Since(began).Round(100*time.Millisecond)) }()
	fmt.Fprintf(cfg.Log, "== %s: %s, load %g/s\n", e.Name, e.what(), e.Load.Rate)
	var sr *scalingRun
	if sc := e.Scaling; sc != nil {
		var err error
		if sr, err = startScaling(ctx, cfg, sc); err != nil {
			return nil, fmt.Errorf("set the scaling rules: %w", err)
		}
		defer func() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := sr.restore(rctx); err != nil {
				fmt.Fprintf(cfg.Log, "   restore the scaling rules: %v\n", err)
			}
		}()
		fmt.Fprintf(cfg.Log, "   scaling: capacity %d, work %s, min %d, max %d\n", sc.Capacity, sc.Work.D(), sc.Min, sc.Max)
	}
	// The steady-state hypothesis: the system is healthy before the fault.
	steady := Verdict{Experiment: e.Name, Expectation: "steady state: system healthy before the fault"}
	start := time.Now()
	for {
		s := obs.look(ctx)
		if st := s.States["system"]; st.State == "healthy" {
			steady.Measured, steady.Pass = fmt.Sprintf("healthy after %s", time.Since(start).Round(100*time.Millisecond)), true
			break
		} else if time.Since(start) > cfg.Steady || ctx.Err() != nil {
			steady.Measured = fmt.Sprintf("%s: %s", st.State, st.Reason)
			if s.Err != nil {
				steady.Measured = fmt.Sprintf("the operations API did not answer: %v", s.Err)
			}
			return []Verdict{steady}, nil
		}
		time.Sleep(cfg.Sample)
	}
	obsCtx, stopObs := context.WithCancel(ctx)
	var samples []sample
	var wg sync.WaitGroup
	wg.Go(func() { samples = obs.run(obsCtx) })
	defer func() { stopObs(); wg.Wait() }()

	type loaded struct {
		out LoadOutcome
		err error
	}
	done := make(chan loaded, 1)
	startedAt := make(chan time.Time, 1)
	go func() {
		load := e.Load
		if g := e.Expect.Survivors; g != nil {
			load.Windows = g.windows(e)
		}
		out, err := cfg.Load(ctx, load, func() {
			if sr != nil {
				// The instances get the experiment's capacity only now:
				// the load's own reads before its schedule (the stock of
				// every SKU) are not the load the scaler is judged on.
				sr.applyInstances(ctx)
			}
			select {
			case startedAt <- time.Now():
			default: // started twice: the first counts
			}
		})
		done <- loaded{out, err}
	}()
	var loadStart time.Time
	select {
	case loadStart = <-startedAt:
	case l := <-done:
		if l.err == nil {
			l.err = errors.New("it ended without starting")
		}
		return []Verdict{steady}, fmt.Errorf("load: %w", l.err)
	}
	// The release, if any, runs beside the load and the fault; injected
	// tells it when the fault went in.
	var (
		released chan releaseRun
		injected = make(chan time.Time, 1)
	)
	if e.Release != nil {
		released = make(chan releaseRun, 1)
		rl := newReleaser(cfg, obs)
		go func() { released <- rl.run(ctx, e, loadStart.Add(e.Release.After.D()), injected) }()
		fmt.Fprintf(cfg.Log, "   release %s at +%s\n", e.Release.Version, e.Release.After.D())
	}
	r := run{exp: e}
	var (
		l     loaded
		ended bool // l holds the load's outcome
		id    string
		herr  error
	)
	if e.Fault.Fault != "" {
		select {
		case <-time.After(time.Until(loadStart.Add(e.Fault.After.D()))):
		case l = <-done:
			ended = true
		}
		if ended {
			if released != nil {
				<-released
			}
			return []Verdict{steady}, fmt.Errorf("the load ended before the fault: %v", l.err)
		}
		f := e.Fault
		if clients, ok := strings.CutPrefix(f.Target, ServingTarget); ok {
			// The region serving those clients now, for the judges too.
			region, err := obs.serving(ctx, clients)
			if err != nil {
				<-done
				return []Verdict{steady}, fmt.Errorf("target %s: %w", f.Target, err)
			}
			f.Target, r.exp.Fault.Target = region, region
		}
		var err error
		id, err = cfg.Chaos.Inject(ctx, f)
		r.injected = time.Now()
		if err != nil {
			<-done
			if released != nil {
				<-released
			}
			return []Verdict{steady}, fmt.Errorf("inject %s: %w", e.Fault.Fault, err)
		}
		injected <- r.injected
		fmt.Fprintf(cfg.Log, "   injected %s on %s (%s) at +%s\n", f.Fault, f.Target, id, r.injected.Sub(loadStart).Round(10*time.Millisecond))
	}
	l = <-done
	if e.Fault.Fault != "" {
		// The fault heals itself after its duration; make sure.
		healCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		herr = cfg.Chaos.Heal(healCtx, id)
		cancel()
	}
	var rr releaseRun
	if released != nil {
		rr = <-released
		if rr.Record != nil {
			fmt.Fprintf(cfg.Log, "   release %s: %s %s\n", rr.Version, rr.Record.Phase, rr.Record.Reason)
		}
	}
	// Stopped only now, so that recovery is in the samples too.
	stopObs()
	wg.Wait()
	r.samples = samples
	if l.err != nil {
		return []Verdict{steady}, fmt.Errorf("load: %w", l.err)
	}
	r.load = l.out
	fmt.Fprintf(cfg.Log, "   load: %s\n", l.out)
	for i, f := range l.out.Failures {
		if i == shownFailures {
			fmt.Fprintf(cfg.Log, "   failed: %d more\n", l.out.IdempotentFailures-int64(i))
			break
		}
		fmt.Fprintf(cfg.Log, "   failed: %s\n", f)
	}
	vs := append([]Verdict{steady}, judge(r)...)
	if sr != nil {
		vs = append(vs, sr.judge(ctx, e, l.out, loadStart)...)
	}
	if e.Release != nil {
		vs = append(vs, judgeRelease(e, rr, r.load)...)
	}
	if herr != nil {
		vs = append(vs, Verdict{Experiment: e.Name, Expectation: "the fault heals", Measured: herr.Error()})
	}
	for _, v := range vs {
		mark := "pass"
		if !v.Pass {
			mark = "FAIL"
		}
		fmt.Fprintf(cfg.Log, "   %-4s %s: %s\n", mark, v.Expectation, v.Measured)
	}
	return vs, nil
}

// what sums up the experiment's fault and release for the progress log.
func (e Experiment) what() string {
	var parts []string
	if f := e.Fault; f.Fault != "" {
		parts = append(parts, fmt.Sprintf("%s on %s at +%s for %s", f.Fault, f.Target, f.After.D(), f.Duration.D()))
	}
	if r := e.Release; r != nil {
		what := "a release"
		if r.Fault != "" {
			what += " with " + r.Fault
		}
		parts = append(parts, fmt.Sprintf("%s at +%s, expected %s", what, r.After.D(), r.Expect.Outcome))
	}
	return strings.Join(parts, "; ")
}
