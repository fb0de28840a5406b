// Package server holds the agent's ttrpc handlers for grpc.AgentService and
// grpc.Health.
//
// Handlers are thin: they validate the request, translate it and call into
// the package that owns the concern (container, storage, network, hotplug,
// ...). Errors from those packages carry errdefs classes (errors.Is) and are
// turned into gRPC status codes in one place, errors.go (the unary
// interceptor, and the stdio path through the same functions); a handler
// never builds a status itself.
//
// ReadStdout and ReadStderr, the calls a runtime makes most, are served
// beside ttrpc on the same connections (intake.go, stdio.go): the
// connection's intake takes the requests it decodes exactly as ttrpc would
// and the stdio path writes ttrpc's response frame itself, whole, between
// ttrpc's. Everything else reaches ttrpc unchanged. Per connection, no
// lock is held while another is taken: trackedConn.wmu orders the two
// writers, trackedConn.mu guards the request counts.
//
// agentService embeds one interface per group of calls (services.go) at
// depth one and the unimplemented fallback at depth two. New chooses, once,
// what serves each group: its handlers when the agent has the part they
// need (Options), unimplemented otherwise; handlers therefore never check
// for a missing dependency, and a method nobody serves answers
// Unimplemented with its name. Handlers make no system calls of their
// own: the clock and entropy pool (System), volume statistics (Storage)
// and the rest are injected.
package server
