package vmm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeBins links the test binary as fake-qemu and fake-virtiofsd.
func fakeBins(t *testing.T) (qemu, virtiofsd string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	qemu, virtiofsd = filepath.Join(dir, "fake-qemu"), filepath.Join(dir, "fake-virtiofsd")
	for _, l := range []string{qemu, virtiofsd} {
		if err := os.Symlink(self, l); err != nil {
			t.Fatal(err)
		}
	}
	return qemu, virtiofsd
}

// fakeVsock is a vsock backend that only accepts QEMU's connection.
type fakeVsock struct {
	ln     net.Listener
	closed chan struct{}
}

func (f *fakeVsock) Serve(ctx context.Context) error {
	c, err := f.ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-f.closed:
		return nil
	}
}

func (f *fakeVsock) Close() error {
	select {
	case <-f.closed:
	default:
		close(f.closed)
	}
	return f.ln.Close()
}

func fakeVsockListener(vhost, uds string, cid uint64) (VsockBackend, error) {
	ln, err := net.Listen("unix", vhost)
	if err != nil {
		return nil, err
	}
	return &fakeVsock{ln: ln, closed: make(chan struct{})}, nil
}

// fakeOpts boots the fakes with a kernel file, a shared dir and vsock.
func fakeOpts(t *testing.T) []Option {
	t.Helper()
	qemu, virtiofsd := fakeBins(t)
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	share := filepath.Join(dir, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	return []Option{
		WithQEMU(qemu), WithVirtiofsd(virtiofsd), WithKernel(kernel),
		WithSharedDir(share, ""), WithVsock(fakeVsockListener),
		WithStartTimeout(10 * time.Second), WithStopTimeout(2 * time.Second),
		WithWorkDir(t.TempDir()),
	}
}

// gone reports whether pid no longer runs (absent or a zombie).
func gone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] == 'Z'
}

