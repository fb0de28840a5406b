package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeQEMU is a scripted QMP server on a Unix socket.
type fakeQEMU struct {
	t        *testing.T
	path     string
	ln       net.Listener
	greeting string
	// handle answers one command; it returns the reply lines to send
	// (without the id, which the server adds), or nil to send nothing.
	handle func(cmd string, args map[string]any) []string

	mu       sync.Mutex
	commands []string
	args     []map[string]any
}

const defaultGreeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "Debian 1:7.2"}, "capabilities": ["oob"]}}`

// newFake starts a fake QMP server; greeting overrides the default one
// ("" makes the server never greet).
func newFake(t *testing.T, handle func(cmd string, args map[string]any) []string, greeting ...string) *fakeQEMU {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeQEMU{t: t, path: path, ln: ln, handle: handle, greeting: defaultGreeting}
	if len(greeting) > 0 {
		f.greeting = greeting[0]
	}
	t.Cleanup(func() { ln.Close() })
	go f.serve()
	return f
}

func (f *fakeQEMU) serve() {
	for {
		conn, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.serveConn(conn)
	}
}

func (f *fakeQEMU) serveConn(conn net.Conn) {
	defer conn.Close()
	if f.greeting == "" {
		// Never greet: the client must give up on its own.
		time.Sleep(10 * time.Second)
		return
	}
	conn.Write([]byte(f.greeting + "\r\n"))
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		var req struct {
			Execute   string          `json:"execute"`
			Arguments map[string]any  `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			conn.Write([]byte(`{"error": {"class": "GenericError", "desc": "JSON parse error"}}` + "\r\n"))
			continue
		}
		f.mu.Lock()
		f.commands = append(f.commands, req.Execute)
		f.args = append(f.args, req.Arguments)
		f.mu.Unlock()
		var lines []string
		if req.Execute == "qmp_capabilities" {
			lines = []string{`{"return": {}}`}
		} else if f.handle != nil {
			lines = f.handle(req.Execute, req.Arguments)
		}
		for _, l := range lines {
			if l == "CLOSE" {
				return
			}
			if strings.HasPrefix(l, `{"return"`) || strings.HasPrefix(l, `{"error"`) {
				l = l[:len(l)-1] + `, "id": ` + string(req.ID) + `}`
			}
			conn.Write([]byte(l + "\r\n"))
		}
	}
}

func (f *fakeQEMU) seen() ([]string, []map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...), append([]map[string]any(nil), f.args...)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestHandshakeAndVersion(t *testing.T) {
	f := newFake(t, nil)
	c, err := Dial(ctxT(t), f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v := c.Version(); v.QEMU.Major != 7 || v.QEMU.Minor != 2 {
		t.Errorf("version = %+v, want 7.2", v)
	}
	cmds, _ := f.seen()
	if len(cmds) != 1 || cmds[0] != "qmp_capabilities" {
		t.Errorf("commands = %v, want [qmp_capabilities]", cmds)
	}
}

func TestBadGreeting(t *testing.T) {
	f := newFake(t, nil, `{"hello": 1}`)
	if _, err := Dial(ctxT(t), f.path); err == nil || !strings.Contains(err.Error(), "unexpected greeting") {
		t.Fatalf("Dial with bad greeting: err = %v", err)
	}
}

func TestGreetingTimeout(t *testing.T) {
	f := newFake(t, nil, "")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, f.path)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Dial took %v after a 200ms deadline", d)
	}
}

