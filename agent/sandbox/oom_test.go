package sandbox

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestOOMQueue(t *testing.T) {
	var q oomQueue
	q.init()
	got := make(chan string)
	go func() {
		id, _ := q.pop(context.Background())
		got <- id
	}()
	time.Sleep(20 * time.Millisecond)
	q.push("a")
	q.push("b")
	if id := <-got; id != "a" {
		t.Fatalf("first event %q, want a", id)
	}
	if id, err := q.pop(context.Background()); id != "b" || err != nil {
		t.Fatalf("queued event %q %v, want b", id, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := q.pop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("empty queue: %v, want deadline", err)
	}
	for i := 0; i < maxOOMEvents+10; i++ {
		q.push("x")
	}
	if len(q.events) != maxOOMEvents {
		t.Fatalf("queue holds %d events, want cap %d", len(q.events), maxOOMEvents)
	}
}

func TestWriteResolvConfRefusesControlChars(t *testing.T) {
	p := t.TempDir() + "/resolv.conf"
	if err := writeResolvConf(p, []string{"nameserver 1.1.1.1", "search a\nnameserver 6.6.6.6"}); err == nil {
		t.Fatal("newline inside a line accepted")
	}
	if err := writeResolvConf(p, []string{"nameserver 1.1.1.1"}); err != nil {
		t.Fatal(err)
	}
}
