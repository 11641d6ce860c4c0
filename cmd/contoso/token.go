package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/contoso/shoes/internal/auth"
)

func runToken(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "jwks" {
		return runTokenJWKS(args[1:], stdout, stderr)
	}
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

// runTokenJWKS prints the public JWKS of the development issuer in a data
// directory: what a stamp's -jwks FILE takes to verify that issuer's tokens
// on a host that does not hold its private key.
func runTokenJWKS(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token jwks", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", ".contoso", "data directory of the development issuer (its key is made there if there is none, as for token)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("token jwks takes no arguments, only -data")
	}
	issuer, err := auth.LoadOrCreateIssuer(*data)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", issuer.JWKS())
	return nil
}