func TestHotplugMemory(t *testing.T) {
	f := newFake(t, func(cmd string, args map[string]any) []string {
		switch cmd {
		case "object-add":
			// An event interleaved before the reply must not confuse matching.
			return []string{`{"event": "SOMETHING", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}}`, `{"return": {}}`}
		case "device_add":
			return []string{`{"return": {}}`, `{"event": "ACPI_DEVICE_OST", "data": {"info": {"device": "dimm1"}}, "timestamp": {"seconds": 1, "microseconds": 3}}`}
		case "query-memory-devices":
			return []string{`{"return": [{"type": "dimm", "data": {"memdev": "/objects/mem-dimm1", "hotplugged": true, "addr": 4294967296, "hotpluggable": true, "size": 268435456, "slot": 0, "node": 0, "id": "dimm1"}}]}`}
		}
		return []string{`{"error": {"class": "CommandNotFound", "desc": "The command ` + cmd + ` has not been found"}}`}
	})
	ctx := ctxT(t)
	c, err := Dial(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.HotplugMemory(ctx, "dimm1", 256<<20); err != nil {
		t.Fatal(err)
	}
	devs, err := c.QueryMemoryDevices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].Type != "dimm" || devs[0].Data.Size != 256<<20 || devs[0].Data.ID != "dimm1" || !devs[0].Data.Hotplugged {
		t.Errorf("devices = %+v", devs)
	}
	cmds, args := f.seen()
	want := []string{"qmp_capabilities", "object-add", "device_add", "query-memory-devices"}
	if strings.Join(cmds, ",") != strings.Join(want, ",") {
		t.Fatalf("commands = %v, want %v", cmds, want)
	}
	oa := args[1]
	if oa["qom-type"] != "memory-backend-memfd" || oa["id"] != "mem-dimm1" || oa["share"] != true || oa["size"] != float64(256<<20) {
		t.Errorf("object-add args = %v", oa)
	}
	da := args[2]
	if da["driver"] != "pc-dimm" || da["id"] != "dimm1" || da["memdev"] != "mem-dimm1" {
		t.Errorf("device_add args = %v", da)
	}
	got := map[string]bool{}
	timeout := time.After(2 * time.Second)
	for len(got) < 2 {
		select {
		case ev := <-c.Events():
			got[ev.Name] = true
		case <-timeout:
			t.Fatalf("events seen: %v, want SOMETHING and ACPI_DEVICE_OST", got)
		}
	}
}

