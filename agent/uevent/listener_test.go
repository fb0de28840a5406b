package uevent

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeSource feeds messages written to it; Close makes Read fail.
type fakeSource struct {
	ch     chan []byte
	once   sync.Once
	closed chan struct{}
}

func newFakeSource() *fakeSource {
	return &fakeSource{ch: make(chan []byte, 16), closed: make(chan struct{})}
}

func (f *fakeSource) Read() ([]byte, error) {
	select {
	case m := <-f.ch:
		return m, nil
	case <-f.closed:
		return nil, errors.New("closed")
	}
}

func (f *fakeSource) Close() error { f.once.Do(func() { close(f.closed) }); return nil }

func recvOrFail(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return Event{}
}

func TestListenerLazyAndFiltered(t *testing.T) {
	src := newFakeSource()
	opened := 0
	l := NewListener(func() (Source, error) { opened++; return src, nil }, nil)
	if opened != 0 {
		t.Fatal("source opened before first Subscribe")
	}
	blocks, cancelBlocks := l.Subscribe(func(e Event) bool { return e.Subsystem == "block" })
	all, cancelAll := l.Subscribe(nil)
	defer cancelAll()
	if opened != 1 {
		t.Fatalf("opened %d times, want 1", opened)
	}
	src.ch <- msg("add@/devices/system/memory/memory3", "SUBSYSTEM=memory")
	src.ch <- []byte("garbage")
	src.ch <- msg("add@/devices/virtio1/block/vda", "SUBSYSTEM=block", "DEVNAME=vda")

	if ev := recvOrFail(t, blocks); ev.DevName != "vda" {
		t.Fatalf("block subscriber got %+v", ev)
	}
	if ev := recvOrFail(t, all); ev.Subsystem != "memory" {
		t.Fatalf("all subscriber first got %+v", ev)
	}
	if ev := recvOrFail(t, all); ev.Subsystem != "block" {
		t.Fatalf("all subscriber second got %+v", ev)
	}
	cancelBlocks()
	cancelBlocks() // idempotent
	if _, ok := <-blocks; ok {
		t.Fatal("cancelled channel still open")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-all; ok {
		t.Fatal("channel open after Close")
	}
}

func TestListenerOpenFailure(t *testing.T) {
	l := NewListener(func() (Source, error) { return nil, errors.New("no netlink") }, nil)
	ch, cancel := l.Subscribe(nil)
	defer cancel()
	if _, ok := <-ch; ok {
		t.Fatal("expected closed channel")
	}
	if err := l.Start(); err == nil {
		t.Fatal("Start should report the open failure")
	}
}

func TestListenerPanickingMatch(t *testing.T) {
	src := newFakeSource()
	l := NewListener(func() (Source, error) { return src, nil }, nil)
	defer l.Close()
	_, c1 := l.Subscribe(func(Event) bool { panic("boom") })
	defer c1()
	ok, c2 := l.Subscribe(nil)
	defer c2()
	src.ch <- msg("add@/devices/x")
	recvOrFail(t, ok)
}

func TestNetlinkOpenClose(t *testing.T) {
	src, err := OpenNetlink()
	if err != nil {
		t.Skipf("netlink uevent socket unavailable: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := src.Read(); done <- err }()
	time.Sleep(50 * time.Millisecond)
	src.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
}
