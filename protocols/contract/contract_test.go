package contract

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/typespb"
)

// tablePath is the upstream record, relative to this package's directory
// (where go test runs).
const tablePath = "upstream.txt"

// ourFiles are the descriptors whose every method, message, field and enum
// value must appear in the table.
func ourFiles() []protoreflect.FileDescriptor {
	return []protoreflect.FileDescriptor{
		agentpb.File_agent_proto,
		agentpb.File_health_proto,
		agentpb.File_oci_proto,
		agentpb.File_csi_proto,
		typespb.File_types_proto,
	}
}

// fact is one parsed line of the table.
type fact struct {
	line  int    // 1-based line number in the table
	text  string // the line as written, for error messages
	kind  string // "rpc", "message", "field" or "enum"
	owner string // service, message or enum full name
	name  string // method, field or enum value name; empty for "message"

	// rpc
	input, output string
	// field and enum
	number int32
	// field
	label, typ string
}

// key identifies the element a fact describes, so that duplicates and the
// reverse check can be keyed on it.
func (f fact) key() string {
	if f.kind == "message" {
		return "message " + f.owner
	}
	return f.kind + " " + f.owner + " " + f.name
}

func (f fact) String() string { return fmt.Sprintf("line %d: %q", f.line, f.text) }

var errTable = errors.New("malformed contract table")

// parseTable reads the table format described in upstream.txt's header.
// Besides syntax it rejects duplicate facts and field or enum lines whose
// owner has no declaration, so a typo in the table cannot hide a gap.
func parseTable(r io.Reader) ([]fact, error) {
	var (
		facts []fact
		errs  []error
		seen  = map[string]int{}
	)
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		f, err := parseLine(n, text)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: line %d: %q: %w", errTable, n, text, err))
			continue
		}
		if prev, ok := seen[f.key()]; ok {
			errs = append(errs, fmt.Errorf("%w: line %d: %q: duplicate of line %d", errTable, n, text, prev))
			continue
		}
		seen[f.key()] = n
		facts = append(facts, f)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read contract table: %w", err)
	}
	for _, f := range facts {
		if f.kind == "field" {
			if _, ok := seen["message "+f.owner]; !ok {
				errs = append(errs, fmt.Errorf("%w: %v: no 'message %s' line", errTable, f, f.owner))
			}
		}
	}
	return facts, errors.Join(errs...)
}

func parseLine(n int, text string) (fact, error) {
	w := strings.Fields(text)
	f := fact{line: n, text: text, kind: w[0]}
	switch f.kind {
	case "rpc":
		if len(w) != 5 {
			return f, errors.New("want: rpc SERVICE METHOD INPUT OUTPUT")
		}
		f.owner, f.name, f.input, f.output = w[1], w[2], w[3], w[4]
	case "message":
		if len(w) != 2 {
			return f, errors.New("want: message MESSAGE")
		}
		f.owner = w[1]
	case "enum":
		if len(w) != 4 {
			return f, errors.New("want: enum ENUM VALUE NUMBER")
		}
		f.owner, f.name = w[1], w[2]
		num, err := strconv.ParseInt(w[3], 10, 32)
		if err != nil {
			return f, fmt.Errorf("enum number: %w", err)
		}
		f.number = int32(num)
	case "field":
		switch len(w) {
		case 5:
			f.typ = w[4]
		case 6:
			f.label, f.typ = w[4], w[5]
			if f.label != "repeated" && f.label != "optional" && !strings.HasPrefix(f.label, "oneof=") {
				return f, fmt.Errorf("unknown label %q", f.label)
			}
		default:
			return f, errors.New("want: field MESSAGE NAME NUMBER [LABEL] TYPE")
		}
		f.owner, f.name = w[1], w[2]
		num, err := strconv.ParseInt(w[3], 10, 32)
		if err != nil || num < 1 {
			return f, fmt.Errorf("field number %q is not a positive integer", w[3])
		}
		f.number = int32(num)
	default:
		return f, fmt.Errorf("unknown line kind %q", f.kind)
	}
	return f, nil
}

