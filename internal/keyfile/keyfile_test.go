package keyfile_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/contoso/shoes/internal/keyfile"
)

func skipOnWindows(t *testing.T) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("permission bits mean nothing on Windows")
	}
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

// onlyEntry fails t unless dir holds exactly the file name: no temporary
// file is left behind.
func onlyEntry(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != name {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("%s holds %v, want only %s", dir, names, name)
	}
}

func TestWriteThenRead(t *testing.T) {
	skipOnWindows(t)
	dir := filepath.Join(t.TempDir(), "config", "keys")
	path := filepath.Join(dir, "edge.key")
	if err := keyfile.Write(path, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("directory mode %04o, want 0700", m)
	}
	if m := mode(t, path); m != 0o600 {
		t.Errorf("file mode %04o, want 0600", m)
	}
	if err := keyfile.Write(path, []byte("second")); err != nil {
		t.Fatal(err)
	}
	got, err := keyfile.Read(path, 64)
	if err != nil || string(got) != "second" {
		t.Fatalf("Read = %q, %v; want the second write", got, err)
	}
	onlyEntry(t, dir, "edge.key")

	// A file left readable by others is replaced by a private one.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := keyfile.Write(path, []byte("third")); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, path); m != 0o600 {
		t.Errorf("file mode after a rewrite %04o, want 0600", m)
	}
}

func TestReadRefusesAFileGroupOrOthersCanRead(t *testing.T) {
	skipOnWindows(t)
	path := filepath.Join(t.TempDir(), "lkg.key")
	if err := keyfile.Write(path, []byte("k")); err != nil {
		t.Fatal(err)
	}
	for _, m := range []fs.FileMode{0o644, 0o640, 0o604, 0o660, 0o606, 0o700, 0o610, 0o601} {
		t.Run(fmt.Sprintf("%04o", m), func(t *testing.T) {
			if err := os.Chmod(path, m); err != nil {
				t.Fatal(err)
			}
			got, err := keyfile.Read(path, 64)
			if m&0o077 == 0 {
				if err != nil || string(got) != "k" {
					t.Fatalf("Read of a private file = %q, %v", got, err)
				}
				return
			}
			var pe *keyfile.PermissionError
			if !errors.As(err, &pe) || !errors.Is(err, keyfile.ErrInsecure) || got != nil {
				t.Fatalf("Read = %q, %v; want a permission error", got, err)
			}
			if pe.Path != path || pe.Mode != m || pe.Dir {
				t.Fatalf("error = %+v", pe)
			}
			for _, want := range []string{path, fmt.Sprintf("mode %04o", m), "chmod 600 " + path} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
	// Owner-only modes are accepted.
	for _, m := range []fs.FileMode{0o600, 0o400} {
		if err := os.Chmod(path, m); err != nil {
			t.Fatal(err)
		}
		if _, err := keyfile.Read(path, 64); err != nil {
			t.Errorf("Read of a %04o file: %v", m, err)
		}
	}
}

func TestReadAndWriteRefuseADirectoryOthersCanWrite(t *testing.T) {
	skipOnWindows(t)
	dir := filepath.Join(t.TempDir(), "config")
	path := filepath.Join(dir, "secretstore.token")
	if err := keyfile.Write(path, []byte("tok")); err != nil {
		t.Fatal(err)
	}
	for _, m := range []fs.FileMode{0o770, 0o707, 0o777} {
		if err := os.Chmod(dir, m); err != nil {
			t.Fatal(err)
		}
		_, rerr := keyfile.Read(path, 64)
		werr := keyfile.Write(path, []byte("other"))
		_, cerr := keyfile.ReadOrCreate(filepath.Join(dir, "new.key"), 64, func() ([]byte, error) { return []byte("x"), nil })
		for op, err := range map[string]error{"Read": rerr, "Write": werr, "ReadOrCreate": cerr} {
			var pe *keyfile.PermissionError
			if !errors.As(err, &pe) || !pe.Dir || pe.Path != dir || !errors.Is(err, keyfile.ErrInsecure) ||
				!strings.Contains(err.Error(), "chmod 700 "+dir) || !strings.Contains(err.Error(), fmt.Sprintf("%04o", m)) {
				t.Errorf("%s in a %04o directory = %v, want a permission error naming the directory", op, m, err)
			}
		}
	}
	// Readable by others, not writable: accepted.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := keyfile.Read(path, 64); err != nil || string(got) != "tok" {
		t.Fatalf("Read in a 0755 directory = %q, %v", got, err)
	}
}

func TestReadIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.lkg")
	if err := keyfile.Write(path, bytes.Repeat([]byte("a"), 100)); err != nil {
		t.Fatal(err)
	}
	if got, err := keyfile.Read(path, 100); err != nil || len(got) != 100 {
		t.Fatalf("Read at the bound = %d bytes, %v", len(got), err)
	}
	if got, err := keyfile.Read(path, 99); err == nil || got != nil || !strings.Contains(err.Error(), "larger than 99 bytes") {
		t.Fatalf("Read over the bound = %d bytes, %v", len(got), err)
	}
}

func TestReadMissingOrNotAFile(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{filepath.Join(dir, "none"), filepath.Join(dir, "no-dir", "none")} {
		if _, err := keyfile.Read(path, 64); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Read(%s) = %v, want fs.ErrNotExist", path, err)
		}
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := keyfile.Read(sub, 64); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("Read of a directory = %v", err)
	}
}

