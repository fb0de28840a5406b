package hotplug

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// fakeClock advances only when slept on and runs onSleep each time, which
// lets a test play the kernel between retries.
type fakeClock struct {
	now     time.Time
	sleeps  int
	onSleep func(n int)
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.sleeps++
	c.now = c.now.Add(d)
	if c.onSleep != nil {
		c.onSleep(c.sleeps)
	}
	return nil
}

type fakeSysfs struct {
	t    *testing.T
	root string
}

func newFakeSysfs(t *testing.T) *fakeSysfs {
	t.Helper()
	return &fakeSysfs{t: t, root: t.TempDir()}
}

func (f *fakeSysfs) write(rel, content string) {
	f.t.Helper()
	p := filepath.Join(f.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeSysfs) read(rel string) string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.root, rel))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

func (f *fakeSysfs) block(n int, state string) {
	f.write(fmt.Sprintf("devices/system/memory/memory%d/state", n), state+"\n")
	f.write(fmt.Sprintf("devices/system/memory/memory%d/online", n), map[bool]string{true: "1\n", false: "0\n"}[state == "online"])
}

func (f *fakeSysfs) cpu(n int, online string) {
	dir := fmt.Sprintf("devices/system/cpu/cpu%d", n)
	if online == "" {
		if err := os.MkdirAll(filepath.Join(f.root, dir), 0o755); err != nil {
			f.t.Fatal(err)
		}
		return
	}
	f.write(dir+"/online", online+"\n")
}

// syncCPUOnline plays the kernel: it rewrites cpu/online from the per-CPU
// online files (a CPU without one counts as online).
func (f *fakeSysfs) syncCPUOnline() {
	f.t.Helper()
	cpus, err := numbered(filepath.Join(f.root, "devices/system/cpu"), "cpu")
	if err != nil {
		f.t.Fatal(err)
	}
	var on []string
	for _, c := range cpus {
		b, err := os.ReadFile(filepath.Join(f.root, fmt.Sprintf("devices/system/cpu/cpu%d/online", c)))
		if err != nil || strings.TrimSpace(string(b)) == "1" {
			on = append(on, strconv.Itoa(c))
		}
	}
	f.write("devices/system/cpu/online", strings.Join(on, ",")+"\n")
}

type recordingCpusets struct{ calls []string }

func (r *recordingCpusets) UpdateCpusets(cpus string) error {
	r.calls = append(r.calls, cpus)
	return nil
}

func newOnliner(t *testing.T, fs *fakeSysfs, clk *fakeClock, mod func(*Options)) *Onliner {
	t.Helper()
	opts := Options{SysfsRoot: fs.root, Clock: clk, Timeout: time.Second}
	if mod != nil {
		mod(&opts)
	}
	o, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.stopSweep)
	return o
}

