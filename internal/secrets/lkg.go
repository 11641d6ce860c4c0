package secrets

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/contoso/shoes/internal/keyfile"
)

// The last-known-good (LKG) file holds the cache's last complete set of
// secrets, sealed with AES-256-GCM, so a new instance can start while the
// store is down. On disk it is JSON (format version 2):
//
//	{"version":2,"region":"westeurope","nonce":"<base64>","ciphertext":"<base64>"}
//
// The plaintext is JSON {"fetchedAt":"<RFC 3339>","secrets":{"name":"value"}}.
// The AES key is derived with HKDF-SHA256 from the configured 32-byte key.
// The additional data binds the ciphertext to the format, its version and
// the region of the stamp that sealed it, so a file copied from another
// region, a file of another format version (a rolled-back or older file),
// a file sealed under another key and a tampered file all fail to open. The
// region and version in the envelope only make the refusal clear: editing
// them makes the file fail to decrypt. Version 1 files (no region) are
// refused; the next successful fetch replaces them.

const (
	lkgVersion      = 2
	lkgKeyLen       = 32
	lkgMaxFileBytes = 16 << 20
	lkgKDFInfo      = "github.com/contoso/shoes/internal/secrets last-known-good"
)

// lkgAAD is the additional data of a file of version v sealed for region:
// neither the version nor the region can be changed without failing to open.
func lkgAAD(v int, region string) []byte {
	return fmt.Appendf(nil, "contoso-shoes secrets last-known-good file\x00version=%d\x00region=%s", v, region)
}

// errLKGMissing is the cause when there is no LKG file yet.
var errLKGMissing = errors.New("no last-known-good file")

// errLKGForeign is wrapped when the LKG file was sealed for another region
// or in another format version: it is never used.
var errLKGForeign = errors.New("last-known-good file not sealed for this region and format version")

// lkgFile is the on-disk envelope.
type lkgFile struct {
	Version    int    `json:"version"`
	Region     string `json:"region,omitempty"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// lkgContents is the sealed plaintext. Values are plain strings here, never
// Value (whose MarshalJSON redacts); this struct must never be logged.
type lkgContents struct {
	FetchedAt time.Time         `json:"fetchedAt"`
	Secrets   map[string]string `json:"secrets"`
}

// newLKGAEAD returns the AEAD that seals LKG files under key.
func newLKGAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != lkgKeyLen {
		return nil, fmt.Errorf("secrets: LKGKey must be %d bytes, got %d", lkgKeyLen, len(key))
	}
	k, err := hkdf.Key(sha256.New, key, nil, lkgKDFInfo, lkgKeyLen)
	if err != nil {
		return nil, fmt.Errorf("secrets: derive LKG key: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("secrets: LKG cipher: %w", err)
	}
	return cipher.NewGCM(block)
}

// encodeLKG seals c for region with a fresh random nonce.
func encodeLKG(aead cipher.AEAD, region string, c lkgContents) ([]byte, error) {
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("secrets: LKG nonce: %w", err)
	}
	return sealLKG(aead, region, nonce, c)
}

// sealLKG seals c for region with nonce, which must never be used twice
// with one key (tests pass a fixed one for a known answer).
func sealLKG(aead cipher.AEAD, region string, nonce []byte, c lkgContents) ([]byte, error) {
	plain, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("secrets: encode last-known-good: %w", err)
	}
	f := lkgFile{Version: lkgVersion, Region: region, Nonce: nonce, Ciphertext: aead.Seal(nil, nonce, plain, lkgAAD(lkgVersion, region))}
	clear(plain)
	out, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("secrets: encode last-known-good: %w", err)
	}
	return append(out, '\n'), nil
}

// decodeLKG opens an LKG file's bytes sealed for region. Any input, however
// malformed, gives an error rather than a panic; errors never quote the
// plaintext. A file of another format version or sealed for another region
// is an error wrapping errLKGForeign.
func decodeLKG(aead cipher.AEAD, region string, data []byte) (lkgContents, error) {
	var f lkgFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return lkgContents{}, fmt.Errorf("malformed last-known-good file: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return lkgContents{}, errors.New("malformed last-known-good file: trailing data")
	}
	if f.Version != lkgVersion {
		return lkgContents{}, fmt.Errorf("%w: it has format version %d, this stamp reads version %d (a file from another release)",
			errLKGForeign, f.Version, lkgVersion)
	}
	if f.Region != region {
		return lkgContents{}, fmt.Errorf("%w: it was sealed for region %q, this stamp serves %q (a copy from another region)",
			errLKGForeign, f.Region, region)
	}
	if len(f.Nonce) != aead.NonceSize() {
		return lkgContents{}, fmt.Errorf("malformed last-known-good file: nonce is %d bytes, want %d", len(f.Nonce), aead.NonceSize())
	}
	if len(f.Ciphertext) < aead.Overhead() {
		return lkgContents{}, errors.New("malformed last-known-good file: ciphertext too short")
	}
	plain, err := aead.Open(nil, f.Nonce, f.Ciphertext, lkgAAD(lkgVersion, region))
	if err != nil {
		return lkgContents{}, errors.New("last-known-good file cannot be decrypted: wrong LKGKey, or the file was altered")
	}
	defer clear(plain)
	var c lkgContents
	if err := json.Unmarshal(plain, &c); err != nil {
		// Do not wrap: a JSON error could quote the plaintext.
		return lkgContents{}, errors.New("last-known-good file decrypts to malformed contents")
	}
	for name := range c.Secrets {
		if !ValidName(name) {
			return lkgContents{}, errors.New("last-known-good file holds an invalid secret name")
		}
	}
	return c, nil
}

// readLKG reads and opens the LKG file at path, sealed for region, through
// keyfile (bounded, and refused when group or others can read it); a
// missing file is an error wrapping errLKGMissing.
func readLKG(aead cipher.AEAD, region, path string) (lkgContents, error) {
	data, err := keyfile.Read(path, lkgMaxFileBytes)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return lkgContents{}, fmt.Errorf("%w at %s", errLKGMissing, path)
		}
		return lkgContents{}, fmt.Errorf("read last-known-good file: %w", err)
	}
	defer clear(data)
	c, err := decodeLKG(aead, region, data)
	if err != nil {
		return lkgContents{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// writeLKG replaces the LKG file at path atomically (keyfile.Write: a
// private temporary file, synced and renamed), so a crash leaves the old
// file or the new one, never half of either.
func writeLKG(aead cipher.AEAD, region, path string, c lkgContents) error {
	data, err := encodeLKG(aead, region, c)
	if err != nil {
		return err
	}
	if err := keyfile.Write(path, data); err != nil {
		return fmt.Errorf("write last-known-good file: %w", err)
	}
	return nil
}
