package vmm

import (
	"fmt"
	"strings"
)

// paths are the files a VM uses inside its work directory.
type paths struct {
	qmp         string
	vhostVsock  string // QEMU <-> vsock backend (vhost-user)
	hybridVsock string // host programs <-> vsock backend (CONNECT <port>)
	virtiofs    string // QEMU <-> virtiofsd
	console     string
	qemuLog     string
	virtiofsLog string
}

// qemuArgs builds QEMU's command line. withVsock and withFS say whether
// the respective vhost-user backend runs.
func qemuArgs(c *config, p paths, withVsock, withFS bool) ([]string, error) {
	if c.kernel == "" {
		return nil, fmt.Errorf("no kernel given")
	}
	if c.slots > 0 && c.maxMemMiB <= c.memMiB {
		return nil, fmt.Errorf("max memory %d MiB must exceed boot memory %d MiB for hot-plug", c.maxMemMiB, c.memMiB)
	}
	// QEMU's option parser treats a comma as a separator; a path with
	// one would silently become extra properties.
	for _, s := range []string{c.kernel, c.initrd, p.qmp, p.vhostVsock, p.virtiofs, p.console} {
		if strings.Contains(s, ",") {
			return nil, fmt.Errorf("path %q contains a comma, which QEMU's option syntax cannot carry", s)
		}
	}
	if strings.ContainsAny(c.tag, ",=") {
		return nil, fmt.Errorf("virtio-fs tag %q must not contain ',' or '='", c.tag)
	}

	accel := "tcg"
	if c.kvm {
		accel = "kvm"
	}
	mem := fmt.Sprintf("%dM", c.memMiB)
	if c.slots > 0 {
		mem = fmt.Sprintf("%dM,slots=%d,maxmem=%dM", c.memMiB, c.slots, c.maxMemMiB)
	}
	args := []string{
		"-machine", "q35",
		"-accel", accel,
	}
	if c.kvm {
		args = append(args, "-cpu", "host")
	}
	args = append(args,
		"-m", mem,
		// vhost-user backends map guest RAM, so it must be shared memory.
		"-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", c.memMiB),
		"-numa", "node,memdev=mem",
		"-smp", fmt.Sprintf("%d,maxcpus=%d", c.cpus, c.maxCPUs),
		"-kernel", c.kernel,
	)
	if c.initrd != "" {
		args = append(args, "-initrd", c.initrd)
	}
	if c.cmdline != "" {
		args = append(args, "-append", c.cmdline)
	}
	if withVsock {
		args = append(args,
			"-chardev", "socket,id=vsock0,path="+p.vhostVsock,
			"-device", "vhost-user-vsock-pci,chardev=vsock0",
		)
	}
	if withFS {
		args = append(args,
			"-chardev", "socket,id=vfs,path="+p.virtiofs,
			"-device", "vhost-user-fs-pci,chardev=vfs,tag="+c.tag,
		)
	}
	args = append(args,
		"-qmp", "unix:"+p.qmp+",server=on,wait=off",
		"-serial", "file:"+p.console,
		"-display", "none",
		"-nodefaults",
		"-no-user-config",
		"-no-reboot",
	)
	return append(args, c.extraArgs...), nil
}

// virtiofsdArgs builds virtiofsd's command line.
func virtiofsdArgs(c *config, p paths) []string {
	args := []string{
		"--socket-path=" + p.virtiofs,
		"-o", "source=" + c.sharedDir,
		"-o", "cache=auto",
	}
	// Debian's virtiofsd defaults to no_xattr: say which one we mean.
	if c.noXattr {
		args = append(args, "-o", "no_xattr")
	} else {
		args = append(args, "-o", "xattr")
	}
	return append(args, c.vfsdArgs...)
}
