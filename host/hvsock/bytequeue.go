package hvsock

// byteQueue is a FIFO of bytes that reuses its storage once drained.
type byteQueue struct {
	buf []byte
	off int
}

func (b *byteQueue) len() int { return len(b.buf) - b.off }

func (b *byteQueue) write(p []byte) {
	if b.off > 0 && len(b.buf)+len(p) > cap(b.buf) {
		n := copy(b.buf, b.buf[b.off:])
		b.buf, b.off = b.buf[:n], 0
	}
	b.buf = append(b.buf, p...)
}

// read moves up to len(p) bytes into p.
func (b *byteQueue) read(p []byte) int {
	n := copy(p, b.buf[b.off:])
	b.off += n
	if b.off == len(b.buf) {
		b.buf, b.off = b.buf[:0], 0
	}
	return n
}

// take returns all queued bytes and leaves the queue empty, using spare as
// its new storage, so the caller can write the bytes out without a lock.
func (b *byteQueue) take(spare []byte) []byte {
	out := b.buf[b.off:]
	b.buf, b.off = spare[:0], 0
	return out
}

func (b *byteQueue) reset() { b.buf, b.off = nil, 0 }
