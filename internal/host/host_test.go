package host

import (
	"slices"
	"strings"
	"testing"
)

func validConfig(t *testing.T) Config {
	return Config{Region: "westeurope", DataDir: t.TempDir(), NATSURL: "nats://127.0.0.1:4222", Listen: "127.0.0.1:8081",
		Contoso: "/usr/local/bin/contoso", Release: "v1", StampFlags: []string{"--nats", "nats://127.0.0.1:4222", "--lkg=/var/lib/contoso/weu.lkg"}}
}

func TestConfigIsChecked(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // part of the error; empty: valid
	}{
		{"valid", func(*Config) {}, ""},
		{"a wildcard listen address with the advertised host", func(c *Config) {
			c.Listen, c.Advertise = "0.0.0.0:8081", "https://stamp-weu-1.contoso.example"
		}, ""},
		{"free ports", func(c *Config) { c.Listen = "127.0.0.1:0" }, ""},
		{"no region", func(c *Config) { c.Region = "" }, "a region is required"},
		{"no data directory", func(c *Config) { c.DataDir = "" }, "a data directory is required"},
		{"no store", func(c *Config) { c.NATSURL = "" }, "the store's URLs are required"},
		{"fewer than none", func(c *Config) { c.Instances = -1 }, "want 1 or more"},
		{"another environment", func(c *Config) { c.Environment = "staging" }, "want dev or prod"},
		{"--listen among the stamp flags", func(c *Config) { c.StampFlags = append(c.StampFlags, "--listen=127.0.0.1:9000") }, "the host sets --listen"},
		{"-release among the stamp flags", func(c *Config) { c.StampFlags = append(c.StampFlags, "-release", "v9") }, "the host sets --release"},
		{"--fault among the stamp flags", func(c *Config) { c.StampFlags = append(c.StampFlags, "--fault", "error=1") }, "the host sets --fault"},
		{"--region among the stamp flags", func(c *Config) { c.StampFlags = append(c.StampFlags, "--region", "eastus") }, "the host sets --region"},
		{"a listen address without a port", func(c *Config) { c.Listen = "127.0.0.1" }, "listen address"},
		{"a wildcard listen address alone", func(c *Config) { c.Listen = "0.0.0.0:8081" }, "wildcard"},
		{"an empty listen host alone", func(c *Config) { c.Listen = ":8081" }, "wildcard"},
		{"an advertised port", func(c *Config) { c.Advertise = "https://stamp-weu-1.contoso.example:8081" }, "give no port"},
		{"an advertised path", func(c *Config) { c.Advertise = "https://stamp-weu-1.contoso.example/shop" }, "want http://HOST or https://HOST"},
		{"another scheme", func(c *Config) { c.Advertise = "tcp://stamp-weu-1.contoso.example" }, "want http://HOST or https://HOST"},
		{"an advertised wildcard", func(c *Config) { c.Advertise = "http://0.0.0.0" }, "wildcard"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig(t)
			tt.change(&cfg)
			h, err := newHost(cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want == "":
				h.cancel()
			case err == nil:
				t.Fatalf("accepted; want an error with %q", tt.want)
			case !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q, want it to say %q", err, tt.want)
			}
		})
	}
}

// Each stamp listens on the lowest free slot from the listen port, and
// announces the advertised host with that port; the host's own flags come
// first, the stamp flags after.
func TestEachStampHasItsOwnPort(t *testing.T) {
	cfg := validConfig(t)
	cfg.Listen, cfg.Advertise = "0.0.0.0:8081", "https://stamp-weu-1.contoso.example"
	h, err := newHost(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.cancel()
	take := func() *stamp {
		t.Helper()
		p, err := h.freePort()
		if err != nil {
			t.Fatal(err)
		}
		s := &stamp{port: p, version: "v1", binary: cfg.Contoso}
		h.stamps = append(h.stamps, s)
		return s
	}
	a, b, c := take(), take(), take()
	if got := []int{a.port, b.port, c.port}; !slices.Equal(got, []int{8081, 8082, 8083}) {
		t.Fatalf("ports %v, want 8081, 8082, 8083", got)
	}
	// The first drained: a new stamp takes its slot again.
	h.stamps = slices.DeleteFunc(h.stamps, func(s *stamp) bool { return s == a })
	if d := take(); d.port != 8081 {
		t.Errorf("after the first stamp left, a new one took port %d, want 8081", d.port)
	}
	c.fault = "latency=300ms"
	path, args := h.command(c)
	want := []string{"stamp", "--region", "westeurope", "--listen", "0.0.0.0:8083", "--release", "v1", "--env", "dev",
		"--advertise", "https://stamp-weu-1.contoso.example:8083", "--fault", "latency=300ms",
		"--nats", "nats://127.0.0.1:4222", "--lkg=/var/lib/contoso/weu.lkg"}
	if path != cfg.Contoso || !slices.Equal(args, want) {
		t.Errorf("command %s %q\nwant    %s %q", path, args, cfg.Contoso, want)
	}

	// Port 0: each a free port of its own.
	cfg.Listen, cfg.Advertise = "127.0.0.1:0", ""
	if h, err = newHost(cfg); err != nil {
		t.Fatal(err)
	}
	defer h.cancel()
	seen := map[int]bool{}
	for range 5 {
		s := take()
		if s.port == 0 || seen[s.port] {
			t.Fatalf("port %d taken twice or zero: %v", s.port, seen)
		}
		seen[s.port] = true
	}
	if _, args := h.command(h.stamps[0]); slices.Contains(args, "--advertise") {
		t.Errorf("without an advertised host the stamp got %q", args)
	}
}
