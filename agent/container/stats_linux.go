package container

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/opencontainers/runc/libcontainer"
)

// Stats returns the container's cgroup statistics.
func (c *Container) Stats() (*libcontainer.Stats, error) {
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	st, err := c.lc.Stats()
	if err != nil {
		return nil, fmt.Errorf("container %q: stats: %w", c.id, err)
	}
	return st, nil
}

// ProcessInfo is one line of ListProcesses.
type ProcessInfo struct {
	Pid  int
	PPid int
	Cmd  string
}

// ListProcesses lists the processes of the container's cgroup, sorted by
// pid, with their command lines read from procRoot.
func (c *Container) ListProcesses(procRoot string) ([]ProcessInfo, error) {
	pids, err := c.lc.Processes()
	if err != nil {
		return nil, fmt.Errorf("container %q: list processes: %w", c.id, err)
	}
	sort.Ints(pids)
	out := make([]ProcessInfo, 0, len(pids))
	for _, pid := range pids {
		dir := filepath.Join(procRoot, strconv.Itoa(pid))
		cmd, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil {
			continue // exited meanwhile
		}
		pi := ProcessInfo{Pid: pid, Cmd: strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))}
		if st, err := os.ReadFile(filepath.Join(dir, "stat")); err == nil {
			if i := strings.LastIndexByte(string(st), ')'); i > 0 {
				if f := strings.Fields(string(st[i+1:])); len(f) > 1 {
					pi.PPid, _ = strconv.Atoi(f[1])
				}
			}
		}
		out = append(out, pi)
	}
	return out, nil
}
