package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The output layer every command prints through: people get sizes and
// durations in human units (1.5 MiB, 230 ms); with --json, scripts get one
// JSON document per command with raw numbers (bytes, nanoseconds) in
// fields whose names say the unit.

// jsonOut is --json.
var jsonOut bool

// emit prints v as JSON with --json, else calls human (nil prints
// nothing: the command's success is its exit status).
func emit(v any, human func(w io.Writer) error) error {
	if jsonOut {
		return writeJSON(out, v)
	}
	if human == nil {
		return nil
	}
	return human(out)
}

// writeJSON writes v as one indented JSON document: protocol messages in
// protobuf's JSON mapping with the protocol's field names, anything else
// with encoding/json.
func writeJSON(w io.Writer, v any) error {
	var b []byte
	var err error
	if m, ok := v.(proto.Message); ok {
		b, err = protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	} else {
		b, err = json.MarshalIndent(v, "", "  ")
	}
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// humanBytes writes a size with binary prefixes: 512 B, 1.5 KiB, 128 MiB.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	v := float64(n)
	i := 0
	for v >= unit && i < 6 {
		v /= unit
		i++
	}
	return trimFloat(v) + " " + "KMGTPE"[i-1:i] + "iB"
}

// trimFloat prints v with one decimal, dropping a ".0" (and the decimal
// from 100 on, where it carries no information).
func trimFloat(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0")
}

// humanDuration writes a duration in the largest unit that keeps it
// readable: 850 ns, 12 µs, 230 ms, 1.5 s, 2 min 5 s, 3 h 2 min.
func humanDuration(d time.Duration) string {
	neg := ""
	if d < 0 {
		neg, d = "-", -d
	}
	switch {
	case d < time.Microsecond:
		return neg + strconv.FormatInt(int64(d), 10) + " ns"
	case d < time.Millisecond:
		return neg + trimFloat(float64(d)/float64(time.Microsecond)) + " µs"
	case d < time.Second:
		return neg + trimFloat(float64(d)/float64(time.Millisecond)) + " ms"
	case d < time.Minute:
		return neg + trimFloat(float64(d)/float64(time.Second)) + " s"
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%s%d min %d s", neg, d/time.Minute, (d%time.Minute)/time.Second)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%s%d h %d min", neg, d/time.Hour, (d%time.Hour)/time.Minute)
	}
}

// takeJSONFlag removes --json (or -json) from a command's arguments before
// a "--", so that "agentctl stats ID --json" means the same as "agentctl
// --json stats ID".
func takeJSONFlag(args []string) (rest []string, found bool) {
	rest = make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(rest, args[i:]...), found
		}
		if a == "--json" || a == "-json" || a == "--json=true" || a == "-json=true" {
			found = true
			continue
		}
		rest = append(rest, a)
	}
	return rest, found
}

// fileSize is a file's size, 0 if it cannot be read.
func fileSize(p string) uint64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return uint64(fi.Size())
}
