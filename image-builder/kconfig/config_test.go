package kconfig

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
)

// fakeKconfig mirrors the shape of crypto/Kconfig in 6.12 for CRYPTO_FIPS.
const fakeKconfig = `
mainmenu "test"

config MODULES
	bool "modules"
	help
	  if this help text were parsed, "depends on NOPE" would leak in.
	  depends on NOPE

config MODULE_SIG
	bool "signing"
	depends on MODULES

menuconfig CRYPTO
	bool "crypto"

if CRYPTO
source "crypto/Kconfig"
endif
`

const fakeCryptoKconfig = `
config CRYPTO_FIPS
	bool "FIPS 200 compliance"
	depends on (CRYPTO_ANSI_CPRNG || CRYPTO_DRBG) && !CRYPTO_MANAGER_DISABLE_TESTS
	depends on (MODULE_SIG || !MODULES)

menu "DRBG"
	depends on CRYPTO_RNG_MENU

config CRYPTO_DRBG
	bool "drbg"
endmenu
`

// What kconfig produced for a fragment with CRYPTO_FIPS=y and MODULES=y:
// CRYPTO_FIPS was dropped because MODULE_SIG is unset.
const finalConfigFIPSDropped = `
CONFIG_MODULES=y
# CONFIG_MODULE_SIG is not set
CONFIG_CRYPTO=y
CONFIG_CRYPTO_DRBG=y
# CONFIG_CRYPTO_FIPS is not set
`

const fipsFragment = `
# crypto API
CONFIG_CRYPTO=y
# FIPS mode
CONFIG_CRYPTO_FIPS=y
# the DRBG FIPS needs
CONFIG_CRYPTO_DRBG=y
# modules on, but unsigned
CONFIG_MODULES=y
`

func fakeDeps(t *testing.T) *Deps {
	t.Helper()
	fsys := fstest.MapFS{
		"Kconfig":        {Data: []byte(fakeKconfig)},
		"crypto/Kconfig": {Data: []byte(fakeCryptoKconfig)},
	}
	d, err := ParseKconfigTree(fsys, "Kconfig", nil)
	if err != nil {
		t.Fatalf("ParseKconfigTree: %v", err)
	}
	return d
}

func parseFIPSCase(t *testing.T) ([]Request, Config) {
	t.Helper()
	reqs, err := ParseFragment("fips.conf", strings.NewReader(fipsFragment))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(strings.NewReader(finalConfigFIPSDropped))
	if err != nil {
		t.Fatal(err)
	}
	return reqs, cfg
}

func TestVerifyFIPSWithUnsignedModulesFails(t *testing.T) {
	reqs, cfg := parseFIPSCase(t)
	all, err := Verify(reqs, cfg, nil, fakeDeps(t))
	var verr *VerifyError
	if !errors.As(err, &verr) {
		t.Fatalf("Verify error = %v, want *VerifyError", err)
	}
	if len(verr.Mismatches) != 1 || len(all) != 1 {
		t.Fatalf("mismatches = %+v, want exactly CONFIG_CRYPTO_FIPS", verr.Mismatches)
	}
	m := verr.Mismatches[0]
	if m.Name != "CONFIG_CRYPTO_FIPS" || m.Value != "y" || m.Got != "n" {
		t.Errorf("mismatch = %+v, want CONFIG_CRYPTO_FIPS requested y got n", m)
	}
	msg := err.Error()
	for _, want := range []string{
		"CONFIG_CRYPTO_FIPS: requested y (fips.conf:5), got n",
		"crypto/Kconfig:2: depends on",
		"MODULE_SIG [=n] || !MODULES [=y]",
		"CRYPTO [=y]", // from the enclosing "if CRYPTO" in the parent file
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error message lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "NOPE") {
		t.Errorf("help text was parsed as a dependency:\n%s", msg)
	}
}

