package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/contoso/shoes/internal/auth"
	"github.com/contoso/shoes/internal/loadtest"
)

// runLoad runs a launch-day load test against an edge (by default the one
// of `contoso up` on this machine) and writes its report. The report is
// written even when the run could not be made; the error then says why.
func runLoad(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		edge       = fs.String("edge", "http://127.0.0.1:8080", "base URL of the edge")
		regions    = fs.String("regions", strings.Join(loadtest.DefaultRegions(), ","), "client regions, comma-separated; requests take them in turn")
		rate       = fs.Float64("rate", 100, "peak rate in requests per second, reached after --ramp and kept for --duration")
		ramp       = fs.Duration("ramp", 10*time.Second, "time to grow from 0 to --rate")
		hold       = fs.Duration("duration", 30*time.Second, "time at --rate")
		spike      = fs.Duration("spike", 10*time.Second, "launch spike after the hold, on the launch products; 0: none")
		spikeRate  = fs.Float64("spike-rate", 0, "rate during the spike; 0: twice --rate")
		spikeStock = fs.Int("spike-stock", 0, "set every launch SKU's stock to this before the run; 0: keep the stock")
		users      = fs.Int("users", 500, "distinct shoppers")
		timeout    = fs.Duration("timeout", 30*time.Second, "timeout of each request")
		settle     = fs.Duration("settle", 30*time.Second, "how long to follow accepted orders after the load")
		data       = fs.String("data", ".contoso", "data directory of the deployment whose development issuer signs the shoppers' tokens")
		out        = fs.String("out", "load-report", "directory to write report.json and report.html to")
		quiet      = fs.Bool("quiet", false, "no progress lines and no summary; only where the report is")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("load: unexpected argument %q", fs.Arg(0))
	}
	if *out == "" {
		return errors.New("load: -out must name a directory")
	}
	issuer, err := deploymentIssuer("load", *data)
	if err != nil {
		return err
	}
	tlsCfg, err := deploymentTLS(*data)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	ttl := *ramp + *hold + *spike + *settle + time.Hour
	cfg := loadtest.Config{
		Edge:          *edge,
		TLS:           tlsCfg,
		Regions:       splitList(*regions),
		Rate:          *rate,
		Ramp:          *ramp,
		Hold:          *hold,
		Spike:         *spike,
		SpikeRate:     *spikeRate,
		SpikeStock:    *spikeStock,
		Users:         *users,
		Timeout:       *timeout,
		SettleTimeout: *settle,
		Tokens: func(sub string, admin bool) (string, error) {
			return issuer.Mint(sub, admin, ttl, time.Now())
		},
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	runner, err := loadtest.New(cfg)
	if err != nil {
		return err
	}
	rep, runErr := runner.Run(ctx)
	if !*quiet {
		if err := rep.Print(stdout); err != nil {
			return err
		}
	}
	paths, err := writeLoadReport(rep, *out)
	if err != nil {
		return errors.Join(runErr, fmt.Errorf("load: write the report: %w", err))
	}
	fmt.Fprintf(stdout, "report: %s\n", strings.Join(paths, ", "))
	if runErr != nil {
		return fmt.Errorf("load: %w", runErr)
	}
	if rep.Interrupted {
		return errors.New("load: interrupted; the report covers what was sent")
	}
	return nil
}

// writeLoadReport writes report.json and report.html into dir.
func writeLoadReport(rep *loadtest.Report, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, f := range []struct {
		name  string
		write func(io.Writer) error
	}{{"report.json", rep.WriteJSON}, {"report.html", rep.WriteHTML}} {
		path := filepath.Join(dir, f.name)
		file, err := os.Create(path)
		if err != nil {
			return paths, err
		}
		err = f.write(file)
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return paths, fmt.Errorf("%s: %w", path, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// deploymentIssuer is the development token issuer of the deployment whose
// data directory is dir, for cmd. A directory that does not exist is an
// error, not a new key that no deployment trusts.
func deploymentIssuer(cmd, dir string) (*auth.Issuer, error) {
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		return nil, fmt.Errorf("%s: -data %s is not the data directory of a deployment (start `contoso up` first, or point -data at its directory)", cmd, dir)
	}
	issuer, err := auth.LoadOrCreateIssuer(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return issuer, nil
}
