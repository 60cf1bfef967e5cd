package api_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/vmihailenco/msgpack/v5"
)

// reflectDecode is how a sync reply was decoded before DecodeSyncResponse:
// msgpack reflection over the whole body, trailing bytes and panics
// refused.
func reflectDecode(b []byte) (resp *api.SyncResponse, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	rd := bytes.NewReader(b)
	resp = new(api.SyncResponse)
	if err := msgpack.NewDecoder(rd).Decode(resp); err != nil {
		return nil, err
	}
	if rd.Len() != 0 {
		return nil, fmt.Errorf("%d trailing bytes", rd.Len())
	}
	return resp, nil
}

func compact(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := encodeCompact(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// responseSample is a reply with every field set, its record states real
// canonical states.
func responseSample(rng *rand.Rand, states int) *api.SyncResponse {
	rep := crdt.ReplicaID{1, 15: 0xee}
	t := crdt.MakeTimestamp(1795253400000, 0)
	snap := make([]crdt.RecordBytes, states)
	for i := range snap {
		rec := crdt.NewRecord("wigan", "people", fmt.Sprintf("%032x", rng.Uint64()))
		for f := range 1 + rng.IntN(30) {
			t++
			op := rec.Write(crdt.OpID{Time: t, Replica: rep}, fmt.Sprintf("f%02d", f), crdt.MustValue(fmt.Sprintf("value %d", rng.IntN(1000))))
			if err := rec.Apply(&op); err != nil {
				panic(err)
			}
		}
		b, err := crdt.MarshalRecord(rec)
		if err != nil {
			panic(err)
		}
		snap[i] = b
	}
	return &api.SyncResponse{
		Protocol: api.ProtocolVersion, Clock: t,
		Results:  []api.ChangeResult{{Seq: 1, Status: api.ChangeApplied, Ops: []api.OpResult{{Index: 2, Code: api.CodeInvalidOp, Detail: "no", Quarantined: true}}}, {Seq: 2, Status: api.ChangeRefused, Code: api.CodeSeqGap, Expected: 1}},
		Snapshot: snap,
		Changes:  packedSample(rng, 3, 4),
		Purged:   []api.RecordRef{{Team: "wigan", Collection: "people", ID: "p1"}},
		Cursor:   []byte("cursor"), More: true,
		Scope:   &api.Scope{Teams: []string{"ashton", "wigan"}},
		Replace: snap[:min(2, len(snap))],
		Epoch:   bytes.Repeat([]byte{7}, 16), Restated: 3, HighWater: 99,
		Packed: []byte{1, 2, 3}, ReadsPacked: true, Pipelines: true, Wipe: true,
	}
}

// TestResponseSampleSetsEveryField: the sample above sets every field of
// api.SyncResponse, so that a field added later, and forgotten by
// DecodeSyncResponse's key switch, fails TestDecodeSyncResponseSameAsReflection.
func TestResponseSampleSetsEveryField(t *testing.T) {
	v := reflect.ValueOf(responseSample(rand.New(rand.NewPCG(1, 1)), 2)).Elem()
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("responseSample leaves api.SyncResponse.%s unset: set it", v.Type().Field(i).Name)
		}
	}
}

