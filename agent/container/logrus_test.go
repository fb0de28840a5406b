package container

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestForwardLibraryLogs(t *testing.T) {
	var buf bytes.Buffer
	ForwardLibraryLogs(slog.New(slog.NewJSONHandler(&buf, nil)))
	logrus.WithField("pid", 42).Warn("cgroup busy")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q: %v", buf.String(), err)
	}
	if line["msg"] != "cgroup busy" || line["level"] != "WARN" || line["pid"] != float64(42) || line["source"] != "libcontainer" {
		t.Fatalf("forwarded entry %v", line)
	}
}
