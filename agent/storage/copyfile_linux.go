package storage

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
	"github.com/sandbox-guest/sandbox-guest/protocols/guestpath"
)

// CopyRequest is one CopyFile chunk.
type CopyRequest struct {
	Path     string
	FileSize int64
	// FileMode carries the file type (S_IFDIR, S_IFLNK, regular) and the
	// permission bits.
	FileMode uint32
	// DirMode is given to parent directories that have to be created.
	DirMode uint32
	UID     int32
	GID     int32
	Offset  int64
	Data    []byte
}

// FileCopier writes CopyFile requests under Root, never outside it: every
// path component is opened relative to its parent with O_NOFOLLOW, so a
// symlinked parent is refused rather than followed.
type FileCopier struct {
	Root string // default guestpath.SharedDir

	mu sync.Mutex
	// pending holds the temporary files of transfers under way (by
	// path), so that a failed chunk removes only a temporary file this
	// copier wrote, never a file of that name the host copied itself.
	pending map[string]bool
}

func (c *FileCopier) setPending(tmp string, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		c.pending = map[string]bool{}
	}
	if on {
		c.pending[tmp] = true
	} else {
		delete(c.pending, tmp)
	}
}

func (c *FileCopier) isPending(tmp string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending[tmp]
}

// ErrEscape is wrapped by errors about paths that would leave the root.
var ErrEscape = fmt.Errorf("path escapes the shared directory: %w", errdefs.ErrInvalidArgument)

// Copy applies one request. Directories and symlinks are created at once;
// a regular file is written to a temporary name and renamed into place
// (with its mode and owner) once it holds FileSize bytes, so no reader
// ever sees a partial file.
func (c *FileCopier) Copy(req CopyRequest) error {
	root := c.Root
	if root == "" {
		// The shared-directory tree the runtime copies into when the
		// share is not a live filesystem.
		root = guestpath.SharedDir
	}
	parts, err := splitConfined(root, req.Path)
	if err != nil {
		return err
	}
	if req.Offset < 0 || req.FileSize < 0 {
		return fmt.Errorf("copy %s: negative offset %d or file size %d: %w", req.Path, req.Offset, req.FileSize, errdefs.ErrInvalidArgument)
	}
	ftype := req.FileMode & unix.S_IFMT
	if ftype == unix.S_IFREG || ftype == 0 {
		if end := req.Offset + int64(len(req.Data)); end > req.FileSize || end < req.Offset {
			// A bad chunk ends the transfer: drop what earlier chunks wrote.
			if tmp := tempName(filepath.Join(root, filepath.Join(parts...))); c.isPending(tmp) {
				discardTemp(root, parts)
				c.setPending(tmp, false)
			}
			return fmt.Errorf("copy %s: chunk at %d of %d bytes goes past file size %d: %w",
				req.Path, req.Offset, len(req.Data), req.FileSize, errdefs.ErrInvalidArgument)
		}
	}
	perm := req.FileMode & 0o7777
	dirfd, name, err := openParent(root, parts, req.DirMode&0o7777, true)
	if err != nil {
		return fmt.Errorf("copy %s: %w", req.Path, err)
	}
	defer unix.Close(dirfd)

	switch ftype {
	case unix.S_IFDIR:
		return copyDir(dirfd, name, perm, req)
	case unix.S_IFLNK:
		return copySymlink(dirfd, name, req)
	case unix.S_IFREG, 0:
		tmp := tempName(filepath.Join(root, filepath.Join(parts...)))
		done, err := copyRegular(dirfd, name, perm, req)
		c.setPending(tmp, err == nil && !done)
		return err
	default:
		return fmt.Errorf("copy %s: unsupported file type %#o: %w", req.Path, ftype, errdefs.ErrInvalidArgument)
	}
}

