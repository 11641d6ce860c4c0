package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/contoso/shoes/internal/healthmodel"
	"github.com/contoso/shoes/internal/slo"
)

// healthModelUsage is the --health-model flag's usage, for up and ops.
const healthModelUsage = "health model the operations plane evaluates (YAML, docs/health-model.md); empty: the built-in one"

// loadHealthModel reads the model a --health-model flag names: nil (the
// built-in one) when path is empty.
func loadHealthModel(path string) (*healthmodel.Model, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--health-model: %w", err)
	}
	m, err := healthmodel.Load(b)
	if err != nil {
		return nil, fmt.Errorf("--health-model %s: %w", path, err)
	}
	return m, nil
}

// runHealth serves the health tooling: `contoso health rules` writes the
// Prometheus recording and alerting rules of the SLOs (multiwindow,
// multi-burn-rate) and of the redundancy alerts.
func runHealth(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rules" {
		fmt.Fprintln(stderr, "usage: contoso health rules [-slos FILE] [-out FILE]")
		return errors.New("health: the only subcommand is rules")
	}
	fs := flag.NewFlagSet("health rules", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		file = fs.String("slos", "", "SLO definitions (YAML, docs/slo.md); empty: the built-in ones")
		out  = fs.String("out", "", "file to write; empty: standard output")
	)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	slos := slo.Default()
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			return fmt.Errorf("-slos: %w", err)
		}
		if slos, err = slo.Load(b); err != nil {
			return fmt.Errorf("-slos: %w", err)
		}
	}
	rules, err := slo.Rules(slos)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = stdout.Write(rules)
		return err
	}
	return os.WriteFile(*out, rules, 0o644)
}
