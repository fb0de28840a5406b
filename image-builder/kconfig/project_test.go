package kconfig_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandbox-guest/sandbox-guest/image-builder/kconfig"
	"github.com/sandbox-guest/sandbox-guest/image-builder/kernel"
)

// These tests check the project's own fragments and the agent's
// requirements list, found relative to this package.
const (
	fragmentDir  = "../../kernel-config"
	requirements = "../../agent/kernel-requirements.txt"
)

func projectFragments(t *testing.T) []kconfig.Request {
	t.Helper()
	files, err := kconfig.FragmentFiles(fragmentDir)
	if err != nil {
		t.Fatal(err)
	}
	reqs, err := kconfig.ReadFragments(files)
	if err != nil {
		t.Fatal(err)
	}
	return reqs
}

func TestFragmentsGiveEveryOptionAReason(t *testing.T) {
	for _, r := range projectFragments(t) {
		if r.Reason == "" {
			t.Errorf("%s:%d: %s has no \"# reason\" comment on the line above", r.File, r.Line, r.Name)
		}
	}
}

func TestFragmentsAreFIPSCapable(t *testing.T) {
	want := map[string]string{
		"CONFIG_CRYPTO_FIPS":                  "y",
		"CONFIG_CRYPTO_DRBG":                  "y",
		"CONFIG_CRYPTO_JITTERENTROPY":         "y",
		"CONFIG_CRYPTO_MANAGER_DISABLE_TESTS": "n",
		"CONFIG_MODULES":                      "n",
	}
	got := map[string]string{}
	for _, r := range projectFragments(t) {
		got[r.Name] = r.Value
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("fragments ask for %s=%q, FIPS needs %q", name, got[name], v)
		}
	}
}

// The agent's requirements must be requested by the fragments with the same
// value; the fragments in turn are verified against the final .config.
func TestAgentRequirementsAreInFragments(t *testing.T) {
	f, err := os.Open(requirements)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	reqs, err := kconfig.ParseRequirements(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) < 20 {
		t.Fatalf("only %d requirements read from %s", len(reqs), requirements)
	}
	asked := kconfig.Config{}
	for _, r := range projectFragments(t) {
		asked[r.Name] = r.Value
	}
	if err := kconfig.CheckRequirements(reqs, asked); err != nil {
		t.Fatalf("kernel-config fragments do not ask for what the agent needs: %v", err)
	}
}

// realSource extracts (once, cached) the pinned kernel source. Without the
// Debian package there is no kernel kconfig to run.
func realSource(t *testing.T) (string, kernel.Version) {
	t.Helper()
	if _, err := os.Stat(kernel.DefaultTarball); err != nil {
		t.Skipf("kernel source not installed (apt-get install linux-source-%s): %v", kernel.PinnedSeries, err)
	}
	ctx := context.Background()
	v, err := kernel.TarballVersion(ctx, kernel.DefaultTarball)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.CheckSeries(kernel.PinnedSeries); err != nil {
		t.Fatal(err)
	}
	dir, _, err := kernel.Extract(ctx, kernel.DefaultTarball, v, kernel.DefaultCacheDir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, v
}

func generate(t *testing.T, src string, v kernel.Version, reqs []kconfig.Request) (kconfig.Config, error) {
	t.Helper()
	obj := filepath.Join(kernel.DefaultCacheDir, "obj", "kconfig-test-"+v.String())
	cfg, _, err := kconfig.Generate(context.Background(), src, obj, kernel.Arch, kconfig.Render(reqs))
	if err != nil {
		t.Fatal(err)
	}
	deps, err := kconfig.ParseKconfigTree(os.DirFS(src), "Kconfig", map[string]string{"SRCARCH": kernel.SrcArch})
	if err != nil {
		t.Fatal(err)
	}
	_, err = kconfig.Verify(reqs, cfg, nil, deps)
	return cfg, err
}

func TestRealKernelAcceptsProjectFragments(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the kernel's kconfig")
	}
	src, v := realSource(t)
	cfg, err := generate(t, src, v, projectFragments(t))
	if err != nil {
		t.Fatalf("project fragments against linux %s: %v", v, err)
	}
	if cfg.Value("CONFIG_CRYPTO_FIPS") != "y" {
		t.Fatal("CONFIG_CRYPTO_FIPS missing although verification passed")
	}
}

func TestRealKernelDropsFIPSWithUnsignedModules(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the kernel's kconfig")
	}
	src, v := realSource(t)
	frag := `# crypto API
CONFIG_CRYPTO=y
# FIPS mode
CONFIG_CRYPTO_FIPS=y
# a DRBG
CONFIG_CRYPTO_DRBG_MENU=y
# self-tests on
# CONFIG_CRYPTO_MANAGER_DISABLE_TESTS is not set
# loadable modules, unsigned
CONFIG_MODULES=y
`
	reqs, err := kconfig.ParseFragment("fips-modules.conf", strings.NewReader(frag))
	if err != nil {
		t.Fatal(err)
	}
	_, err = generate(t, src, v, reqs)
	var verr *kconfig.VerifyError
	if !errors.As(err, &verr) {
		t.Fatalf("verification = %v, want a failure", err)
	}
	if len(verr.Mismatches) != 1 || verr.Mismatches[0].Name != "CONFIG_CRYPTO_FIPS" {
		t.Fatalf("mismatches = %v, want only CONFIG_CRYPTO_FIPS", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "MODULE_SIG [=n]") || !strings.Contains(msg, "crypto/Kconfig") {
		t.Errorf("message does not show the unmet dependency:\n%s", msg)
	}
}
