package sandbox

import (
	"context"
	"slices"
)

// Container states as ContainerStates reports them.
const (
	StateCreating = "creating" // CreateContainer has not returned yet
	StateCreated  = "created"  // created, not started
	StateRunning  = "running"  // started, init not exited
	StateStopped  = "stopped"  // init exited
)

// ContainerState is what the agent holds about one container, for
// diagnostics. It reads only the agent's own records, never libcontainer's
// state, whose lock a stuck freezer operation can hold.
type ContainerState struct {
	ID       string   `json:"id"`
	State    string   `json:"state"`
	InitPid  int      `json:"init_pid,omitempty"`
	ExitCode *int32   `json:"exit_code,omitempty"` // once stopped
	ExecIDs  []string `json:"exec_ids,omitempty"`
	Cgroup   string   `json:"cgroup,omitempty"` // unified hierarchy path
}

// ContainerStates lists every container of the sandbox, sorted by id.
func (s *Sandbox) ContainerStates() []ContainerState {
	s.mu.Lock()
	ids := make([]string, 0, len(s.containers))
	for id := range s.containers {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	slices.Sort(ids)
	out := make([]ContainerState, 0, len(ids))
	for _, id := range ids {
		st := ContainerState{ID: id, State: StateCreating}
		s.mu.Lock()
		c, ok := s.containers[id]
		s.mu.Unlock()
		if !ok {
			continue // removed meanwhile
		}
		if c != nil {
			st.InitPid = c.InitPid()
			st.ExecIDs = c.ExecIDs()
			st.Cgroup = c.CgroupPaths()[""]
			st.State = StateCreated
			if c.Started() {
				st.State = StateRunning
			}
			if p, err := c.Process(""); err == nil && p.Exited() {
				code, _ := p.Wait(context.Background()) // returns at once: exited
				st.State, st.ExitCode = StateStopped, &code
			}
		}
		out = append(out, st)
	}
	return out
}
