package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// chunkReader returns its data in reads of the sizes given in turn.
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if len(c.sizes) > 0 {
		n = min(n, int(c.sizes[c.i%len(c.sizes)])+1)
		c.i++
	}
	n = copy(p, c.data[:min(n, len(c.data))])
	c.data = c.data[n:]
	return n, nil
}

// FuzzFrameIntake: however the stream is cut into reads, what ttrpc reads
// is the stream with whole frames taken out: the small requests on odd
// stream ids that take kept (here: payloads starting with 'T') and those
// refused for reusing an id ttrpc has not seen, as a frame-by-frame walk
// of the whole stream decides them. Nothing else is lost, added or
// reordered.
func FuzzFrameIntake(f *testing.F) {
	req := frame(1, frameRequest, []byte("Tread"))
	f.Add(bytes.Join([][]byte{req, frame(3, frameRequest, []byte("pass")), frame(1, frameRequest, []byte("T")), frame(2, frameRequest, nil),
		frame(5, frameData, []byte("x")), frame(7, frameRequest, bytes.Repeat([]byte("T"), maxTakenRequest+1))}, nil), []byte{3, 0, 9}, []byte{0, 255})
	f.Add(req[:7], []byte{}, []byte{})
	f.Add(bytes.Join([][]byte{frame(2, frameResponse, []byte("some bytes")), req, frame(9, frameRequest, []byte("pass"))}, nil), []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, stream, cuts, reads []byte) {
		var removed [][]byte
		in := &frameIntake{r: &chunkReader{data: stream, sizes: cuts}}
		cur := func(id uint32, payload []byte) []byte {
			b := make([]byte, frameHeaderLen, frameHeaderLen+len(payload))
			binary.BigEndian.PutUint32(b[0:4], uint32(len(payload)))
			binary.BigEndian.PutUint32(b[4:8], id)
			b[8] = frameRequest
			return append(b, payload...)
		}
		in.take = func(id uint32, payload []byte) bool {
			if len(payload) == 0 || payload[0] != 'T' {
				return false
			}
			removed = append(removed, cur(id, payload))
			return true
		}
		in.refuse = func(id uint32) { removed = append(removed, nil) } // the refused frame's bytes: matched below
		var passed []byte
		buf := make([]byte, 4096)
		for i := 0; ; i++ {
			n := len(buf)
			if len(reads) > 0 {
				n = int(reads[i%len(reads)])%len(buf) + 1
			}
			m, err := in.Read(buf[:n])
			passed = append(passed, buf[:m]...)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("read: %v", err)
				}
				break
			}
			if m == 0 {
				t.Fatal("a read returned nothing and no error")
			}
		}
		// The same decisions on the whole stream, frame by frame.
		var want []byte
		var wantRemoved [][]byte
		var lastID, ttrpcID uint32
		handedOn := func(id uint32) { ttrpcID, lastID = max(ttrpcID, id), max(lastID, id) }
		rest := stream
		for len(rest) >= frameHeaderLen {
			size := binary.BigEndian.Uint32(rest[:4])
			if uint64(len(rest)-frameHeaderLen) < uint64(size) {
				break
			}
			fr := rest[:frameHeaderLen+int(size)]
			rest = rest[len(fr):]
			id := binary.BigEndian.Uint32(fr[4:8])
			request := fr[8] == frameRequest && id%2 == 1
			switch {
			case request && size <= maxTakenRequest && id <= ttrpcID:
			case request && size <= maxTakenRequest && id <= lastID:
				wantRemoved = append(wantRemoved, nil)
				continue
			case request && size <= maxTakenRequest && size > 0 && fr[frameHeaderLen] == 'T':
				// take sees the id and payload; a request's flags byte
				// is not passed on (ttrpc reads flags on data frames only).
				wantRemoved = append(wantRemoved, cur(id, fr[frameHeaderLen:]))
				lastID = id
				continue
			}
			if request {
				handedOn(id)
			}
			want = append(want, fr...)
		}
		want = append(want, rest...)
		if !bytes.Equal(passed, want) {
			t.Fatalf("ttrpc read %d bytes, want %d: %x, want %x", len(passed), len(want), passed[:min(len(passed), 64)], want[:min(len(want), 64)])
		}
		if len(removed) != len(wantRemoved) {
			t.Fatalf("%d frames taken or refused, want %d", len(removed), len(wantRemoved))
		}
		for i := range removed {
			if !bytes.Equal(removed[i], wantRemoved[i]) {
				t.Fatalf("frame %d taken out: %x, want %x", i, removed[i], wantRemoved[i])
			}
		}
	})
}
