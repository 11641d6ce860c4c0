package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/contoso/shoes/internal/autoscale"
)

const scaleUsage = `usage:
  contoso scale [-ops URL] [-token T]                       print the scaling status
  contoso scale -region R [-min N] [-max N] [-until TIME]   change a region's limits
  contoso scale -region R -cancel                           end a region's pre-scale early
  contoso scale [-target 0.6] [-out 2s] [-in 60s]           change the rules

With -until, -min is a pre-scale: the region runs at least N instances until
TIME (RFC 3339, or a duration from now such as 2h), capacity warmed for a
known launch; without it, -min and -max are the region's limits. Prints the
scaling status after the change, as JSON.

flags:
`

// runScale is `contoso scale`: a client of the deployment's /ops/scaling
// API.
func runScale(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), scaleUsage)
		fs.PrintDefaults()
	}
	var (
		ops    = fs.String("ops", "http://127.0.0.1:8090", "the deployment's operations address")
		token  = fs.String("token", "", "admin bearer token; empty: $"+envAdminToken)
		ca     = fs.String("ca", "", "PEM file of the CA of an https:// operations address; empty: the system's roots")
		region = fs.String("region", "", "the region whose limits change")
		minN   = fs.Int("min", 0, "the least instances of the region (with -until: until then)")
		maxN   = fs.Int("max", 0, "the most instances of the region")
		until  = fs.String("until", "", "with -min: a pre-scale until this time (RFC 3339) or for this long (a duration)")
		cancel = fs.Bool("cancel", false, "end the region's pre-scale")
		target = fs.Float64("target", 0, "the utilisation the autoscaler steers to (0.1 to 0.95)")
		out    = fs.Duration("out", 0, "how long the load must stay above the target before instances are added")
		in     = fs.Duration("in", 0, "the stabilisation window before an instance is removed")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("scale: unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	u, err := scaleUpdate(set, *region, *minN, *maxN, *until, *cancel, *target, *out, *in, time.Now())
	if err != nil {
		return fmt.Errorf("scale: %w", err)
	}
	if *token == "" {
		*token = getenv(envAdminToken) // not the flag's default: -h would print it
	}
	tlsCfg, err := clientTLS("ca", *ca)
	if err != nil {
		return err
	}
	client := &autoscale.Client{BaseURL: *ops, Token: *token,
		HTTP: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}}
	var st autoscale.Status
	if u == nil {
		st, err = client.Status(ctx)
	} else {
		st, err = client.Apply(ctx, *u)
	}
	if err != nil {
		return fmt.Errorf("scale: %w", err)
	}
	return printIndented(stdout, st)
}

// scaleUpdate is the change the flags ask for; nil when they ask for
// none (print the status).
func scaleUpdate(set map[string]bool, region string, minN, maxN int, until string, cancel bool, target float64, out, in time.Duration, now time.Time) (*autoscale.Update, error) {
	var u autoscale.Update
	changed := false
	if set["target"] {
		u.Target, changed = &target, true
	}
	if set["out"] {
		s := out.Seconds()
		u.ScaleOutAfterSeconds, changed = &s, true
	}
	if set["in"] {
		s := in.Seconds()
		u.ScaleInAfterSeconds, changed = &s, true
	}
	regional := set["min"] || set["max"] || set["until"] || set["cancel"]
	if regional && region == "" {
		return nil, errors.New("-min, -max, -until and -cancel need -region")
	}
	if region != "" && !regional {
		return nil, errors.New("-region needs -min, -max, -until or -cancel")
	}
	if regional {
		var ru autoscale.RegionUpdate
		switch {
		case set["until"]:
			if !set["min"] {
				return nil, errors.New("-until needs -min: the pre-scale's least instances")
			}
			at, err := untilTime(until, now)
			if err != nil {
				return nil, err
			}
			ru.PreScale = &autoscale.PreScale{Min: minN, Until: at}
		case set["min"]:
			ru.Min = &minN
		}
		if set["max"] {
			ru.Max = &maxN
		}
		ru.CancelPreScale = cancel
		u.Regions, changed = map[string]autoscale.RegionUpdate{region: ru}, true
	}
	if !changed {
		return nil, nil
	}
	return &u, nil
}

// untilTime reads -until: an RFC 3339 time, or a duration from now.
func untilTime(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("-until %s: want a time in the future", s)
		}
		return now.Add(d), nil
	}
	at, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("-until %q: want an RFC 3339 time (2026-12-05T09:00:00Z) or a duration (2h)", s)
	}
	return at, nil
}
