package storage

import (
	"slices"
	"testing"
)

// GetGuestDetails reports Drivers() to the runtime: the list and its order
// are part of what the agent answers.
func TestDriversList(t *testing.T) {
	want := []string{"virtio-fs", "9p", "local", "ephemeral", "bind", "watchable-bind", "blk", "mmioblk", "scsi", "overlayfs"}
	if got := Drivers(); !slices.Equal(got, want) {
		t.Fatalf("Drivers() = %q, want %q", got, want)
	}
}

// Every listed driver is one the manager can validate and mount, and only
// the block drivers wait for a device.
func TestDriverTableComplete(t *testing.T) {
	block := []string{DriverBlk, DriverMMIOBlk, DriverSCSI}
	for _, name := range Drivers() {
		d, ok := lookupDriver(name)
		if !ok {
			t.Errorf("%s: listed but not found", name)
			continue
		}
		if d.mount == nil {
			t.Errorf("%s: no mount", name)
		}
		if (d.device != nil) != slices.Contains(block, name) {
			t.Errorf("%s: device resolution %t, want %t", name, d.device != nil, slices.Contains(block, name))
		}
	}
	if _, ok := lookupDriver("nfs"); ok {
		t.Error("an unlisted driver was found")
	}
}
