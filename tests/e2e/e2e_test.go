//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandbox-guest/sandbox-guest/host/vmm"
	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

const (
	agentPort   = 1024
	bootTimeout = 3 * time.Minute // TCG on a loaded 2-core machine
	rpcTimeout  = time.Minute
	sandboxID   = "e2e-sandbox"
)

// imageDir finds the image, or skips: unless E2E_REQUIRE=1 or CI=true, in
// which case a missing image is a failure.
func imageDir(t testing.TB) string {
	dir := os.Getenv("E2E_IMAGE_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "build", "guest")
	}
	dir, _ = filepath.Abs(dir)
	var missing []string
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 {
		return dir
	}
	msg := fmt.Sprintf("guest image incomplete in %s (missing %s); run `make image`", dir, strings.Join(missing, ", "))
	if os.Getenv("E2E_REQUIRE") == "1" || os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

type suite struct {
	vm    *vmm.VM
	share string
	cli   *agentclient.Client
	bb    string

	mu      sync.Mutex
	sleeper string // a long-running container for execs
}

// rpcCtx bounds one step: rpcTimeout, or until QEMU exits.
func (s *suite) rpcCtx(t testing.TB) context.Context {
	bctx, bcancel := s.vm.Bound(context.Background())
	ctx, cancel := context.WithTimeout(bctx, rpcTimeout)
	t.Cleanup(func() { cancel(); bcancel() })
	return ctx
}

// check fails the test on err, naming an Unimplemented method plainly.
func check(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if status.Code(err) == codes.Unimplemented {
		t.Fatalf("%s: agent answers Unimplemented: %v", what, err)
	}
	t.Fatalf("%s: %v", what, err)
}

// bootSuite boots the image with a shared directory and returns a suite
// whose client is connected to a healthy agent. Everything is torn down
// when t ends. extra options add to (or override) the suite's VM setup.
func bootSuite(t testing.TB, extra ...vmm.Option) *suite {
	img := imageDir(t)
	bb := os.Getenv("E2E_BUSYBOX")
	if bb == "" {
		bb = fixture.DefaultBusybox
	}
	if err := fixture.CheckStatic(bb); err != nil {
		t.Fatal(err)
	}

	// Interrupts tear the VM down through Start's context.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	t.Cleanup(stop)

	share, err := os.MkdirTemp("", "e2e-share-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(share) })

	opts := []vmm.Option{
		vmm.WithImageDir(img),
		vmm.WithSharedDir(share, fixture.SharedTag),
		vmm.WithKVM(os.Getenv("E2E_KVM") == "1"),
		// Two vCPUs present but only one started at boot (maxcpus=1):
		// the second is what OnlineCPUMem must bring up. (Hot-adding a
		// vCPU through ACPI is tested too, where the guest kernel allows it.)
		vmm.WithCPUs(2, 4),
		vmm.WithAppend("maxcpus=1"),
		vmm.WithAppend("agent.passfd_listener_port=" + strconv.Itoa(streamListenerPort)), // streamports_test.go
	}
	if a := os.Getenv("E2E_APPEND"); a != "" {
		opts = append(opts, vmm.WithAppend(a))
	}
	opts = append(opts, extra...)
	vm, err := vmm.Start(ctx, opts...)
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	t.Cleanup(func() {
		if err := vm.Close(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if t.Failed() {
			t.Logf("--- guest console (tail) ---\n%s", vm.ConsoleTail(16<<10))
			if q := vm.QEMULogTail(4096); q != "" {
				t.Logf("--- qemu output ---\n%s", q)
			}
		}
	})
	if vm.VsockSocket() == "" {
		t.Fatal("vmm has no vsock backend wired in: the agent cannot be reached")
	}

	s := &suite{vm: vm, share: share, bb: bb}
	vctx, vcancel := vm.Bound(ctx)
	t.Cleanup(vcancel)
	bctx, cancel := context.WithTimeout(vctx, bootTimeout)
	defer cancel()
	cli, err := agentclient.Dial(bctx, vm.AgentAddress(agentPort))
	if err != nil {
		t.Fatalf("agent not reachable at %s (%v): %v", vm.AgentAddress(agentPort), context.Cause(bctx), err)
	}
	s.cli = cli
	t.Cleanup(func() { cli.Close() })
	// The connection can be up before the services are; Check until serving.
	for {
		r, err := cli.Health.Check(bctx, &pb.CheckRequest{})
		if err == nil && r.Status == pb.HealthCheckResponse_SERVING {
			break
		}
		if bctx.Err() != nil {
			t.Fatalf("agent never became healthy (%v): last %v, %v", context.Cause(bctx), r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("QEMU start to agent ready: %v", time.Since(vm.Started()).Round(time.Millisecond))
	return s
}

func TestE2E(t *testing.T) {
	s := bootSuite(t)
	t.Run("HealthCheck", s.testHealth)
	t.Run("CreateSandbox", s.testCreateSandbox)
	t.Run("ContainerStdoutAndExitCode", s.testContainerExitCode)
	t.Run("ExecWithTTY", s.testExecTTY)
	t.Run("VirtiofsWriteVisibleOnHost", s.testVirtiofsWrite)
	t.Run("FIPS", s.testFIPS)
	t.Run("MemoryHotplug", s.testMemoryHotplug)
	t.Run("CPUHotplug", s.testCPUHotplug)
	t.Run("OOMEvent", s.testOOM)
	for _, st := range sharedGuestTests {
		t.Run(st.name, func(t *testing.T) { st.run(s, t) })
	}
	t.Run("DestroySandboxPowersOff", s.testDestroy)
}

// sharedGuestTest is a subtest that runs on TestE2E's guest after the
// sandbox exists and before DestroySandbox. Files of this package add
// theirs with registerSharedGuestTest from an init func, so that one boot
// serves every concern and each concern keeps its tests in its own file.
type sharedGuestTest struct {
	name string
	run  func(*suite, *testing.T)
}

var sharedGuestTests []sharedGuestTest

func registerSharedGuestTest(name string, run func(*suite, *testing.T)) {
	sharedGuestTests = append(sharedGuestTests, sharedGuestTest{name, run})
}

func (s *suite) testHealth(t *testing.T) {
	r, err := s.cli.Health.Check(s.rpcCtx(t), &pb.CheckRequest{})
	check(t, "Check", err)
	if r.Status != pb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, want SERVING", r.Status)
	}
}

func (s *suite) testCreateSandbox(t *testing.T) {
	s.createSandbox(s.rpcCtx(t), t, func(r *pb.CreateSandboxRequest) {
		r.Dns = sandboxDNS // protocol_test.go
	})
}

// createSandbox creates the suite's pod, as the runtime does first: the
// suite's sandbox id as id and hostname, the shared directory as its
// storage. edit, when not nil, adds to the request first.
func (s *suite) createSandbox(ctx context.Context, tb testing.TB, edit func(*pb.CreateSandboxRequest)) {
	tb.Helper()
	req := &pb.CreateSandboxRequest{Hostname: sandboxID, SandboxId: sandboxID, Storages: fixture.SandboxStorages()}
	if edit != nil {
		edit(req)
	}
	_, err := s.cli.Agent.CreateSandbox(ctx, req)
	check(tb, "CreateSandbox", err)
}

// createContainer writes a busybox rootfs for cid into the share and
// creates and starts the container; it returns the create+start time.
func (s *suite) createContainer(t testing.TB, cid string, args []string, opts ...fixture.SpecOption) time.Duration {
	t.Helper()
	if err := fixture.BusyboxRootfs(fixture.HostRootfs(s.share, cid), s.bb); err != nil {
		t.Fatal(err)
	}
	ctx := s.rpcCtx(t)
	start := time.Now()
	_, err := s.cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{
		ContainerId: cid,
		ExecId:      cid,
		OCI:         fixture.Spec(sandboxID, cid, args, opts...),
	})
	check(t, "CreateContainer "+cid, err)
	_, err = s.cli.Agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: cid})
	check(t, "StartContainer "+cid, err)
	return time.Since(start)
}

// readStdout reads a process's stdout until the agent returns no data.
func (s *suite) readStdout(t testing.TB, cid, execID string) string {
	t.Helper()
	ctx := s.rpcCtx(t)
	var out bytes.Buffer
	for {
		r, err := s.cli.Agent.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: cid, ExecId: execID, Len: 16 << 10})
		check(t, "ReadStdout", err)
		if len(r.Data) == 0 {
			return out.String()
		}
		out.Write(r.Data)
		if out.Len() > 1<<20 {
			t.Fatalf("ReadStdout: more than 1 MiB without end: %q...", out.Bytes()[:200])
		}
	}
}

