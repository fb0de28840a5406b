// Package gather collects the diagnostics of one sandbox VM into a single
// tar.gz archive: what the agent reports about the guest (details,
// metrics, interfaces, routes), every container's state and statistics,
// the agent's recent log lines, and, from the host kit, the QEMU,
// virtiofsd and console logs. A part that fails is recorded in the
// archive's errors.txt and the rest is still collected: a diagnostic
// archive is wanted most when something is broken.
package gather

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/protocols/contract"
)

// Archive member names, under the archive's top directory.
const (
	MemberSummary      = "summary.json"
	MemberErrors       = "errors.txt"
	MemberGuestDetails = "guest-details.json"
	MemberMetrics      = "metrics.txt"
	MemberInterfaces   = "interfaces.json"
	MemberRoutes       = "routes.json"
	MemberContainers   = "containers.json"
	MemberAgentLog     = "agent.log"
	// Per container: containers/<id>/state.json and stats.json.
	containerDir = "containers"
	// Host logs: host/<name>.
	hostDir = "host"
)

// DefaultMaxLogBytes bounds each host log taken into the archive: its last
// bytes are kept.
const DefaultMaxLogBytes = 16 << 20

// DefaultPartTimeout bounds each call to the agent.
const DefaultPartTimeout = 10 * time.Second

// HostLog is a log file of the host kit to include as host/<Name>.
type HostLog struct {
	Name string // e.g. "qemu.log"
	Path string
}

// Options say what to collect besides the agent's parts.
type Options struct {
	// Agent is the agent's API; nil when it could not be reached
	// (AgentErr says why): the agent's parts are then recorded as failed.
	Agent    pb.AgentServiceService
	AgentErr error
	// Containers are ids to collect in addition to those the agent lists.
	Containers []string
	HostLogs   []HostLog
	// MaxLogBytes bounds each host log (default DefaultMaxLogBytes).
	MaxLogBytes int64
	// PartTimeout bounds each agent call (default DefaultPartTimeout).
	PartTimeout time.Duration
	// Now is the clock (default time.Now); it names the archive's top
	// directory and stamps its members.
	Now func() time.Time
}

// Summary is what was collected; it is also the archive's summary.json.
type Summary struct {
	Time       time.Time `json:"time"`
	Members    []string  `json:"members"`
	Containers []string  `json:"containers"`
	Errors     []string  `json:"errors"`
	Bytes      int64     `json:"uncompressed_bytes"`
}

