package hvsock

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

const (
	rxQueue = 0
	txQueue = 1

	// interruptBatch bounds how many used buffers pile up before the guest
	// is interrupted while the device keeps producing.
	interruptBatch = 16
)

// queueFiles holds the eventfds of one queue. kick is owned by the vhost-user
// handler; call and err may be swapped while the processors run.
type queueFiles struct {
	kick   *os.File
	kicked chan struct{} // poked by the kick reader goroutine
	call   atomic.Pointer[os.File]
	err    atomic.Pointer[os.File]
}

// device is the vsock device state behind one vhost-user connection.
type device struct {
	log *slog.Logger
	mux *mux

	features      uint64
	protoFeatures uint64
	mem           *memTable
	vq            [numQueues]virtqueue
	files         [numQueues]queueFiles
	enabled       [numQueues]bool
	kickWG        sync.WaitGroup // kick reader goroutines

	// Queue processors, running while both queues are started and enabled.
	running  bool
	stopRun  context.CancelFunc
	runWG    sync.WaitGroup
	ringDown [numQueues]bool // a corrupted ring stays down until set up again

	errors atomic.Uint64 // guest errors seen (bad chains, bad rings)
}

func newDevice(log *slog.Logger, m *mux) *device {
	d := &device{log: log, mux: m}
	for i := range d.vq {
		d.vq[i].index = i
		d.files[i].kicked = make(chan struct{}, 1)
	}
	return d
}

// guestError records a guest fault, logs it and signals the queue's error
// eventfd so the front-end learns of it too.
func (d *device) guestError(q int, err error) {
	n := d.errors.Add(1)
	if n <= 100 || n%1000 == 0 {
		d.log.Warn("vsock: guest error", "queue", q, "err", err, "count", n)
	}
	signalFD(d.files[q].err.Load())
}

func signalFD(f *os.File) {
	if f == nil {
		return
	}
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	// The eventfd counter only overflows after 2^64-2 unread signals.
	_, _ = f.Write(one[:])
}

// setKick installs a queue's kick eventfd and the goroutine that turns its
// events into channel pokes.
func (d *device) setKick(q int, f *os.File) {
	qf := &d.files[q]
	if qf.kick != nil {
		_ = qf.kick.Close() // ends the old reader
	}
	qf.kick = f
	if f == nil {
		return
	}
	d.kickWG.Add(1)
	go func() {
		defer d.kickWG.Done()
		var b [8]byte
		for {
			if _, err := f.Read(b[:]); err != nil {
				return
			}
			select {
			case qf.kicked <- struct{}{}:
			default:
			}
		}
	}()
	// The ring starts at the kick: process whatever is already queued.
	select {
	case qf.kicked <- struct{}{}:
	default:
	}
}

func (d *device) setCall(q int, f *os.File) {
	if old := d.files[q].call.Swap(f); old != nil {
		_ = old.Close()
	}
}

func (d *device) setErr(q int, f *os.File) {
	if old := d.files[q].err.Swap(f); old != nil {
		_ = old.Close()
	}
}

// shouldRun reports whether both queues are started and enabled.
func (d *device) shouldRun() bool {
	if d.mem == nil {
		return false
	}
	for q := range d.vq {
		if d.files[q].kick == nil || d.vq[q].num == 0 || !d.vq[q].addrSet || !d.enabled[q] || d.ringDown[q] {
			return false
		}
	}
	return true
}

// pause stops the queue processors, keeping ring indexes and streams.
func (d *device) pause() {
	if !d.running {
		return
	}
	d.stopRun()
	d.runWG.Wait()
	d.running = false
}

// reconcile starts the processors when the device is ready to run.
func (d *device) reconcile() {
	if d.running || !d.shouldRun() {
		return
	}
	for q := range d.vq {
		if err := d.vq[q].setup(d.mem); err != nil {
			d.log.Error("vsock: cannot start queue", "queue", q, "err", err)
			d.ringDown[q] = true
			signalFD(d.files[q].err.Load())
			return
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.stopRun = cancel
	d.running = true
	d.runWG.Add(2)
	go func() { defer d.runWG.Done(); d.guarded(ctx, txQueue, d.txLoop) }()
	go func() { defer d.runWG.Done(); d.guarded(ctx, rxQueue, d.rxLoop) }()
	d.log.Debug("vsock: queues running")
}

// guarded runs a queue processor with memory faults turned into panics: if
// the front-end shrinks a shared memory file under us, touching the mapping
// raises SIGBUS, which would otherwise kill the process. The queue goes down
// and the error is reported like a guest error.
func (d *device) guarded(ctx context.Context, q int, loop func(context.Context)) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		// Faults on a mapped address carry it; anything else is a bug.
		fault, ok := r.(interface{ Addr() uintptr })
		if !ok {
			panic(r)
		}
		d.ringDown[q] = true
		d.guestError(q, fmt.Errorf("%w: queue %d: fault at %#x in guest memory", ErrBadAddress, q, fault.Addr()))
		<-ctx.Done()
	}()
	debug.SetPanicOnFault(true)
	loop(ctx)
}

