// Command hookrecorder is a guest OCI hook for the end-to-end suite: the
// guest has no shell to run a script hook with. Installed as
// <share>/hooks/<stage>/<name>, it reads the container's state from stdin
// and writes it, with whether the state's pid was a live process, to
// <share>/hooks-out/<stage>-<container id>.json, where the host reads it.
// It fails (exit 1) for a container annotated "fail-prestart".
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// record is what the host reads back.
type record struct {
	Args     []string        `json:"args"`
	State    json.RawMessage `json:"state"`
	PidAlive bool            `json:"pidAlive"`
	EnvLen   int             `json:"envLen"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hookrecorder:", err)
		os.Exit(1)
	}
}

func run() error {
	in, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	if err != nil {
		return err
	}
	var st struct {
		ID          string            `json:"id"`
		Pid         int               `json:"pid"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(in, &st); err != nil {
		return fmt.Errorf("state %q: %w", in, err)
	}
	stage := "unknown"
	if len(os.Args) > 1 {
		stage = os.Args[1]
	}
	if _, ok := st.Annotations["fail-prestart"]; ok && stage == "prestart" {
		return fmt.Errorf("refused container %s by policy", st.ID)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	// <share>/hooks/<stage>/<name> -> <share>/hooks-out
	out := filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(exe))), "hooks-out")
	r := record{Args: os.Args, State: in, EnvLen: len(os.Environ())}
	if st.Pid > 0 {
		_, err := os.Stat("/proc/" + strconv.Itoa(st.Pid))
		r.PidAlive = err == nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, stage+"-"+st.ID+".json"), b, 0o644)
}
