// Package host holds the host-side kit; this file only checks its layering.
package host

import (
	"os/exec"
	"strings"
	"testing"
)

// TestHostImportsNoAgentPackage keeps the host kit independent of the
// guest agent: what both sides share (the protocol, the spec conversion,
// the guest path layout) lives under protocols/. An agent package pulled in
// here, even by a test, drags libcontainer's cgo init into host binaries
// and breaks CGO_ENABLED=0 builds of the host kit.
func TestHostImportsNoAgentPackage(t *testing.T) {
	const module = "github.com/sandbox-guest/sandbox-guest/"
	cmd := exec.Command("go", "list", "-deps", "-test", "-f", "{{.ImportPath}}: {{join .Imports \" \"}}", "./...")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, ": ")
		// Edges from outside agent/ into it are the fault; agent's own
		// imports only follow from one.
		if !strings.HasPrefix(pkg, module) || strings.HasPrefix(pkg, module+"agent/") {
			continue
		}
		checked++
		for _, imp := range strings.Fields(imports) {
			if strings.HasPrefix(imp, module+"agent/") {
				t.Errorf("%s imports %s", pkg, imp)
			}
		}
	}
	if checked == 0 {
		t.Fatal("go list named no package of the module: the check checked nothing")
	}
}
