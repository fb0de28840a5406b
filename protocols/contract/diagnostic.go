package contract

// GetDiagnosticData log types. The wire stays upstream's (a free string,
// answered InvalidArgument when unknown); these values are what our agent
// serves. Upstream's agent knows only DiagnosticTerminationLog, so a host
// asking an upstream agent for ours gets InvalidArgument and can tell the
// type is not there.
const (
	// DiagnosticTerminationLog (upstream): the container's Kubernetes
	// termination message, at most 4 KiB; needs container_id.
	DiagnosticTerminationLog = "termination_log"
	// DiagnosticAgentLog (ours): the agent's recent log lines, JSON
	// records one a line, oldest first, from a ring bounded by lines and
	// bytes in the agent; container_id must be empty.
	DiagnosticAgentLog = "agent_log"
	// DiagnosticAgentContainers (ours): a JSON array of every container's
	// state as the agent holds it (id, state, init_pid, exit_code,
	// exec_ids, cgroup); container_id must be empty. The protocol has no
	// call that lists containers.
	DiagnosticAgentContainers = "agent_containers"
)
