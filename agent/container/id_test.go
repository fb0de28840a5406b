package container

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"a", "abc", "A-b_c.d+e", strings.Repeat("x", 256), "0123456789abcdef"} {
		if err := ValidateID("container", ok); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
	for id, want := range map[string]string{
		"":                       "is empty",
		"a/b":                    `contains "/"`,
		"..":                     `contains ".."`,
		"a..b":                   `contains ".."`,
		"a\x00b":                 "contains NUL",
		strings.Repeat("x", 257): "longer than 256",
		".hidden":                "must start with a letter or digit",
		"a b":                    "contains ' '",
		"a;b":                    "contains ';'",
	} {
		err := ValidateID("container", id)
		if err == nil || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want invalid argument containing %q", id, err, want)
		}
	}
}
