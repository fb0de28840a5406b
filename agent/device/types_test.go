package device

import (
	"slices"
	"testing"
)

// GetGuestDetails reports Types() to the runtime: the list and its order
// are part of what the agent answers.
func TestTypesList(t *testing.T) {
	want := []string{"blk", "mmioblk", "scsi", "vfio-pci", "vfio", "vfio-pci-gk"}
	if got := Types(); !slices.Equal(got, want) {
		t.Fatalf("Types() = %q, want %q", got, want)
	}
	for _, name := range Types() {
		typ, ok := lookupType(name)
		if !ok || typ.resolve == nil {
			t.Errorf("%s: listed but not resolvable", name)
		}
	}
	if _, ok := lookupType("virtio-net"); ok {
		t.Error("an unlisted type was found")
	}
}
