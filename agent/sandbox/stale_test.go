package sandbox

import (
	"reflect"
	"testing"

	"github.com/moby/sys/mountinfo"
)

func TestStaleShareMounts(t *testing.T) {
	shared := "/run/kata-containers/shared/containers"
	mounts := []*mountinfo.Info{
		{Mountpoint: shared, FSType: "virtiofs"},                           // the share itself
		{Mountpoint: shared + "/live/rootfs", FSType: "virtiofs"},          // live container
		{Mountpoint: shared + "/gone/rootfs", FSType: "virtiofs"},          // stale
		{Mountpoint: shared + "/gone/rootfs/data", FSType: "virtiofs"},     // stale, nested
		{Mountpoint: shared + "/gone2", FSType: "tmpfs"},                   // not virtio-fs
		{Mountpoint: "/run/kata-containers/sharedX/y", FSType: "virtiofs"}, // prefix look-alike
	}
	got := staleShareMounts(mounts, shared+"/", map[string]bool{"live": true})
	want := []string{shared + "/gone/rootfs/data", shared + "/gone/rootfs"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
