// Package vectors reads and writes the language-neutral protocol test
// vectors in api/testdata/*.json: the JSON forms of HLC readings, op IDs,
// ops and record views that the files use, and their conversion to and from
// the Go types. docs/PROTOCOL.md ("Test vectors") describes the files for
// clients in other languages.
//
// It is a test helper shared by the api and e2e tests; nothing in the
// server or the SDK imports it.
package vectors

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/vmihailenco/msgpack/v5"
)

// Replicas maps the short replica names the files use (A, B, ...) to
// replica IDs.
type Replicas map[string]string

// ID parses a replica name.
func (r Replicas) ID(name string) (crdt.ReplicaID, error) {
	h, ok := r[name]
	if !ok {
		return crdt.ReplicaID{}, fmt.Errorf("unknown replica %q", name)
	}
	return crdt.ParseReplicaID(h)
}

// Name returns the short name of a replica ID, or its hex if it has none.
func (r Replicas) Name(id crdt.ReplicaID) string {
	for n, h := range r {
		if h == id.String() {
			return n
		}
	}
	return id.String()
}

// TS is an HLC reading in JSON: [physical milliseconds, logical counter].
// (As one integer it exceeds 2^53, which JSON numbers do not all hold.)
type TS [2]uint64

// Timestamp converts t.
func (t TS) Timestamp() crdt.Timestamp { return crdt.MakeTimestamp(int64(t[0]), uint16(t[1])) }

// TSOf is the JSON form of a timestamp.
func TSOf(t crdt.Timestamp) TS { return TS{uint64(t.Physical()), uint64(t.Logical())} }

// ID is an op ID in JSON: [milliseconds, logical, replica name].
type ID struct {
	TS      TS
	Replica string
}

// MarshalJSON implements json.Marshaler.
func (id ID) MarshalJSON() ([]byte, error) {
	return json.Marshal([]any{id.TS[0], id.TS[1], id.Replica})
}

// UnmarshalJSON implements json.Unmarshaler.
func (id *ID) UnmarshalJSON(b []byte) error {
	var a []json.RawMessage
	if err := json.Unmarshal(b, &a); err != nil || len(a) != 3 {
		return fmt.Errorf("op ID %s: want [ms, logical, replica]", b)
	}
	if err := json.Unmarshal(a[0], &id.TS[0]); err != nil {
		return err
	}
	if err := json.Unmarshal(a[1], &id.TS[1]); err != nil {
		return err
	}
	return json.Unmarshal(a[2], &id.Replica)
}

// OpID converts id.
func (id ID) OpID(r Replicas) (crdt.OpID, error) {
	rid, err := r.ID(id.Replica)
	return crdt.OpID{Time: id.TS.Timestamp(), Replica: rid}, err
}

// IDOf is the JSON form of an op ID.
func IDOf(id crdt.OpID, r Replicas) ID { return ID{TS: TSOf(id.Time), Replica: r.Name(id.Replica)} }

// Op is an op in JSON. Value is any JSON value; its msgpack form is what
// crdt.EncodeValue makes of it (integers smallest, map keys sorted).
type Op struct {
	ID         ID              `json:"id"`
	Team       string          `json:"team"`
	Collection string          `json:"collection"`
	Record     string          `json:"record"`
	Field      string          `json:"field"`
	Kind       string          `json:"kind"` // write, add, remove, append
	Value      json.RawMessage `json:"value,omitempty"`
	Pred       []ID            `json:"pred,omitempty"`
}

var kinds = map[string]crdt.Kind{"write": crdt.KindWrite, "add": crdt.KindAdd, "remove": crdt.KindRemove, "append": crdt.KindAppend}

// Op converts o.
func (o Op) Op(r Replicas) (crdt.Op, error) {
	id, err := o.ID.OpID(r)
	if err != nil {
		return crdt.Op{}, err
	}
	k, ok := kinds[o.Kind]
	if !ok {
		return crdt.Op{}, fmt.Errorf("unknown kind %q", o.Kind)
	}
	op := crdt.Op{ID: id, Team: o.Team, Collection: o.Collection, Record: o.Record, Field: o.Field, Kind: k}
	if len(o.Value) > 0 {
		if op.Value, err = ValueOf(o.Value); err != nil {
			return crdt.Op{}, err
		}
	}
	for _, p := range o.Pred {
		pid, err := p.OpID(r)
		if err != nil {
			return crdt.Op{}, err
		}
		op.Pred = append(op.Pred, pid)
	}
	return op, nil
}

// Ops converts a list.
func Ops(list []Op, r Replicas) ([]crdt.Op, error) {
	out := make([]crdt.Op, 0, len(list))
	for i, o := range list {
		op, err := o.Op(r)
		if err != nil {
			return nil, fmt.Errorf("op %d: %w", i, err)
		}
		out = append(out, op)
	}
	return out, nil
}

