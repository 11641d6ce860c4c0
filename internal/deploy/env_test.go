package deploy

import (
	"strings"
	"testing"
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
