package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TurnsLock is the file every package whose tests start whole
// deployments locks while its tests run (RunInTurn).
var TurnsLock = filepath.Join(os.TempDir(), "contoso-deployment-tests.lock")

// RunInTurn runs a test package's tests (m.Run) while it holds TurnsLock,
// so that on one machine the packages that start whole deployments (the
// deployment's, the verifier's, the fleet's, the command's) take turns
// instead of running side by side under `go test ./...`. Their tests judge
// failover, routing and health within seconds; two whole deployments
// sharing two cores under the race detector starve each other's store
// servers for tens of seconds (a probe of the store then times out in
// every region at once), which tests the machine, not the system. Other
// packages still run beside them.
func RunInTurn(m *testing.M) int {
	f, err := os.OpenFile(TurnsLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		fmt.Fprintf(os.Stderr, "deployment tests: %v; running without taking turns\n", err)
		return m.Run()
	}
	defer f.Close()
	start := time.Now()
	if err := lockFile(f); err != nil {
		fmt.Fprintf(os.Stderr, "deployment tests: lock %s: %v; running without taking turns\n", TurnsLock, err)
		return m.Run()
	}
	defer unlockFile(f)
	if waited := time.Since(start); waited > time.Second {
		// Shown with the package's output (go test prints it for a
		// failure or with -v).
		fmt.Fprintf(os.Stderr, "deployment tests: waited %s for another package's deployments\n", waited.Round(time.Second))
	}
	return m.Run()
}
