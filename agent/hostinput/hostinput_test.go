package hostinput

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestInvalid(t *testing.T) {
	err := Invalid("storage %d: empty source", 3)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "storage 3: empty source: ") {
		t.Fatalf("Invalid = %v", err)
	}
}

func TestClip(t *testing.T) {
	if got := Clip("eth0"); got != "eth0" {
		t.Errorf("Clip(short) = %q", got)
	}
	long := strings.Repeat("x", 1<<20)
	if got := Clip(long); got != strings.Repeat("x", 64)+"..." {
		t.Errorf("Clip(1 MiB) has %d bytes", len(got))
	}
}
