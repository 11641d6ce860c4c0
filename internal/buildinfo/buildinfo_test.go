package buildinfo

import (
	"runtime"
	"testing"
)

func TestAVersionStampedAtLinkTimeWins(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	version = "v9.8.7"
	if got := Version(); got != "v9.8.7" {
		t.Fatalf("Version() = %q, want the linked v9.8.7", got)
	}
	if got := Read(); got.Version != "v9.8.7" || got.Go != runtime.Version() {
		t.Fatalf("Read() = %+v", got)
	}
}

func TestWithoutALinkedVersionTheBuildSaysWhatItIs(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	version = ""
	got := Read()
	if got.Version == "" {
		t.Fatal("empty version")
	}
	if got.Revision != "" && got.Version != "dev+"+short(got.Revision) && got.Version != "dev+"+short(got.Revision)+".dirty" {
		t.Fatalf("revision %q but version %q", got.Revision, got.Version)
	}
}
