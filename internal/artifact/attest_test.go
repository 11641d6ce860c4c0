package artifact_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/contoso/shoes/internal/artifact"
	"github.com/contoso/shoes/internal/artifact/artifacttest"
)

// randomImage is an image of random bytes: attestations are about any
// digest in the repository, so these tests need no real binary.
func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func pushRandom(t *testing.T, reg, tag string) string {
	t.Helper()
	ref, err := artifact.Push(context.Background(), randomImage(t), reg+"/contoso/shoes:"+tag, artifact.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestAttestations(t *testing.T) {
	reg := artifacttest.NewRegistry(t)
	ctx := context.Background()
	insecure := artifact.WithInsecure()
	one, two := pushRandom(t, reg, "one"), pushRandom(t, reg, "two")
	digestOf := func(ref string) string { return strings.SplitN(ref, "@", 2)[1] }

	notVerified := func(ref, reason string) artifact.Attestation {
		t.Helper()
		a, err := artifact.Verified(ctx, ref, insecure)
		if !errors.Is(err, artifact.ErrNotVerified) {
			t.Fatalf("verified %s: %+v, %v; want ErrNotVerified", ref, a, err)
		}
		if want := digestOf(ref) + " has no passing verification: "; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), reason) {
			t.Fatalf("verified %s: %q, want %q... saying %q", ref, err, want, reason)
		}
		return a
	}

	notVerified(one, "no verification is recorded")

	at := time.Date(2026, 5, 4, 3, 2, 1, 0, time.FixedZone("CEST", 2*3600))
	failed := artifact.Attestation{Env: "dev", Profile: "ci", Passed: false, Experiments: 7, At: at, By: "ci"}
	if err := artifact.Attest(ctx, one, failed, insecure); err != nil {
		t.Fatal(err)
	}
	if a := notVerified(one, "the verification with profile ci in dev at 2026-05-04T01:02:01Z failed (7 experiments)"); a.Passed || a.Experiments != 7 {
		t.Fatalf("a failed verification came back as %+v", a)
	}

	passed := artifact.Attestation{Env: "dev", Profile: "ci", Passed: true, Experiments: 7, At: at, By: "ci"}
	if err := artifact.Attest(ctx, one, passed, insecure); err != nil {
		t.Fatal(err)
	}
	got, err := artifact.Verified(ctx, one, insecure)
	if err != nil {
		t.Fatal(err)
	}
	want := passed
	want.Digest, want.At = digestOf(one), at.UTC()
	if got != want {
		t.Fatalf("verified %+v, want %+v", got, want)
	}

	// The other image of the repository has its own record.
	notVerified(two, "no verification is recorded")
	if err := artifact.Attest(ctx, two, failed, insecure); err != nil {
		t.Fatal(err)
	}
	notVerified(two, "failed")
	if got, err := artifact.Verified(ctx, one, insecure); err != nil || !got.Passed {
		t.Fatalf("the first image after the second's failure: %+v, %v", got, err)
	}

	// A later verification replaces the earlier one.
	if err := artifact.Attest(ctx, one, failed, insecure); err != nil {
		t.Fatal(err)
	}
	notVerified(one, "failed")

	// An attestation without a time is stamped now.
	before := time.Now().Add(-time.Second)
	if err := artifact.Attest(ctx, two, artifact.Attestation{Env: "dev", Profile: "ci", Passed: true, Experiments: 1}, insecure); err != nil {
		t.Fatal(err)
	}
	if got, err := artifact.Verified(ctx, two, insecure); err != nil || got.At.Before(before) || got.At.Location() != time.UTC {
		t.Fatalf("verified %+v, %v; want a pass stamped after %v in UTC", got, err, before)
	}
}

func TestAttestRefuses(t *testing.T) {
	reg := artifacttest.NewRegistry(t)
	ctx := context.Background()
	ref := pushRandom(t, reg, "one")
	other := pushRandom(t, reg, "other")
	absent := reg + "/contoso/shoes@sha256:" + strings.Repeat("cd", 32)
	ok := artifact.Attestation{Env: "dev", Profile: "ci", Passed: true, Experiments: 3}
	cases := []struct {
		name string
		ref  string
		a    func(artifact.Attestation) artifact.Attestation
		want string
	}{
		{"an image not in the repository", absent, nil, "not in the repository"},
		{"another digest", ref, func(a artifact.Attestation) artifact.Attestation {
			a.Digest = strings.SplitN(other, "@", 2)[1]
			return a
		}, "the attestation is for"},
		{"no environment", ref, func(a artifact.Attestation) artifact.Attestation { a.Env = ""; return a }, "environment is required"},
		{"no profile", ref, func(a artifact.Attestation) artifact.Attestation { a.Profile = ""; return a }, "profile is required"},
		{"negative experiments", ref, func(a artifact.Attestation) artifact.Attestation { a.Experiments = -1; return a }, "-1 experiments"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := ok
			if c.a != nil {
				a = c.a(a)
			}
			err := artifact.Attest(ctx, c.ref, a, artifact.WithInsecure())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("attest: %v, want an error saying %q", err, c.want)
			}
			if _, err := artifact.Verified(ctx, c.ref, artifact.WithInsecure()); !errors.Is(err, artifact.ErrNotVerified) {
				t.Fatalf("after a refused attestation: %v, want ErrNotVerified", err)
			}
		})
	}
}

// TestSomethingElseUnderTheTagIsNoVerification: whatever sits under an
// attestation's tag must be one to count.
func TestSomethingElseUnderTheTagIsNoVerification(t *testing.T) {
	reg := artifacttest.NewRegistry(t)
	ctx := context.Background()
	ref := pushRandom(t, reg, "one")
	d, err := name.NewDigest(ref)
	if err != nil {
		t.Fatal(err)
	}
	tag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".verify")
	if err := remote.Write(tag, randomImage(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := artifact.Verified(ctx, ref, artifact.WithInsecure()); !errors.Is(err, artifact.ErrNotVerified) || !strings.Contains(err.Error(), "not a verification") {
		t.Fatalf("an image under the attestation's tag: %v, want ErrNotVerified saying it is not a verification", err)
	}
}