// typeName renders a field's value type the way the table writes it.
func typeName(fd protoreflect.FieldDescriptor) string {
	if fd.IsMap() {
		return "map<" + typeName(fd.MapKey()) + "," + typeName(fd.MapValue()) + ">"
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return string(fd.Message().FullName())
	case protoreflect.EnumKind:
		return string(fd.Enum().FullName())
	default:
		return fd.Kind().String()
	}
}

// labelName renders a field's label the way the table writes it.
func labelName(fd protoreflect.FieldDescriptor) string {
	switch {
	case fd.IsMap():
		return ""
	case fd.Cardinality() == protoreflect.Repeated:
		return "repeated"
	case fd.HasOptionalKeyword():
		return "optional"
	case fd.ContainingOneof() != nil:
		return "oneof=" + string(fd.ContainingOneof().Name())
	default:
		return ""
	}
}

// describeField renders our field as a table line, to show next to the
// table's line when they differ.
func describeField(fd protoreflect.FieldDescriptor) string {
	parts := []string{"field", string(fd.ContainingMessage().FullName()), string(fd.Name()), strconv.Itoa(int(fd.Number()))}
	if l := labelName(fd); l != "" {
		parts = append(parts, l)
	}
	return strings.Join(append(parts, typeName(fd)), " ")
}

// checkForward verifies each fact against the descriptors resolvable from
// res and returns one error per mismatch, naming the table line.
func checkForward(res *protoregistry.Files, facts []fact) []error {
	var errs []error
	bad := func(f fact, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%v: %s", f, fmt.Sprintf(format, args...)))
	}
	for _, f := range facts {
		d, err := res.FindDescriptorByName(protoreflect.FullName(f.owner))
		if err != nil {
			bad(f, "%s not found in our descriptors: %v", f.owner, err)
			continue
		}
		switch f.kind {
		case "rpc":
			sd, ok := d.(protoreflect.ServiceDescriptor)
			if !ok {
				bad(f, "%s is not a service", f.owner)
				continue
			}
			md := sd.Methods().ByName(protoreflect.Name(f.name))
			if md == nil {
				bad(f, "service %s has no method %s", f.owner, f.name)
				continue
			}
			if got := string(md.Input().FullName()); got != f.input {
				bad(f, "input type: ours is %s", got)
			}
			if got := string(md.Output().FullName()); got != f.output {
				bad(f, "output type: ours is %s", got)
			}
			if md.IsStreamingClient() || md.IsStreamingServer() {
				bad(f, "ours is a streaming method; upstream is unary")
			}
		case "message":
			if _, ok := d.(protoreflect.MessageDescriptor); !ok {
				bad(f, "%s is not a message", f.owner)
			}
		case "field":
			m, ok := d.(protoreflect.MessageDescriptor)
			if !ok {
				bad(f, "%s is not a message", f.owner)
				continue
			}
			fd := m.Fields().ByName(protoreflect.Name(f.name))
			if fd == nil {
				if other := m.Fields().ByNumber(protoreflect.FieldNumber(f.number)); other != nil {
					bad(f, "no field %s; number %d is ours %q", f.name, f.number, describeField(other))
				} else {
					bad(f, "message %s has no field %s", f.owner, f.name)
				}
				continue
			}
			if int32(fd.Number()) != f.number || labelName(fd) != f.label || typeName(fd) != f.typ {
				bad(f, "ours is %q", describeField(fd))
			}
		case "enum":
			ed, ok := d.(protoreflect.EnumDescriptor)
			if !ok {
				bad(f, "%s is not an enum", f.owner)
				continue
			}
			vd := ed.Values().ByName(protoreflect.Name(f.name))
			if vd == nil {
				bad(f, "enum %s has no value %s", f.owner, f.name)
				continue
			}
			if int32(vd.Number()) != f.number {
				bad(f, "ours is %s = %d", f.name, vd.Number())
			}
		}
	}
	return errs
}

