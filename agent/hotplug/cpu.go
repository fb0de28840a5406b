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

// onlineOfflineCPUs onlines every offline CPU.
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
			done = append(done, c)
		}
	}
	return done, errors.Join(errs...)
}

// onlineList reads the kernel's list of online CPUs.
func (o *Onliner) onlineList() ([]int, string, error) {
	list, err := readAttr(filepath.Join(o.cpuDir(), "online"))
	if err != nil {
		return nil, "", fmt.Errorf("read online CPU list: %w", err)
	}
	online, err := ParseCPUList(list)
	if err != nil {
		return nil, list, err
	}
	return online, list, nil
}

// onlineCPUs brings the guest to total online CPUs. total is what the
// runtime sends after hot-adding vCPUs: the sandbox's new vCPU count, boot
// CPU included, as the kernel's online list counts them. Nothing is done
// when that many are online already (CPUs onlined on "add", or by the
// hypervisor); otherwise the missing number of offline CPUs is onlined and
// the call waits until the online list shows the total. Hot-plugged CPUs
// may appear in sysfs after the RPC arrives, hence the bounded retry.
func (o *Onliner) onlineCPUs(ctx context.Context, total int) error {
	if online, _, err := o.onlineList(); err == nil && len(online) >= total {
		return nil
	}
	if err := o.checkCPUCapacity(total); err != nil {
		return err
	}
	deadline := o.clock.Now().Add(o.timeout)
	for {
		lastErr := o.onlineCPUPass(total)
		online, list, err := o.onlineList()
		switch {
		case err != nil:
			lastErr = err
		case len(online) >= total:
			return nil
		case lastErr == nil:
			lastErr = fmt.Errorf("online CPU list %q has %d", list, len(online))
		}
		if !o.clock.Now().Before(deadline) {
			return fmt.Errorf("online CPUs up to a total of %d: not reached within %s: %w: %w", total, o.timeout, lastErr, context.DeadlineExceeded)
		}
		if err := o.clock.Sleep(ctx, retryInterval); err != nil {
			return fmt.Errorf("online CPUs up to a total of %d: %w (last: %w)", total, err, lastErr)
		}
	}
}

// checkCPUCapacity refuses at once a total no hot-plug can reach: CPUs only
// ever come from the possible set. Waiting out the timeout would only delay
// the error.
func (o *Onliner) checkCPUCapacity(total int) error {
	possibleList, err := readAttr(filepath.Join(o.cpuDir(), "possible"))
	if err != nil {
		return nil // cannot tell; the bounded wait decides
	}
	possible, err := ParseCPUList(possibleList)
	if err != nil {
		return nil
	}
	if total > len(possible) {
		return fmt.Errorf("online CPUs up to a total of %d: the guest can have at most %d (possible %s): %w",
			total, len(possible), possibleList, errdefs.ErrInvalidArgument)
	}
	return nil
}

// onlineCPUPass onlines as many offline CPUs as the total still lacks. A CPU
// whose online file already reads 1 but that the kernel does not list yet
// counts as online, so a lagging list never makes a retry online one CPU
// too many. It returns the last error met, if any.
func (o *Onliner) onlineCPUPass(total int) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	online, _, err := o.onlineList()
	if err != nil {
		return err
	}
	cpus, err := numbered(o.cpuDir(), "cpu")
	if err != nil {
		return fmt.Errorf("list CPUs: %w", err)
	}
	up := len(online)
	var off []int
	for _, c := range cpus {
		st, err := readAttr(filepath.Join(o.cpuDir(), fmt.Sprintf("cpu%d", c), "online"))
		switch {
		case err != nil:
		case st == "0":
			off = append(off, c)
		case st == "1" && !slices.Contains(online, c):
			up++
		}
	}
	var lastErr error
	for _, c := range off {
		if up >= total {
			break
		}
		if _, err := o.onlineCPU(c); err != nil {
			lastErr = err
			continue
		}
		up++
	}
	return lastErr
}
