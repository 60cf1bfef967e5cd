package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	gosync "sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	storebadger "github.com/doorstep-health/doorstep/store/badger"
	"github.com/vmihailenco/msgpack/v5"
)

// RawBadger measures Badger's own durable batched-write rate on the disk
// holding dir's parent (a temporary directory when dir is ""), with the
// store's options: writers goroutines each commit transactions of perTxn
// values of valueSize bytes for d. It returns values written per second,
// which compares directly with field ops per second.
func RawBadger(ctx context.Context, dir string, writers, perTxn, valueSize int, d time.Duration) (float64, error) {
	tmp, err := os.MkdirTemp(dir, "doorstep-raw-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	st, err := storebadger.Open(storebadger.Options{Dir: tmp, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	db := st.DB()
	val := bytes.Repeat([]byte{0xa5}, valueSize)
	var written atomic.Int64
	var wg gosync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	deadline := start.Add(d)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				err := db.Update(func(txn *badger.Txn) error {
					for k := range perTxn {
						if err := txn.Set(fmt.Appendf(nil, "raw/%03d/%012d/%03d", w, n, k), val); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
				written.Add(int64(perTxn))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	select {
	case err := <-errs:
		return 0, fmt.Errorf("raw badger: %w", err)
	default:
	}
	return float64(written.Load()) / el.Seconds(), nil
}

// typicalOpSize is the stored size of one load op (crdt.MarshalOp), the
// value size RawBadger writes.
func typicalOpSize() int {
	d := &device{idx: 1, team: "team-1", cfg: Config{Ops: len(fields)}, id: crdt.NewReplicaID(),
		clock: crdt.NewClock(time.Now, time.Minute), last: map[string]crdt.OpID{}}
	d.change()
	ch := d.change() // second round: ops carry a pred, as most edits do
	total := 0
	for i := range ch.Ops {
		b, err := crdt.MarshalOp(&ch.Ops[i])
		if err != nil {
			return 128
		}
		total += len(b)
	}
	return total / len(ch.Ops)
}

// jsonOp is a field op as a JSON API would carry it: IDs as strings, the
// value as plain JSON.
type jsonOp struct {
	ID         string   `json:"id"`
	Team       string   `json:"team"`
	Collection string   `json:"collection"`
	Record     string   `json:"record"`
	Field      string   `json:"field"`
	Kind       string   `json:"kind"`
	Value      any      `json:"value,omitempty"`
	Pred       []string `json:"pred,omitempty"`
}

func jsonID(id crdt.OpID) string {
	return fmt.Sprintf("%016x-%s", uint64(id.Time), hex.EncodeToString(id.Replica[:]))
}

// WireSizes encodes one typical push (a SyncRequest carrying one change of
// ops register writes with preds) as the sync route receives it and as the
// same data in JSON, each plain and gzipped, and returns bytes per op.
func WireSizes(ops int) (mp, mpGz, js, jsGz float64, err error) {
	d := &device{idx: 7, team: "team-0", cfg: Config{Ops: ops}, id: crdt.NewReplicaID(),
		clock: crdt.NewClock(time.Now, time.Minute), last: map[string]crdt.OpID{}}
	d.change()
	ch := d.change()
	req := api.SyncRequest{Protocol: api.ProtocolVersion, Replica: d.id, Clock: d.clock.Now(), Changes: []api.Change{ch}}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(&req); err != nil {
		return 0, 0, 0, 0, err
	}
	mpb := buf.Bytes()
	type jsonChange struct {
		Seq uint64   `json:"seq"`
		Ops []jsonOp `json:"ops"`
	}
	jc := jsonChange{Seq: ch.Seq}
	for _, op := range ch.Ops {
		var v any
		if err := msgpack.Unmarshal(op.Value, &v); err != nil {
			return 0, 0, 0, 0, err
		}
		jo := jsonOp{ID: jsonID(op.ID), Team: op.Team, Collection: op.Collection, Record: op.Record, Field: op.Field, Kind: "write", Value: v}
		for _, p := range op.Pred {
			jo.Pred = append(jo.Pred, jsonID(p))
		}
		jc.Ops = append(jc.Ops, jo)
	}
	jreq := map[string]any{"protocol": 1, "replica": d.id.String(), "clock": uint64(req.Clock), "changes": []jsonChange{jc}}
	jsb, err := json.Marshal(jreq)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	n := float64(ops)
	return float64(len(mpb)) / n, float64(gz(mpb)) / n, float64(len(jsb)) / n, float64(gz(jsb)) / n, nil
}

func gz(b []byte) int {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	w.Write(b)
	w.Close()
	return buf.Len()
}
