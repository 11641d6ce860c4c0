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
	"os"
	"path/filepath"
	"time"
)

// The last-known-good (LKG) file holds the cache's last complete set of
// secrets, sealed with AES-256-GCM, so a new instance can start while the
// store is down. On disk it is JSON:
//
//	{"version":1,"nonce":"<base64>","ciphertext":"<base64>"}
//
// The plaintext is JSON {"fetchedAt":"<RFC 3339>","secrets":{"name":"value"}}.
// The AES key is derived with HKDF-SHA256 from the configured 32-byte key, and
// the additional data binds the ciphertext to this format and version, so a
// ciphertext from elsewhere (or a tampered file) fails to open.

const (
	lkgVersion      = 1
	lkgKeyLen       = 32
	lkgMaxFileBytes = 16 << 20
	lkgKDFInfo      = "github.com/contoso/shoes/internal/secrets last-known-good v1"
	lkgAAD          = "contoso-shoes secrets last-known-good file v1"
)

// errLKGMissing is the cause when there is no LKG file yet.
var errLKGMissing = errors.New("no last-known-good file")

// lkgFile is the on-disk envelope.
type lkgFile struct {
	Version    int    `json:"version"`
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

// encodeLKG seals c with a fresh random nonce.
func encodeLKG(aead cipher.AEAD, c lkgContents) ([]byte, error) {
	plain, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("secrets: encode last-known-good: %w", err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("secrets: LKG nonce: %w", err)
	}
	f := lkgFile{Version: lkgVersion, Nonce: nonce, Ciphertext: aead.Seal(nil, nonce, plain, []byte(lkgAAD))}
	clear(plain)
	out, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("secrets: encode last-known-good: %w", err)
	}
	return append(out, '\n'), nil
}

// decodeLKG opens an LKG file's bytes. Any input, however malformed, gives
// an error rather than a panic; errors never quote the plaintext.
func decodeLKG(aead cipher.AEAD, data []byte) (lkgContents, error) {
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
		return lkgContents{}, fmt.Errorf("last-known-good file has version %d, want %d", f.Version, lkgVersion)
	}
	if len(f.Nonce) != aead.NonceSize() {
		return lkgContents{}, fmt.Errorf("malformed last-known-good file: nonce is %d bytes, want %d", len(f.Nonce), aead.NonceSize())
	}
	if len(f.Ciphertext) < aead.Overhead() {
		return lkgContents{}, errors.New("malformed last-known-good file: ciphertext too short")
	}
	plain, err := aead.Open(nil, f.Nonce, f.Ciphertext, []byte(lkgAAD))
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

// readLKG reads and opens the LKG file at path; a missing file is an error
// wrapping errLKGMissing.
func readLKG(aead cipher.AEAD, path string) (lkgContents, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return lkgContents{}, fmt.Errorf("%w at %s", errLKGMissing, path)
		}
		return lkgContents{}, fmt.Errorf("read last-known-good file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, lkgMaxFileBytes+1))
	if err != nil {
		return lkgContents{}, fmt.Errorf("read last-known-good file %s: %w", path, err)
	}
	if len(data) > lkgMaxFileBytes {
		return lkgContents{}, fmt.Errorf("last-known-good file %s is larger than %d bytes", path, lkgMaxFileBytes)
	}
	c, err := decodeLKG(aead, data)
	if err != nil {
		return lkgContents{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// writeLKG replaces the LKG file at path atomically: it writes a temporary
// file (mode 0600) in the same directory, syncs it and renames it over path,
// so a crash leaves the old file or the new one, never half of either.
func writeLKG(aead cipher.AEAD, path string, c lkgContents) (err error) {
	data, err := encodeLKG(aead, c)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write last-known-good file: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write last-known-good file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("write last-known-good file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write last-known-good file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write last-known-good file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write last-known-good file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write last-known-good file: %w", err)
	}
	// Make the rename durable; not every platform can sync a directory.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