// Two (here eight) callers that find the file missing at the same moment
// and race to create it all end up with the same bytes, the winner's, and
// the file holds them.
func TestReadOrCreateRace(t *testing.T) {
	skipOnWindows(t)
	for round := range 20 {
		dir := filepath.Join(t.TempDir(), "config")
		path := filepath.Join(dir, "lkg.key")
		const n = 8
		var arrived sync.WaitGroup
		arrived.Add(n)
		got := make([][]byte, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				got[i], errs[i] = keyfile.ReadOrCreate(path, 64, func() ([]byte, error) {
					// Every caller has found the file missing before any
					// stores one: the race is certain, not likely.
					arrived.Done()
					arrived.Wait()
					return []byte(rand.Text()), nil
				})
			})
		}
		wg.Wait()
		onDisk, err := keyfile.Read(path, 64)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if errs[i] != nil || !bytes.Equal(got[i], onDisk) {
				t.Fatalf("round %d: caller %d got %q, %v; the file holds %q", round, i, got[i], errs[i], onDisk)
			}
		}
		if m := mode(t, path); m != 0o600 {
			t.Fatalf("file mode %04o, want 0600", m)
		}
		if m := mode(t, dir); m != 0o700 {
			t.Fatalf("directory mode %04o, want 0700", m)
		}
		onlyEntry(t, dir, "lkg.key")
	}
}

func TestReadOrCreateKeepsAnExistingFile(t *testing.T) {
	skipOnWindows(t)
	path := filepath.Join(t.TempDir(), "issuer-key.pem")
	if err := keyfile.Write(path, []byte("existing")); err != nil {
		t.Fatal(err)
	}
	called := false
	create := func() ([]byte, error) { called = true; return []byte("new"), nil }
	if got, err := keyfile.ReadOrCreate(path, 64, create); err != nil || string(got) != "existing" || called {
		t.Fatalf("ReadOrCreate = %q, %v (create called: %v)", got, err, called)
	}
	// An existing file others can read is refused, not silently replaced.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := keyfile.ReadOrCreate(path, 64, create); !errors.Is(err, keyfile.ErrInsecure) || called {
		t.Fatalf("ReadOrCreate of a 0644 file = %v (create called: %v)", err, called)
	}
	if got, _ := os.ReadFile(path); string(got) != "existing" {
		t.Fatalf("the file now holds %q", got)
	}
	// A failing create stores nothing.
	other := filepath.Join(filepath.Dir(path), "other.key")
	if _, err := keyfile.ReadOrCreate(other, 64, func() ([]byte, error) { return nil, errors.New("no entropy") }); err == nil || !strings.Contains(err.Error(), "no entropy") {
		t.Fatalf("ReadOrCreate with a failing create = %v", err)
	}
	if _, err := os.Stat(other); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failed create left %s: %v", other, err)
	}
}

// A public file beside the keys (a CA's certificate) is written the same
// atomic way, readable by everyone.
func TestWritePublic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config", "ca.pem")
	if err := keyfile.WritePublic(path, []byte("cert")); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", info.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); string(b) != "cert" {
		t.Errorf("contents %q", b)
	}
	if dir, _ := os.Stat(filepath.Dir(path)); dir.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", dir.Mode().Perm())
	}
}
