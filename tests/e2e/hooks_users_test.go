//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/guestpath"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// Subtests of issue 15: a process's user by name, resolved in the
// container's own /etc/passwd and /etc/group.
func init() {
	registerSharedGuestTest("ProcessUsername", (*suite).testProcessUsername)
}

func (s *suite) testProcessUsername(t *testing.T) {
	const cid = "named-user"
	root := fixture.HostRootfs(s.share, cid)
	if err := fixture.BusyboxRootfs(root, s.bb); err != nil {
		t.Fatal(err)
	}
	for name, add := range map[string]string{
		"etc/passwd": "app:x:1000:1001:App:/:/bin/sh\n",
		"etc/group":  "app:x:1001:\naudio:x:29:app\n",
	} {
		f, err := os.OpenFile(filepath.Join(root, name), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteString(add)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	spec := fixture.Spec(sandboxID, cid, []string{"id"})
	spec.Process.User = &pb.User{Username: "app"}
	ctx := s.rpcCtx(t)
	_, err := s.cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: cid, ExecId: cid, OCI: spec})
	check(t, "CreateContainer", err)
	_, err = s.cli.Agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: cid})
	check(t, "StartContainer", err)
	out := s.readStdout(t, cid, cid)
	s.wait(t, cid, cid)
	s.remove(t, cid)
	if !strings.Contains(out, "uid=1000(app) gid=1001(app)") || !strings.Contains(out, "29(audio)") {
		t.Errorf("id as user app printed %q", out)
	}

	spec.Process.User = &pb.User{Username: "ghost"}
	_, err = s.cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: "ghost-user", ExecId: "ghost-user", OCI: spec})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `user "ghost"`) {
		t.Errorf("CreateContainer as an unknown user: %v, want NotFound naming it", err)
	}
}

// hookRecord is what tests/e2e/hookrecorder writes for one hook run.
type hookRecord struct {
	Args     []string    `json:"args"`
	State    specs.State `json:"state"`
	PidAlive bool        `json:"pidAlive"`
	EnvLen   int         `json:"envLen"`
}

func readHookRecord(t *testing.T, path string) hookRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the hook did not run: %v", err)
	}
	var r hookRecord
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %q: %v", path, b, err)
	}
	return r
}

// TestE2EGuestHooks boots a guest of its own: guest hooks are named at
// CreateSandbox, which the shared guest has done without them. The hooks
// are a static program on the share (the guest has no shell), in the
// layout CreateSandbox.guest_hook_path names.
func TestE2EGuestHooks(t *testing.T) {
	s := bootSuite(t)
	hookDir := filepath.Join(s.share, "hooks")
	for _, stage := range []string{"prestart", "poststart", "poststop"} {
		dst := filepath.Join(hookDir, stage, "recorder")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", dst, "./hookrecorder")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build the hook: %v\n%s", err, out)
		}
	}
	outDir := filepath.Join(s.share, "hooks-out")
	if err := os.MkdirAll(outDir, 0o777); err != nil {
		t.Fatal(err)
	}
	ctx := s.rpcCtx(t)
	s.createSandbox(ctx, t, func(r *pb.CreateSandboxRequest) {
		r.GuestHookPath = fixture.GuestSharedDir + "hooks"
	})

	const cid = "hooked"
	s.createContainer(t, cid, []string{"sleep", "3600"})
	pre := readHookRecord(t, filepath.Join(outDir, "prestart-"+cid+".json"))
	bundle := filepath.Join(guestpath.BundleDir, cid)
	if pre.State.ID != cid || pre.State.Pid <= 0 || !pre.PidAlive || pre.State.Status != specs.StateCreating {
		t.Errorf("prestart got %+v; want the creating container's live init", pre)
	}
	if pre.State.Bundle != bundle || strings.Join(pre.Args, " ") != "recorder prestart" || pre.EnvLen != 0 {
		t.Errorf("prestart got bundle %q, args %q, %d environment variables", pre.State.Bundle, pre.Args, pre.EnvLen)
	}
	post := readHookRecord(t, filepath.Join(outDir, "poststart-"+cid+".json"))
	if post.State.Pid != pre.State.Pid || post.State.Status != specs.StateRunning || !post.PidAlive {
		t.Errorf("poststart got %+v", post)
	}
	s.remove(t, cid)
	stop := readHookRecord(t, filepath.Join(outDir, "poststop-"+cid+".json"))
	if stop.State.ID != cid || stop.State.Status != specs.StateStopped || stop.State.Bundle != pre.State.Bundle {
		t.Errorf("poststop got %+v", stop)
	}

	// A failing prestart hook fails the create and names the hook.
	spec := fixture.Spec(sandboxID, "refused", []string{"true"})
	spec.Annotations["fail-prestart"] = "1"
	if err := fixture.BusyboxRootfs(fixture.HostRootfs(s.share, "refused"), s.bb); err != nil {
		t.Fatal(err)
	}
	_, err := s.cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: "refused", ExecId: "refused", OCI: spec})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "hooks/prestart/recorder") || !strings.Contains(err.Error(), "refused container refused by policy") {
		t.Errorf("CreateContainer with a refusing prestart hook: %v", err)
	}
	// The sandbox goes on.
	s.createContainer(t, "after", []string{"true"})
	s.wait(t, "after", "after")
	s.remove(t, "after")
}
