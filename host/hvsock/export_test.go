package hvsock

// numConns reports how many streams are open.
func (m *mux) numConns() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns)
}
