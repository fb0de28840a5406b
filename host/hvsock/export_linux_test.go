package hvsock

// numConnsForTest reports how many streams are open.
func (b *Backend) numConnsForTest() int {
	b.mu.Lock()
	m := b.mux
	b.mu.Unlock()
	if m == nil {
		return 0
	}
	return m.numConns()
}
