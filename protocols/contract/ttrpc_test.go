package contract

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// The ttrpc service and method names on the wire are string literals in the
// generated *_ttrpc.pb.go files, separate from the descriptors checked in
// contract_test.go. This test drives every table rpc through the generated
// client and server over a real socket, so those literals are pinned too.

// agentStub and healthStub satisfy the generated interfaces; their methods are
// never reached because the probe interceptor stops every call before the
// handler invokes them.
type agentStub struct{ agentpb.AgentServiceService }
type healthStub struct{ agentpb.HealthService }

var errProbe = errors.New("probe: stop before the handler")

// probeInterceptor answers every call with an Aborted status whose message is
// the full method the server dispatched plus the request message type the
// generated handler unmarshals into.
func probeInterceptor(ctx context.Context, _ ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	reqType := "?"
	_, err := method(ctx, func(obj any) error {
		if m, ok := obj.(proto.Message); ok {
			reqType = string(m.ProtoReflect().Descriptor().FullName())
		}
		return errProbe
	})
	if !errors.Is(err, errProbe) {
		return nil, status.Errorf(codes.Internal, "handler for %s did not unmarshal first: %v", info.FullMethod, err)
	}
	return nil, status.Errorf(codes.Aborted, "%s %s", info.FullMethod, reqType)
}

// startProbeServer serves both generated services on a unix socket and
// returns a connected client.
func startProbeServer(t *testing.T) *ttrpc.Client {
	t.Helper()
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(probeInterceptor))
	if err != nil {
		t.Fatalf("new ttrpc server: %v", err)
	}
	agentpb.RegisterAgentServiceService(srv, agentStub{})
	agentpb.RegisterHealthService(srv, healthStub{})
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "agent.sock"))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), l) }()
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	client := ttrpc.NewClient(conn)
	t.Cleanup(func() {
		client.Close()
		srv.Close()
		if err := <-served; err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return client
}

// goMessageType is the generated Go type (a pointer) for a message full name.
func goMessageType(name string) (reflect.Type, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		return nil, fmt.Errorf("message type %s: %w", name, err)
	}
	return reflect.TypeOf(mt.New().Interface()), nil
}

func TestTTRPCWireNames(t *testing.T) {
	facts := loadTable(t)
	client := startProbeServer(t)
	clients := map[string]reflect.Value{
		"grpc.AgentService": reflect.ValueOf(agentpb.NewAgentServiceClient(client)),
		"grpc.Health":       reflect.ValueOf(agentpb.NewHealthClient(client)),
	}
	ifaces := map[string]reflect.Type{
		"grpc.AgentService": reflect.TypeOf((*agentpb.AgentServiceService)(nil)).Elem(),
		"grpc.Health":       reflect.TypeOf((*agentpb.HealthService)(nil)).Elem(),
	}
	ctxType := reflect.TypeOf((*context.Context)(nil)).Elem()
	inTable := map[string]bool{}
	for _, f := range facts {
		if f.kind != "rpc" {
			continue
		}
		inTable[f.owner+"."+f.name] = true
		c, ok := clients[f.owner]
		if !ok {
			t.Errorf("%v: no generated ttrpc client for service %s", f, f.owner)
			continue
		}
		m := c.MethodByName(f.name)
		if !m.IsValid() {
			t.Errorf("%v: generated ttrpc client has no method %s", f, f.name)
			continue
		}
		in, err := goMessageType(f.input)
		if err != nil {
			t.Errorf("%v: %v", f, err)
			continue
		}
		out, err := goMessageType(f.output)
		if err != nil {
			t.Errorf("%v: %v", f, err)
			continue
		}
		mt := m.Type()
		if mt.NumIn() != 2 || mt.In(0) != ctxType || mt.In(1) != in || mt.NumOut() != 2 || mt.Out(0) != out {
			t.Errorf("%v: generated client method signature is %v", f, mt)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res := m.Call([]reflect.Value{reflect.ValueOf(ctx), reflect.New(in.Elem())})
		cancel()
		err, _ = res[1].Interface().(error)
		st, _ := status.FromError(err)
		want := fmt.Sprintf("/%s/%s %s", f.owner, f.name, f.input)
		if st.Code() != codes.Aborted || st.Message() != want {
			t.Errorf("%v: call reached the server as %v %q, want Aborted %q", f, st.Code(), st.Message(), want)
		}
	}
	for svc, it := range ifaces {
		for i := 0; i < it.NumMethod(); i++ {
			if name := it.Method(i).Name; !inTable[svc+"."+name] {
				t.Errorf("generated ttrpc interface %s has method %s, which the upstream table does not list", svc, name)
			}
		}
	}
}

// TestTTRPCProbeDetectsUnknownMethod shows the probe distinguishes a method
// the server does not register from one it does.
func TestTTRPCProbeDetectsUnknownMethod(t *testing.T) {
	client := startProbeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var resp agentpb.CheckRequest
	err := client.Call(ctx, "grpc.AgentService", "NoSuchMethod", &agentpb.CheckRequest{}, &resp)
	if st, _ := status.FromError(err); st.Code() != codes.Unimplemented {
		t.Errorf("unknown method: got %v, want Unimplemented", err)
	}
	err = client.Call(ctx, "grpc.Health", "Check", &agentpb.CheckRequest{}, &resp)
	if st, _ := status.FromError(err); st.Code() != codes.Aborted || st.Message() != "/grpc.Health/Check grpc.CheckRequest" {
		t.Errorf("known method: got %v", err)
	}
}