func (s *suite) wait(t testing.TB, cid, execID string) int32 {
	t.Helper()
	r, err := s.cli.Agent.WaitProcess(s.rpcCtx(t), &pb.WaitProcessRequest{ContainerId: cid, ExecId: execID})
	check(t, "WaitProcess", err)
	return r.Status
}

func (s *suite) remove(t testing.TB, cid string) {
	t.Helper()
	_, err := s.cli.Agent.RemoveContainer(s.rpcCtx(t), &pb.RemoveContainerRequest{ContainerId: cid, Timeout: 10})
	check(t, "RemoveContainer "+cid, err)
}

func (s *suite) testContainerExitCode(t *testing.T) {
	const cid = "hello"
	d := s.createContainer(t, cid, []string{"sh", "-c", "echo hello from the guest; exit 42"})
	t.Logf("container create+start: %v", d.Round(time.Millisecond))
	out := s.readStdout(t, cid, cid)
	if out != "hello from the guest\n" {
		t.Errorf("stdout = %q", out)
	}
	if st := s.wait(t, cid, cid); st != 42 {
		t.Errorf("exit status = %d, want 42", st)
	}
	s.remove(t, cid)
}

// sleeperContainer starts (once) a container that lives for the rest of
// the suite, for execs.
func (s *suite) sleeperContainer(t *testing.T) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sleeper == "" {
		s.createContainer(t, "sleeper", []string{"sleep", "3600"})
		s.sleeper = "sleeper"
	}
	return s.sleeper
}

