package uevent

import (
	"errors"
	"log/slog"
	"sync"
)

// Source delivers raw uevent messages; the netlink socket in production,
// a fake in tests. Read blocks until a message arrives or the source is
// closed.
type Source interface {
	Read() ([]byte, error)
	Close() error
}

// subscriberBuffer is how many events a slow subscriber may lag behind
// before further events are dropped for it (never blocking the others).
const subscriberBuffer = 64

type subscriber struct {
	match func(Event) bool
	ch    chan Event
}

// Listener fans kernel uevents out to subscribers. The zero value is not
// usable; build one with NewListener.
type Listener struct {
	open func() (Source, error)
	log  *slog.Logger

	mu      sync.Mutex
	src     Source
	started bool
	err     error
	nextID  uint64
	subs    map[uint64]*subscriber
}

// NewListener returns a listener that calls open on the first Subscribe.
// A nil open uses the kernel's netlink uevent socket.
func NewListener(open func() (Source, error), log *slog.Logger) *Listener {
	if open == nil {
		open = OpenNetlink
	}
	if log == nil {
		log = slog.Default()
	}
	return &Listener{open: open, log: log, subs: map[uint64]*subscriber{}}
}

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("uevent listener closed")

// Start opens the source if it is not open yet. Subscribe calls it; it is
// exported so that callers can report a failure to open early.
func (l *Listener) Start() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.startLocked()
}

func (l *Listener) startLocked() error {
	if l.started {
		return l.err
	}
	l.started = true
	src, err := l.open()
	if err != nil {
		l.err = err
		return err
	}
	l.src = src
	go l.run(src)
	return nil
}

// Subscribe returns a channel that receives every event match accepts
// (match nil accepts all), and a cancel function that must be called when
// the caller is done. If the source cannot be opened the channel is closed
// at once; Start reports why.
func (l *Listener) Subscribe(match func(Event) bool) (events <-chan Event, cancel func()) {
	ch := make(chan Event, subscriberBuffer)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.startLocked(); err != nil {
		close(ch)
		return ch, func() {}
	}
	id := l.nextID
	l.nextID++
	l.subs[id] = &subscriber{match: match, ch: ch}
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if s, ok := l.subs[id]; ok {
				delete(l.subs, id)
				close(s.ch)
			}
		})
	}
}

// Close stops reading and closes every subscriber's channel.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		l.started, l.err = true, ErrClosed
		return nil
	}
	if l.err == nil {
		l.err = ErrClosed
	}
	for id, s := range l.subs {
		delete(l.subs, id)
		close(s.ch)
	}
	if l.src != nil {
		return l.src.Close()
	}
	return nil
}

func (l *Listener) run(src Source) {
	for {
		msg, err := src.Read()
		if err != nil {
			l.mu.Lock()
			closed := errors.Is(l.err, ErrClosed)
			if !closed {
				l.err = err
			}
			for id, s := range l.subs {
				delete(l.subs, id)
				close(s.ch)
			}
			l.mu.Unlock()
			if !closed {
				l.log.Error("uevent source failed", "error", err)
			}
			return
		}
		ev, err := Parse(msg)
		if err != nil {
			l.log.Debug("ignoring uevent", "error", err)
			continue
		}
		l.dispatch(ev)
	}
}

func (l *Listener) dispatch(ev Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.subs {
		if s.match != nil && !safeMatch(s.match, ev) {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			l.log.Warn("uevent subscriber lagging, event dropped", "devpath", ev.DevPath, "action", ev.Action)
		}
	}
}

// safeMatch keeps a panicking match function from killing the reader.
func safeMatch(match func(Event) bool, ev Event) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return match(ev)
}
