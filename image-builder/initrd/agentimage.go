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
	AgentImagePath  = "/agent.erofs"
	AgentLoopDevice = "/dev/loop0" // a node of the initramfs (block 7:0)
	AgentMountPoint = "/agent"
	AgentPath       = AgentMountPoint + "/kata-agent"
)

// agentImageCluster is the erofs physical cluster: a page fault
// decompresses one cluster into the page cache. The agent compresses to
// 55% of its size with 16 KiB clusters, 46% with 64 KiB and 128 KiB and
// more; boots under TCG with 128 KiB to 1 MiB were alike within noise.
const agentImageCluster = 128 << 10

// ErrTool means an external tool the agent image needs is missing.
var ErrTool = errors.New("tool not found")

//go:embed stub/init.c
var stubSource []byte

// stubPaths are the paths compiled into the /init stub.
type stubPaths struct{ image, loop, mountPoint, agent string }

// guestStub is where the image's stub looks.
var guestStub = stubPaths{AgentImagePath, AgentLoopDevice, AgentMountPoint, AgentPath}

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
		"-o", out, src)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("compile the /init stub: %w: %s", err, b)
	}
	return out, nil
}

// buildAgentImage writes an LZ4-compressed erofs image holding agent as
// name, and the "src:dest" files and the links (name -> target) given
// (iptables and its libraries), with mkfs.erofs from Debian's erofs-utils.
// Timestamps, owners and the UUID are fixed so the image is reproducible;
// xattrs are left out.
func buildAgentImage(dir, agent, name string, files []string, links map[string]string) (string, error) {
	mkfs, err := exec.LookPath("mkfs.erofs")
	if err != nil {
		return "", fmt.Errorf("%w: mkfs.erofs (Debian package erofs-utils) writes the agent image", ErrTool)
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
	out := filepath.Join(dir, "agent.erofs")
	cmd := exec.Command(mkfs, "--quiet", "-zlz4hc,12", "-C"+strconv.Itoa(agentImageCluster), "-T0",
		"-U00000000-0000-0000-0000-000000000000", "--all-root", "-x-1", out, tree)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("mkfs.erofs: %w: %s", err, b)
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
