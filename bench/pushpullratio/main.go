// Command pushpullratio prints issue 17's same-run comparison of Doorstep
// and PouchDB on the push-then-pull workload: for each phase (local
// write, push, pull) both rates and their ratio, next to the issue's
// target ratio. It reads benchmark output (files named as arguments, or
// stdin) holding the lines of BenchmarkSDKPushPull (e2e/) and of
// BenchmarkPouchDBPushPull (bench/pouchdb/pushpull.js); each metric is the
// mean over the lines of its benchmark. `make bench-pushpull` runs both and
// then this.
//
//	go run ./bench/pushpullratio out.txt
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// phases are the compared metrics, with issue 17's target for each:
// push and pull 10x PouchDB's rate, local writes 3x Doorstep's before the
// issue (about 27,000 rec/s on the idle machine, main 22fbe24).
var phases = []struct {
	name, unit, target string
}{
	{"local write", "write-rec/s", "27000/s"},
	{"push", "push-rec/s", "10x"},
	{"pull", "pull-rec/s", "10x"},
}

func main() {
	var in io.Reader = os.Stdin
	if len(os.Args) > 1 {
		var rs []io.Reader
		for _, name := range os.Args[1:] {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintln(os.Stderr, "pushpullratio:", err)
				os.Exit(1)
			}
			defer f.Close()
			rs = append(rs, f)
		}
		in = io.MultiReader(rs...)
	}
	runs, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushpullratio:", err)
		os.Exit(1)
	}
	if err := report(os.Stdout, runs); err != nil {
		fmt.Fprintln(os.Stderr, "pushpullratio:", err)
		os.Exit(1)
	}
}

// metrics are the means of one benchmark's metrics over its lines.
type metrics map[string]float64

// parse reads benchmark lines ("BenchmarkName[-P] N value unit value unit
// ...") and returns the mean of each metric per benchmark name (without
// the -P suffix). Other lines are ignored.
func parse(r io.Reader) (map[string]metrics, error) {
	sums := map[string]map[string][]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // "BenchmarkX ... FAIL" and the like
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		if sums[name] == nil {
			sums[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: metric %q: %w", name, f[i+1], err)
			}
			sums[name][f[i+1]] = append(sums[name][f[i+1]], v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	out := map[string]metrics{}
	for name, ms := range sums {
		out[name] = metrics{}
		for unit, vs := range ms {
			s := 0.0
			for _, v := range vs {
				s += v
			}
			out[name][unit] = s / float64(len(vs))
		}
	}
	return out, nil
}

// report writes the comparison table; it fails when Doorstep's results are
// missing, and says so when PouchDB's are.
func report(w io.Writer, runs map[string]metrics) error {
	ds, ok := runs["BenchmarkSDKPushPull"]
	if !ok {
		return fmt.Errorf("no BenchmarkSDKPushPull results")
	}
	pd, havePouch := runs["BenchmarkPouchDBPushPull"]
	fmt.Fprintln(w, "Issue 17, same run: Doorstep / PouchDB (records per second)")
	fmt.Fprintf(w, "%-12s %10s %10s %8s %8s\n", "phase", "Doorstep", "PouchDB", "ratio", "target")
	for _, p := range phases {
		d := ds[p.unit]
		if !havePouch {
			fmt.Fprintf(w, "%-12s %10.0f %10s %8s %8s\n", p.name, d, "-", "-", p.target)
			continue
		}
		q := pd[p.unit]
		ratio := "-"
		if q > 0 {
			ratio = fmt.Sprintf("%.2fx", d/q)
		}
		fmt.Fprintf(w, "%-12s %10.0f %10.0f %8s %8s\n", p.name, d, q, ratio, p.target)
	}
	if !havePouch {
		fmt.Fprintln(w, "(no PouchDB results in this run: see make bench-pushpull)")
	}
	return nil
}
