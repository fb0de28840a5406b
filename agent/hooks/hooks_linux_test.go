package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func writeExec(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

func TestScanLayout(t *testing.T) {
	dir := t.TempDir()
	writeExec(t, filepath.Join(dir, "prestart", "b"), "#!/bin/sh\n", 0o755)
	writeExec(t, filepath.Join(dir, "prestart", "a"), "#!/bin/sh\n", 0o700)
	writeExec(t, filepath.Join(dir, "prestart", "not-exec"), "#!/bin/sh\n", 0o644)
	if err := os.Mkdir(filepath.Join(dir, "prestart", "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "outside")
	writeExec(t, outside, "#!/bin/sh\n", 0o755)
	if err := os.Symlink(outside, filepath.Join(dir, "prestart", "link")); err != nil {
		t.Fatal(err)
	}
	writeExec(t, filepath.Join(dir, "poststop", "x"), "#!/bin/sh\n", 0o755)
	writeExec(t, filepath.Join(dir, "unknown-stage", "y"), "#!/bin/sh\n", 0o755)

	s, err := Scan(dir+"/", nil) // a trailing slash is harmless
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range s.Hooks(Prestart) {
		got = append(got, h.Path+" "+strings.Join(h.Args, ","))
		if h.Timeout != DefaultTimeout {
			t.Errorf("%s: timeout %v, want %v", h.Path, h.Timeout, DefaultTimeout)
		}
	}
	want := []string{dir + "/prestart/a a,prestart", dir + "/prestart/b b,prestart"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("prestart hooks %q, want %q", got, want)
	}
	if n := len(s.Hooks(Poststart)); n != 0 {
		t.Errorf("%d poststart hooks, want 0 (no directory)", n)
	}
	if ps := s.Hooks(Poststop); len(ps) != 1 || ps[0].Path != dir+"/poststop/x" {
		t.Errorf("poststop hooks %+v", ps)
	}
	sp := s.Spec()
	//lint:ignore SA1019 the stage the layout names
	if sp == nil || len(sp.Prestart) != 2 || len(sp.Poststop) != 1 || *sp.Poststop[0].Timeout != 10 {
		t.Errorf("spec hooks %+v", sp)
	}
}

func TestScanNoHooks(t *testing.T) {
	for _, dir := range []string{"", "/nonexistent/guest/hooks", t.TempDir()} {
		s, err := Scan(dir, nil)
		if err != nil {
			t.Errorf("Scan(%q): %v", dir, err)
		}
		if !s.Empty() || s.Spec() != nil {
			t.Errorf("Scan(%q) found hooks: %+v", dir, s)
		}
	}
}

func TestScanHostile(t *testing.T) {
	dir := t.TempDir()
	writeExec(t, filepath.Join(dir, "real", "prestart", "h"), "#!/bin/sh\n", 0o755)
	if err := os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge")
	for i := range MaxEntries + 1 {
		writeExec(t, filepath.Join(huge, "poststart", fmt.Sprintf("h%03d", i)), "", 0o755)
	}
	// A stage directory that is a symlink is skipped, not followed.
	stageLink := filepath.Join(dir, "stagelink")
	if err := os.MkdirAll(stageLink, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "real", "prestart"), filepath.Join(stageLink, "prestart")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"relative/hooks", "not absolute"},
		{dir + "/real/../real", `contains ".."`},
		{dir + "/link", "is a symlink"},
		{dir + "/file", "not a directory"},
		{huge, fmt.Sprintf("more than %d entries", MaxEntries)},
		{"/a\x00b", "NUL"},
	} {
		_, err := Scan(tc.path, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errdefs.IsInvalidArgument(err) {
			t.Errorf("Scan(%q) = %v, want InvalidArgument with %q", tc.path, err, tc.want)
		}
	}
	s, err := Scan(stageLink, nil)
	if err != nil || !s.Empty() {
		t.Errorf("Scan(stage symlink) = %+v, %v; want no hooks", s, err)
	}
}

func testState() *specs.State {
	return &specs.State{Version: specs.Version, ID: "c1", Status: specs.StateCreating, Pid: 42, Bundle: "/run/bundles/c1",
		Annotations: map[string]string{"k": "v"}}
}

func TestRunStateArgsEnv(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	h := filepath.Join(dir, "poststart", "rec")
	writeExec(t, h, fmt.Sprintf("#!/bin/sh\ncat > %s.state\necho \"$# $1\" > %s.args\nenv > %s.env\necho done\n", out, out, out), 0o755)
	s, err := Scan(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background(), Poststart, testState()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out + ".state")
	if err != nil {
		t.Fatal(err)
	}
	var got specs.State
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("stdin %q: %v", b, err)
	}
	if got.ID != "c1" || got.Pid != 42 || got.Bundle != "/run/bundles/c1" || got.Annotations["k"] != "v" {
		t.Errorf("state on stdin %+v", got)
	}
	// argv is [name, stage]; a script's argv[0] is replaced by its path.
	if b, _ := os.ReadFile(out + ".args"); string(b) != "1 poststart\n" {
		t.Errorf("arguments %q, want one: the stage", b)
	}
	// The shell adds PWD, SHLVL and _ of its own; nothing of the agent's.
	os.Setenv("HOOK_TEST_LEAK", "1")
	defer os.Unsetenv("HOOK_TEST_LEAK")
	if err := s.Run(context.Background(), Poststart, testState()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out + ".env"); strings.Contains(string(b), "HOOK_TEST_LEAK") || strings.Contains(string(b), "HOME=") {
		t.Errorf("hook inherited the agent's environment:\n%s", b)
	}
}

func TestRunFailure(t *testing.T) {
	dir := t.TempDir()
	writeExec(t, filepath.Join(dir, "prestart", "1-fail"), "#!/bin/sh\necho no network for you >&2\nexit 3\n", 0o755)
	ran := filepath.Join(dir, "ran")
	writeExec(t, filepath.Join(dir, "prestart", "2-next"), "#!/bin/sh\ntouch "+ran+"\n", 0o755)
	writeExec(t, filepath.Join(dir, "poststop", "1-fail"), "#!/bin/sh\nexit 1\n", 0o755)
	writeExec(t, filepath.Join(dir, "poststop", "2-next"), "#!/bin/sh\ntouch "+ran+"\n", 0o755)
	s, err := Scan(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(context.Background(), Prestart, testState())
	if err == nil || !strings.Contains(err.Error(), "prestart hook "+dir+"/prestart/1-fail") ||
		!strings.Contains(err.Error(), "no network for you") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("prestart error %v: want the hook's path, exit status and output", err)
	}
	if !errdefs.IsFailedPrecondition(err) {
		t.Errorf("prestart error class: %v", err)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("a prestart hook ran after one failed")
	}
	// Poststop: every hook runs; the failures come back for the log.
	err = s.Run(context.Background(), Poststop, testState())
	if err == nil || !strings.Contains(err.Error(), "poststop/1-fail") {
		t.Errorf("poststop error %v", err)
	}
	if _, err := os.Stat(ran); err != nil {
		t.Error("the poststop hook after a failed one did not run")
	}
}

func TestRunTimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	// The hook leaves a child behind holding its stdout, then hangs.
	h := filepath.Join(dir, "hang")
	writeExec(t, h, "#!/bin/sh\nsleep 600 &\necho $! > "+pidFile+"\nsleep 600\n", 0o755)
	start := time.Now()
	err := Run(context.Background(), Prestart, Hook{Path: h, Args: []string{"hang", "prestart"}, Timeout: 300 * time.Millisecond}, testState())
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), h) {
		t.Fatalf("Run(hanging hook) = %v, want a deadline error naming it", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("Run returned after %v: the timeout did not end the hook", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	// Killed with its group: gone, or a zombie for the test's reaper-less
	// process to leave behind (it is not our child).
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hook's child %d outlived the timeout: %s", pid, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunOutputBounded(t *testing.T) {
	dir := t.TempDir()
	h := filepath.Join(dir, "loud")
	writeExec(t, h, "#!/bin/sh\nhead -c 1000000 /dev/zero | tr '\\0' x\necho END\nexit 1\n", 0o755)
	err := Run(context.Background(), Poststart, Hook{Path: h}, testState())
	if err == nil || !strings.Contains(err.Error(), "END") || len(err.Error()) > 3*outputLimit {
		t.Fatalf("error of %d bytes (want the output's tail, bounded): %.200s", len(fmt.Sprint(err)), err)
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 4}
	for _, w := range []string{"ab", "cd", "e", "fghij", "k"} {
		if n, _ := b.Write([]byte(w)); n != len(w) {
			t.Fatalf("short write")
		}
	}
	if b.String() != "hijk" {
		t.Errorf("tail %q, want hijk", b.String())
	}
}
