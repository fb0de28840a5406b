package gather

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
)

func tarGz(t *testing.T, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(n)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(n))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestReadMembersBelowTop(t *testing.T) {
	top, m, err := Read(bytes.NewReader(tarGz(t, "g/a.json", "g/host/qemu.log")))
	if err != nil {
		t.Fatal(err)
	}
	if top != "g" || m["a.json"] != "g/a.json" || m["host/qemu.log"] != "g/host/qemu.log" || len(m) != 2 {
		t.Fatalf("top %q members %q", top, m)
	}
}

func TestReadRefusesMembersOutsideOneTop(t *testing.T) {
	for name, members := range map[string][]string{
		"two tops":    {"g/a", "h/b"},
		"no top":      {"a"},
		"not gzipped": nil,
	} {
		b := []byte("plain text")
		if members != nil {
			b = tarGz(t, members...)
		}
		if _, _, err := Read(bytes.NewReader(b)); err == nil || !strings.Contains(err.Error(), "read gather archive") {
			t.Errorf("%s: err %v, want a read gather archive error", name, err)
		}
	}
}
