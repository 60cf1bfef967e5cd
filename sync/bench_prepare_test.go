package sync

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
)

// benchRowsSchema is the default schema with BenchmarkPushRecords'
// collection (bench_rows, string fields f00 … f29), as the e2e
// BenchmarkSDKPushPull's server validates it.
func benchRowsSchema(tb testing.TB) *schema.Schema {
	tb.Helper()
	var f strings.Builder
	for i := range pushRecFields {
		if i > 0 {
			f.WriteString(",")
		}
		fmt.Fprintf(&f, `{"name": "f%02d", "type": "string", "max_length": 100}`, i)
	}
	ext := fmt.Sprintf(`{"version": %d, "name": "bench", "collections": [{"name": "bench_rows", "fields": [%s]}]}`,
		schema.Default().Version()+1, f.String())
	s, err := schema.Default().Extend([]byte(ext))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkPrepare is the stateless part of one push of BenchmarkPushRecords
// (8 changes × 100 new records × 30 fields, 24,000 ops), as a pushing
// request's goroutine runs it before the committer (preparePush: every
// op's precheck and schema check, the runs merged ahead, the log entries
// packed): with its ops validated as a packed push decodes them
// ("packed": precheck leaves crdt.Op.Validate out) and not ("plain").
func BenchmarkPrepare(b *testing.B) {
	e := openTest(b, Options{Validator: benchRowsSchema(b)})
	c := Caller{User: "u", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	var seq uint64
	clock := crdt.MakeTimestamp(time.Now().UnixMilli()-60_000, 0)
	chs := pushRecordsChanges(c.Replica, &seq, &clock, 1, nil)
	for _, shaped := range []bool{true, false} {
		name := "plain"
		if shaped {
			name = "packed"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := e.preparePush(c, chs, shaped)
				if len(r.ahead[0]) != pushRecPerCh || r.val[0][0] != nil {
					b.Fatalf("%d runs merged ahead, verdict %v", len(r.ahead[0]), r.val[0][0])
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/pushOpsPerPush, "ns/field-op")
		})
	}
}
