package metrics

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestOutputParsesAsPrometheusText checks the hand-written exposition with
// the Prometheus project's own text parser (a test-only dependency; the
// agent does not link it).
func TestOutputParsesAsPrometheusText(t *testing.T) {
	proc := fakeProc(t)
	cg := t.TempDir()
	writeFile(t, cg, "k/memory.current", "1\n")
	writeFile(t, cg, "k/memory.max", "max\n")
	writeFile(t, cg, "k/cpu.stat", "usage_usec 10\n")
	sources := map[string]*Collector{
		"fake": New(Options{ProcRoot: proc, CgroupRoot: cg, Containers: fakeContainers{`odd"id\`: "/k"}}),
	}
	if _, err := os.Stat("/proc/self/status"); err == nil {
		sources["real"] = New(Options{})
	}
	for name, c := range sources {
		text, err := c.Gather()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(text))
		if err != nil {
			t.Fatalf("%s: Prometheus parser rejects the output: %v\n%s", name, err, text)
		}
		for _, want := range []string{"kata_agent_goroutines", "kata_guest_meminfo", "kata_guest_cpu_seconds_total", "kata_guest_load"} {
			if fams[want] == nil {
				t.Errorf("%s: family %s missing", name, want)
			}
		}
		if name == "fake" {
			f := fams["kata_container_memory_limit_bytes"]
			if f == nil || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetLabel()[0].GetValue() != `odd"id\` {
				t.Errorf("container family with an escaped id did not round-trip: %v", f)
			}
		}
	}
}
