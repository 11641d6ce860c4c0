package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

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
	// accepted orders and checks the stock.
	Load   func(ctx context.Context, l Load) (LoadOutcome, error)
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
	fmt.Fprintf(cfg.Log, "== %s: %s on %s at +%s for %s, load %g/s\n", e.Name, e.Fault.Fault, e.Fault.Target,
		e.Fault.After.D(), e.Fault.Duration.D(), e.Load.Rate)
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
	loadStart := time.Now()
	go func() {
		out, err := cfg.Load(ctx, e.Load)
		done <- loaded{out, err}
	}()
	r := run{exp: e}
	select {
	case <-time.After(time.Until(loadStart.Add(e.Fault.After.D()))):
	case l := <-done:
		return []Verdict{steady}, fmt.Errorf("the load ended before the fault: %v", l.err)
	}
	id, err := cfg.Chaos.Inject(ctx, e.Fault)
	r.injected = time.Now()
	if err != nil {
		<-done
		return []Verdict{steady}, fmt.Errorf("inject %s: %w", e.Fault.Fault, err)
	}
	fmt.Fprintf(cfg.Log, "   injected %s (%s) at +%s\n", e.Fault.Fault, id, r.injected.Sub(loadStart).Round(10*time.Millisecond))
	l := <-done
	// The fault heals itself after its duration; make sure, then watch a
	// moment more so that recovery is in the samples too.
	healCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	herr := cfg.Chaos.Heal(healCtx, id)
	cancel()
	stopObs()
	wg.Wait()
	r.samples = samples
	if l.err != nil {
		return []Verdict{steady}, fmt.Errorf("load: %w", l.err)
	}
	r.load = l.out
	fmt.Fprintf(cfg.Log, "   load: %s\n", l.out)
	vs := append([]Verdict{steady}, judge(r)...)
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
