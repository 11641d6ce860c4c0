// Command bare is the baselines of bench/compare.sh: a plain net/http
// server that answers every request with the same bytes, read once from a
// file (a stamp's answer to GET /api/products/{id}), and nothing else: no
// middleware, no routing, no telemetry; or, with -proxy, the standard
// library's reverse proxy (httputil.ReverseProxy) in front of a URL, adding
// one header: the least a Go proxy does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bare:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done; it prints the address it listens on as
// its first line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	bodyFile := fs.String("body", "", "file whose bytes every answer carries; required without -proxy")
	contentType := fs.String("content-type", "application/json", "Content-Type of every answer")
	proxyTo := fs.String("proxy", "", "URL to proxy every request to instead (http://host:port)")
	header := fs.String("header", "", "with -proxy, a header to add to every request: Name: value")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var h http.Handler
	switch {
	case *proxyTo != "":
		target, err := url.Parse(*proxyTo)
		if err != nil || target.Host == "" {
			return fmt.Errorf("-proxy %q: want http://host:port", *proxyTo)
		}
		name, value, _ := strings.Cut(*header, ":")
		h = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				if name != "" {
					pr.Out.Header.Set(name, strings.TrimSpace(value))
				}
			},
			Transport: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute},
		}
	case *bodyFile != "":
		body, err := os.ReadFile(*bodyFile)
		if err != nil {
			return fmt.Errorf("read -body: %w", err)
		}
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", *contentType)
			_, _ = w.Write(body)
		})
	default:
		return errors.New("-body or -proxy is required")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Fprintf(stdout, "http://%s\n", ln.Addr())
	srv := &http.Server{Handler: h}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
