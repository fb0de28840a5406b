// Package initrd assembles the guest's initramfs with u-root's image API:
// the static agent, the files under rootfs/ as they are, and in debug
// builds a static busybox with a shell and core tools. The agent is either
// /init itself or, with Options.AgentImage, a file of a compressed squashfs
// image that a few-KiB /init (stub/init.c) mounts and executes: files of the
// initramfs stay in RAM uncompressed, pages of the image only once read,
// and reclaimable. The output is byte-for-byte reproducible, compressed
// with zstd or gzip or not at all (DefaultCompression).
package initrd

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/mkuimage/uimage/initramfs"
	"github.com/u-root/uio/llog"
)

// Compression formats. The kernel must be able to decompress the one used
// (CONFIG_RD_ZSTD or CONFIG_RD_GZIP).
const (
	Zstd = "zstd"
	Gzip = "gzip"
	None = "none"
)

// DefaultCompression is the initrd's compression for a layout. With the
// agent image, none: the image is LZ4 already, and under TCG the kernel's
// zstd pass over it cost more boot time (0.15-0.3 s) than reading a
// larger file; without it, zstd.
func DefaultCompression(agentImage bool) string {
	if agentImage {
		return None
	}
	return Zstd
}

// KernelOption returns the kernel option that decompresses format, or "" for None.
func KernelOption(format string) (string, error) {
	switch format {
	case Zstd:
		return "CONFIG_RD_ZSTD", nil
	case Gzip:
		return "CONFIG_RD_GZIP", nil
	case None:
		return "", nil
	}
	return "", fmt.Errorf("%w: %q (want zstd, gzip or none)", ErrCompression, format)
}

// Errors callers can check with errors.Is.
var (
	ErrCompression = errors.New("unknown compression")
	ErrNotStatic   = errors.New("binary is not statically linked")
	ErrRootfsEntry = errors.New("unsupported rootfs entry")
)

// DebugApplets are the busybox applets linked in debug builds: a shell and
// the tools one needs to look around a running guest.
var DebugApplets = []string{
	"sh", "ash", "cat", "cp", "dmesg", "echo", "env", "free", "grep", "head", "hexdump",
	"ip", "kill", "less", "ln", "ls", "mkdir", "mount", "mv", "netstat", "nsenter", "ps",
	"pwd", "rm", "sed", "sleep", "stat", "sync", "tail", "top", "touch", "tr", "umount",
	"uname", "vi", "wc",
}

// Options describe an initramfs.
type Options struct {
	Agent string // static agent binary: /init, or AgentPath with AgentImage
	// AgentImage puts the agent in a squashfs image (AgentImagePath,
	// mounted on AgentMountPoint by a stub /init); needs gcc and
	// mksquashfs, and a kernel with SQUASHFS_ZSTD and BLK_DEV_LOOP.
	AgentImage  bool
	RootfsDir   string // copied as is ("" for none)
	Debug       bool   // add busybox and DebugApplets
	Busybox     string // static busybox for Debug
	Compression string // Zstd, Gzip or None
	// IPTables adds Debian's iptables-legacy tools with the extensions in
	// IPTablesExtensions and their shared libraries, taken from HostRoot.
	IPTables bool
	HostRoot string // "" means "/"
	Output   string
	Log      *slog.Logger // nil: discard u-root's messages
}

// Result describes the written initramfs.
type Result struct {
	Path        string
	Size        int64
	SHA256      string
	Compression string
	CPIOSize    int64 // uncompressed
	// AgentImageSize is the squashfs image's size (0 without AgentImage).
	AgentImageSize int64
}

// skeleton holds what the kernel and PID 1 need before anything is mounted:
// /dev/console for init's stdio (opened by the kernel before devtmpfs is
// mounted) and the mount points; with agentImage also the agent image's
// mount point and the loop device the stub /init mounts it from.
func skeleton(agentImage bool) (*cpio.Archive, error) {
	recs := []cpio.Record{
		cpio.Directory("dev", 0o755),
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.CharDev("dev/null", 0o666, 1, 3),
		cpio.Directory("proc", 0o555),
		cpio.Directory("sys", 0o555),
		cpio.Directory("run", 0o755),
		cpio.Directory("tmp", 0o1777),
		cpio.Directory("etc", 0o755),
		cpio.Directory("mnt", 0o755),
	}
	if agentImage {
		recs = append(recs, cpio.Directory(strings.TrimPrefix(AgentMountPoint, "/"), 0o755), cpio.Record{Info: cpio.Info{Name: strings.TrimPrefix(AgentLoopDevice, "/"),
			Mode: cpio.S_IFBLK | 0o600, Rmajor: 7, Rminor: 0}})
	}
	return cpio.ArchiveFromRecords(recs)
}

