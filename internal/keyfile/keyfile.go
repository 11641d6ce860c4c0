// Package keyfile keeps secret material on disk: keys, tokens and sealed
// secrets, one file each, so that nobody reads them by accident.
//
// Every file is written atomically (a temporary file created with mode 0600
// in the same directory, synced, renamed over the old one, then the
// directory synced) inside a directory created with mode 0700, so a crash
// leaves the old file or the new one, never half of either, and never a
// moment when the file is readable by others.
//
// Every read checks, on the open file, that it is a regular file no larger
// than the caller's bound and that neither group nor others can read it
// (mode & 0o077 == 0), and checks that neither group nor others can write
// its directory (they could replace the file). A file or directory that
// fails the check is refused with a [*PermissionError] that names it, its
// mode and the command that fixes it; it matches [ErrInsecure].
//
// [ReadOrCreate] makes a file on first use and is safe when several
// processes race: exactly one file wins and every caller gets its bytes.
//
// Permission bits mean nothing on Windows; there the checks are skipped.
package keyfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// ErrInsecure is matched (errors.Is) by every refusal because of a file's
// or a directory's permissions.
var ErrInsecure = errors.New("insecure permissions")

// PermissionError is a refusal to use a key file, or the directory it is
// in, because of its mode.
type PermissionError struct {
	Path string      // the file or the directory
	Mode fs.FileMode // its permission bits
	Dir  bool        // Path is the directory: writable by group or others
}

// Error names the file, its mode, why that is refused and the fix.
func (e *PermissionError) Error() string {
	if e.Dir {
		return fmt.Sprintf("key directory %s has mode %04o: group or others can write it and replace the key files in it; refusing to use it (fix: chmod 700 %s)",
			e.Path, e.Mode.Perm(), e.Path)
	}
	return fmt.Sprintf("key file %s has mode %04o: group or others can read it; refusing to use it (fix: chmod 600 %s)",
		e.Path, e.Mode.Perm(), e.Path)
}

// Is reports whether target is ErrInsecure.
func (e *PermissionError) Is(target error) bool { return target == ErrInsecure }

// windows is true where permission bits mean nothing and a directory
// cannot be synced.
const windows = runtime.GOOS == "windows"

// Read returns the contents of the key file at path after checking its
// directory and the open file (see the package comment). A file larger
// than limit bytes is an error. A missing file is an error matching
// fs.ErrNotExist.
func Read(path string, limit int64) ([]byte, error) {
	if err := checkDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("read key file %s: not a regular file (%s)", path, info.Mode().Type())
	}
	if !windows && info.Mode().Perm()&0o077 != 0 {
		return nil, &PermissionError{Path: path, Mode: info.Mode().Perm()}
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		clear(data)
		return nil, fmt.Errorf("read key file %s: larger than %d bytes", path, limit)
	}
	return data, nil
}

// Write replaces the key file at path with data atomically, creating its
// directory (mode 0700) if need be. The file has mode 0600.
func Write(path string, data []byte) error {
	return write(path, data, 0o600)
}

// WritePublic replaces a public file kept beside the keys (a CA's
// certificate, which clients are given) the same way as Write, with mode
// 0644: everyone may read it, only its owner replace it.
func WritePublic(path string, data []byte) error {
	return write(path, data, 0o644)
}

// write replaces the file at path with data atomically, with mode perm.
func write(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write key file: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// ReadOrCreate returns the contents of the key file at path (see Read). If
// there is none, it stores what create returns and returns that. When
// several callers, in this process or others, race to create the file, the
// first to store it wins and the others return the winner's bytes; no
// caller ever sees a partly written file.
func ReadOrCreate(path string, limit int64, create func() ([]byte, error)) ([]byte, error) {
	data, err := Read(path, limit)
	if !errors.Is(err, fs.ErrNotExist) {
		return data, err
	}
	data, err = create()
	if err != nil {
		return nil, fmt.Errorf("create key file %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("create key file %s: %d bytes, more than %d", path, len(data), limit)
	}
	tmp, err := writeTemp(path, data, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	// A hard link, unlike a rename, fails when the file exists already: the
	// loser of a race keeps the winner's file and reads it.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return Read(path, limit)
		}
		return nil, fmt.Errorf("create key file: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	return data, nil
}

// writeTemp creates the directory of path if need be (mode 0700), checks
// it, and writes data to a new synced temporary file of mode perm beside
// path, whose name it returns.
func writeTemp(path string, data []byte, perm os.FileMode) (name string, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("write key file: %w", err)
	}
	if err := checkDir(dir); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp") // mode 0600
	if err != nil {
		return "", fmt.Errorf("write key file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil && !windows {
		return "", fmt.Errorf("write key file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("write key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write key file: %w", err)
	}
	return f.Name(), nil
}

// checkDir refuses a directory that group or others can write.
func checkDir(dir string) error {
	if windows {
		return nil
	}
	info, err := os.Stat(dir)
	if err != nil {
		// A missing directory means a missing file.
		return fmt.Errorf("key directory: %w", err)
	}
	if info.Mode().Perm()&0o022 != 0 {
		return &PermissionError{Path: dir, Mode: info.Mode().Perm(), Dir: true}
	}
	return nil
}

// syncDir makes a rename or link in dir durable.
func syncDir(dir string) error {
	if windows {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync key directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync key directory %s: %w", dir, err)
	}
	return nil
}
