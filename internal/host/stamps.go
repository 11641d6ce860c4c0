package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/contoso/shoes/internal/child"
	"github.com/contoso/shoes/internal/store"
)

// stamp is one stamp process of the host and its slot: its port stays
// across restarts.
type stamp struct {
	*child.Process
	port int

	// runMu serialises the process's (re)starts with its drain: a drain
	// waits for a start under way, which it cancels.
	runMu sync.Mutex
	// stop is closed once the stamp is drained on purpose (a release or
	// Close): it is not restarted.
	stop chan struct{}

	// Guarded by the host's mu:
	version, binary string
	fault           string
	url             string // what it announces, from its ready line
	id              string // its registry id, as last seen
	epoch           int    // the host's epoch when it last started
	upSince         time.Time
	restarts        int
	starting        bool // its first start, by a release, is under way
	stopping        bool // drained on purpose
}

// retire marks s drained on purpose; the host's mu is held.
func (s *stamp) retire() {
	if !s.stopping {
		s.stopping = true
		close(s.stop)
	}
}

// startStamp starts a stamp of t (with an injected fault, for a
// release's experiment) in a free slot and returns it once it is in the
// stamps registry; from then on it is restarted when it exits unexpectedly.
func (h *Host) startStamp(ctx context.Context, t target, fault string) (*stamp, error) {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return nil, errors.New("the host is stopping")
	}
	port, err := h.freePort()
	if err != nil {
		h.mu.Unlock()
		return nil, err
	}
	h.next++
	s := &stamp{port: port, stop: make(chan struct{}), version: t.version, binary: t.binary, fault: fault, epoch: h.epoch, starting: true}
	s.Process = &child.Process{Name: fmt.Sprintf("stamp-%s-%d", h.cfg.Region, h.next), LogDir: filepath.Join(h.cfg.DataDir, "logs"),
		Env: h.cfg.Env, Line: true, StartTimeout: h.cfg.StartTimeout}
	s.Check = h.announced(s.Process)
	s.Path, s.Args = h.command(s)
	// Listed before it starts: its port is taken, and Close drains it
	// even while it starts.
	h.stamps = append(h.stamps, s)
	h.mu.Unlock()
	if err := h.run(ctx, s); err != nil {
		h.mu.Lock()
		h.stamps = slices.DeleteFunc(h.stamps, func(x *stamp) bool { return x == s })
		h.mu.Unlock()
		return nil, err
	}
	h.mu.Lock()
	s.starting = false
	h.mu.Unlock()
	h.log.Info("stamp started", "stamp", s.Name, "release", t.version, "id", s.id, "url", s.url, "pid", s.PID())
	h.wg.Go(func() { h.supervise(s) })
	return s, nil
}

// command is the program and flags of s; the host's mu is held.
func (h *Host) command(s *stamp) (string, []string) {
	args := []string{"stamp", "--region", h.cfg.Region, "--listen", net.JoinHostPort(h.listen, strconv.Itoa(s.port)),
		"--release", s.version, "--env", h.cfg.Environment}
	if h.cfg.Advertise != "" {
		u, _ := url.Parse(h.cfg.Advertise) // checked by newHost
		args = append(args, "--advertise", u.Scheme+"://"+net.JoinHostPort(u.Hostname(), strconv.Itoa(s.port)))
	}
	if s.fault != "" {
		args = append(args, "--fault", s.fault)
	}
	return s.binary, append(args, h.cfg.StampFlags...)
}

// announced is the ready check of a stamp: the URL of its ready line is
// in the stamps registry. Whether it is ready for traffic is the edge's
// to probe and, in a release, the controller's to judge.
func (h *Host) announced(p *child.Process) func(context.Context) error {
	return func(context.Context) error {
		u := p.Field("advertise")
		if u == "" {
			return child.Stop(errors.New("its ready line names no advertised URL"))
		}
		if h.index.ID(u) == "" {
			return fmt.Errorf("%s is not in the stamps registry yet", u)
		}
		return nil
	}
}

// run starts s's process and waits until it is announced; a drain of s
// meanwhile cancels the start.
func (h *Host) run(ctx context.Context, s *stamp) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	select {
	case <-s.stop:
		return errors.New("drained before it started")
	default:
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := s.Start(ctx); err != nil {
		return err
	}
	u := s.Field("advertise")
	id := h.index.ID(u)
	h.mu.Lock()
	s.url, s.id, s.upSince = u, id, time.Now()
	h.mu.Unlock()
	return nil
}

// restartWindow is how long a stamp must run for its next restart to wait
// the first back-off again.
const restartWindow = time.Minute

// supervise restarts s whenever it exits unexpectedly, after a back-off
// that doubles while it keeps exiting, until it is drained on purpose.
// A stamp restarted after a release ended runs the version it left.
func (h *Host) supervise(s *stamp) {
	delay := h.cfg.Backoff
	for {
		select {
		case <-s.Exited():
		case <-s.stop:
			return
		}
		h.mu.Lock()
		gone := s.stopping || h.closing
		if time.Since(s.upSince) >= restartWindow {
			delay = h.cfg.Backoff
		}
		h.mu.Unlock()
		if gone {
			return
		}
		h.log.Warn("stamp exited unexpectedly; restarting it", "stamp", s.Name, "release", s.version, "exit", s.ExitErr(), "restart_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.stop:
			t.Stop()
			return
		}
		delay = min(delay*2, h.cfg.MaxBackoff)
		h.mu.Lock()
		if s.epoch < h.epoch {
			s.version, s.binary, s.fault = h.settled.version, h.settled.binary, ""
		}
		s.epoch = h.epoch
		s.restarts++
		path, args := h.command(s)
		h.mu.Unlock()
		// Only this goroutine starts s from now on: its command is its own.
		s.Path, s.Args = path, args
		if err := h.run(h.ctx, s); err != nil {
			h.log.Warn("stamp restart failed", "stamp", s.Name, "error", err)
			continue // its run has ended: wait again
		}
		h.log.Info("stamp restarted", "stamp", s.Name, "release", s.version, "id", s.id, "pid", s.PID())
	}
}

// freePort is the port of a new stamp: the lowest slot's from Listen's
// port on that no stamp holds, or, with port 0, a free port; the host's mu
// is held.
func (h *Host) freePort() (int, error) {
	used := map[int]bool{}
	for _, s := range h.stamps {
		used[s.port] = true
	}
	for _, s := range h.retired {
		if s.Running() {
			used[s.port] = true // still draining
		}
	}
	if h.basePort > 0 {
		for p := h.basePort; p <= 65535; p++ {
			if !used[p] {
				return p, nil
			}
		}
		return 0, fmt.Errorf("no port left from %d", h.basePort)
	}
	for range 100 {
		p, err := store.FreePort()
		if err != nil {
			return 0, err
		}
		if !used[p] {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port left after %d taken", len(used))
}
