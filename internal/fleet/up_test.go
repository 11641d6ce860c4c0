package fleet_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// upRun is a running `contoso up --processes`.
type upRun struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited
	err    error         // how it exited; read after exited is closed
}

// wait waits up to d for up to exit and says how it exited.
func (u *upRun) wait(d time.Duration) (err error, ok bool) {
	select {
	case <-u.exited:
		return u.err, true
	case <-time.After(d):
		return nil, false
	}
}

// upProcesses runs `contoso up --processes` and returns it with its ready
// line.
func upProcesses(t *testing.T) (*upRun, upReady) {
	t.Helper()
	data := t.TempDir()
	cmd := exec.Command(filepath.Join(bins, "contoso"), "up", "--processes", "--bin", bins, "--data", data,
		"--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0", "--log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Stderr goes to a file: the test reads it only to explain a failure,
	// and a file is safe to read while the process still writes to it.
	stderrPath := filepath.Join(t.TempDir(), "up.stderr")
	stderr, err := os.Create(stderrPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	run := &upRun{cmd: cmd, exited: make(chan struct{})}
	go func() {
		run.err = cmd.Wait()
		close(run.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-run.exited
	})
	// explain describes why up gave no ready line: how it exited (if it
	// did within a few seconds), what it wrote to stderr, and the logs of
	// the processes it started.
	explain := func() string {
		status := "still running"
		if err, ok := run.wait(10 * time.Second); ok {
			status = fmt.Sprintf("exited: %v", err)
		}
		b, _ := os.ReadFile(stderrPath)
		dumpLogs(t, data)
		return status + "\n" + string(b)
	}
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	var ready upReady
	select {
	case line := <-lines:
		if err := json.Unmarshal([]byte(line), &ready); err != nil {
			t.Fatalf("ready line %q: %v\n%s", line, err, explain())
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("no ready line within 5 minutes:\n%s", explain())
	}
	return run, ready
}

type upReady struct {
	Event     string
	Regions   map[string]string
	Data      string
	Partner   string
	Secrets   string
	Edge      string
	Ops       string
	Processes map[string]map[string]int
	POPs      map[string]string `json:"pops"`
	Instances int
}

// pids lists every process id of the ready line.
func (r upReady) pids() []int {
	var out []int
	for _, parts := range r.Processes {
		for _, pid := range parts {
			out = append(out, pid)
		}
	}
	return out
}

func waitGone(t *testing.T, pids []int, within time.Duration) {
	t.Helper()
	eventually(t, within, func() error {
		for _, pid := range pids {
			if alive(pid) && !zombie(pid) {
				return errorf("process %d still runs", pid)
			}
		}
		return nil
	})
}

func TestUpProcessesServesAndStopsEveryProcessOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole fleet of processes")
	}
	up, ready := upProcesses(t)
	if ready.Event != "ready" || !strings.HasPrefix(ready.Edge, "http://127.0.0.1:") || !strings.HasPrefix(ready.Ops, "http://127.0.0.1:") ||
		ready.Partner == "" || ready.Secrets == "" || ready.Data == "" || ready.Instances != 2 {
		t.Fatalf("ready line %+v", ready)
	}
	for _, region := range regions {
		parts := ready.Processes[region]
		keys := make([]string, 0, len(parts))
		for k := range parts {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		// Two stamp instances per region by default, one per zone.
		if !slices.Equal(keys, []string{"pop", "stamp", "stamp-1", "store"}) || ready.POPs[region] == "" || ready.Regions[region] == "" {
			t.Fatalf("%s: processes %v, POP %q, stamp %q", region, parts, ready.POPs[region], ready.Regions[region])
		}
		for part, pid := range parts {
			if !alive(pid) {
				t.Errorf("%s %s: process %d is not running", region, part, pid)
			}
		}
		req, _ := http.NewRequest(http.MethodGet, ready.Edge+"/api/products?limit=1", nil)
		req.Header.Set("X-Client-Region", region)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Edge-Pop") != region {
			t.Errorf("%s client through the edge: %s from POP %q", region, resp.Status, resp.Header.Get("X-Edge-Pop"))
		}
	}
	// The chaos routes are served on the operations address (loopback
	// is trusted in development mode).
	resp, err := client.Get(ready.Ops + "/ops/chaos")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /ops/chaos = %s", resp.Status)
	}
	if err := up.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err, ok := up.wait(2 * time.Minute)
	if !ok {
		t.Fatal("up did not stop within 2 minutes of SIGTERM")
	}
	if err != nil {
		t.Fatalf("up exited with %v after SIGTERM, want status 0", err)
	}
	waitGone(t, ready.pids(), 10*time.Second)
}

func TestUpProcessesTakesItsChildrenWithItWhenKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole fleet of processes")
	}
	up, ready := upProcesses(t)
	if err := up.cmd.Process.Kill(); err != nil { // SIGKILL: no chance to stop anything itself
		t.Fatal(err)
	}
	if _, ok := up.wait(time.Minute); !ok {
		t.Fatal("up still runs a minute after SIGKILL")
	}
	waitGone(t, ready.pids(), 10*time.Second)
}
