package main

import (
	"context"
	"errors"
	"flag"
	"io"
)

// runPop runs one point of presence: the edge with a single POP, for the
// region it runs in. It follows the stamps registry like `contoso edge`,
// probes the stamps from where it runs and sends its clients to the
// nearest healthy one; a deployment runs one per region.
func runPop(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f edgeFlags
	region := fs.String("region", "", "the POP's region (X-Edge-Pop); it serves every client that reaches it; required")
	f.register(fs, "the point of presence")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *region == "" {
		return errors.New("-region is required")
	}
	if fs.NArg() > 0 {
		return errors.New("pop takes no arguments, only flags")
	}
	return f.run(ctx, edgeRun{region: *region, pops: []string{*region},
		line: map[string]string{"event": "ready", "region": *region}, urlName: "url"}, getenv, stdout, stderr)
}
