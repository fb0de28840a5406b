package initsys

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Real is the Sys of the running system.
type Real struct{}

var _ Sys = Real{}

func (Real) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}
func (Real) Unmount(target string, flags int) error { return unix.Unmount(target, flags) }
func (Real) FSType(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	return int64(st.Type), nil
}
func (Real) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }
func (Real) Symlink(oldname, newname string) error        { return os.Symlink(oldname, newname) }
func (Real) Remove(path string) error                     { return os.Remove(path) }
func (Real) Lstat(path string) (os.FileInfo, error)       { return os.Lstat(path) }
func (Real) ReadFile(path string) ([]byte, error)         { return os.ReadFile(path) }
func (Real) WriteFile(path string, data []byte) error {
	// No O_CREAT: the targets are procfs/sysfs files that must exist.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
func (Real) Chdir(dir string) error  { return unix.Chdir(dir) }
func (Real) Chroot(dir string) error { return unix.Chroot(dir) }
func (Real) Exec(path string, argv, env []string) error {
	return unix.Exec(path, argv, env)
}
func (Real) Sethostname(name string) error { return unix.Sethostname([]byte(name)) }
func (Real) Setsid() error {
	_, err := unix.Setsid()
	return err
}

// LinkUp sets IFF_UP on an interface with the classic ioctl: lighter than
// a netlink round trip for the one link PID 1 needs.
func (Real) LinkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}
func (Real) Sync()           { unix.Sync() }
func (Real) PowerOff() error { return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF) }
