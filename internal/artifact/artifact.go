// Package artifact makes and reads the store's release artifact: an OCI
// image holding the static contoso binary and nothing else, pushed to a
// registry and referenced by digest from then on. No container daemon is
// involved: the image is assembled in memory and spoken to the registry
// over its HTTP API.
//
// A release is built once (Build), pushed once (Push), and every
// environment then reads it by digest (Inspect, Extract). Proof that a
// digest passed the experiments of `contoso verify` in an environment is
// kept next to it in the same repository (Attest, Verified), so that one
// registry serving Dev/Test and production lets production ask whether
// Dev/Test passed the very bytes it is about to run.
package artifact

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Image labels (the OCI annotation keys, used as config labels), where the
// binary lives in the image and the user it runs as.
const (
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source" // optional
	BinaryPath    = "/contoso"                        // where the binary lives in the image
	User          = "65532:65532"                     // non-root
)

// DefaultTimeout bounds every call that speaks to a registry, unless its
// context or WithTimeout says otherwise.
const DefaultTimeout = 60 * time.Second

// ErrNotByDigest is wrapped by the error for a reference that names a tag
// where a digest is required: a release is referenced by digest, since a
// tag may be moved to other bytes.
var ErrNotByDigest = errors.New("not a digest reference")

// ErrNotRelease is wrapped by the error for an image that Build did not
// make: another entrypoint or user, no version label, more than one layer.
var ErrNotRelease = errors.New("not a release image")

// Option changes how a call reaches the registry.
type Option func(*options)

type options struct {
	insecure  bool
	auth      authn.Authenticator // nil: authn.DefaultKeychain
	transport http.RoundTripper   // nil: remote.DefaultTransport
	timeout   time.Duration       // zero: DefaultTimeout
}

// WithInsecure lets the call speak plain HTTP to a registry on loopback
// (127.0.0.0/8, ::1, localhost), as the development registry and tests do.
// A registry anywhere else is refused with it: between hosts, a release
// travels over TLS.
func WithInsecure() Option { return func(o *options) { o.insecure = true } }

// WithAuth sends these credentials instead of those of the default
// keychain (authn.DefaultKeychain reads ~/.docker/config.json, which
// `az acr login` and `docker login` write, and its credential helpers).
func WithAuth(a authn.Authenticator) Option { return func(o *options) { o.auth = a } }

// WithTransport sends the registry's requests through rt.
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithTimeout bounds the whole call (every request and retry in it); zero
// or less keeps DefaultTimeout.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

func newOptions(opts []Option) *options {
	o := &options{}
	for _, opt := range opts {
		opt(o)
	}
	if o.timeout <= 0 {
		o.timeout = DefaultTimeout
	}
	return o
}

// bound returns ctx limited to the call's timeout.
func (o *options) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, o.timeout)
}

// remote returns the go-containerregistry options of one call.
func (o *options) remote(ctx context.Context) []remote.Option {
	ro := []remote.Option{remote.WithContext(ctx), remote.WithUserAgent("contoso")}
	if o.auth != nil {
		ro = append(ro, remote.WithAuth(o.auth))
	} else {
		ro = append(ro, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	}
	if o.transport != nil {
		ro = append(ro, remote.WithTransport(o.transport))
	}
	return ro
}

func (o *options) names() []name.Option {
	opts := []name.Option{name.StrictValidation}
	if o.insecure {
		opts = append(opts, name.Insecure)
	}
	return opts
}

// checkRegistry refuses plain HTTP to a registry that is not on loopback.
func (o *options) checkRegistry(reg name.Registry) error {
	if o.insecure && !isLoopback(reg.RegistryStr()) {
		return fmt.Errorf("plain HTTP is allowed only to a registry on loopback, not %s", reg.RegistryStr())
	}
	return nil
}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = strings.Trim(hostport, "[]")
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// digestRef parses a reference that must name a sha256 digest
// (REPO@sha256:<hex>, its registry written out).
func (o *options) digestRef(ref string) (name.Digest, error) {
	if !strings.Contains(ref, "@") {
		if _, err := name.NewTag(ref, o.names()...); err == nil {
			return name.Digest{}, fmt.Errorf("%s names a tag: %w; use REPO@sha256:... (the push printed it)", ref, ErrNotByDigest)
		}
		return name.Digest{}, fmt.Errorf("%q is not an image reference by digest (REPO@sha256:...): %w", ref, ErrNotByDigest)
	}
	d, err := name.NewDigest(ref, o.names()...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("%q is not an image reference by digest (REPO@sha256:...): %w", ref, err)
	}
	if !strings.HasPrefix(d.DigestStr(), "sha256:") {
		return name.Digest{}, fmt.Errorf("%s: only sha256 digests are releases", ref)
	}
	if err := o.checkRegistry(d.Context().Registry); err != nil {
		return name.Digest{}, err
	}
	return d, nil
}

// tagRef parses a reference that must name a tag (REPO:TAG, its registry
// written out).
func (o *options) tagRef(ref string) (name.Tag, error) {
	if strings.Contains(ref, "@") {
		return name.Tag{}, fmt.Errorf("%s: push to a tag (REPO:TAG); the digest is what the push returns", ref)
	}
	t, err := name.NewTag(ref, o.names()...)
	if err != nil {
		return name.Tag{}, fmt.Errorf("%q is not an image reference with a tag (REGISTRY/REPO:TAG): %w", ref, err)
	}
	if err := o.checkRegistry(t.Context().Registry); err != nil {
		return name.Tag{}, err
	}
	return t, nil
}
