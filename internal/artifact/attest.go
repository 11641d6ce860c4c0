package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// AttestationMediaType is the media type of an attestation's config blob,
// the JSON of an Attestation.
const AttestationMediaType types.MediaType = "application/vnd.contoso.verify.v1+json"

// emptyMediaType and emptyJSON are the OCI empty descriptor an artifact
// without content of its own lists as its one layer (image-spec 1.1).
const (
	emptyMediaType types.MediaType = "application/vnd.oci.empty.v1+json"
	emptyJSON                      = "{}"
)

// maxAttestation bounds the attestation Verified reads.
const maxAttestation = 64 << 10

// ErrNotVerified is wrapped by Verified's error when a digest has no
// passing verification.
var ErrNotVerified = errors.New("not verified")

// Attestation is the proof that a digest passed `contoso verify` in an
// environment. It is kept in the image's own repository, so every
// environment that reads the registry sees it.
type Attestation struct {
	Digest      string    `json:"digest"`  // sha256:...; empty in Attest: the image reference's
	Env         string    `json:"env"`     // the environment that ran the experiments, e.g. "dev"; required
	Profile     string    `json:"profile"` // the verify profile, e.g. "ci"; required
	Passed      bool      `json:"passed"`  // every experiment's verdict was a pass
	Experiments int       `json:"experiments"`
	At          time.Time `json:"at"`           // zero in Attest: now
	By          string    `json:"by,omitempty"` // who or what ran it
}

var validDigest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// check says what an attestation lacks.
func (a Attestation) check() error {
	switch {
	case !validDigest.MatchString(a.Digest):
		return fmt.Errorf("digest %q is not sha256:<64 hex>", a.Digest)
	case a.Env == "":
		return errors.New("the environment is required")
	case a.Profile == "":
		return errors.New("the profile is required")
	case a.Experiments < 0:
		return fmt.Errorf("%d experiments", a.Experiments)
	case a.At.IsZero():
		return errors.New("the time is required")
	}
	return nil
}

// attestationTag is the tag holding the attestation of digest
// "sha256:<hex>": "sha256-<hex>.verify", after cosign's convention for
// what is said about an image.
func attestationTag(digest string) string {
	return strings.Replace(digest, ":", "-", 1) + ".verify"
}

// Attest stores a as a small OCI artifact tagged "sha256-<hex>.verify" in
// the image's repository: a manifest whose config, of media type
// AttestationMediaType, holds a's JSON, and whose one layer is the OCI
// empty descriptor. A later attestation for the same digest replaces it
// (the last verification is the one that counts). The image must be in
// the repository.
func Attest(ctx context.Context, imageRef string, a Attestation, opts ...Option) error {
	o := newOptions(opts)
	d, err := o.digestRef(imageRef)
	if err != nil {
		return fmt.Errorf("attest: %w", err)
	}
	if a.Digest == "" {
		a.Digest = d.DigestStr()
	}
	if a.Digest != d.DigestStr() {
		return fmt.Errorf("attest %s: the attestation is for %s", imageRef, a.Digest)
	}
	if a.At.IsZero() {
		a.At = time.Now()
	}
	a.At = a.At.UTC()
	if err := a.check(); err != nil {
		return fmt.Errorf("attest %s: %w", imageRef, err)
	}
	body, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("attest %s: %w", imageRef, err)
	}
	ctx, cancel := o.bound(ctx)
	defer cancel()
	ro := o.remote(ctx)
	if _, err := remote.Head(d, ro...); err != nil {
		if isNotFound(err) {
			return fmt.Errorf("attest %s: the image is not in the repository", imageRef)
		}
		return fmt.Errorf("attest %s: %w", imageRef, err)
	}
	config := static.NewLayer(body, AttestationMediaType)
	empty := static.NewLayer([]byte(emptyJSON), emptyMediaType)
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1}
	for i, l := range []v1.Layer{config, empty} {
		if err := remote.WriteLayer(d.Context(), l, ro...); err != nil {
			return fmt.Errorf("attest %s: %w", imageRef, err)
		}
		desc, err := descriptorOf(l)
		if err != nil {
			return fmt.Errorf("attest %s: %w", imageRef, err)
		}
		if i == 0 {
			m.Config = desc
		} else {
			m.Layers = append(m.Layers, desc)
		}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("attest %s: %w", imageRef, err)
	}
	if err := remote.Put(d.Context().Tag(attestationTag(a.Digest)), rawManifest(raw), ro...); err != nil {
		return fmt.Errorf("attest %s: %w", imageRef, err)
	}
	return nil
}

