package storage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sandbox-guest/sandbox-guest/agent/safefs"
	"github.com/sandbox-guest/sandbox-guest/protocols/guestpath"
)

// Limits of a watchable-bind storage, as in the upstream agent: past
// them the storage is bind-mounted instead of copied and polled.
const (
	MaxWatchedEntries = 16
	MaxWatchedBytes   = 1 << 20
)

var errTooBig = errors.New("too large to watch")

// watched is one watchable-bind storage being mirrored by copying.
type watched struct {
	source, target string
	// seen maps a path relative to source to the modification time copied.
	seen map[string]time.Time
	// bound is set once the storage fell back to a bind mount.
	bound bool
}

// watcher polls watchable-bind sources (virtio-fs gives the guest no
// inotify for host-side changes, and Kubernetes updates ConfigMaps and
// Secrets in place). Its goroutine runs only while something is watched.
type watcher struct {
	m        *Manager
	mu       sync.Mutex
	entries  map[*watched]bool
	stop     chan struct{}
	tmpfsSet bool
}

// mountWatchable copies source into target and keeps it in sync, or
// bind-mounts it when it is too big to copy.
func (m *Manager) mountWatchable(r *request) (func() error, error) {
	fi, err := os.Stat(r.st.Source)
	if err != nil {
		return nil, fmt.Errorf("watchable source: %w", err)
	}
	if err := m.ensureWatchTmpfs(r.target); err != nil {
		return nil, err
	}
	w := &watched{source: r.st.Source, target: r.target, seen: map[string]time.Time{}}
	if fi.IsDir() {
		if err := os.MkdirAll(r.target, 0o755); err != nil {
			return nil, fmt.Errorf("create watchable target: %w", err)
		}
	} else if err := os.MkdirAll(filepath.Dir(r.target), 0o755); err != nil {
		return nil, fmt.Errorf("create watchable target parent: %w", err)
	}
	if err := w.sync(); err != nil {
		if !errors.Is(err, errTooBig) {
			_ = safefs.RemoveTree(r.target)
			return nil, err
		}
		m.log.Info("watchable storage too large to copy; bind-mounting it", "source", w.source, "reason", err)
		if err := safefs.RemoveTree(r.target); err != nil {
			return nil, err
		}
		return m.mountBind(r.st.Source, r.key, r.opts)
	}
	wt := m.watcher()
	wt.add(w)
	return func() error {
		wt.remove(w)
		wt.mu.Lock()
		bound := w.bound
		wt.mu.Unlock()
		if bound {
			if err := m.unmount(w.target, w.target); err != nil {
				return err
			}
		}
		return safefs.RemoveTree(w.target)
	}, nil
}

// ensureWatchTmpfs backs the watchable tree with a tmpfs when target lies
// in it: that tree sits inside the (possibly read-only) shared directory.
func (m *Manager) ensureWatchTmpfs(target string) error {
	dir := filepath.Join(m.cfg.Root, strings.TrimPrefix(guestpath.WatchableDir, guestpath.KataRoot))
	rel, err := filepath.Rel(dir, target)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil
	}
	wt := m.watcher()
	wt.mu.Lock()
	defer wt.mu.Unlock()
	if wt.tmpfsSet {
		return nil
	}
	if ok, err := m.cfg.IsMounted(dir); err == nil && ok {
		wt.tmpfsSet = true
		return nil
	}
	// dir lies in the host-writable share: mount through a handle.
	mp, err := m.openMountPoint(dir, true)
	if err != nil {
		return err
	}
	defer mp.Close()
	if err := m.cfg.Mounter.Mount("tmpfs", safefs.ProcPath(mp.under), "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs for watchable storages on %s: %w", dir, err)
	}
	wt.tmpfsSet = true
	return nil
}

func (m *Manager) watcher() *watcher {
	m.watchOnce.Do(func() { m.watch = &watcher{m: m, entries: map[*watched]bool{}} })
	return m.watch
}

func (wt *watcher) add(w *watched) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	wt.entries[w] = true
	if wt.stop == nil {
		wt.stop = make(chan struct{})
		go wt.loop(wt.stop)
	}
}

