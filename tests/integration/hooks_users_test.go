package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"

	"github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/ocipb"
)

// hookScript records the state it gets on stdin in out/<stage>-<id>.json;
// as a prestart hook it fails for a container that carries the annotation
// "fail-prestart".
func hookScript(out, stage string) string {
	s := "#!/bin/sh\nstate=$(cat)\n"
	if stage == "prestart" {
		s += `case "$state" in *'"fail-prestart"'*) echo "refused by policy" >&2; exit 7;; esac` + "\n"
	}
	s += `id=$(echo "$state" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')` + "\n"
	s += `printf '%s' "$state" > ` + out + "/" + stage + "-$id.json\n"
	return s
}

func readState(t *testing.T, path string) specs.State {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("hook did not run: %v", err)
	}
	var st specs.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s: %q: %v", path, b, err)
	}
	return st
}

func TestGuestHooks(t *testing.T) {
	a := startAgent(t)
	hooksDir, out := t.TempDir(), t.TempDir()
	for _, stage := range []string{"prestart", "poststart", "poststop"} {
		if err := os.MkdirAll(filepath.Join(hooksDir, stage), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hooksDir, stage, "record"), []byte(hookScript(out, stage)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Failing poststart and poststop hooks are logged only (OCI): start
	// and remove below succeed, and the other hooks still run.
	for _, stage := range []string{"poststart", "poststop"} {
		if err := os.WriteFile(filepath.Join(hooksDir, stage, "0-fails"), []byte("#!/bin/sh\necho broken >&2\nexit 9\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Not executable: never run.
	if err := os.WriteFile(filepath.Join(hooksDir, "poststart", "data"), []byte("#!/bin/sh\ntouch "+out+"/data-ran\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, time.Minute)
	if _, err := a.cli.CreateSandbox(ctx, &agentpb.CreateSandboxRequest{SandboxId: "pod", GuestHookPath: hooksDir}); err != nil {
		t.Fatal(err)
	}

	a.create("hooked", a.spec(false, "/bin/sh", "-c", "sleep 100"))
	c, err := a.sb.Container("hooked")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := c.Process("")
	pre := readState(t, filepath.Join(out, "prestart-hooked.json"))
	bundle := filepath.Join(a.roots.Bundles, "hooked")
	if pre.ID != "hooked" || pre.Pid != p.Pid() || pre.Bundle != bundle || pre.Status != specs.StateCreating {
		t.Errorf("prestart state %+v; want id hooked, pid %d, bundle %s, creating", pre, p.Pid(), bundle)
	}
	if _, err := os.Stat(filepath.Join(out, "poststart-hooked.json")); err == nil {
		t.Error("poststart ran before StartContainer")
	}
	// The bundle records the guest hooks that run.
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil || !strings.Contains(string(b), filepath.Join(hooksDir, "poststop", "record")) {
		t.Errorf("bundle config.json lacks the guest hooks: %v", err)
	}

	a.start("hooked")
	post := readState(t, filepath.Join(out, "poststart-hooked.json"))
	if post.Pid != p.Pid() || post.Status != specs.StateRunning || post.Bundle != bundle {
		t.Errorf("poststart state %+v", post)
	}
	if _, err := os.Stat(filepath.Join(out, "data-ran")); err == nil {
		t.Error("a non-executable hook ran")
	}
	a.remove("hooked")
	stop := readState(t, filepath.Join(out, "poststop-hooked.json"))
	if stop.ID != "hooked" || stop.Status != specs.StateStopped || stop.Bundle != bundle {
		t.Errorf("poststop state %+v", stop)
	}

	// A failing prestart hook fails the create, naming the hook.
	s := defaultSpec(a.rootfs, []string{"/bin/true"}, false)
	s.Annotations = map[string]string{"fail-prestart": "1"}
	_, err = a.cli.CreateContainer(ctx, &agentpb.CreateContainerRequest{ContainerId: "refused", ExecId: "refused", OCI: ocipb.FromSpec(s)})
	wantCode(t, err, codes.FailedPrecondition, filepath.Join(hooksDir, "prestart", "record"))
	if err != nil && !strings.Contains(err.Error(), "refused by policy") {
		t.Errorf("error %v lacks the hook's output", err)
	}
	if _, err := a.sb.Container("refused"); err == nil {
		t.Error("the refused container exists")
	}
	// and leaves the sandbox able to run the next one.
	a.run("after", a.spec(false, "/bin/true"))
	a.wait("after", "after")
	a.remove("after")
}

func TestGuestHookPathHostile(t *testing.T) {
	a := startAgent(t)
	ctx := ctxT(t, time.Minute)
	_, err := a.cli.CreateSandbox(ctx, &agentpb.CreateSandboxRequest{SandboxId: "pod", GuestHookPath: "etc/hooks"})
	wantCode(t, err, codes.InvalidArgument, "not absolute")
	// Missing: no hooks, the sandbox is created.
	if _, err := a.cli.CreateSandbox(ctx, &agentpb.CreateSandboxRequest{SandboxId: "pod", GuestHookPath: "/nonexistent/hooks"}); err != nil {
		t.Fatal(err)
	}
	a.run("plain", a.spec(false, "/bin/true"))
	a.wait("plain", "plain")
	a.remove("plain")
}

// namedUserRootfs is a busybox rootfs of the test's own (the shared one
// stays as it is) whose passwd and group know "app".
func namedUserRootfs(t *testing.T, shared string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(shared, "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ name, body string }{
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/:/bin/sh\n"},
		{"etc/group", "root:x:0:\napp:x:1001:\naudio:x:29:app\nstaff:x:50:\n"},
	} {
		if err := os.WriteFile(filepath.Join(root, f.name), []byte(f.body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestProcessUsername(t *testing.T) {
	a := startAgent(t)
	root := namedUserRootfs(t, a.rootfs)
	ctx := ctxT(t, time.Minute)

	s := defaultSpec(root, []string{"/bin/busybox", "id"}, false)
	s.Process.User = specs.User{UID: 0, GID: 0, Username: "app"}
	a.run("named", ocipb.FromSpec(s))
	out, err := a.readAll(ctx, "named", "named", false)
	if err != nil {
		t.Fatal(err)
	}
	a.wait("named", "named")
	if !strings.Contains(out, "uid=1000(app) gid=1001(app)") || !strings.Contains(out, "29(audio)") {
		t.Errorf("id as user app printed %q", out)
	}
	a.remove("named")

	// An exec with name:group in a running container.
	s = defaultSpec(root, []string{"/bin/busybox", "sleep", "100"}, false)
	a.run("host", ocipb.FromSpec(s))
	p := ocipb.FromSpec(defaultSpec(root, []string{"/bin/busybox", "id"}, false)).Process
	p.User = &agentpb.User{Username: "app:staff"}
	if _, err := a.cli.ExecProcess(ctx, &agentpb.ExecProcessRequest{ContainerId: "host", ExecId: "id", Process: p}); err != nil {
		t.Fatal(err)
	}
	out, err = a.readAll(ctx, "host", "id", false)
	if err != nil {
		t.Fatal(err)
	}
	a.wait("host", "id")
	if !strings.Contains(out, "uid=1000(app) gid=50(staff)") {
		t.Errorf("exec id as app:staff printed %q", out)
	}
	p.User = &agentpb.User{Username: "ghost"}
	_, err = a.cli.ExecProcess(ctx, &agentpb.ExecProcessRequest{ContainerId: "host", ExecId: "ghost", Process: p})
	wantCode(t, err, codes.NotFound, `user "ghost" not found`)
	a.remove("host")

	// Unknown, and a passwd that is a symlink out of the rootfs.
	s = defaultSpec(root, []string{"/bin/busybox", "id"}, false)
	s.Process.User = specs.User{Username: "ghost"}
	_, err = a.cli.CreateContainer(ctx, &agentpb.CreateContainerRequest{ContainerId: "ghost", ExecId: "ghost", OCI: ocipb.FromSpec(s)})
	wantCode(t, err, codes.NotFound, `user "ghost" not found`)
	outside := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(outside, []byte("intruder:x:0:0::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	s.Process.User = specs.User{Username: "intruder"}
	_, err = a.cli.CreateContainer(ctx, &agentpb.CreateContainerRequest{ContainerId: "intruder", ExecId: "intruder", OCI: ocipb.FromSpec(s)})
	wantCode(t, err, codes.NotFound, `user "intruder" not found`)
}
