package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// Turns is how many of the packages that start whole deployments run their
// tests at once on one machine (RunInTurn): the value of the environment
// variable CONTOSO_DEPLOYMENT_TURNS when it is a positive number, else one
// per two cores (at least one). Two at once on two cores finished the test
// command in 12 min instead of 16 when nothing else ran, and starved the
// deployments of the verifier's tests (hundreds of failed requests) when
// go vet and a few other tests ran beside them. With the temporary
// directories in memory (TMPDIR on /dev/shm: no file creations and syncs
// on a disk), two at once on two cores took the test command from 16.5 to
// 12.8 min, every package passing; CI runs it so (.ci/run).
func Turns() int {
	if n, err := strconv.Atoi(os.Getenv("CONTOSO_DEPLOYMENT_TURNS")); err == nil && n > 0 {
		return n
	}
	return max(1, runtime.NumCPU()/2)
}

// TurnLock is the file that package's tests hold while they run in turn
// slot (from 0 to Turns()-1).
func TurnLock(slot int) string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("contoso-deployment-tests.%d.lock", slot))
}

// turnPoll is how often a package waiting for a turn tries the slots again.
const turnPoll = 100 * time.Millisecond

// RunInTurn runs a test package's tests (m.Run) while it holds one of
// Turns() slots (an flock on TurnLock(slot)), so that on one machine at
// most that many of the packages that start whole deployments (the
// deployment's, the verifier's, the fleet's, the command's) run side by
// side under `go test ./...`, the others waiting for a slot (the worker's,
// whose tests kill store servers, takes a turn too). Their tests
// judge failover, routing and health within seconds; more of them than
// the cores carry, under the race detector, starve each other's store
// servers for tens of seconds (a probe of the store then times out in
// every region at once), which tests the machine, not the system. Other
// packages still run beside them.
func RunInTurn(m *testing.M) int {
	turns := Turns()
	files := make([]*os.File, 0, turns)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for slot := range turns {
		f, err := os.OpenFile(TurnLock(slot), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			fmt.Fprintf(os.Stderr, "deployment tests: %v; running without taking turns\n", err)
			return m.Run()
		}
		files = append(files, f)
	}
	start := time.Now()
	for {
		for slot, f := range files {
			took, err := tryLockFile(f)
			if err != nil {
				fmt.Fprintf(os.Stderr, "deployment tests: lock %s: %v; running without taking turns\n", TurnLock(slot), err)
				return m.Run()
			}
			if !took {
				continue
			}
			defer unlockFile(f)
			if waited := time.Since(start); waited > time.Second {
				// Shown with the package's output (go test prints it
				// for a failure or with -v).
				fmt.Fprintf(os.Stderr, "deployment tests: waited %s for a turn (%d at once)\n", waited.Round(time.Second), turns)
			}
			return m.Run()
		}
		time.Sleep(turnPoll)
	}
}