func TestParseCPUList(t *testing.T) {
	good := map[string][]int{
		"0-1,4\n": {0, 1, 4},
		"0":       {0},
		"":        nil,
		"3,0-3":   {0, 1, 2, 3},
		"8191":    {8191},
	}
	for in, want := range good {
		got, err := ParseCPUList(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"1-0", "a", "-1", "0-99999", "1,,2", "+1", "0-", "1-2-3"} {
		if got, err := ParseCPUList(in); err == nil {
			t.Errorf("ParseCPUList(%q) = %v, want an error", in, got)
		}
	}
}

func TestOnlineMemoryBlocks(t *testing.T) {
	for _, typ := range []MemoryOnlineType{OnlineKernel, OnlineMovable} {
		t.Run(string(typ), func(t *testing.T) {
			fs := newFakeSysfs(t)
			fs.write("devices/system/memory/block_size_bytes", "8000000\n")
			fs.block(0, "online")
			fs.block(32, "offline")
			fs.block(33, "offline")
			// A block without a state file is onlined through "online".
			fs.write("devices/system/memory/memory40/online", "0\n")
			o := newOnliner(t, fs, &fakeClock{}, func(o *Options) { o.MemoryOnline = typ })

			if err := o.OnlineCPUMem(context.Background(), 0, false); err != nil {
				t.Fatal(err)
			}
			if got := fs.read("devices/system/memory/memory0/state"); got != "online\n" {
				t.Errorf("online block rewritten: state %q", got)
			}
			for _, b := range []int{32, 33} {
				if got := fs.read(fmt.Sprintf("devices/system/memory/memory%d/state", b)); got != string(typ) {
					t.Errorf("memory%d state = %q, want %q", b, got, typ)
				}
			}
			if got := fs.read("devices/system/memory/memory40/online"); got != "1" {
				t.Errorf("memory40 online = %q, want 1", got)
			}
			// A second call finds nothing to do and succeeds.
			if err := o.OnlineCPUMem(context.Background(), 0, false); err != nil {
				t.Fatalf("second call: %v", err)
			}
		})
	}
}

func TestOnlineCPUMemCPUOnlyLeavesMemory(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.block(32, "offline")
	o := newOnliner(t, fs, &fakeClock{}, nil)
	if err := o.OnlineCPUMem(context.Background(), 0, true); err != nil {
		t.Fatal(err)
	}
	if got := fs.read("devices/system/memory/memory32/state"); got != "offline\n" {
		t.Errorf("cpu_only onlined memory: state %q", got)
	}
}

func TestBlockThatRefusesToOnline(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full to make a write fail")
	}
	fs := newFakeSysfs(t)
	fs.block(32, "offline")
	fs.block(34, "offline")
	// Every write to /dev/full fails with ENOSPC, even for root.
	dir := filepath.Join(fs.root, "devices/system/memory/memory33")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/full", filepath.Join(dir, "state")); err != nil {
		t.Fatal(err)
	}
	o := newOnliner(t, fs, &fakeClock{}, nil)
	err := o.OnlineCPUMem(context.Background(), 0, false)
	if err == nil {
		t.Fatal("OnlineCPUMem succeeded with a block that cannot be onlined")
	}
	if !strings.Contains(err.Error(), "memory block memory33") || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("error does not name the block and cause: %v", err)
	}
	if strings.Contains(err.Error(), "memory32") || strings.Contains(err.Error(), "memory34") {
		t.Errorf("error names healthy blocks: %v", err)
	}
	// The other blocks were onlined anyway.
	for _, b := range []int{32, 34} {
		if got := fs.read(fmt.Sprintf("devices/system/memory/memory%d/state", b)); got != "online" {
			t.Errorf("memory%d state = %q, want online", b, got)
		}
	}
	// The uevent path reports the same failure.
	if err := o.handleUevent("add", "memory", "/devices/system/memory/memory33"); err == nil || !strings.Contains(err.Error(), "memory33") {
		t.Errorf("uevent onlining of memory33: %v", err)
	}
}

