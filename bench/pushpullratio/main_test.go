package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
BenchmarkSDKPushPull-2   	       1	7779331505 ns/op	         0.5940 pull-cpu-s	     11000 pull-rec/s	        20.00 pull-rounds	      2000 push-rec/s	      6000 write-rec/s
BenchmarkSDKPushPull-2   	       1	7779331505 ns/op	         0.5940 pull-cpu-s	     13000 pull-rec/s	        20.00 pull-rounds	      4000 push-rec/s	      6000 write-rec/s
PASS
PouchDB push-then-pull: 10000 records x 30 fields of 20 B, batches of 100, LevelDB sync writes
BenchmarkPouchDBPushPull	1	9000 write-rec/s	1500 push-rec/s	2000 pull-rec/s	1.11 write-s	6.67 push-s	5.00 pull-s
`

func TestReport(t *testing.T) {
	runs, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if got := runs["BenchmarkSDKPushPull"]["pull-rec/s"]; got != 12000 {
		t.Fatalf("mean pull %v, want 12000", got)
	}
	var out strings.Builder
	if err := report(&out, runs); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(strings.Fields(out.String()), " ")
	for _, want := range []string{"push 3000 1500 2.00x 10x", "pull 12000 2000 6.00x 10x", "local write 6000 9000 0.67x 27000/s"} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	// Without PouchDB: Doorstep's figures and a note; without Doorstep: an error.
	runs, _ = parse(strings.NewReader(strings.Split(sample, "PASS")[0]))
	out.Reset()
	if err := report(&out, runs); err != nil || !strings.Contains(out.String(), "no PouchDB results") {
		t.Errorf("without PouchDB: %v\n%s", err, out.String())
	}
	runs, _ = parse(strings.NewReader("BenchmarkPouchDBPushPull\t1\t9000 write-rec/s\n"))
	if err := report(&out, runs); err == nil {
		t.Error("without Doorstep: no error")
	}
}