// Verified returns the attestation of the digest imageRef names when it
// records a pass. When there is none, or it did not pass, the error wraps
// ErrNotVerified and says why ("sha256:... has no passing verification:
// ..."); a failed attestation is returned with it.
func Verified(ctx context.Context, imageRef string, opts ...Option) (Attestation, error) {
	o := newOptions(opts)
	d, err := o.digestRef(imageRef)
	if err != nil {
		return Attestation{}, fmt.Errorf("verified: %w", err)
	}
	ctx, cancel := o.bound(ctx)
	defer cancel()
	ro := o.remote(ctx)
	tag := d.Context().Tag(attestationTag(d.DigestStr()))
	desc, err := remote.Get(tag, ro...)
	if err != nil {
		if isNotFound(err) {
			return Attestation{}, notVerified(d, "no verification is recorded in "+d.Context().String())
		}
		return Attestation{}, fmt.Errorf("read the verification of %s: %w", d.DigestStr(), err)
	}
	if !desc.MediaType.IsImage() {
		return Attestation{}, notVerified(d, fmt.Sprintf("the tag %s holds a %s, not a verification", tag.TagStr(), desc.MediaType))
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return Attestation{}, fmt.Errorf("read the verification of %s: %w", d.DigestStr(), err)
	}
	if m.Config.MediaType != AttestationMediaType {
		return Attestation{}, notVerified(d, fmt.Sprintf("the tag %s holds a %s, not a verification", tag.TagStr(), m.Config.MediaType))
	}
	if m.Config.Size > maxAttestation {
		return Attestation{}, fmt.Errorf("read the verification of %s: %d bytes, more than an attestation may have", d.DigestStr(), m.Config.Size)
	}
	body, err := readBlob(d.Context().Digest(m.Config.Digest.String()), ro)
	if err != nil {
		return Attestation{}, fmt.Errorf("read the verification of %s: %w", d.DigestStr(), err)
	}
	if h, _, _ := v1.SHA256(bytes.NewReader(body)); h != m.Config.Digest {
		return Attestation{}, fmt.Errorf("read the verification of %s: the registry answered a blob whose digest is not %s", d.DigestStr(), m.Config.Digest)
	}
	a, err := decodeAttestation(body)
	if err != nil {
		return Attestation{}, fmt.Errorf("read the verification of %s: %w", d.DigestStr(), err)
	}
	if a.Digest != d.DigestStr() {
		return Attestation{}, notVerified(d, "the recorded verification is for "+a.Digest)
	}
	if !a.Passed {
		return a, notVerified(d, fmt.Sprintf("the verification with profile %s in %s at %s failed (%d experiments)",
			a.Profile, a.Env, a.At.Format(time.RFC3339), a.Experiments))
	}
	return a, nil
}

// decodeAttestation reads an attestation's JSON (one object; fields it
// does not know are ignored) and checks it is complete.
func decodeAttestation(b []byte) (Attestation, error) {
	var a Attestation
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&a); err != nil {
		return Attestation{}, fmt.Errorf("the attestation: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Attestation{}, errors.New("the attestation: data after its JSON object")
	}
	if err := a.check(); err != nil {
		return Attestation{}, fmt.Errorf("the attestation: %w", err)
	}
	return a, nil
}

// notVerifiedError says why a digest is not verified.
type notVerifiedError struct {
	digest, reason string
}

func notVerified(d name.Digest, reason string) error {
	return &notVerifiedError{digest: d.DigestStr(), reason: reason}
}

func (e *notVerifiedError) Error() string {
	return e.digest + " has no passing verification: " + e.reason
}

func (e *notVerifiedError) Unwrap() error { return ErrNotVerified }

func readBlob(d name.Digest, ro []remote.Option) ([]byte, error) {
	l, err := remote.Layer(d, ro...)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxAttestation+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxAttestation {
		return nil, fmt.Errorf("more than %d bytes", maxAttestation)
	}
	return b, nil
}

func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}

func descriptorOf(l v1.Layer) (v1.Descriptor, error) {
	mt, err := l.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	h, err := l.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	n, err := l.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Size: n, Digest: h}, nil
}

// rawManifest is an OCI image manifest to put as it is.
type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error) { return m, nil }

func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