// Build writes the initramfs described by o.
func Build(o Options) (Result, error) {
	if _, err := KernelOption(o.Compression); err != nil {
		return Result{}, err
	}
	if err := checkStatic(o.Agent); err != nil {
		return Result{}, fmt.Errorf("agent: %w", err)
	}
	tmp, err := os.MkdirTemp("", "initrd-")
	if err != nil {
		return Result{}, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	// iptables' files and links, for the agent image or the cpio.
	var iptFiles []string
	iptLinks := map[string]string{}
	if o.IPTables {
		root := o.HostRoot
		if root == "" {
			root = "/"
		}
		iptFiles, iptLinks, err = iptablesFiles(root)
		if err != nil {
			return Result{}, err
		}
	}
	files := []string{absOrSelf(o.Agent) + ":init"}
	symlinks := map[string]string{}
	var imageSize int64
	if o.AgentImage {
		stub, err := buildStub(tmp, guestStub)
		if err != nil {
			return Result{}, err
		}
		if err := checkStatic(stub); err != nil {
			return Result{}, fmt.Errorf("/init stub: %w", err)
		}
		img, err := buildAgentImage(tmp, o.Agent, path.Base(AgentPath), iptFiles, iptLinks)
		if err != nil {
			return Result{}, err
		}
		fi, err := os.Stat(img)
		if err != nil {
			return Result{}, fmt.Errorf("agent image: %w", err)
		}
		imageSize = fi.Size()
		files = []string{stub + ":init", img + ":" + strings.TrimPrefix(AgentImagePath, "/")}
		// /usr, /lib, ... lead into the image, where iptables' files are.
		for _, top := range topDirs(iptFiles, iptLinks) {
			symlinks[top] = AgentMountPoint + "/" + top
		}
	} else {
		files = append(files, iptFiles...)
		for name, target := range iptLinks {
			symlinks[name] = target
		}
	}
	rootfsFiles, err := listRootfs(o.RootfsDir)
	if err != nil {
		return Result{}, err
	}
	for _, f := range rootfsFiles {
		_, dest := splitEntry(f)
		if top, _, _ := strings.Cut(dest, "/"); symlinks[top] != "" {
			return Result{}, fmt.Errorf("%w: %s is under /%s, which leads into the agent image", ErrRootfsEntry, dest, top)
		}
	}
	files = append(files, rootfsFiles...)
	if o.Debug {
		if err := checkStatic(o.Busybox); err != nil {
			return Result{}, fmt.Errorf("busybox: %w", err)
		}
		files = append(files, absOrSelf(o.Busybox)+":bin/busybox")
		for _, a := range DebugApplets {
			symlinks["bin/"+a] = "/bin/busybox"
		}
	}
	base, err := skeleton(o.AgentImage)
	if err != nil {
		return Result{}, fmt.Errorf("initramfs skeleton: %w", err)
	}
	out := &compressedCPIO{path: o.Output, format: o.Compression}
	mods := []uimage.Modifier{
		uimage.WithBaseArchive(base),
		uimage.WithFiles(files...),
		// Static binaries need no ldd; iptables' libraries are resolved
		// by our own ELF walk (iptables.go), which also covers the
		// extensions it loads at run time and which ldd cannot see.
		uimage.WithSkipLDD(),
		uimage.WithOutput(out),
		uimage.WithExistingInit(false),
	}
	for name, target := range symlinks {
		mods = append(mods, uimage.WithSymlink(name, target))
	}
	opts, err := uimage.OptionsFor(mods...)
	if err != nil {
		return Result{}, fmt.Errorf("initramfs options: %w", err)
	}
	uroot := filepath.Join(tmp, "uroot")
	if err := os.Mkdir(uroot, 0o700); err != nil {
		return Result{}, fmt.Errorf("temp dir: %w", err)
	}
	opts.TempDir = uroot
	if err := opts.Create(logger(o.Log)); err != nil {
		return Result{}, fmt.Errorf("create initramfs: %w", err)
	}
	res, err := summarize(o.Output, o.Compression, out.cpioSize)
	res.AgentImageSize = imageSize
	return res, err
}

func logger(l *slog.Logger) *llog.Logger {
	if l == nil {
		return llog.New(slog.LevelError, func(string, ...any) {})
	}
	return llog.New(slog.LevelWarn, func(format string, v ...any) {
		l.Warn(fmt.Sprintf(format, v...))
	})
}

func absOrSelf(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// splitEntry splits a "src:dest" file entry (u-root's form) at its last
// colon: dest never holds one (listRootfs refuses such names).
func splitEntry(f string) (src, dest string) {
	i := strings.LastIndex(f, ":")
	return f[:i], f[i+1:]
}

// topDirs returns the distinct top-level directories of the "src:dest"
// files and the links' names, sorted.
func topDirs(files []string, links map[string]string) []string {
	seen := map[string]bool{}
	add := func(dest string) {
		if top, _, ok := strings.Cut(dest, "/"); ok {
			seen[top] = true
		}
	}
	for _, f := range files {
		_, dest := splitEntry(f)
		add(dest)
	}
	for name := range links {
		add(name)
	}
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// listRootfs returns "src:dest" entries for every regular file and symlink
// under dir, sorted. Anything else (devices, sockets) is refused: the
// skeleton creates the device nodes the guest needs.
func listRootfs(dir string) ([]string, error) {
	if dir == "" {
		return nil, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("rootfs dir: %w", err)
	}
	var out []string
	err = filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(abs, p)
		if err != nil {
			return err
		}
		if rel == "." || d.IsDir() {
			return nil
		}
		if t := d.Type(); !t.IsRegular() && t&fs.ModeSymlink == 0 {
			return fmt.Errorf("%w: %s is %v", ErrRootfsEntry, rel, t)
		}
		if strings.Contains(rel, ":") {
			return fmt.Errorf("%w: %s has a ':' in its name", ErrRootfsEntry, rel)
		}
		if rel == "init" {
			return fmt.Errorf("%w: rootfs must not provide /init (the agent is /init)", ErrRootfsEntry)
		}
		out = append(out, p+":"+filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read rootfs %s: %w", dir, err)
	}
	sort.Strings(out)
	return out, nil
}

// checkStatic refuses dynamically linked binaries: the initramfs carries no
// loader and no libraries.
func checkStatic(path string) error {
	if path == "" {
		return fmt.Errorf("%w: no path given", os.ErrNotExist)
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: %s has an ELF interpreter", ErrNotStatic, path)
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		return fmt.Errorf("%w: %s needs %v", ErrNotStatic, path, libs)
	}
	return nil
}

// compressedCPIO is a u-root initramfs.WriteOpener that writes a newc
// archive through a compressor with fixed settings, and normalizes file
// permissions so that the checkout's umask does not change the output.
type compressedCPIO struct {
	path     string
	format   string
	cpioSize int64
}

var _ initramfs.WriteOpener = (*compressedCPIO)(nil)

func (c *compressedCPIO) OpenWriter() (initramfs.Writer, error) {
	f, err := os.Create(c.path)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", c.path, err)
	}
	var comp io.WriteCloser
	switch c.format {
	case Zstd:
		// One goroutine: the encoder's output must not depend on scheduling.
		comp, err = zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<23), zstd.WithEncoderCRC(true))
	case Gzip:
		var gz *gzip.Writer
		gz, err = gzip.NewWriterLevel(f, gzip.BestCompression)
		comp = gz // zero ModTime and no name in the header: reproducible
	default:
		comp = nopCloser{f}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s compressor: %w", c.format, err)
	}
	cw := &countingWriter{w: comp}
	return &cpioWriter{rw: cpio.Newc.Writer(cw), comp: comp, file: f, counter: cw, owner: c}, nil
}

