package main

import (
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMainThreadKeepsItsNamespaces: goroutines that enter a namespace and
// end with their thread locked (as libcontainer's do for each container)
// must not leave the process's first thread in that namespace. The
// runtime parks that thread for ever when it ends locked, so only main
// holding it (this package's init) keeps them off it.
func TestMainThreadKeepsItsNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to unshare a UTS namespace")
	}
	leader := "/proc/self/task/" + strconv.Itoa(os.Getpid()) + "/ns/uts"
	before, err := os.Readlink(leader)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // never unlocked: the thread must go
			if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
				t.Error(err)
			}
		}()
		runtime.Gosched()
	}
	wg.Wait()
	after, err := os.Readlink(leader)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("the first thread was left in another UTS namespace (%s, was %s)", after, before)
	}
}
