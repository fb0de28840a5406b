package reaper

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		in    string
		state byte
		ppid  int
		bad   bool
	}{
		{in: "42 (sh) Z 1 42 42 0 -1", state: 'Z', ppid: 1},
		{in: "7 (a) b) c) S 99 7 7", state: 'S', ppid: 99},
		{in: "7 (name with spaces) R 3 1", state: 'R', ppid: 3},
		{in: "garbage", bad: true},
		{in: "1 (x)", bad: true},
		{in: "1 (x) Z notanumber", bad: true},
	} {
		st, ppid, err := ParseStat([]byte(tc.in))
		if tc.bad {
			if err == nil {
				t.Errorf("%q: no error", tc.in)
			}
			continue
		}
		if err != nil || st != tc.state || ppid != tc.ppid {
			t.Errorf("%q: got %c %d %v, want %c %d", tc.in, st, ppid, err, tc.state, tc.ppid)
		}
	}
}

func isZombieChild(pid int) bool {
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	st, ppid, err := ParseStat(b)
	return err == nil && st == 'Z' && ppid == os.Getpid()
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestReapsOnlyUnowned: an unowned exited child is reaped; an owned one
// is left for its owner, who gets its real exit status.
func TestReapsOnlyUnowned(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no procfs")
	}
	r, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()

	// Owned: started inside a start window and registered.
	end := r.Begin()
	owned := exec.Command("/bin/sh", "-c", "exit 7")
	if err := owned.Start(); err != nil {
		end()
		t.Fatal(err)
	}
	end(owned.Process.Pid)

	// Unowned: nobody will wait for it.
	end2 := r.Begin()
	orphan := exec.Command("/bin/sh", "-c", "exit 0")
	if err := orphan.Start(); err != nil {
		end2()
		t.Fatal(err)
	}
	end2()

	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := os.Stat("/proc/" + itoa(orphan.Process.Pid))
		if os.IsNotExist(err) {
			break // reaped
		}
		if time.Now().After(deadline) {
			t.Fatalf("unowned child %d not reaped", orphan.Process.Pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The owned child must still be there for its owner.
	time.Sleep(100 * time.Millisecond)
	if !isZombieChild(owned.Process.Pid) {
		t.Fatalf("owned child %d was reaped by the reaper", owned.Process.Pid)
	}
	err = owned.Wait()
	ws, _ := owned.ProcessState.Sys().(syscall.WaitStatus)
	if ws.ExitStatus() != 7 {
		t.Fatalf("owner got %v (%v), want exit status 7", err, ws)
	}
	r.Disown(owned.Process.Pid)
}

// TestNoReapDuringStart: while a start window is open nothing is reaped.
func TestNoReapDuringStart(t *testing.T) {
	r, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	end := r.Begin()
	c := exec.Command("/bin/sh", "-c", "exit 3")
	if err := c.Start(); err != nil {
		end()
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if !isZombieChild(c.Process.Pid) {
		end()
		t.Fatalf("child %d reaped during the start window", c.Process.Pid)
	}
	end(c.Process.Pid)
	if err := c.Wait(); err == nil || c.ProcessState.ExitCode() != 3 {
		t.Fatalf("owner got %v, want exit status 3", err)
	}
	r.Disown(c.Process.Pid)
}

func TestRunKeepsExitStatus(t *testing.T) {
	r, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	for i := 0; i < 20; i++ {
		err := r.Run(exec.Command("/bin/sh", "-c", "exit 9"))
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 9 {
			t.Fatalf("run %d: %v, want exit status 9", i, err)
		}
	}
	var nilReaper *Reaper
	if err := nilReaper.Run(exec.Command("/bin/true")); err != nil {
		t.Fatalf("nil reaper: %v", err)
	}
}

func TestRunCmdUsesActiveReaper(t *testing.T) {
	if err := RunCmd(exec.Command("/bin/true")); err != nil {
		t.Fatalf("without a reaper: %v", err)
	}
	r, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	for i := 0; i < 20; i++ {
		var ee *exec.ExitError
		if err := RunCmd(exec.Command("/bin/sh", "-c", "exit 4")); !errors.As(err, &ee) || ee.ExitCode() != 4 {
			t.Fatalf("run %d: %v, want exit status 4", i, err)
		}
	}
}

// TestUnregisteredOwnersKeepStatus: code that forks without the reaper
// still gets its children's exit statuses when it waits within the grace
// period: many children at once, and one waited for only after it exited.
func TestUnregisteredOwnersKeepStatus(t *testing.T) {
	r, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	// Many children at once, so the reaper's scans overlap their exits.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				err := exec.Command("/bin/sh", "-c", "exit 5").Run()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 5 {
					errs <- fmt.Errorf("run %d: %v, want exit status 5", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	late := exec.Command("/bin/sh", "-c", "exit 6")
	if err := late.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(DefaultGrace / 3) // exited and seen by the reaper by now
	var ee *exec.ExitError
	if err := late.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 6 {
		t.Fatalf("late wait: %v, want exit status 6", err)
	}
}

func TestStartTime(t *testing.T) {
	line := "42 (a b) Z 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 987654 0 0"
	if got := startTime([]byte(line)); got != "987654" {
		t.Fatalf("start time %q, want 987654", got)
	}
	if got := startTime([]byte("1 (x) Z 1")); got != "" {
		t.Fatalf("short line gave %q", got)
	}
}
