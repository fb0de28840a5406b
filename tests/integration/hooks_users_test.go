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
