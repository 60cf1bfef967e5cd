package api_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	v "github.com/doorstep-health/doorstep/internal/vectors"
	"github.com/vmihailenco/msgpack/v5"
)

// The protocol test vectors in testdata/ are data for clients in any
// language (docs/PROTOCOL.md, "Test vectors"). Each file's inputs are
// hand-written; its outputs (bytes, resulting states) are what the Go code
// computes. Without -update a test fails when the code and a file
// disagree; with -update the outputs are rewritten from the code (review
// the diff: a changed output is a wire change).
var update = flag.Bool("update", false, "rewrite the outputs in api/testdata/*.json from the code")

func vectorFile(t *testing.T, name string, into any, check func() error) {
	t.Helper()
	path := "testdata/" + name
	if err := v.Read(path, into); err != nil {
		t.Fatal(err)
	}
	if err := check(); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := v.Write(path, into); err != nil {
			t.Fatal(err)
		}
	}
}

// agree checks a computed output against the file's, or takes it under
// -update; it reports whether they agreed.
func agree[T any](t *testing.T, what string, file *T, got T) {
	t.Helper()
	if *update {
		*file = got
		return
	}
	if !v.Same(*file, got) {
		fj, _ := json.Marshal(*file)
		gj, _ := json.Marshal(got)
		t.Errorf("%s: the code gives\n  %s\nthe vector says\n  %s", what, gj, fj)
	}
}

func encodeCompact(x any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	err := enc.Encode(x)
	return buf.Bytes(), err
}

type opCase struct {
	Name    string `json:"name"`
	Op      v.Op   `json:"op"`
	Msgpack v.Hex  `json:"msgpack"`
	IDHex   v.Hex  `json:"id_hex"`
	Value   v.Hex  `json:"value_msgpack,omitempty"`
}

func TestVectorsOps(t *testing.T) {
	var f struct {
		About    string     `json:"about"`
		Replicas v.Replicas `json:"replicas"`
		Cases    []opCase   `json:"cases"`
	}
	vectorFile(t, "ops.json", &f, func() error {
		for i := range f.Cases {
			c := &f.Cases[i]
			op, err := c.Op.Op(f.Replicas)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			b, err := crdt.MarshalOp(&op)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			agree(t, c.Name+": msgpack", &c.Msgpack, v.Hex(b))
			agree(t, c.Name+": id_hex", &c.IDHex, v.Hex(op.ID.AppendBinary(nil)))
			agree(t, c.Name+": value_msgpack", &c.Value, v.Hex(op.Value))
			back, err := crdt.UnmarshalOp(c.Msgpack)
			if err != nil {
				t.Errorf("%s: decode the vector's bytes: %v", c.Name, err)
				continue
			}
			if !reflect.DeepEqual(*back, op) {
				t.Errorf("%s: the vector's bytes decode to %+v, want %+v", c.Name, *back, op)
			}
			if err := op.Validate(); err != nil {
				t.Errorf("%s: not a valid op: %v", c.Name, err)
			}
		}
		return nil
	})
}

type hlcCase struct {
	Name      string `json:"name"`
	Op        string `json:"op"`
	TS        *v.TS  `json:"ts,omitempty"`
	Last      *v.TS  `json:"last,omitempty"`
	WallMS    int64  `json:"wall_ms,omitempty"`
	Remote    *v.TS  `json:"remote,omitempty"`
	MaxSkewMS int64  `json:"max_skew_ms,omitempty"`
	A         *v.ID  `json:"a,omitempty"`
	B         *v.ID  `json:"b,omitempty"`
	Uint64    string `json:"want_uint64,omitempty"`
	Hex       v.Hex  `json:"want_hex,omitempty"`
	Want      *v.TS  `json:"want,omitempty"`
	WantError string `json:"want_error,omitempty"`
	WantCmp   *int   `json:"want_compare,omitempty"`
}

// clockAt returns a clock whose last reading is last and whose wall clock
// then reads wallMS.
func clockAt(last v.TS, wallMS, skewMS int64) *crdt.Clock {
	wall := time.UnixMilli(int64(last[0]))
	c := crdt.NewClock(func() time.Time { return wall }, time.Duration(skewMS)*time.Millisecond)
	if err := c.Update(last.Timestamp()); err != nil {
		panic(err)
	}
	wall = time.UnixMilli(wallMS)
	return c
}

