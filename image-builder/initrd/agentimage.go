package initrd

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// Where the agent image sits in the initramfs and where the stub mounts
// it. The agent moves every top-level mount into its new root, this one
// included (libcontainer starts container inits from /proc/self/exe and
// seals it with an overlay of its directory, which must be reachable).
const (
	AgentImagePath  = "/agent.img"
	AgentLoopDevice = "/dev/loop0" // a node of the initramfs (block 7:0)
	AgentMountPoint = "/agent"
	AgentPath       = AgentMountPoint + "/kata-agent"
)

// agentImageBlock is the squashfs block: a page fault decompresses the
// block around it into the page cache. The image (agent, iptables, glibc)
// is 5.01 MB with 64 KiB blocks, 4.87 MB with 128 KiB, 4.64 MB with 1 MiB;
// but the kernel keeps a block-sized read buffer, fragment cache and
// zstd window per mount, so larger blocks cost more than they save.
const agentImageBlock = "128K"

// agentImageFS is the image's file system type, compiled into the stub.
const agentImageFS = "squashfs"

// ErrTool means an external tool the agent image needs is missing.
var ErrTool = errors.New("tool not found")

//go:embed stub/init.c
var stubSource []byte

// stubPaths are the paths (and the image's file system type) compiled
// into the /init stub.
type stubPaths struct{ image, loop, mountPoint, agent, fsType string }

// guestStub is where the image's stub looks.
var guestStub = stubPaths{AgentImagePath, AgentLoopDevice, AgentMountPoint, AgentPath, agentImageFS}

// buildStub compiles the /init stub into dir (gcc, freestanding, static,
// no build id: the same compiler gives the same bytes). The paths
// are absolute paths inside the guest.
func buildStub(dir string, p stubPaths) (string, error) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return "", fmt.Errorf("%w: gcc (Debian package gcc) compiles the /init stub", ErrTool)
	}
	src := filepath.Join(dir, "stub.c")
	if err := os.WriteFile(src, stubSource, 0o644); err != nil {
		return "", fmt.Errorf("write stub source: %w", err)
	}
	out := filepath.Join(dir, "init-stub")
	cmd := exec.Command(gcc, "-Os", "-s", "-static", "-nostdlib", "-ffreestanding", "-fno-pic", "-no-pie",
		"-fno-stack-protector", "-fno-asynchronous-unwind-tables", "-fno-ident", "-Wl,--build-id=none",
		"-DIMAGE="+strconv.Quote(p.image), "-DLOOPDEV="+strconv.Quote(p.loop),
		"-DMOUNTPOINT="+strconv.Quote(p.mountPoint), "-DAGENT="+strconv.Quote(p.agent),
		"-DFSTYPE="+strconv.Quote(p.fsType),
		"-o", out, src)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("compile the /init stub: %w: %s", err, b)
	}
	return out, nil
}

// buildAgentImage writes a zstd-compressed squashfs image holding agent
// as name, and the "src:dest" files and the links (name -> target) given
// (iptables and its libraries), with mksquashfs from Debian's
// squashfs-tools. Timestamps and owners are fixed so the image is
// reproducible; xattrs are left out.
//
// The image stays in the initramfs (RAM) for the guest's life, so its
// compressed size is guest memory: zstd makes it 4.87 MB where erofs with
// LZ4 (the only compressor of Debian 12's erofs-utils) made 6.36 MB, for
// about 1.4 MiB less guest memory used and 75-135 ms more boot under TCG
// (decompressing what the agent touches; see docs/decisions.md).
func buildAgentImage(dir, agent, name string, files []string, links map[string]string) (string, error) {
	mkfs, err := exec.LookPath("mksquashfs")
	if err != nil {
		return "", fmt.Errorf("%w: mksquashfs (Debian package squashfs-tools) writes the agent image", ErrTool)
	}
	tree := filepath.Join(dir, "agent-tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", tree, err)
	}
	if err := copyFile(agent, filepath.Join(tree, name), 0o755); err != nil {
		return "", err
	}
	for _, f := range files {
		src, rel := splitEntry(f)
		dest := filepath.Join(tree, filepath.FromSlash(rel))
		fi, err := os.Stat(src)
		if err != nil {
			return "", fmt.Errorf("agent image: %w", err)
		}
		if err := copyFile(src, dest, fi.Mode().Perm()); err != nil {
			return "", err
		}
	}
	for name, target := range links {
		p := filepath.Join(tree, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", fmt.Errorf("create %s: %w", filepath.Dir(p), err)
		}
		if err := os.Symlink(target, p); err != nil {
			return "", fmt.Errorf("agent image: %w", err)
		}
	}
	out := filepath.Join(dir, "agent.img")
	cmd := exec.Command(mkfs, tree, out, "-noappend", "-quiet", "-no-progress",
		"-comp", "zstd", "-Xcompression-level", "19", "-b", agentImageBlock,
		"-all-root", "-no-xattrs", "-mkfs-time", "0", "-all-time", "0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("mksquashfs: %w: %s", err, b)
	}
	return out, nil
}

// copyFile copies src to dst with mode perm (the image keeps modes),
// creating dst's directory.
func copyFile(src, dst string, perm os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dst), err)
	}
	if err := os.WriteFile(dst, b, perm); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	// WriteFile's mode passes through the umask.
	return os.Chmod(dst, perm)
}
