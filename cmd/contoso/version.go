package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/contoso/shoes/internal/buildinfo"
)

// runVersion prints which release this binary is: one line for people, or
// buildinfo.Info as JSON.
func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the build information as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("version takes no arguments, only flags")
	}
	info := buildinfo.Read()
	if *asJSON {
		return json.NewEncoder(stdout).Encode(info)
	}
	_, err := fmt.Fprintln(stdout, versionLine(info))
	return err
}

// versionLine is "contoso v1.4.0 (revision abc123, go1.26.8)", with
// "modified" after the revision when the tree had local changes.
func versionLine(info buildinfo.Info) string {
	detail := info.Go
	if info.Revision != "" {
		rev := "revision " + info.Revision
		if info.Modified {
			rev += ", modified"
		}
		detail = rev + ", " + detail
	}
	return fmt.Sprintf("contoso %s (%s)", info.Version, detail)
}