// ourKeys lists the fact keys for everything declared in files: methods,
// messages (nested ones included, map entries excluded since the map field
// stands for them), fields and enum values.
func ourKeys(files []protoreflect.FileDescriptor) []string {
	var keys []string
	addEnums := func(eds protoreflect.EnumDescriptors) {
		for i := 0; i < eds.Len(); i++ {
			ed := eds.Get(i)
			for j := 0; j < ed.Values().Len(); j++ {
				keys = append(keys, "enum "+string(ed.FullName())+" "+string(ed.Values().Get(j).Name()))
			}
		}
	}
	var addMessages func(mds protoreflect.MessageDescriptors)
	addMessages = func(mds protoreflect.MessageDescriptors) {
		for i := 0; i < mds.Len(); i++ {
			md := mds.Get(i)
			if md.IsMapEntry() {
				continue
			}
			keys = append(keys, "message "+string(md.FullName()))
			for j := 0; j < md.Fields().Len(); j++ {
				keys = append(keys, "field "+string(md.FullName())+" "+string(md.Fields().Get(j).Name()))
			}
			addEnums(md.Enums())
			addMessages(md.Messages())
		}
	}
	for _, fd := range files {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				keys = append(keys, "rpc "+string(sd.FullName())+" "+string(sd.Methods().Get(j).Name()))
			}
		}
		addEnums(fd.Enums())
		addMessages(fd.Messages())
	}
	sort.Strings(keys)
	return keys
}

// checkReverse reports everything we declare that the table does not: an
// added or renamed method, message, field or enum value is a contract change
// and has to be justified against upstream first.
func checkReverse(files []protoreflect.FileDescriptor, facts []fact) []error {
	inTable := make(map[string]bool, len(facts))
	for _, f := range facts {
		inTable[f.key()] = true
	}
	var errs []error
	for _, k := range ourKeys(files) {
		if !inTable[k] {
			errs = append(errs, fmt.Errorf("ours declares %q, which the upstream table does not list", k))
		}
	}
	return errs
}

// checkAll runs both directions against our compiled descriptors.
func checkAll(facts []fact) []error {
	return append(checkForward(protoregistry.GlobalFiles, facts), checkReverse(ourFiles(), facts)...)
}

func loadTable(t *testing.T) []fact {
	t.Helper()
	f, err := os.Open(tablePath)
	if err != nil {
		t.Fatalf("open contract table: %v", err)
	}
	defer f.Close()
	facts, err := parseTable(f)
	if err != nil {
		t.Fatalf("parse %s: %v", tablePath, err)
	}
	return facts
}

func mustParse(t *testing.T, table string) []fact {
	t.Helper()
	facts, err := parseTable(strings.NewReader(table))
	if err != nil {
		t.Fatalf("parse in-memory table: %v", err)
	}
	return facts
}

// TestUpstreamContract is the contract itself: every upstream fact holds for
// our descriptors, and we declare nothing upstream does not.
func TestUpstreamContract(t *testing.T) {
	facts := loadTable(t)
	counts := map[string]int{}
	for _, f := range facts {
		counts[f.kind]++
	}
	t.Logf("table: %d rpc, %d message, %d field, %d enum lines",
		counts["rpc"], counts["message"], counts["field"], counts["enum"])
	// Guard against the table being truncated to nothing: both directions
	// would then trivially agree only if our descriptors were empty too,
	// but a short table is still worth an explicit failure.
	if counts["rpc"] == 0 || counts["field"] == 0 || counts["enum"] == 0 {
		t.Fatalf("table has too few facts: %v", counts)
	}
	for _, err := range checkAll(facts) {
		t.Error(err)
	}
}

