//go:build cpuprofile

package main

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"
)

// A profiling build (go build -tags cpuprofile), never the image's: with
// SANDBOX_GUEST_CPUPROFILE=<file> in the environment (for PID 1, on the
// kernel command line) the agent profiles its CPU for
// SANDBOX_GUEST_CPUPROFILE_SECONDS (default 20), at
// SANDBOX_GUEST_CPUPROFILE_HZ samples per second of CPU (default 100; the
// guest kernel's tick, 250 Hz, bounds it), from the moment the file's
// directory exists (a shared directory mounted by CreateSandbox), so that
// the guest's profile lands on the host; then it writes the live heap's
// profile beside it. BenchmarkReadStdoutProfile uses them.
func init() {
	path := os.Getenv("SANDBOX_GUEST_CPUPROFILE")
	if path == "" || os.Getpid() != 1 {
		return
	}
	secs, err := strconv.Atoi(os.Getenv("SANDBOX_GUEST_CPUPROFILE_SECONDS"))
	if err != nil || secs <= 0 {
		secs = 20
	}
	hz, err := strconv.Atoi(os.Getenv("SANDBOX_GUEST_CPUPROFILE_HZ"))
	if err != nil || hz <= 0 {
		hz = 100
	}
	go func() {
		for {
			if _, err := os.Stat(filepath.Dir(path)); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		f, err := os.Create(path + ".tmp")
		if err != nil {
			return
		}
		// Set before StartCPUProfile, which then keeps this rate (and
		// prints that it cannot set its own).
		runtime.SetCPUProfileRate(hz)
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return
		}
		time.Sleep(time.Duration(secs) * time.Second)
		pprof.StopCPUProfile()
		f.Close()
		// Then the live heap, after a collection (<file>.heap; with
		// GODEBUG=memprofilerate=1 on the command line, every object).
		runtime.GC()
		if h, err := os.Create(path + ".heap.tmp"); err == nil {
			_ = pprof.Lookup("heap").WriteTo(h, 0)
			h.Close()
			_ = os.Rename(path+".heap.tmp", path+".heap")
		}
		_ = os.Rename(path+".tmp", path)
	}()
}
