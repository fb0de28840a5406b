package main

import (
	"context"
	"fmt"

	"github.com/sandbox-guest/sandbox-guest/protocols/agentclient"
	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

func init() {
	register(&command{name: "check", summary: "print the agent's serving status", run: runCheck})
	register(&command{name: "version", summary: "print the agent and API versions", run: runVersion})
}

func runCheck(ctx context.Context, c *agentclient.Client, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("takes no arguments")
	}
	r, err := c.Health.Check(ctx, &pb.CheckRequest{})
	if err != nil {
		return err
	}
	fmt.Fprintln(out, r.GetStatus().String())
	return nil
}

func runVersion(ctx context.Context, c *agentclient.Client, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("takes no arguments")
	}
	r, err := c.Health.Version(ctx, &pb.CheckRequest{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "agent version: %s\napi version: %s\n", r.GetAgentVersion(), r.GetGrpcVersion())
	return nil
}
