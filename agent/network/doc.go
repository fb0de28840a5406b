// Package network configures the guest's network from the runtime's
// requests: interfaces (found by hardware address), the routing table, ARP
// neighbours, iptables rules and resolv.conf.
//
// Every request is validated completely before the system is touched, and
// a change that fails midway is undone, so a bad request leaves the previous
// configuration as it was. Errors carry errdefs classes (InvalidArgument for
// malformed input, NotFound for a missing link, NotImplemented when the
// image has no iptables) and name the offending value.
//
// The Manager works on one network namespace through an injected netlink
// handle: the agent's own in production, a namespace the test created in
// host tests.
package network