var execSeq struct {
	sync.Mutex
	n int
}

// exec runs args in container cid and returns stdout and exit status.
func (s *suite) exec(t *testing.T, cid string, tty bool, args ...string) (string, int32) {
	t.Helper()
	execSeq.Lock()
	execSeq.n++
	id := fmt.Sprintf("exec%d", execSeq.n)
	execSeq.Unlock()
	_, err := s.cli.Agent.ExecProcess(s.rpcCtx(t), &pb.ExecProcessRequest{
		ContainerId: cid,
		ExecId:      id,
		Process:     fixture.Process(tty, args...),
	})
	check(t, "ExecProcess "+strings.Join(args, " "), err)
	out := s.readStdout(t, cid, id)
	return out, s.wait(t, cid, id)
}

func (s *suite) testExecTTY(t *testing.T) {
	cid := s.sleeperContainer(t)
	out, st := s.exec(t, cid, true, "sh", "-c", "tty && echo tty-ok")
	if st != 0 {
		t.Errorf("exit status %d, output %q", st, out)
	}
	if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "tty-ok") {
		t.Errorf("tty exec output = %q, want a /dev/pts device and tty-ok", out)
	}
	if !strings.Contains(out, "\r\n") {
		t.Errorf("output %q has no CRLF: not a terminal", out)
	}
}

func (s *suite) testVirtiofsWrite(t *testing.T) {
	const cid = "writer"
	s.createContainer(t, cid, []string{"sh", "-c", "echo written-in-guest > /from-guest.txt"})
	if st := s.wait(t, cid, cid); st != 0 {
		t.Fatalf("writer exited %d", st)
	}
	b, err := os.ReadFile(filepath.Join(fixture.HostRootfs(s.share, cid), "from-guest.txt"))
	if err != nil {
		t.Fatalf("file written in the container is not on the host: %v", err)
	}
	if string(b) != "written-in-guest\n" {
		t.Errorf("host sees %q", b)
	}
	s.remove(t, cid)
}

func (s *suite) memTotalKiB(t *testing.T) uint64 {
	t.Helper()
	out, st := s.exec(t, s.sleeperContainer(t), false, "cat", "/proc/meminfo")
	if st != 0 {
		t.Fatalf("cat /proc/meminfo exited %d", st)
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			n, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("MemTotal line %q: %v", l, err)
			}
			return n
		}
	}
	t.Fatalf("no MemTotal in /proc/meminfo: %q", out)
	return 0
}

