package container

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// oomWatcher reports OOM kills of one container. It is a single goroutine
// parked on a pollable fd (an inotify watch of memory.events on cgroup v2,
// an eventfd registered on memory.oom_control on v1): no polling, and it
// ends when the container is destroyed.
type oomWatcher struct {
	f    *os.File
	once sync.Once
	done chan struct{}
	// flush reports a kill the goroutine has not seen yet; stop calls it
	// so an OOM kill right before removal is not lost.
	flush func()
}

func watchOOM(id string, paths map[string]string, notify func(), log *slog.Logger) *oomWatcher {
	var w *oomWatcher
	var err error
	if cgroups.IsCgroup2UnifiedMode() {
		w, err = watchOOMv2(paths[""], notify)
	} else {
		w, err = watchOOMv1(paths["memory"], notify)
	}
	if err != nil {
		log.Warn("no OOM notifications", "container", id, "error", err)
		return nil
	}
	return w
}

func (w *oomWatcher) stop() {
	if w == nil {
		return
	}
	w.once.Do(func() {
		if w.flush != nil {
			w.flush()
		}
		_ = w.f.Close()
	})
	<-w.done
}

func watchOOMv2(dir string, notify func()) (*oomWatcher, error) {
	if dir == "" {
		return nil, fmt.Errorf("no unified cgroup path")
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	events := filepath.Join(dir, "memory.events")
	if _, err := unix.InotifyAddWatch(fd, events, unix.IN_MODIFY); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("watch %s: %w", events, err)
	}
	w := &oomWatcher{f: os.NewFile(uintptr(fd), "inotify"), done: make(chan struct{})}
	var mu sync.Mutex
	last := readOOMKills(events)
	check := func() {
		mu.Lock()
		defer mu.Unlock()
		if n := readOOMKills(events); n > last {
			last = n
			notify()
		}
	}
	w.flush = check
	go func() {
		defer close(w.done)
		buf := make([]byte, 4096)
		for {
			if _, err := w.f.Read(buf); err != nil {
				return
			}
			check()
		}
	}()
	return w, nil
}

// readOOMKills reads the oom_kill counter of a cgroup v2 memory.events.
func readOOMKills(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return parseOOMKills(b)
}

func parseOOMKills(b []byte) uint64 {
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		if v, ok := bytes.CutPrefix(line, []byte("oom_kill ")); ok {
			n, _ := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			return n
		}
	}
	return 0
}

func watchOOMv1(dir string, notify func()) (*oomWatcher, error) {
	if dir == "" {
		return nil, fmt.Errorf("no memory cgroup")
	}
	ctl, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return nil, err
	}
	defer ctl.Close() // the kernel keeps its own reference once registered
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	reg := fmt.Sprintf("%d %d", efd, ctl.Fd())
	eventControl := filepath.Join(dir, "cgroup.event_control")
	if err := os.WriteFile(eventControl, []byte(reg), 0o600); err != nil {
		_ = unix.Close(efd)
		return nil, fmt.Errorf("register OOM eventfd: %w", err)
	}
	w := &oomWatcher{f: os.NewFile(uintptr(efd), "oom-eventfd"), done: make(chan struct{})}
	w.flush = func() {
		// A pending count means an OOM the goroutine has not read yet;
		// reading resets it, so it is reported once either way.
		rc, err := w.f.SyscallConn()
		if err != nil {
			return
		}
		var n int
		_ = rc.Control(func(fd uintptr) {
			var buf [8]byte
			n, _ = unix.Read(int(fd), buf[:])
		})
		if n == 8 {
			notify()
		}
	}
	go func() {
		defer close(w.done)
		buf := make([]byte, 8)
		for {
			if _, err := w.f.Read(buf); err != nil {
				return
			}
			// The cgroup's removal also signals the eventfd.
			if _, err := os.Stat(eventControl); err != nil {
				return
			}
			notify()
		}
	}()
	return w, nil
}