func TestBlockStateUnchangedAfterWrite(t *testing.T) {
	fs := newFakeSysfs(t)
	// A state file that is a directory cannot be read or written.
	if err := os.MkdirAll(filepath.Join(fs.root, "devices/system/memory/memory7/state"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := newOnliner(t, fs, &fakeClock{}, nil)
	_, err := o.onlineMemory()
	if err == nil || !strings.Contains(err.Error(), "memory block memory7") {
		t.Errorf("got %v, want an error naming memory7", err)
	}
}

func TestOnlineCPUsWaitsForOnlineList(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.cpu(0, "") // boot CPU: no online file
	fs.cpu(1, "1")
	fs.cpu(2, "0")
	fs.cpu(3, "0")
	fs.cpu(4, "0")
	fs.write("devices/system/cpu/online", "0-1\n")
	fs.write("devices/system/cpu/possible", "0-7\n")
	clk := &fakeClock{}
	clk.onSleep = func(int) { fs.syncCPUOnline() }
	sets := &recordingCpusets{}
	o := newOnliner(t, fs, clk, func(o *Options) { o.Cpusets = sets })

	// Two vCPUs were hot-added to a sandbox of two: the runtime sends 4.
	if err := o.OnlineCPUMem(context.Background(), 4, true); err != nil {
		t.Fatal(err)
	}
	if clk.sleeps != 1 {
		t.Errorf("slept %d times, want 1 (until the online list showed the CPUs)", clk.sleeps)
	}
	for cpu, want := range map[int]string{2: "1", 3: "1", 4: "0\n"} {
		if got := fs.read(fmt.Sprintf("devices/system/cpu/cpu%d/online", cpu)); got != want {
			t.Errorf("cpu%d online = %q, want %q", cpu, got, want)
		}
	}
	if !reflect.DeepEqual(sets.calls, []string{"0,1,2,3"}) {
		t.Errorf("cpuset updates = %q", sets.calls)
	}
}

// The runtime's nb_cpus is the sandbox's new vCPU total, boot CPU included:
// with one of two CPUs online, 2 means "online the other one".
func TestOnlineCPUsTotalOnlinesTheDifference(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.cpu(0, "")
	fs.cpu(1, "0")
	fs.write("devices/system/cpu/online", "0\n")
	fs.write("devices/system/cpu/possible", "0-1\n")
	clk := &fakeClock{}
	clk.onSleep = func(int) { fs.syncCPUOnline() }
	o := newOnliner(t, fs, clk, nil)
	if err := o.OnlineCPUMem(context.Background(), 2, true); err != nil {
		t.Fatalf("nb_cpus=2 with one of two CPUs online: %v", err)
	}
	if got := fs.read("devices/system/cpu/cpu1/online"); got != "1" {
		t.Errorf("cpu1 online = %q", got)
	}
}

// A total that is already online (CPUs onlined on "add", by the hypervisor,
// or a sandbox that shrank) returns at once and touches nothing.
func TestOnlineCPUsTotalAlreadyOnline(t *testing.T) {
	for _, total := range []uint32{1, 2} {
		fs := newFakeSysfs(t)
		fs.cpu(0, "")
		fs.cpu(1, "1")
		fs.cpu(2, "0")
		fs.write("devices/system/cpu/online", "0-1\n")
		fs.write("devices/system/cpu/possible", "0-1\n") // cpu2 could not be onlined anyway
		clk := &fakeClock{}
		sets := &recordingCpusets{}
		o := newOnliner(t, fs, clk, func(o *Options) { o.Cpusets = sets })
		if err := o.OnlineCPUMem(context.Background(), total, true); err != nil {
			t.Fatalf("total %d with 2 online: %v", total, err)
		}
		if clk.sleeps != 0 {
			t.Errorf("total %d: slept %d times", total, clk.sleeps)
		}
		if got := fs.read("devices/system/cpu/cpu2/online"); got != "0\n" {
			t.Errorf("total %d: cpu2 onlined: %q", total, got)
		}
		if !reflect.DeepEqual(sets.calls, []string{"0-1"}) {
			t.Errorf("total %d: cpuset updates = %q", total, sets.calls)
		}
	}
}

func TestOnlineCPUsNonContiguousRange(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.cpu(0, "1")
	fs.cpu(1, "1")
	fs.cpu(4, "0")
	fs.write("devices/system/cpu/online", "0-1\n")
	clk := &fakeClock{}
	clk.onSleep = func(int) { fs.syncCPUOnline() }
	o := newOnliner(t, fs, clk, nil)
	if err := o.OnlineCPUMem(context.Background(), 3, true); err != nil {
		t.Fatal(err)
	}
	if got := fs.read("devices/system/cpu/cpu4/online"); got != "1" {
		t.Errorf("cpu4 online = %q", got)
	}
	if got := fs.read("devices/system/cpu/online"); got != "0,1,4\n" {
		t.Errorf("online list = %q", got)
	}
}

func TestOnlineCPUsThatAppearLate(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.cpu(0, "")
	fs.write("devices/system/cpu/online", "0\n")
	clk := &fakeClock{}
	clk.onSleep = func(n int) {
		if n == 3 { // the ACPI event is processed after the RPC arrived
			fs.cpu(5, "0")
		}
		fs.syncCPUOnline()
	}
	o := newOnliner(t, fs, clk, nil)
	if err := o.OnlineCPUMem(context.Background(), 2, true); err != nil {
		t.Fatal(err)
	}
	if got := fs.read("devices/system/cpu/cpu5/online"); got != "1" {
		t.Errorf("cpu5 online = %q", got)
	}
	if clk.sleeps != 4 {
		t.Errorf("slept %d times, want 4", clk.sleeps)
	}
}

func TestOnlineCPUsTimesOut(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.cpu(0, "")
	fs.write("devices/system/cpu/online", "0\n")
	clk := &fakeClock{}
	o := newOnliner(t, fs, clk, nil)
	err := o.OnlineCPUMem(context.Background(), 2, true)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `total of 2: not reached within 1s: online CPU list "0" has 1`) {
		t.Fatalf("got %v, want a deadline error counting 1 of 2 CPUs", err)
	}
	if want := int(time.Second / retryInterval); clk.sleeps != want {
		t.Errorf("slept %d times, want %d", clk.sleeps, want)
	}
}

func TestOnlineCPUsCPUWrittenButNotListed(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.cpu(0, "")
	fs.cpu(1, "0")
	fs.cpu(2, "0")
	fs.write("devices/system/cpu/online", "0\n") // the kernel never lists cpu1
	o := newOnliner(t, fs, &fakeClock{}, nil)
	err := o.OnlineCPUMem(context.Background(), 2, true)
	if err == nil || !strings.Contains(err.Error(), `online CPU list "0" has 1`) {
		t.Fatalf("got %v, want an error naming the online list", err)
	}
	// Every retry counted cpu1, written but not listed, as on its way: the
	// lagging list never made one CPU too many come online.
	if got := fs.read("devices/system/cpu/cpu2/online"); got != "0\n" {
		t.Errorf("cpu2 onlined while cpu1 was still on its way: %q", got)
	}
	// A retry of the request finds the total reached.
	fs.syncCPUOnline()
	if err := o.OnlineCPUMem(context.Background(), 2, true); err != nil {
		t.Fatalf("retry: %v", err)
	}
}

func TestOnlineCPUsRejectsMoreThanPossible(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.write("devices/system/cpu/possible", "0-3\n")
	fs.write("devices/system/cpu/online", "0\n")
	o := newOnliner(t, fs, &fakeClock{}, nil)
	for _, total := range []uint32{5, 4000000000} {
		err := o.OnlineCPUMem(context.Background(), total, true)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "at most 4 (possible 0-3)") {
			t.Fatalf("total %d: got %v, want InvalidArgument naming the possible CPUs", total, err)
		}
	}
}