// splitConfined checks that p is a clean absolute path strictly under root
// and returns its components below root.
func splitConfined(root, p string) ([]string, error) {
	if p == "" || strings.IndexByte(p, 0) >= 0 {
		return nil, fmt.Errorf("copy path %q is empty or has a NUL byte: %w", hostinput.Clip(p), errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(p) {
		return nil, fmt.Errorf("copy path %q is not absolute: %w", hostinput.Clip(p), ErrEscape)
	}
	for _, comp := range strings.Split(p, "/") {
		if comp == ".." {
			return nil, fmt.Errorf("copy path %q contains \"..\": %w", hostinput.Clip(p), ErrEscape)
		}
	}
	root = filepath.Clean(root)
	clean := filepath.Clean(p)
	rel, ok := strings.CutPrefix(clean, root+"/")
	if !ok || rel == "" {
		return nil, fmt.Errorf("copy path %q is not under %s: %w", hostinput.Clip(p), root, ErrEscape)
	}
	return strings.Split(rel, "/"), nil
}

// openParent walks parts[:len-1] from root, creating missing directories
// with dirMode when create is set, refusing symlinks, and returns the
// parent's descriptor and the last component.
func openParent(root string, parts []string, dirMode uint32, create bool) (int, string, error) {
	fd, err := unix.Open(root, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", fmt.Errorf("open shared directory %s: %w", root, err)
	}
	if dirMode == 0 {
		dirMode = 0o755
	}
	for _, comp := range parts[:len(parts)-1] {
		next, err := unix.Openat(fd, comp, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(fd, comp, dirMode); err != nil && !errors.Is(err, unix.EEXIST) {
				unix.Close(fd)
				return -1, "", fmt.Errorf("create directory %q: %w", comp, err)
			}
			next, err = unix.Openat(fd, comp, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err == nil {
				// The umask narrowed mkdir's mode; set what was asked.
				_ = unix.Fchmod(next, dirMode)
			}
		}
		unix.Close(fd)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, "", fmt.Errorf("parent %q is a symlink or not a directory: %w", comp, ErrEscape)
		}
		if err != nil {
			return -1, "", fmt.Errorf("open parent %q: %w", comp, err)
		}
		fd = next
	}
	return fd, parts[len(parts)-1], nil
}

func copyDir(dirfd int, name string, perm uint32, req CopyRequest) error {
	if err := unix.Mkdirat(dirfd, name, perm); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("copy %s: mkdir: %w", req.Path, err)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return fmt.Errorf("copy %s: a non-directory is in the way: %w", req.Path, errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("copy %s: open directory: %w", req.Path, err)
	}
	defer unix.Close(fd)
	if err := unix.Fchmod(fd, perm); err != nil {
		return fmt.Errorf("copy %s: chmod: %w", req.Path, err)
	}
	if err := unix.Fchown(fd, int(req.UID), int(req.GID)); err != nil {
		return fmt.Errorf("copy %s: chown: %w", req.Path, err)
	}
	return nil
}

func copySymlink(dirfd int, name string, req CopyRequest) error {
	target := string(req.Data)
	if target == "" || strings.IndexByte(target, 0) >= 0 {
		return fmt.Errorf("copy %s: symlink target is empty or has a NUL byte: %w", req.Path, errdefs.ErrInvalidArgument)
	}
	// Kubernetes flips the "..data" link of secret volumes on update:
	// replace whatever non-directory is there.
	if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("copy %s: remove existing entry: %w", req.Path, err)
	}
	if err := unix.Symlinkat(target, dirfd, name); err != nil {
		return fmt.Errorf("copy %s: symlink: %w", req.Path, err)
	}
	if err := unix.Fchownat(dirfd, name, int(req.UID), int(req.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("copy %s: chown symlink: %w", req.Path, err)
	}
	return nil
}

// tempName is where a regular file's chunks collect until it is whole.
func tempName(name string) string { return name + ".tmp" }

// discardTemp removes the temporary file of parts, if its directory
// exists, creating nothing.
func discardTemp(root string, parts []string) {
	dirfd, name, err := openParent(root, parts, 0, false)
	if err != nil {
		return
	}
	_ = unix.Unlinkat(dirfd, tempName(name), 0)
	unix.Close(dirfd)
}

// copyRegular writes one chunk to the temporary file and renames it into
// place once complete. Any failure removes the temporary file: the
// runtime abandons a transfer on its first error, so no later chunk
// would ever complete or remove it.
func copyRegular(dirfd int, name string, perm uint32, req CopyRequest) (done bool, err error) {
	tmp := tempName(name)
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if req.Offset == 0 {
		flags |= unix.O_TRUNC
	}
	fd, err := unix.Openat(dirfd, tmp, flags, 0o600)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return false, fmt.Errorf("copy %s: temporary file is a symlink: %w", req.Path, ErrEscape)
		}
		return false, fmt.Errorf("copy %s: open temporary file: %w", req.Path, err)
	}
	defer unix.Close(fd)
	defer func() {
		if err != nil {
			_ = unix.Unlinkat(dirfd, tmp, 0)
		}
	}()
	for off, data := req.Offset, req.Data; len(data) > 0; {
		n, err := unix.Pwrite(fd, data, off)
		if err != nil {
			return false, fmt.Errorf("copy %s: write at %d: %w", req.Path, off, err)
		}
		data, off = data[n:], off+int64(n)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, fmt.Errorf("copy %s: stat: %w", req.Path, err)
	}
	if st.Size != req.FileSize {
		return false, nil // more chunks to come
	}
	if err := unix.Fchmod(fd, perm); err != nil {
		return false, fmt.Errorf("copy %s: chmod: %w", req.Path, err)
	}
	if err := unix.Fchown(fd, int(req.UID), int(req.GID)); err != nil {
		return false, fmt.Errorf("copy %s: chown: %w", req.Path, err)
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		return false, fmt.Errorf("copy %s: rename into place: %w", req.Path, err)
	}
	return true, nil
}
