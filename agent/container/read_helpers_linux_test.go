package container

import "context"

// The server reads into its own buffers with ReadForReply; the tests read
// as its ttrpc handler does: a fresh buffer, the reply always sent.

func readStdout(ctx context.Context, p *Process, n int) ([]byte, error) {
	return readOutput(ctx, p, n, false)
}

func readStderr(ctx context.Context, p *Process, n int) ([]byte, error) {
	return readOutput(ctx, p, n, true)
}

func readOutput(ctx context.Context, p *Process, n int, stderr bool) ([]byte, error) {
	buf := make([]byte, ReadLen(n))
	got, err := readInto(ctx, p, buf, stderr)
	if got == 0 {
		return nil, err
	}
	return buf[:got], err
}

func readInto(ctx context.Context, p *Process, buf []byte, stderr bool) (int, error) {
	n, settle, err := p.ReadForReply(ctx, buf, stderr, true)
	settle(true)
	return n, err
}

// tryReadInto reads only output already there (ErrNoOutputYet otherwise).
func tryReadInto(p *Process, buf []byte, stderr bool) (int, error) {
	n, settle, err := p.ReadForReply(context.Background(), buf, stderr, false)
	settle(true)
	return n, err
}
