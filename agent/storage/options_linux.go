package storage

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
)

// MountOptions is a list of mount(8)-style options split into what
// mount(2) takes as flags and what it takes as filesystem data.
type MountOptions struct {
	// Flags are the MS_* flags to set.
	Flags uintptr
	// Propagation holds propagation flags (MS_SHARED, MS_PRIVATE, ...):
	// they need their own mount(2) call after the mount exists.
	Propagation uintptr
	// Data holds the remaining options, in order, for the filesystem.
	Data []string
}

// maxDataLen is the size of the page the kernel copies mount data into.
const maxDataLen = 4095

type flagOpt struct {
	clear bool
	flag  uintptr
}

var flagOptions = map[string]flagOpt{
	"defaults":      {false, 0},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"nosuid":        {false, unix.MS_NOSUID},
	"suid":          {true, unix.MS_NOSUID},
	"nodev":         {false, unix.MS_NODEV},
	"dev":           {true, unix.MS_NODEV},
	"noexec":        {false, unix.MS_NOEXEC},
	"exec":          {true, unix.MS_NOEXEC},
	"sync":          {false, unix.MS_SYNCHRONOUS},
	"async":         {true, unix.MS_SYNCHRONOUS},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"remount":       {false, unix.MS_REMOUNT},
	"mand":          {false, unix.MS_MANDLOCK},
	"nomand":        {true, unix.MS_MANDLOCK},
	"atime":         {true, unix.MS_NOATIME},
	"noatime":       {false, unix.MS_NOATIME},
	"diratime":      {true, unix.MS_NODIRATIME},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"relatime":      {false, unix.MS_RELATIME},
	"norelatime":    {true, unix.MS_RELATIME},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"bind":          {false, unix.MS_BIND},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
}

var propagationOptions = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// ParseOptions splits options into flags and data. An element may itself
// hold several comma-separated options (the runtime sends 9p's
// "trans=virtio,version=9p2000.L,cache=mmap" as one element). Empty
// options are skipped; an option with a NUL byte, or data longer than the
// kernel accepts, is an InvalidArgument error.
func ParseOptions(opts []string) (MountOptions, error) {
	var mo MountOptions
	dataLen := 0
	for _, elem := range opts {
		for _, o := range strings.Split(elem, ",") {
			o = strings.TrimSpace(o)
			if o == "" {
				continue
			}
			if strings.IndexByte(o, 0) >= 0 {
				return MountOptions{}, fmt.Errorf("mount option %q contains a NUL byte: %w", hostinput.Clip(o), errdefs.ErrInvalidArgument)
			}
			if f, ok := flagOptions[o]; ok {
				if f.clear {
					mo.Flags &^= f.flag
				} else {
					mo.Flags |= f.flag
				}
				continue
			}
			if p, ok := propagationOptions[o]; ok {
				mo.Propagation |= p
				continue
			}
			dataLen += len(o) + 1
			if dataLen > maxDataLen {
				return MountOptions{}, fmt.Errorf("mount data longer than %d bytes: %w", maxDataLen, errdefs.ErrInvalidArgument)
			}
			mo.Data = append(mo.Data, o)
		}
	}
	return mo, nil
}

// DataString joins the data options for mount(2).
func (mo MountOptions) DataString() string { return strings.Join(mo.Data, ",") }

// Value returns the value of the last "key=value" data option and whether
// it was present.
func (mo MountOptions) Value(key string) (string, bool) {
	val, found := "", false
	for _, o := range mo.Data {
		if k, v, ok := strings.Cut(o, "="); ok && k == key {
			val, found = v, true
		}
	}
	return val, found
}

// Without returns a copy with every data option named key removed (as
// "key" or "key=value").
func (mo MountOptions) Without(keys ...string) MountOptions {
	out := mo
	out.Data = nil
	for _, o := range mo.Data {
		k, _, _ := strings.Cut(o, "=")
		drop := false
		for _, key := range keys {
			if k == key {
				drop = true
			}
		}
		if !drop {
			out.Data = append(out.Data, o)
		}
	}
	return out
}

// ReadOnly reports whether MS_RDONLY is set.
func (mo MountOptions) ReadOnly() bool { return mo.Flags&unix.MS_RDONLY != 0 }
