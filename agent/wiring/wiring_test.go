package wiring

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandbox-guest/sandbox-guest/agent/config"
	"github.com/sandbox-guest/sandbox-guest/agent/device"
	"github.com/sandbox-guest/sandbox-guest/agent/storage"
	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// The guest's clock and entropy validate before any system call, so a
// bad request from the host is refused on a development host too.
func TestGuestSystemValidates(t *testing.T) {
	var sys guestSystem
	if err := sys.SetTime(1, 2_000_000); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("SetTime(1, 2000000) = %v, want InvalidArgument", err)
	}
	if err := sys.ReseedRandom(nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("ReseedRandom(nil) = %v, want InvalidArgument", err)
	}
}

type fakeReaper struct{}

func (fakeReaper) Begin() func(...int) { return func(...int) {} }
func (fakeReaper) Disown(int)          {}

type recordingSystem struct{ sec, usec int64 }

func (r *recordingSystem) SetTime(sec, usec int64) error { r.sec, r.usec = sec, usec; return nil }
func (r *recordingSystem) ReseedRandom([]byte) error     { return nil }

// The assembled agent serves every group with the real parts (no root
// needed for these calls): the registries in GetGuestDetails, volume
// statistics from the storage manager, CopyFile confined to the share
// root, the injected clock, and the step marks in order.
func TestNewServesTheAssembledAgent(t *testing.T) {
	dir := t.TempDir()
	roots := Roots{
		Bundles: filepath.Join(dir, "bundles"), Sandbox: filepath.Join(dir, "sandbox"),
		Shared: filepath.Join(dir, "shared"), State: filepath.Join(dir, "state"),
		Kata: filepath.Join(dir, "kata"), Sysfs: filepath.Join(dir, "sys"), Dev: filepath.Join(dir, "dev"),
	}
	if err := os.MkdirAll(roots.Shared, 0o755); err != nil { // the share is mounted before the agent starts
		t.Fatal(err)
	}
	var marks []string
	sys := &recordingSystem{}
	a, err := New(config.Default(), WithRoots(roots), WithReaper(fakeReaper{}), WithSystem(sys),
		WithLog(slog.New(slog.NewTextHandler(io.Discard, nil))),
		WithStepMarks(func(s string) { marks = append(marks, s) }))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, l) }()
	defer func() { cancel(); <-done }()
	c, err := agentclient.Dial(ctx, "unix://"+sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if want := []string{"storage+network", "reaper", "sandbox+hotplug", "follow-hotplug"}; !slices.Equal(marks, want) {
		t.Errorf("step marks %v, want %v", marks, want)
	}
	d, err := c.Agent.GetGuestDetails(ctx, &pb.GuestDetailsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ad := d.GetAgentDetails()
	if !slices.Equal(ad.GetStorageHandlers(), storage.Drivers()) || !slices.Equal(ad.GetDeviceHandlers(), device.Types()) ||
		ad.GetInitDaemon() || ad.GetSupportsSeccomp() != seccompSupported {
		t.Errorf("agent details %v", ad)
	}
	if _, err := c.Agent.SetGuestDateTime(ctx, &pb.SetGuestDateTimeRequest{Sec: 7, Usec: 8}); err != nil || sys.sec != 7 || sys.usec != 8 {
		t.Errorf("SetGuestDateTime: %v, system saw %d.%d", err, sys.sec, sys.usec)
	}
	if v, err := c.Agent.GetVolumeStats(ctx, &pb.VolumeStatsRequest{VolumeGuestPath: dir}); err != nil || len(v.GetUsage()) != 2 {
		t.Errorf("GetVolumeStats: %v, %v", v, err)
	}
	_, err = c.Agent.CopyFile(ctx, &pb.CopyFileRequest{Path: filepath.Join(dir, "outside"), FileMode: 0o100644})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("CopyFile outside the share: %v, want InvalidArgument", err)
	}
	if _, err := c.Agent.CopyFile(ctx, &pb.CopyFileRequest{Path: filepath.Join(roots.Shared, "c/f"), FileMode: 0o100644}); err != nil {
		t.Errorf("CopyFile into the share: %v", err)
	}
}