func (s *suite) testMemoryHotplug(t *testing.T) {
	const size = 256 << 20
	var before uint64
	t.Run("MemTotalBefore", func(t *testing.T) { before = s.memTotalKiB(t) })
	var plugged time.Time
	t.Run("QMPAddDIMM", func(t *testing.T) {
		ctx := s.rpcCtx(t)
		plugged = time.Now()
		id, err := s.vm.HotplugMemory(ctx, size)
		if err != nil {
			t.Fatalf("QMP hot-plug: %v", err)
		}
		devs, err := s.vm.QMP().QueryMemoryDevices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range devs {
			if d.Data.ID == id && d.Data.Size == size {
				return
			}
		}
		t.Errorf("query-memory-devices has no %s of %d bytes: %+v", id, size, devs)
	})
	want := before + size/1024
	t.Run("MemTotalGrowsByUevent", func(t *testing.T) {
		if before == 0 || plugged.IsZero() {
			t.Fatal("needs MemTotalBefore and QMPAddDIMM")
		}
		// Uevent onlining: MemTotal must grow without any call from us.
		deadline := time.Now().Add(30 * time.Second)
		for {
			now := s.memTotalKiB(t)
			if now >= want {
				t.Logf("MemTotal %d -> %d KiB %v after device_add", before, now, time.Since(plugged).Round(time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("MemTotal %d KiB 30s after hot-plugging %d MiB, want %d (blocks not onlined by uevent)", now, size>>20, want)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
	t.Run("OnlineCPUMem", func(t *testing.T) {
		_, err := s.cli.Agent.OnlineCPUMem(s.rpcCtx(t), &pb.OnlineCPUMemRequest{Wait: true})
		check(t, "OnlineCPUMem", err)
		if before == 0 {
			return
		}
		if after := s.memTotalKiB(t); after < want {
			t.Errorf("MemTotal %d KiB after OnlineCPUMem, want at least %d", after, want)
		}
	})
}

// cpuList reads one of /sys/devices/system/cpu/{online,present,possible}.
func (s *suite) cpuList(t *testing.T, which string) string {
	t.Helper()
	out, st := s.exec(t, s.sleeperContainer(t), false, "cat", "/sys/devices/system/cpu/"+which)
	if st != 0 {
		t.Fatalf("cat cpu/%s exited %d", which, st)
	}
	return strings.TrimSpace(out)
}

func (s *suite) waitCPUList(t *testing.T, which, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := s.cpuList(t, which)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cpu/%s = %q, want %q", which, got, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// testCPUHotplug sends OnlineCPUMem as the runtime does after hot-adding
// vCPUs: nb_cpus is the sandbox's new vCPU total, boot CPU included.
func (s *suite) testCPUHotplug(t *testing.T) {
	t.Run("OnlineCPUMem", func(t *testing.T) {
		if got := s.cpuList(t, "online"); got != "0" {
			t.Fatalf("online CPUs at boot = %q, want 0 (booted with maxcpus=1)", got)
		}
		_, err := s.cli.Agent.OnlineCPUMem(s.rpcCtx(t), &pb.OnlineCPUMemRequest{Wait: true, NbCpus: 2, CpuOnly: true})
		check(t, "OnlineCPUMem(total 2)", err)
		s.waitCPUList(t, "online", "0-1")
		// The total is reached: the same request, and a smaller total,
		// return at once and change nothing.
		for _, n := range []uint32{2, 1} {
			start := time.Now()
			_, err := s.cli.Agent.OnlineCPUMem(s.rpcCtx(t), &pb.OnlineCPUMemRequest{Wait: true, NbCpus: n, CpuOnly: true})
			check(t, fmt.Sprintf("OnlineCPUMem(total %d) with 2 online", n), err)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("OnlineCPUMem(total %d) with 2 online took %s", n, d)
			}
		}
		if got := s.cpuList(t, "online"); got != "0-1" {
			t.Errorf("online CPUs = %q after totals already reached, want 0-1", got)
		}
	})
	// Linux 6.12 counts QEMU's not-yet-present CPUs (disabled MADT
	// entries) as hot-pluggable only when it detects a hypervisor, which
	// it does not under TCG: there is then no slot to plug a vCPU into,
	// and asking for more CPUs than the guest can have must be refused.
	possible, present := s.cpuList(t, "possible"), s.cpuList(t, "present")
	if possible == present {
		t.Run("MoreCPUsThanPossibleRefused", func(t *testing.T) {
			_, err := s.cli.Agent.OnlineCPUMem(s.rpcCtx(t), &pb.OnlineCPUMemRequest{Wait: true, NbCpus: 3, CpuOnly: true})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("OnlineCPUMem(total 3) with possible CPUs %s = %v, want InvalidArgument", possible, err)
			}
			t.Logf("no hot-pluggable CPU slot (possible %s = present %s): %v", possible, present, err)
		})
		return
	}
	t.Run("ACPIHotAdd", func(t *testing.T) {
		if _, err := s.vm.HotplugCPU(s.rpcCtx(t)); err != nil {
			t.Fatalf("QMP CPU hot-plug: %v", err)
		}
		s.waitCPUList(t, "present", "0-2")
		_, err := s.cli.Agent.OnlineCPUMem(s.rpcCtx(t), &pb.OnlineCPUMemRequest{Wait: true, NbCpus: 3, CpuOnly: true})
		check(t, "OnlineCPUMem(total 3 after a hot-add)", err)
		s.waitCPUList(t, "online", "0-2")
	})
}

func (s *suite) testOOM(t *testing.T) {
	const cid = "oom"
	type result struct {
		ev  *pb.OOMEvent
		err error
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	evc := make(chan result, 1)
	go func() {
		ev, err := s.cli.Agent.GetOOMEvent(ctx, &pb.GetOOMEventRequest{})
		evc <- result{ev, err}
	}()
	// The shell doubles a string until the 32 MiB limit kills it.
	s.createContainer(t, cid, []string{"sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done"},
		fixture.WithMemoryLimit(32<<20))
	st := s.wait(t, cid, cid)
	if st != 128+int32(syscall.SIGKILL) {
		t.Errorf("OOM container exit status %d, want %d (SIGKILL)", st, 128+int32(syscall.SIGKILL))
	}
	select {
	case r := <-evc:
		check(t, "GetOOMEvent", r.err)
		if r.ev.ContainerId != cid {
			t.Errorf("OOM event for %q, want %q", r.ev.ContainerId, cid)
		}
	case <-ctx.Done():
		t.Errorf("no OOM event within 2 minutes")
	}
	s.remove(t, cid)
}

func (s *suite) testDestroy(t *testing.T) {
	ctx := s.rpcCtx(t)
	// The runtime always has a GetOOMEvent long poll pending: the destroy
	// answers it, and it must not hold up the reply or the power-off.
	oom := make(chan error, 1)
	go func() {
		_, err := s.cli.Agent.GetOOMEvent(ctx, &pb.GetOOMEventRequest{})
		oom <- err
	}()
	time.Sleep(500 * time.Millisecond) // the poll is in the agent
	// The reply reaches the host before the guest powers off, always.
	_, err := s.cli.Agent.DestroySandbox(ctx, &pb.DestroySandboxRequest{})
	check(t, "DestroySandbox", err)
	select {
	case err := <-oom:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("pending GetOOMEvent after DestroySandbox = %v, want Unavailable (sandbox destroyed)", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("pending GetOOMEvent not answered after DestroySandbox")
	}
	code, werr := s.vm.Wait(ctx)
	if werr != nil {
		t.Fatalf("QEMU did not exit after DestroySandbox: %v", werr)
	}
	if code != 0 {
		t.Errorf("QEMU exit status %d after DestroySandbox, want 0", code)
	}
	// With -no-reboot a guest panic (panic=1) also ends QEMU with 0; the
	// console tells a power-off from a panic.
	console := s.vm.ConsoleTail(64 << 10)
	if strings.Contains(console, "Kernel panic") {
		t.Errorf("the guest panicked instead of powering off")
	}
	if !strings.Contains(console, "reboot: Power down") {
		t.Errorf("no power-off message on the console")
	}
}
