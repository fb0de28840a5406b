package users

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const testPasswd = `# comment
root:x:0:0:root:/root:/bin/sh
broken line without fields
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

app:x:1000:1001:App:/home/app:/bin/sh
weird:x:notanumber:5::/:/bin/sh
`

const testGroup = `root:x:0:
daemon:x:1:
app:x:1001:
audio:x:29:app,other
video:x:44:other,app
bad:x:nan:app
staff:x:50:
`

func fakeRootfs(t *testing.T, passwd, group string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if passwd != "" {
		if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if group != "" {
		if err := os.WriteFile(filepath.Join(root, "etc/group"), []byte(group), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestResolveForms(t *testing.T) {
	root := fakeRootfs(t, testPasswd, testGroup)
	for _, tc := range []struct {
		in   specs.User
		want specs.User
	}{
		// No username: the numeric ids stand.
		{specs.User{UID: 5, GID: 6, AdditionalGids: []uint32{7}}, specs.User{UID: 5, GID: 6, AdditionalGids: []uint32{7}}},
		// A name replaces the numeric ids; member groups come first.
		{specs.User{UID: 5, GID: 6, Username: "app"}, specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{29, 44}, Username: "app"}},
		{specs.User{Username: "app", AdditionalGids: []uint32{44, 100}}, specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{29, 44, 100}, Username: "app"}},
		{specs.User{Username: "app:staff"}, specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{29, 44}, Username: "app:staff"}},
		{specs.User{Username: "app:7"}, specs.User{UID: 1000, GID: 7, AdditionalGids: []uint32{29, 44}, Username: "app:7"}},
		{specs.User{Username: "1000"}, specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{29, 44}, Username: "1000"}},
		{specs.User{Username: "1000:50"}, specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{29, 44}, Username: "1000:50"}},
		{specs.User{Username: "4242"}, specs.User{UID: 4242, GID: 0, Username: "4242"}},
		{specs.User{Username: "4242:audio"}, specs.User{UID: 4242, GID: 29, Username: "4242:audio"}},
		{specs.User{Username: "daemon"}, specs.User{UID: 1, GID: 1, Username: "daemon"}},
	} {
		got, err := Resolve(root, tc.in)
		if err != nil {
			t.Errorf("Resolve(%+v): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Resolve(%+v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	root := fakeRootfs(t, testPasswd, testGroup)
	for _, tc := range []struct {
		user  string
		class func(error) bool
		want  string
	}{
		{"nobody", errdefs.IsNotFound, `user "nobody" not found`},
		{"app:wheel", errdefs.IsNotFound, `group "wheel"`},
		{"weird", errdefs.IsInvalidArgument, `line 7 for user "weird"`},
		{"99999999999", errdefs.IsInvalidArgument, "not a 32-bit id"},
		{"app:", errdefs.IsInvalidArgument, "want name"},
		{":app", errdefs.IsInvalidArgument, "want name"},
		{"a:b:c", errdefs.IsInvalidArgument, "want name"},
		{"a\x00b", errdefs.IsInvalidArgument, "NUL"},
		{strings.Repeat("u", MaxUsernameLen+1), errdefs.IsInvalidArgument, "longer than"},
	} {
		_, err := Resolve(root, specs.User{Username: tc.user})
		if err == nil || !tc.class(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Resolve(%.40q) = %v, want an error with %q", tc.user, err, tc.want)
		}
	}
	// No /etc/passwd at all: names cannot resolve, numbers can.
	bare := fakeRootfs(t, "", "")
	if _, err := Resolve(bare, specs.User{Username: "app"}); !errdefs.IsNotFound(err) {
		t.Errorf("name without passwd: %v", err)
	}
	if u, err := Resolve(bare, specs.User{Username: "7:8"}); err != nil || u.UID != 7 || u.GID != 8 {
		t.Errorf("numbers without passwd: %+v, %v", u, err)
	}
}

func TestResolveHostileFiles(t *testing.T) {
	long := fakeRootfs(t, "app:x:1000:1000::/:/bin/sh\n"+strings.Repeat("x", MaxLineLen+10)+"\n", "")
	if _, err := Resolve(long, specs.User{Username: "nobody"}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "line 2 is longer") {
		t.Errorf("oversized line: %v", err)
	}
	big := fakeRootfs(t, "", "")
	if err := os.WriteFile(filepath.Join(big, "etc/passwd"), []byte(strings.Repeat("a:x:1:1::/:/s\n", MaxFileSize/14+10)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(big, specs.User{Username: "b"}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: %v", err)
	}
	// A FIFO would block a reader for ever.
	fifo := fakeRootfs(t, "", "")
	if err := syscall.Mkfifo(filepath.Join(fifo, "etc/passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(fifo, specs.User{Username: "app"}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("fifo passwd: %v", err)
	}
}

func TestResolveSymlinkStaysInRootfs(t *testing.T) {
	// Outside the rootfs, a passwd that knows "intruder"; inside, symlinks
	// to it by absolute and by relative path.
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "passwd"), []byte("intruder:x:0:0::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "group"), []byte("wheel:x:10:intruder\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "rootfs")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "passwd"), filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../outside/group", filepath.Join(root, "etc/group")); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve(root, specs.User{Username: "intruder"}); !errdefs.IsNotFound(err) {
		t.Fatalf("Resolve(intruder) through an escaping symlink = %v, want NotFound", err)
	}
	u, err := Resolve(root, specs.User{Username: "0:wheel"})
	if err == nil || !errdefs.IsNotFound(err) {
		t.Fatalf("group through an escaping symlink = %+v, %v; want NotFound", u, err)
	}
	// The same link resolved inside the rootfs (as the container sees it)
	// is followed.
	if err := os.MkdirAll(filepath.Join(root, outside), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, outside, "passwd"), []byte("inside:x:5:6::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if u, err := Resolve(root, specs.User{Username: "inside"}); err != nil || u.UID != 5 || u.GID != 6 {
		t.Errorf("Resolve(inside) = %+v, %v", u, err)
	}
}

func TestSupplementaryBounded(t *testing.T) {
	var b strings.Builder
	for i := range MaxGroups + 1 {
		fmt.Fprintf(&b, "g:x:%d:app\n", i)
	}
	root := fakeRootfs(t, "app:x:1:1::/:/s\n", b.String())
	if _, err := Resolve(root, specs.User{Username: "app"}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "supplementary groups") {
		t.Errorf("too many groups: %v", err)
	}
}
