package integration

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"

	"github.com/sandbox-guest/sandbox-guest/agent/sandbox"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/ocipb"
)

// GetDiagnosticData "termination_log" returns what the container wrote to
// its termination message path, found through the bind mount at that
// path (Kubernetes' default, or the one the annotation names), after the
// container exited and until it is removed.
func TestGetDiagnosticDataTerminationLog(t *testing.T) {
	a := startAgent(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		id, dest   string
		annotation bool
	}{
		{"term-default", "/dev/termination-log", false},
		{"term-annotated", "/tmp/why", true},
	} {
		t.Run(tc.id, func(t *testing.T) {
			src := filepath.Join(dir, tc.id)
			if err := os.WriteFile(src, nil, 0o666); err != nil {
				t.Fatal(err)
			}
			s := defaultSpec(a.rootfs, []string{"/bin/sh", "-c", "printf 'fatal: disk full' > " + tc.dest + "; exit 3"}, false)
			s.Mounts = append(s.Mounts, specs.Mount{Destination: tc.dest, Source: src, Type: "bind", Options: []string{"rbind", "rw"}})
			if tc.annotation {
				s.Annotations = map[string]string{sandbox.TerminationMessagePathAnnotation: tc.dest}
			}
			a.run(tc.id, ocipb.FromSpec(s))
			if code := a.wait(tc.id, tc.id); code != 3 {
				t.Fatalf("exit status %d, want 3", code)
			}
			r, err := a.cli.GetDiagnosticData(ctxT(t, 10*time.Second), &pb.GetDiagnosticDataRequest{LogType: "termination_log", ContainerId: tc.id})
			if err != nil || r.Data != "fatal: disk full" {
				t.Fatalf("GetDiagnosticData = %v, %v; want the message", r, err)
			}
			a.remove(tc.id)
			_, err = a.cli.GetDiagnosticData(ctxT(t, 10*time.Second), &pb.GetDiagnosticDataRequest{LogType: "termination_log", ContainerId: tc.id})
			wantCode(t, err, codes.NotFound, tc.id)
		})
	}

	// Without a mount at the termination message path there is nothing to read.
	a.run("term-none", a.spec(false, "/bin/true"))
	a.wait("term-none", "term-none")
	_, err := a.cli.GetDiagnosticData(ctxT(t, 10*time.Second), &pb.GetDiagnosticDataRequest{LogType: "termination_log", ContainerId: "term-none"})
	wantCode(t, err, codes.FailedPrecondition, "no termination message mount")
	a.remove("term-none")
}