// TestServicesMatchTableExactly states the method sets of both services
// directly, so the failure message is obvious when a method is missing on
// either side.
func TestServicesMatchTableExactly(t *testing.T) {
	facts := loadTable(t)
	want := map[string][]string{}
	for _, f := range facts {
		if f.kind == "rpc" {
			want[f.owner] = append(want[f.owner], f.name)
		}
	}
	for _, svc := range []string{"grpc.AgentService", "grpc.Health"} {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			t.Errorf("service %s: %v", svc, err)
			continue
		}
		sd := d.(protoreflect.ServiceDescriptor)
		var got []string
		for i := 0; i < sd.Methods().Len(); i++ {
			got = append(got, string(sd.Methods().Get(i).Name()))
		}
		sort.Strings(got)
		w := append([]string(nil), want[svc]...)
		sort.Strings(w)
		if strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("service %s methods:\n ours:     %v\n upstream: %v", svc, got, w)
		}
	}
}

// TestCheckerCatchesWrongLines feeds deliberately wrong facts and requires
// one error per wrong line, naming that line; correct lines must pass.
func TestCheckerCatchesWrongLines(t *testing.T) {
	good := mustParse(t, `
rpc grpc.AgentService CreateContainer grpc.CreateContainerRequest google.protobuf.Empty
message grpc.CreateContainerRequest
field grpc.CreateContainerRequest container_id 1 string
enum types.IPFamily v6 1
`)
	if errs := checkForward(protoregistry.GlobalFiles, good); len(errs) != 0 {
		t.Fatalf("correct lines reported as wrong: %v", errs)
	}

	wrong := []struct {
		line string
		want string // substring the error must contain
	}{
		{"rpc grpc.AgentService CreateContainer grpc.StartContainerRequest google.protobuf.Empty", "input type"},
		{"rpc grpc.AgentService WaitProcess grpc.WaitProcessRequest google.protobuf.Empty", "output type"},
		{"rpc grpc.AgentService NoSuchMethod grpc.CheckRequest google.protobuf.Empty", "no method"},
		{"rpc grpc.NoSuchService Check grpc.CheckRequest grpc.HealthCheckResponse", "not found"},
		{"message grpc.NoSuchMessage", "not found"},
		{"message types.IPFamily", "not a message"},
		{"field grpc.CreateContainerRequest container_id 2 string", "ours is"},
		{"field grpc.CreateContainerRequest container_id 1 bytes", "ours is"},
		{"field grpc.CreateContainerRequest devices 4 grpc.Device", "ours is"},
		{"field grpc.CreateContainerRequest devices 4 repeated grpc.Storage", "ours is"},
		{"field grpc.CreateContainerRequest OCI 6 grpc.Process", "ours is"},
		{"field grpc.MemoryStats stats 6 map<string,uint32>", "ours is"},
		{"field grpc.MemoryStats stats 6 repeated uint64", "ours is"},
		{"field grpc.MemAgentMemcgConfig swap 2 bool", "ours is"},
		{"field grpc.WaitProcessResponse status 1 optional int32", "ours is"},
		{"field grpc.LinuxSyscall errnoret 3 uint32", "ours is"},
		{"field grpc.LinuxSyscall errnoret 3 oneof=Other uint32", "ours is"},
		{"field types.IPAddress family 1 types.FSGroupChangePolicy", "ours is"},
		{"field grpc.CreateContainerRequest containerid 1 string", "number 1 is ours"},
		{"field grpc.CreateContainerRequest nothing 99 string", "no field"},
		{"enum types.IPFamily v6 2", "ours is"},
		{"enum types.IPFamily v5 1", "no value"},
		{"enum grpc.CheckRequest v4 0", "not an enum"},
	}
	for _, tc := range wrong {
		facts := mustParse(t, "message grpc.CreateContainerRequest\nmessage grpc.MemoryStats\n"+
			"message grpc.MemAgentMemcgConfig\nmessage grpc.WaitProcessResponse\nmessage grpc.LinuxSyscall\n"+
			"message types.IPAddress\n"+tc.line)
		errs := checkForward(protoregistry.GlobalFiles, facts)
		if len(errs) != 1 {
			t.Errorf("%q: want exactly 1 error, got %d: %v", tc.line, len(errs), errs)
			continue
		}
		msg := errs[0].Error()
		if !strings.Contains(msg, tc.line) || !strings.Contains(msg, tc.want) {
			t.Errorf("%q: error %q should quote the line and mention %q", tc.line, msg, tc.want)
		}
	}
}

