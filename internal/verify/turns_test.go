package verify_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/contoso/shoes/internal/deploy/deploytest"
)

// binDir is where contosoBinary builds the contoso command.
var binDir string

// TestMain runs this package's tests in turn with the other packages that
// start whole deployments (deploytest.RunInTurn), and removes the command
// the proofs built.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "verify-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := deploytest.RunInTurn(m)
	os.RemoveAll(dir)
	os.Exit(code)
}
