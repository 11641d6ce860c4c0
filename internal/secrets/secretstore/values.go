package secretstore

import (
	"encoding/json"
	"fmt"
	"maps"
	"sync"

	"github.com/contoso/shoes/internal/keyfile"
	"github.com/contoso/shoes/internal/secrets"
)

// maxValuesFileBytes bounds a values file: a few secrets of at most
// MaxValueBytes each.
const maxValuesFileBytes = 1 << 20

// Values is a JSON file of secret values, {"name": "value", ...}, where a
// store keeps them between runs. The file is read and written through
// package keyfile: refused when group or others can read it (or write its
// directory), and replaced atomically with mode 0600 on every change, so a
// crash leaves the old file or the new one. Its methods are safe for
// concurrent use; the file is written in the order the changes are made.
type Values struct {
	path string

	mu     sync.Mutex // guards values and orders the writes of the file
	values map[string]string
}

// LoadValues reads the values file at path, which must exist. A name the
// store would refuse, or an empty or oversized value, is an error.
func LoadValues(path string) (*Values, error) {
	b, err := keyfile.Read(path, maxValuesFileBytes)
	if err != nil {
		return nil, fmt.Errorf("secret values: %w", err)
	}
	return parseValues(path, b)
}

// LoadOrCreateValues reads the values file at path like LoadValues, or,
// when there is none, stores the values create returns there first.
func LoadOrCreateValues(path string, create func() map[string]string) (*Values, error) {
	b, err := keyfile.ReadOrCreate(path, maxValuesFileBytes, func() ([]byte, error) {
		return json.Marshal(create())
	})
	if err != nil {
		return nil, fmt.Errorf("secret values: %w", err)
	}
	return parseValues(path, b)
}

func parseValues(path string, b []byte) (*Values, error) {
	var values map[string]string
	if err := json.Unmarshal(b, &values); err != nil {
		return nil, fmt.Errorf("secret values %s: want a JSON object of name to value: %w", path, err)
	}
	if values == nil {
		values = map[string]string{}
	}
	for name, v := range values {
		if err := checkNameValue(name, v); err != nil {
			return nil, fmt.Errorf("secret values %s: %w", path, err)
		}
	}
	return &Values{path: path, values: values}, nil
}

// checkNameValue says what the store would refuse about name and value,
// without the value.
func checkNameValue(name, value string) error {
	if !secrets.ValidName(name) {
		return fmt.Errorf("secret name %q must match ^[a-z0-9][a-z0-9-]{0,62}$", name)
	}
	if err := checkValue(&value); err != nil {
		return fmt.Errorf("secret %s: %w", name, err)
	}
	return nil
}

// Path is the file's path.
func (v *Values) Path() string { return v.path }

// Get returns the value of the named secret and whether there is one.
func (v *Values) Get(name string) (string, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.values[name]
	return s, ok
}

// All returns a copy of every value by name.
func (v *Values) All() map[string]string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return maps.Clone(v.values)
}

// Set gives the named secret a value: it writes the file with the change,
// then keeps it. When the name or value is one the store would refuse, or
// the file cannot be written, nothing changes.
func (v *Values) Set(name, value string) error {
	if err := checkNameValue(name, value); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	next := maps.Clone(v.values)
	next[name] = value
	b, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("save secret %s: %w", name, err)
	}
	if err := keyfile.Write(v.path, b); err != nil {
		return fmt.Errorf("save secret %s: %w", name, err)
	}
	v.values = next
	return nil
}
