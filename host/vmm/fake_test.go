package vmm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as fake qemu and virtiofsd (run through
// symlinks named fake-qemu and fake-virtiofsd) and as helper processes
// (selected by VMM_FAKE), so teardown is tested against real processes.
func TestMain(m *testing.M) {
	if os.Getenv("VMM_FAKE") == "sleeper" {
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	switch filepath.Base(os.Args[0]) {
	case "fake-qemu":
		fakeQEMU(os.Args[1:])
		os.Exit(0)
	case "fake-virtiofsd":
		fakeVirtiofsd(os.Args[1:])
		os.Exit(0)
	}
	if os.Getenv("VMM_FAKE") == "parent" {
		fakeParent()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fake: "+format+"\n", args...)
	os.Exit(1)
}

// fakeQEMU mimics the parts of QEMU that vmm relies on: it connects to
// the vhost-user sockets (exiting 1 when nobody listens, like QEMU),
// writes the serial console, serves QMP and exits 0 on quit. It forks a
// sleeper into its process group to check group teardown.
// heldConns keeps the vhost-user connections open (and reachable, so no
// finalizer closes them) while the fake runs.
var heldConns []net.Conn

func fakeQEMU(args []string) {
	mode := os.Getenv("FAKE_QEMU_MODE")
	if mode == "fail" {
		fail("-device bogus: not found")
	}
	if mode == "ignoreterm" {
		signal.Ignore(syscall.SIGTERM)
	}
	var qmpPath, console string
	var chardevs []string
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-qmp":
			qmpPath = strings.TrimPrefix(strings.Split(args[i+1], ",")[0], "unix:")
		case "-serial":
			console = strings.TrimPrefix(args[i+1], "file:")
		case "-chardev":
			for _, kv := range strings.Split(args[i+1], ",") {
				if p, ok := strings.CutPrefix(kv, "path="); ok {
					chardevs = append(chardevs, p)
				}
			}
		}
	}
	for _, p := range chardevs {
		c, err := net.Dial("unix", p)
		if err != nil {
			fail("Failed to connect to '%s': %v", p, err)
		}
		heldConns = append(heldConns, c)
	}
	if err := os.WriteFile(console, []byte("Linux version fake\nagent ready\n"), 0o644); err != nil {
		fail("console: %v", err)
	}
	dir := filepath.Dir(qmpPath)
	sl := exec.Command(os.Args[0])
	sl.Env = append(os.Environ(), "VMM_FAKE=sleeper")
	// Dies with this fake when a test kills only the fake (parent-death
	// test); group teardown is what the other tests check.
	sl.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := sl.Start(); err != nil {
		fail("sleeper: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "sleeper.pid"), []byte(fmt.Sprint(sl.Process.Pid)), 0o644)

	ln, err := net.Listen("unix", qmpPath)
	if err != nil {
		fail("qmp: %v", err)
	}
	if mode == "exit3" {
		go func() {
			time.Sleep(300 * time.Millisecond)
			os.Exit(3)
		}()
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fail("accept: %v", err)
		}
		go serveFakeQMP(c)
	}
}

func serveFakeQMP(c net.Conn) {
	fmt.Fprint(c, `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}`+"\r\n")
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		var req struct {
			Execute string          `json:"execute"`
			ID      json.RawMessage `json:"id"`
		}
		if json.Unmarshal(sc.Bytes(), &req) != nil {
			continue
		}
		switch req.Execute {
		case "quit":
			fmt.Fprintf(c, `{"return": {}, "id": %s}`+"\r\n", req.ID)
			os.Exit(0)
		case "query-status":
			fmt.Fprintf(c, `{"return": {"status": "running", "running": true}, "id": %s}`+"\r\n", req.ID)
		default:
			fmt.Fprintf(c, `{"return": {}, "id": %s}`+"\r\n", req.ID)
		}
	}
}

// fakeVirtiofsd listens on --socket-path, serves one connection and exits
// 0 when it closes, like virtiofsd.
func fakeVirtiofsd(args []string) {
	var sock string
	for _, a := range args {
		if p, ok := strings.CutPrefix(a, "--socket-path="); ok {
			sock = p
		}
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fail("listen: %v", err)
	}
	c, err := ln.Accept()
	if err != nil {
		fail("accept: %v", err)
	}
	buf := make([]byte, 64)
	for {
		if _, err := c.Read(buf); err != nil {
			os.Exit(0)
		}
	}
}