// Write collects everything and writes the archive to w. It fails only
// when the archive itself cannot be written; failed parts are listed in
// the summary and in errors.txt.
func Write(ctx context.Context, w io.Writer, opts Options) (*Summary, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxLogBytes <= 0 {
		opts.MaxLogBytes = DefaultMaxLogBytes
	}
	if opts.PartTimeout <= 0 {
		opts.PartTimeout = DefaultPartTimeout
	}
	now := opts.Now().UTC()
	g := &gatherer{opts: opts, now: now, top: TopDir(now), sum: &Summary{Time: now, Members: []string{}, Containers: []string{}, Errors: []string{}}}
	zw := gzip.NewWriter(w)
	g.tw = tar.NewWriter(zw)

	g.agentParts(ctx)
	for _, l := range opts.HostLogs {
		g.hostLog(l)
	}

	// The errors file is always there, empty when all went well, so that
	// its absence never reads as success.
	errText := strings.Join(g.sum.Errors, "\n")
	if errText != "" {
		errText += "\n"
	}
	g.add(MemberErrors, []byte(errText))
	sum, err := json.MarshalIndent(g.sum, "", "  ")
	if err == nil {
		g.add(MemberSummary, append(sum, '\n'))
	}
	if g.werr != nil {
		return g.sum, g.werr
	}
	if err := g.tw.Close(); err != nil {
		return g.sum, fmt.Errorf("write archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return g.sum, fmt.Errorf("write archive: %w", err)
	}
	return g.sum, nil
}

// TopDir is the archive's top directory (and, with .tar.gz, its usual
// file name) for a gather at t.
func TopDir(t time.Time) string {
	return "sandbox-gather-" + t.UTC().Format("20060102T150405Z")
}

type gatherer struct {
	opts Options
	now  time.Time
	top  string
	tw   *tar.Writer
	sum  *Summary
	werr error // first failure to write the archive
}

// add writes one member.
func (g *gatherer) add(name string, data []byte) {
	if g.werr != nil {
		return
	}
	hdr := &tar.Header{Name: path.Join(g.top, name), Mode: 0o644, Size: int64(len(data)), ModTime: g.now, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := g.tw.WriteHeader(hdr); err != nil {
		g.werr = fmt.Errorf("write archive member %s: %w", name, err)
		return
	}
	if _, err := g.tw.Write(data); err != nil {
		g.werr = fmt.Errorf("write archive member %s: %w", name, err)
		return
	}
	if name != MemberSummary && name != MemberErrors {
		g.sum.Members = append(g.sum.Members, name)
	}
	g.sum.Bytes += int64(len(data))
}

// fail records a part that could not be collected.
func (g *gatherer) fail(part string, err error) {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	g.sum.Errors = append(g.sum.Errors, part+": "+msg)
}

// call runs one agent call bounded by the part timeout.
func call[R any](ctx context.Context, g *gatherer, f func(context.Context) (R, error)) (R, error) {
	cctx, cancel := context.WithTimeout(ctx, g.opts.PartTimeout)
	defer cancel()
	return f(cctx)
}

// protoJSON renders a protocol message with the protocol's field names.
func protoJSON(m proto.Message) []byte {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return []byte(fmt.Sprintf("{\"error\": %q}\n", err.Error()))
	}
	return append(b, '\n')
}

func (g *gatherer) agentParts(ctx context.Context) {
	a := g.opts.Agent
	if a == nil {
		err := g.opts.AgentErr
		if err == nil {
			err = errors.New("no agent connection")
		}
		g.fail("agent", err)
		g.collectContainers(ctx, nil)
		return
	}
	if r, err := call(ctx, g, func(c context.Context) (*pb.GuestDetailsResponse, error) {
		return a.GetGuestDetails(c, &pb.GuestDetailsRequest{MemBlockSize: true, MemHotplugProbe: true})
	}); err != nil {
		g.fail(MemberGuestDetails, err)
	} else {
		g.add(MemberGuestDetails, protoJSON(r))
	}
	var metricsText string
	if r, err := call(ctx, g, func(c context.Context) (*pb.Metrics, error) { return a.GetMetrics(c, &pb.GetMetricsRequest{}) }); err != nil {
		g.fail(MemberMetrics, err)
	} else {
		metricsText = r.GetMetrics()
		g.add(MemberMetrics, []byte(metricsText))
	}
	if r, err := call(ctx, g, func(c context.Context) (*pb.Interfaces, error) {
		return a.ListInterfaces(c, &pb.ListInterfacesRequest{})
	}); err != nil {
		g.fail(MemberInterfaces, err)
	} else {
		g.add(MemberInterfaces, protoJSON(r))
	}
	if r, err := call(ctx, g, func(c context.Context) (*pb.Routes, error) { return a.ListRoutes(c, &pb.ListRoutesRequest{}) }); err != nil {
		g.fail(MemberRoutes, err)
	} else {
		g.add(MemberRoutes, protoJSON(r))
	}
	if r, err := call(ctx, g, func(c context.Context) (*pb.GetDiagnosticDataResponse, error) {
		return a.GetDiagnosticData(c, &pb.GetDiagnosticDataRequest{LogType: contract.DiagnosticAgentLog})
	}); err != nil {
		g.fail(MemberAgentLog, err)
	} else {
		g.add(MemberAgentLog, []byte(r.GetData()))
	}

	// Containers: the agent's own list, else the ids its metrics name
	// (an agent that does not know agent_containers).
	var states []json.RawMessage
	r, err := call(ctx, g, func(c context.Context) (*pb.GetDiagnosticDataResponse, error) {
		return a.GetDiagnosticData(c, &pb.GetDiagnosticDataRequest{LogType: contract.DiagnosticAgentContainers})
	})
	if err == nil {
		err = json.Unmarshal([]byte(r.GetData()), &states)
	}
	stateByID := map[string][]byte{}
	if err != nil {
		g.fail(MemberContainers, err)
		for _, id := range MetricsContainerIDs(metricsText) {
			stateByID[id] = nil
		}
	} else {
		g.add(MemberContainers, []byte(r.GetData()+"\n"))
		for _, s := range states {
			var st struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(s, &st) == nil && st.ID != "" {
				stateByID[st.ID] = s
			}
		}
	}
	g.collectContainers(ctx, stateByID)
}

// safeID is a container id usable as an archive directory name. Ids come
// from the agent; one that is not is recorded as an error, not used.
var safeID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$`)

func (g *gatherer) collectContainers(ctx context.Context, stateByID map[string][]byte) {
	if stateByID == nil {
		stateByID = map[string][]byte{}
	}
	for _, id := range g.opts.Containers {
		if _, ok := stateByID[id]; !ok {
			stateByID[id] = nil
		}
	}
	ids := make([]string, 0, len(stateByID))
	for id := range stateByID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if !safeID.MatchString(id) {
			g.fail(containerDir, fmt.Errorf("container id %q is not usable as a file name; skipped", truncate(id, 80)))
			continue
		}
		g.sum.Containers = append(g.sum.Containers, id)
		dir := path.Join(containerDir, id)
		if s := stateByID[id]; s != nil {
			g.add(path.Join(dir, "state.json"), append(indentJSON(s), '\n'))
		} else {
			g.fail(path.Join(dir, "state.json"), errors.New("the agent did not list this container"))
		}
		if g.opts.Agent == nil {
			g.fail(path.Join(dir, "stats.json"), errors.New("no agent connection"))
			continue
		}
		r, err := call(ctx, g, func(c context.Context) (*pb.StatsContainerResponse, error) {
			return g.opts.Agent.StatsContainer(c, &pb.StatsContainerRequest{ContainerId: id})
		})
		if err != nil {
			g.fail(path.Join(dir, "stats.json"), err)
			continue
		}
		g.add(path.Join(dir, "stats.json"), protoJSON(r))
	}
}

func indentJSON(b []byte) []byte {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return b
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return b
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// MetricsContainerIDs returns the container ids that the agent's
// Prometheus text names in container_id labels, sorted and unique.
func MetricsContainerIDs(text string) []string {
	seen := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		_, rest, ok := strings.Cut(line, `container_id="`)
		if !ok {
			continue
		}
		id, _, ok := strings.Cut(rest, `"`)
		if ok && id != "" {
			seen[id] = true
		}
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// hostLog adds the last MaxLogBytes of a host log.
func (g *gatherer) hostLog(l HostLog) {
	name := path.Join(hostDir, path.Base("/"+l.Name))
	data, err := readTail(l.Path, g.opts.MaxLogBytes)
	if err != nil {
		g.fail(name, err)
		return
	}
	g.add(name, data)
}

// readTail reads the last max bytes of a regular file. It opens without
// blocking (a FIFO there must not hang the gather) and refuses anything
// but a regular file.
func readTail(p string, max int64) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", p, fi.Mode().Type())
	}
	size := fi.Size()
	var prefix []byte
	if size > max {
		if _, err := f.Seek(size-max, io.SeekStart); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		prefix = fmt.Appendf(nil, "[gather: first %d bytes of %d left out]\n", size-max, size)
	}
	// The file may grow while it is read; take no more than was asked.
	data, err := io.ReadAll(io.LimitReader(f, max))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return append(prefix, data...), nil
}

// ToDir writes the archive into dir (created if missing) as
// <TopDir>.tar.gz and returns its path. The archive appears whole or not
// at all: it is written to a temporary file that is renamed at the end.
func ToDir(ctx context.Context, dir string, opts Options) (string, *Summary, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	t := opts.Now()
	opts.Now = func() time.Time { return t }
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("create %s: %w", dir, err)
	}
	final := filepath.Join(dir, TopDir(t)+".tar.gz")
	tmp, err := os.CreateTemp(dir, ".gather-*.tar.gz.tmp")
	if err != nil {
		return "", nil, fmt.Errorf("create archive in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	sum, err := Write(ctx, tmp, opts)
	if cerr := tmp.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write %s: %w", tmp.Name(), cerr)
	}
	if err != nil {
		return "", sum, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", sum, err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", sum, fmt.Errorf("rename archive to %s: %w", final, err)
	}
	return final, sum, nil
}
