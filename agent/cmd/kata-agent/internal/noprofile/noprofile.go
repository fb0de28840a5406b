// Package noprofile turns the Go runtime's heap profiling off before the
// agent's other packages initialise. Importing it is all it takes.
//
// The agent never serves a heap profile, but the binary links
// runtime.MemProfile (through a dependency), so the linker leaves
// sampling on: the first sampled allocation makes the runtime allocate its
// 1.4 MB profile hash table, and every further sample with a new stack
// touches a random page of it. In the guest that was over a MiB of the
// agent's anonymous memory. The package has no imports besides runtime,
// so it initialises before any package that allocates much.
package noprofile

import "runtime"

func init() {
	runtime.MemProfileRate = 0
}
