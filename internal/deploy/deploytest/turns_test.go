//go:build unix

package deploytest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// A slot one package holds is busy for another (each opens the lock file
// on its own), and free again once released.
func TestATurnHeldIsBusyForOthersUntilReleased(t *testing.T) {
	path := filepath.Join(t.TempDir(), "turn.lock")
	open := func() *os.File {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	a, b := open(), open()
	if took, err := tryLockFile(a); !took || err != nil {
		t.Fatalf("first try = %v, %v; want the free slot", took, err)
	}
	if took, err := tryLockFile(b); took || err != nil {
		t.Fatalf("second try while held = %v, %v; want busy", took, err)
	}
	unlockFile(a)
	if took, err := tryLockFile(b); !took || err != nil {
		t.Fatalf("try after release = %v, %v; want the slot", took, err)
	}
}

func TestTurnsIsOnePerTwoCoresUnlessOverridden(t *testing.T) {
	perTwoCores := max(1, runtime.NumCPU()/2)
	for env, want := range map[string]int{"": perTwoCores, "1": 1, "3": 3, "0": perTwoCores, "-1": perTwoCores, "two": perTwoCores} {
		t.Setenv("CONTOSO_DEPLOYMENT_TURNS", env)
		if got := Turns(); got != want {
			t.Errorf("CONTOSO_DEPLOYMENT_TURNS=%q: Turns() = %d, want %d", env, got, want)
		}
	}
}
