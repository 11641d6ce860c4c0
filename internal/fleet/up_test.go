package fleet_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// upProcesses runs `contoso up --processes` and returns its command and
// ready line.
func upProcesses(t *testing.T) (*exec.Cmd, upReady) {
	t.Helper()
	data := t.TempDir()
	cmd := exec.Command(filepath.Join(bins, "contoso"), "up", "--processes", "--bin", bins, "--data", data,
		"--addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0", "--log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
	}()
	var ready upReady
	select {
	case line := <-lines:
		if err := json.Unmarshal([]byte(line), &ready); err != nil {
			t.Fatalf("ready line %q: %v\n%s", line, err, stderr.String())
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("no ready line within 5 minutes:\n%s", stderr.String())
	}
	return cmd, ready
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
	cmd, ready := upProcesses(t)
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
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("up exited with %v after SIGTERM, want status 0", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("up did not stop within 2 minutes of SIGTERM")
	}
	waitGone(t, ready.pids(), 10*time.Second)
}

func TestUpProcessesTakesItsChildrenWithItWhenKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole fleet of processes")
	}
	cmd, ready := upProcesses(t)
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no chance to stop anything itself
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitGone(t, ready.pids(), 10*time.Second)
}
