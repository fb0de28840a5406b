// Package contract pins the wire contract between our agent API and the
// upstream Kata Containers agent API.
//
// The file upstream.txt records, one fact per line, every service method,
// message, field (name, number, label, type) and enum value of the upstream
// protocol definitions. The tests in this package compare that record with
// the descriptors compiled into protocols/agentpb and protocols/typespb, in
// both directions, so a renamed, renumbered, retyped, added or removed element
// fails the build instead of silently breaking an unmodified Kata runtime.
package contract
