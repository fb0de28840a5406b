package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandbox-guest/sandbox-guest/agent/hostinput"
)

// toStatus maps an error from any concern package to a gRPC status error.
// It is the only place where error classes become wire codes.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codeOf(err), err.Error())
}

// codeOf classifies err by its errdefs class. errgrpc does the same but
// links typeurl and gogo/protobuf into the agent, which the guest pays for
// in memory; this table is all we need.
func codeOf(err error) codes.Code {
	switch {
	case errdefs.IsInvalidArgument(err):
		return codes.InvalidArgument
	case errdefs.IsNotFound(err):
		return codes.NotFound
	case errdefs.IsAlreadyExists(err):
		return codes.AlreadyExists
	case errdefs.IsFailedPrecondition(err), errdefs.IsConflict(err), errdefs.IsNotModified(err):
		return codes.FailedPrecondition
	case errdefs.IsUnavailable(err):
		return codes.Unavailable
	case errdefs.IsNotImplemented(err):
		return codes.Unimplemented
	case errdefs.IsPermissionDenied(err):
		return codes.PermissionDenied
	case errdefs.IsResourceExhausted(err):
		return codes.ResourceExhausted
	case errdefs.IsOutOfRange(err):
		return codes.OutOfRange
	case errdefs.IsAborted(err):
		return codes.Aborted
	case errdefs.IsUnauthorized(err):
		return codes.Unauthenticated
	case errdefs.IsDataLoss(err):
		return codes.DataLoss
	case errdefs.IsDeadlineExceeded(err):
		return codes.DeadlineExceeded
	case errdefs.IsCanceled(err):
		return codes.Canceled
	}
	return codes.Internal
}

// interceptor maps errors to statuses, logs failures and turns a handler
// panic into an Internal error so that one bad request cannot take the
// agent (PID 1) down.
func interceptor(log *slog.Logger) ttrpc.UnaryServerInterceptor {
	return func(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (resp interface{}, err error) {
		var req any
		keep := func(v any) error {
			req = v
			if err := unmarshal(v); err != nil {
				// ttrpc calls a payload that does not decode Internal;
				// it is the host's malformed request.
				return status.Errorf(codes.InvalidArgument, "%s: malformed request: %s", info.FullMethod, status.Convert(err).Message())
			}
			return nil
		}
		defer func() {
			if r := recover(); r != nil {
				resp, err = nil, panicked(log, info.FullMethod, r, req)
			}
		}()
		resp, err = method(ctx, keep)
		if err != nil {
			err = failed(ctx, log, info.FullMethod, err, req)
		}
		return resp, err
	}
}

// failed maps a handler's error to its status and logs it.
func failed(ctx context.Context, log *slog.Logger, method string, err error, req any) error {
	err = toStatus(err)
	level := slog.LevelWarn
	if status.Code(err) == codes.Canceled {
		// The host gave up waiting (a long poll it no longer needs).
		level = slog.LevelDebug
	}
	log.Log(ctx, level, "request failed", append([]any{"method", method, "error", err}, requestIDs(req)...)...)
	return err
}

// panicked logs a handler's panic (r) and the Internal error it answers.
func panicked(log *slog.Logger, method string, r any, req any) error {
	log.Error("handler panic", append([]any{"method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack())}, requestIDs(req)...)...)
	return status.Errorf(codes.Internal, "%s: internal error: %v", method, r)
}

// requestIDs names the sandbox, container and exec a request is about, as
// log attributes (none for requests without them).
func requestIDs(req any) []any {
	var ids []any
	if r, ok := req.(interface{ GetSandboxId() string }); ok && r.GetSandboxId() != "" {
		ids = append(ids, "sandbox_id", hostinput.Clip(r.GetSandboxId()))
	}
	if r, ok := req.(interface{ GetContainerId() string }); ok && r.GetContainerId() != "" {
		ids = append(ids, "container_id", hostinput.Clip(r.GetContainerId()))
	}
	if r, ok := req.(interface{ GetExecId() string }); ok && r.GetExecId() != "" {
		ids = append(ids, "exec_id", hostinput.Clip(r.GetExecId()))
	}
	return ids
}
