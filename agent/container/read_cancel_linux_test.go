package container

import (
	"context"
	"os"
	"testing"
	"time"
)

// A read whose call is cancelled (the host's connection went) must not
// take output with it: its reply has nowhere to go. What it read comes
// with the next read, in order.
func TestReadCancelledKeepsOutput(t *testing.T) {
	c, _ := testContainer(t, ExecPolicy{})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(); _ = w.Close() })
	p := &Process{ID: "e", done: make(chan struct{}), policy: &c.policy, stdout: r}
	const want = "first\nsecond\n"
	if _, err := w.WriteString(want); err != nil {
		t.Fatal(err)
	}
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 20; i++ {
		if b, err := readStdout(dead, p, 6); err == nil {
			t.Fatalf("a read with a cancelled context returned %q: the reply would go to a connection that is gone", b)
		}
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	var got []byte
	for len(got) < len(want) {
		b, err := readStdout(ctx, p, 6)
		if err != nil {
			t.Fatalf("read after the cancelled ones: %v (got %q)", err, got)
		}
		if len(b) > 6 {
			t.Fatalf("reply of %d bytes for a read of 6", len(b))
		}
		got = append(got, b...)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}
