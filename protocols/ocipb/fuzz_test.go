package ocipb

import (
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
)

// FuzzToSpec feeds arbitrary protobuf bytes as the host's OCI spec.
// Properties: no panic; a spec ToSpec accepts survives FromSpec and a
// second ToSpec unchanged (what the agent hands libcontainer is a fixed
// point of the protocol's encoding); a refusal says why.
func FuzzToSpec(f *testing.F) {
	full, err := proto.Marshal(FromSpec(fullSpec()))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var p pb.Spec
		if proto.Unmarshal(data, &p) != nil {
			return
		}
		s1, err := ToSpec(&p)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("refusal without a message")
			}
			return
		}
		s2, err := ToSpec(FromSpec(s1))
		if err != nil {
			t.Fatalf("a converted spec does not convert again: %v", err)
		}
		j1, err1 := json.Marshal(s1)
		j2, err2 := json.Marshal(s2)
		if err1 != nil || err2 != nil {
			t.Fatalf("marshal: %v %v", err1, err2)
		}
		if string(j1) != string(j2) {
			t.Fatalf("round trip changed the spec:\n%s\n%s", j1, j2)
		}
		// The pieces the handlers convert on their own.
		_ = ToProcess(p.Process)
		if p.Linux != nil {
			_ = ToResources(p.Linux.Resources)
		}
	})
}