// TestDecodeSyncResponseSameAsReflection: DecodeSyncResponse gives what
// msgpack reflection gives, field for field, on full replies, empty and
// nil fields, unknown keys, and keys in another order.
func TestDecodeSyncResponseSameAsReflection(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 3))
	full := responseSample(rng, 20)
	bodies := map[string][]byte{
		"full":           compact(t, full),
		"empty":          compact(t, &api.SyncResponse{}),
		"wipe":           compact(t, &api.SyncResponse{Protocol: 1, Wipe: true}),
		"nil":            {0xc0},
		"empty snapshot": compact(t, map[string]any{"v": 1, "b": []any{}, "1a": nil, "k": []byte{}}),
		"nil state":      compact(t, map[string]any{"b": []any{nil, []byte("x")}}),
		"unknown keys":   compact(t, map[string]any{"zz": map[string]any{"a": []int{1, 2}}, "v": 1, "9q": "later field", "b": []crdt.RecordBytes{full.Snapshot[0]}}),
		"as array":       compact(t, []any{1, 2}),
	}
	for name, b := range bodies {
		want, werr := reflectDecode(b)
		got, gerr := api.DecodeSyncResponse(b)
		if (werr == nil) != (gerr == nil) {
			t.Errorf("%s: reflection error %v, DecodeSyncResponse error %v", name, werr, gerr)
			continue
		}
		if werr == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%s: DecodeSyncResponse\n%+v\nreflection\n%+v", name, got, want)
		}
	}
	if got, err := api.DecodeSyncResponse(compact(t, full)); err != nil || len(got.Snapshot) != 20 {
		t.Fatalf("full: %v", err)
	} else if rec, err := got.Snapshot[3].Record(); err != nil || rec.Team != "wigan" {
		t.Fatalf("a decoded state: %v", err)
	}
	// Truncated and padded bodies fail as with reflection.
	b := bodies["full"]
	for _, cut := range []int{1, len(b) / 2, len(b) - 1} {
		if _, err := api.DecodeSyncResponse(b[:cut]); err == nil {
			t.Errorf("cut at %d of %d: no error", cut, len(b))
		}
	}
	if _, err := api.DecodeSyncResponse(append(bytes.Clone(b), 0)); err == nil {
		t.Error("a trailing byte: no error")
	}
}

// FuzzDecodeSyncResponse: on any bytes DecodeSyncResponse fails when
// reflection fails, and otherwise gives the same reply; it never panics.
func FuzzDecodeSyncResponse(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	f.Add(compact(f, responseSample(rng, 3)))
	f.Add(compact(f, &api.SyncResponse{Protocol: 1, Snapshot: []crdt.RecordBytes{{0x80}}}))
	f.Add([]byte{0x81, 0xa1, 'b', 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x82, 0xa1, 'b', 0x91, 0xc0, 0xa2, '1', 'a', 0x90})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, gerr := api.DecodeSyncResponse(b)
		if err := crdt.CheckLimits(b, api.ReplyLimits); err != nil {
			// Reflection alone would allocate whatever b declares.
			if gerr == nil {
				t.Fatalf("bytes over the reply limits decoded: %v", err)
			}
			return
		}
		want, werr := reflectDecode(b)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("reflection error %v, DecodeSyncResponse error %v", werr, gerr)
		}
		if werr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("DecodeSyncResponse\n%+v\nreflection\n%+v", got, want)
		}
	})
}

// BenchmarkDecodeSyncResponse: a bootstrap page of 1,000 states of 30
// fields, by reflection and by DecodeSyncResponse.
func BenchmarkDecodeSyncResponse(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 5))
	resp := responseSample(rng, 1000)
	for i := range resp.Snapshot {
		_ = i
	}
	body := compact(b, &api.SyncResponse{Protocol: 1, Snapshot: resp.Snapshot, Cursor: []byte("k")})
	b.Run("reflection", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := reflectDecode(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodeSyncResponse", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := api.DecodeSyncResponse(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPackPush: one change of 100 new records of 30 fields, the
// SDK's batch in BenchmarkSDKPushPull (e2e/), packed as a push block.
func BenchmarkPackPush(b *testing.B) {
	rep := crdt.ReplicaID{3, 15: 0xee}
	t := crdt.MakeTimestamp(1795253400000, 0)
	var ch api.Change
	for r := range 100 {
		rec := crdt.NewRecord("wigan", "bench_rows", fmt.Sprintf("%032x", r*7919))
		for f := range 30 {
			t++
			ch.Ops = append(ch.Ops, rec.Write(crdt.OpID{Time: t, Replica: rep}, fmt.Sprintf("f%02d", f), crdt.MustValue(fmt.Sprintf("%06dvvvvvvvvvvvvvv", r))))
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := api.PackPush([]api.Change{ch}); err != nil {
			b.Fatal(err)
		}
	}
}
