package container

import (
	"context"
	"os"
	"testing"
)

// BenchmarkReadStdout reads a process's stdout at the Kata shim's 32 KiB
// per call while a writer keeps the pipe full, as `head -c N /dev/zero`
// in a container does.
func BenchmarkReadStdout(b *testing.B) {
	for _, bc := range []struct {
		name      string
		readLen   int
		chunkSize int
	}{
		{"shim32k/write64k", 32 << 10, 64 << 10},
		{"shim32k/write4k", 32 << 10, 4 << 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			pol := ExecPolicy{Clock: realClock{}}
			pol = pol.withDefaults()
			p := &Process{ID: "bench", done: make(chan struct{}), policy: &pol}
			r, w, err := os.Pipe()
			if err != nil {
				b.Fatal(err)
			}
			p.stdout = r
			defer p.closeIO()
			stop := make(chan struct{})
			go func() {
				chunk := make([]byte, bc.chunkSize)
				for {
					select {
					case <-stop:
						_ = w.Close()
						return
					default:
					}
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			}()
			defer close(stop)
			ctx := context.Background()
			b.SetBytes(int64(bc.readLen))
			b.ReportAllocs()
			var total int
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				data, err := readStdout(ctx, p, bc.readLen)
				if err != nil {
					b.Fatal(err)
				}
				total += len(data)
			}
			b.StopTimer()
			b.ReportMetric(float64(total)/float64(b.N), "bytes/read")
		})
	}
}
