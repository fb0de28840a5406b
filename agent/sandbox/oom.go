package sandbox

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
)

// maxOOMEvents bounds the queue if nobody polls GetOOMEvent.
const maxOOMEvents = 1024

// ErrSandboxDestroyed ends the GetOOMEvent long polls pending when the
// sandbox is destroyed: the runtime's OOM watcher gets an answer instead
// of a call that hangs until the VM is gone.
var ErrSandboxDestroyed = fmt.Errorf("GetOOMEvent: the sandbox was destroyed: %w", errdefs.ErrUnavailable)

// oomQueue queues OOM-killed container ids for the GetOOMEvent long poll.
type oomQueue struct {
	mu     sync.Mutex
	events []string
	ready  chan struct{} // closed and replaced when events arrive or waiters are released
	gen    uint64        // counts wake calls: a waiter that sees it change returns
}

func (q *oomQueue) init() { q.ready = make(chan struct{}) }

func (q *oomQueue) push(id string) {
	q.mu.Lock()
	if len(q.events) < maxOOMEvents {
		q.events = append(q.events, id)
	}
	close(q.ready)
	q.ready = make(chan struct{})
	q.mu.Unlock()
}

// wake ends every pending pop with ErrSandboxDestroyed and drops queued
// events (their containers are gone). Later pops wait for new events, as
// for a sandbox created again on a development host.
func (q *oomQueue) wake() {
	q.mu.Lock()
	q.gen++
	q.events = nil
	close(q.ready)
	q.ready = make(chan struct{})
	q.mu.Unlock()
}

func (q *oomQueue) pop(ctx context.Context) (string, error) {
	q.mu.Lock()
	gen := q.gen
	q.mu.Unlock()
	for {
		q.mu.Lock()
		if q.gen != gen {
			q.mu.Unlock()
			return "", ErrSandboxDestroyed
		}
		if len(q.events) > 0 {
			id := q.events[0]
			q.events = q.events[1:]
			if len(q.events) == 0 {
				q.events = nil
			}
			q.mu.Unlock()
			return id, nil
		}
		ready := q.ready
		q.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}
