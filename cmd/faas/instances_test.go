package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCommandLine runs exec's command lines through a real shell: several
// arguments arrive as written, one is a command line of its own.
func TestCommandLine(t *testing.T) {
	for _, args := range [][]string{
		{"printf", `%s\n`, "plain", "two  spaces", "it's", `"dq"`, "$HOME", "a;b", "*", "", "tab\there", "ünï"},
		{"printf", `%s\n`, "x"},
	} {
		out, err := exec.Command("sh", "-c", commandLine(args)).Output()
		if err != nil {
			t.Fatalf("%q: %v", commandLine(args), err)
		}
		if want := strings.Join(args[2:], "\n") + "\n"; string(out) != want {
			t.Errorf("%q printed %q, want %q", commandLine(args), out, want)
		}
	}
	if got := commandLine([]string{"echo a | tr a b"}); got != "echo a | tr a b" {
		t.Errorf("one argument became %q", got)
	}
}
