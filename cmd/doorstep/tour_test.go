package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestReadmeTour runs README.md's five-minute tour as a reader would: a
// demo server (`make run` is serve --demo), then every command of the tour
// in one bash session (curl, sed, awk, grep and the doorstep-tablet CLI,
// built here), and checks each output the README shows. The README's
// outputs are excerpts: every line shown must appear in what the command
// printed, with "..." standing for anything, and device IDs and times
// (which differ from run to run) matched loosely. Record IDs, names and
// counts are compared exactly: the demo is the same every day.
func TestReadmeTour(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the tour needs curl (it is in the machine image; .ci/run relies on it)")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	steps := tourSteps(t, string(readme))
	if len(steps) < 15 {
		t.Fatalf("found only %d tour commands in README.md", len(steps))
	}

	// The tablet CLI, built as the tests are (race or not) so the build
	// cache serves it.
	dir := t.TempDir()
	tablet := filepath.Join(dir, "doorstep-tablet")
	args := []string{"build", "-o", tablet}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/doorstep-tablet")...)
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build doorstep-tablet: %v\n%s", err, out)
	}

	// make run: serve --demo on a free loopback port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	data := filepath.Join(dir, "demo")
	var stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--demo", "--data", data, "--addr", addr, "--log-format", "text"},
			env(map[string]string{"DOORSTEP_BCRYPT_COST": "4"}), nil, os.Stdout, &stderr)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	for i := 0; i < 3000 && !strings.Contains(stderr.String(), "Stop with Ctrl-C"); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	url := "http://" + addr
	subst := strings.NewReplacer("http://127.0.0.1:8080", url, "./data/demo", data, "go run ./cmd/doorstep-tablet", tablet)

	// One bash session, so variables (U, TOKEN, T, P) carry over.
	var script strings.Builder
	script.WriteString("set -o pipefail\n")
	for i, s := range steps {
		if s.cmd == "make run" {
			continue
		}
		fmt.Fprintf(&script, "echo '@@@ %d'\n%s || echo '@@@ exit status '$?\necho\n", i, subst.Replace(s.cmd))
	}
	sh := exec.Command("bash", "-c", script.String())
	sh.Dir = dir
	sh.Env = append(os.Environ(), "HOME="+dir)
	out, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("tour script: %v\n%s", err, out)
	}
	outputs := map[int]string{}
	for _, part := range strings.Split(string(out), "@@@ ")[1:] {
		n, rest, _ := strings.Cut(part, "\n")
		var i int
		if _, err := fmt.Sscan(n, &i); err != nil {
			t.Fatalf("tour output marker %q: %v", n, err)
		}
		outputs[i] = rest
		if strings.Contains(rest, "@@@ exit status") {
			t.Errorf("tour command failed: %s\n%s", steps[i].cmd, rest)
		}
	}
	for i, s := range steps {
		got := outputs[i]
		if s.cmd == "make run" {
			got = stderr.String()
		}
		for _, want := range s.want {
			if !excerptIn(subst.Replace(want), got) {
				t.Errorf("README tour: `%s` printed\n%s\nwhich lacks the line\n  %s", s.cmd, got, want)
			}
		}
	}
}

type tourStep struct {
	cmd  string
	want []string // output lines shown in the README
}

// tourSteps reads the commands and shown outputs of README.md's tour:
// every line of a ```sh block is a command (joined across trailing
// backslashes); in a ```text block, "$ " lines are commands and the lines
// after them their output.
func tourSteps(t *testing.T, readme string) []tourStep {
	start := strings.Index(readme, "## A five-minute tour")
	if start < 0 {
		t.Fatal("README.md has no five-minute tour")
	}
	body := readme[start+3:]
	if end := strings.Index(body, "\n## "); end >= 0 {
		body = body[:end]
	}
	var steps []tourStep
	lines := strings.Split(body, "\n")
	for i := 0; i < len(lines); i++ {
		kind, ok := strings.CutPrefix(lines[i], "```")
		if !ok || kind == "" {
			continue
		}
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			l := lines[i]
			switch kind {
			case "sh":
				for strings.HasSuffix(l, `\`) && i+1 < len(lines) {
					i++
					l = strings.TrimSuffix(l, `\`) + " " + strings.TrimSpace(lines[i])
				}
				if strings.TrimSpace(l) != "" {
					steps = append(steps, tourStep{cmd: l})
				}
			case "text":
				if cmd, ok := strings.CutPrefix(l, "$ "); ok {
					steps = append(steps, tourStep{cmd: cmd})
				} else if len(steps) > 0 {
					steps[len(steps)-1].want = append(steps[len(steps)-1].want, l)
				}
			}
		}
	}
	return steps
}

var (
	deviceRE = regexp.MustCompile(`device [0-9a-f]{8,32}`)
	timeRE   = regexp.MustCompile(`\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z?`)
	spaceRE  = regexp.MustCompile(`\s+`)
)

func normalizeTour(s string) string {
	s = deviceRE.ReplaceAllString(s, "device #")
	s = timeRE.ReplaceAllString(s, "#time")
	return strings.TrimSpace(spaceRE.ReplaceAllString(s, " "))
}

// excerptIn reports whether the README line want appears in got: in one
// line of got, its "..."-separated pieces in order.
func excerptIn(want, got string) bool {
	want = normalizeTour(want)
	if want == "" || want == "..." {
		return true
	}
	pieces := strings.Split(want, "...")
	for _, line := range strings.Split(got, "\n") {
		line = normalizeTour(line)
		rest, ok := line, true
		for _, p := range pieces {
			p = strings.TrimSpace(p)
			j := strings.Index(rest, p)
			if j < 0 {
				ok = false
				break
			}
			rest = rest[j+len(p):]
		}
		if ok {
			return true
		}
	}
	return false
}
