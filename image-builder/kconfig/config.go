// Package kconfig merges kernel config fragments, reads .config files and
// Kconfig dependency declarations, and verifies that a final .config holds
// every option that was requested.
package kconfig

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// ErrSyntax marks malformed fragment, .config, allowlist or requirements text.
var ErrSyntax = errors.New("kconfig syntax")

// Config maps option names (with the CONFIG_ prefix) to their values as
// written in a .config: "y", "m", a number or a quoted string. Options that
// are "is not set" map to "n"; absent options are also "n" (see Value).
type Config map[string]string

// Value returns the option's value, "n" when it is unset or absent.
func (c Config) Value(name string) string {
	if v, ok := c[name]; ok {
		return v
	}
	return "n"
}

var (
	optionName   = regexp.MustCompile(`^CONFIG_[A-Za-z0-9_]+$`)
	notSet       = regexp.MustCompile(`^# (CONFIG_[A-Za-z0-9_]+) is not set$`)
	notSetPrefix = regexp.MustCompile(`^# CONFIG_[A-Za-z0-9_]+ is not set\b`)
)

// ValidName reports whether s is a whole option name such as CONFIG_FOO.
func ValidName(s string) bool { return optionName.MatchString(s) }

// ParseConfig reads .config text.
func ParseConfig(r io.Reader) (Config, error) {
	cfg := Config{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		name, value, ok, err := parseAssignment(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if ok {
			cfg[name] = value
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return cfg, nil
}

// parseAssignment parses one line. ok is false for blank lines and comments
// other than "# CONFIG_X is not set".
func parseAssignment(text string) (name, value string, ok bool, err error) {
	s := strings.TrimSpace(text)
	if s == "" {
		return "", "", false, nil
	}
	if m := notSet.FindStringSubmatch(s); m != nil {
		return m[1], "n", true, nil
	}
	if strings.HasPrefix(s, "#") {
		return "", "", false, nil
	}
	name, value, found := strings.Cut(s, "=")
	if !found || !ValidName(name) || value == "" {
		return "", "", false, fmt.Errorf("%w: %q is not CONFIG_NAME=value", ErrSyntax, s)
	}
	return name, value, true, nil
}

// Request is one option asked for by a fragment.
type Request struct {
	Name   string // CONFIG_FOO
	Value  string // "y", "n", a number or a quoted string
	File   string // fragment the request came from
	Line   int
	Reason string // the comment line directly above, without "# "
}

// ParseFragment reads a config fragment. Each option may be preceded by a
// one-line "# reason" comment, recorded in Request.Reason.
func ParseFragment(file string, r io.Reader) ([]Request, error) {
	var reqs []Request
	sc := bufio.NewScanner(r)
	line := 0
	lastComment := ""
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		name, value, ok, err := parseAssignment(text)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, line, err)
		}
		if !ok {
			if strings.HasPrefix(text, "#") {
				lastComment = strings.TrimSpace(strings.TrimPrefix(text, "#"))
			} else {
				lastComment = ""
			}
			continue
		}
		reqs = append(reqs, Request{Name: name, Value: value, File: file, Line: line, Reason: lastComment})
		lastComment = ""
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read fragment %s: %w", file, err)
	}
	return reqs, nil
}

// ErrConflict is returned when two fragments ask for different values of one option.
var ErrConflict = errors.New("conflicting requests")

// Merge combines requests from several fragments in order. Asking twice for
// the same value is allowed; asking for different values is an error, since
// a silent last-one-wins would hide a mistake in one of the fragments.
func Merge(reqs []Request) ([]Request, error) {
	seen := map[string]Request{}
	var out []Request
	for _, r := range reqs {
		if prev, ok := seen[r.Name]; ok {
			if prev.Value != r.Value {
				return nil, fmt.Errorf("%w: %s=%s at %s:%d and %s=%s at %s:%d", ErrConflict,
					r.Name, prev.Value, prev.File, prev.Line, r.Name, r.Value, r.File, r.Line)
			}
			continue
		}
		seen[r.Name] = r
		out = append(out, r)
	}
	return out, nil
}

// Render writes merged requests as a fragment usable as KCONFIG_ALLCONFIG.
func Render(reqs []Request) string {
	var b strings.Builder
	for _, r := range reqs {
		if r.Value == "n" {
			fmt.Fprintf(&b, "# %s is not set\n", r.Name)
		} else {
			fmt.Fprintf(&b, "%s=%s\n", r.Name, r.Value)
		}
	}
	return b.String()
}

