package container

import "testing"

func TestParseOOMKills(t *testing.T) {
	for in, want := range map[string]uint64{
		"low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n": 2,
		"oom 1\n":                         0,
		"":                                0,
		"oom_kill 18446744073709551615\n": 1<<64 - 1,
		"oom_kill garbage\n":              0,
	} {
		if got := parseOOMKills([]byte(in)); got != want {
			t.Errorf("%q: %d, want %d", in, got, want)
		}
	}
}
