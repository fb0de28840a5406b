package hotplug

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// maxCPUs bounds CPU numbers in lists we parse (the kernel's NR_CPUS is at
// most 8192), so a malformed range cannot make us allocate without limit.
const maxCPUs = 8192

// ParseCPUList parses the kernel's CPU list format ("0-1,4", "" for none)
// into sorted, distinct CPU numbers.
func ParseCPUList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := parseCPU(lo)
		if err != nil {
			return nil, fmt.Errorf("CPU list %q: %w", s, err)
		}
		last := first
		if isRange {
			if last, err = parseCPU(hi); err != nil {
				return nil, fmt.Errorf("CPU list %q: %w", s, err)
			}
			if last < first {
				return nil, fmt.Errorf("CPU list %q: range %q runs backwards", s, part)
			}
		}
		for c := first; c <= last; c++ {
			seen[c] = true
		}
	}
	cpus := make([]int, 0, len(seen))
	for c := range seen {
		cpus = append(cpus, c)
	}
	slices.Sort(cpus)
	return cpus, nil
}

func parseCPU(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n >= maxCPUs || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("bad CPU number %q", s)
	}
	return n, nil
}

// numbered lists the entries of dir named prefix<N>, sorted by N.
func numbered(dir, prefix string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ns []int
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || rest == "" {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 || strconv.Itoa(n) != rest {
			continue
		}
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns, nil
}

// onlineCPU onlines one CPU. It reports whether this call changed the CPU's
// state; a CPU without an "online" file (such as a boot CPU that cannot be
// unplugged) is always online.
func (o *Onliner) onlineCPU(cpu int) (bool, error) {
	path := filepath.Join(o.cpuDir(), fmt.Sprintf("cpu%d", cpu), "online")
	st, err := readAttr(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cpu%d: %w", cpu, err)
	}
	if st == "1" {
		return false, nil
	}
	if err := writeAttr(path, "1"); err != nil {
		return false, fmt.Errorf("online cpu%d: %w", cpu, err)
	}
	return true, nil
}

// offlineCPUs lists the CPUs sysfs shows with online=0.
func (o *Onliner) offlineCPUs() ([]int, error) {
	cpus, err := numbered(o.cpuDir(), "cpu")
	if err != nil {
		return nil, fmt.Errorf("list CPUs: %w", err)
	}
	var off []int
	for _, c := range cpus {
		st, err := readAttr(filepath.Join(o.cpuDir(), fmt.Sprintf("cpu%d", c), "online"))
		if err == nil && st == "0" {
			off = append(off, c)
		}
	}
	return off, nil
}

// onlineOfflineCPUs onlines every offline CPU and records each as onlined
// on "add", so a later OnlineCPUMem counts it.
func (o *Onliner) onlineOfflineCPUs() ([]int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	off, err := o.offlineCPUs()
	if err != nil {
		return nil, err
	}
	var done []int
	var errs []error
	for _, c := range off {
		changed, err := o.onlineCPU(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if changed {
			o.cpuClaims[c] = true
			done = append(done, c)
		}
	}
	return done, errors.Join(errs...)
}

// onlineCPUs onlines n CPUs and waits until /sys/devices/system/cpu/online
// lists them. Hot-plugged CPUs may appear in sysfs after the RPC arrives,
// hence the bounded retry.
func (o *Onliner) onlineCPUs(ctx context.Context, n int) error {
	if err := o.checkCPUCapacity(n); err != nil {
		return err
	}
	deadline := o.clock.Now().Add(o.timeout)
	counted := map[int]bool{}
	giveBack := func() {
		// A failed request leaves what it counted to a retry of it.
		o.mu.Lock()
		for c := range counted {
			o.cpuClaims[c] = true
		}
		o.mu.Unlock()
	}
	for {
		lastErr := o.onlineCPUPass(n, counted)
		if len(counted) == n {
			onlineList, err := readAttr(filepath.Join(o.cpuDir(), "online"))
			if err != nil {
				lastErr = fmt.Errorf("read online CPU list: %w", err)
			} else if online, err := ParseCPUList(onlineList); err != nil {
				lastErr = err
			} else {
				missing := missingFrom(counted, online)
				if len(missing) == 0 {
					return nil
				}
				lastErr = fmt.Errorf("cpu online list %q lacks CPUs %v", onlineList, missing)
			}
		}
		if !o.clock.Now().Before(deadline) {
			giveBack()
			msg := fmt.Sprintf("online %d CPUs: %d came online within %s", n, len(counted), o.timeout)
			if lastErr != nil {
				return fmt.Errorf("%s: %w: %w", msg, lastErr, context.DeadlineExceeded)
			}
			return fmt.Errorf("%s: %w", msg, context.DeadlineExceeded)
		}
		if err := o.clock.Sleep(ctx, retryInterval); err != nil {
			giveBack()
			return fmt.Errorf("online %d CPUs: %d came online before: %w", n, len(counted), err)
		}
	}
}

// checkCPUCapacity refuses at once a request no hot-plug can satisfy: CPUs
// only ever come from the possible set, so at most the possible CPUs not
// yet online, plus those onlined on "add" and not yet counted, can be
// onlined for it. Waiting out the timeout would only delay the error.
func (o *Onliner) checkCPUCapacity(n int) error {
	possibleList, err := readAttr(filepath.Join(o.cpuDir(), "possible"))
	if err != nil {
		return nil // cannot tell; the bounded wait decides
	}
	possible, err := ParseCPUList(possibleList)
	if err != nil {
		return nil
	}
	if n > len(possible) {
		return fmt.Errorf("online %d CPUs: the guest can have at most %d: %w", n, len(possible), errdefs.ErrInvalidArgument)
	}
	onlineList, err := readAttr(filepath.Join(o.cpuDir(), "online"))
	if err != nil {
		return nil
	}
	online, err := ParseCPUList(onlineList)
	if err != nil {
		return nil
	}
	o.mu.Lock()
	claimed := len(o.cpuClaims)
	o.mu.Unlock()
	notOnline := 0
	for _, c := range possible {
		if !slices.Contains(online, c) {
			notOnline++
		}
	}
	if n > notOnline+claimed {
		return fmt.Errorf("online %d CPUs: only %d of the guest's possible CPUs (%s) are not online yet (online %s): %w",
			n, notOnline+claimed, possibleList, onlineList, errdefs.ErrInvalidArgument)
	}
	return nil
}

// onlineCPUPass counts CPUs onlined on "add" first, then onlines offline
// CPUs until n are counted. It returns the last error met, if any.
func (o *Onliner) onlineCPUPass(n int, counted map[int]bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for c := range o.cpuClaims {
		if len(counted) >= n {
			break
		}
		counted[c] = true
		delete(o.cpuClaims, c)
	}
	if len(counted) >= n {
		return nil
	}
	off, err := o.offlineCPUs()
	if err != nil {
		return err
	}
	var lastErr error
	for _, c := range off {
		if len(counted) >= n {
			break
		}
		if counted[c] {
			continue
		}
		if _, err := o.onlineCPU(c); err != nil {
			lastErr = err
			continue
		}
		counted[c] = true
	}
	return lastErr
}

func missingFrom(want map[int]bool, have []int) []int {
	var missing []int
	for c := range want {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	slices.Sort(missing)
	return missing
}
