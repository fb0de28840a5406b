package initrd

import (
	"bytes"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/u-root/mkuimage/cpio"
)

func needAgentImageTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"gcc", "mksquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/install-deps installs it)", tool)
		}
	}
}

// The image with the agent image: a small static /init, the squashfs image,
// its mount point and loop device, and no other copy of the agent; two
// builds are the same bytes.
func TestBuildAgentImage(t *testing.T) {
	needAgentImageTools(t)
	agent := staticBinary(t)
	dir := t.TempDir()
	var sums []string
	for i := range 2 {
		if i == 1 {
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(agent, later, later); err != nil {
				t.Fatal(err)
			}
		}
		out := filepath.Join(dir, "initrd"+string(rune('a'+i)))
		res, err := Build(Options{Agent: agent, AgentImage: true, Compression: Zstd, Output: out})
		if err != nil {
			t.Fatalf("Build #%d: %v", i, err)
		}
		fi, err := os.Stat(agent)
		if err != nil {
			t.Fatal(err)
		}
		if res.AgentImageSize <= 0 || res.AgentImageSize >= fi.Size() {
			t.Errorf("agent image %d bytes for an agent of %d: not compressed", res.AgentImageSize, fi.Size())
		}
		sums = append(sums, res.SHA256)
	}
	if sums[0] != sums[1] {
		t.Fatalf("two builds differ: %s vs %s", sums[0], sums[1])
	}

	recs := readArchive(t, filepath.Join(dir, "initrda"), Zstd)
	init := recs["init"]
	if init.Mode&cpio.S_IFMT != cpio.S_IFREG || init.Mode&0o111 == 0 {
		t.Fatalf("/init missing or not executable: %+v", init.Info)
	}
	if init.FileSize > 16<<10 {
		t.Errorf("/init is %d bytes, want the few-KiB stub", init.FileSize)
	}
	img := recs[strings.TrimPrefix(AgentImagePath, "/")]
	if img.Mode&cpio.S_IFMT != cpio.S_IFREG {
		t.Fatalf("%s missing: %+v", AgentImagePath, img.Info)
	}
	head := make([]byte, 4)
	if _, err := img.ReadAt(head, 0); err != nil {
		t.Fatal(err)
	}
	// The squashfs superblock's magic at offset 0 (little-endian "hsqs").
	if string(head) != "hsqs" {
		t.Errorf("%s has no squashfs magic: % x", AgentImagePath, head)
	}
	if d := recs[strings.TrimPrefix(AgentMountPoint, "/")]; d.Mode&cpio.S_IFMT != cpio.S_IFDIR {
		t.Errorf("mount point %s missing: %+v", AgentMountPoint, d.Info)
	}
	if l := recs[strings.TrimPrefix(AgentLoopDevice, "/")]; l.Mode&cpio.S_IFMT != cpio.S_IFBLK || l.Rmajor != 7 || l.Rminor != 0 {
		t.Errorf("%s = %+v, want block 7:0", AgentLoopDevice, l.Info)
	}
	var size int64
	for _, r := range recs {
		size += int64(r.FileSize)
	}
	if fi, _ := os.Stat(agent); size >= fi.Size() {
		t.Errorf("files of the initramfs total %d bytes, not less than the agent's %d", size, fi.Size())
	}
}