func (wt *watcher) remove(w *watched) {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	delete(wt.entries, w)
	if len(wt.entries) == 0 && wt.stop != nil {
		close(wt.stop)
		wt.stop = nil
	}
}

func (wt *watcher) loop(stop chan struct{}) {
	t := time.NewTicker(wt.m.cfg.WatchInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			wt.poll()
		}
	}
}

// poll syncs every copied storage once; one that outgrew the limits is
// switched to a bind mount.
func (wt *watcher) poll() {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	for w := range wt.entries {
		if w.bound {
			continue
		}
		err := w.sync()
		if err == nil {
			continue
		}
		if !errors.Is(err, errTooBig) {
			wt.m.log.Warn("watchable storage sync", "source", w.source, "error", err)
			continue
		}
		if err := clearDir(w.target); err != nil {
			wt.m.log.Warn("watchable storage: clear before bind", "target", w.target, "error", err)
		}
		if _, err := os.Stat(w.target); errors.Is(err, fs.ErrNotExist) {
			_ = os.WriteFile(w.target, nil, 0o644)
		}
		if err := wt.m.cfg.Mounter.Mount(w.source, w.target, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			wt.m.log.Error("watchable storage: bind fallback failed; still copying", "source", w.source, "error", err)
			continue
		}
		w.bound = true
		wt.m.log.Info("watchable storage grew past the copy limits; bind-mounted", "source", w.source)
	}
}

func clearDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return safefs.RemoveTree(dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := safefs.RemoveTree(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// sync mirrors source into target: new or modified entries are copied,
// vanished ones removed. It fails with errTooBig, before copying
// anything, when the source holds more than the limits allow.
func (w *watched) sync() error {
	type entry struct {
		rel  string
		info fs.FileInfo
	}
	var list []entry
	var files int
	var size int64
	err := filepath.Walk(w.source, func(p string, info fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(w.source, p)
		if err != nil {
			return err
		}
		if !info.IsDir() {
			files++
			size += info.Size()
			if files > MaxWatchedEntries {
				return fmt.Errorf("%s: more than %d entries: %w", w.source, MaxWatchedEntries, errTooBig)
			}
			if size > MaxWatchedBytes {
				return fmt.Errorf("%s: more than %d bytes: %w", w.source, MaxWatchedBytes, errTooBig)
			}
		}
		list = append(list, entry{rel, info})
		return nil
	})
	if err != nil {
		return err
	}
	present := make(map[string]bool, len(list))
	for _, e := range list {
		present[e.rel] = true
		if t, ok := w.seen[e.rel]; ok && t.Equal(e.info.ModTime()) {
			continue
		}
		if err := copyEntry(filepath.Join(w.source, e.rel), filepath.Join(w.target, e.rel), e.info); err != nil {
			return err
		}
		w.seen[e.rel] = e.info.ModTime()
	}
	for rel := range w.seen {
		if !present[rel] {
			_ = safefs.RemoveTree(filepath.Join(w.target, rel))
			delete(w.seen, rel)
		}
	}
	return nil
}

// copyEntry copies one file, symlink or directory with its mode and owner;
// files go through a temporary name so readers never see half a file.
func copyEntry(src, dst string, info fs.FileInfo) error {
	st, _ := info.Sys().(*syscall.Stat_t)
	chown := func(p string) error {
		if st == nil {
			return nil
		}
		return os.Lchown(p, int(st.Uid), int(st.Gid))
	}
	switch {
	case info.IsDir():
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(dst, info.Mode()&fs.ModePerm); err != nil {
			return err
		}
		return chown(dst)
	case info.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		_ = os.Remove(dst)
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
		return chown(dst)
	case info.Mode().IsRegular():
		in, err := os.Open(src)
		if err != nil {
			return err
		}
		defer in.Close()
		tmp := dst + ".watch-tmp"
		out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, info.Mode()&fs.ModePerm)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, io.LimitReader(in, MaxWatchedBytes+1))
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(tmp, info.Mode()&fs.ModePerm)
		}
		if err == nil {
			err = chown(tmp)
		}
		if err == nil {
			err = os.Rename(tmp, dst)
		}
		if err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("copy %s to %s: %w", src, dst, err)
		}
		return nil
	}
	return nil // sockets, devices, fifos: not mirrored
}
