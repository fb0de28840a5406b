package container

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// libcontainer warns on every state save that it cannot write the
// agent's prestart hook; the warning the log forwarder drops must be
// exactly that one.
func TestPrestartHookWarningFiltered(t *testing.T) {
	logger, rec := test.NewNullLogger()
	std := logrus.StandardLogger()
	old := std.Hooks
	std.ReplaceHooks(logger.Hooks)
	defer std.ReplaceHooks(old)
	cfg := &configs.Config{}
	addHooks(cfg, Hooks{Prestart: func(*specs.State) error { return nil }})
	if _, err := json.Marshal(&cfg.Hooks); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range rec.AllEntries() {
		msgs = append(msgs, e.Message)
	}
	if !slices.ContainsFunc(msgs, isPrestartHookWarning) {
		t.Errorf("libcontainer logged %q; none is recognised as the prestart hook warning", msgs)
	}
	if isPrestartHookWarning("cannot serialize hook of type configs.FuncHook, skipping") {
		t.Error("another hook's warning would be dropped")
	}
}

func TestWithBundle(t *testing.T) {
	got := withBundle([]string{"bundle=/agent/cwd", "k=v"}, "/run/bundles/c1")
	if !slices.Equal(got, []string{"k=v", "bundle=/run/bundles/c1"}) {
		t.Errorf("labels %q", got)
	}
}
