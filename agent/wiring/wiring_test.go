package wiring

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

// The guest's clock and entropy validate before any system call, so a
// bad request from the host is refused on a development host too.
func TestGuestSystemValidates(t *testing.T) {
	var sys guestSystem
	if err := sys.SetTime(1, 2_000_000); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("SetTime(1, 2000000) = %v, want InvalidArgument", err)
	}
	if err := sys.ReseedRandom(nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("ReseedRandom(nil) = %v, want InvalidArgument", err)
	}
}