func TestAllowlistBlankLineHidesNothing(t *testing.T) {
	reqs, cfg := parseFIPSCase(t)
	allow, err := ParseAllowlist(strings.NewReader("\n# known differences\n\nCONFIG_SOMETHING_ELSE\n   \n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(allow) != 1 {
		t.Fatalf("allowlist = %v, want only CONFIG_SOMETHING_ELSE", allow)
	}
	_, err = Verify(reqs, cfg, allow, nil)
	if err == nil || !strings.Contains(err.Error(), "CONFIG_CRYPTO_FIPS") {
		t.Fatalf("Verify with blank-line allowlist = %v, want failure naming CONFIG_CRYPTO_FIPS", err)
	}
}

func TestAllowlistMatchesWholeNames(t *testing.T) {
	reqs, cfg := parseFIPSCase(t)
	// A prefix of the option must not allow it.
	allow, err := ParseAllowlist(strings.NewReader("CONFIG_CRYPTO\nCONFIG_CRYPTO_FIPS_NAME\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(reqs, cfg, allow, nil); err == nil {
		t.Fatal("prefix and longer names in the allowlist hid CONFIG_CRYPTO_FIPS")
	}
	// The exact name allows it, and the mismatch is still reported.
	allow, err = ParseAllowlist(strings.NewReader("CONFIG_CRYPTO_FIPS  # accepted for this test\n"))
	if err != nil {
		t.Fatal(err)
	}
	all, err := Verify(reqs, cfg, allow, nil)
	if err != nil {
		t.Fatalf("exact allowlist entry did not allow: %v", err)
	}
	if len(all) != 1 || !all[0].Allowed {
		t.Fatalf("allowed mismatch not reported: %+v", all)
	}
}

func TestAllowlistRejectsPatterns(t *testing.T) {
	for _, line := range []string{"CONFIG_CRYPTO_*", "CRYPTO_FIPS", ".*", "CONFIG_A CONFIG_B"} {
		if _, err := ParseAllowlist(strings.NewReader(line + "\n")); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseAllowlist(%q) = %v, want ErrSyntax", line, err)
		}
	}
}

func TestVerifyNotSetRequests(t *testing.T) {
	reqs, err := ParseFragment("x.conf", strings.NewReader("# no modules\n# CONFIG_MODULES is not set\n# want a string\nCONFIG_NAME=\"x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 2 || reqs[0].Value != "n" || reqs[0].Reason != "no modules" {
		t.Fatalf("requests = %+v", reqs)
	}
	// Absent counts as not set.
	if _, err := Verify(reqs, Config{"CONFIG_NAME": `"x"`}, nil, nil); err != nil {
		t.Errorf("absent option did not satisfy 'is not set': %v", err)
	}
	_, err = Verify(reqs, Config{"CONFIG_MODULES": "y", "CONFIG_NAME": `"y"`}, nil, nil)
	var verr *VerifyError
	if !errors.As(err, &verr) || len(verr.Mismatches) != 2 {
		t.Fatalf("Verify = %v, want both options reported", err)
	}
}

func TestMergeConflict(t *testing.T) {
	a, _ := ParseFragment("a.conf", strings.NewReader("CONFIG_X=y\n"))
	b, _ := ParseFragment("b.conf", strings.NewReader("# CONFIG_X is not set\n"))
	if _, err := Merge(append(a, b...)); !errors.Is(err, ErrConflict) {
		t.Fatalf("Merge = %v, want ErrConflict", err)
	}
	same, err := Merge(append(a, a...))
	if err != nil || len(same) != 1 {
		t.Fatalf("Merge of duplicates = %v, %v", same, err)
	}
	if got := Render(append(same, b[0])); got != "CONFIG_X=y\n# CONFIG_X is not set\n" {
		t.Errorf("Render = %q", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, text := range []string{"CONFIG_X\n", "X=y\n", "CONFIG_X=\n", "random words\n"} {
		if _, err := ParseFragment("f", strings.NewReader(text)); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseFragment(%q) = %v, want ErrSyntax", text, err)
		}
		if _, err := ParseConfig(strings.NewReader(text)); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseConfig(%q) = %v, want ErrSyntax", text, err)
		}
	}
}

func TestKconfigUnbalanced(t *testing.T) {
	fsys := fstest.MapFS{"Kconfig": {Data: []byte("if A\nconfig B\n\tbool\n")}}
	if _, err := ParseKconfigTree(fsys, "Kconfig", nil); !errors.Is(err, ErrSyntax) {
		t.Fatalf("unclosed if: %v, want ErrSyntax", err)
	}
	fsys = fstest.MapFS{"Kconfig": {Data: []byte("source \"missing/Kconfig\"\n")}}
	if _, err := ParseKconfigTree(fsys, "Kconfig", nil); err == nil {
		t.Fatal("missing source file accepted")
	}
}

func TestRequirements(t *testing.T) {
	reqs, err := ParseRequirements(strings.NewReader("# comment\nCONFIG_A=y  # the agent needs A\n\nCONFIG_B=y # and B\n# CONFIG_C is not set  # never C\n"))
	if err != nil || len(reqs) != 3 || reqs[2].Name != "CONFIG_C" || reqs[2].Value != "n" || reqs[2].Reason != "never C" {
		t.Fatalf("ParseRequirements = %v, %v", reqs, err)
	}
	for _, text := range []string{"CONFIG_A=y\n", "# CONFIG_A is not set\n", "CONFIG_A # why\n"} {
		if _, err := ParseRequirements(strings.NewReader(text)); !errors.Is(err, ErrSyntax) {
			t.Errorf("ParseRequirements(%q) = %v, want ErrSyntax", text, err)
		}
	}
	err = CheckRequirements(reqs, Config{"CONFIG_A": "y"})
	if !errors.Is(err, ErrRequirement) || !strings.Contains(err.Error(), "CONFIG_B") || strings.Contains(err.Error(), "CONFIG_A:") {
		t.Errorf("CheckRequirements = %v, want only CONFIG_B reported", err)
	}
	if err := CheckRequirements(reqs, Config{"CONFIG_A": "y", "CONFIG_B": "y", "CONFIG_C": "y"}); err == nil || !strings.Contains(err.Error(), "CONFIG_C") {
		t.Errorf("CheckRequirements with CONFIG_C=y = %v, want CONFIG_C reported", err)
	}
	if err := CheckRequirements(reqs, Config{"CONFIG_A": "y", "CONFIG_B": "y"}); err != nil {
		t.Errorf("CheckRequirements on satisfied config = %v", err)
	}
}

func TestExplainIncludesMenuAndIfConditions(t *testing.T) {
	got := strings.Join(fakeDeps(t).Explain("CRYPTO_DRBG", Config{"CONFIG_CRYPTO": "y"}), "\n")
	for _, want := range []string{"crypto/Kconfig:", "CRYPTO_RNG_MENU [=n]", "CRYPTO [=y]"} {
		if !strings.Contains(got, want) {
			t.Errorf("Explain(CRYPTO_DRBG) = %q, lacks %q", got, want)
		}
	}
	if got := fakeDeps(t).Explain("NO_SUCH_OPTION", nil); len(got) != 1 || !strings.Contains(got[0], "no Kconfig definition") {
		t.Errorf("Explain(unknown) = %q", got)
	}
}