// OpOf is the JSON form of an op.
func OpOf(op *crdt.Op, r Replicas) (Op, error) {
	o := Op{ID: IDOf(op.ID, r), Team: op.Team, Collection: op.Collection, Record: op.Record, Field: op.Field, Kind: op.Kind.String()}
	if len(op.Value) > 0 {
		v, err := JSONValue(op.Value)
		if err != nil {
			return Op{}, err
		}
		o.Value = v
	}
	for _, p := range op.Pred {
		o.Pred = append(o.Pred, IDOf(p, r))
	}
	return o, nil
}

// ValueOf is the canonical msgpack encoding of a JSON value (see
// api.ValueFromJSON).
func ValueOf(raw json.RawMessage) (msgpack.RawMessage, error) { return api.ValueFromJSON(raw) }

// JSONValue is the JSON form of a msgpack value (binary as hex in
// {"bin": "..."}; only integers, floats, strings, booleans, nil, arrays
// and string-keyed maps otherwise).
func JSONValue(b msgpack.RawMessage) (json.RawMessage, error) {
	var v any
	if err := msgpack.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	v, err := jsonable(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func jsonable(x any) (any, error) {
	switch t := x.(type) {
	case map[string]any:
		for k, v := range t {
			j, err := jsonable(v)
			if err != nil {
				return nil, err
			}
			t[k] = j
		}
		return t, nil
	case []any:
		for i, v := range t {
			j, err := jsonable(v)
			if err != nil {
				return nil, err
			}
			t[i] = j
		}
		return t, nil
	case []byte:
		return map[string]string{"bin": hex.EncodeToString(t)}, nil
	case float64:
		if math.IsInf(t, 0) || math.IsNaN(t) {
			return nil, errors.New("non-finite float")
		}
	}
	return x, nil
}

// FieldView is what a reader sees of one merged field, independent of how
// the state is stored: the live entries by op ID, the register's winner
// and the set's distinct members.
type FieldView struct {
	Type     string            `json:"type"`
	Entries  []EntryView       `json:"entries"`
	Conflict bool              `json:"conflict,omitempty"`
	Winner   json.RawMessage   `json:"winner,omitempty"`
	Members  []json.RawMessage `json:"members,omitempty"`
}

// EntryView is one live entry.
type EntryView struct {
	ID    ID              `json:"id"`
	Value json.RawMessage `json:"value"`
}

// RecordView is what a reader sees of a merged record.
type RecordView struct {
	Deleted         bool                 `json:"deleted"`
	Conflicts       []string             `json:"conflicts"`
	DeleteConflicts []string             `json:"delete_conflicts"`
	Fields          map[string]FieldView `json:"fields"`
}

// ViewOf is the reader's view of a record.
func ViewOf(rec *crdt.Record, r Replicas) (RecordView, error) {
	v := RecordView{Deleted: rec.Deleted(), Conflicts: nonNil(rec.Conflicts()), DeleteConflicts: nonNil(rec.DeleteConflicts()), Fields: map[string]FieldView{}}
	for _, name := range rec.FieldNames() {
		f := rec.Fields[name]
		fv := FieldView{Type: f.Type.String(), Entries: []EntryView{}, Conflict: f.Conflict()}
		for _, e := range f.Entries {
			j, err := JSONValue(e.Value)
			if err != nil {
				return v, err
			}
			fv.Entries = append(fv.Entries, EntryView{ID: IDOf(e.ID, r), Value: j})
		}
		switch f.Type {
		case crdt.Register:
			if w, ok := f.Winner(); ok {
				j, err := JSONValue(w.Value)
				if err != nil {
					return v, err
				}
				fv.Winner = j
			}
		case crdt.Set:
			fv.Members = []json.RawMessage{}
			for _, m := range f.Members() {
				j, err := JSONValue(m)
				if err != nil {
					return v, err
				}
				fv.Members = append(fv.Members, j)
			}
		}
		v.Fields[name] = fv
	}
	return v, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// Hex is a byte string in JSON as lower-case hex.
type Hex []byte

// MarshalJSON implements json.Marshaler.
func (h Hex) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

// UnmarshalJSON implements json.Unmarshaler; spaces in the string are
// ignored, so long values may be grouped.
func (h *Hex) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	*h = d
	return err
}

// Same reports whether two JSON texts hold the same value.
func Same(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	var va, vb any
	if json.Unmarshal(ja, &va) != nil || json.Unmarshal(jb, &vb) != nil {
		return false
	}
	ca, _ := json.Marshal(va)
	cb, _ := json.Marshal(vb)
	return bytes.Equal(ca, cb)
}

// Read decodes a vector file into v, refusing unknown keys.
func Read(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Write encodes v to path, indented, for -update.
func Write(path string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
