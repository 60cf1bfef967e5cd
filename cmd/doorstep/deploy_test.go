package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// TestDockerfile builds the image when a container engine answers, and
// otherwise parses the Dockerfile with BuildKit's own parser and checks
// what docs/OPERATIONS.md promises: multi-stage, the final stage on a
// small base, running as a non-root user, the binary copied from the build
// stage, listening on all interfaces inside the container, and the build
// stage's go build command compiling here.
func TestDockerfile(t *testing.T) {
	ctx := context.Background()
	if exec.Command("docker", "info").Run() == nil {
		t.Log("docker answers: building the image")
		ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "docker", "build", "-q", "-t", "doorstep-test", "../..").CombinedOutput()
		if err != nil {
			t.Fatalf("docker build: %v\n%s", err, out)
		}
		return
	}
	t.Log("no container engine: parsing the Dockerfile")
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("Dockerfile does not parse: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile warning: %s", w.Short)
	}
	type stage struct {
		from, name, user string
		lines            []string // instruction + args, lower-cased instruction
	}
	var stages []*stage
	for _, n := range res.AST.Children {
		var args []string
		for a := n.Next; a != nil; a = a.Next {
			args = append(args, a.Value)
		}
		instr := strings.ToLower(n.Value)
		if instr == "from" {
			st := &stage{from: args[0]}
			if len(args) == 3 && strings.EqualFold(args[1], "as") {
				st.name = args[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("%s before FROM", instr)
		}
		st := stages[len(stages)-1]
		if instr == "user" {
			st.user = args[0]
		}
		flags := strings.Join(n.Flags, " ")
		st.lines = append(st.lines, strings.Join(strings.Fields(instr+" "+flags+" "+strings.Join(args, " ")), " "))
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if !strings.HasPrefix(build.from, "golang:") || build.name == "" {
		t.Errorf("build stage FROM %q AS %q", build.from, build.name)
	}
	if !strings.HasPrefix(final.from, "gcr.io/distroless/") && !strings.Contains(final.from, "-slim") {
		t.Errorf("final stage on %q, want distroless or a -slim base", final.from)
	}
	if u := strings.SplitN(final.user, ":", 2)[0]; u == "" || u == "root" || u == "0" {
		t.Errorf("final stage runs as %q, want a non-root user", final.user)
	}
	has := func(st *stage, instr, part string) bool {
		return slices.ContainsFunc(st.lines, func(l string) bool { return strings.HasPrefix(l, instr+" ") && strings.Contains(l, part) })
	}
	for _, want := range [][2]string{{"copy", "--from=" + build.name + " "}, {"entrypoint", "doorstep"}, {"env", "DOORSTEP_DATA /data"},
		{"env", "DOORSTEP_ADDR 0.0.0.0:8080"}, {"expose", "8080"}} {
		if !has(final, want[0], want[1]) {
			t.Errorf("final stage lacks %q:\n%s", want, strings.Join(final.lines, "\n"))
		}
	}
	// The build stage's go build is a static (CGO_ENABLED=0) build of the
	// server: check that its package set needs no cgo, by listing it as
	// that build would (building it here with other flags than the tests'
	// would recompile every dependency: minutes on a small machine).
	var goBuild string
	for _, l := range build.lines {
		if i := strings.Index(l, "go build"); strings.HasPrefix(l, "run ") && i >= 0 {
			goBuild = l[i:]
		}
	}
	words := splitWords(strings.SplitN(goBuild, "&&", 2)[0])
	if len(words) < 3 || !strings.Contains(strings.Join(build.lines, " "), "CGO_ENABLED=0 go build") {
		t.Fatalf("build stage has no static go build: %q", goBuild)
	}
	pkg := words[len(words)-1]
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-f", "{{.ImportPath}} {{len .CgoFiles}}", pkg)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("CGO_ENABLED=0 go list %s: %v\n%s", pkg, err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if p, n, _ := strings.Cut(line, " "); n != "0" {
			t.Errorf("%s needs cgo, which the static build leaves out", p)
		}
	}
	if !strings.Contains(string(out), "github.com/doorstep-health/doorstep/cmd/doorstep 0") {
		t.Fatalf("%s is not the server binary:\n%.300s", pkg, out)
	}
}

// splitWords splits a command line into words as sh would for plain words
// and double-quoted strings (all the Dockerfile's go build uses).
func splitWords(s string) []string {
	var words []string
	var w strings.Builder
	in, quoted := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, in = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if in {
				words = append(words, w.String())
				w.Reset()
			}
			in = false
		default:
			w.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, w.String())
	}
	return words
}

// TestSystemdUnit checks deploy/doorstep.service: systemd-analyze verify
// finds nothing to say about it (when systemd-analyze is installed), and
// it runs `doorstep serve` unprivileged with a state directory, stops with
// SIGTERM, and is hardened.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../../deploy/doorstep.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	keys := map[string][]string{}
	section := ""
	for _, line := range strings.Split(unit, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Errorf("not key=value in [%s]: %q", section, line)
			}
			keys[section+"."+k] = append(keys[section+"."+k], v)
		}
	}
	for k, want := range map[string]string{
		"Service.ExecStart": "/usr/local/bin/doorstep serve", "Service.DynamicUser": "yes", "Service.StateDirectory": "doorstep",
		"Service.KillSignal": "SIGTERM", "Service.NoNewPrivileges": "yes", "Service.ProtectSystem": "strict",
		"Install.WantedBy": "multi-user.target",
	} {
		if got := keys[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if !slices.Contains(keys["Service.Environment"], "DOORSTEP_DATA=/var/lib/doorstep") {
		t.Errorf("DOORSTEP_DATA is not the state directory: %q", keys["Service.Environment"])
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze not installed: structural checks only")
		return
	}
	dir := t.TempDir()
	// verify wants ExecStart's binary to exist.
	if err := os.WriteFile(filepath.Join(dir, "doorstep.service"), []byte(strings.ReplaceAll(unit, "/usr/local/bin/doorstep", "/bin/true")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", filepath.Join(dir, "doorstep.service")).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