func TestOnlineCPUsRefusesAtOnceBeyondPossible(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.cpu(0, "")
	fs.cpu(1, "1")
	fs.write("devices/system/cpu/possible", "0-1\n")
	fs.write("devices/system/cpu/online", "0-1\n")
	clk := &fakeClock{}
	o := newOnliner(t, fs, clk, nil)
	err := o.OnlineCPUMem(context.Background(), 3, true)
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
	if clk.sleeps != 0 {
		t.Errorf("waited %d times for CPUs that cannot come", clk.sleeps)
	}
	// A possible CPU that is not present yet still leaves room to wait.
	fs.write("devices/system/cpu/possible", "0-2\n")
	if err := o.OnlineCPUMem(context.Background(), 3, true); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with a free possible slot: got %v, want the bounded wait to expire", err)
	}
}

func TestOnlineCPUsCanceled(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.write("devices/system/cpu/online", "0\n")
	o := newOnliner(t, fs, &fakeClock{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := o.OnlineCPUMem(ctx, 2, true); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestMemoryUevent(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.block(32, "offline")
	fs.block(33, "offline")
	o := newOnliner(t, fs, &fakeClock{}, func(o *Options) { o.MemoryOnline = OnlineMovable })

	if !o.WantsUevent("add", "memory") || o.WantsUevent("change", "memory") || o.WantsUevent("add", "cpu") || o.WantsUevent("add", "block") {
		t.Error("WantsUevent filter wrong")
	}
	// Events that are not a memory block add are ignored.
	for _, ev := range [][3]string{
		{"remove", "memory", "/devices/system/memory/memory33"},
		{"add", "memory", "/devices/system/memory/memory33/../memory33"},
		{"add", "memory", "/devices/system/memory/memory033"},
		{"add", "block", "/devices/system/memory/memory33"},
	} {
		o.HandleUevent(ev[0], ev[1], ev[2])
	}
	if got := fs.read("devices/system/memory/memory33/state"); got != "offline\n" {
		t.Fatalf("ignored event onlined memory33: %q", got)
	}
	o.HandleUevent("add", "memory", "/devices/system/memory/memory32")
	if got := fs.read("devices/system/memory/memory32/state"); got != "online_movable" {
		t.Errorf("memory32 state = %q, want online_movable", got)
	}
	// The same event again, and the runtime's OnlineCPUMem after it, are fine.
	if err := o.handleUevent("add", "memory", "/devices/system/memory/memory32"); err != nil {
		t.Errorf("repeated add: %v", err)
	}
	if err := o.OnlineCPUMem(context.Background(), 0, false); err != nil {
		t.Errorf("OnlineCPUMem after uevent: %v", err)
	}
	if got := fs.read("devices/system/memory/memory33/state"); got != "online_movable" {
		t.Errorf("memory33 state = %q", got)
	}
}

func TestCPUUeventCountsTowardOnlineCPUMem(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.cpu(0, "")
	fs.cpu(1, "0")
	fs.cpu(2, "0")
	fs.write("devices/system/cpu/online", "0\n")

	off := newOnliner(t, fs, &fakeClock{}, nil)
	off.HandleUevent("add", "cpu", "/devices/system/cpu/cpu1")
	if got := fs.read("devices/system/cpu/cpu1/online"); got != "0\n" {
		t.Fatalf("CPU onlined on add although not configured: %q", got)
	}

	clk := &fakeClock{}
	o := newOnliner(t, fs, clk, func(o *Options) { o.OnlineCPUOnAdd = true })
	if !o.WantsUevent("add", "cpu") || o.WantsUevent("remove", "cpu") {
		t.Error("WantsUevent(cpu) filter wrong with OnlineCPUOnAdd")
	}
	o.HandleUevent("add", "cpu", "/devices/system/cpu/cpu1")
	if got := fs.read("devices/system/cpu/cpu1/online"); got != "1" {
		t.Fatalf("cpu1 online = %q", got)
	}
	fs.syncCPUOnline()
	// The runtime sends the new total, 2: already online, nothing to do.
	if err := o.OnlineCPUMem(context.Background(), 2, true); err != nil {
		t.Fatal(err)
	}
	if clk.sleeps != 0 {
		t.Errorf("slept %d times", clk.sleeps)
	}
	if got := fs.read("devices/system/cpu/cpu2/online"); got != "0\n" {
		t.Errorf("cpu2 onlined although the total was reached: %q", got)
	}
	// The next hot-add makes the total 3: cpu2 comes online.
	clk.onSleep = func(int) { fs.syncCPUOnline() }
	if err := o.OnlineCPUMem(context.Background(), 3, true); err != nil {
		t.Fatal(err)
	}
	if got := fs.read("devices/system/cpu/cpu2/online"); got != "1" {
		t.Errorf("cpu2 online = %q", got)
	}
}

func TestOnlineAllOffline(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.block(0, "online")
	fs.block(8, "offline")
	fs.cpu(0, "")
	fs.cpu(1, "0")
	fs.write("devices/system/cpu/online", "0\n")
	o := newOnliner(t, fs, &fakeClock{}, func(o *Options) { o.OnlineCPUOnAdd = true })
	if err := o.OnlineAllOffline(); err != nil {
		t.Fatal(err)
	}
	if got := fs.read("devices/system/memory/memory8/state"); got != "online" {
		t.Errorf("memory8 state = %q", got)
	}
	if got := fs.read("devices/system/cpu/cpu1/online"); got != "1" {
		t.Errorf("cpu1 online = %q", got)
	}
	// A kernel without memory hot-plug has no memory directory: not an error.
	empty := newFakeSysfs(t)
	if err := newOnliner(t, empty, &fakeClock{}, nil).OnlineAllOffline(); err != nil {
		t.Errorf("empty sysfs: %v", err)
	}
}

func TestMemoryInfo(t *testing.T) {
	fs := newFakeSysfs(t)
	o := newOnliner(t, fs, &fakeClock{}, nil)
	size, probe, err := o.MemoryInfo(true, true)
	if err != nil || size != 0 || probe {
		t.Errorf("no memory hot-plug: got %d, %v, %v", size, probe, err)
	}
	fs.write("devices/system/memory/block_size_bytes", "8000000\n")
	fs.write("devices/system/memory/probe", "")
	size, probe, err = o.MemoryInfo(true, true)
	if err != nil || size != 128<<20 || !probe {
		t.Errorf("got %d, %v, %v; want 128 MiB and probe", size, probe, err)
	}
	size, probe, err = o.MemoryInfo(false, false)
	if err != nil || size != 0 || probe {
		t.Errorf("nothing asked: got %d, %v, %v", size, probe, err)
	}
	fs.write("devices/system/memory/block_size_bytes", "zz\n")
	if _, _, err := o.MemoryInfo(true, false); err == nil || !strings.Contains(err.Error(), `"zz"`) {
		t.Errorf("bad block size: %v", err)
	}
}

func TestMemHotplugByProbe(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.write("devices/system/memory/block_size_bytes", "8000000\n")
	o := newOnliner(t, fs, &fakeClock{}, nil)

	err := o.MemHotplugByProbe([]uint64{0x100000000})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "probe interface") {
		t.Fatalf("absent probe: got %v, want InvalidArgument naming the interface", err)
	}

	fs.write("devices/system/memory/probe", "")
	err = o.MemHotplugByProbe([]uint64{0x100000000, 0x108000001})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "0x108000001") {
		t.Fatalf("unaligned: got %v, want InvalidArgument naming the address", err)
	}
	if got := fs.read("devices/system/memory/probe"); got != "" {
		t.Fatalf("an address was written before all were checked: %q", got)
	}

	if err := o.MemHotplugByProbe([]uint64{0x108000000}); err != nil {
		t.Fatal(err)
	}
	if got := fs.read("devices/system/memory/probe"); got != "0x108000000" {
		t.Errorf("probe got %q", got)
	}
}

func TestMemHotplugByProbeWriteFails(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	fs := newFakeSysfs(t)
	fs.write("devices/system/memory/block_size_bytes", "8000000\n")
	if err := os.Symlink("/dev/full", filepath.Join(fs.root, "devices/system/memory/probe")); err != nil {
		t.Fatal(err)
	}
	o := newOnliner(t, fs, &fakeClock{}, nil)
	err := o.MemHotplugByProbe([]uint64{0x8000000})
	if err == nil || !strings.Contains(err.Error(), "probe memory at 0x8000000") {
		t.Errorf("got %v", err)
	}
}

func TestNewRejectsUnknownOnlineType(t *testing.T) {
	if _, err := New(Options{MemoryOnline: "online_kernelx"}); err == nil {
		t.Error("New accepted an unknown memory online type")
	}
}

func TestSweepCatchesDroppedMemoryUevents(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.block(32, "offline")
	fs.block(33, "offline") // its uevent was dropped by the listener
	o := newOnliner(t, fs, &fakeClock{}, nil)
	o.sweepDelay = 10 * time.Millisecond
	o.HandleUevent("add", "memory", "/devices/system/memory/memory32")
	if got := fs.read("devices/system/memory/memory32/state"); got != "online" {
		t.Fatalf("memory32 state = %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for fs.read("devices/system/memory/memory33/state") != "online" {
		if time.Now().After(deadline) {
			t.Fatal("memory33 still offline 5s after the last uevent")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRemovedCPUIsNotCounted(t *testing.T) {
	fs := newFakeSysfs(t)
	fs.cpu(0, "")
	fs.cpu(1, "0")
	fs.write("devices/system/cpu/online", "0\n")
	o := newOnliner(t, fs, &fakeClock{}, func(o *Options) { o.OnlineCPUOnAdd = true; o.Timeout = 100 * time.Millisecond })
	o.HandleUevent("add", "cpu", "/devices/system/cpu/cpu1")
	// The host unplugs it again before asking for it.
	if err := os.RemoveAll(filepath.Join(fs.root, "devices/system/cpu/cpu1")); err != nil {
		t.Fatal(err)
	}
	fs.syncCPUOnline()
	err := o.OnlineCPUMem(context.Background(), 2, true)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `online CPU list "0" has 1`) {
		t.Fatalf("got %v, want a deadline error counting 1 CPU: the only hot-added CPU is gone", err)
	}
}