// TestReverseCatchesUnlistedElements drops facts from the real table and
// requires the reverse check to name exactly what was dropped.
func TestReverseCatchesUnlistedElements(t *testing.T) {
	facts := loadTable(t)
	if errs := checkReverse(ourFiles(), facts); len(errs) != 0 {
		t.Skipf("reverse check already failing on the real table (see TestUpstreamContract): %v", errs)
	}
	drop := map[string]bool{
		"rpc grpc.AgentService SetPolicy":                    true,
		"rpc grpc.Health Version":                            true,
		"field grpc.Storage fs_group":                        true,
		"message grpc.DestroySandboxRequest":                 true,
		"enum grpc.VolumeUsage.Unit INODES":                  true,
		"field grpc.LinuxSyscall errnoret":                   true,
		"field types.Interface devicePath":                   true,
		"message grpc.RemoveStaleVirtiofsShareMountsRequest": true,
		// Added upstream since the first reading.
		"rpc grpc.AgentService GetDiagnosticData": true,
		"field grpc.Storage shared":               true,
		"field types.Route mtu":                   true,
	}
	var kept []fact
	for _, f := range facts {
		if !drop[f.key()] {
			kept = append(kept, f)
		}
	}
	if len(kept) != len(facts)-len(drop) {
		t.Fatalf("test setup: only %d of %d dropped keys were in the table", len(facts)-len(kept), len(drop))
	}
	errs := checkReverse(ourFiles(), kept)
	if len(errs) != len(drop) {
		t.Fatalf("want %d reverse errors, got %d: %v", len(drop), len(errs), errs)
	}
	for _, err := range errs {
		named := false
		for k := range drop {
			if strings.Contains(err.Error(), fmt.Sprintf("%q", k)) {
				named = true
			}
		}
		if !named {
			t.Errorf("reverse error names nothing that was dropped: %v", err)
		}
	}
}

// TestParseRejectsMalformedTables keeps typos in the table from turning into
// silently skipped facts.
func TestParseRejectsMalformedTables(t *testing.T) {
	for _, table := range []string{
		"rpc grpc.Health Check grpc.CheckRequest",
		"message",
		"message grpc.A extra",
		"field grpc.A x 1",
		"message grpc.A\nfield grpc.A x one string",
		"message grpc.A\nfield grpc.A x 0 string",
		"message grpc.A\nfield grpc.A x 1 required string",
		"message grpc.A\nfield grpc.A x 1 repeated string extra",
		"field grpc.Undeclared x 1 string",
		"enum types.IPFamily v4 zero",
		"enum types.IPFamily v4",
		"service grpc.Health",
		"message grpc.A\nmessage grpc.A",
		"rpc grpc.Health Check a b\nrpc grpc.Health Check c d",
	} {
		if _, err := parseTable(strings.NewReader(table)); !errors.Is(err, errTable) {
			t.Errorf("table %q: want errTable, got %v", table, err)
		}
	}
	facts, err := parseTable(strings.NewReader("# only a comment\n\n  message grpc.A  # trailing\n"))
	if err != nil || len(facts) != 1 || facts[0].owner != "grpc.A" || facts[0].line != 3 {
		t.Errorf("comments and blank lines: got %+v, %v", facts, err)
	}
}
