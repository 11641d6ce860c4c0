package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso/shoes/internal/deploy"
	"github.com/contoso/shoes/internal/pki"
	"github.com/contoso/shoes/internal/store"
)

const storeUsage = `usage: contoso store <subcommand> [flags]

subcommands:
  users      make (or reuse) one nkey per role in -dir and print the nats-server authorization block
  provision  declare every replicated asset, as the store's administrator
`

// runStore serves the store's operator tooling: the users the servers
// accept, and the one-time declaration of the assets.
func runStore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, storeUsage)
		return errors.New("store: a subcommand is required")
	}
	switch args[0] {
	case "users":
		return runStoreUsers(args[1:], stdout, stderr)
	case "provision":
		return runStoreProvision(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, storeUsage)
	return fmt.Errorf("store: unknown subcommand %q", args[0])
}

// runStoreUsers makes one user nkey seed per role in a directory (each
// file private to its owner; existing ones are kept) and prints the
// authorization block every nats-server of the cluster needs.
func runStoreUsers(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("store users", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "directory of the seeds, one <role>.nk per role (admin, stamp, edge, ops, agent); required")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("-dir is required")
	}
	users, err := deploy.LoadStoreUsers(*dir)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, store.ServerConfig(users.Users()))
	return err
}

// runStoreProvision declares every replicated asset, or brings an existing
// one to its declared configuration (limits included), so that stamps,
// whose users may not, find them.
func runStoreProvision(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("store provision", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var conn natsFlags
	conn.register(fs, "nats://127.0.0.1:4222", "the store servers")
	replicas := fs.Int("replicas", 3, "replicas of every asset: 3 (one per data region) or 1 for a single server")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long to wait for the cluster to accept the assets")
	regions := fs.String("regions", "", "the data regions, comma-separated: each gets its intake stream, INTAKE_<region>, led from the region (none: every order goes to ORDERS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var intake []string
	if *regions != "" {
		intake = strings.Split(*regions, ",")
	}
	if *replicas != 1 && *replicas != 3 {
		return fmt.Errorf("-replicas must be 1 or 3, not %d", *replicas)
	}
	creds, err := conn.credentials()
	if err != nil {
		return err
	}
	opts, err := creds.Options()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(conn.url, append(opts, nats.Name("provision"), nats.Timeout(10*time.Second))...)
	if err != nil {
		return fmt.Errorf("connect to the store: %w", err)
	}
	defer nc.Close()
	openCtx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if _, err := store.Provision(openCtx, store.Config{Conn: nc, Replicas: *replicas, Regions: intake}); err != nil {
		return err
	}
	line, _ := json.Marshal(map[string]any{"event": "provisioned", "replicas": *replicas, "regions": intake})
	fmt.Fprintf(stdout, "%s\n", line)
	return nil
}

// runCerts makes (or reuses) a CA in -dir and issues a certificate for
// -host, for the parts of a deployment that runs with its own small CA.
func runCerts(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "directory of the CA (ca.pem, ca-key.pem) and of the certificates; required")
	hosts := fs.String("host", "", "comma-separated DNS names and IP addresses the certificate is for; required")
	name := fs.String("name", "", "file name stem of the certificate (<name>.pem, <name>-key.pem); empty: the first host")
	if err := fs.Parse(args); err != nil {
		return err
	}
	list := splitList(*hosts)
	if *dir == "" || len(list) == 0 {
		return errors.New("-dir and -host are required")
	}
	ca, err := pki.LoadOrCreateCA(*dir)
	if err != nil {
		return err
	}
	cert, err := ca.Issue(list...)
	if err != nil {
		return err
	}
	stem := *name
	if stem == "" {
		stem = list[0]
	}
	certPath, keyPath := filepath.Join(*dir, stem+".pem"), filepath.Join(*dir, stem+"-key.pem")
	if err := pki.WriteKeyPair(cert, certPath, keyPath); err != nil {
		return err
	}
	line, _ := json.Marshal(map[string]string{"ca": ca.CertPath(), "cert": certPath, "key": keyPath})
	fmt.Fprintf(stdout, "%s\n", line)
	return nil
}
