package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// bundleConfig is the one file a bundle directory holds.
const bundleConfig = "config.json"

// writeBundle writes the container's bundle: dir (root/<id>) with the
// spec as config.json. root holds bundles only, so no id can alias a
// directory of the agent or a storage.
func writeBundle(root, dir string, spec *specs.Spec) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, bundleConfig), b, 0o600)
}

// removeBundle unlinks what writeBundle created and nothing else: a
// bundle directory that holds anything more (or a mount) stays, with an
// error naming it, rather than being walked.
func removeBundle(dir string) error {
	if err := os.Remove(filepath.Join(dir, bundleConfig)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("bundle %s holds more than the agent wrote; left in place: %w", dir, err)
	}
	return nil
}
