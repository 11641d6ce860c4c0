package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/contoso/shoes/internal/auth"
)

func runToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		data  = fs.String("data", ".contoso", "data directory of the deployment whose development issuer signs the token")
		sub   = fs.String("sub", "", "the user (subject); required")
		admin = fs.Bool("admin", false, "grant the admin role")
		ttl   = fs.Duration("ttl", time.Hour, "how long the token is valid")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sub == "" {
		return fmt.Errorf("-sub is required")
	}
	if *ttl <= 0 || *ttl > 30*24*time.Hour {
		return fmt.Errorf("-ttl must be between 1ns and 720h")
	}
	issuer, err := auth.LoadOrCreateIssuer(*data)
	if err != nil {
		return err
	}
	tok, err := issuer.Mint(*sub, *admin, *ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
