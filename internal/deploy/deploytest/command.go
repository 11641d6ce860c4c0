package deploytest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildCommand builds the contoso command into dir as a release binary is
// built, static (CGO_ENABLED=0) and without the race detector whatever the
// tests run with, and returns its path: the fleet's tests start it as a
// deployment's processes, the verifier's proofs run it as an operator does.
func BuildCommand(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "contoso")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/contoso/shoes/cmd/contoso")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build contoso: %w\n%s", err, out)
	}
	return bin, nil
}