// The stub really does its job: on this machine (root, a kernel with
// squashfs and loop devices) it attaches an image to a free loop device,
// mounts it in a private mount namespace and executes the program from
// it with the arguments it was given. Busybox stands in for the agent,
// named echo so that it runs that applet.
func TestStubMountsAndExecutes(t *testing.T) {
	needAgentImageTools(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices, mounts)")
	}
	// squashfs may be a module, loaded on the first mount.
	_ = exec.Command("modprobe", "squashfs").Run()
	if b, _ := os.ReadFile("/proc/filesystems"); !bytes.Contains(b, []byte("squashfs")) {
		t.Skip("host kernel has no squashfs")
	}
	const busybox = "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		t.Skip("needs Debian's busybox-static")
	}
	free, err := exec.Command("losetup", "-f").Output()
	if err != nil {
		t.Skipf("no free loop device: %v", err)
	}
	dir := t.TempDir()
	loop := strings.TrimSpace(string(free))
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := buildAgentImage(dir, busybox, "echo", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stub, err := buildStub(dir, stubPaths{image: img, loop: loop, mountPoint: mnt, agent: mnt + "/echo", fsType: agentImageFS})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkStatic(stub); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", loop).Run() })

	out, err := exec.Command("unshare", "-m", "--propagation", "private", stub, "from", "the image").CombinedOutput()
	if err != nil {
		t.Fatalf("stub: %v\n%s", err, out)
	}
	if string(out) != "from the image\n" {
		t.Fatalf("stub's program printed %q", out)
	}
	ro, err := exec.Command("losetup", "--list", "--noheadings", "--output", "RO", loop).Output()
	if err != nil || strings.TrimSpace(string(ro)) != "1" {
		t.Errorf("loop device read-only = %q, %v; want 1", ro, err)
	}

	// A missing image is reported by name, with the kernel's error.
	bad, err := buildStub(t.TempDir(), stubPaths{image: filepath.Join(dir, "nothing"), loop: loop, mountPoint: mnt, agent: mnt + "/echo", fsType: agentImageFS})
	if err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command("unshare", "-m", "--propagation", "private", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "open "+filepath.Join(dir, "nothing")+": errno 2") {
		t.Fatalf("stub without its image: %v, %q", err, out)
	}
}

// With the agent image, iptables and its libraries go into the image too:
// the cpio only leads /usr, /lib, ... into it, and the image holds the
// very files (extracted with unsquashfs and compared).
func TestBuildAgentImageHoldsIPTables(t *testing.T) {
	needAgentImageTools(t)
	needIPTables(t)
	if _, err := exec.LookPath("unsquashfs"); err != nil {
		t.Skip("unsquashfs not installed")
	}
	agent := staticBinary(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "initrd")
	if _, err := Build(Options{Agent: agent, AgentImage: true, IPTables: true, Compression: None, Output: out}); err != nil {
		t.Fatal(err)
	}
	recs := readArchive(t, out, None)
	files, links, err := iptablesFiles("/")
	if err != nil {
		t.Fatal(err)
	}
	for _, top := range topDirs(files, links) {
		r := recs[top]
		if r.Mode&cpio.S_IFMT != cpio.S_IFLNK {
			t.Errorf("/%s is not a link into the image: %+v", top, r.Info)
			continue
		}
		target := make([]byte, r.FileSize)
		if _, err := r.ReadAt(target, 0); err != nil {
			t.Fatal(err)
		}
		// u-root writes the link relative; from / it is the same place.
		if path.Join("/", string(target)) != AgentMountPoint+"/"+top {
			t.Errorf("/%s -> %s, want %s/%s", top, target, AgentMountPoint, top)
		}
	}
	for name := range recs {
		if strings.Contains(name, "libc.so") || strings.Contains(name, "xtables") {
			t.Errorf("%s is in the cpio, not in the image", name)
		}
	}

	img := filepath.Join(dir, "agent.img")
	rec := recs[strings.TrimPrefix(AgentImagePath, "/")]
	b := make([]byte, rec.FileSize)
	if _, err := rec.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	x := filepath.Join(dir, "x")
	if o, err := exec.Command("unsquashfs", "-no-progress", "-quiet", "-d", x, img).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, o)
	}
	same := func(host, inImage string) {
		t.Helper()
		want, err := os.ReadFile(host)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(x, inImage))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s in the image differs from %s (%v)", inImage, host, err)
		}
	}
	same(agent, "kata-agent")
	for _, f := range files {
		same(splitEntry(f))
	}
	for name, target := range links {
		if got, err := os.Readlink(filepath.Join(x, name)); err != nil || got != target {
			t.Errorf("link %s in the image -> %q (%v), want %s", name, got, err, target)
		}
	}
}