// shutdown stops everything and releases every resource of the device.
func (d *device) shutdown() {
	d.pause()
	for q := range d.vq {
		d.setKick(q, nil)
		d.setCall(q, nil)
		d.setErr(q, nil)
	}
	d.kickWG.Wait()
	if err := d.mem.close(); err != nil {
		d.log.Warn("vsock: unmap guest memory", "err", err)
	}
	d.mem = nil
}

// notify interrupts the guest for queue q unless it asked not to be.
func (d *device) notify(q int) {
	if d.vq[q].wantsInterrupt() {
		signalFD(d.files[q].call.Load())
	}
}

// txLoop consumes the packets the guest sends.
func (d *device) txLoop(ctx context.Context) {
	vq := &d.vq[txQueue]
	segs := make([][]byte, 0, 8)
	scratch := make([]byte, hdrLen+maxPayload)
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.files[txQueue].kicked:
		}
		used := 0
		for {
			head, ok, err := vq.pop()
			if err != nil {
				d.guestError(txQueue, err)
				d.ringDown[txQueue] = true
				<-ctx.Done()
				return
			}
			if !ok {
				break
			}
			var total int
			segs, total, err = vq.chain(d.mem, head, false, segs)
			if err == nil {
				err = d.deliver(segs, total, scratch)
			}
			if err != nil {
				d.guestError(txQueue, err)
			}
			vq.push(head, 0)
			used++
			if ctx.Err() != nil {
				break
			}
		}
		if used > 0 {
			d.notify(txQueue)
		}
	}
}

// deliver parses one tx packet gathered from segs and hands it to the mux.
func (d *device) deliver(segs [][]byte, total int, scratch []byte) error {
	if total < hdrLen {
		return fmt.Errorf("%w: tx packet of %d bytes", ErrShortHeader, total)
	}
	var pkt []byte
	if len(segs) == 1 {
		pkt = segs[0]
	} else {
		n := 0
		for _, s := range segs {
			if n == len(scratch) {
				break
			}
			n += copy(scratch[n:], s)
		}
		pkt = scratch[:n]
	}
	h, err := parseHeader(pkt)
	if err != nil {
		return err
	}
	if h.Len > maxPayload || int(h.Len) > len(pkt)-hdrLen {
		return fmt.Errorf("%w: tx packet claims %d payload bytes, buffer holds %d", ErrBadChain, h.Len, len(pkt)-hdrLen)
	}
	d.mux.handleGuest(h, pkt[hdrLen:hdrLen+int(h.Len)])
	return nil
}

// rxLoop fills the guest's receive buffers with the packets the mux produces.
func (d *device) rxLoop(ctx context.Context) {
	vq := &d.vq[rxQueue]
	segs := make([][]byte, 0, 8)
	scratch := make([]byte, hdrLen+maxPayload)
	pending := 0 // used buffers the guest has not been interrupted for
	flush := func() {
		if pending > 0 {
			d.notify(rxQueue)
			pending = 0
		}
	}
	for {
		if !d.mux.hasWork() {
			flush()
			select {
			case <-ctx.Done():
				return
			case <-d.mux.work:
			}
			continue
		}
		head, ok, err := vq.pop()
		if err != nil {
			flush()
			d.guestError(rxQueue, err)
			d.ringDown[rxQueue] = true
			<-ctx.Done()
			return
		}
		if !ok {
			flush()
			select {
			case <-ctx.Done():
				return
			case <-d.files[rxQueue].kicked:
			}
			continue
		}
		var total int
		segs, total, err = vq.chain(d.mem, head, true, segs)
		if err == nil && total < hdrLen {
			err = fmt.Errorf("%w: rx buffer of %d bytes cannot hold a header", ErrBadChain, total)
		}
		if err != nil {
			d.guestError(rxQueue, err)
			vq.push(head, 0)
			pending++
			continue
		}
		total = min(total, hdrLen+maxPayload)
		var n int
		if len(segs) == 1 {
			n = d.mux.fill(segs[0][:total])
		} else {
			n = d.mux.fill(scratch[:total])
			scatter(segs, scratch[:n])
		}
		if n == 0 {
			if d.mux.hasWork() {
				// Only data is due and the buffer has no room for any.
				d.guestError(rxQueue, fmt.Errorf("%w: rx buffer of %d bytes too small for data", ErrBadChain, total))
				vq.push(head, 0)
				pending++
				continue
			}
			vq.unpop()
			continue
		}
		vq.push(head, uint32(n))
		pending++
		if pending >= interruptBatch {
			flush()
		}
		if ctx.Err() != nil {
			flush()
			return
		}
	}
}

func scatter(segs [][]byte, src []byte) {
	for _, s := range segs {
		if len(src) == 0 {
			return
		}
		n := copy(s, src)
		src = src[n:]
	}
}
