// Package server holds the agent's ttrpc handlers for grpc.AgentService and
// grpc.Health.
//
// Handlers are thin: they validate the request, translate it and call into
// the package that owns the concern (container, storage, network, hotplug,
// ...). Errors from those packages carry errdefs classes (errors.Is) and are
// turned into gRPC status codes in one place, the unary interceptor in
// errors.go; a handler never builds a status itself.
//
// agentService embeds one handler type per concern at depth one and the
// unimplemented fallback at depth two, so Go's method promotion picks the
// concern's method whenever one exists and every other method answers
// Unimplemented with its name.
package server
