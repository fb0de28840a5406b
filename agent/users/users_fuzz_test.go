package users

import (
	"bytes"
	"testing"

	"github.com/containerd/errdefs"
)

// FuzzParse feeds hostile user strings and passwd/group contents to the
// parsers: no panic, and every error has a class the server can map.
func FuzzParse(f *testing.F) {
	f.Add("app:staff", []byte(testPasswd), []byte(testGroup))
	f.Add("1000:50", []byte("a:x:1000:1000\n::::\n"), []byte("g:x:50:a,b,,\n"))
	f.Add(":", []byte("\n#\nx"), []byte("::"))
	f.Fuzz(func(t *testing.T, user string, passwd, group []byte) {
		sp, err := parseSpec(user)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("parseSpec(%q): unclassified error %v", user, err)
			}
			return
		}
		e, found, err := findPasswd("passwd", bytes.NewReader(passwd), sp.user, sp.uid)
		if err != nil && !errdefs.IsInvalidArgument(err) {
			t.Fatalf("findPasswd: unclassified error %v", err)
		}
		if found && sp.user != "" && e.name != sp.user {
			t.Fatalf("asked for %q, found %q", sp.user, e.name)
		}
		groups, err := readGroups("group", bytes.NewReader(group))
		if err != nil && !errdefs.IsInvalidArgument(err) {
			t.Fatalf("readGroups: unclassified error %v", err)
		}
		if _, err := supplementary(groups, e.name, nil); err != nil && !errdefs.IsInvalidArgument(err) {
			t.Fatalf("supplementary: unclassified error %v", err)
		}
	})
}
