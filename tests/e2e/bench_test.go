//go:build e2e

package e2e

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/sandbox-guest/sandbox-guest/protocols/agentpb"
	"github.com/sandbox-guest/sandbox-guest/tests/e2e/fixture"
)

// BenchmarkGuestContainerLifecycle measures, in the booted guest, one
// container create + start + wait + remove driven as the Kata runtime
// drives it, and reports the agent's memory once the loop is over and the
// agent is idle: the budgets of the design (anonymous RSS and VmRSS after
// 50 lifecycles) are read from these numbers with -benchtime 50x.
func BenchmarkGuestContainerLifecycle(b *testing.B) {
	s := bootSuite(b)
	ctx := s.rpcCtx(b)
	if _, err := s.cli.Agent.CreateSandbox(ctx, &pb.CreateSandboxRequest{
		Hostname: sandboxID, SandboxId: sandboxID, Storages: fixture.SandboxStorages(),
	}); err != nil {
		b.Fatal(err)
	}
	// One rootfs for every container: its writing is not what we measure.
	const cid = "bench"
	if err := fixture.BusyboxRootfs(fixture.HostRootfs(s.share, cid), s.bb); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, err := s.cli.Agent.CreateContainer(ctx, &pb.CreateContainerRequest{
			ContainerId: cid, ExecId: cid, OCI: fixture.Spec(sandboxID, cid, []string{"true"}),
		})
		check(b, "CreateContainer", err)
		_, err = s.cli.Agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: cid})
		check(b, "StartContainer", err)
		if st := s.wait(b, cid, cid); st != 0 {
			b.Fatalf("container exited %d", st)
		}
		s.remove(b, cid)
	}
	b.StopTimer()

	// Let the agent settle (it returns freed memory shortly after the
	// last container goes), then read its own numbers.
	time.Sleep(2 * time.Second)
	m, err := s.cli.Agent.GetMetrics(ctx, &pb.GetMetricsRequest{})
	check(b, "GetMetrics", err)
	anon, rss := metricValue(b, m.Metrics, "kata_agent_anon_rss_bytes"), metricValue(b, m.Metrics, "kata_agent_rss_bytes")
	b.ReportMetric(anon/(1<<20), "agent-RssAnon-MiB")
	b.ReportMetric(rss/(1<<20), "agent-VmRSS-MiB")
}

// metricValue finds an unlabelled sample in a Prometheus text exposition.
func metricValue(tb testing.TB, text, name string) float64 {
	tb.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				tb.Fatalf("metric %s: %v", name, err)
			}
			return v
		}
	}
	tb.Fatalf("metric %s not in the agent's metrics", name)
	return 0
}