func TestVectorsHLC(t *testing.T) {
	var f struct {
		About    string     `json:"about"`
		Replicas v.Replicas `json:"replicas"`
		Cases    []hlcCase  `json:"cases"`
	}
	vectorFile(t, "hlc.json", &f, func() error {
		for i := range f.Cases {
			c := &f.Cases[i]
			switch c.Op {
			case "encode":
				ts := c.TS.Timestamp()
				agree(t, c.Name+": uint64", &c.Uint64, strconv.FormatUint(uint64(ts), 10))
				agree(t, c.Name+": hex", &c.Hex, v.Hex(binary.BigEndian.AppendUint64(nil, uint64(ts))))
				if got := v.TSOf(ts); got != *c.TS {
					t.Errorf("%s: round trip %v", c.Name, got)
				}
			case "now":
				got := v.TSOf(clockAt(*c.Last, c.WallMS, 0).Now())
				agree(t, c.Name, &c.Want, &got)
			case "update":
				clk := clockAt(*c.Last, c.WallMS, c.MaxSkewMS)
				errCode := ""
				if err := clk.Update(c.Remote.Timestamp()); err != nil {
					errCode = string(api.CodeClockSkew)
				}
				got := v.TSOf(clk.Last())
				agree(t, c.Name, &c.Want, &got)
				agree(t, c.Name+": error", &c.WantError, errCode)
			case "compare":
				a, err1 := c.A.OpID(f.Replicas)
				b, err2 := c.B.OpID(f.Replicas)
				if err1 != nil || err2 != nil {
					return fmt.Errorf("%s: %v %v", c.Name, err1, err2)
				}
				got := a.Compare(b)
				agree(t, c.Name, &c.WantCmp, &got)
				if bc := bytes.Compare(a.AppendBinary(nil), b.AppendBinary(nil)); bc != got {
					t.Errorf("%s: Compare %d but the 24-byte forms compare %d", c.Name, got, bc)
				}
			default:
				return fmt.Errorf("%s: unknown op %q", c.Name, c.Op)
			}
		}
		return nil
	})
}

type mergeCase struct {
	Name  string        `json:"name"`
	State []v.Op        `json:"state"`
	Ops   []v.Op        `json:"ops"`
	Want  *v.RecordView `json:"want"`
}

func applyAll(rec *crdt.Record, ops []crdt.Op) error {
	for i := range ops {
		if err := rec.Apply(&ops[i]); err != nil {
			return fmt.Errorf("apply op %d: %w", i, err)
		}
	}
	return nil
}

func TestVectorsMerge(t *testing.T) {
	var f struct {
		About    string      `json:"about"`
		Replicas v.Replicas  `json:"replicas"`
		Cases    []mergeCase `json:"cases"`
	}
	vectorFile(t, "merge.json", &f, func() error {
		for i := range f.Cases {
			c := &f.Cases[i]
			state, err := v.Ops(c.State, f.Replicas)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			ops, err := v.Ops(c.Ops, f.Replicas)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			all := append(slices.Clone(state), ops...)
			o := all[0]
			view := func(build func(*crdt.Record) error) (*v.RecordView, error) {
				rec := crdt.NewRecord(o.Team, o.Collection, o.Record)
				if err := build(rec); err != nil {
					return nil, err
				}
				vw, err := v.ViewOf(rec, f.Replicas)
				return &vw, err
			}
			got, err := view(func(r *crdt.Record) error { return applyAll(r, all) })
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			agree(t, c.Name, &c.Want, got)
			// The same state whatever the order across replicas, with
			// duplicates, and by merging states. Each replica's own ops
			// keep their ID order: that is the delivery contract of state
			// version 2 (crdt/doc.go), which a star topology with
			// per-replica seqs gives; a state is never asked to take a
			// replica's op after a later op of the same replica.
			rev := reversedAcrossReplicas(all)
			for what, build := range map[string]func(*crdt.Record) error{
				"reversed order across replicas": func(r *crdt.Record) error { return applyAll(r, rev) },
				"every op twice":                 func(r *crdt.Record) error { return applyAll(r, append(slices.Clone(all), all...)) },
				"state merged with its successor": func(r *crdt.Record) error {
					if err := applyAll(r, state); err != nil {
						return err
					}
					other := crdt.NewRecord(o.Team, o.Collection, o.Record)
					if err := applyAll(other, all); err != nil {
						return err
					}
					return r.Merge(other)
				},
				"successor merged with the state": func(r *crdt.Record) error {
					if err := applyAll(r, all); err != nil {
						return err
					}
					other := crdt.NewRecord(o.Team, o.Collection, o.Record)
					if err := applyAll(other, state); err != nil {
						return err
					}
					return r.Merge(other)
				},
			} {
				alt, err := view(build)
				if err != nil {
					return fmt.Errorf("%s (%s): %w", c.Name, what, err)
				}
				if !v.Same(alt, got) {
					t.Errorf("%s: %s gives another state", c.Name, what)
				}
			}
		}
		return nil
	})
}