func TestHotplugMemoryRollsBackBackend(t *testing.T) {
	f := newFake(t, func(cmd string, args map[string]any) []string {
		if cmd == "device_add" {
			return []string{`{"error": {"class": "GenericError", "desc": "a used vhost backend has no free memory slots left"}}`}
		}
		return []string{`{"return": {}}`}
	})
	ctx := ctxT(t)
	c, err := Dial(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.HotplugMemory(ctx, "dimm1", 256<<20)
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "GenericError" || qe.Command != "device_add" {
		t.Fatalf("err = %v, want a device_add GenericError", err)
	}
	cmds, args := f.seen()
	if len(cmds) != 4 || cmds[3] != "object-del" || args[3]["id"] != "mem-dimm1" {
		t.Errorf("commands = %v %v, want object-del of mem-dimm1 last", cmds, args)
	}
}

func TestHotplugCPU(t *testing.T) {
	f := newFake(t, func(cmd string, args map[string]any) []string {
		switch cmd {
		case "query-hotpluggable-cpus":
			return []string{`{"return": [` +
				`{"props": {"core-id": 0, "thread-id": 0, "node-id": 0, "socket-id": 1}, "vcpus-count": 1, "type": "qemu64-x86_64-cpu"},` +
				`{"props": {"core-id": 0, "thread-id": 0, "node-id": 0, "socket-id": 0}, "vcpus-count": 1, "qom-path": "/machine/unattached/device[0]", "type": "qemu64-x86_64-cpu"}]}`}
		case "device_add":
			return []string{`{"return": {}}`}
		}
		return []string{`{"error": {"class": "CommandNotFound", "desc": "no"}}`}
	})
	ctx := ctxT(t)
	c, err := Dial(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cpu, err := c.HotplugCPU(ctx, "cpu1")
	if err != nil {
		t.Fatal(err)
	}
	if cpu.Props["socket-id"] != float64(1) {
		t.Errorf("plugged %+v, want socket 1", cpu)
	}
	_, args := f.seen()
	da := args[len(args)-1]
	if da["driver"] != "qemu64-x86_64-cpu" || da["id"] != "cpu1" || da["socket-id"] != float64(1) || da["core-id"] != float64(0) {
		t.Errorf("device_add args = %v", da)
	}
}

func TestHotplugCPUNoneFree(t *testing.T) {
	f := newFake(t, func(cmd string, args map[string]any) []string {
		return []string{`{"return": [{"props": {"socket-id": 0}, "vcpus-count": 1, "qom-path": "/machine/x", "type": "qemu64-x86_64-cpu"}]}`}
	})
	ctx := ctxT(t)
	c, err := Dial(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.HotplugCPU(ctx, "cpu1"); !errors.Is(err, ErrNoFreeCPU) {
		t.Fatalf("err = %v, want ErrNoFreeCPU", err)
	}
}

func TestQuitWithClose(t *testing.T) {
	f := newFake(t, func(cmd string, args map[string]any) []string {
		if cmd == "quit" {
			return []string{"CLOSE"}
		}
		return nil
	})
	ctx := ctxT(t)
	c, err := Dial(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Quit(ctx); err != nil {
		t.Fatalf("Quit when QEMU closes the socket: %v", err)
	}
	select {
	case <-c.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("Done not closed after the peer went away")
	}
	if _, err := c.QueryStatus(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("command after close: err = %v, want ErrClosed", err)
	}
}

func TestCommandTimeout(t *testing.T) {
	f := newFake(t, func(cmd string, args map[string]any) []string { return nil })
	c, err := Dial(ctxT(t), f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.QueryStatus(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func TestMalformedReplyEndsConnection(t *testing.T) {
	f := newFake(t, func(cmd string, args map[string]any) []string { return []string{`{not json`} })
	ctx := ctxT(t)
	c, err := Dial(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.QueryStatus(ctx)
	if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("err = %v, want ErrClosed naming the malformed message", err)
	}
}

func TestBadReturnShape(t *testing.T) {
	f := newFake(t, func(cmd string, args map[string]any) []string { return []string{`{"return": "nope"}`} })
	ctx := ctxT(t)
	c, err := Dial(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.QueryMemoryDevices(ctx); err == nil || !strings.Contains(err.Error(), "decode reply") {
		t.Fatalf("err = %v, want a decode error", err)
	}
}

func TestHotplugBlock(t *testing.T) {
	f := newFake(t, func(cmd string, args map[string]any) []string {
		return []string{`{"return": {}}`}
	})
	ctx := ctxT(t)
	c, err := Dial(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.HotplugBlock(ctx, "disk1", "/tmp/disk.img", "rp1", false); err != nil {
		t.Fatal(err)
	}
	cmds, args := f.seen()
	if strings.Join(cmds, ",") != "qmp_capabilities,blockdev-add,device_add" {
		t.Fatalf("commands = %v", cmds)
	}
	ba := args[1]
	file, _ := ba["file"].(map[string]any)
	if ba["driver"] != "raw" || ba["node-name"] != "disk1-node" || ba["read-only"] != false ||
		file["driver"] != "file" || file["filename"] != "/tmp/disk.img" {
		t.Errorf("blockdev-add args = %v", ba)
	}
	da := args[2]
	if da["driver"] != "virtio-blk-pci" || da["id"] != "disk1" || da["drive"] != "disk1-node" || da["bus"] != "rp1" {
		t.Errorf("device_add args = %v", da)
	}
}

func TestHotplugBlockRollsBackNode(t *testing.T) {
	f := newFake(t, func(cmd string, args map[string]any) []string {
		if cmd == "device_add" {
			return []string{`{"error": {"class": "GenericError", "desc": "Bus 'rp1' not found"}}`}
		}
		return []string{`{"return": {}}`}
	})
	ctx := ctxT(t)
	c, err := Dial(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.HotplugBlock(ctx, "disk1", "/tmp/disk.img", "rp1", true)
	var qe *Error
	if !errors.As(err, &qe) || qe.Command != "device_add" {
		t.Fatalf("err = %v, want a device_add error", err)
	}
	cmds, args := f.seen()
	if len(cmds) != 4 || cmds[3] != "blockdev-del" || args[3]["node-name"] != "disk1-node" {
		t.Errorf("commands = %v %v, want blockdev-del of disk1-node last", cmds, args)
	}
	if args[1]["read-only"] != true {
		t.Errorf("blockdev-add args = %v, want read-only", args[1])
	}
}