// Allowlist names options whose mismatch is reported but does not fail
// verification. Names match whole option names exactly.
type Allowlist map[string]bool

// ParseAllowlist reads one option name per line; '#' starts a comment.
// Blank lines allow nothing. Anything that is not a whole option name is an
// error, so that a typo cannot turn into a pattern that allows more.
func ParseAllowlist(r io.Reader) (Allowlist, error) {
	a := Allowlist{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = s[:i]
		}
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !ValidName(s) {
			return nil, fmt.Errorf("allowlist line %d: %w: %q is not a whole option name like CONFIG_FOO", line, ErrSyntax, s)
		}
		a[s] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read allowlist: %w", err)
	}
	return a, nil
}

// Mismatch is a requested option whose final value differs from the request.
type Mismatch struct {
	Request
	Got       string   // value in the final .config ("n" when unset)
	DependsOn []string // unmet-dependency explanation, one line per definition
	Allowed   bool     // listed in the allowlist
}

func (m Mismatch) String() string {
	s := fmt.Sprintf("%s: requested %s (%s:%d), got %s", m.Name, m.Value, m.File, m.Line, m.Got)
	for _, d := range m.DependsOn {
		s += "\n    " + d
	}
	return s
}

// VerifyError lists the mismatches that are not allowlisted.
type VerifyError struct {
	Mismatches []Mismatch
}

func (e *VerifyError) Error() string {
	lines := make([]string, 0, len(e.Mismatches)+1)
	lines = append(lines, fmt.Sprintf("%d requested kernel option(s) missing or changed in the final .config:", len(e.Mismatches)))
	for _, m := range e.Mismatches {
		lines = append(lines, "  "+m.String())
	}
	return strings.Join(lines, "\n")
}

// Verify checks every request against the final config. It returns all
// mismatches (allowlisted ones marked) and a *VerifyError when any mismatch
// is not allowlisted. deps may be nil.
func Verify(reqs []Request, final Config, allow Allowlist, deps *Deps) ([]Mismatch, error) {
	var all, failing []Mismatch
	for _, r := range reqs {
		got := final.Value(r.Name)
		if got == r.Value {
			continue
		}
		m := Mismatch{Request: r, Got: got, Allowed: allow[r.Name]}
		if deps != nil {
			m.DependsOn = deps.Explain(strings.TrimPrefix(r.Name, "CONFIG_"), final)
		}
		all = append(all, m)
		if !m.Allowed {
			failing = append(failing, m)
		}
	}
	if len(failing) > 0 {
		return all, &VerifyError{Mismatches: failing}
	}
	return all, nil
}

// Requirement is one option a consumer (the agent) needs.
type Requirement struct {
	Name   string
	Value  string
	Reason string
	Line   int
}

// ParseRequirements reads lines of the form "CONFIG_FOO=y  # reason" or
// "# CONFIG_FOO is not set  # reason". Every requirement must carry a reason.
func ParseRequirements(r io.Reader) ([]Requirement, error) {
	var out []Requirement
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		var assign, reason string
		switch {
		case notSetPrefix.MatchString(s):
			// "# CONFIG_FOO is not set  # reason"
			m := notSetPrefix.FindString(s)
			assign, reason = m, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s[len(m):]), "#"))
		case s == "" || strings.HasPrefix(s, "#"):
			continue
		default:
			assign, reason, _ = strings.Cut(s, "#")
			reason = strings.TrimSpace(reason)
		}
		name, value, ok, err := parseAssignment(strings.TrimSpace(assign))
		if err != nil || !ok {
			return nil, fmt.Errorf("requirements line %d: %w: want CONFIG_NAME=value  # reason", line, ErrSyntax)
		}
		if reason == "" {
			return nil, fmt.Errorf("requirements line %d: %w: %s has no reason", line, ErrSyntax, name)
		}
		out = append(out, Requirement{Name: name, Value: value, Reason: reason, Line: line})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read requirements: %w", err)
	}
	return out, nil
}

// ErrRequirement is returned when a required option is not met.
var ErrRequirement = errors.New("kernel requirement not met")

// CheckRequirements returns an error naming every requirement the config does not meet.
func CheckRequirements(reqs []Requirement, cfg Config) error {
	var bad []string
	for _, r := range reqs {
		if got := cfg.Value(r.Name); got != r.Value {
			bad = append(bad, fmt.Sprintf("%s: need %s (%s), got %s", r.Name, r.Value, r.Reason, got))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("%w:\n  %s", ErrRequirement, strings.Join(bad, "\n  "))
	}
	return nil
}