// reversedAcrossReplicas reverses the order of ops across replicas while
// each replica's own ops keep their order: the slots a replica's ops take
// in the reversed list are refilled with its ops in their original order.
func reversedAcrossReplicas(all []crdt.Op) []crdt.Op {
	rev := slices.Clone(all)
	slices.Reverse(rev)
	byReplica := map[crdt.ReplicaID][]crdt.Op{}
	for _, op := range all {
		byReplica[op.ID.Replica] = append(byReplica[op.ID.Replica], op)
	}
	for i, op := range rev {
		q := byReplica[op.ID.Replica]
		rev[i], byReplica[op.ID.Replica] = q[0], q[1:]
	}
	return rev
}

type recordCase struct {
	Name       string          `json:"name"`
	Team       string          `json:"team"`
	Collection string          `json:"collection"`
	ID         string          `json:"id"`
	Ops        []v.Op          `json:"ops"`
	Msgpack    v.Hex           `json:"msgpack"`
	State      json.RawMessage `json:"state"`
}

// wireJSON is msgpack bytes as JSON, maps with their wire keys, binary as
// hex and op IDs as [ms, logical, replica].
func wireJSON(b []byte, r v.Replicas) (json.RawMessage, error) {
	var x any
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	var conv func(any) any
	conv = func(x any) any {
		switch t := x.(type) {
		case map[string]any:
			for k, e := range t {
				t[k] = conv(e)
			}
		case []any:
			for i, e := range t {
				t[i] = conv(e)
			}
		case []byte:
			if id, err := crdt.OpIDFromBinary(t); err == nil && len(t) == 24 {
				return v.IDOf(id, r)
			}
			return hex.EncodeToString(t)
		}
		return x
	}
	return json.Marshal(conv(x))
}

func TestVectorsRecords(t *testing.T) {
	var f struct {
		About    string       `json:"about"`
		Replicas v.Replicas   `json:"replicas"`
		Cases    []recordCase `json:"cases"`
	}
	vectorFile(t, "records.json", &f, func() error {
		for i := range f.Cases {
			c := &f.Cases[i]
			ops, err := v.Ops(c.Ops, f.Replicas)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			rec := crdt.NewRecord(c.Team, c.Collection, c.ID)
			if err := applyAll(rec, ops); err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			b, err := crdt.MarshalRecord(rec)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			agree(t, c.Name+": msgpack", &c.Msgpack, v.Hex(b))
			state, err := wireJSON(b, f.Replicas)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			agree(t, c.Name+": state", &c.State, state)
			back, err := crdt.UnmarshalRecord(c.Msgpack)
			if err != nil {
				t.Errorf("%s: decode the vector's bytes: %v", c.Name, err)
				continue
			}
			if again, _ := crdt.MarshalRecord(back); !bytes.Equal(again, c.Msgpack) {
				t.Errorf("%s: the vector's bytes do not survive decode and encode", c.Name)
			}
		}
		return nil
	})
}

type messageCase[T any] struct {
	Name    string `json:"name"`
	Value   T      `json:"value"`
	Msgpack v.Hex  `json:"msgpack"`
}

