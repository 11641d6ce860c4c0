// Package launch carries the autoscaler's starts and drains of stamp
// instances from the operations plane to the supervisors and hosts that
// run them, through the store's servers (NATS request and reply).
//
// The operations plane holds a Remote, a release.Launcher like the one a
// single process drives directly. Each supervisor (`up --processes`) or
// host (`contoso host`) serves its own launcher with Serve:
//
//   - a start of region R goes to one of the agents that carry R (a queue
//     group on LaunchSubject.start.R); it answers with the new instance's
//     registry id once the instance runs, or with why it did not start;
//   - a drain of instance I of region R goes to every agent of R
//     (LaunchSubject.stop.R); the one that runs I answers once I is gone,
//     the others stay silent;
//   - with no agent for R, the sender learns so at once (no responders).
//
// Nothing is kept: the autoscaler decides again at every evaluation from
// what runs, so a start or a drain lost with its sender or its agent is
// decided again, not replayed.
package launch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/httpapi"
	"github.com/contoso/shoes/internal/release"
	"github.com/contoso/shoes/internal/store"
)

// Defaults of the Remote's bounds.
const (
	// DefaultStartTimeout bounds a start: an instance that runs but has
	// not announced itself within it counts as failed.
	DefaultStartTimeout = 3 * time.Minute
	// DefaultStopTimeout bounds a drain: its in-flight requests and its
	// background work's hand-over.
	DefaultStopTimeout = 2 * time.Minute
)

// maxMessage bounds a start, a drain or an answer.
const maxMessage = 16 << 10

// queueGroup is the agents' queue group for starts: one agent of a region
// takes each.
const queueGroup = "launchers"

// validRegion is a region name that is one subject token.
var validRegion = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// subject is the subject of op (start or stop) for region.
func subject(op, region string) string { return store.LaunchSubject + "." + op + "." + region }

type startRequest struct {
	Spec release.Spec `json:"spec"`
}

type stopRequest struct {
	ID string `json:"id"`
}

// answer is an agent's answer: the instance's id, or why it failed.
type answer struct {
	ID    string `json:"id,omitempty"`
	Error string `json:"error,omitempty"`
}

// Remote is a release.Launcher whose instances run wherever an agent
// serves their region: the autoscaler's launcher in the operations plane
// of a deployment of many processes.
type Remote struct {
	// Conn reaches the store's servers as the operations plane
	// (store.RoleOps); required.
	Conn *nats.Conn
	// Instances lists what runs, as the stamps registry shows it;
	// required.
	Instances func() []release.Instance
	// StartTimeout and StopTimeout bound a start and a drain; zero:
	// DefaultStartTimeout and DefaultStopTimeout.
	StartTimeout, StopTimeout time.Duration
}

var _ release.Launcher = Remote{}

// Start asks one agent of spec.Region to start an instance and returns
// its registry id once it runs.
func (r Remote) Start(ctx context.Context, spec release.Spec) (string, error) {
	var a answer
	if err := r.request(ctx, "start", spec.Region, startRequest{Spec: spec}, cmpDuration(r.StartTimeout, DefaultStartTimeout), &a); err != nil {
		return "", fmt.Errorf("start an instance in %s: %w", spec.Region, err)
	}
	if a.ID == "" {
		return "", fmt.Errorf("start an instance in %s: the agent named no instance", spec.Region)
	}
	return a.ID, nil
}

// Stop asks the agent that runs instance id to drain it and returns once
// it is gone.
func (r Remote) Stop(ctx context.Context, id string) error {
	region := ""
	for _, in := range r.Instances() {
		if in.ID == id {
			region = in.Region
		}
	}
	if region == "" {
		return fmt.Errorf("drain %s: no such instance runs", id)
	}
	var a answer
	if err := r.request(ctx, "stop", region, stopRequest{ID: id}, cmpDuration(r.StopTimeout, DefaultStopTimeout), &a); err != nil {
		return fmt.Errorf("drain %s: %w", id, err)
	}
	return nil
}

// Running lists the instances the registry shows.
func (r Remote) Running() []release.Instance { return r.Instances() }

// request sends one start or drain and decodes its answer into a.
func (r Remote) request(ctx context.Context, op, region string, body any, bound time.Duration, a *answer) error {
	if !validRegion.MatchString(region) {
		return fmt.Errorf("region %q is not a region name", region)
	}
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	msg, err := r.Conn.RequestWithContext(ctx, subject(op, region), data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("no supervisor or host carries %s", region)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer within %s", bound)
	case err != nil:
		return err
	}
	if len(msg.Data) > maxMessage {
		return fmt.Errorf("the agent's answer is %d bytes, more than %d", len(msg.Data), maxMessage)
	}
	if err := json.Unmarshal(msg.Data, a); err != nil {
		return fmt.Errorf("the agent's answer: %w", err)
	}
	if a.Error != "" {
		return errors.New(a.Error)
	}
	return nil
}

func cmpDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// ServeConfig configures Serve.
type ServeConfig struct {
	// Conn reaches the store's servers as an agent (store.RoleAgent);
	// required.
	Conn *nats.Conn
	// Launcher starts and drains the instances; required.
	Launcher release.Launcher
	// Regions are the regions whose starts and drains this agent takes;
	// nil: every region (a supervisor of the whole deployment, whose
	// regions come and go), Carries deciding.
	Regions []string
	// Carries reports whether the agent can start instances of a region
	// now (its store server runs, say); a start it cannot take is
	// answered with an error. Nil: always.
	Carries func(region string) bool
	// MaxInFlight bounds the starts and drains under way; one more is
	// answered with an error. Zero: 8.
	MaxInFlight int
	Logger      *slog.Logger // nil: discard
}

// Server is an agent taking starts and drains.
type Server struct {
	cfg  ServeConfig
	log  *slog.Logger
	subs []*nats.Subscription
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
	sem  chan struct{}
}

// Serve subscribes to the starts and drains of cfg.Regions and serves
// them until Close.
func Serve(cfg ServeConfig) (*Server, error) {
	if cfg.Conn == nil || cfg.Launcher == nil {
		return nil, errors.New("launch: a connection and a launcher are required")
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "launch-agent"), ctx: ctx, stop: stop, sem: make(chan struct{}, cfg.MaxInFlight)}
	regions := cfg.Regions
	if regions == nil {
		regions = []string{"*"}
	}
	for _, region := range regions {
		if region != "*" && !validRegion.MatchString(region) {
			s.Close()
			return nil, fmt.Errorf("launch: region %q is not a region name", region)
		}
		start, err := cfg.Conn.QueueSubscribe(subject("start", region), queueGroup, func(m *nats.Msg) { s.take(m, s.start) })
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("launch: take starts of %s: %w", region, err)
		}
		s.subs = append(s.subs, start)
		stop, err := cfg.Conn.Subscribe(subject("stop", region), func(m *nats.Msg) { s.take(m, s.drain) })
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("launch: take drains of %s: %w", region, err)
		}
		s.subs = append(s.subs, stop)
	}
	// The subscriptions reach the servers before Serve returns: a start
	// sent right after it finds this agent.
	if err := cfg.Conn.FlushTimeout(5 * time.Second); err != nil {
		s.Close()
		return nil, fmt.Errorf("launch: %w", err)
	}
	return s, nil
}

// Close stops taking starts and drains and waits for those under way
// (their instances stop with the agent's own).
func (s *Server) Close() {
	for _, sub := range s.subs {
		_ = sub.Unsubscribe()
	}
	s.stop()
	s.wg.Wait()
}

// take runs handle for one message in the background, within the bound
// of operations under way. handle answers or, for a drain of an instance
// it does not run, stays silent (it returns false).
func (s *Server) take(m *nats.Msg, handle func(region string, data []byte) (answer, bool)) {
	if m.Reply == "" {
		return
	}
	region := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	if len(m.Data) > maxMessage {
		s.respond(m, answer{Error: fmt.Sprintf("the request is %d bytes, more than %d", len(m.Data), maxMessage)})
		return
	}
	select {
	case s.sem <- struct{}{}:
	default:
		s.respond(m, answer{Error: fmt.Sprintf("the agent has %d starts and drains under way; try again", cap(s.sem))})
		return
	}
	s.wg.Go(func() {
		defer func() { <-s.sem }()
		if a, ok := handle(region, m.Data); ok {
			s.respond(m, a)
		}
	})
}

func (s *Server) respond(m *nats.Msg, a answer) {
	data, _ := json.Marshal(a)
	if err := m.Respond(data); err != nil {
		s.log.Warn("launch: answer", "subject", m.Subject, "error", err)
	}
}

func (s *Server) start(region string, data []byte) (answer, bool) {
	var req startRequest
	if err := httpapi.Unmarshal(data, &req); err != nil {
		return answer{Error: "the start: " + err.Error()}, true
	}
	if req.Spec.Region != region {
		return answer{Error: fmt.Sprintf("a start of %s sent to %s's agents", req.Spec.Region, region)}, true
	}
	if s.cfg.Carries != nil && !s.cfg.Carries(region) {
		return answer{Error: "this agent cannot start instances of " + region + " now"}, true
	}
	id, err := s.cfg.Launcher.Start(s.ctx, req.Spec)
	if err != nil {
		s.log.Warn("launch: start", "region", region, "error", err)
		return answer{Error: err.Error()}, true
	}
	s.log.Info("launch: instance started", "region", region, "instance", id)
	return answer{ID: id}, true
}

func (s *Server) drain(region string, data []byte) (answer, bool) {
	var req stopRequest
	if err := httpapi.Unmarshal(data, &req); err != nil {
		return answer{Error: "the drain: " + err.Error()}, true
	}
	if !slices.ContainsFunc(s.cfg.Launcher.Running(), func(in release.Instance) bool { return in.ID == req.ID && in.Region == region }) {
		return answer{}, false // another agent's, or none's
	}
	if err := s.cfg.Launcher.Stop(s.ctx, req.ID); err != nil {
		s.log.Warn("launch: drain", "instance", req.ID, "error", err)
		return answer{Error: err.Error()}, true
	}
	s.log.Info("launch: instance drained and stopped", "region", region, "instance", req.ID)
	return answer{ID: req.ID}, true
}
