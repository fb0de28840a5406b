package main

import (
	"context"
	"fmt"
	"io"

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
	return emit(map[string]string{"status": r.GetStatus().String()}, func(w io.Writer) error {
		_, err := fmt.Fprintln(w, r.GetStatus().String())
		return err
	})
}

func runVersion(ctx context.Context, c *agentclient.Client, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("takes no arguments")
	}
	r, err := c.Health.Version(ctx, &pb.CheckRequest{})
	if err != nil {
		return err
	}
	return emit(map[string]string{"agent_version": r.GetAgentVersion(), "api_version": r.GetGrpcVersion()}, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "agent version: %s\napi version: %s\n", r.GetAgentVersion(), r.GetGrpcVersion())
		return err
	})
}