func TestVectorsMessages(t *testing.T) {
	var f struct {
		About     string                    `json:"about"`
		Replicas  v.Replicas                `json:"replicas"`
		Requests  []messageCase[v.Request]  `json:"requests"`
		Responses []messageCase[v.Response] `json:"responses"`
	}
	vectorFile(t, "messages.json", &f, func() error {
		for i := range f.Requests {
			c := &f.Requests[i]
			req, err := c.Value.Build(f.Replicas)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			b, err := encodeCompact(req)
			if err != nil {
				return err
			}
			agree(t, c.Name, &c.Msgpack, v.Hex(b))
			var back api.SyncRequest
			if err := msgpack.Unmarshal(c.Msgpack, &back); err != nil || !reflect.DeepEqual(&back, req) {
				t.Errorf("%s: the vector's bytes decode to %+v (%v), want %+v", c.Name, back, err, req)
			}
		}
		for i := range f.Responses {
			c := &f.Responses[i]
			resp, err := c.Value.Build(f.Replicas)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			b, err := encodeCompact(resp)
			if err != nil {
				return err
			}
			agree(t, c.Name, &c.Msgpack, v.Hex(b))
			var back api.SyncResponse
			if err := msgpack.Unmarshal(c.Msgpack, &back); err != nil || !reflect.DeepEqual(&back, resp) {
				t.Errorf("%s: the vector's bytes decode to %+v (%v), want %+v", c.Name, back, err, resp)
			}
		}
		return nil
	})
}

type packedChange struct {
	Author string `json:"author"`
	Ops    []v.Op `json:"ops"`
}

type packedCase struct {
	Name    string         `json:"name"`
	Changes []packedChange `json:"changes"`
	Packed  v.Hex          `json:"packed"`
}

func TestVectorsPacked(t *testing.T) {
	var f struct {
		About    string       `json:"about"`
		Replicas v.Replicas   `json:"replicas"`
		Cases    []packedCase `json:"cases"`
		Pushes   []pushCase   `json:"pushes"`
	}
	vectorFile(t, "packed.json", &f, func() error {
		if err := checkPushVectors(t, f.Pushes, f.Replicas); err != nil {
			return err
		}
		for i := range f.Cases {
			c := &f.Cases[i]
			var changes []api.PulledChange
			for _, ch := range c.Changes {
				ops, err := v.Ops(ch.Ops, f.Replicas)
				if err != nil {
					return fmt.Errorf("%s: %w", c.Name, err)
				}
				changes = append(changes, api.PulledChange{Author: ch.Author, Ops: crdt.NewOpsBytes(ops)})
			}
			b, err := api.PackChanges(changes)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			agree(t, c.Name+": packed", &c.Packed, v.Hex(b))
			back, err := api.UnpackChanges(c.Packed)
			if err != nil {
				t.Errorf("%s: unpack the vector's bytes: %v", c.Name, err)
				continue
			}
			if len(back) != len(changes) {
				t.Errorf("%s: %d changes unpacked, want %d", c.Name, len(back), len(changes))
				continue
			}
			for j := range back {
				if back[j].Author != changes[j].Author || !bytes.Equal(back[j].Ops, changes[j].Ops) {
					t.Errorf("%s: change %d unpacks differently", c.Name, j)
				}
			}
		}
		return nil
	})
}

type pushChange struct {
	Seq uint64 `json:"seq"`
	Ops []v.Op `json:"ops"`
}

type pushCase struct {
	Name string `json:"name"`
	// Changes is one block; Blocks several (a change may continue from
	// one block into the next under its seq).
	Changes []pushChange   `json:"changes,omitempty"`
	Blocks  [][]pushChange `json:"blocks,omitempty"`
	Packed  v.Hex          `json:"packed,omitempty"`
	Packeds []v.Hex        `json:"packed_blocks,omitempty"`
}

// checkPushVectors checks the push blocks of packed.json.
func checkPushVectors(t *testing.T, pushes []pushCase, replicas v.Replicas) error {
	for i := range pushes {
		c := &pushes[i]
		blocks := c.Blocks
		if c.Changes != nil {
			blocks = [][]pushChange{c.Changes}
		}
		var got []v.Hex
		for _, blk := range blocks {
			var changes []api.Change
			for _, ch := range blk {
				ops, err := v.Ops(ch.Ops, replicas)
				if err != nil {
					return fmt.Errorf("%s: %w", c.Name, err)
				}
				if len(ops) == 0 {
					ops = nil
				}
				changes = append(changes, api.Change{Seq: ch.Seq, Ops: ops})
			}
			b, err := api.PackPush(changes)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
			back, err := api.UnpackPush(b, 0)
			if err != nil || !reflect.DeepEqual(back, changes) {
				t.Errorf("%s: block does not unpack to its changes: %v", c.Name, err)
			}
			got = append(got, v.Hex(b))
		}
		if c.Changes != nil {
			agree(t, c.Name+": packed", &c.Packed, got[0])
		} else {
			agree(t, c.Name+": packed_blocks", &c.Packeds, got)
		}
	}
	return nil
}
