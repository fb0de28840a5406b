package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
)

type failingWriter struct{ closed bool }

func (f *failingWriter) Write([]byte) (int, error) { return 0, errors.New("peer gone") }
func (f *failingWriter) Close() error              { f.closed = true; return nil }

type bufCloser struct{ bytes.Buffer }

func (*bufCloser) Close() error { return nil }

func TestSwitchFallsBackWhenPeerFails(t *testing.T) {
	var console bytes.Buffer
	sw := NewSwitch(&console)
	log := New(sw, slog.LevelInfo)

	remote := &bufCloser{}
	sw.Attach(remote)
	log.Info("to remote")
	if remote.Len() == 0 || console.Len() != 0 {
		t.Fatalf("record went to console %q instead of remote %q", console.String(), remote.String())
	}

	bad := &failingWriter{}
	sw.Attach(bad)
	log.Info("after failure", "k", 1)
	if !bad.closed {
		t.Error("failed destination was not closed")
	}
	var rec map[string]any
	if err := json.Unmarshal(console.Bytes(), &rec); err != nil {
		t.Fatalf("console record is not JSON: %v: %q", err, console.String())
	}
	if rec["msg"] != "after failure" {
		t.Errorf("console record msg = %v", rec["msg"])
	}
}
