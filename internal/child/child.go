// Package child runs the processes a supervisor starts: each in its own
// process group, its output in a log file, started and waited for until it
// is ready (a JSON ready line on stdout, a ready check), drained with
// SIGTERM and killed after a bound. `up --processes` (internal/fleet) and
// `contoso host` (internal/host) start their children with it.
package child

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// StopGrace bounds how long a child may take to drain after SIGTERM
// before it gets SIGKILL.
const StopGrace = 15 * time.Second

// Process is one child process: how to start it (kept, so a restart runs
// the same command on the same ports and data) and, while it runs, the
// running command. Set the exported fields before the first Start and
// leave them alone after.
type Process struct {
	Name   string   // "stamp-westeurope", "nats-eastus": its log file's stem and its name in errors
	Path   string   // the binary
	Args   []string // its flags
	Env    []string // its whole environment; nil: none
	LogDir string
	// Line is set when the child prints a JSON ready line on stdout
	// before it serves; Check, when set, must then also return nil.
	Line  bool
	Check func(ctx context.Context) error
	// StartTimeout bounds the start, ready line and ready check included.
	StartTimeout time.Duration

	mu     sync.Mutex // guards the fields below
	cmd    *exec.Cmd  // nil before the first start
	done   chan struct{}
	fields map[string]string // the last ready line's string fields
	exit   error             // how the last run ended (cmd.Wait's error), once done is closed
}

// LogPath is the file the child's stderr (and stdout after its ready
// line) goes to; it grows across restarts.
func (p *Process) LogPath() string { return filepath.Join(p.LogDir, p.Name+".log") }

// Start runs the child and waits until it is ready: its ready line read
// and its ready check passed, within StartTimeout, or until ctx is done.
// On failure the child is killed and the error carries the tail of its
// log.
func (p *Process) Start(ctx context.Context) error {
	logf, err := os.OpenFile(p.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = append([]string{}, p.Env...) // never nil: a child gets only the environment it is given
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	var stdout io.ReadCloser
	if p.Line {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			logf.Close()
			return fmt.Errorf("start %s: %w", p.Name, err)
		}
	} else {
		cmd.Stdout = logf
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	lines := make(chan []byte, 1)
	go func() {
		defer close(done)
		defer logf.Close()
		if stdout != nil {
			r := bufio.NewReader(stdout)
			first, err := r.ReadBytes('\n')
			if err == nil {
				lines <- first
			}
			_, _ = io.Copy(logf, r) // whatever else it prints, until it exits
		}
		werr := cmd.Wait()
		p.mu.Lock()
		if p.done == done {
			p.exit = werr
		}
		p.mu.Unlock()
	}()
	p.mu.Lock()
	p.cmd, p.done, p.fields, p.exit = cmd, done, nil, nil
	p.mu.Unlock()

	startCtx, cancel := context.WithTimeout(ctx, p.StartTimeout)
	defer cancel()
	if err := p.waitReady(startCtx, lines, done); err != nil {
		p.Kill()
		return fmt.Errorf("start %s: %w; its log %s ends:\n%s", p.Name, err, p.LogPath(), Tail(p.LogPath(), 2048))
	}
	return nil
}

func (p *Process) waitReady(ctx context.Context, lines <-chan []byte, done <-chan struct{}) error {
	if p.Line {
		select {
		case b := <-lines:
			fields := map[string]any{}
			if err := json.Unmarshal(bytes.TrimSpace(b), &fields); err != nil {
				return fmt.Errorf("its first line on stdout is not a JSON ready line: %q", b)
			}
			strs := map[string]string{}
			for k, v := range fields {
				if s, ok := v.(string); ok {
					strs[k] = s
				}
			}
			p.mu.Lock()
			p.fields = strs
			p.mu.Unlock()
		case <-done:
			return errors.New("it exited before its ready line")
		case <-ctx.Done():
			return fmt.Errorf("no ready line: %w", ctx.Err())
		}
	}
	if p.Check == nil {
		return nil
	}
	return Poll(ctx, "it to be ready", func() error {
		select {
		case <-done:
			return Stop(errors.New("it exited"))
		default:
		}
		return p.Check(ctx)
	})
}

// signal sends sig to the child's process group; false when it is not
// running.
func (p *Process) signal(sig syscall.Signal) (chan struct{}, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return nil, false
	}
	select {
	case <-p.done:
		return p.done, false
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	return p.done, true
}

// Kill ends the child at once (SIGKILL to its group), as a crash would,
// and waits until it is gone.
func (p *Process) Kill() {
	if done, ok := p.signal(syscall.SIGKILL); ok {
		<-done
	}
}

// Stop asks the child to drain (SIGTERM), waits for at most grace, then
// kills it.
func (p *Process) Stop(grace time.Duration) {
	done, ok := p.signal(syscall.SIGTERM)
	if !ok {
		return
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		p.Kill()
	}
}

// Drain asks the child to drain (SIGTERM) and waits until it exits, for
// at most grace (then it is killed) or until ctx is done (then it drains
// on); it returns how the child ended: nil for exit status 0.
func (p *Process) Drain(ctx context.Context, grace time.Duration) error {
	done, ok := p.signal(syscall.SIGTERM)
	if done == nil {
		return errors.New("it never ran")
	}
	if ok {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			p.Kill()
			return fmt.Errorf("still draining after %s: killed", grace)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return p.ExitErr()
}

// Exited is closed when the child's last run ends; nil before the first
// start.
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return nil
	}
	return p.done
}

// ExitErr is how the child's last run ended (nil for exit status 0);
// nil while it runs.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit
}

// Ran reports whether the child was ever started.
func (p *Process) Ran() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Running reports whether the child runs.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// PID is the running child's process id; 0 when it does not run.
func (p *Process) PID() int {
	if !p.Running() {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// LastPID is the process id of the child's last run, running or not; 0
// before the first.
func (p *Process) LastPID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Field is a string field of the child's last ready line.
func (p *Process) Field(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fields[name]
}

// Tail is the end of the file at path, at most n bytes.
func Tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// errStop ends a Poll at once: what it waits for can no longer happen.
type errStop struct{ error }

func (e errStop) Unwrap() error { return e.error }

// Stop wraps err so that a Poll whose condition returns it ends at once:
// what it waits for can no longer happen.
func Stop(err error) error { return errStop{err} }

// Poll calls cond every 100 ms until it returns nil, returns an error of
// Stop, or ctx is done; what says what it waits for, in errors.
func Poll(ctx context.Context, what string, cond func() error) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var stop errStop
		if errors.As(err, &stop) {
			return fmt.Errorf("wait for %s: %w", what, stop.error)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w (%w)", what, ctx.Err(), err)
		case <-t.C:
		}
	}
}
