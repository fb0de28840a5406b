package kernel

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// BuildRecord is one finished kernel build, kept in the cache so that the
// next build can show an estimate.
type BuildRecord struct {
	Version    string    `json:"version"`
	ConfigHash string    `json:"config_hash"`
	Jobs       int       `json:"jobs"`
	Objects    int       `json:"objects"` // objects compiled (kbuild CC/AS lines)
	Seconds    float64   `json:"seconds"`
	Fresh      bool      `json:"fresh"` // the object directory held no earlier build
	Finished   time.Time `json:"finished"`
}

// HistoryFile is the build history inside the cache, one JSON record per
// line, newest last.
const HistoryFile = "builds.jsonl"

// maxHistory bounds the file: only recent builds matter for an estimate.
const maxHistory = 50

// ReadHistory reads the build history; a missing file is an empty
// history, and lines that do not parse (a torn write, an older format)
// are skipped rather than failing a build over its progress display.
func ReadHistory(path string) ([]BuildRecord, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read build history: %w", err)
	}
	var out []BuildRecord
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var r BuildRecord
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Objects >= 0 && r.Seconds >= 0 {
			out = append(out, r)
		}
	}
	return out, nil
}

// AppendHistory adds a record, keeping the newest maxHistory.
func AppendHistory(path string, r BuildRecord) error {
	recs, err := ReadHistory(path)
	if err != nil {
		return err
	}
	recs = append(recs, r)
	if len(recs) > maxHistory {
		recs = recs[len(recs)-maxHistory:]
	}
	var buf bytes.Buffer
	for _, r := range recs {
		line, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode build record: %w", err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write build history: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write build history: %w", err)
	}
	return nil
}

// EstimateFor picks the newest build of the same kernel version and the
// same kind (fresh or incremental): a fresh build compiles everything, an
// incremental one only what a config change touched, so the two say
// nothing about each other.
func EstimateFor(recs []BuildRecord, version string, fresh bool) Estimate {
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.Version == version && r.Fresh == fresh && r.Objects > 0 {
			return Estimate{Objects: r.Objects, Duration: time.Duration(r.Seconds * float64(time.Second))}
		}
	}
	return Estimate{}
}
