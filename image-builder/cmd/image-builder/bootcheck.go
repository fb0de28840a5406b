package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func cmdBootCheck(ctx context.Context, args []string, p *progress) error {
	fs := flag.NewFlagSet("boot-check", flag.ContinueOnError)
	kernelPath := fs.String("kernel", "build/guest/vmlinuz", "kernel image")
	initrdPath := fs.String("initrd", "build/guest/initrd.img", "initramfs")
	appendLine := fs.String("append", "console=ttyS0 panic=-1 fips=1", "kernel command line")
	qemu := fs.String("qemu", "qemu-system-x86_64", "QEMU binary")
	memory := fs.String("m", "512", "guest memory")
	timeout := fs.Duration("timeout", 3*time.Minute, "give up after this long")
	stopOnMatch := fs.Bool("stop-on-match", false, "stop QEMU once every --expect matched (for an init that keeps running, like the agent)")
	var expect stringList
	fs.Var(&expect, "expect", "regular expression the console must print (repeatable; default: the stand-in init's FIPS line)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(expect) == 0 {
		expect = stringList{`testinit: fips_enabled 1`}
	}
	var res []*regexp.Regexp
	for _, e := range expect {
		re, err := regexp.Compile(e)
		if err != nil {
			return fmt.Errorf("--expect %q: %w", e, err)
		}
		res = append(res, re)
	}
	return p.step("boot check under QEMU (TCG, q35)", func() (string, error) {
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, *qemu, "-accel", "tcg", "-M", "q35", "-m", *memory,
			"-nographic", "-no-reboot", "-kernel", *kernelPath, "-initrd", *initrdPath, "-append", *appendLine)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return "", err
		}
		cmd.Stderr = cmd.Stdout
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return "", fmt.Errorf("start %s: %w", *qemu, err)
		}
		seen := make([]bool, len(res))
		stopped := false
		sc := bufio.NewScanner(io.LimitReader(out, 16<<20))
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			fmt.Fprintf(p.w, "    | %s\n", line)
			all := true
			for i, re := range res {
				if re.MatchString(line) {
					seen[i] = true
				}
				all = all && seen[i]
			}
			if all && *stopOnMatch {
				stopped = true
				cancel() // kills QEMU; the pipe closes and the loop ends
			}
		}
		werr := cmd.Wait()
		elapsed := time.Since(start).Round(10 * time.Millisecond)
		if stopped {
			return fmt.Sprintf("guest printed every expected line after %s; QEMU stopped", elapsed), nil
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "", fmt.Errorf("guest did not power off within %s", *timeout)
		}
		var missing []string
		for i, ok := range seen {
			if !ok {
				missing = append(missing, expect[i])
			}
		}
		if len(missing) > 0 {
			return "", fmt.Errorf("console never printed %q (qemu: %v)", missing, werr)
		}
		if werr != nil {
			return "", fmt.Errorf("qemu: %w", werr)
		}
		return fmt.Sprintf("guest printed every expected line and powered off; QEMU ran %s", elapsed), nil
	})
}
