package storage

import (
	"testing"

	"github.com/containerd/errdefs"
)

// GetVolumeStats' path comes from the host: a NUL byte in it is
// InvalidArgument, not statfs's EINVAL reported as Internal.
func TestVolumeStatsRefusesNUL(t *testing.T) {
	m := New(Config{Root: t.TempDir()})
	if _, err := m.VolumeStats("/run/a\x00b"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("VolumeStats with NUL: %v, want InvalidArgument", err)
	}
	if _, err := m.VolumeStats("/nonexistent/volume"); !errdefs.IsNotFound(err) {
		t.Fatalf("VolumeStats of a missing path: %v, want NotFound", err)
	}
}