func waitGone(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Errorf("%s (pid %d) still running", what, pid)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sleeperPid(t *testing.T, v *VM) int {
	t.Helper()
	var b []byte
	var err error
	for range 100 {
		if b, err = os.ReadFile(filepath.Join(v.Dir(), "sleeper.pid")); err == nil && len(b) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	pid, perr := strconv.Atoi(string(b))
	if perr != nil {
		t.Fatalf("sleeper pid: %v %v", err, perr)
	}
	return pid
}

func TestStartQMPAndShutdown(t *testing.T) {
	ctx := context.Background()
	v, err := Start(ctx, fakeOpts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	st, err := v.QMP().QueryStatus(ctx)
	if err != nil || !st.Running {
		t.Fatalf("query-status = %+v, %v", st, err)
	}
	if got := v.AgentAddress(1024); got != "hvsock://"+filepath.Join(v.Dir(), "vsock.sock")+":1024" {
		t.Errorf("AgentAddress = %q", got)
	}
	sleeper := sleeperPid(t, v)
	vfsd := v.VirtiofsdPid()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	code, err := v.Shutdown(sctx)
	if err != nil || code != 0 {
		t.Fatalf("Shutdown = %d, %v; want 0, nil", code, err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitGone(t, "virtiofsd", vfsd)
	waitGone(t, "qemu's child", sleeper)
	if !strings.Contains(v.ConsoleTail(100), "agent ready") {
		t.Errorf("console tail = %q", v.ConsoleTail(100))
	}
	if code, err := v.ExitCode(); code != 0 || err != nil {
		t.Errorf("ExitCode after Close = %d, %v", code, err)
	}
}

func TestExitStatusReported(t *testing.T) {
	t.Setenv("FAKE_QEMU_MODE", "exit3")
	v, err := Start(context.Background(), fakeOpts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if code, err := v.Wait(ctx); code != 3 || err != nil {
		t.Fatalf("Wait = %d, %v; want 3, nil", code, err)
	}
}

func TestCloseKillsEverything(t *testing.T) {
	t.Setenv("FAKE_QEMU_MODE", "ignoreterm")
	v, err := Start(context.Background(), fakeOpts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	qemu, vfsd, sleeper := v.QEMUPid(), v.VirtiofsdPid(), sleeperPid(t, v)
	start := time.Now()
	if err := v.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("Close took %v", d)
	}
	for what, pid := range map[string]int{"qemu": qemu, "virtiofsd": vfsd, "qemu's child": sleeper} {
		waitGone(t, what, pid)
	}
	if _, err := v.ExitCode(); !errors.Is(err, ErrKilled) {
		t.Errorf("ExitCode of a QEMU that ignored SIGTERM: %v, want ErrKilled", err)
	}
	if _, err := os.Stat(v.Dir()); err != nil {
		t.Errorf("given work dir removed: %v", err)
	}
}

func TestContextCancelTearsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// No work directory given: a temporary one, removed on teardown.
	opts := append(fakeOpts(t), func(c *config) error { c.workDir = ""; return nil })
	v, err := Start(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	qemu, vfsd, sleeper := v.QEMUPid(), v.VirtiofsdPid(), sleeperPid(t, v)
	cancel()
	select {
	case <-v.Exited():
	case <-time.After(8 * time.Second):
		t.Fatal("QEMU still running after the context was cancelled")
	}
	for what, pid := range map[string]int{"qemu": qemu, "virtiofsd": vfsd, "qemu's child": sleeper} {
		waitGone(t, what, pid)
	}
	v.Close()
	if _, err := os.Stat(v.Dir()); !os.IsNotExist(err) {
		t.Errorf("temporary work dir not removed: %v", err)
	}
}

func TestStartFailsWhenQEMUExits(t *testing.T) {
	t.Setenv("FAKE_QEMU_MODE", "fail")
	_, err := Start(context.Background(), fakeOpts(t)...)
	if err == nil || !strings.Contains(err.Error(), "exited with status 1") || !strings.Contains(err.Error(), "-device bogus") {
		t.Fatalf("err = %v; want the exit status and QEMU's output", err)
	}
}

func TestStartFailsWithoutVsockListener(t *testing.T) {
	// A backend that does not listen makes QEMU fail at once, as the real
	// one does when the socket is missing.
	noListen := func(vhost, uds string, cid uint64) (VsockBackend, error) {
		return &fakeVsock{ln: deadListener{}, closed: make(chan struct{})}, nil
	}
	opts := append(fakeOpts(t), WithVsock(noListen))
	_, err := Start(context.Background(), opts...)
	if err == nil || !strings.Contains(err.Error(), "Failed to connect") {
		t.Fatalf("err = %v; want QEMU's connect failure", err)
	}
}

type deadListener struct{}

func (deadListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (deadListener) Close() error              { return nil }
func (deadListener) Addr() net.Addr            { return &net.UnixAddr{} }

func TestVsockListenerError(t *testing.T) {
	bad := func(vhost, uds string, cid uint64) (VsockBackend, error) { return nil, errors.New("boom") }
	v, err := Start(context.Background(), append(fakeOpts(t), WithVsock(bad))...)
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v", err)
	}
	if v != nil {
		t.Fatal("VM returned with an error")
	}
}

// fakeParent starts a VM with the fakes, prints the pids and waits to be
// killed: the helpers must die with it (parent-death signal).
func fakeParent() {
	dir := os.Getenv("FAKE_DIR")
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kernel, nil, 0o644)
	v, err := Start(context.Background(),
		WithQEMU(filepath.Join(dir, "fake-qemu")), WithVirtiofsd(filepath.Join(dir, "fake-virtiofsd")),
		WithKernel(kernel), WithSharedDir(dir, ""), WithVsock(fakeVsockListener),
		WithWorkDir(filepath.Join(dir, "w")))
	if err != nil {
		fail("start: %v", err)
	}
	fmt.Printf("%d %d\n", v.QEMUPid(), v.VirtiofsdPid())
	time.Sleep(time.Minute)
}

func TestHelpersDieWithParent(t *testing.T) {
	qemu, _ := fakeBins(t)
	dir := filepath.Dir(qemu)
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "VMM_FAKE=parent", "FAKE_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("parent output: %v", err)
	}
	var qpid, vpid int
	if _, err := fmt.Sscan(line, &qpid, &vpid); err != nil {
		t.Fatalf("parent output %q: %v", line, err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	waitGone(t, "qemu", qpid)
	waitGone(t, "virtiofsd", vpid)
}

func TestStartWithCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v, err := Start(ctx, fakeOpts(t)...)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a cancelled context: %v, %v", v, err)
	}
}

func TestBoundEndsWhenQEMUExits(t *testing.T) {
	t.Setenv("FAKE_QEMU_MODE", "exit3")
	v, err := Start(context.Background(), fakeOpts(t)...)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx, cancel := v.Bound(context.Background())
	defer cancel()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("bound context still alive after QEMU exited")
	}
	if cause := context.Cause(ctx); !errors.Is(cause, ErrNotRunning) || !strings.Contains(cause.Error(), "status 3") {
		t.Errorf("cause = %v, want ErrNotRunning with status 3", cause)
	}
}
