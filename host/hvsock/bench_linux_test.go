package hvsock

import (
	"io"
	"testing"
	"time"
)

// BenchmarkHostToGuest measures host client -> guest throughput through the
// rx queue with 3776-byte guest buffers.
func BenchmarkHostToGuest(b *testing.B) {
	g := newSimGuest(b, nil)
	g.connect()
	r := g.route()
	hc, s := hostConnect(b, g, r, 1024, 1<<20)
	defer hc.Close()
	chunk := randBytes(b, 1<<20)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := hc.Write(chunk); err != nil {
			b.Fatal(err)
		}
		s.waitFor("data", 30*time.Second, func() bool { return len(s.in) >= len(chunk) })
		s.mu.Lock()
		s.in = s.in[:0]
		s.mu.Unlock()
	}
}

// BenchmarkGuestToHost measures guest -> host client throughput through the
// tx queue with 64 KiB guest packets.
func BenchmarkGuestToHost(b *testing.B) {
	g := newSimGuest(b, nil)
	g.connect()
	r := g.route()
	hc, s := hostConnect(b, g, r, 1024, 1<<20)
	defer hc.Close()
	chunk := randBytes(b, 1<<20)
	buf := make([]byte, len(chunk))
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		done := make(chan struct{})
		go func() { s.write(chunk); close(done) }()
		if _, err := io.ReadFull(hc, buf); err != nil {
			b.Fatal(err)
		}
		<-done
	}
}
