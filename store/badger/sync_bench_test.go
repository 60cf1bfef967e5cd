package badger

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	dgbadger "github.com/dgraph-io/badger/v4"
)

// BenchmarkCommitSync measures what one durable commit costs in CPU and
// wall time, by the memtable size (Badger maps a memtable's log at twice
// that) and the transaction's size, with the options Open uses, and
// with SyncWrites off and an explicit DB.Sync after the commit (which
// would let a caller choose per transaction; issue 17's fifth pass tried
// it on the device), and with no sync at all (what it costs to write the
// same bytes). Figures: docs/benchmarks.md, issue 17
// fifth pass. Run:
//
//	go test -run '^$' -bench BenchmarkCommitSync -benchtime 200x ./store/badger/
func BenchmarkCommitSync(b *testing.B) {
	for _, mt := range []int64{16 << 20, 32 << 20, 64 << 20} {
		for _, size := range []int{4 << 10, 64 << 10, 512 << 10} {
			for _, mode := range []string{"syncwrites", "db.Sync", "nosync"} {
				b.Run(fmt.Sprintf("memtable=%dMiB/txn=%dKiB/%s", mt>>20, size>>10, mode), func(b *testing.B) {
					benchCommit(b, mt, size, mode)
				})
			}
		}
	}
}

func benchCommit(b *testing.B, memTable int64, size int, mode string) {
	bo := BadgerOptions(Options{Dir: b.TempDir()}, quiet()).WithMemTableSize(memTable).WithSyncWrites(mode == "syncwrites")
	db, err := dgbadger.Open(bo)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	value := make([]byte, 1000)
	for i := range value {
		value[i] = byte(i*7 + 3)
	}
	n := max(size/len(value), 1)
	key := 0
	start, cpu := time.Now(), processCPU()
	for b.Loop() {
		err := db.Update(func(txn *dgbadger.Txn) error {
			for range n {
				key++
				if err := txn.Set(fmt.Appendf(nil, "k%012d", key), value); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if mode == "db.Sync" {
			if err := db.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
	commits := float64(b.N)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(processCPU()-cpu)/commits/1e6, "cpu-ms/commit")
	b.ReportMetric(float64(time.Since(start))/commits/1e6, "wall-ms/commit")
}

// processCPU returns the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
