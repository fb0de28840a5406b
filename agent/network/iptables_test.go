package network

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestIPTablesMissingTool(t *testing.T) {
	ipt := IPTables{LookPath: func(string) (string, error) { return "", exec.ErrNotFound }}
	_, err := ipt.Save(context.Background(), false)
	if !errors.Is(err, errdefs.ErrNotImplemented) || !strings.Contains(err.Error(), "iptables-save") || !strings.Contains(err.Error(), "image has no iptables") {
		t.Errorf("Save: %v", err)
	}
	_, err = ipt.Restore(context.Background(), true, []byte("*filter\nCOMMIT\n"))
	if !errors.Is(err, errdefs.ErrNotImplemented) || !strings.Contains(err.Error(), "ip6tables-restore") {
		t.Errorf("Restore: %v", err)
	}
}

// fakeTool makes every tool run a shell snippet instead.
func fakeTool(script string, timeout time.Duration) IPTables {
	return IPTables{
		LookPath: func(name string) (string, error) { return name, nil },
		Command: func(ctx context.Context, path string, args ...string) *exec.Cmd {
			return exec.CommandContext(ctx, "sh", "-c", script)
		},
		Timeout: timeout,
	}
}

func TestIPTablesTimeout(t *testing.T) {
	start := time.Now()
	_, err := fakeTool("sleep 30", 200*time.Millisecond).Save(context.Background(), false)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not finish within 200ms") {
		t.Errorf("error = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestIPTablesOutputBound(t *testing.T) {
	_, err := fakeTool("head -c 4000000 /dev/zero", 10*time.Second).Save(context.Background(), false)
	if !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("error = %v", err)
	}
}

func TestIPTablesRestoreFailureIsInvalidArgument(t *testing.T) {
	_, err := fakeTool("cat >/dev/null; echo 'line 2: bad rule' >&2; exit 1", 10*time.Second).Restore(context.Background(), false, []byte("junk\n"))
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "line 2: bad rule") {
		t.Errorf("error = %v", err)
	}
	_, err = fakeTool("cat", time.Second).Restore(context.Background(), false, []byte("a\x00b"))
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("NUL input: %v", err)
	}
}
