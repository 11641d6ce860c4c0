package deploy

import (
	"strings"
	"testing"
	"time"

	"github.com/contoso/shoes/internal/stamp"
)

func TestADataDirectoryBelongsToOneEnvironment(t *testing.T) {
	dir := t.TempDir()
	if err := claimEnv(dir, "prod"); err != nil {
		t.Fatalf("claim a new directory for prod: %v", err)
	}
	if err := claimEnv(dir, "prod"); err != nil {
		t.Fatalf("prod again in its own directory: %v", err)
	}
	err := claimEnv(dir, "dev")
	if err == nil || !strings.Contains(err.Error(), "holds the prod environment, not dev") {
		t.Fatalf("dev in prod's directory = %v, want a refusal naming both", err)
	}
	if err := claimEnv(t.TempDir(), "staging"); err == nil {
		t.Fatal("an unknown environment was accepted")
	}
}

// The switches that break a guarantee on purpose, and injected faults,
// never start in prod.
func TestProdRefusesBrokenGuarantees(t *testing.T) {
	for name, cfg := range map[string]Config{
		"edge without retry":  {EdgeNoRetry: true},
		"blind stock writes":  {UnsafeBlindStockWrites: true},
		"a fault every stamp": {StampFault: stamp.Fault{Latency: time.Second}},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.DataDir, cfg.Env = t.TempDir(), "prod"
			d, err := Start(t.Context(), cfg)
			if err == nil {
				d.Close()
				t.Fatal("started in prod")
			}
			if !strings.Contains(err.Error(), "refused in the prod environment") {
				t.Fatalf("Start = %v, want a refusal in prod", err)
			}
		})
	}
}