type cpioWriter struct {
	rw      cpio.RecordWriter
	comp    io.WriteCloser
	file    *os.File
	counter *countingWriter
	owner   *compressedCPIO
}

// WriteRecord normalizes regular file permissions to 0755 or 0644.
func (w *cpioWriter) WriteRecord(r cpio.Record) error {
	if r.Mode&cpio.S_IFMT == cpio.S_IFREG {
		perm := uint64(0o644)
		if r.Mode&0o111 != 0 {
			perm = 0o755
		}
		r.Mode = cpio.S_IFREG | perm
	}
	r = cpio.MakeReproducible(r)
	return w.rw.WriteRecord(r)
}

func (w *cpioWriter) Finish() error {
	err := cpio.WriteTrailer(w.rw)
	if cerr := w.comp.Close(); err == nil {
		err = cerr
	}
	if cerr := w.file.Close(); err == nil {
		err = cerr
	}
	w.owner.cpioSize = w.counter.n
	if err != nil {
		return fmt.Errorf("finish %s: %w", w.owner.path, err)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func summarize(path, format string, cpioSize int64) (Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return Result{}, fmt.Errorf("read back %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Result{}, fmt.Errorf("hash %s: %w", path, err)
	}
	return Result{Path: path, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Compression: format, CPIOSize: cpioSize}, nil
}
