package sandbox

import (
	"context"
	"os"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// newTestSandbox is New with stand-ins for the parts these unit tests do
// not exercise (the wiring package gives the real ones; tests/integration
// runs them).
func newTestSandbox(t *testing.T, cfg Config) *Sandbox {
	t.Helper()
	if cfg.Storage == nil {
		cfg.Storage = noStorages{}
	}
	if cfg.Devices == nil {
		cfg.Devices = noDevices{}
	}
	if cfg.WriteResolvConf == nil {
		cfg.WriteResolvConf = func(path string, lines []string) error {
			return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
		}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type noStorages struct{}

func (noStorages) Mount(context.Context, string, []*pb.Storage) error { return nil }
func (noStorages) Release(context.Context, string) error              { return nil }

type noDevices struct{}

func (noDevices) Apply(context.Context, []*pb.Device, *specs.Spec) error { return nil }
