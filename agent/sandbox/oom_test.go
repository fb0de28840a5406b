package sandbox

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/containerd/errdefs"
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

// Destroying the sandbox ends pending GetOOMEvent long polls with a clear
// error, and a poll started afterwards waits for new events again.
func TestOOMQueueWakeReleasesWaiters(t *testing.T) {
	var q oomQueue
	q.init()
	q.push("gone") // queued for a container the destroy removes
	if id, err := q.pop(context.Background()); id != "gone" || err != nil {
		t.Fatalf("pop = %q, %v", id, err)
	}
	const waiters = 3
	errc := make(chan error, waiters)
	for range waiters {
		go func() {
			_, err := q.pop(context.Background())
			errc <- err
		}()
	}
	time.Sleep(20 * time.Millisecond) // let them block
	q.push("late")                    // one waiter takes it
	q.push("dropped")                 // dropped by wake unless taken first
	q.wake()
	var released, served int
	for range waiters {
		select {
		case err := <-errc:
			switch {
			case err == nil:
				served++
			case errors.Is(err, ErrSandboxDestroyed) && errdefs.IsUnavailable(err):
				released++
			default:
				t.Errorf("pop returned %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("a GetOOMEvent waiter is still blocked after the sandbox was destroyed (%d released, %d served)", released, served)
		}
	}
	if released == 0 {
		t.Errorf("no waiter was told the sandbox was destroyed (%d served)", served)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if id, err := q.pop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pop after wake = %q, %v; want a fresh wait (events dropped)", id, err)
	}
	q.push("new")
	if id, err := q.pop(context.Background()); id != "new" || err != nil {
		t.Fatalf("pop after a new event = %q, %v", id, err)
	}
}
