package sandbox

import (
	"context"
	"sync"
)

// maxOOMEvents bounds the queue if nobody polls GetOOMEvent.
const maxOOMEvents = 1024

// oomQueue queues OOM-killed container ids for the GetOOMEvent long poll.
type oomQueue struct {
	mu     sync.Mutex
	events []string
	ready  chan struct{} // closed and replaced when events arrive
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

// wake releases waiters without an event (they wait again).
func (q *oomQueue) wake() {
	q.mu.Lock()
	close(q.ready)
	q.ready = make(chan struct{})
	q.mu.Unlock()
}

func (q *oomQueue) pop(ctx context.Context) (string, error) {
	for {
		q.mu.Lock()
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
