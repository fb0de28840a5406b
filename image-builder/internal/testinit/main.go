// Command testinit is a stand-in /init for testing the guest image without
// the agent: it mounts /proc, prints the kernel release, the kernel's FIPS
// mode and Go's FIPS mode on the console, and powers the VM off.
package main

import (
	"crypto/fips140"
	"fmt"
	"os"
	"strings"
	"syscall"
)

func main() {
	fmt.Println("testinit: started as pid", os.Getpid())
	if err := syscall.Mount("proc", "/proc", "proc", 0, ""); err != nil {
		fmt.Println("testinit: mount /proc:", err)
	}
	fmt.Println("testinit: kernel", readTrim("/proc/sys/kernel/osrelease"))
	fmt.Println("testinit: fips_enabled", readTrim("/proc/sys/crypto/fips_enabled"))
	fmt.Println("testinit: go fips140", fips140.Enabled())
	fmt.Println("testinit: cmdline", readTrim("/proc/cmdline"))
	fmt.Println("testinit: uptime", readTrim("/proc/uptime"))
	fmt.Println("testinit: powering off")
	syscall.Sync()
	if err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Println("testinit: power off:", err)
	}
	// PID 1 must not exit: that panics the kernel.
	select {}
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(string(b))
}
