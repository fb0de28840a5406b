package hotplug

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// onlineBlock onlines memory block name ("memory32") as o.memType. It
// reports whether this call changed the block's state. A block already
// online, or onlined concurrently by someone else, is not an error.
func (o *Onliner) onlineBlock(name string) (bool, error) {
	dir := filepath.Join(o.memoryDir(), name)
	state := filepath.Join(dir, "state")
	st, err := readAttr(state)
	switch {
	case err == nil:
		if isOnline(st) {
			return false, nil
		}
		werr := writeAttr(state, string(o.memType))
		now, rerr := readAttr(state)
		if rerr == nil && isOnline(now) {
			return werr == nil, nil
		}
		if werr != nil {
			return false, fmt.Errorf("online memory block %s as %s: %w", name, o.memType, werr)
		}
		if rerr != nil {
			return false, fmt.Errorf("memory block %s: %w", name, rerr)
		}
		return false, fmt.Errorf("memory block %s: state is %q after writing %q", name, now, o.memType)
	case errors.Is(err, fs.ErrNotExist):
		// Without a state file the generic device "online" switch remains.
		online := filepath.Join(dir, "online")
		v, err := readAttr(online)
		if err != nil {
			return false, fmt.Errorf("memory block %s: %w", name, err)
		}
		if v == "1" {
			return false, nil
		}
		if err := writeAttr(online, "1"); err != nil {
			return false, fmt.Errorf("online memory block %s: %w", name, err)
		}
		return true, nil
	default:
		return false, fmt.Errorf("memory block %s: %w", name, err)
	}
}

// isOnline reads a memory block state: the kernel shows "online" whatever
// the zone; "online_movable" and "online_kernel" are accepted too.
func isOnline(state string) bool { return strings.HasPrefix(state, "online") }

// onlineMemory onlines every offline memory block. It goes on past a block
// that fails and returns the blocks it onlined and one error per failure.
func (o *Onliner) onlineMemory() ([]string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	blocks, err := numbered(o.memoryDir(), "memory")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // no memory hot-plug support in this kernel
	}
	if err != nil {
		return nil, fmt.Errorf("list memory blocks: %w", err)
	}
	var done []string
	var errs []error
	for _, b := range blocks {
		name := fmt.Sprintf("memory%d", b)
		changed, err := o.onlineBlock(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if changed {
			done = append(done, name)
		}
	}
	return done, errors.Join(errs...)
}

// MemBlockSize reads the memory block size from block_size_bytes (hex
// digits, no prefix). It returns an error matching fs.ErrNotExist when the
// kernel has no memory hot-plug support.
func (o *Onliner) MemBlockSize() (uint64, error) {
	path := filepath.Join(o.memoryDir(), "block_size_bytes")
	s, err := readAttr(path)
	if err != nil {
		return 0, err
	}
	size, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(s), "0x"), 16, 64)
	if err != nil || size == 0 {
		return 0, fmt.Errorf("%s: %q is not a hex block size", path, s)
	}
	return size, nil
}

// ProbeSupported reports whether the memory probe interface exists.
func (o *Onliner) ProbeSupported() (bool, error) {
	_, err := os.Stat(o.probePath())
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

func (o *Onliner) probePath() string { return filepath.Join(o.memoryDir(), "probe") }

// MemoryInfo answers GetGuestDetails: the memory block size (0 when the
// kernel has no memory hot-plug) when blockSize is set, and whether the
// probe interface exists when probe is set.
func (o *Onliner) MemoryInfo(blockSize, probe bool) (size uint64, probeOK bool, err error) {
	if blockSize {
		size, err = o.MemBlockSize()
		if errors.Is(err, fs.ErrNotExist) {
			size, err = 0, nil
		}
		if err != nil {
			return 0, false, err
		}
	}
	if probe {
		if probeOK, err = o.ProbeSupported(); err != nil {
			return 0, false, fmt.Errorf("memory probe interface: %w", err)
		}
	}
	return size, probeOK, nil
}

// MemHotplugByProbe asks the kernel to add the memory block at each physical
// address through the probe interface. Every address is checked before any
// is written: the interface must exist and each address must be aligned to
// the block size. The blocks added come up offline; their "add" uevents or
// the runtime's following OnlineCPUMem online them.
func (o *Onliner) MemHotplugByProbe(addrs []uint64) error {
	probe := o.probePath()
	ok, err := o.ProbeSupported()
	if err != nil {
		return fmt.Errorf("memory probe interface: %w", err)
	}
	if !ok {
		return fmt.Errorf("memory probe interface %s is absent (kernel without ARCH_MEMORY_PROBE): %w", probe, errdefs.ErrInvalidArgument)
	}
	size, err := o.MemBlockSize()
	if err != nil {
		return fmt.Errorf("memory block size: %w: %w", err, errdefs.ErrFailedPrecondition)
	}
	for _, a := range addrs {
		if a%size != 0 {
			return fmt.Errorf("memory probe address %#x is not aligned to the block size %#x: %w", a, size, errdefs.ErrInvalidArgument)
		}
	}
	for _, a := range addrs {
		err := writeAttr(probe, fmt.Sprintf("%#x", a))
		if errors.Is(err, fs.ErrExist) {
			o.log.Info("memory already present at probe address", "addr", fmt.Sprintf("%#x", a))
			continue
		}
		if err != nil {
			return fmt.Errorf("probe memory at %#x: %w", a, err)
		}
	}
	return nil
}
