package fleet

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// The binaries a fleet runs besides contoso, and the packages they are
// built from: the ordinary releases of the versions go.mod pins (go.mod
// lists them as tools, so `go mod tidy` keeps their requirements).
const (
	natsServerBin = "nats-server"
	toxiproxyBin  = "toxiproxy-server"
)

var toolPackages = map[string]string{
	natsServerBin: "github.com/nats-io/nats-server/v2",
	toxiproxyBin:  "github.com/Shopify/toxiproxy/v2/cmd/server",
}

// binaries are the paths of the programs a fleet runs.
type binaries struct {
	contoso, nats, toxiproxy string
}

// Build builds nats-server and toxiproxy-server into dir with the go
// command, from the module that holds moduleDir (empty: the current
// directory), at the versions its go.mod pins. The build cache makes a
// rebuild take about a second.
func Build(ctx context.Context, moduleDir, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	for name, pkg := range toolPackages {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = moduleDir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s (%s): %w\n%s", name, pkg, err, out.String())
		}
	}
	return nil
}

// resolveBinaries finds the programs of cfg: prebuilt in cfg.BinDir, or
// built into <data>/bin.
func resolveBinaries(ctx context.Context, cfg Config) (binaries, error) {
	dir := cfg.BinDir
	if dir == "" {
		dir = filepath.Join(cfg.DataDir, "bin")
		if err := Build(ctx, cfg.ModuleDir, dir); err != nil {
			return binaries{}, err
		}
	}
	b := binaries{contoso: cfg.Contoso, nats: filepath.Join(dir, natsServerBin), toxiproxy: filepath.Join(dir, toxiproxyBin)}
	if b.contoso == "" {
		exe, err := os.Executable()
		if err != nil {
			return b, fmt.Errorf("the contoso binary: %w", err)
		}
		b.contoso = exe
	}
	for _, path := range []string{b.contoso, b.nats, b.toxiproxy} {
		if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return b, fmt.Errorf("binary %s: not an executable file (build it, or leave the binaries directory empty to build it)", path)
		}
	}
	return b, nil
}
