package container

import "slices"

// ExecIDs lists the container's exec'd processes the agent still holds,
// sorted.
func (c *Container) ExecIDs() []string {
	c.mu.Lock()
	ids := make([]string, 0, len(c.execs))
	for id := range c.execs {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	slices.Sort(ids)
	return ids
}
